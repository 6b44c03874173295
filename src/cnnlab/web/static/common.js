// Shared by the lab's pages: JSON requests with the server's {"error"} messages, the runs
// list, and the error banner. Plain script, no build step.
"use strict";

const lab = {
  $: (id) => document.getElementById(id),

  async getJSON(path) {
    return lab.request(path, { method: "GET" });
  },

  async post(path, payload) {
    const headers = typeof payload === "string" ? { "Content-Type": "application/json" } : {};
    return lab.request(path, { method: "POST", headers, body: payload });
  },

  async request(path, options) {
    let res;
    try {
      res = await fetch(path, options);
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
  },

  showError(message) { const el = lab.$("error"); if (el) { el.textContent = message; el.hidden = false; } },
  hideError() { const el = lab.$("error"); if (el) el.hidden = true; },

  pct(p) { return p >= 0.995 ? `${(100 * p).toFixed(0)}%` : `${(100 * p).toFixed(1)}%`; },

  // Fill a <select> with the runs; `preferred` names are chosen when present.
  fillRuns(select, runs, preferred) {
    select.textContent = "";
    for (const r of runs) {
      const opt = document.createElement("option");
      opt.value = r.name;
      opt.textContent = r.model ? `${r.name} (${r.model})` : r.name;
      select.appendChild(opt);
    }
    const pick = preferred.find((n) => runs.some((r) => r.name === n));
    if (pick) select.value = pick;
  },

  runQuery(name) { return `run=${encodeURIComponent(name)}`; },

  // The last drawing (a PNG data URL), kept in this tab's sessionStorage: the Network page
  // opens on what was drawn on the Draw page.
  DRAWING_KEY: "cnnlab.drawing",
  keepDrawing(url) {
    try {
      if (url) sessionStorage.setItem(lab.DRAWING_KEY, url); else sessionStorage.removeItem(lab.DRAWING_KEY);
    } catch (_) { /* storage off or full: the pages still work, they just do not share */ }
  },
  keptDrawing() { try { return sessionStorage.getItem(lab.DRAWING_KEY); } catch (_) { return null; } },
};
