// Talking to the dotdo HTTP API. URLs are relative to the page, so the dashboard
// works wherever the app is mounted (uvicorn at "/", or a Ray Serve route prefix).
//
// Auth: the first load carries ?token=...; the server answers it with a cookie
// (httpOnly: scripts never see the token) that every later fetch() and the
// EventSource send by themselves. The token is then taken out of the address bar so
// that it does not end up in bookmarks, screenshots or the history.

import { h, replace } from "./dom.js";

export function dropTokenFromUrl() {
  const url = new URL(window.location.href);
  if (url.searchParams.has("token")) {
    url.searchParams.delete("token");
    window.history.replaceState(null, "", url.pathname + url.search + url.hash);
  }
}

export class ApiError extends Error {
  constructor(status, message, path) {
    super(message);
    this.status = status;
    this.path = path;
  }
}

// The text of an error answer: FastAPI's {"detail": "..."} or a list of validation
// errors ({"detail": [{"loc": [...], "msg": ...}]}), else the raw body.
function errorText(status, body) {
  if (body && typeof body === "object" && "detail" in body) {
    const d = body.detail;
    if (typeof d === "string") return d;
    if (Array.isArray(d)) {
      return d.map((e) => `${(e.loc || []).filter((x) => x !== "body").join(".")}: ${e.msg}`).join("; ");
    }
    return JSON.stringify(d);
  }
  if (body && typeof body === "object" && "error" in body) return String(body.error);
  if (typeof body === "string" && body.trim()) return body.trim().slice(0, 500);
  return `HTTP ${status}`;
}

// request("GET", "api/queues/emails") -> the decoded JSON; throws ApiError with the
// server's message on any non-2xx answer.
export async function request(method, path, body) {
  const headers = { Accept: "application/json" };
  const init = { method, headers, credentials: "same-origin" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let answer;
  try {
    answer = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, `the server cannot be reached (${e.message})`, path);
  }
  const text = await answer.text();
  let data = text;
  try { data = text ? JSON.parse(text) : null; } catch (e) { /* not JSON: keep the text */ }
  if (!answer.ok) {
    let message = errorText(answer.status, data);
    if (answer.status === 401) message = `${message}. Open the dashboard as /?token=<token> (dotdo serve prints it).`;
    throw new ApiError(answer.status, message, path);
  }
  return data;
}

export const get = (path) => request("GET", path);
export const post = (path, body) => request("POST", path, body === undefined ? {} : body);
export const patch = (path, body) => request("PATCH", path, body);

// What the server says of itself (GET api/status: its storage root and namespace, and
// settings such as traceUrl), asked once per page load: the header and the pages share it.
let info = null;
export function serverInfo() {
  if (!info) info = get(paths.status()).catch((err) => { info = null; throw err; });
  return info;
}

// -- the banners: errors stay until dismissed or replaced, notices fade -----------------

export function showError(err) {
  const banner = document.getElementById("error-banner");
  const status = err && err.status ? `${err.status} ` : "";
  const where = err && err.path ? ` (${err.path.split("?")[0]})` : "";
  replace(banner,
    h("span", { test: "error-text" }, `${status}${err && err.message ? err.message : String(err)}${where}`),
    h("button", { class: "dismiss", title: "dismiss", test: "error-dismiss", onclick: clearError }, "×"));
  banner.hidden = false;
  if (!(err instanceof ApiError)) console.error(err);
}

export function clearError() {
  const banner = document.getElementById("error-banner");
  banner.hidden = true;
  replace(banner);
}

let noticeTimer = null;
export function notify(text) {
  const el = document.getElementById("notice");
  replace(el, text);
  el.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => { el.hidden = true; }, 4000);
}

// Run an action from a button: disabled while it runs, errors to the banner.
export async function act(button, fn) {
  if (button) button.disabled = true;
  try {
    return await fn();
  } catch (e) {
    showError(e);
    return undefined;
  } finally {
    if (button && button.isConnected) button.disabled = false;
  }
}

// Paths of the API (every data route is under api/), with every id encoded as one
// path segment.
const e = encodeURIComponent;
export const paths = {
  status: () => "api/status",
  queues: () => "api/queues",
  queue: (q) => `api/queues/${e(q)}`,
  metrics: (q, span) => `api/queues/${e(q)}/metrics${span ? `?window=${span.window}&bucket=${span.bucket}` : ""}`,
  pause: (q) => `api/queues/${e(q)}/pause`,
  resume: (q) => `api/queues/${e(q)}/resume`,
  settings: (q) => `api/queues/${e(q)}/settings`,
  jobs: (q, params) => {
    const query = new URLSearchParams();
    for (const [k, v] of Object.entries(params || {})) {
      if (v !== null && v !== undefined && v !== "") query.set(k, v);
    }
    const s = query.toString();
    return `api/queues/${e(q)}/jobs${s ? `?${s}` : ""}`;
  },
  retryBulk: (q) => `api/queues/${e(q)}/jobs/retry`,
  deadLetters: (q) => `api/queues/${e(q)}/dead-letters`,
  job: (q, id) => `api/jobs/${e(q)}/${e(id)}`,
  timeline: (q, id) => `api/jobs/${e(q)}/${e(id)}/timeline`,
  logs: (q, id) => `api/jobs/${e(q)}/${e(id)}/logs`,
  retry: (q, id) => `api/jobs/${e(q)}/${e(id)}/retry`,
  cancel: (q, id) => `api/jobs/${e(q)}/${e(id)}/cancel`,
  resolve: (token) => `api/awakeables/${e(token)}/resolve`,
  reject: (token) => `api/awakeables/${e(token)}/reject`,
  workers: () => "api/workers",
  schedules: () => "api/schedules",
  classes: () => "api/objects",
  objects: (cls, cursor) => `api/objects/${e(cls)}${cursor ? `?cursor=${e(cursor)}` : ""}`,
  object: (cls, id) => `api/objects/${e(cls)}/${e(id)}`,
  steps: (cls, id) => `api/objects/${e(cls)}/${e(id)}/steps`,
  stream: () => "api/events/stream",
};
