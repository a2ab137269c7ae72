// A queue's throughput and failure rate over time, drawn as SVG by hand (no chart
// library to vendor): per bucket of `series` ({t, completed, failed}) a bar of
// completed jobs with the failed ones stacked on top (left axis: jobs per bucket),
// and a line of the bucket's failure rate, failed / (completed + failed) (right
// axis: 0-100 %). Buckets with no finished job leave a gap in the line.

import { fmtClock, fmtSpan, fmtTime, h, s } from "./dom.js";

const W = 900;
const H = 190;
const M = { top: 12, right: 44, bottom: 24, left: 40 };

// A round top for the left axis: 1, 2, 5, 10, 20, 50, ...
function niceMax(n) {
  if (n <= 1) return 1;
  const p = 10 ** Math.floor(Math.log10(n));
  for (const m of [1, 2, 5, 10]) if (m * p >= n) return m * p;
  return 10 * p;
}

export function throughputChart(stats, test) {
  const series = (stats && stats.series) || [];
  const plotW = W - M.left - M.right;
  const plotH = H - M.top - M.bottom;
  const top = niceMax(Math.max(0, ...series.map((b) => b.completed + b.failed)));
  const n = Math.max(series.length, 1);
  const slot = plotW / n;
  const barW = Math.max(1, slot * 0.8);
  const y = (v) => M.top + plotH - (v / top) * plotH;
  const yRate = (r) => M.top + plotH - r * plotH;

  const grid = [0, 0.5, 1].map((f) => s("line", {
    class: "gridline", x1: M.left, x2: W - M.right, y1: M.top + plotH * (1 - f), y2: M.top + plotH * (1 - f),
  }));
  const bars = series.map((b, i) => {
    const x = M.left + i * slot + (slot - barW) / 2;
    const tip = `${fmtTime(b.t)} (${fmtSpan(stats.bucket)}): ${b.completed} completed, ${b.failed} failed`;
    return s("g", { class: "bucket" },
      s("title", null, tip),
      b.completed ? s("rect", { class: "bar-completed", x, width: barW, y: y(b.completed), height: y(0) - y(b.completed) }) : null,
      b.failed ? s("rect", { class: "bar-failed", x, width: barW, y: y(b.completed + b.failed), height: y(0) - y(b.failed) }) : null,
      // a transparent full-height target so the tooltip shows over empty buckets too
      s("rect", { class: "hover", x: M.left + i * slot, width: slot, y: M.top, height: plotH }));
  });

  // The failure-rate line, broken where a bucket finished nothing.
  // Each point also gets a dot: a lone bucket between gaps draws no line.
  let d = "";
  let pen = false;
  const dots = [];
  series.forEach((b, i) => {
    const done = b.completed + b.failed;
    if (!done) { pen = false; return; }
    const x = (M.left + i * slot + slot / 2).toFixed(1);
    const yy = yRate(b.failed / done).toFixed(1);
    d += `${pen ? "L" : "M"}${x},${yy}`;
    dots.push(s("circle", { class: "rate-dot", cx: x, cy: yy, r: 2.5 }));
    pen = true;
  });

  const labels = [];
  if (series.length) {
    const picks = [0, Math.floor((series.length - 1) / 2), series.length - 1];
    [...new Set(picks)].forEach((i) => labels.push(s("text", {
      class: "axis", x: M.left + i * slot + slot / 2, y: H - 6, "text-anchor": "middle",
    }, fmtClock(series[i].t))));
  }

  const svg = s("svg", {
    class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": "jobs completed and failed per bucket, and the failure rate", test,
  },
  grid,
  s("text", { class: "axis", x: M.left - 6, y: M.top + 4, "text-anchor": "end" }, String(top)),
  s("text", { class: "axis", x: M.left - 6, y: M.top + plotH + 4, "text-anchor": "end" }, "0"),
  s("text", { class: "axis rate", x: W - M.right + 6, y: M.top + 4 }, "100%"),
  s("text", { class: "axis rate", x: W - M.right + 6, y: M.top + plotH + 4 }, "0%"),
  bars,
  d ? s("path", { class: "rate-line", d, test: test ? `${test}-rate` : null }) : null,
  dots,
  labels);

  const legend = h("div", { class: "legend" },
    h("span", { class: "key completed" }, "completed"),
    h("span", { class: "key failed" }, "failed"),
    h("span", { class: "key rate" }, "failure rate"),
    h("span", { class: "muted" }, `jobs per ${fmtSpan(stats ? stats.bucket : 60)}, last ${fmtSpan(stats ? stats.window : 3600)}`));
  return h("figure", { class: "chart-box" }, svg, legend);
}
