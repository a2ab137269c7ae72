// A job's waterfall, drawn as SVG by hand from GET api/jobs/Q/ID/timeline: one row per
// bar ({kind, label, start, end, duration, state, attempt, worker, error, detail,
// until, job}), all on one time axis from the job's enqueue to its end (or to `now`
// while it is unfinished). Attempts are full rows; the durable calls of a run
// (sleeps, waits, child jobs, steps) are indented under it; marks (steps, patches,
// the end) are diamonds. A bar still going (end null) runs to `now`, dashed.

import { fmtDuration, fmtTime, s, short } from "./dom.js";

const W = 1000;
const ROW = 24;
const TOP = 26;
const LABEL = 250; // the labels' column
const RIGHT = 150; // durations and states, right of the plot
const PLOT = W - LABEL - RIGHT - 16;
const MARKS = ["step", "patch", "finished"];
const STEPS = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120,
  300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800];

// A round tick spacing giving at most ~7 ticks over `span` seconds.
function tickStep(span) {
  return STEPS.find((step) => span / step <= 7) || span / 7;
}

function tip(bar, now) {
  const end = bar.end === null || bar.end === undefined ? null : bar.end;
  const lines = [`${bar.label}: ${bar.state}`,
    `${fmtTime(bar.start)}${MARKS.includes(bar.kind) ? "" : ` → ${end === null ? "now (still going)" : fmtTime(end)}`}`];
  if (!MARKS.includes(bar.kind)) lines.push(`took ${fmtDuration((end === null ? now : end) - bar.start)}${end === null ? " so far" : ""}`);
  if (bar.worker) lines.push(`worker ${bar.worker}`);
  if (bar.detail) lines.push(bar.detail);
  if (bar.until !== null && bar.until !== undefined) lines.push(`${bar.kind === "sleep" ? "until" : "times out"} ${fmtTime(bar.until)}`);
  if (bar.error) lines.push(bar.error.split("\n")[0]);
  return lines.join("\n");
}

// What the right column says of a bar: its duration (so far) and its state.
function rightText(bar, now) {
  if (MARKS.includes(bar.kind)) return bar.state;
  const open = bar.end === null || bar.end === undefined;
  const took = fmtDuration((open ? now : bar.end) - bar.start);
  return `${took}${open ? "…" : ""} · ${bar.state}`;
}

export function timelineChart(tl, test) {
  const bars = tl.bars || [];
  const now = tl.now;
  const start = tl.start;
  const end = tl.end === null || tl.end === undefined ? now : tl.end;
  const span = Math.max(end - start, 0.001);
  const x = (t) => LABEL + ((Math.min(Math.max(t, start), end) - start) / span) * PLOT;
  const height = TOP + bars.length * ROW + 6;
  const step = tickStep(span);
  const ticks = [];
  for (let t = 0; t <= span + step / 1000; t += step) {
    ticks.push(s("g", { class: "tick" },
      s("line", { class: "gridline", x1: x(start + t), x2: x(start + t), y1: TOP - 6, y2: height - 4 }),
      s("text", { class: "axis", x: x(start + t), y: TOP - 10, "text-anchor": "middle" },
        t === 0 ? "0" : `+${fmtDuration(t)}`)));
  }
  const rows = bars.map((bar, i) => {
    const y = TOP + i * ROW;
    const open = bar.end === null || bar.end === undefined;
    const inner = !["queued", "attempt", "finished"].includes(bar.kind);
    const x0 = x(bar.start);
    const x1 = x(open ? now : bar.end);
    const mid = y + ROW / 2;
    const shape = MARKS.includes(bar.kind)
      ? s("polygon", { class: `mark st-${bar.state}`, points: `${x0},${mid - 6} ${x0 + 6},${mid} ${x0},${mid + 6} ${x0 - 6},${mid}` })
      : s("rect", {
        class: `bar st-${bar.state}${open ? " open" : ""}${inner ? " inner" : ""}`,
        x: x0, y: y + 5, width: Math.max(x1 - x0, 2), height: ROW - 10, rx: 2,
      });
    return s("g", {
      class: `row${i % 2 ? " odd" : ""}`, test: "timeline-bar", "data-kind": bar.kind, "data-state": bar.state,
      "data-label": bar.label, "data-open": open ? "true" : "false", "data-x": x0.toFixed(1),
    },
    s("title", null, tip(bar, now)),
    s("rect", { class: "band", x: 0, y, width: W, height: ROW }),
    s("text", { class: `label${inner ? " inner" : ""}`, x: inner ? 22 : 8, y: mid + 4 },
      short(bar.label, inner ? 34 : 24), bar.worker && bar.kind === "attempt" ? s("tspan", { class: "worker" }, ` · ${short(bar.worker, 20)}`) : null),
    shape,
    s("text", { class: "took", x: W - RIGHT, y: mid + 4 }, rightText(bar, now)));
  });
  return s("svg", { class: "timeline", viewBox: `0 0 ${W} ${height}`, role: "img", test,
    "aria-label": `the life of the job: ${bars.length} bars from ${fmtTime(start)}` },
  ticks, rows);
}
