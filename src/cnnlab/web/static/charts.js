// Line charts on a <canvas> for the Train and Runs pages: no library, crisp on any screen.
"use strict";

const charts = {
  colors: ["#0b6bcb", "#d9480f", "#0a7d3b", "#7048e8", "#c2255c", "#5c940d"],

  // series: [{label, color, dash, points: [[x, y], ...]}]; opts: {title, xMin, yMin, yMax, xLabel, percent}
  line(canvas, series, opts = {}) {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || 320, h = canvas.clientHeight || 180;
    canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const pts = series.flatMap((s) => s.points).filter((p) => Number.isFinite(p[1]));
    // what a screen reader (and a test) can know of the picture: its title and series
    canvas.setAttribute("aria-label", [opts.title || "chart", ...series.map((s) => s.label)].join("; "));
    ctx.font = "12px system-ui, sans-serif";
    // legend entries laid out in rows under the title
    const legend = [];
    let lx = 44, ly = 30;
    series.forEach((s, i) => {
      const width = ctx.measureText(s.label).width + 26;
      if (lx + width > w - 10 && lx > 44) { lx = 44; ly += 15; }
      legend.push({ s, i, x: lx, y: ly });
      lx += width;
    });
    const pad = { l: 44, r: 10, t: ly + 8, b: 26 };
    ctx.fillStyle = "#1d2430";
    if (opts.title) ctx.fillText(opts.title, pad.l, 13);
    if (!pts.length) { ctx.fillStyle = "#5b6472"; ctx.fillText("no data yet", pad.l, h / 2); return; }
    let x0 = opts.xMin ?? Math.min(...pts.map((p) => p[0])), x1 = Math.max(...pts.map((p) => p[0]));
    let y0 = opts.yMin ?? Math.min(...pts.map((p) => p[1])), y1 = opts.yMax ?? Math.max(...pts.map((p) => p[1]));
    if (x1 === x0) { x0 -= 0.5; x1 += 0.5; }
    if (y1 === y0) { y0 -= 0.5; y1 += 0.5; }
    const X = (x) => pad.l + ((x - x0) / (x1 - x0)) * (w - pad.l - pad.r);
    const Y = (y) => h - pad.b - ((y - y0) / (y1 - y0)) * (h - pad.t - pad.b);
    ctx.strokeStyle = "#d9dee6"; ctx.fillStyle = "#5b6472"; ctx.lineWidth = 1;
    for (let i = 0; i <= 4; i++) {
      const y = y0 + ((y1 - y0) * i) / 4;
      ctx.beginPath(); ctx.moveTo(pad.l, Y(y)); ctx.lineTo(w - pad.r, Y(y)); ctx.stroke();
      ctx.fillText(opts.percent ? `${(100 * y).toFixed(0)}%` : y.toFixed(2), 4, Y(y) + 4);
    }
    ctx.fillText(`${opts.xLabel || "epoch"} ${+x0.toFixed(2)}..${+x1.toFixed(2)}`, pad.l, h - 6);
    series.forEach((s, i) => {
      const color = s.color || charts.colors[i % charts.colors.length];
      ctx.strokeStyle = color; ctx.lineWidth = 2; ctx.setLineDash(s.dash || []);
      ctx.beginPath();
      s.points.filter((p) => Number.isFinite(p[1])).forEach((p, j) => (j ? ctx.lineTo(X(p[0]), Y(p[1])) : ctx.moveTo(X(p[0]), Y(p[1]))));
      ctx.stroke();
      if (s.points.length === 1) { ctx.fillStyle = color; ctx.fillRect(X(s.points[0][0]) - 3, Y(s.points[0][1]) - 3, 6, 6); }
      ctx.setLineDash([]);
    });
    for (const { s, i, x, y } of legend) {
      const color = s.color || charts.colors[i % charts.colors.length];
      ctx.strokeStyle = color; ctx.lineWidth = 2; ctx.setLineDash(s.dash || []);
      ctx.beginPath(); ctx.moveTo(x, y - 4); ctx.lineTo(x + 18, y - 4); ctx.stroke(); ctx.setLineDash([]);
      ctx.fillStyle = "#1d2430"; ctx.fillText(s.label, x + 22, y);
    }
  },

  // The per-epoch rows of metrics.json as chart series: [[epoch, value], ...] per key present.
  // `color` and `dashes` (one per key) given: one colour for a run, a dash per split.
  fromMetrics(rows, keys, suffix = "", color, dashes) {
    return keys
      .map((k, i) => ({ label: k.replace("_", " ") + suffix, color, dash: dashes ? dashes[i] : undefined, points: rows.filter((r) => Number.isFinite(r[k])).map((r) => [r.epoch, r[k]]) }))
      .filter((s) => s.points.length);
  },

  // Label smoothing's floor under a training loss, from x0 to x1: the loss a perfect model
  // still has against smoothed targets (the test loss is plain cross-entropy and can reach 0).
  floor(value, x0, x1, suffix = "", color = "#888") {
    return { label: `train's floor${suffix} ${value.toFixed(2)} (label smoothing)`, color, dash: [10, 3, 2, 3], points: [[x0, value], [x1, value]] };
  },
};
