// cnnlab Draw page: one pad, two runs reading it side by side (probabilities and the 28x28 input
// each sees), sliders that move the digit after preprocessing, the measured shift test and the
// nudge. Plain script, no build step; common.js has the request helpers.
"use strict";

const STROKE = 1 / 14;     // pen width as a fraction of the pad: 20 px on 280, ~2 px once the
                           // digit is scaled into MNIST's 20x20 box (MNIST's strokes are ~1.8 px)
const THROTTLE_MS = 120;   // at most one request per this while drawing...
const PAPER = "#ffffff";   // ...and at most one in flight; the last drawing always gets sent
const INK = "#000000";

const $ = lab.$;
const pad = $("pad");
const ctx = pad.getContext("2d");

const state = {
  strokes: [],        // [{points: [[x, y], ...]}], in pad pixels
  current: null,      // the stroke being drawn
  pointer: null,      // its pointerId
  upload: null,       // {file, bitmap}: an uploaded image, under the strokes
  classes: [], runs: [],
  timer: null, inFlight: false, dirty: false, generation: 0, updates: 0,
};

// --------------------------------------------------------------------------- drawing

function penWidth() { return pad.width * STROKE; }

function paper() {
  ctx.fillStyle = PAPER;
  ctx.fillRect(0, 0, pad.width, pad.height);
  if (state.upload && state.upload.bitmap) {   // fit the upload into the pad, centred
    const b = state.upload.bitmap;
    const s = Math.min(pad.width / b.width, pad.height / b.height);
    const w = b.width * s, h = b.height * s;
    ctx.drawImage(b, (pad.width - w) / 2, (pad.height - h) / 2, w, h);
  }
}

function drawStroke(points) {
  ctx.strokeStyle = INK; ctx.fillStyle = INK;
  ctx.lineWidth = penWidth(); ctx.lineCap = "round"; ctx.lineJoin = "round";
  if (points.length === 1) {   // a tap: a dot
    ctx.beginPath(); ctx.arc(points[0][0], points[0][1], penWidth() / 2, 0, 2 * Math.PI); ctx.fill();
    return;
  }
  ctx.beginPath(); ctx.moveTo(points[0][0], points[0][1]);
  for (const [x, y] of points.slice(1)) ctx.lineTo(x, y);
  ctx.stroke();
}

function redraw() {
  paper();
  for (const s of state.strokes) drawStroke(s.points);
}

function isBlank() { return state.strokes.length === 0 && !state.upload; }

function toPad(event) {   // CSS pixels -> pad pixels (the pad is scaled by CSS)
  const r = pad.getBoundingClientRect();
  return [(event.clientX - r.left) * pad.width / r.width, (event.clientY - r.top) * pad.height / r.height];
}

pad.addEventListener("pointerdown", (e) => {
  if (state.current || (e.pointerType === "mouse" && e.button !== 0)) return;
  e.preventDefault();
  pad.setPointerCapture(e.pointerId);
  state.pointer = e.pointerId;
  state.current = { points: [toPad(e)] };
  state.strokes.push(state.current);
  drawStroke(state.current.points);
  requestUpdate();
});

pad.addEventListener("pointermove", (e) => {
  if (!state.current || e.pointerId !== state.pointer) return;
  e.preventDefault();
  const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [e];   // smooth fast strokes
  const pts = state.current.points;
  for (const ev of events.length ? events : [e]) {
    const p = toPad(ev);
    const last = pts[pts.length - 1];
    drawStroke([last, p]);
    pts.push(p);
  }
  requestUpdate();
});

function endStroke(e) {
  if (!state.current || e.pointerId !== state.pointer) return;
  state.current = null; state.pointer = null;
  requestUpdate();
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

function undo() {
  if (state.current) return;
  if (state.strokes.length) state.strokes.pop();
  else if (state.upload) state.upload = null;
  redraw(); requestUpdate();
}

function clearAll() {
  if (state.current) return;
  state.strokes = []; state.upload = null;
  redraw(); requestUpdate();
}

$("undo").addEventListener("click", undo);
$("clear").addEventListener("click", clearAll);
document.addEventListener("keydown", (e) => {
  if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "z") { e.preventDefault(); undo(); }
  else if (e.key === "Escape") clearAll();
});

$("upload").addEventListener("change", async (e) => {
  const file = e.target.files && e.target.files[0];
  e.target.value = "";   // choosing the same file again fires change again
  if (!file) return;
  let bitmap = null;
  try { bitmap = await createImageBitmap(file); } catch (_) { /* the server's answer says why */ }
  state.strokes = []; state.upload = { file, bitmap };
  redraw(); requestUpdate();
});

// --------------------------------------------------------------------------- talking to the API

// The request body for the current picture: the uploaded file itself while nothing is drawn
// over it (so the server sees the original bytes), else the pad as a PNG.
function body() {
  if (state.upload && state.strokes.length === 0) {
    const form = new FormData();
    form.append("file", state.upload.file, state.upload.file.name);
    return form;
  }
  return JSON.stringify({ image: pad.toDataURL("image/png") });
}

const MOVES = ["dx", "dy", "rotate", "scale"];
function moveQuery() { return MOVES.map((k) => `${k}=${encodeURIComponent($(k).value)}`).join("&"); }
function runA() { return $("run-a").value; }
function runB() { return $("run-b").value; }
function twoRuns() { return runB() && runB() !== runA(); }
function mapsRun() { return twoRuns() ? runB() : runA(); }   // the CNN, when A is the MLP

// At most one round of requests in flight and one per THROTTLE_MS; whatever was drawn meanwhile
// is sent when the round returns, so the last drawing always gets an answer.
function requestUpdate() {
  state.dirty = true;
  if (!state.timer) state.timer = setTimeout(flush, THROTTLE_MS);
}

async function flush() {
  state.timer = null;
  if (state.inFlight || !state.dirty) return;
  state.dirty = false;
  if (isBlank()) { state.generation += 1; showBlank(); lab.keepDrawing(null); return; }   // answers in flight are stale
  lab.keepDrawing(pad.toDataURL("image/png"));   // for the Network page
  state.inFlight = true;
  const generation = ++state.generation;
  const fresh = (fn) => (x) => { if (generation === state.generation) fn(x); };
  const payload = body();
  const q = moveQuery();
  try {
    const jobs = [
      lab.post(`/api/predict?top=3&${lab.runQuery(runA())}&${q}`, payload).then(fresh((p) => showPrediction(p, ""))),
      lab.post(`/api/explain?layers=first&${lab.runQuery(mapsRun())}&${q}`, payload).then(fresh(showMaps)),
    ];
    if (twoRuns()) {
      jobs.push(lab.post(`/api/predict?top=3&${lab.runQuery(runB())}&${q}`, payload).then(fresh((p) => showPrediction(p, "-b"))));
    }
    await Promise.all(jobs);
    if (generation === state.generation) {
      lab.hideError();
      state.updates += 1;
      document.body.dataset.updates = String(state.updates);
    }
  } catch (err) {
    if (generation === state.generation) lab.showError(err.message);
  } finally {
    state.inFlight = false;
    if (state.dirty) requestUpdate();
  }
}

// --------------------------------------------------------------------------- showing results

const pct = lab.pct;

function buildBars(id, classes) {
  const ol = $(id);
  ol.textContent = "";
  for (const c of classes) {
    const li = document.createElement("li");
    li.dataset.cls = c;
    li.innerHTML = '<span class="cls"></span><span class="track"><span class="fill"></span></span>' +
      '<span class="pct">–</span>';
    li.querySelector(".cls").textContent = c;
    li.querySelector(".cls").title = c;
    ol.appendChild(li);
  }
}

function showPrediction(p, suffix) {
  $(`label${suffix}`).textContent = p.label;
  $(`confidence${suffix}`).textContent = `${pct(p.probability)} sure`;
  if (!suffix) {
    $("mini").textContent = "";
    const b = document.createElement("b");
    b.textContent = p.label;
    $("mini").append(b, ` ${pct(p.probability)}`);
  }
  for (const li of $(`bars${suffix}`).children) {
    const prob = p.probabilities[li.dataset.cls] || 0;
    li.querySelector(".fill").style.width = `${(100 * prob).toFixed(1)}%`;
    li.querySelector(".pct").textContent = pct(prob);
    li.classList.toggle("win", li.dataset.cls === p.label);
  }
  const img = $(`input${suffix}`);
  img.src = p.input; img.hidden = false;
  $(`input-empty${suffix}`).hidden = true;
  if (!suffix) {
    const notes = ["The 28×28 input it sees: cropped, scaled into 20×20 and centred by mass, as MNIST was made."];
    if (p.inverted) notes.unshift("Dark ink on light paper, so inverted: MNIST is white on black.");
    if (p.thickened) notes.push("Thin strokes were thickened first.");
    $("input-note").textContent = notes.join(" ");
  }
}

function showMaps(x) {
  const box = $("maps");
  box.textContent = "";
  if (!x.layers.length) { $("layer").textContent = x.note || "no convolution layers"; return; }
  const layer = x.layers[0];
  const [c, h, w] = layer.shape;
  $("h-maps").textContent = `First convolution layer of ${mapsRun()}`;
  $("layer").textContent = `${layer.name}: ${layer.description}, ${c} maps of ${w}×${h}. ` +
    "Bright where the filter found its pattern.";
  box.style.gridTemplateColumns = `repeat(${mapColumns(c, box.clientWidth)}, minmax(0, 1fr))`;
  layer.maps.forEach((src, i) => {
    const fig = document.createElement("figure");
    const img = document.createElement("img");
    img.className = "pixelated"; img.src = src; img.alt = `feature map ${i}`;
    const cap = document.createElement("figcaption");
    cap.textContent = String(i);
    fig.append(img, cap);
    box.appendChild(fig);
  });
}

// Columns for `n` maps that fill whole rows, each map at least 44 CSS px wide.
function mapColumns(n, width) {
  const most = Math.max(1, Math.min(n, Math.floor((width + 6) / 50)));
  for (let k = most; k >= Math.ceil(most / 2); k--) if (n % k === 0) return k;
  return most;
}

function showBlank() {
  lab.hideError();
  for (const suffix of ["", "-b"]) {
    $(`label${suffix}`).textContent = "?";
    $(`confidence${suffix}`).textContent = "draw a digit";
    for (const li of $(`bars${suffix}`).children) {
      li.querySelector(".fill").style.width = "0";
      li.querySelector(".pct").textContent = "–";
      li.classList.remove("win");
    }
    $(`input${suffix}`).hidden = true; $(`input${suffix}`).removeAttribute("src");
    $(`input-empty${suffix}`).hidden = false;
  }
  $("mini").textContent = "";
  $("maps").textContent = "";
}

// --------------------------------------------------------------------------- moves, shift test, nudge

function showMoves() {
  $("dx-v").textContent = `${$("dx").value} px`;
  $("dy-v").textContent = `${$("dy").value} px`;
  $("rotate-v").textContent = `${$("rotate").value}°`;
  $("scale-v").textContent = `${Number($("scale").value).toFixed(2)}×`;
}
for (const k of MOVES) $(k).addEventListener("input", () => { showMoves(); requestUpdate(); });
$("reset-moves").addEventListener("click", () => {
  for (const k of MOVES) $(k).value = k === "scale" ? "1" : "0";
  showMoves(); requestUpdate();
});

const COLOURS = ["#0b6bcb", "#c2410c"];

async function loadShiftTest() {
  const names = twoRuns() ? [runA(), runB()] : [runA()];
  try {
    const curves = await Promise.all(names.map((n) => lab.getJSON(`/api/shift-test?${lab.runQuery(n)}&max_shift=8&n=500`)));
    plotShift(curves);
    document.body.dataset.shiftReady = "1";
  } catch (err) {
    $("shift-legend").textContent = `no shift test: ${err.message}`;
  }
}

function plotShift(curves) {
  const cv = $("shift-plot"), g = cv.getContext("2d");
  const W = cv.width, H = cv.height, L = 44, R = 12, T = 12, B = 34;
  g.clearRect(0, 0, W, H);
  g.font = "12px system-ui, sans-serif"; g.fillStyle = "#5b6472"; g.strokeStyle = "#d9dee6";
  const maxK = Math.max(...curves.map((c) => c.shifts[c.shifts.length - 1]));
  const x = (k) => L + (W - L - R) * k / maxK, y = (a) => T + (H - T - B) * (1 - a);
  for (let a = 0; a <= 1.0001; a += 0.25) {
    g.beginPath(); g.moveTo(L, y(a)); g.lineTo(W - R, y(a)); g.stroke();
    g.fillText(`${Math.round(a * 100)}%`, 4, y(a) + 4);
  }
  for (let k = 0; k <= maxK; k++) g.fillText(String(k), x(k) - 3, H - B + 16);
  g.fillText("pixels moved right and down", L + 90, H - 4);
  const legend = [];
  curves.forEach((c, i) => {
    g.strokeStyle = COLOURS[i]; g.fillStyle = COLOURS[i]; g.lineWidth = 2.5;
    g.beginPath();
    c.shifts.forEach((k, j) => { if (j) g.lineTo(x(k), y(c.accuracy[j])); else g.moveTo(x(k), y(c.accuracy[j])); });
    g.stroke();
    c.shifts.forEach((k, j) => { g.beginPath(); g.arc(x(k), y(c.accuracy[j]), 3, 0, 2 * Math.PI); g.fill(); });
    g.lineWidth = 1;
    legend.push(`${i ? "orange" : "blue"}: ${c.run}, ${pct(c.accuracy[0])} unmoved, ${pct(c.accuracy[Math.min(3, c.accuracy.length - 1)])} at 3 px`);
  });
  $("shift-legend").textContent = legend.join("; ");
}

$("nudge").addEventListener("click", async () => {
  if (isBlank()) { $("nudge-result").textContent = "Draw a digit first."; return; }
  $("nudge-result").textContent = "searching…";
  const compare = twoRuns() ? `&compare=${encodeURIComponent(runB())}` : "";
  try {
    const r = await lab.post(`/api/adversarial?${lab.runQuery(runA())}${compare}&${moveQuery()}`, body());
    $("nudge-before").src = r.input; $("nudge-before").hidden = false;
    $("nudge-after").src = r.image; $("nudge-after").hidden = false;
    const reads = Object.entries(r.readings).map(([n, x]) => `${n} reads ${x.label} (${pct(x.probability)})`);
    $("nudge-result").textContent = r.found
      ? `A change of at most ε = ${r.linf.toFixed(3)} per pixel (L2 ${r.l2.toFixed(2)}) turns ${r.run}'s ${r.label} into ${r.adversarial_label}. Nudged: ${reads.join("; ")}.`
      : `No change up to full brightness made ${r.run} change its answer ${r.label}.`;
    document.body.dataset.nudged = "1";
  } catch (err) {
    lab.showError(err.message);
    $("nudge-result").textContent = "";
  }
});

// --------------------------------------------------------------------------- start

async function loadCard() {
  const card = await lab.getJSON(`/api/model?${lab.runQuery(runA())}`);
  state.classes = card.classes;
  buildBars("bars", card.classes);
  buildBars("bars-b", card.classes);
  $("card-model").textContent = `${card.model} (${card.run})`;
  $("card-dataset").textContent = card.dataset;
  $("card-accuracy").textContent = card.test_accuracy == null ? "not recorded"
    : `${(100 * card.test_accuracy).toFixed(2)}%` + (card.epochs ? ` after ${card.epochs} epoch${card.epochs > 1 ? "s" : ""}` : "");
  $("card-params").textContent = card.parameters.toLocaleString("en-US");
}

async function runsChanged() {
  $("reader-b").hidden = !twoRuns();
  try {
    await loadCard();
    showBlank();
    if (!isBlank()) requestUpdate();
    loadShiftTest();
  } catch (err) {
    lab.showError(`cannot load the model card: ${err.message}`);
  }
}

async function start() {
  try {
    const { runs, default: first } = await lab.getJSON("/api/runs");
    state.runs = runs;
    // the server's default run first (the first RUN given to `cnnlab serve`); with none given
    // it is demo/cnn, and the page pairs the demo's mlp with it
    lab.fillRuns($("run-a"), runs, first === "demo/cnn" ? ["demo/mlp", first] : [first]);
    lab.fillRuns($("run-b"), runs, ["demo/cnn", ...runs.map((r) => r.name).filter((n) => n !== $("run-a").value)]);
    $("run-a").addEventListener("change", runsChanged);
    $("run-b").addEventListener("change", runsChanged);
    await runsChanged();
    document.body.dataset.ready = "1";
  } catch (err) {
    lab.showError(`cannot list the runs: ${err.message}`);
  }
}

paper();
showMoves();
start();
