// Schedules (#/schedules): every schedule of every durable object, soonest first,
// read from the objects' files (looking wakes none of them).

import { get, paths } from "../lib/api.js";
import { ago, fmtNumber, h, objectHref, replace, table } from "../lib/dom.js";

function scheduleRow(s) {
  return h("tr", { test: "schedule-row", "data-name": s.name },
    h("td", null, h("a", { href: objectHref(s.class) }, s.class)),
    h("td", { class: "mono" }, h("a", { href: objectHref(s.class, s.id) }, s.id)),
    h("td", { class: "mono" }, s.name),
    h("td", null, s.spec),
    h("td", null, ago(s.nextRun)),
    h("td", null, ago(s.lastRun)),
    h("td", { class: "num" }, fmtNumber(s.ticks)),
    h("td", null, s.lastError
      ? h("span", { class: "error-text", test: "schedule-error", title: s.lastError }, s.lastError)
      : h("span", { class: "badge st-completed" }, "ok")));
}

export async function render(ctx) {
  const box = h("div");
  async function load() {
    const schedules = await get(paths.schedules());
    if (!ctx.alive()) return;
    replace(box, table(["class", "object", "schedule", "spec", "next run", "last run", "ticks", "last outcome"],
      schedules.map(scheduleRow), { test: "schedules-table" }));
  }
  await load();
  replace(ctx.root, h("h1", null, "Schedules"), h("section", { class: "card" }, box));
  ctx.every(10000, () => load().catch(() => {}));
}
