// cnnlab draw-a-digit page: draw on the pad, and the prediction, the 28x28 input the model saw
// and the first conv layer's feature maps follow as you draw. Plain script, no build step.
"use strict";

const STROKE = 1 / 14;     // pen width as a fraction of the pad: 20 px on 280, ~2 px once the
                           // digit is scaled into MNIST's 20x20 box (MNIST's strokes are ~1.8 px)
const THROTTLE_MS = 120;   // at most one request per this while drawing...
const PAPER = "#ffffff";   // ...and at most one in flight; the last drawing always gets sent
const INK = "#000000";

const $ = (id) => document.getElementById(id);
const pad = $("pad");
const ctx = pad.getContext("2d");

const state = {
  strokes: [],        // [{points: [[x, y], ...]}], in pad pixels
  current: null,      // the stroke being drawn
  pointer: null,      // its pointerId
  upload: null,       // {file, bitmap}: an uploaded image, under the strokes
  classes: [],
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

async function post(path, payload) {
  const headers = typeof payload === "string" ? { "Content-Type": "application/json" } : {};
  let res;
  try {
    res = await fetch(path, { method: "POST", headers, body: payload });
  } catch (err) {
    throw new Error(`cannot reach the server (${err.message}); is cnnlab serve still running?`);
  }
  let data = null;
  try { data = await res.json(); } catch (_) { /* not JSON: reported below */ }
  if (!res.ok) {
    const why = data && data.error ? data.error : `${res.status} ${res.statusText}`;
    throw new Error(`server answered ${res.status}: ${why}`);
  }
  if (!data) throw new Error(`server answered ${res.status} without JSON`);
  return data;
}

// At most one request pair in flight and one per THROTTLE_MS; whatever was drawn meanwhile is
// sent when the pair returns, so the last drawing always gets an answer.
function requestUpdate() {
  state.dirty = true;
  if (!state.timer) state.timer = setTimeout(flush, THROTTLE_MS);
}

async function flush() {
  state.timer = null;
  if (state.inFlight || !state.dirty) return;
  state.dirty = false;
  if (isBlank()) { state.generation += 1; showBlank(); return; }   // answers in flight are stale
  state.inFlight = true;
  const generation = ++state.generation;
  const payload = body();
  try {
    const predict = post("/api/predict?top=3", payload).then((p) => {
      if (generation === state.generation) showPrediction(p);
    });
    const explain = post("/api/explain?layers=first", payload).then((x) => {
      if (generation === state.generation) showMaps(x);
    });
    await Promise.all([predict, explain]);
    if (generation === state.generation) {
      hideError();
      state.updates += 1;
      document.body.dataset.updates = String(state.updates);
    }
  } catch (err) {
    if (generation === state.generation) showError(err.message);
  } finally {
    state.inFlight = false;
    if (state.dirty) requestUpdate();
  }
}

// --------------------------------------------------------------------------- showing results

function pct(p) { return p >= 0.995 ? `${(100 * p).toFixed(0)}%` : `${(100 * p).toFixed(1)}%`; }

function buildBars(classes) {
  const ol = $("bars");
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

function showPrediction(p) {
  $("label").textContent = p.label;
  $("mini").innerHTML = "";
  const b = document.createElement("b");
  b.textContent = p.label;
  $("mini").append(b, ` ${pct(p.probability)}`);
  $("confidence").textContent = `${pct(p.probability)} sure`;
  for (const li of $("bars").children) {
    const prob = p.probabilities[li.dataset.cls] || 0;
    li.querySelector(".fill").style.width = `${(100 * prob).toFixed(1)}%`;
    li.querySelector(".pct").textContent = pct(prob);
    li.classList.toggle("win", li.dataset.cls === p.label);
  }
  const img = $("input");
  img.src = p.input; img.hidden = false;
  $("input-empty").hidden = true;
  const notes = ["Cropped to the ink, scaled into 20×20 and centred by mass in 28×28, as MNIST was made."];
  if (p.inverted) notes.unshift("Dark ink on light paper, so inverted: MNIST is white on black.");
  if (p.thickened) notes.push("Thin strokes were thickened first.");
  $("input-note").textContent = notes.join(" ");
}

function showMaps(x) {
  const box = $("maps");
  box.textContent = "";
  if (!x.layers.length) { $("layer").textContent = x.note || "no convolution layers"; return; }
  const layer = x.layers[0];
  const [c, h, w] = layer.shape;
  $("layer").textContent = `${layer.name}: ${layer.description}, ${c} maps of ${w}×${h}. ` +
    "Bright where the filter found its pattern (one brightness scale for the layer).";
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

// Columns for `n` maps that fill whole rows (16 maps: 8 on a wide panel, 4 on a phone), each
// map at least 44 CSS px wide.
function mapColumns(n, width) {
  const most = Math.max(1, Math.min(n, Math.floor((width + 6) / 50)));
  for (let k = most; k >= Math.ceil(most / 2); k--) if (n % k === 0) return k;
  return most;
}

function showBlank() {
  hideError();
  $("label").textContent = "?";
  $("confidence").textContent = "draw a digit";
  $("mini").textContent = "";
  for (const li of $("bars").children) {
    li.querySelector(".fill").style.width = "0";
    li.querySelector(".pct").textContent = "–";
    li.classList.remove("win");
  }
  $("input").hidden = true; $("input").removeAttribute("src");
  $("input-empty").hidden = false;
  $("maps").textContent = "";
}

function showError(message) { const el = $("error"); el.textContent = message; el.hidden = false; }
function hideError() { $("error").hidden = true; }

async function loadCard() {
  try {
    const res = await fetch("/api/model");
    const card = await res.json();
    if (!res.ok) throw new Error(card.error || res.statusText);
    state.classes = card.classes;
    buildBars(card.classes);
    $("card-model").textContent = `${card.model} (${card.run})`;
    $("card-dataset").textContent = card.dataset;
    $("card-accuracy").textContent = card.test_accuracy == null ? "not recorded"
      : `${(100 * card.test_accuracy).toFixed(2)}%` + (card.epochs ? ` after ${card.epochs} epoch${card.epochs > 1 ? "s" : ""}` : "");
    $("card-params").textContent = card.parameters.toLocaleString("en-US");
    $("h-maps").textContent = card.conv_layers.length ? "First convolution layer" : "Feature maps";
    document.body.dataset.ready = "1";
  } catch (err) {
    showError(`cannot load the model card: ${err.message}`);
  }
}

paper();
showBlank();
loadCard();
