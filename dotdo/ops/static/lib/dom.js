// Building the page from data without ever parsing data as HTML: every string a
// caller passes becomes a text node (or an attribute value), so a job payload such as
// "<img onerror=...>" shows as text. Nothing in the dashboard uses innerHTML.

const SVG_NS = "http://www.w3.org/2000/svg";

function append(parent, child) {
  if (child === null || child === undefined || child === false) return;
  if (Array.isArray(child)) {
    child.forEach((c) => append(parent, c));
  } else if (child instanceof Node) {
    parent.appendChild(child);
  } else {
    parent.appendChild(document.createTextNode(String(child)));
  }
}

function setAttrs(el, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (key === "test") {
      el.setAttribute("data-test", value); // the hook the browser tests find elements by
    } else if (key === "value" && "value" in el) {
      el.value = value;
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
}

// h("a", {href: "#/", test: "nav-overview"}, "Overview", ...children)
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

// The same for SVG elements (charts), which need their namespace.
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined) continue;
    if (key === "test") el.setAttribute("data-test", value);
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function replace(el, ...children) {
  clear(el);
  append(el, children);
  return el;
}

// -- formatting ------------------------------------------------------------------------

const pad = (n) => String(n).padStart(2, "0");

// Epoch seconds -> "2024-05-01 12:03:04" in the browser's time zone.
export function fmtTime(t) {
  if (t === null || t === undefined) return "–";
  const d = new Date(t * 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

// Epoch seconds -> "2024-05-01 12:03:04.123": log lines, which come many a second.
export function fmtTimeMs(t) {
  if (t === null || t === undefined) return "–";
  const ms = String(Math.floor((t * 1000) % 1000)).padStart(3, "0");
  return `${fmtTime(t)}.${ms}`;
}

export function fmtClock(t) {
  const d = new Date(t * 1000);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

// Seconds -> "850 ms", "3.2 s", "4 m 03 s", "2 h 05 m", "3 d 4 h".
export function fmtDuration(sec) {
  if (sec === null || sec === undefined || Number.isNaN(sec)) return "–";
  const a = Math.abs(sec);
  if (a < 1) return `${Math.round(sec * 1000)} ms`;
  if (a < 60) return `${sec.toFixed(a < 10 ? 2 : 1)} s`;
  if (a < 3600) return `${Math.floor(a / 60)} m ${pad(Math.floor(a % 60))} s`;
  if (a < 86400) return `${Math.floor(a / 3600)} h ${pad(Math.floor((a % 3600) / 60))} m`;
  return `${Math.floor(a / 86400)} d ${Math.floor((a % 86400) / 3600)} h`;
}

// A round span of seconds -> "15 s", "1 min", "30 min", "1 h", "24 h".
export function fmtSpan(sec) {
  if (sec >= 3600 && sec % 3600 === 0) return `${sec / 3600} h`;
  if (sec >= 60 && sec % 60 === 0) return `${sec / 60} min`;
  if (sec >= 1 && Number.isInteger(sec)) return `${sec} s`;
  return fmtDuration(sec);
}

// Epoch seconds -> "12 s ago" / "in 3 m 00 s", with the exact time as a tooltip.
export function ago(t) {
  if (t === null || t === undefined) return h("span", { class: "muted" }, "–");
  const delta = Date.now() / 1000 - t;
  const text = delta >= 0 ? `${fmtDuration(delta)} ago` : `in ${fmtDuration(-delta)}`;
  return h("time", { title: fmtTime(t), datetime: new Date(t * 1000).toISOString() }, text);
}

export function fmtNumber(n) {
  if (n === null || n === undefined) return "–";
  return Number(n).toLocaleString("en-US");
}

export function fmtPercent(x) {
  if (x === null || x === undefined) return "–";
  return `${(x * 100).toFixed(x < 0.1 && x > 0 ? 1 : 0)} %`;
}

export function fmtRate(perSecond) {
  if (perSecond === null || perSecond === undefined) return "–";
  if (perSecond === 0) return "0/h";
  if (perSecond >= 1) return `${perSecond.toFixed(1)}/s`;
  if (perSecond * 60 >= 1) return `${(perSecond * 60).toFixed(perSecond * 60 >= 10 ? 0 : 1)}/min`;
  return `${(perSecond * 3600).toFixed(perSecond * 3600 >= 10 ? 0 : 1)}/h`;
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

// Any JSON value, pretty-printed, as a <pre> (text only).
export function jsonBlock(value, test) {
  const text = value === undefined ? "" : JSON.stringify(value, null, 2);
  return h("pre", { class: "json", test }, text === undefined ? String(value) : text);
}

// A short one-line rendering of a value for table cells.
export function short(value, max = 80) {
  const text = typeof value === "string" ? value : JSON.stringify(value);
  if (text === undefined) return "";
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

export function firstLine(text) {
  return text ? String(text).split("\n")[0] : "";
}

// -- common pieces ---------------------------------------------------------------------

// Every job state, in the order a job goes through them (also the tab order), as the
// API lists them: a queue's counts have one key per state (the queue's JobStatus), so
// a state added there shows here with no change to the pages.
export const statesOf = (counts) => Object.keys(counts || {});
export const FINISHED = ["completed", "failed", "cancelled"];

// A point of a job's runs ("sleep#1", "event#2", "wait#1", "awakeable#1", "child#1",
// "step:charge-7", "patch:new-path") in words.
const POINT_KINDS = { sleep: "sleep", event: "event", wait: "awakeable", awakeable: "awakeable", child: "child job" };
export function pointKind(key) {
  const kind = String(key).split(/[#:]/)[0];
  return POINT_KINDS[kind] || kind;
}

// When a parked job wakes: a sleep's end, a wait's timeout, or never.
export function wakeText(job) {
  if (job.wakeAt === null || job.wakeAt === undefined) return h("span", { class: "muted" }, "no timeout");
  return [job.status === "sleeping" ? "wakes " : "times out ", ago(job.wakeAt)];
}

// What a parked job (sleeping, or waiting at a durable wait) waits for, and when it
// wakes; null for any other job.
export function parkedText(job) {
  if (!job.waitingFor) return null;
  const what = job.status === "sleeping" ? null
    : ["waits for ", pointKind(job.waitingFor), " ", h("span", { class: "mono" }, job.waitingFor), " · "];
  return h("span", { class: "waits", test: "job-waits", title: job.waitingFor }, what, wakeText(job));
}

export function badge(status, test) {
  return h("span", { class: `badge st-${status}`, test: test || "status" }, status);
}

export function table(headers, rows, attrs = {}) {
  return h("table", { class: "grid", ...attrs },
    h("thead", null, h("tr", null, headers.map((x) => h("th", null, x)))),
    h("tbody", null, rows.length ? rows
      : h("tr", { class: "empty" }, h("td", { colspan: headers.length }, "nothing here"))));
}

// A key/value description list, for an object's facts: [label, value, wide?] (a wide
// one takes a row of its own).
export function facts(pairs, test) {
  return h("dl", { class: "facts", test },
    pairs.filter(Boolean).map(([k, v, wide]) => h("div", { class: `fact${wide ? " wide" : ""}` },
      h("dt", null, k), h("dd", null, v))));
}

export function link(hash, text, attrs = {}) {
  return h("a", { href: hash, ...attrs }, text);
}

// Hash routes carry ids that may hold "/", "#" or spaces: each segment is encoded.
export const enc = encodeURIComponent;
export const jobHref = (q, id) => `#/jobs/${enc(q)}/${enc(id)}`;
export const queueHref = (q, params) => {
  const query = new URLSearchParams(params || {}).toString();
  return `#/queues/${enc(q)}${query ? `?${query}` : ""}`;
};
export const objectHref = (cls, id) => `#/objects/${enc(cls)}${id === undefined ? "" : `/${enc(id)}`}`;

// The job an event is about: Job.completed carries the Result ({jobId, output}),
// the other Job events the Job itself.
export function eventJobId(event) {
  const data = (event && event.data) || {};
  return data.jobId || data.$id;
}

// Redraw `container` with `draw()` keeping open the <details> the user opened (those
// with a data-key): a live refresh must not snap a traceback shut under the reader.
export function keepingOpen(container, draw) {
  const open = new Set([...container.querySelectorAll("details[open][data-key]")].map((d) => d.dataset.key));
  draw();
  for (const d of container.querySelectorAll("details[data-key]")) {
    if (open.has(d.dataset.key)) d.open = true;
  }
}
