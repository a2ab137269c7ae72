// Live updates: the server's event stream (GET api/events/stream) sends `counts` (every
// queue's summary, every 2 s) and `job` (each Job event). When the stream is down
// (a proxy that buffers, the server restarting, no EventSource) the counts are
// polled instead: whenever no `counts` event came for a while, a timer fetches
// api/queues itself. The stream reconnects by itself, and polling stops as soon as
// its events flow again.

import { get, paths } from "./api.js";

const POLL_EVERY = 3000; // ms between looks at the clock; polls when the stream is quiet
const QUIET_AFTER = 5000; // ms without a `counts` event before polling

const listeners = { counts: new Set(), job: new Set() };
let lastCounts = 0;
let source = null;
let mode = "connecting";

export function on(kind, fn) {
  listeners[kind].add(fn);
  return () => listeners[kind].delete(fn);
}

function emit(kind, data) {
  for (const fn of [...listeners[kind]]) {
    try { fn(data); } catch (e) { console.error(e); }
  }
}

function setMode(next) {
  if (mode === next) return;
  mode = next;
  const el = document.getElementById("live-status");
  if (el) {
    el.textContent = next;
    el.className = `live ${next}`;
    el.title = next === "live" ? "updates stream from the server"
      : next === "polling" ? "the event stream is down: polling every few seconds" : "connecting…";
  }
}

function connect() {
  if (typeof EventSource === "undefined") return;
  source = new EventSource(paths.stream()); // same origin: the cookie goes along
  source.addEventListener("counts", (msg) => {
    lastCounts = Date.now();
    setMode("live");
    try { emit("counts", JSON.parse(msg.data)); } catch (e) { console.error(e); }
  });
  source.addEventListener("job", (msg) => {
    try { emit("job", JSON.parse(msg.data)); } catch (e) { console.error(e); }
  });
  source.addEventListener("open", () => setMode("live"));
}

async function pollIfQuiet() {
  if (Date.now() - lastCounts < QUIET_AFTER) return;
  setMode("polling");
  try {
    emit("counts", await get(paths.queues()));
  } catch (e) {
    // The banner is for what the user did; a failed background poll shows in the
    // status pill only, and the next poll tries again.
    setMode("offline");
  }
}

export function start() {
  connect();
  lastCounts = Date.now(); // give the stream a moment before polling
  setInterval(pollIfQuiet, POLL_EVERY);
}

export function currentMode() {
  return mode;
}
