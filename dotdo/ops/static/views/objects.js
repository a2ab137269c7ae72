// Durable objects, read from their files (looking wakes none): classes
// (#/objects), the objects of a class (#/objects/C, paged), and one object
// (#/objects/C/ID): its keys, its own tables, alarm, schedules and step journal.

import { get, paths } from "../lib/api.js";
import {
  ago, facts, fmtBytes, fmtDuration, fmtNumber, fmtTime, h, jsonBlock, objectHref, replace, short, table,
} from "../lib/dom.js";

export async function renderClasses(ctx) {
  const classes = await get(paths.classes());
  if (!ctx.alive()) return;
  const rows = Object.entries(classes).sort().map(([cls, n]) => h("tr", { test: "class-row", "data-class": cls },
    h("td", null, h("a", { href: objectHref(cls), test: "class-link" }, cls)),
    h("td", { class: "num" }, fmtNumber(n))));
  replace(ctx.root, h("h1", null, "Durable objects"),
    h("section", { class: "card" }, table(["class", "objects"], rows, { test: "classes-table" })));
}

export async function renderClass(ctx) {
  const cls = ctx.params.cls;
  const cursors = [null];
  let page = 0;
  const box = h("div");
  const pager = h("div", { class: "pager", test: "pager" });

  async function load() {
    const answer = await get(paths.objects(cls, cursors[page]));
    if (!ctx.alive()) return;
    replace(box, table(["id", "size", "modified"], answer.objects.map((o) => h("tr", { test: "object-row", "data-id": o.id },
      h("td", { class: "mono" }, h("a", { href: objectHref(cls, o.id), test: "object-link" }, o.id)),
      h("td", { class: "num" }, fmtBytes(o.size)),
      h("td", null, ago(o.modified)))), { test: "objects-table" }));
    const prev = h("button", { test: "page-prev", disabled: page === 0 }, "‹ Previous");
    const next = h("button", { test: "page-next", disabled: !answer.cursor }, "Next ›");
    prev.addEventListener("click", () => { page -= 1; load(); });
    next.addEventListener("click", () => { cursors[page + 1] = answer.cursor; page += 1; load(); });
    replace(pager, prev, h("span", null, `page ${page + 1}`), next);
  }
  await load();
  replace(ctx.root,
    h("h1", null, h("a", { href: "#/objects" }, "Objects"), " / ", h("span", { test: "class-name" }, cls)),
    h("section", { class: "card" }, box, pager));
}

function stepRow(st) {
  return h("tr", { test: "step-row", "data-step": st.step },
    h("td", { class: "mono step-id" }, st.step),
    h("td", { class: "num" }, String(st.attempts)),
    h("td", null, fmtTime(st.startedAt)),
    h("td", null, st.finishedAt ? fmtDuration(st.finishedAt - st.startedAt) : h("span", { class: "badge st-failed" }, "not finished")),
    h("td", null, st.finishedAt ? h("code", { title: JSON.stringify(st.result) }, short(st.result, 60)) : "–"),
    h("td", null, st.errors.length ? h("details", { test: "step-errors" },
      h("summary", null, `${st.errors.length} failed attempt${st.errors.length === 1 ? "" : "s"}`),
      st.errors.map((e) => h("div", { class: "step-error" },
        h("span", { class: "muted" }, `#${e.attempt} ${fmtTime(e.startedAt)} `),
        h("pre", { class: "error-text" }, e.error)))) : ""));
}

export async function renderObject(ctx) {
  const { cls, id } = ctx.params;
  const [obj, steps] = await Promise.all([get(paths.object(cls, id)), get(paths.steps(cls, id))]);
  if (!ctx.alive()) return;
  const kvRows = Object.entries(obj.kv || {}).map(([k, v]) => h("tr", { test: "kv-row", "data-key": k },
    h("td", { class: "mono" }, k), h("td", null, jsonBlock(v))));
  const tableRows = (obj.tables || []).map((t) => h("tr", { test: "table-row" },
    h("td", { class: "mono" }, t.name), h("td", { class: "num" }, fmtNumber(t.rows))));
  const scheduleRows = (obj.schedules || []).map((s) => h("tr", { test: "object-schedule" },
    h("td", { class: "mono" }, s.name), h("td", null, s.spec), h("td", null, ago(s.nextRun)),
    h("td", null, ago(s.lastRun)), h("td", { class: "num" }, fmtNumber(s.ticks)),
    h("td", { class: "error-text" }, s.lastError || "")));
  replace(ctx.root,
    h("h1", null, h("a", { href: "#/objects" }, "Objects"), " / ", h("a", { href: objectHref(cls) }, cls), " / ",
      h("span", { class: "mono", test: "object-id" }, id)),
    h("section", { class: "card" }, facts([
      ["file", h("code", { test: "object-path" }, obj.path), true],
      ["size", fmtBytes(obj.size)],
      ["modified", [fmtTime(obj.modified), " (", ago(obj.modified), ")"]],
      ["alarm", obj.alarm ? [fmtTime(obj.alarm), " (", ago(obj.alarm), ")"] : "none"],
      ["journaled steps", fmtNumber(obj.steps)],
    ], "object-facts")),
    h("section", { class: "card" }, h("h2", null, "Storage (key-value, first 100 keys)"),
      table(["key", "value"], kvRows, { test: "kv-table" })),
    h("section", { class: "card" }, h("h2", null, "Tables"), table(["table", "rows"], tableRows, { test: "tables-table" })),
    scheduleRows.length ? h("section", { class: "card" }, h("h2", null, "Schedules"),
      table(["schedule", "spec", "next run", "last run", "ticks", "last error"], scheduleRows, { test: "object-schedules" })) : null,
    h("section", { class: "card" }, h("h2", null, "Step journal (newest first)"),
      table(["step", "attempts", "started", "took", "result", "failed attempts"], steps.map(stepRow), { test: "steps-table" })));
}
