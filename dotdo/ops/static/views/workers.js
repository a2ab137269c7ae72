// Workers (#/workers): every worker the queues know, with its node, process, the jobs
// it runs now, its last heartbeat and what it finished. Reloads every 5 s.

import { get, paths } from "../lib/api.js";
import { ago, fmtNumber, h, jobHref, queueHref, replace, table } from "../lib/dom.js";

function workerRow(w) {
  return h("tr", { test: "worker-row", "data-worker": w.id },
    h("td", { class: "mono" }, w.id),
    h("td", null, h("a", { href: queueHref(w.queue) }, w.queue)),
    h("td", null, w.online
      ? h("span", { class: "badge st-completed", test: "worker-online" }, "online")
      : h("span", { class: "badge st-cancelled", test: "worker-online" }, "offline")),
    h("td", { class: "mono" }, w.node ? String(w.node).slice(0, 12) : "–"),
    h("td", { class: "num" }, w.pid ?? "–"),
    h("td", { class: "num" }, w.concurrency ?? "–"),
    h("td", null, (w.running || []).length
      ? w.running.map((id) => [h("a", { class: "mono", href: jobHref(w.queue, id) }, id), " "])
      : h("span", { class: "muted" }, "idle")),
    h("td", null, ago(w.lastSeen)),
    h("td", { class: "num" }, fmtNumber(w.completed)),
    h("td", { class: "num" }, fmtNumber(w.failed)));
}

export async function render(ctx) {
  const box = h("div");
  async function load() {
    const workers = await get(paths.workers());
    if (!ctx.alive()) return;
    const online = workers.filter((w) => w.online).length;
    replace(box,
      h("p", { class: "muted", test: "workers-summary" }, `${online} of ${workers.length} online`),
      table(["worker", "queue", "state", "node", "pid", "concurrency", "running", "last heartbeat", "completed", "failed"],
        workers.map(workerRow), { test: "workers-table" }));
  }
  await load();
  replace(ctx.root, h("h1", null, "Workers"), h("section", { class: "card" }, box));
  ctx.every(5000, () => load().catch(() => {}));
}
