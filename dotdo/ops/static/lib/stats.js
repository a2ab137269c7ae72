// What the overview and a queue's page both show of a queue: its state badge and
// its figures (throughput, failure rate, p50/p95 duration and wait, oldest pending).

import { fmtDuration, fmtNumber, fmtPercent, fmtRate, h } from "./dom.js";

export function pausedBadge(summary) {
  return summary.paused
    ? h("span", { class: "badge st-paused", test: "queue-state" }, "paused")
    : h("span", { class: "badge st-active", test: "queue-state" }, "active");
}

export function statsBlock(stats) {
  const d = stats.duration || {};
  const w = stats.wait || {};
  const t = stats.totals || {};
  return h("dl", { class: "stats", test: "queue-stats" },
    h("dt", null, "throughput"), h("dd", { test: "throughput" }, fmtRate(stats.throughput)),
    h("dt", null, "failure rate"), h("dd", { test: "failure-rate" }, fmtPercent(stats.failureRate)),
    h("dt", null, "duration p50 / p95"),
    h("dd", { test: "duration" }, `${fmtDuration(d.p50)} / ${fmtDuration(d.p95)}`),
    h("dt", null, "wait p50 / p95"), h("dd", { test: "wait" }, `${fmtDuration(w.p50)} / ${fmtDuration(w.p95)}`),
    h("dt", null, "oldest pending"), h("dd", { test: "oldest-pending" }, fmtDuration(stats.oldestPendingAge)),
    h("dt", null, "all time"),
    h("dd", { test: "totals" }, `${fmtNumber(t.completed)} done · ${fmtNumber(t.failed)} failed · ${fmtNumber(t.cancelled)} cancelled`));
}
