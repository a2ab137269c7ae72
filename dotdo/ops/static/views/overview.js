// Overview (#/): every queue with its counts by state, throughput and failure rate
// over time (a chart of the last 15 minutes, hour or day), p50/p95 duration and
// wait, oldest pending age; and the latest job events. Counts update from the live
// stream (or polling); a queue's stats reload when its jobs finish (at most every
// 3 s) and every 30 s.

import { get, paths } from "../lib/api.js";
import { throughputChart } from "../lib/chart.js";
import { pausedBadge, statsBlock } from "../lib/stats.js";
import {
  ago, badge, eventJobId, fmtNumber, h, jobHref, queueHref, replace, short, statesOf,
} from "../lib/dom.js";

const FEED_SIZE = 15;
const STATS_EVERY = 30000;
// The chart's spans: window and bucket in seconds (the API takes at most 1,440 buckets).
const SPANS = {
  "15m": { window: 900, bucket: 15, label: "last 15 minutes" },
  "1h": { window: 3600, bucket: 60, label: "last hour" },
  "24h": { window: 86400, bucket: 1800, label: "last 24 hours" },
};
const SPAN_KEY = "dotdo.span";

// The span chosen last (kept in localStorage across visits when it is allowed).
let spanKey = "1h";
try { if (SPANS[localStorage.getItem(SPAN_KEY)]) spanKey = localStorage.getItem(SPAN_KEY); } catch (e) { /* off */ }
const chosenSpan = () => spanKey;

function stateCell(q, state, n) {
  return h("a", {
    class: `count st-${state}${n ? "" : " zero"}`, href: queueHref(q, { status: state }),
    test: `count-${state}`, title: `${state} jobs in ${q}`,
  }, h("span", { class: "n" }, fmtNumber(n)), h("span", { class: "label" }, state));
}

// One queue's card: {el, update(summary), reloadStats(), finished (completed + failed
// when last updated)}.
function queueCard(summary) {
  const q = summary.id;
  const counts = h("div", { class: "counts" });
  const head = h("div", { class: "card-head" });
  const statsBox = h("div", { class: "stats-box" }, h("p", { class: "muted" }, "loading stats…"));

  const card = { el: null, update, reloadStats, finished: null };

  function update(s) {
    card.finished = s.counts.completed + s.counts.failed;
    replace(head,
      h("h2", null, h("a", { href: queueHref(q), test: "queue-link" }, q)),
      pausedBadge(s),
      h("span", { class: "muted" }, `${s.workers} worker${s.workers === 1 ? "" : "s"}`),
      h("span", { class: "muted" }, s.concurrency ? `concurrency ${s.concurrency}` : "no concurrency limit"),
      h("a", { class: "aside", href: `#/dead/${encodeURIComponent(q)}` }, "dead letters"));
    replace(counts, statesOf(s.counts).map((st) => stateCell(q, st, s.counts[st] || 0)));
  }

  async function reloadStats() {
    try {
      const stats = await get(paths.metrics(q, SPANS[chosenSpan()]));
      replace(statsBox, h("div", { class: "stats-row" }, statsBlock(stats), throughputChart(stats, "throughput-chart")));
    } catch (e) {
      replace(statsBox, h("p", { class: "error-text" }, `stats unavailable: ${e.message}`));
    }
  }

  update(summary);
  card.el = h("section", { class: "card queue-card", test: "queue-card", "data-queue": q }, head, counts, statsBox);
  return card;
}

function feedItem(event) {
  const job = event.data || {};
  const id = eventJobId(event);
  const kind = (event.type || "").replace(/^Job\./, "");
  return h("li", { test: "event", "data-job": id },
    ago(event.at), " ",
    h("a", { href: queueHref(event.queue) }, event.queue), " ",
    h("a", { class: "mono", href: jobHref(event.queue, id) }, id), " ",
    h("span", { class: "muted" }, job.type || ""), " ",
    badge(kind || job.status, "event-kind"),
    job.error ? h("span", { class: "error-text" }, ` ${short(job.error, 60)}`) : null);
}

export async function render(ctx) {
  const status = await get(paths.status());
  if (!ctx.alive()) return;

  const nodes = (status.ray && status.ray.nodes) || [];
  const objectCount = Object.values(status.classes || {}).reduce((a, b) => a + b, 0);
  const summary = h("section", { class: "summary", test: "summary" },
    h("div", { class: "tile" }, h("span", { class: "n", test: "queue-count" }, fmtNumber(status.queues.length)), "queues"),
    h("a", { class: "tile", href: "#/workers" },
      h("span", { class: "n", test: "workers-online" }, `${status.workers.online}/${status.workers.total}`), "workers online"),
    h("div", { class: "tile" },
      h("span", { class: "n" }, nodes.length ? `${nodes.filter((n) => n.alive).length}/${nodes.length}` : "–"),
      nodes.length ? "Ray nodes alive" : "Ray nodes (objects in process)"),
    h("a", { class: "tile", href: "#/objects" }, h("span", { class: "n" }, fmtNumber(objectCount)), "durable objects"));

  const cards = new Map();
  const dirty = new Set();
  const reloadDirty = ctx.debounced(3000, () => {
    for (const q of dirty) if (cards.has(q)) cards.get(q).reloadStats();
    dirty.clear();
  });
  function markDirty(q) {
    dirty.add(q);
    reloadDirty();
  }
  const list = h("div", { class: "queues", test: "queues" });
  for (const s of status.queues) {
    const card = queueCard(s);
    cards.set(s.id, card);
    list.appendChild(card.el);
    card.reloadStats();
  }
  if (!status.queues.length) {
    list.appendChild(h("section", { class: "card", test: "no-queues" },
      h("p", null, "No queues under this storage root yet. Enqueue a job (dotdo jobs enqueue QUEUE TYPE, or POST /api/queues/{q}/jobs) and it shows here.")));
  }

  const feed = h("ol", { class: "feed", test: "event-feed" },
    h("li", { class: "muted", test: "feed-empty" }, "job events show here as they happen"));
  const span = h("select", { test: "span-select", title: "the span of the charts" },
    Object.entries(SPANS).map(([key, sp]) => h("option", { value: key, selected: key === chosenSpan() }, sp.label)));
  span.addEventListener("change", () => {
    spanKey = span.value;
    try { localStorage.setItem(SPAN_KEY, spanKey); } catch (e) { /* storage off: this visit only */ }
    cards.forEach((c) => c.reloadStats());
  });
  replace(ctx.root,
    h("div", { class: "title-row" }, h("h1", null, "Overview"), h("label", { class: "aside muted" }, "charts: ", span)),
    summary, list,
    h("section", { class: "card" }, h("h2", null, "Latest job events"), feed));

  // Live counts; a queue that appears or goes means a new layout: render again.
  ctx.on("counts", (queues) => {
    const ids = queues.map((x) => x.id).sort().join("\n");
    if (ids !== [...cards.keys()].sort().join("\n")) {
      ctx.reload();
      return;
    }
    for (const s of queues) {
      const card = cards.get(s.id);
      // Jobs finished since the last counts: the stats moved too (this also covers
      // polling, when no job events come).
      if (card.finished !== s.counts.completed + s.counts.failed) markDirty(s.id);
      card.update(s);
    }
  });
  ctx.on("job", (event) => {
    const empty = feed.querySelector('[data-test="feed-empty"]');
    if (empty) empty.remove();
    feed.insertBefore(feedItem(event), feed.firstChild);
    while (feed.children.length > FEED_SIZE) feed.removeChild(feed.lastChild);
    if (["Job.completed", "Job.failed"].includes(event.type)) markDirty(event.queue);
  });
  ctx.every(STATS_EVERY, () => cards.forEach((c) => c.reloadStats()));
}
