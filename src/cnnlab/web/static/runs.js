// The Runs page: every run folder as a sortable table; one run's curves, confusion matrix
// (a cell opens its test images with saliency maps), per-class scores and config; two runs
// compared. The view is in the URL: #run=NAME or #compare=A,B.
"use strict";

const $ = lab.$;
let rows = [];
let sortKey = "date", sortDir = -1;

function el(tag, props = {}, children = []) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else if (k.startsWith("data-")) e.setAttribute(k, v); else e[k] = v;
  }
  for (const c of children) e.appendChild(c);
  return e;
}

const fmtAcc = (a) => (Number.isFinite(a) ? `${(100 * a).toFixed(2)}%` : "–");
const fmtInt = (n) => (Number.isFinite(n) ? n.toLocaleString("en") : "–");

function renderTable() {
  const body = $("runs-table").tBodies[0];
  body.textContent = "";
  const sorted = [...rows].sort((a, b) => {
    const x = a[sortKey], y = b[sortKey];
    if (x === y) return 0;
    if (x === null || x === undefined) return 1;
    if (y === null || y === undefined) return -1;
    return (x < y ? -1 : 1) * sortDir;
  });
  for (const r of sorted) {
    const tick = el("input", { type: "checkbox", value: r.name, "aria-label": `compare ${r.name}` });
    tick.addEventListener("change", updateCompareButton);
    const link = r.weights === false ? el("span", { text: r.name, title: "stopped before its first epoch" }) : el("a", { href: `#run=${encodeURIComponent(r.name)}`, text: r.name });
    const state = r.state === "resumable" ? el("span", { class: "badge", text: "resumable" }) : null;
    const nameCell = el("td", {}, state ? [link, state] : [link]);
    body.appendChild(el("tr", { "data-run": r.name }, [
      el("td", {}, [tick]), nameCell, el("td", { text: r.model || "–" }), el("td", { text: r.dataset || "–" }),
      el("td", { class: "num", text: r.epochs ?? "–" }), el("td", { class: "num", text: fmtAcc(r.test_accuracy) }),
      el("td", { class: "num", text: fmtAcc(r.val_accuracy) }), el("td", { class: "num", text: fmtInt(r.parameters) }),
      el("td", { text: r.date || "–" }),
    ]));
  }
  for (const b of document.querySelectorAll("#runs-table th button")) {
    b.parentElement.setAttribute("aria-sort", b.dataset.key === sortKey ? (sortDir > 0 ? "ascending" : "descending") : "none");
  }
}

function ticked() { return [...document.querySelectorAll("#runs-table tbody input:checked")].map((i) => i.value); }
function updateCompareButton() { $("compare").disabled = ticked().length !== 2; }

const SPLIT_DASHES = [[], [2, 3], [7, 4]]; // train solid, val dotted, test dashed

function curves(metrics, suffix = "", color) {
  const dashes = color ? SPLIT_DASHES : undefined;
  return {
    loss: charts.fromMetrics(metrics, ["train_loss", "val_loss", "test_loss"], suffix, color, dashes),
    acc: charts.fromMetrics(metrics, ["train_acc", "val_acc", "test_acc"], suffix, color, dashes),
  };
}

// Training's running figure within each epoch, step by step: step k of an epoch's n sits at
// epoch - 1 + k / n, so a one-epoch run is a curve that ends on its epoch's point.
function stepSeries(steps, key) {
  const last = {};
  for (const s of steps) last[s.epoch] = Math.max(last[s.epoch] || 0, s.step);
  const points = steps.map((s) => [s.epoch - 1 + s.step / last[s.epoch], s[key]]);
  return { label: `train ${key} (steps)`, color: "#9ab", points };
}

// A run's smoothing floor across its epochs (from 0 when its steps are drawn), or nothing.
function floorSeries(d, suffix, color) {
  if (d.train_loss_floor == null || !d.metrics.length) return [];
  const last = Math.max(...d.metrics.map((m) => m.epoch));
  return [charts.floor(d.train_loss_floor, d.steps.length ? 0 : 1, last, suffix, color)];
}

// A confusion matrix as a grid of buttons; `onCell(t, p)` when given; `diff` colours signs.
function matrix(target, cm, classes, { onCell, diff = false } = {}) {
  target.textContent = "";
  const k = cm.length;
  target.style.gridTemplateColumns = `auto repeat(${k}, minmax(0, 1fr))`;
  const max = Math.max(1, ...cm.flatMap((row, i) => row.filter((_, j) => diff || j !== i).map(Math.abs)));
  target.appendChild(el("span", { class: "cm-corner", text: "t\\p" }));
  classes.forEach((c) => target.appendChild(el("span", { class: "cm-head", text: c })));
  cm.forEach((row, t) => {
    target.appendChild(el("span", { class: "cm-head", text: classes[t] }));
    row.forEach((n, p) => {
      const cell = el(onCell ? "button" : "span", { class: "cm-cell", text: diff && n > 0 ? `+${n}` : `${n}`, title: `true ${classes[t]}, predicted ${classes[p]}: ${n}` });
      cell.dataset.true = t; cell.dataset.pred = p;
      const a = t === p && !diff ? 0 : Math.min(1, Math.abs(n) / max);
      if (t === p && !diff) cell.classList.add("cm-diag");
      else if (n !== 0) {
        const worse = t === p ? n < 0 : n > 0; // more mistakes or fewer right answers
        cell.style.background = !diff || worse ? `rgba(217,72,15,${0.12 + 0.75 * a})` : `rgba(10,125,59,${0.15 + 0.7 * a})`;
      }
      if (onCell) { cell.type = "button"; cell.addEventListener("click", () => onCell(t, p)); }
      target.appendChild(cell);
    });
  });
}

function keyValues(table, entries, highlight = () => false) {
  table.textContent = "";
  for (const [k, ...vs] of entries) {
    const tr = el("tr", { class: highlight(vs) ? "differs" : "" }, [el("th", { scope: "row", text: k }), ...vs.map((v) => el("td", { text: typeof v === "object" && v !== null ? JSON.stringify(v) : String(v ?? "–") }))]);
    table.appendChild(tr);
  }
}

async function openCell(name, classes, t, p) {
  $("cell").hidden = false;
  $("cell-title").textContent = `true ${classes[t]}, read as ${classes[p]}`;
  const box = $("cell-images");
  box.textContent = t === p ? "" : "loading…";
  if (t === p) { box.appendChild(el("p", { class: "note", text: "The diagonal holds the images read right; click a cell off it to see mistakes." })); return; }
  const data = await lab.getJSON(`/api/runs/${encodeURIComponent(name)}/errors?true=${t}&pred=${p}&limit=24`);
  box.textContent = "";
  if (!data.errors.length) box.appendChild(el("p", { class: "note", text: "No test image here." }));
  for (const e of data.errors) {
    box.appendChild(el("figure", { class: "err", "data-confidence": e.confidence }, [
      el("img", { src: e.image, alt: `test image ${e.index}`, class: "pixelated" }),
      el("img", { src: e.saliency, alt: `saliency of test image ${e.index}`, class: "pixelated" }),
      el("figcaption", { text: `#${e.index} ${lab.pct(e.confidence)}` }),
    ]));
  }
  document.body.dataset.cell = `${t},${p}`;
}

async function showRun(name) {
  $("comparison").hidden = true;
  $("detail").hidden = false; $("cell").hidden = true;
  $("detail-name").textContent = name;
  $("detail-summary").textContent = "evaluating on the test set (once per run)…";
  const d = await lab.getJSON(`/api/runs/${encodeURIComponent(name)}`);
  const r = d.row;
  $("detail-summary").textContent = `${r.model} on ${r.dataset}, ${r.epochs} epochs, ${fmtInt(r.parameters)} parameters; test accuracy ${fmtAcc(d.accuracy)} on ${d.images} images${d.accuracy_one_pass != null ? ` (averaging ${d.tta} one-pixel shifts; each image read once, as Draw reads it: ${fmtAcc(d.accuracy_one_pass)})` : ""}${r.state === "resumable" ? " (stopped early: resumable from the Train page)" : ""}`;
  const c = curves(d.metrics);
  if (d.steps.length) { c.loss.push(stepSeries(d.steps, "loss")); c.acc.push(stepSeries(d.steps, "acc")); }
  c.loss.push(...floorSeries(d));
  const xMin = d.steps.length ? 0 : undefined; // step curves start at the start of training
  charts.line($("detail-loss"), c.loss, { title: "loss", xMin });
  charts.line($("detail-acc"), c.acc, { title: "accuracy", percent: true, xMin });
  matrix($("detail-cm"), d.confusion, d.classes, { onCell: (t, p) => openCell(name, d.classes, t, p).catch((e) => lab.showError(e.message)) });
  const classes = $("detail-classes");
  classes.textContent = "";
  classes.appendChild(el("tr", {}, ["class", "precision", "recall", "F1", "n"].map((h) => el("th", { scope: "col", text: h }))));
  for (const s of d.per_class) classes.appendChild(el("tr", {}, [el("th", { scope: "row", text: s.class }), ...[s.precision, s.recall, s.f1].map((v) => el("td", { class: "num", text: v.toFixed(3) })), el("td", { class: "num", text: s.support })]));
  keyValues($("detail-config"), Object.entries(d.config));
  $("detail").scrollIntoView({ block: "start" });
  document.body.dataset.shown = name;
}

async function showCompare(a, b) {
  $("detail").hidden = true;
  $("comparison").hidden = false;
  $("compare-names").textContent = `${a} and ${b}`;
  const [da, db] = await Promise.all([a, b].map((n) => lab.getJSON(`/api/runs/${encodeURIComponent(n)}`)));
  const ca = curves(da.metrics, ` ${a}`, charts.colors[0]), cb = curves(db.metrics, ` ${b}`, charts.colors[1]);
  const floors = [...floorSeries(da, ` ${a}`, charts.colors[0]), ...floorSeries(db, ` ${b}`, charts.colors[1])];
  charts.line($("compare-loss"), [...ca.loss, ...cb.loss, ...floors], { title: "loss" });
  charts.line($("compare-acc"), [...ca.acc, ...cb.acc], { title: "accuracy", percent: true });
  $("cm-a-title").textContent = `${a}: ${fmtAcc(da.accuracy)}`;
  $("cm-b-title").textContent = `${b}: ${fmtAcc(db.accuracy)}`;
  matrix($("cm-a"), da.confusion, da.classes);
  matrix($("cm-b"), db.confusion, db.classes);
  if (da.confusion.length === db.confusion.length) {
    matrix($("cm-diff"), db.confusion.map((row, i) => row.map((n, j) => n - da.confusion[i][j])), da.classes, { diff: true });
  }
  const keys = [...new Set([...Object.keys(da.config), ...Object.keys(db.config)])];
  keyValues($("compare-config"), [["setting", a, b], ...keys.map((k) => [k, da.config[k], db.config[k]])],
    (vs) => JSON.stringify(vs[0]) !== JSON.stringify(vs[1]) && vs[0] !== a);
  $("comparison").scrollIntoView({ block: "start" });
  document.body.dataset.shown = `${a},${b}`;
}

function route() {
  const hash = new URLSearchParams(location.hash.slice(1));
  const go = hash.get("run") ? showRun(hash.get("run")) : hash.get("compare") ? showCompare(...hash.get("compare").split(",", 2)) : null;
  if (go) go.then(lab.hideError, (e) => lab.showError(e.message));
}

async function start() {
  for (const b of document.querySelectorAll("#runs-table th button")) {
    b.addEventListener("click", () => {
      sortDir = sortKey === b.dataset.key ? -sortDir : 1;
      sortKey = b.dataset.key;
      renderTable();
    });
  }
  $("compare").addEventListener("click", () => { location.hash = `compare=${ticked().map(encodeURIComponent).join(",")}`; });
  window.addEventListener("hashchange", route);
  try {
    rows = (await lab.getJSON("/api/run-table")).runs;
    renderTable();
    route();
  } catch (e) {
    lab.showError(e.message);
  }
  document.body.dataset.ready = "1";
}

start();
