// The dotdo dashboard: a single page, routed by the URL's hash so that every view
// has an address to bookmark and the server only ever serves one page. Each view is
// a module under views/ exporting render(ctx); ctx says what the route matched and
// holds what must stop when the user goes elsewhere (live listeners, timers).

import { clearError, dropTokenFromUrl, serverInfo, showError } from "./lib/api.js";
import { h, replace } from "./lib/dom.js";
import * as live from "./lib/live.js";
import * as overview from "./views/overview.js";
import * as queue from "./views/queue.js";
import * as job from "./views/job.js";
import * as workers from "./views/workers.js";
import * as schedules from "./views/schedules.js";
import * as dead from "./views/dead.js";
import * as objects from "./views/objects.js";

// [pattern, view, nav entry it belongs to]; ":x" matches one (decoded) segment.
const ROUTES = [
  ["", overview.render, "overview"],
  ["queues/:q", queue.render, "overview"],
  ["jobs/:q/:id", job.render, "overview"],
  ["workers", workers.render, "workers"],
  ["schedules", schedules.render, "schedules"],
  ["dead", dead.render, "dead"],
  ["dead/:q", dead.render, "dead"],
  ["objects", objects.renderClasses, "objects"],
  ["objects/:cls", objects.renderClass, "objects"],
  ["objects/:cls/:id", objects.renderObject, "objects"],
];

function parseHash() {
  const raw = window.location.hash.replace(/^#\/?/, "");
  const [path, query] = raw.split("?");
  const segments = path ? path.split("/").map(decodeURIComponent) : [];
  return { segments, query: new URLSearchParams(query || "") };
}

function match(segments) {
  for (const [pattern, view, nav] of ROUTES) {
    const parts = pattern ? pattern.split("/") : [];
    if (parts.length !== segments.length) continue;
    const params = {};
    const ok = parts.every((p, i) => {
      if (p.startsWith(":")) { params[p.slice(1)] = segments[i]; return true; }
      return p === segments[i];
    });
    if (ok) return { view, nav, params };
  }
  return null;
}

// What a view may hold while it is shown; all of it is let go on navigation.
class Context {
  constructor(root, params, query) {
    this.root = root;
    this.params = params;
    this.query = query;
    this._cleanups = [];
    this._alive = true;
  }

  alive() { return this._alive; }

  // Render this route again from scratch (its layout changed under it).
  reload() { if (this._alive) route(); }

  // live.on, dropped when the view goes
  on(kind, fn) { this._cleanups.push(live.on(kind, (d) => this._alive && fn(d))); }

  every(ms, fn) {
    const id = setInterval(() => this._alive && fn(), ms);
    this._cleanups.push(() => clearInterval(id));
  }

  // Call fn at most once per `ms` however many events ask for it: a burst of job
  // events becomes one reload.
  debounced(ms, fn) {
    let timer = null;
    const run = () => { timer = null; if (this._alive) fn(); };
    this._cleanups.push(() => clearTimeout(timer));
    return () => { if (!timer) timer = setTimeout(run, ms); };
  }

  close() {
    this._alive = false;
    this._cleanups.forEach((fn) => fn());
  }
}

let current = null;

async function route() {
  if (current) current.close();
  clearError();
  const { segments, query } = parseHash();
  const found = match(segments);
  const root = document.getElementById("view");
  for (const a of document.querySelectorAll("nav a[data-nav]")) {
    a.classList.toggle("active", Boolean(found) && a.dataset.nav === found.nav);
  }
  if (!found) {
    replace(root, h("section", { class: "card", test: "not-found" },
      h("h1", null, "Not found"), h("p", null, "No page at this address. "), h("a", { href: "#/" }, "Go to the overview")));
    return;
  }
  const ctx = new Context(root, found.params, query);
  current = ctx;
  root.setAttribute("aria-busy", "true");
  try {
    await found.view(ctx);
  } catch (e) {
    if (ctx.alive()) {
      showError(e);
      if (!root.firstChild) replace(root, h("section", { class: "card", test: "view-failed" }, "This page could not be loaded."));
    }
  } finally {
    if (ctx.alive()) root.setAttribute("aria-busy", "false");
  }
}

// The header's facts: which storage root and namespace this server shows.
async function loadHeader() {
  try {
    const status = await serverInfo();
    const el = document.getElementById("where");
    replace(el, `${status.namespace || ""} · ${status.storage || ""}`);
    el.title = "namespace · storage root";
  } catch (e) {
    // The view shows the same error in the banner; nothing more to say here.
  }
}

dropTokenFromUrl();
window.addEventListener("hashchange", route);
live.start();
loadHeader();
route();
