// One job (#/jobs/Q/ID): its facts, payload, result, error, and every attempt with
// its worker, times, outcome, error and traceback; retry (failed) and cancel
// (unfinished). The page follows the job live until it is finished.

import { act, get, notify, paths, post } from "../lib/api.js";
import {
  FINISHED, ago, badge, eventJobId, keepingOpen, facts, fmtDuration, fmtTime, h, jsonBlock, queueHref, replace, table,
} from "../lib/dom.js";

const POLL_EVERY = 2000;

function attemptRow(a) {
  const took = a.startedAt && a.finishedAt ? fmtDuration(a.finishedAt - a.startedAt) : "–";
  return h("tr", { test: "attempt", "data-outcome": a.outcome },
    h("td", { class: "num" }, String(a.attempt)),
    h("td", null, a.worker || "–"),
    h("td", null, fmtTime(a.startedAt)),
    h("td", null, took),
    h("td", null, badge(a.outcome, "attempt-outcome")),
    h("td", { class: "attempt-error" },
      a.error ? h("div", { class: "error-text", test: "attempt-error" }, a.error) : null,
      a.trace ? h("details", { test: "traceback", "data-key": `attempt-${a.attempt}` }, h("summary", null, "traceback"),
        h("pre", { class: "trace" }, a.trace)) : null));
}

export async function render(ctx) {
  const { q, id } = ctx.params;
  const head = h("div", { class: "title-row" });
  const body = h("div", { test: "job" });
  replace(ctx.root, head, body);
  let job = null;

  function draw(j) {
    job = j;
    const retry = h("button", { test: "job-retry", disabled: j.status !== "failed",
      title: "send back to the queue with fresh retries" }, "Retry");
    const cancel = h("button", { class: "danger", test: "job-cancel", disabled: FINISHED.includes(j.status) }, "Cancel");
    retry.addEventListener("click", () => act(retry, async () => {
      draw({ ...job, ...(await post(paths.retry(q, id))), attempts: job.attempts });
      notify(`retried ${id}`);
      refresh();
    }));
    cancel.addEventListener("click", () => {
      if (!window.confirm(`Cancel job ${id}?`)) return;
      act(cancel, async () => {
        await post(paths.cancel(q, id));
        notify(`cancel sent to ${id}`);
        refresh();
      });
    });
    replace(head,
      h("h1", null, h("a", { href: queueHref(q) }, q), " / ", h("span", { class: "mono", test: "job-id" }, id)),
      badge(j.status, "job-status"), retry, cancel);

    const progress = j.progress !== null && j.progress !== undefined
      ? `${Math.round(j.progress * 100)} %${j.progressMessage ? ` · ${j.progressMessage}` : ""}` : null;
    keepingOpen(body, () => replace(body,
      h("section", { class: "card" }, facts([
        ["type", h("span", { test: "job-type" }, j.type)],
        ["status", j.status],
        // attemptCount restarts at a retry; the list below keeps every attempt ever.
        ["attempts", h("span", { test: "job-attempts" }, (j.attempts || []).length === j.attemptCount
          ? String(j.attemptCount) : `${(j.attempts || []).length} (${j.attemptCount} since the last retry)`)],
        ["max retries", j.maxRetries === null ? "none" : String(j.maxRetries)],
        ["priority", String(j.priority)],
        ["created", [fmtTime(j.createdAt), " (", ago(j.createdAt), ")"]],
        j.runAt && !FINISHED.includes(j.status) ? ["runs", [fmtTime(j.runAt), " (", ago(j.runAt), ")"]] : null,
        j.startedAt ? ["started", fmtTime(j.startedAt)] : null,
        j.finishedAt ? ["finished", fmtTime(j.finishedAt)] : null,
        j.worker ? ["worker", j.worker] : null,
        ["timeout", fmtDuration(j.timeout)],
        progress ? ["progress", progress] : null,
        j.group ? ["group", j.group] : null,
        j.rateKey ? ["rate key", j.rateKey] : null,
        j.dedupeKey ? ["dedupe key", j.dedupeKey] : null,
        j.waitingOn ? ["waiting on", `${j.waitingOn} parent jobs`] : null,
        // The latest error in full; every attempt's error and traceback are below.
        j.error ? ["error", h("pre", { class: "error-text", test: "job-error" }, j.error), true] : null,
      ], "job-facts")),
      h("div", { class: "two" },
        h("section", { class: "card" }, h("h2", null, "Payload"), jsonBlock(j.payload, "job-payload")),
        h("section", { class: "card" }, h("h2", null, "Result"),
          j.status === "completed" ? jsonBlock(j.result, "job-result")
            : h("p", { class: "muted", test: "job-result" }, `no result: the job is ${j.status}`))),
      h("section", { class: "card" }, h("h2", null, "Attempts"),
        table(["#", "worker", "started", "took", "outcome", "error"], (j.attempts || []).map(attemptRow),
          { test: "attempts" }))));
  }

  // Drawn again only when something changed: a redraw resets what the reader
  // selected and where, for no news.
  let drawn = "";
  async function load() {
    const j = await get(paths.job(q, id));
    const key = JSON.stringify(j);
    if (ctx.alive() && key !== drawn) {
      drawn = key;
      draw(j);
    }
  }
  // A reload in flight is not started again: live events and the timer both ask.
  let loading = null;
  function refresh() {
    if (!loading) loading = load().catch(() => {}).finally(() => { loading = null; });
    return loading;
  }

  await load();
  ctx.on("job", (event) => {
    if (event.queue === q && eventJobId(event) === id) refresh();
  });
  // Without the stream, or between events (progress), look again while unfinished.
  ctx.every(POLL_EVERY, () => { if (job && !FINISHED.includes(job.status)) refresh(); });
}
