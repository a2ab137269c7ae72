// One queue (#/queues/Q?status=S&type=T): pause/resume, the concurrency limit, its
// stats and chart, jobs by type, and its jobs in tabs by state with search,
// pagination, per-row retry/cancel and a bulk "retry all failed".
//
// The tab and the type filter live in the address (bookmarkable; a click on a tab is a
// navigation). The page cursor does not: pages move under a live queue, so a
// reload starts on the first page.

import { act, get, notify, patch, paths, post, showError, ApiError } from "../lib/api.js";
import { throughputChart } from "../lib/chart.js";
import {
  FINISHED, ago, badge, firstLine, fmtDuration, fmtNumber, h, jobHref, parkedText, queueHref, replace, short,
  statesOf, table,
} from "../lib/dom.js";
import { pausedBadge, statsBlock } from "../lib/stats.js";

const PAGE = 25;

// When a job last moved, or moves next, in the terms of its status.
function when(job) {
  if (job.waitingFor) return parkedText(job); // parked: what it waits for, when it wakes
  switch (job.status) {
    case "delayed":
    case "retrying":
      return ["runs ", ago(job.runAt)];
    case "waiting":
      return job.waitingOn ? `waits for ${job.waitingOn} parent job${job.waitingOn === 1 ? "" : "s"}`
        : ["created ", ago(job.createdAt)];
    case "running":
    case "stuck":
      return ["started ", ago(job.startedAt),
        job.progress !== null && job.progress !== undefined ? ` · ${Math.round(job.progress * 100)} %` : null];
    case "completed":
    case "failed":
    case "cancelled":
      return ["finished ", ago(job.finishedAt)];
    default:
      return ["created ", ago(job.createdAt)];
  }
}

export async function render(ctx) {
  const q = ctx.params.q;
  const status = ctx.query.get("status") || "all";
  const type = ctx.query.get("type") || "";
  const info = await get(paths.queue(q));
  if (!ctx.alive()) return;
  const states = statesOf(info.counts);
  const tabNames = ["all", ...states];
  if (!tabNames.includes(status)) {
    throw new ApiError(400, `no job status ${JSON.stringify(status)}: one of ${tabNames.join(", ")}`, "");
  }

  // -- header: state and pause/resume ----------------------------------------------------
  const stateBox = h("span", { class: "state-box" });
  const toggle = h("button", { test: "pause-toggle" });
  let paused = info.paused;
  function showState(summary) {
    paused = summary.paused;
    replace(stateBox, pausedBadge(summary));
    toggle.textContent = paused ? "Resume" : "Pause";
    toggle.title = paused ? "let workers claim jobs again" : "stop handing out jobs; running ones finish";
  }
  toggle.addEventListener("click", () => act(toggle, async () => {
    const summary = await post(paused ? paths.resume(q) : paths.pause(q));
    showState(summary);
    notify(`${q} ${summary.paused ? "paused" : "resumed"}`);
  }));
  showState(info);

  // -- settings: concurrency -------------------------------------------------------------
  const conc = h("input", {
    type: "number", min: "1", step: "1", id: "concurrency", test: "concurrency-input",
    placeholder: "no limit", value: info.settings.concurrency ?? "",
  });
  const save = h("button", { test: "concurrency-save" }, "Save");
  const settingsForm = h("form", { class: "inline", test: "settings-form" },
    h("label", { for: "concurrency" }, "Concurrency "), conc, save,
    h("span", { class: "muted", title: "jobs running at once across all workers; empty: no limit" }, "at once"));
  settingsForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const raw = conc.value.trim();
    const value = raw === "" ? null : Number(raw);
    act(save, async () => {
      const settings = await patch(paths.settings(q), { concurrency: value });
      conc.value = settings.concurrency ?? "";
      notify(`concurrency of ${q}: ${settings.concurrency ?? "no limit"}`);
    });
  });
  const s = info.settings;
  const keep = (k) => {
    if (!k) return "all";
    const parts = [];
    if (k.count !== null && k.count !== undefined) parts.push(`latest ${fmtNumber(k.count)}`);
    if (k.age !== null && k.age !== undefined) parts.push(`for ${fmtDuration(k.age)}`);
    return parts.join(", ") || "all";
  };
  const otherSettings = h("p", { class: "muted settings-line", test: "settings" },
    `lease timeout ${s.lease_timeout} s · rate ${s.rate || "none"} · key rate ${s.key_rate || "none"} · ` +
    `group concurrency ${s.group_concurrency ?? "none"} · keep completed: ${keep(s.keep_completed)} · keep failed: ${keep(s.keep_failed)}`);

  // -- stats and types ---------------------------------------------------------------------
  const statsBox = h("div", { class: "stats-row" }, statsBlock(info.stats), throughputChart(info.stats, "throughput-chart"));
  const typeRows = Object.entries(info.types || {}).map(([t, byStatus]) => h("tr", { test: "type-row" },
    h("td", null, h("a", { href: queueHref(q, { status: "all", type: t }) }, t)),
    h("td", null, Object.entries(byStatus).map(([st, n]) => [badge(st), ` ${fmtNumber(n)} `]))));

  // -- jobs: tabs, search, bulk, table, pager -----------------------------------------------
  const tabs = h("div", { class: "tabs", role: "tablist", test: "tabs" });
  function showTabs(counts) {
    const total = states.reduce((a, st) => a + (counts[st] || 0), 0);
    replace(tabs, tabNames.map((st) => h("a", {
      role: "tab", class: `tab${st === status ? " active" : ""}`, "aria-selected": String(st === status),
      href: queueHref(q, type ? { status: st, type } : { status: st }), test: `tab-${st}`,
    }, st, " ", h("span", { class: "n" }, fmtNumber(st === "all" ? total : counts[st] || 0)))));
  }
  showTabs(info.counts);

  const search = h("input", {
    type: "search", id: "search", test: "search-input", placeholder: "job id, or a type to filter by", value: type,
  });
  const searchForm = h("form", { class: "inline search", test: "search-form" },
    search, h("button", { test: "search-submit" }, "Search"),
    type ? h("a", { class: "chip", href: queueHref(q, { status }), test: "type-filter", title: "clear the filter" },
      `type: ${type} ×`) : null);
  searchForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const text = search.value.trim();
    if (!text) { window.location.hash = queueHref(q, { status }); return; }
    // An exact job id goes to the job; anything else filters by type.
    act(null, async () => {
      try {
        await get(paths.job(q, text));
        window.location.hash = jobHref(q, text);
      } catch (e) {
        if (!(e instanceof ApiError) || e.status !== 404) throw e;
        window.location.hash = queueHref(q, { status, type: text });
      }
    });
  });

  const retryAll = h("button", { class: "danger", test: "retry-all" });
  // With a type filter on, the bulk retry takes only that type (the count of those is
  // not in the live counts, so the label names the type instead).
  let failedNow = info.counts.failed || 0;
  function showRetryAll(counts) {
    failedNow = counts.failed || 0;
    retryAll.textContent = type ? `Retry all failed ${type} jobs` : `Retry all failed (${fmtNumber(failedNow)})`;
    retryAll.disabled = failedNow === 0;
  }
  showRetryAll(info.counts);
  retryAll.addEventListener("click", () => {
    const which = type ? `failed ${type} jobs` : `${fmtNumber(failedNow)} failed jobs`;
    if (!window.confirm(`Retry all ${which} of ${q}? Each goes back to the queue with fresh retries.`)) return;
    act(retryAll, async () => {
      const answer = await post(paths.retryBulk(q), type ? { status: "failed", type } : { status: "failed" });
      notify(`retried ${fmtNumber(answer.retried)} failed jobs of ${q}`);
      reloadJobs();
    });
  });

  const jobsBox = h("div", { test: "jobs" });
  const pager = h("div", { class: "pager", test: "pager" });
  const cursors = [null]; // cursor of each page shown so far: page i starts after cursors[i]
  let page = 0;
  let next = null;
  let shown = "";

  function rowActions(job, row) {
    const buttons = [];
    if (job.status === "failed") {
      const b = h("button", { test: "retry", title: "send back to the queue with fresh retries" }, "Retry");
      b.addEventListener("click", () => act(b, async () => {
        const updated = await post(paths.retry(q, job.$id));
        row.replaceWith(jobRow(updated));
        notify(`retried ${job.$id}`);
      }));
      buttons.push(b);
    }
    if (!FINISHED.includes(job.status)) {
      const b = h("button", { class: "danger", test: "cancel" }, "Cancel");
      b.addEventListener("click", () => {
        if (!window.confirm(`Cancel job ${job.$id}?`)) return;
        act(b, async () => {
          const updated = await post(paths.cancel(q, job.$id));
          row.replaceWith(jobRow(updated));
          notify(`cancel sent to ${job.$id}`);
        });
      });
      buttons.push(b);
    }
    return buttons;
  }

  function jobRow(job) {
    const row = h("tr", { test: "job-row", "data-job": job.$id, "data-status": job.status });
    replace(row,
      h("td", { class: "mono" }, h("a", { href: jobHref(q, job.$id), test: "job-link" }, job.$id)),
      h("td", null, job.type),
      h("td", null, badge(job.status)),
      h("td", { class: "num" }, String(job.attempts)),
      h("td", null, when(job)),
      h("td", { class: "error-cell", title: job.error || "" }, job.error ? short(firstLine(job.error), 70) : ""),
      h("td", { class: "actions" }, rowActions(job, row)));
    return row;
  }

  async function loadPage() {
    const answer = await get(paths.jobs(q, {
      status: status === "all" ? null : status, type: type || null, limit: PAGE, cursor: cursors[page],
    }));
    if (!ctx.alive()) return;
    const key = JSON.stringify([page, answer]);
    if (key === shown) return; // nothing new: keep the rows (and the reader's place)
    shown = key;
    next = answer.cursor;
    replace(jobsBox, table(["id", "type", "status", "attempts", "when", "error", ""],
      answer.jobs.map(jobRow), { test: "jobs-table" }));
    const first = h("button", { test: "page-first", disabled: page === 0 }, "« First");
    const prev = h("button", { test: "page-prev", disabled: page === 0 }, "‹ Previous");
    const more = h("button", { test: "page-next", disabled: next === null || next === undefined }, "Next ›");
    first.addEventListener("click", () => { page = 0; reloadJobs(); });
    prev.addEventListener("click", () => { page -= 1; reloadJobs(); });
    more.addEventListener("click", () => {
      cursors[page + 1] = next;
      page += 1;
      reloadJobs();
    });
    replace(pager, first, prev, h("span", { test: "page-number" }, `page ${page + 1}`), more);
  }
  function reloadJobs() {
    loadPage().catch(showError);
  }

  replace(ctx.root,
    h("div", { class: "title-row" },
      h("h1", null, h("a", { href: "#/" }, "Queues"), " / ", h("span", { test: "queue-name" }, q)),
      stateBox, toggle, settingsForm,
      h("a", { class: "aside", href: `#/dead/${encodeURIComponent(q)}` }, "dead letters"),
      h("a", { class: "aside", href: "#/workers" }, `${info.workers} worker${info.workers === 1 ? "" : "s"}`)),
    otherSettings,
    h("section", { class: "card" },
      h("h2", null, "Jobs"), tabs,
      h("div", { class: "toolbar" }, searchForm, retryAll),
      jobsBox, pager),
    h("section", { class: "card" }, h("h2", null, "Last hour"), statsBox),
    typeRows.length ? h("section", { class: "card" }, h("h2", null, "Jobs by type"),
      table(["type", "by status"], typeRows, { test: "types-table" })) : null);
  await loadPage();

  // Live: counts move the tabs, the state and the bulk button at once; job events of
  // this queue reload the page of jobs shown (at most once a second or so).
  // Counts that changed also reload the jobs: with the stream down (polling) no job
  // events come, and the page must still move.
  const reloadSoon = ctx.debounced(1000, reloadJobs);
  let lastCounts = JSON.stringify(info.counts);
  ctx.on("counts", (queues) => {
    const mine = queues.find((x) => x.id === q);
    if (!mine) return;
    showTabs(mine.counts);
    showRetryAll(mine.counts);
    if (mine.paused !== paused) showState(mine);
    const now = JSON.stringify(mine.counts);
    if (now !== lastCounts) { lastCounts = now; reloadSoon(); }
  });
  ctx.on("job", (event) => { if (event.queue === q) reloadSoon(); });
  ctx.every(60000, () => get(paths.metrics(q)).then((stats) => {
    replace(statsBox, statsBlock(stats), throughputChart(stats, "throughput-chart"));
  }).catch(() => {}));
}
