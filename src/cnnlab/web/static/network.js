// cnnlab Network page: every layer of one run on the drawn digit, from POST /api/explain?layers=every.
// The server does all the arithmetic (shapes, windows, receptive fields, the formula); this file
// only draws what it answers. Plain script, no build step; common.js has the request helpers.
"use strict";

const $ = lab.$;
const pad = $("pad");
const ctx = pad.getContext("2d");
const STROKE = 1 / 14;   // the Draw page's pen: ~2 px once scaled into MNIST's 20x20 box

const state = {
  strokes: [], current: null, pointer: null, kept: null,   // kept: the Draw page's drawing
  trace: null, selected: null, generation: 0, updates: 0, inFlight: false, dirty: false,
};

// --------------------------------------------------------------------------- drawing

function paper() {
  ctx.fillStyle = "#ffffff"; ctx.fillRect(0, 0, pad.width, pad.height);
  if (state.kept) ctx.drawImage(state.kept, 0, 0, pad.width, pad.height);
}

function drawStroke(points) {
  const w = pad.width * STROKE;
  ctx.strokeStyle = "#000"; ctx.fillStyle = "#000"; ctx.lineWidth = w; ctx.lineCap = "round"; ctx.lineJoin = "round";
  if (points.length === 1) { ctx.beginPath(); ctx.arc(points[0][0], points[0][1], w / 2, 0, 2 * Math.PI); ctx.fill(); return; }
  ctx.beginPath(); ctx.moveTo(points[0][0], points[0][1]);
  for (const [x, y] of points.slice(1)) ctx.lineTo(x, y);
  ctx.stroke();
}

function isBlank() { return state.strokes.length === 0 && !state.kept; }

function toPad(e) {
  const r = pad.getBoundingClientRect();
  return [(e.clientX - r.left) * pad.width / r.width, (e.clientY - r.top) * pad.height / r.height];
}

pad.addEventListener("pointerdown", (e) => {
  if (state.current || (e.pointerType === "mouse" && e.button !== 0)) return;
  e.preventDefault(); pad.setPointerCapture(e.pointerId);
  state.pointer = e.pointerId; state.current = { points: [toPad(e)] };
  state.strokes.push(state.current); drawStroke(state.current.points);
});
pad.addEventListener("pointermove", (e) => {
  if (!state.current || e.pointerId !== state.pointer) return;
  e.preventDefault();
  const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [e];
  for (const ev of events.length ? events : [e]) state.current.points.push(toPad(ev));
  paper(); for (const s of state.strokes) drawStroke(s.points);
});
function endStroke(e) {
  if (!state.current || e.pointerId !== state.pointer) return;
  state.current = null; state.pointer = null;
  lab.keepDrawing(pad.toDataURL("image/png"));
  update();
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

function clearAll() {
  state.strokes = []; state.kept = null; paper(); lab.keepDrawing(null);
  state.generation += 1; state.trace = null;
  $("strip").textContent = ""; $("totals").textContent = ""; $("answer").textContent = "Draw a digit.";
  $("input").hidden = true; $("input-empty").hidden = false; $("field-box").hidden = true;
  showLayer(null);
}
$("clear").addEventListener("click", clearAll);
document.addEventListener("keydown", (e) => { if (e.key === "Escape") clearAll(); });

// --------------------------------------------------------------------------- the API

async function update() {
  if (isBlank()) return;
  if (state.inFlight) { state.dirty = true; return; }
  state.inFlight = true; state.dirty = false;
  const generation = ++state.generation;
  const payload = JSON.stringify({ image: pad.toDataURL("image/png") });
  try {
    const t = await lab.post(`/api/explain?layers=every&top=10&${lab.runQuery($("run").value)}`, payload);
    if (generation === state.generation) {
      lab.hideError(); showTrace(t);
      state.updates += 1; document.body.dataset.updates = String(state.updates);
    }
  } catch (err) {
    if (generation === state.generation) lab.showError(err.message);
  } finally {
    state.inFlight = false;
    if (state.dirty) update();
  }
}

// --------------------------------------------------------------------------- the strip

const KIND_WORDS = {
  conv: "conv", pool: "pool", activation: "activation", batchnorm: "batchnorm", flatten: "flatten",
  linear: "linear", dropout: "dropout", softmax: "softmax", other: "layer",
};

function shapeText(shape) { return shape.join("×"); }
function count(n) { return n.toLocaleString("en-US"); }

function showTrace(t) {
  state.trace = t;
  const p = t.prediction;
  $("answer").innerHTML = `${t.run} reads <b></b> (${lab.pct(p.probability)})`;
  $("answer").querySelector("b").textContent = p.label;
  $("input").src = p.input; $("input").hidden = false; $("input-empty").hidden = true;
  const ol = $("strip");
  ol.textContent = "";
  t.layers.forEach((ly, i) => {
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.type = "button"; b.className = `block k-${ly.kind}`; b.dataset.index = String(i); b.dataset.name = ly.name;
    b.title = `${ly.name}: ${ly.detail}`;
    b.innerHTML = '<span class="kind"></span><span class="mod"></span><span class="shape"></span><span class="params"></span>';
    b.querySelector(".kind").textContent = KIND_WORDS[ly.kind] || ly.kind;
    b.querySelector(".mod").textContent = ly.module;
    b.querySelector(".shape").textContent = shapeText(ly.shape);
    b.querySelector(".params").textContent = ly.params ? `${count(ly.params)} params` : "no params";
    b.addEventListener("click", () => { select(i); $("layer-title").scrollIntoView({ block: "nearest" }); });
    li.appendChild(b); ol.appendChild(li);
  });
  const total = t.layers.reduce((s, ly) => s + ly.params, 0);
  $("totals").textContent = `${t.layers.length} layers of ${t.model}, ${count(total)} parameters in all; ` +
    `input ${shapeText(t.input_shape)}.`;
  const keep = t.layers.findIndex((ly) => ly.name === state.selected);
  const firstConv = t.layers.findIndex((ly) => ly.kind === "conv");
  select(keep >= 0 ? keep : Math.max(0, firstConv));
}

function select(i) {
  const ly = state.trace.layers[i];
  state.selected = ly.name;
  for (const b of $("strip").querySelectorAll(".block")) b.setAttribute("aria-pressed", String(b.dataset.index === String(i)));
  showLayer(ly, i);
}

// --------------------------------------------------------------------------- one layer

const FIELD_NOTE = $("field-note").textContent;

function explanation(ly, i) {
  const n = ly.shape[0];
  const s = ly.shape.length === 3 ? `${n} maps of ${ly.shape[1]}×${ly.shape[2]}` : `${count(ly.size)} numbers`;
  switch (ly.kind) {
    case "conv":
      return `A convolution slides each of its ${n} small ${ly.conv.kernel.join("×")} filters over its input ` +
        `and writes one map per filter (${s}): bright where the filter finds its pattern. Point at a pixel ` +
        `of a map: the blue square on your digit is what that pixel saw (its receptive field).`;
    case "pool":
      return `${ly.pool.op === "max" ? "Max" : "Average"} pooling keeps the ${ly.pool.op === "max" ? "largest" : "mean"} ` +
        `of each ${ly.pool.kernel.join("×")} window (${s}): the maps shrink, and a digit moved a pixel ` +
        `gives nearly the same numbers.`;
    case "batchnorm":
      return `BatchNorm rescales each channel by the mean and spread measured in training, so the next ` +
        `layer gets numbers of a steady size (${s}). It changes brightness, not where things are.`;
    case "activation":
      return ly.module === "ReLU"
        ? `ReLU keeps positive numbers and turns negative ones into 0 (black): only what was found passes on (${s}).`
        : `${ly.module} squashes each number into a small range, one by one (${s}); nothing moves.`;
    case "flatten":
      return `Flatten lays the ${shapeText(ly.input_shape)} input out as one list of ${count(ly.size)} numbers ` +
        `for the linear layers. Nothing is computed; an MLP starts here, which is why it learns each pixel's place.`;
    case "linear":
      return `A linear layer makes each of its ${count(ly.size)} outputs a weighted sum of all ` +
        `${count(ly.input_shape[0])} inputs plus a bias: ${count(ly.params)} parameters.` +
        (i === state.trace.layers.length - 2 ? " These are the scores (logits) the softmax turns into probabilities." : "");
    case "dropout":
      return `Dropout switches off random numbers while training; reading your digit it passes all ${count(ly.size)} through.`;
    case "softmax":
      return `Softmax turns the ${ly.size} scores into probabilities that add up to 1; the largest is the answer.`;
    default:
      return `${ly.module}: ${s}.`;
  }
}

function showLayer(ly, i) {
  for (const id of ["conv-math", "pool-math", "more", "class-bars", "values", "values-note"]) $(id).hidden = true;
  $("maps").textContent = "";
  $("field-box").hidden = true;
  $("field-note").textContent = ly && ly.field ? "" : FIELD_NOTE;
  if (!ly) { $("layer-title").textContent = "Pick a layer"; $("layer-explain").textContent = "Draw a digit to see what each layer makes of it."; return; }
  $("layer-title").textContent = ly.kind === "softmax" ? "softmax: the probabilities" : `${ly.detail}: ${ly.name}`;
  $("layer-explain").textContent = explanation(ly, i);
  if (ly.conv) {
    $("formula").textContent = `kernel ${ly.conv.kernel.join("×")}, stride ${ly.conv.stride.join("×")}, ` +
      `padding ${ly.conv.padding.join("×")}, dilation ${ly.conv.dilation.join("×")}\n${ly.conv.formula}`;
    $("conv-math").hidden = false;
  }
  if (ly.pool) showPool(ly);
  if (ly.maps) showMaps(ly);
  else if (ly.values) showValues(ly, i);
  document.body.dataset.layer = ly.name;
}

function showMaps(ly) {
  const grid = $("maps");
  ly.maps.forEach((url, ch) => {
    const fig = document.createElement("figure");
    const img = document.createElement("img");
    img.src = url; img.className = "pixelated"; img.alt = `channel ${ch}`; img.dataset.ch = String(ch);
    img.addEventListener("pointermove", (e) => hover(ly, img, e));
    img.addEventListener("pointerdown", (e) => hover(ly, img, e));
    const cap = document.createElement("figcaption"); cap.textContent = String(ch);
    fig.append(img, cap); grid.appendChild(fig);
  });
  if (ly.channels > ly.maps.length) {
    $("more").textContent = `+${ly.channels - ly.maps.length} more channels not shown (the first ${ly.maps.length} of ${ly.channels}).`;
    $("more").hidden = false;
  }
  const [h, w] = ly.shape.slice(1);
  showWindow(ly, Math.floor(h / 2), Math.floor(w / 2));
}

function hover(ly, img, e) {
  const r = img.getBoundingClientRect();
  const [h, w] = ly.shape.slice(1);
  const row = Math.min(h - 1, Math.max(0, Math.floor((e.clientY - r.top) / r.height * h)));
  const col = Math.min(w - 1, Math.max(0, Math.floor((e.clientX - r.left) / r.width * w)));
  showWindow(ly, row, col);
}

// The receptive field of output pixel (row, col), and its window in the layer's own input.
function showWindow(ly, row, col) {
  const f = ly.field;
  if (!f) return;
  const [H, W] = state.trace.input_shape.slice(1);
  const [r0, r1] = f.rows[row], [c0, c1] = f.cols[col];
  const box = $("field-box");
  box.style.top = `${100 * r0 / H}%`; box.style.left = `${100 * c0 / W}%`;
  box.style.height = `${100 * (r1 - r0 + 1) / H}%`; box.style.width = `${100 * (c1 - c0 + 1) / W}%`;
  box.hidden = false;
  $("field-note").textContent = `Pixel (row ${row}, column ${col}) of this layer's maps sees rows ${r0}–${r1} and ` +
    `columns ${c0}–${c1} of the input: a receptive field of ${f.size.join("×")} pixels, moving ` +
    `${f.jump.join("×")} pixels per step (clipped at the edges).`;
  const win = ly.conv || ly.pool;
  if (win) {
    const [a0, a1] = win.rows[row], [b0, b1] = win.cols[col];
    $(ly.conv ? "window-note" : "pool-note").dataset.window = `${a0},${a1},${b0},${b1}`;
    if (ly.conv) {
      $("window-note").textContent = `Output pixel (${row}, ${col}) is computed from rows ${a0}–${a1} and columns ` +
        `${b0}–${b1} of its ${shapeText(ly.input_shape.slice(1))} input (its ${win.kernel.join("×")} window; ` +
        `padding zeros count where it hangs over the edge).`;
    }
  }
  document.body.dataset.window = `${row},${col},${r0},${r1},${c0},${c1}`;
}

function showPool(ly) {
  const p = ly.pool, patch = p.patch;
  $("pool-formula").textContent = `kernel ${p.kernel.join("×")}, stride ${p.stride.join("×")}, padding ${p.padding.join("×")}` +
    (p.formula ? `\n${p.formula}` : "");
  $("pool-math").hidden = false;
  const tin = $("pool-in"), tout = $("pool-out");
  tin.textContent = ""; tout.textContent = "";
  if (!patch) return;
  $("pool-note").textContent = `Channel ${patch.channel}, around its strongest output: each colour is one ` +
    `window of the input (left, from row ${patch.top}, column ${patch.left}) and its ${p.op} (right).`;
  const owner = (r, c) => patch.cells.findIndex((w) => r >= w.rows[0] && r <= w.rows[1] && c >= w.cols[0] && c <= w.cols[1]);
  patch.input.forEach((rowVals, r) => {
    const tr = tin.insertRow();
    rowVals.forEach((v, c) => { const td = tr.insertCell(); td.textContent = v.toFixed(2); td.className = `w${owner(r, c) < 0 ? "-1" : owner(r, c) % 4}`; });
  });
  const rows = [...new Set(patch.cells.map((w) => w.row))];
  rows.forEach((row) => {
    const tr = tout.insertRow();
    patch.cells.filter((w) => w.row === row).forEach((w) => {
      const td = tr.insertCell(); td.textContent = w.value.toFixed(2); td.className = `w${patch.cells.indexOf(w) % 4}`;
    });
  });
}

function showValues(ly, i) {
  const classes = state.trace.classes;
  const last = i >= state.trace.layers.length - 2 && ly.values.length === classes.length;
  if (last) { showClassBars(ly); return; }
  const cv = $("values"), g = cv.getContext("2d");
  const vals = ly.values, W = cv.width, H = cv.height;
  const lo = Math.min(0, ...vals), hi = Math.max(0, ...vals), span = hi - lo || 1;
  const zero = H * hi / span, bw = W / vals.length;
  g.clearRect(0, 0, W, H); g.fillStyle = "#0b6bcb";
  vals.forEach((v, k) => { const y = H * (hi - Math.max(v, 0)) / span; g.fillRect(k * bw, y, Math.max(1, bw - (bw > 3 ? 1 : 0)), Math.abs(v) * H / span); });
  g.fillStyle = "#5b6472"; g.fillRect(0, zero, W, 1);
  cv.hidden = false;
  const shown = vals.length < ly.size ? ` (the first ${vals.length} of ${count(ly.size)})` : "";
  $("values-note").textContent = `Each thin bar is one of the ${count(vals.length)} numbers${shown}, left to right; ` +
    `up is positive, down negative. Smallest ${lo.toFixed(2)}, largest ${hi.toFixed(2)}.`;
  $("values-note").hidden = false;
}

function showClassBars(ly) {
  const ol = $("class-bars"), classes = state.trace.classes, vals = ly.values;
  const lo = Math.min(0, ...vals), hi = Math.max(...vals), best = vals.indexOf(Math.max(...vals));
  ol.textContent = "";
  vals.forEach((v, k) => {
    const li = document.createElement("li");
    li.innerHTML = '<span class="cls"></span><span class="track"><span class="fill"></span></span><span class="pct"></span>';
    li.querySelector(".cls").textContent = classes[k];
    li.querySelector(".fill").style.width = `${100 * (v - lo) / ((hi - lo) || 1)}%`;
    li.querySelector(".pct").textContent = ly.kind === "softmax" ? lab.pct(v) : v.toFixed(2);
    if (k === best) li.classList.add("win");
    ol.appendChild(li);
  });
  ol.hidden = false;
}

// --------------------------------------------------------------------------- start

async function start() {
  paper();
  try {
    const { runs, default: first } = await lab.getJSON("/api/runs");
    lab.fillRuns($("run"), runs.filter((r) => !r.error), [first, "demo/cnn"]);
    $("run").addEventListener("change", update);
    const kept = lab.keptDrawing();
    if (kept) {
      const img = new Image();
      await new Promise((ok) => { img.onload = ok; img.onerror = ok; img.src = kept; });
      if (img.naturalWidth) { state.kept = img; paper(); await update(); }
    }
    document.body.dataset.ready = "1";
  } catch (err) {
    lab.showError(`cannot list the runs: ${err.message}`);
  }
}

start();
