// The Train page: start a `cnnlab train` job on the server, watch its steps and epochs live
// (Server-Sent Events from /api/jobs/ID/events), cancel it, resume a stopped run.
"use strict";

const $ = lab.$;
const FIELDS = { epochs: "int", batch_size: "int", lr: "float", train_subset: "int" };
let recipes = {};
let watched = null, source = null;
let live = { steps: [], epochs: [] };

function el(tag, props = {}, children = []) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "text") e.textContent = v; else if (k === "class") e.className = v; else if (k.startsWith("data-")) e.setAttribute(k, v); else e[k] = v;
  }
  for (const c of children) e.appendChild(c);
  return e;
}

function fill(select, values, labels = values) {
  select.textContent = "";
  values.forEach((v, i) => select.appendChild(el("option", { value: v, text: labels[i] })));
}

// Placeholders show the recipe's value of each field, so an empty field says what it keeps.
function showRecipe() {
  const r = recipes[$("recipe").value] || {};
  $("model").disabled = Boolean($("recipe").value);
  if (r.model) $("model").value = r.model;
  for (const k of Object.keys(FIELDS)) if (k !== "train_subset") $(k).placeholder = r[k] !== undefined ? String(r[k]) : "default";
}

function jobBody() {
  const body = {};
  if ($("recipe").value) body.recipe = $("recipe").value; else body.model = $("model").value;
  body.dataset = $("dataset").value;
  for (const [k, kind] of Object.entries(FIELDS)) {
    const text = $(k).value.trim();
    if (text !== "") body[k] = kind === "int" ? parseInt(text, 10) : parseFloat(text);
  }
  if (body.train_subset) body.test_subset = Math.min(2000, Math.max(500, body.train_subset));
  if ($("name").value.trim()) body.name = $("name").value.trim();
  return body;
}

function fmtTime(s) {
  if (!Number.isFinite(s)) return "–";
  return s < 90 ? `${Math.round(s)} s` : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

function draw() {
  const s = live.steps, e = live.epochs;
  const series = (key, label) => ({ label, points: e.filter((r) => Number.isFinite(r[key])).map((r) => [r.epoch, r[key]]) });
  const floor = live.floor != null && s.length ? charts.floor(live.floor, s[0].x, s[s.length - 1].x) : { points: [] };
  charts.line($("live-loss"), [{ label: "step loss", points: s.map((p) => [p.x, p.loss]) }, series("val_loss", "val"), series("test_loss", "test"), floor].filter((x) => x.points.length), { title: "loss", xLabel: "epoch" });
  charts.line($("live-acc"), [{ label: "step acc", points: s.map((p) => [p.x, p.acc]) }, series("val_acc", "val"), series("test_acc", "test")].filter((x) => x.points.length), { title: "accuracy", xLabel: "epoch", percent: true });
}

function showState(job) {
  $("job-run").textContent = job.run;
  $("job-state").textContent = job.state;
  $("job-state").dataset.state = job.state;
  const running = job.state === "running" || job.state === "queued";
  $("cancel").disabled = !running;
  $("resume").hidden = !job.resumable || running;
  $("open-run").hidden = job.state !== "done";
  $("open-run").href = `/runs#run=${encodeURIComponent(job.run)}`;
  $("job-error").hidden = !job.error;
  $("job-error").textContent = job.error || "";
}

function onEvent(job, ev) {
  const p = ev;
  if (ev.event === "job") { showState(ev); (ev.metrics || []).forEach((m) => live.epochs.push(m)); }
  else if (ev.event === "start") { live.startEpoch = ev.start_epoch || 0; live.started = performance.now(); live.epochs = []; live.floor = ev.train_loss_floor; }
  else if (ev.event === "step") {
    live.steps.push({ x: p.epoch + p.step / p.steps, loss: p.loss, acc: p.acc });
    document.body.dataset.steps = live.steps.length;
    $("job-progress").textContent = `epoch ${p.epoch + 1}, step ${p.step}/${p.steps}: loss ${p.loss.toFixed(4)}, accuracy ${lab.pct(p.acc)}`;
    $("job-speed").textContent = Math.round(p.images_per_s).toLocaleString("en");
    const epochs = live.epochsPlanned || 1, done = p.epoch - (live.startEpoch || 0) + p.step / p.steps;
    $("job-bar").value = (p.epoch + p.step / p.steps) / epochs;
    const elapsed = (performance.now() - live.started) / 1000;
    $("job-eta").textContent = done > 0 ? fmtTime((elapsed * (epochs - (live.startEpoch || 0) - done)) / done) : "–";
  } else if (ev.event === "epoch_start") { live.epochsPlanned = ev.epochs; }
  else if (ev.event === "epoch_end") {
    live.epochs.push(ev);
    const acc = ev.val_acc ?? ev.test_acc;
    $("job-epoch").textContent = `${ev.epoch}/${ev.epochs}: ${ev.val_acc !== undefined ? "val" : "test"} ${lab.pct(acc)}`;
    $("job-bar").value = ev.epoch / ev.epochs;
  } else if (ev.event === "state") {
    showState({ ...job, state: ev.state, error: ev.error, resumable: ev.state !== "done" });
    if (ev.state === "done") { $("job-bar").value = 1; $("job-eta").textContent = "0 s"; }
    document.body.dataset.jobState = ev.state;
    refreshLists();
  }
  draw();
}

function watch(job) {
  if (source) source.close();
  watched = job;
  live = { steps: [], epochs: [] };
  document.body.dataset.steps = 0;
  document.body.dataset.jobState = job.state;
  showState(job);
  $("job-progress").textContent = job.state === "queued" ? "waiting for the running job to finish" : "";
  source = new EventSource(`/api/jobs/${job.id}/events`);
  source.onmessage = (m) => {
    const ev = JSON.parse(m.data);
    onEvent(job, ev);
    if (ev.event === "state") { source.close(); source = null; }
  };
  source.onerror = () => { if (source && source.readyState === EventSource.CLOSED) refreshLists(); };
  draw();
}

async function submit(body) {
  lab.hideError();
  try {
    const job = await lab.post("/api/jobs", JSON.stringify(body));
    watch(job);
    refreshLists();
  } catch (e) {
    lab.showError(e.message);
  }
}

async function refreshLists() {
  try {
    const [{ jobs }, { runs }] = await Promise.all([lab.getJSON("/api/jobs"), lab.getJSON("/api/run-table")]);
    const list = $("jobs");
    list.textContent = "";
    if (!jobs.length) list.appendChild(el("li", { class: "note", text: "none yet" }));
    for (const j of jobs) {
      const watchBtn = el("button", { type: "button", text: "watch" });
      watchBtn.addEventListener("click", () => watch(j));
      list.appendChild(el("li", { "data-state": j.state }, [el("b", { text: j.run }), el("span", { class: "badge", "data-state": j.state, text: j.state }), watchBtn]));
    }
    const stopped = runs.filter((r) => r.state === "resumable");
    const res = $("resumable");
    res.textContent = "";
    if (!stopped.length) res.appendChild(el("li", { class: "note", text: "none: every run finished its epochs" }));
    for (const r of stopped) {
      const btn = el("button", { type: "button", text: "resume" });
      btn.addEventListener("click", () => submit({ resume: r.name }));
      res.appendChild(el("li", {}, [el("b", { text: r.name }), el("span", { class: "note", text: `${r.epochs} epoch(s) saved` }), btn]));
    }
  } catch (e) {
    lab.showError(e.message);
  }
}

async function start() {
  $("job-form").addEventListener("submit", (e) => { e.preventDefault(); submit(jobBody()); });
  $("recipe").addEventListener("change", showRecipe);
  $("cancel").addEventListener("click", async () => {
    try { if (watched) showState(await lab.request(`/api/jobs/${watched.id}`, { method: "DELETE" })); } catch (e) { lab.showError(e.message); }
  });
  $("resume").addEventListener("click", () => watched && submit({ resume: watched.run }));
  try {
    const opts = await lab.getJSON("/api/jobs/options");
    recipes = opts.recipes;
    fill($("recipe"), ["", ...Object.keys(recipes)], ["none: choose a model", ...Object.keys(recipes)]);
    fill($("model"), opts.models);
    $("model").value = opts.models.includes("cnn") ? "cnn" : opts.models[0];
    fill($("dataset"), opts.datasets);
    $("recipe").value = "fast";
    showRecipe();
    const { jobs } = await lab.getJSON("/api/jobs");
    const current = jobs.find((j) => j.state === "running" || j.state === "queued");
    if (current) watch(current);
    await refreshLists();
  } catch (e) {
    lab.showError(e.message);
  }
  draw();
  document.body.dataset.ready = "1";
}

start();
