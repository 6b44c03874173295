// cnnlab Shapes page: the conv/pool calculator. Every number shown comes from the API
// (/api/shapes/*, computed by cnnlab.shapes); this script only draws what it answers.
"use strict";

const S = { last: null, timer: null };
const $ = lab.$;

function query() {
  const op = $("op").value;
  const p = new URLSearchParams({ input: $("in-size").value, kernel: $("kernel").value,
    padding: $("padding").value, dilation: $("dilation").value });
  if ($("stride").value.trim()) p.set("stride", $("stride").value);
  if (op === "conv") return `/api/shapes/conv?${p}`;
  p.set("op", op); p.set("ceil_mode", $("ceil").checked ? "true" : "false");
  return `/api/shapes/pool?${p}`;
}

async function update() {
  try {
    const r = await lab.getJSON(query());
    S.last = r;
    lab.hideError();
    $("output").textContent = `${r.output[0]}×${r.output[1]}`;
    $("formula").textContent = r.formula;
    $("notes").textContent = r.notes.join(" ");
    $("code").textContent = r.code;
    const n = r.output[0] * r.output[1];
    $("pos").max = String(Math.min(n, r.axes.h.starts.length * r.axes.w.starts.length) - 1);
    if (Number($("pos").value) > Number($("pos").max)) $("pos").value = "0";
    drawWindow();
    document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
  } catch (err) {
    S.last = null;
    $("output").textContent = "–"; $("formula").textContent = ""; $("code").textContent = "";
    lab.showError(err.message);
  }
}

function drawWindow() {
  const r = S.last, cv = $("window"), g = cv.getContext("2d");
  g.clearRect(0, 0, cv.width, cv.height);
  if (!r) return;
  const h = r.axes.h, w = r.axes.w;
  const rows = h.n + h.pad_before + h.pad_after, cols = w.n + w.pad_before + w.pad_after;
  const cell = Math.max(2, Math.floor(Math.min(cv.width / cols, cv.height / rows)));
  const cw = w.starts.length, i = Number($("pos").value);
  const oy = Math.floor(i / cw), ox = i % cw;
  $("pos-v").textContent = `${oy},${ox}`;
  for (let y = 0; y < rows; y++) for (let x = 0; x < cols; x++) {
    const pad = y < h.pad_before || y >= h.pad_before + h.n || x < w.pad_before || x >= w.pad_before + w.n;
    g.fillStyle = pad ? "#f1e6c8" : "#e4e8ee";
    g.fillRect(x * cell, y * cell, cell - 1, cell - 1);
  }
  const spanH = h.dilation * (h.kernel - 1) + 1, spanW = w.dilation * (w.kernel - 1) + 1;
  g.strokeStyle = "#9aa3b0"; g.setLineDash([3, 3]);
  for (const sy of h.starts.slice(0, 6)) for (const sx of w.starts.slice(0, 6)) {
    g.strokeRect((sx + w.pad_before) * cell, (sy + h.pad_before) * cell, spanW * cell, spanH * cell);
  }
  g.setLineDash([]);
  const y0 = h.starts[oy] + h.pad_before, x0 = w.starts[ox] + w.pad_before;
  g.fillStyle = "rgba(11, 107, 203, 0.35)";
  for (let a = 0; a < h.kernel; a++) for (let b = 0; b < w.kernel; b++) {
    g.fillRect((x0 + b * w.dilation) * cell, (y0 + a * h.dilation) * cell, cell - 1, cell - 1);
  }
  g.strokeStyle = "#0b6bcb"; g.lineWidth = 2;
  g.strokeRect(x0 * cell, y0 * cell, spanW * cell, spanH * cell);
  g.lineWidth = 1;
}

async function solve() {
  const p = new URLSearchParams({ input: $("in-size").value, kernel: $("kernel").value,
    target: $("target").value, dilation: $("dilation").value });
  try {
    const s = await lab.getJSON(`/api/shapes/solve?${p}`);
    lab.hideError();
    $("solution").textContent = s.best
      ? `simplest: nn.Conv2d(..., kernel_size=${$("kernel").value}, ${s.best}); ${s.matches.length} choice${s.matches.length > 1 ? "s" : ""} in all: ` + s.matches.slice(0, 6).map((m) => m.args).join(" | ")
      : "nothing in range gives that size; nearest: " + s.nearest.map((m) => `${m.args} → ${m.size[0]}×${m.size[1]}`).join(" | ");
  } catch (err) { lab.showError(err.message); }
}

function later() { clearTimeout(S.timer); S.timer = setTimeout(update, 150); }
for (const id of ["op", "in-size", "kernel", "stride", "padding", "dilation", "ceil"]) {
  $(id).addEventListener("input", later);
  $(id).addEventListener("change", later);
}
$("op").addEventListener("change", () => {   // pooling's stride defaults to its kernel
  if ($("op").value !== "conv" && $("stride").value === "1") $("stride").value = "";
  if ($("op").value === "conv" && $("stride").value === "") $("stride").value = "1";
});
$("form").addEventListener("submit", (e) => e.preventDefault());
$("pos").addEventListener("input", drawWindow);
$("solve").addEventListener("click", solve);
update().then(() => { document.body.dataset.ready = "1"; });
