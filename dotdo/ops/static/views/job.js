// One job (#/jobs/Q/ID): its facts (its trace id, a link when the server has a trace
// viewer's address), its life as a waterfall (timeline), payload, result, error, every
// attempt with its worker, times, outcome, error and traceback, and the log lines of
// each attempt; retry (failed) and cancel (unfinished). A job that parked (durable
// waits) shows what it waits for and when it wakes, its open awakeables with Approve /
// Reject, the points its runs met in order, and links to its parent and children. The
// page follows the job live until it is finished.

import { ApiError, act, get, notify, paths, post, serverInfo, showError } from "../lib/api.js";
import {
  FINISHED, ago, badge, eventJobId, keepingOpen, facts, fmtDuration, fmtTime, fmtTimeMs, h, jobHref, jsonBlock,
  pointKind, queueHref, replace, short, table, wakeText,
} from "../lib/dom.js";
import { timelineChart } from "../lib/timeline.js";

const POLL_EVERY = 2000;

// What a point waits for, from what its row keeps of its arguments.
function pointWhat(p) {
  const arg = p.arg || {};
  const kind = p.key.split(/[#:]/)[0];
  switch (kind) {
    case "sleep":
      return ["until ", fmtTime(p.until)];
    case "event":
      return [h("span", { class: "mono" }, arg.type || ""),
        arg.match && Object.keys(arg.match).length ? ` matching ${short(arg.match, 60)}` : null];
    case "awakeable":
      return "made: settled by its token (Awakeables)";
    case "wait":
      return ["resolve or reject of ", h("span", { class: "mono" }, arg.awakeable || "")];
    case "child":
      return arg.id ? [h("a", { class: "mono", href: jobHref(arg.queue, arg.id), test: "point-child" }, arg.id),
        ` (${arg.type}) in ${arg.queue}`] : null;
    case "step":
      return ["step ", h("span", { class: "mono" }, p.key.slice("step:".length))];
    case "patch":
      return ["patch ", h("span", { class: "mono" }, p.key.slice("patch:".length))];
    default:
      return null;
  }
}

function pointRow(p, i) {
  // A sleep's `until` is when it ends; any other point's is when it times out.
  const timeout = p.key.startsWith("sleep#") ? null : p.until;
  return h("tr", { test: "point", "data-key": p.key, "data-state": p.state },
    h("td", { class: "num" }, String(i + 1)),
    h("td", { class: "mono" }, p.key),
    h("td", null, p.key.split(/[#:]/)[0]),
    h("td", null, badge(p.state, "point-state")),
    h("td", null, pointWhat(p)),
    h("td", null, timeout === null || timeout === undefined ? "–" : [fmtTime(timeout), " (", ago(timeout), ")"]),
    h("td", null, fmtTime(p.createdAt)),
    h("td", null, fmtTime(p.endedAt)));
}

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

// The address of a trace in the server's trace viewer (its traceUrl, "{trace_id}"
// standing for the id; without it the id is appended), or null: none set, or an
// address that is not http(s).
export function traceHref(template, traceId) {
  if (!template || !traceId) return null;
  const id = encodeURIComponent(traceId);
  const href = template.includes("{trace_id}") ? template.split("{trace_id}").join(id) : template + id;
  return /^https?:\/\//i.test(href) ? href : null;
}

function traceFact(j, info) {
  if (!j.traceId) return ["trace", h("span", { class: "muted", test: "job-trace" }, "none (traced only when tracing is on)")];
  const href = traceHref(info && info.traceUrl, j.traceId);
  const id = h("span", { class: "mono" }, j.traceId);
  return ["trace", h("span", { test: "job-trace" }, href
    ? h("a", { href, target: "_blank", rel: "noopener", test: "job-trace-link", title: "open the trace" }, id) : id)];
}

// What could not be read of a part of the page, in its place: the rest still shows.
function unread(what, err) {
  return h("p", { class: "error-text", test: "unread" }, `${what} could not be read: ${err && err.message ? err.message : err}`);
}

function timelineCard(tl) {
  const box = h("div", { class: "timeline-box", test: "timeline-box" });
  if (tl.error) replace(box, unread("the timeline", tl.error));
  else replace(box, timelineChart(tl.value, "timeline-chart"));
  const value = tl.value;
  const span = value ? ((value.end === null ? value.now : value.end) - value.start) : null;
  const card = h("section", { class: "card", test: "timeline" },
    h("div", { class: "card-head" }, h("h2", null, "Timeline"),
      value ? h("span", { class: "muted aside", test: "timeline-span" },
        `${fmtTime(value.start)} · ${fmtDuration(span)}${value.end === null ? " so far" : ""}`) : null),
    box);
  return { card, box };
}

function logsCard(logs) {
  const card = h("section", { class: "card", test: "logs" }, h("h2", null, "Logs"));
  if (logs.error) {
    card.appendChild(unread("the log lines", logs.error));
    return card;
  }
  const lines = logs.value || [];
  if (!lines.length) {
    card.appendChild(h("p", { class: "muted", test: "logs-empty" }, "No log lines: the job's attempts logged nothing (or ran before their lines were kept)."));
    return card;
  }
  const byAttempt = new Map();
  for (const line of lines) {
    if (!byAttempt.has(line.attempt)) byAttempt.set(line.attempt, []);
    byAttempt.get(line.attempt).push(line);
  }
  for (const [n, some] of byAttempt) {
    card.appendChild(h("div", { class: "log-attempt", test: "log-attempt", "data-attempt": String(n) },
      h("h3", null, `attempt ${n}`,
        some[0].worker ? h("span", { class: "muted" }, ` · ${some[0].worker}`) : null,
        h("span", { class: "muted" }, ` · ${some.length} line${some.length === 1 ? "" : "s"}`)),
      h("div", { class: "log-lines" }, some.map((line) => h("div", {
        class: `log-line lvl-${String(line.level).toLowerCase()}`, test: "log-line", "data-level": line.level,
        title: line.traceId ? `trace ${line.traceId}${line.spanId ? ` · span ${line.spanId}` : ""}` : null,
      },
      h("span", { class: "log-t" }, fmtTimeMs(line.t)),
      h("span", { class: "log-level" }, line.level),
      h("span", { class: "log-logger" }, line.logger),
      h("span", { class: "log-message", test: "log-message" }, line.message))))));
  }
  return card;
}

// A request whose failure shows in its part of the page, not over the whole page.
async function settled(promise) {
  try {
    return { value: await promise };
  } catch (error) {
    return { error };
  }
}

export async function render(ctx) {
  const { q, id } = ctx.params;
  const head = h("div", { class: "title-row" });
  const body = h("div", { test: "job" });
  replace(ctx.root, head, body);
  let job = null;
  const typed = new Map(); // values typed for awakeables, by token: kept across redraws

  // An awakeable: its token, and while it is open, Approve (resolve, with the value
  // typed, if any) and Reject (asks for the reason).
  function awakeableRow(a) {
    const open = a.state === "open";
    const row = h("tr", { test: "awakeable", "data-key": a.key, "data-state": a.state });
    let actions = null;
    if (open) {
      const value = h("input", {
        type: "text", class: "mono value-input", test: "awakeable-value", value: typed.get(a.token) || "",
        placeholder: "value (JSON, optional)", title: "what the job's wait returns: JSON, or empty for null",
      });
      value.addEventListener("input", () => typed.set(a.token, value.value));
      const approve = h("button", { test: "awakeable-approve", title: "resolve: the job goes on with the value" },
        "Approve");
      const reject = h("button", { class: "danger", test: "awakeable-reject",
        title: "reject: the job's wait raises RejectedError with the reason" }, "Reject");
      approve.addEventListener("click", () => {
        const raw = value.value.trim();
        let sent = {};
        if (raw) {
          try {
            sent = { value: JSON.parse(raw) };
          } catch (e) {
            showError(new ApiError(0, `the value is not JSON (${e.message}): leave it empty for null, or give JSON such as {"ok": true}, 42 or "yes"`, ""));
            return;
          }
        }
        act(approve, async () => {
          await post(paths.resolve(a.token), sent);
          typed.delete(a.token);
          notify(`resolved ${a.key} of ${id}`);
          refresh();
        });
      });
      reject.addEventListener("click", () => {
        const reason = window.prompt(`Reject ${a.key} of job ${id}? Its wait raises RejectedError with this reason:`, "");
        if (reason === null) return;
        if (!reason.trim()) {
          showError(new ApiError(0, "a rejection needs a reason: nothing was rejected", ""));
          return;
        }
        act(reject, async () => {
          await post(paths.reject(a.token), { reason: reason.trim() });
          notify(`rejected ${a.key} of ${id}`);
          refresh();
        });
      });
      actions = [value, approve, reject];
    }
    replace(row,
      h("td", { class: "mono" }, a.key),
      h("td", null, badge(a.state, "awakeable-state")),
      h("td", { class: "mono token", test: "awakeable-token" }, a.token),
      h("td", null, fmtTime(a.createdAt)),
      h("td", null, fmtTime(a.endedAt)),
      h("td", { class: "actions" }, actions));
    return row;
  }

  let timelineBox = null;
  let shown = {}; // the timeline, logs and server info last drawn with the job
  function draw(j, tl, logs, info) {
    job = j;
    shown = { tl, logs, info };
    const retry = h("button", { test: "job-retry", disabled: j.status !== "failed",
      title: "send back to the queue with fresh retries" }, "Retry");
    const cancel = h("button", { class: "danger", test: "job-cancel", disabled: FINISHED.includes(j.status) }, "Cancel");
    retry.addEventListener("click", () => act(retry, async () => {
      draw({ ...job, ...(await post(paths.retry(q, id))), attempts: job.attempts }, shown.tl, shown.logs, shown.info);
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

    const timeline = timelineCard(tl);
    timelineBox = timeline.box;
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
        // A parked job's runAt is its wake time (or none): shown as such.
        j.runAt && !FINISHED.includes(j.status) && !j.waitingFor
          ? ["runs", [fmtTime(j.runAt), " (", ago(j.runAt), ")"]] : null,
        j.waitingFor ? ["waiting for", h("span", { test: "job-waiting-for" },
          pointKind(j.waitingFor), " ", h("span", { class: "mono" }, j.waitingFor))] : null,
        j.waitingFor ? [j.status === "sleeping" ? "wakes" : "times out", h("span", { test: "job-wake" },
          j.wakeAt === null || j.wakeAt === undefined ? wakeText(j) : [fmtTime(j.wakeAt), " (", wakeText(j), ")"])] : null,
        j.parent ? ["parent", h("a", { class: "mono", href: jobHref(j.parent.queue, j.parent.id), test: "job-parent" },
          j.parent.queue === q ? j.parent.id : `${j.parent.queue} / ${j.parent.id}`)] : null,
        traceFact(j, info),
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
      timeline.card,
      (j.awakeables || []).length ? h("section", { class: "card", test: "awakeables" }, h("h2", null, "Awakeables"),
        h("p", { class: "muted" }, "Promises the job handed out (await dotdo.awakeable()): each takes one resolve or reject, the first."),
        table(["awakeable", "state", "token", "created", "settled", ""], j.awakeables.map(awakeableRow),
          { test: "awakeables-table" })) : null,
      (j.children || []).length ? h("section", { class: "card", test: "children" }, h("h2", null, "Child jobs"),
        table(["point", "type", "job"], j.children.map((c) => h("tr", { test: "child", "data-job": c.id },
          h("td", { class: "mono" }, c.point), h("td", null, c.type),
          h("td", null, h("a", { class: "mono", href: jobHref(c.queue, c.id), test: "child-link" },
            c.queue === q ? c.id : `${c.queue} / ${c.id}`)))), { test: "children-table" })) : null,
      h("div", { class: "two" },
        h("section", { class: "card" }, h("h2", null, "Payload"), jsonBlock(j.payload, "job-payload")),
        h("section", { class: "card" }, h("h2", null, "Result"),
          j.status === "completed" ? jsonBlock(j.result, "job-result")
            : h("p", { class: "muted", test: "job-result" }, `no result: the job is ${j.status}`))),
      (j.points || []).length ? h("section", { class: "card", test: "points" }, h("h2", null, "Points"),
        h("p", { class: "muted" }, "The durable calls of the job's runs, in order: a resumed run meets each again and gets the same answer."),
        table(["#", "point", "kind", "state", "what", "times out", "created", "ended"], j.points.map(pointRow),
          { test: "points-table" })) : null,
      h("section", { class: "card" }, h("h2", null, "Attempts"),
        table(["#", "worker", "started", "took", "outcome", "error"], (j.attempts || []).map(attemptRow),
          { test: "attempts" })),
      logsCard(logs)));
  }

  // Drawn again only when something changed: a redraw resets what the reader
  // selected and where, for no news. While the job goes on, its open bars grow to the
  // server's `now`: only the timeline is drawn again for that.
  let drawn = "";
  async function load() {
    const [j, tl, logs, info] = await Promise.all([get(paths.job(q, id)), settled(get(paths.timeline(q, id))),
      settled(get(paths.logs(q, id))), serverInfo().catch(() => null)]);
    const key = JSON.stringify([j, tl.value ? { ...tl.value, now: null } : String(tl.error), logs.value || String(logs.error),
      info && info.traceUrl]);
    if (!ctx.alive()) return;
    if (key !== drawn) {
      drawn = key;
      draw(j, tl, logs, info);
    } else if (tl.value && timelineBox && tl.value.end === null) {
      replace(timelineBox, timelineChart(tl.value, "timeline-chart"));
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
