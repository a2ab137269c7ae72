// Dead letters (#/dead/Q): a queue's failed jobs grouped by the first line of their
// error, biggest group first, with the latest jobs of each group. #/dead alone picks
// the queue (the one with the most failed jobs when there is any).

import { act, get, notify, paths, post } from "../lib/api.js";
import { ago, fmtNumber, h, jobHref, queueHref, replace, table } from "../lib/dom.js";

function queuePicker(queues, current) {
  return h("div", { class: "tabs", test: "dead-queues" }, queues.map((x) => h("a", {
    class: `tab${x.id === current ? " active" : ""}`, href: `#/dead/${encodeURIComponent(x.id)}`,
    test: "dead-queue",
  }, x.id, " ", h("span", { class: "n" }, fmtNumber(x.counts.failed || 0)))));
}

function groupRow(q, g, reload) {
  // Retry the jobs shown for this group (the latest five): a quick way to try a fix.
  const retry = h("button", { test: "dead-retry" }, `Retry ${g.jobs.length} shown`);
  retry.addEventListener("click", () => act(retry, async () => {
    for (const id of g.jobs) await post(paths.retry(q, id));
    notify(`retried ${g.jobs.length} jobs of ${q}`);
    reload();
  }));
  return h("tr", { test: "dead-group" },
    h("td", { class: "num", test: "dead-count" }, fmtNumber(g.count)),
    h("td", null, h("pre", { class: "error-text inline-pre", test: "dead-error" }, g.error)),
    h("td", null, g.types.map((t) => [h("a", { href: queueHref(q, { status: "failed", type: t }) }, t), " "])),
    h("td", null, ago(g.lastAt)),
    h("td", null, g.jobs.map((id) => [h("a", { class: "mono", href: jobHref(q, id), test: "dead-job" }, id), " "])),
    h("td", null, retry));
}

export async function render(ctx) {
  const queues = await get(paths.queues());
  if (!ctx.alive()) return;
  let q = ctx.params.q;
  if (!q) {
    if (!queues.length) {
      replace(ctx.root, h("h1", null, "Dead letters"), h("section", { class: "card" }, "No queues yet."));
      return;
    }
    const worst = [...queues].sort((a, b) => (b.counts.failed || 0) - (a.counts.failed || 0))[0];
    q = worst.id;
  }
  const box = h("div");
  async function load() {
    const groups = await get(paths.deadLetters(q));
    if (!ctx.alive()) return;
    replace(box, table(["failed", "error", "types", "last", "latest jobs", ""],
      groups.map((g) => groupRow(q, g, () => load().catch(() => {}))), { test: "dead-table" }));
  }
  await load();
  replace(ctx.root,
    h("h1", null, "Dead letters: ", h("a", { href: queueHref(q, { status: "failed" }), test: "dead-queue-name" }, q)),
    queuePicker(queues, q),
    h("section", { class: "card" },
      h("p", { class: "muted" }, "Failed jobs grouped by the first line of their error."), box));
  ctx.every(10000, () => load().catch(() => {}));
}
