// The interlock dashboard: one page, no dependencies, nothing loaded from elsewhere.
//
// How it stays current without polling: the event stream (/v1/events, Server-Sent
// Events) says *that* something changed; each event schedules one debounced refetch of
// /v1/locks and /v1/sessions, which say *what* is true now. A one-second timer only
// redraws the countdowns from the last answer; it never calls the server.
//
// Safety: everything a user controls (resource and session names, metadata, reasons) is
// put into the page as text (createElement / textContent), never parsed as HTML. The
// server's Content-Security-Policy forbids inline script anyway.
"use strict";

const $ = (id) => document.getElementById(id);

// el("td", {class: "x"}, "text", child, ...): an element whose strings become text nodes.
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (typeof v === "function") e.addEventListener(k, v);
    else if (k === "class") e.className = v;
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

const KINDS = ["session_opened", "session_closed", "session_expired", "session_stale",
  "session_revived", "acquired", "released", "expired", "force_released", "preempted",
  "queued", "dequeued", "lagged"];
const LOG_MAX = 500; // entries kept in the log while it follows the newest
const HISTORY_LIMIT = 100;

const state = {
  role: null,      // "read" | "client" | "admin" once logged in
  locks: [],
  sessions: new Map(), // id -> session, for last_seen of stale holders
  skew: 0,         // the server's clock minus ours, in seconds
  lastSeq: null,   // the last event seq the log has shown
  gen: 0,          // counts logouts: an answer that arrives after one is dropped
  lagged: false,   // a lagged marker was shown, so the next jump in seqs is explained
  es: null,        // the EventSource
  online: false,
  retryDelay: 1000,
  retryTimer: null,
  historyOf: null, // the resource whose history dialog is open
  forceOf: null,   // the resource whose force-release dialog is open
  following: true, // the log scrolls to the newest entry (false while the user reads)
  unseen: 0,       // entries added while not following
};

// ---- time ---------------------------------------------------------------------------

const serverNow = () => Date.now() / 1000 + state.skew;

// "42 s", "3 min 5 s", "2 h 10 min".
function dur(s) {
  s = Math.max(0, Math.floor(s));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 172800) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d`;
}
const ago = (t) => `${dur(serverNow() - t)} ago`;
const HMS = { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false };
const clock = (t) => new Date((t - state.skew) * 1000).toLocaleTimeString([], HMS);
const stamp = (t) => new Date((t - state.skew) * 1000).toLocaleString();

// Countdowns and ages are computed against the server's clock, which may differ from the
// browser's (a lab PC against a laptop). A holder with a TTL gives it exactly
// (expires_at - remaining = the server's "now"); else the Date header, to a second.
function learnSkew(response, locks) {
  const local = Date.now() / 1000;
  for (const st of locks) {
    for (const h of st.holders) {
      if (h.remaining !== null && h.expires_at !== null) {
        state.skew = h.expires_at - h.remaining - local;
        return;
      }
    }
  }
  const date = Date.parse(response.headers.get("date") || "") / 1000;
  if (Number.isFinite(date) && Math.abs(date + 0.5 - local) > 2) state.skew = date + 0.5 - local;
}

// Cells that count down: [element, () => text], rebuilt with each render, redrawn by the
// one-second timer.
let ticking = [];
function live(tag, attrs, text) {
  const e = el(tag, attrs, text());
  ticking.push([e, text]);
  return e;
}
setInterval(() => { for (const [e, text] of ticking) e.textContent = text(); }, 1000);

// ---- the server ---------------------------------------------------------------------

class NeedsLogin extends Error {}

// One call of the HTTP API; throws NeedsLogin on 401 and an Error with the server's
// message otherwise. Credentials travel only in the cookie the server set.
async function api(path, options = {}) {
  const init = { credentials: "same-origin", cache: "no-store", ...options };
  if (init.body !== undefined) init.headers = { "content-type": "application/json" };
  const response = await fetch(path, init);
  if (response.status === 401) throw new NeedsLogin("not logged in");
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (_) { body = null; }
  if (!response.ok) {
    const e = new Error((body && body.error && body.error.message) || `HTTP ${response.status}`);
    e.status = response.status;
    throw e;
  }
  return { body, response };
}

function failed(e) {
  if (e instanceof NeedsLogin) return showLogin();
  if (e instanceof TypeError) return setOnline(false); // fetch: the server is not there
  toast(e.message);
}

// One refetch of the tables however many events arrive close together; another one
// right after if events came in while it ran.
let refreshTimer = null;
let refreshing = false;
let refreshAgain = false;
function scheduleRefresh(delay = 100) {
  if (refreshTimer === null) refreshTimer = setTimeout(() => { refreshTimer = null; refresh(); }, delay);
}
async function refresh() {
  if (refreshing) { refreshAgain = true; return; }
  refreshing = true;
  const gen = state.gen;
  try {
    const [locks, sessions] = await Promise.all([api("/v1/locks"), api("/v1/sessions")]);
    if (gen !== state.gen) return;
    learnSkew(locks.response, locks.body);
    state.locks = locks.body;
    state.sessions = new Map(sessions.body.map((s) => [s.id, s]));
    renderResources();
    renderSessions();
  } catch (e) {
    failed(e);
  } finally {
    refreshing = false;
    if (refreshAgain) { refreshAgain = false; scheduleRefresh(0); }
  }
}

// ---- the event stream ---------------------------------------------------------------

function connectEvents() {
  clearTimeout(state.retryTimer);
  if (state.es) state.es.close();
  // `since`: a new EventSource starts after the last event shown. While this one lives,
  // the browser reconnects by itself and sends Last-Event-ID, which the server prefers.
  const es = new EventSource(`/v1/events?since=${state.lastSeq === null ? 0 : state.lastSeq}`);
  state.es = es;
  es.addEventListener("open", () => {
    state.retryDelay = 1000;
    setOnline(true);
    scheduleRefresh(0); // whatever changed while we were away
  });
  es.addEventListener("error", () => {
    if (state.es !== es) return;
    setOnline(false);
    // CONNECTING: the browser retries by itself. CLOSED: the server answered without a
    // stream (a 401 after the login ended, a 503 while it shuts down): the browser gave
    // up, so we try again, with backoff, and ask for a login if that is what it takes.
    if (es.readyState === EventSource.CLOSED) {
      state.retryTimer = setTimeout(retry, state.retryDelay);
      state.retryDelay = Math.min(state.retryDelay * 2, 10000);
    }
  });
  for (const kind of KINDS) es.addEventListener(kind, onEvent);
}

async function retry() {
  const gen = state.gen;
  try {
    const { body } = await api("/v1/whoami");
    if (gen !== state.gen) return; // logged out meanwhile
    if (body.role === null) return showLogin();
    connectEvents();
  } catch (e) {
    if (gen !== state.gen) return;
    state.retryTimer = setTimeout(retry, state.retryDelay);
    state.retryDelay = Math.min(state.retryDelay * 2, 10000);
  }
}

function onEvent(message) {
  let ev;
  try { ev = JSON.parse(message.data); } catch (_) { return; }
  if (ev.kind === "lagged" && ev.position == null) {
    // No count: the seq this page resumed from is not the server's (it restarted
    // without a journal); the numbering begins again with the next event.
    logMarker("renumbered", "⚠ the server restarted without its journal: events are numbered afresh, and what happened before is not in this log");
    state.lastSeq = null;
    scheduleRefresh(0);
    return;
  }
  if (ev.kind === "lagged") {
    // The server dropped events this page was too slow for: say so, and how many; the
    // tables are refetched, so they are right again.
    logMarker("lagged", `⚠ ${ev.position} events were missed here (the stream lagged); the tables are current again`);
    state.lagged = true;
    scheduleRefresh(0);
    return;
  }
  // The stream resumes strictly after the last seq shown, so a seq that is not larger
  // means the numbering began again: a server restarted without a journal.
  if (state.lastSeq !== null && ev.seq <= state.lastSeq) {
    logMarker("renumbered", `⚠ the server restarted without its journal: events are numbered afresh from #${ev.seq}, and what happened before is not in this log`);
  } else if (state.lastSeq !== null && ev.seq > state.lastSeq + 1 && !state.lagged) {
    logMarker("gap", `⚠ events #${state.lastSeq + 1}–#${ev.seq - 1} were not received`);
  }
  state.lagged = false;
  state.lastSeq = ev.seq;
  logEvent(ev);
  scheduleRefresh();
  if (state.historyOf !== null && ev.resource === state.historyOf) loadHistory();
}

function setOnline(online) {
  if (online === state.online) return;
  state.online = online;
  const conn = $("conn");
  conn.textContent = online ? "● live" : "⚠ disconnected, retrying…";
  conn.className = online ? "conn ok" : "conn down";
  document.body.classList.toggle("offline", !online);
  if (state.role !== null) logMarker(online ? "up" : "down", online ? "connected" : "disconnected from the server, retrying…");
}

// ---- the event log ------------------------------------------------------------------

// One line of text for an event, in the words of the terminal's `interlock watch`.
function describe(ev) {
  const parts = [];
  if (ev.resource != null) parts.push(ev.resource);
  if (ev.session_name != null) parts.push(`by ${ev.session_name}`);
  if (ev.mode != null) parts.push(ev.mode);
  if (ev.fence != null) parts.push(`fence ${ev.fence}`);
  if (ev.position != null) parts.push(`position ${ev.position}`);
  if (ev.priority != null && ev.kind === "queued") parts.push(`priority ${ev.priority}`);
  return parts.join(" · ");
}

function logEvent(ev) {
  logAppend(el("li", { class: `ev k-${ev.kind}`, "data-seq": ev.seq },
    el("span", { class: "t", title: stamp(ev.at) }, clock(ev.at)),
    el("span", { class: "seq" }, `#${ev.seq}`),
    el("span", { class: "kind" }, ev.kind),
    el("span", { class: "what" }, describe(ev)),
    ev.reason != null ? el("span", { class: "reason" }, `reason: ${ev.reason}`) : null));
}

function logMarker(kind, text) {
  logAppend(el("li", { class: `marker m-${kind}` },
    el("span", { class: "t" }, new Date().toLocaleTimeString([], HMS)), text));
}

// The log follows the newest entry unless the user has scrolled up to read: then new
// entries wait below, and a button says how many and brings them into view.
function logAppend(li) {
  const list = $("log-list");
  list.append(li);
  if (state.following) {
    while (list.childElementCount > LOG_MAX) list.firstElementChild.remove();
    list.scrollTop = list.scrollHeight;
  } else {
    state.unseen += 1;
    const follow = $("log-follow");
    follow.textContent = `‖ paused · ${state.unseen} new ↓`;
    follow.hidden = false;
  }
}

function follow(on) {
  state.following = on;
  if (on) {
    state.unseen = 0;
    $("log-follow").hidden = true;
    const list = $("log-list");
    while (list.childElementCount > LOG_MAX) list.firstElementChild.remove();
    list.scrollTop = list.scrollHeight;
  }
}

$("log-list").addEventListener("scroll", () => {
  const list = $("log-list");
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 8;
  if (atBottom !== state.following) follow(atBottom);
});
$("log-follow").addEventListener("click", () => follow(true));

// ---- the resources ------------------------------------------------------------------

// Metadata as "user ana · host lab-3 · pid 4242 · app optimizer · other=…".
function metaText(m) {
  if (!m || typeof m !== "object" || Object.keys(m).length === 0) return "";
  const show = (v) => (typeof v === "string" ? v : JSON.stringify(v));
  const first = ["user", "host", "pid", "app"].filter((k) => k in m);
  const rest = Object.keys(m).filter((k) => !first.includes(k)).sort();
  const text = [...first.map((k) => `${k} ${show(m[k])}`), ...rest.map((k) => `${k}=${show(m[k])}`)].join(" · ");
  return text.length > 200 ? `${text.slice(0, 199)}…` : text;
}

function meta(m) {
  const text = metaText(m);
  return text ? el("div", { class: "meta", title: text }, text) : null;
}

// Badges carry a symbol and a word, never only a colour. The symbols are in DejaVu Sans,
// which every Debian has (there is often no emoji font).
const modeBadge = (mode) => el("span", { class: `badge ${mode}` }, mode === "exclusive" ? "■ exclusive" : "◧ shared");

function staleBadge(sessionId) {
  const s = state.sessions.get(sessionId);
  if (!s) return el("span", { class: "badge stale" }, "⚠ stale");
  return live("span", { class: "badge stale" }, () => `⚠ stale · no heartbeat for ${dur(serverNow() - s.last_seen)}`);
}

function holderBlock(h) {
  return el("div", { class: "holder" },
    el("div", {}, el("span", { class: "hname" }, h.session_name), " ", modeBadge(h.mode),
      h.stale ? [" ", staleBadge(h.session_id)] : null),
    meta(h.metadata),
    el("div", { class: "facts" },
      live("span", { title: stamp(h.acquired_at) }, () => `since ${ago(h.acquired_at)}`),
      h.expires_at === null ? el("span", {}, "no TTL")
        : live("span", { class: "ttl" }, () => `TTL ${dur(h.expires_at - serverNow())} left`),
      el("span", {}, `fence ${h.fence}`),
      el("span", {}, `priority ${h.priority}`)),
    h.reason ? el("div", { class: "meta" }, `reason: ${h.reason}`) : null);
}

function queueList(waiters) {
  if (waiters.length === 0) return el("span", { class: "none" }, "—");
  return el("ol", { class: "queue" }, waiters.map((w) => el("li", { "data-position": w.position },
    el("span", { class: "pos" }, `#${w.position}`), " ", el("strong", {}, w.session_name),
    el("div", { class: "facts" },
      el("span", {}, w.mode), el("span", {}, `priority ${w.priority}`),
      live("span", { title: stamp(w.queued_at) }, () => `waiting ${dur(serverNow() - w.queued_at)}`)))));
}

function stateBadge(st) {
  const out = [];
  if (st.holders.length > 0) {
    const n = st.holders.length;
    out.push(st.mode === "exclusive" ? el("span", { class: "badge exclusive" }, "■ held")
      : el("span", { class: "badge shared" }, `◧ shared × ${n}`));
  } else {
    out.push(el("span", { class: "badge free" }, "○ free"));
  }
  if (st.waiters.length > 0) out.push(el("span", { class: "badge queued" }, `◔ ${st.waiters.length} waiting`));
  if (st.holders.some((h) => h.stale)) out.push(el("span", { class: "badge stale" }, "⚠ stale"));
  return el("div", { class: "badges" }, out);
}

// Oldest activity first: the earliest grant, else the earliest wait.
function age(st) {
  const times = [...st.holders.map((h) => h.acquired_at), ...st.waiters.map((w) => w.queued_at)];
  return times.length ? Math.min(...times) : Infinity;
}

function matches(st, needle) {
  if (!needle) return true;
  const names = [st.resource, ...st.holders.map((h) => h.session_name), ...st.waiters.map((w) => w.session_name)];
  return names.some((n) => n.toLowerCase().includes(needle));
}

function renderResources() {
  ticking = ticking.filter(([e]) => !$("res-body").contains(e));
  const needle = $("filter").value.trim().toLowerCase();
  const list = state.locks.filter((st) => matches(st, needle));
  if ($("sort").value === "age") list.sort((a, b) => age(a) - age(b));
  else list.sort((a, b) => a.resource.localeCompare(b.resource));
  const admin = state.role === "admin";
  $("res-body").replaceChildren(...list.map((st) => el("tr", { "data-resource": st.resource },
    el("td", { "data-label": "Resource" },
      el("button", { type: "button", class: "name nm", title: "Show its history", click: () => openHistory(st.resource) }, st.resource)),
    el("td", { "data-label": "State" }, stateBadge(st)),
    el("td", { "data-label": "Holders" }, st.holders.length ? st.holders.map(holderBlock) : el("span", { class: "none" }, "—")),
    el("td", { "data-label": "Queue" }, queueList(st.waiters)),
    el("td", { class: "actions" },
      el("button", { type: "button", click: () => openHistory(st.resource) }, "History"),
      // Only admins see it; the server refuses anyone else regardless.
      admin && st.holders.length > 0 ? el("button", { type: "button", class: "danger force", click: () => openForce(st.resource) }, "Force release…") : null))));
  $("res-count").textContent = needle ? `(${list.length} of ${state.locks.length})` : `(${state.locks.length})`;
  const empty = $("res-empty");
  empty.hidden = list.length > 0;
  empty.textContent = state.locks.length ? "No resource matches the filter." : "Nothing is held or waited for.";
}

function renderSessions() {
  ticking = ticking.filter(([e]) => !$("ses-body").contains(e));
  const list = [...state.sessions.values()];
  $("ses-body").replaceChildren(...list.map((s) => el("tr", { "data-session": s.id },
    el("td", { "data-label": "Name" }, el("strong", { class: "nm", title: `id ${s.id}` }, s.name)),
    el("td", { "data-label": "Metadata" }, meta(s.metadata) || el("span", { class: "none" }, "—")),
    el("td", { "data-label": "Created" }, live("span", { title: stamp(s.created_at) }, () => ago(s.created_at))),
    el("td", { "data-label": "Last seen" }, live("span", { title: stamp(s.last_seen) }, () => ago(s.last_seen))),
    el("td", { "data-label": "Expires in" }, s.expires_at === null ? "—" : live("span", {}, () => dur(s.expires_at - serverNow()))),
    el("td", { "data-label": "State" }, s.stale
      ? live("span", { class: "badge stale" }, () => `⚠ stale · no heartbeat for ${dur(serverNow() - s.last_seen)}`)
      : el("span", { class: "badge ok" }, "✓ live")),
    el("td", { "data-label": "Leases" }, s.leases.length ? s.leases.join(", ") : el("span", { class: "none" }, "—")))));
  $("ses-count").textContent = `(${list.length})`;
  $("ses-empty").hidden = list.length > 0;
}

$("filter").addEventListener("input", renderResources);
$("sort").addEventListener("change", renderResources);

// ---- history ------------------------------------------------------------------------

function openHistory(resource) {
  state.historyOf = resource;
  $("history-name").textContent = resource;
  $("history-body").replaceChildren();
  $("history-error").textContent = "";
  $("history-dialog").showModal();
  loadHistory();
}

async function loadHistory() {
  const resource = state.historyOf;
  try {
    const { body } = await api(`/v1/history?resource=${encodeURIComponent(resource)}&limit=${HISTORY_LIMIT}`);
    if (resource !== state.historyOf) return; // closed, or another one opened meanwhile
    $("history-body").replaceChildren(...body.slice().reverse().map((ev) => el("tr", { "data-seq": ev.seq },
      el("td", {}, ev.seq), el("td", { title: stamp(ev.at) }, clock(ev.at)), el("td", {}, ev.kind),
      el("td", {}, ev.session_name || ""), el("td", {}, ev.mode || ""),
      el("td", {}, ev.fence == null ? "" : ev.fence), el("td", {}, ev.reason || ""))));
    if (body.length === 0) $("history-error").textContent = "No recorded events.";
  } catch (e) {
    if (e instanceof NeedsLogin) return showLogin();
    $("history-error").textContent = e.message;
  }
}

$("history-dialog").addEventListener("close", () => { state.historyOf = null; });

// ---- force release (admins) ---------------------------------------------------------

function openForce(resource) {
  state.forceOf = resource;
  const st = state.locks.find((l) => l.resource === resource);
  $("force-name").textContent = resource;
  $("force-holders").textContent = st ? st.holders.map((h) => h.session_name).join(", ") : "?";
  $("force-reason").value = "";
  $("force-error").textContent = "";
  $("force-ok").disabled = true;
  $("force-dialog").showModal();
  $("force-reason").focus();
}

$("force-reason").addEventListener("input", () => {
  $("force-ok").disabled = $("force-reason").value.trim() === "";
});
$("force-cancel").addEventListener("click", () => $("force-dialog").close());
$("force-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const reason = $("force-reason").value.trim();
  const resource = state.forceOf;
  if (!reason || resource === null) return;
  $("force-ok").disabled = true;
  try {
    const { body } = await api(`/v1/locks/${encodeURIComponent(resource)}/force-release`,
      { method: "POST", body: JSON.stringify({ reason }) });
    $("force-dialog").close();
    toast(`Released ${body.released} holder(s) of ${resource}.`);
  } catch (err) {
    if (err instanceof NeedsLogin) { $("force-dialog").close(); return showLogin(); }
    $("force-error").textContent = err.message;
    $("force-ok").disabled = false;
  }
});

// ---- login --------------------------------------------------------------------------

function showLogin() {
  stop();
  $("views").hidden = true;
  $("logout").hidden = true;
  $("who").textContent = "";
  $("login").hidden = false;
  $("conn").textContent = "not logged in";
  $("conn").className = "conn";
  $("token").focus();
}

// Forgets everything shown: after a logout nothing of it stays in the page.
function stop() {
  state.gen += 1;
  clearTimeout(state.retryTimer);
  clearTimeout(refreshTimer);
  refreshTimer = null;
  if (state.es) state.es.close();
  state.es = null;
  state.role = null;
  state.online = false;
  state.locks = [];
  state.sessions = new Map();
  state.lastSeq = null;
  state.lagged = false;
  state.historyOf = null;
  follow(true);
  for (const id of ["res-body", "ses-body", "log-list", "history-body"]) $(id).replaceChildren();
  ticking = [];
  for (const id of ["history-dialog", "force-dialog"]) if ($(id).open) $(id).close();
  document.body.classList.remove("offline");
}

$("login-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const input = $("token");
  const token = input.value;
  input.value = ""; // not kept anywhere: the server answers with its own cookie
  $("login-error").textContent = "";
  try {
    await api("/v1/login", { method: "POST", body: JSON.stringify({ token }) });
    start();
  } catch (err) {
    $("login-error").textContent = err instanceof NeedsLogin ? "That token was refused." : err.message;
    input.focus();
  }
});

$("logout").addEventListener("click", async () => {
  try { await api("/v1/logout", { method: "POST" }); } catch (_) { /* the cookie goes anyway */ }
  showLogin();
});

// ---- start --------------------------------------------------------------------------

let toastTimer = null;
function toast(text) {
  const t = $("toast");
  t.textContent = text;
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.hidden = true; }, 5000);
}

async function start() {
  let who;
  try {
    who = (await api("/v1/whoami")).body;
  } catch (e) {
    setOnline(false);
    setTimeout(start, 2000); // the server is not up yet
    return;
  }
  if (who.role === null) return showLogin();
  state.role = who.role;
  $("login").hidden = true;
  $("views").hidden = false;
  $("who").textContent = who.tokens ? `role: ${who.role}` : "no tokens: loopback only";
  $("logout").hidden = !who.tokens;
  // The log starts with the recent past, and the stream goes on from its last seq, so
  // nothing between the two is missed.
  const gen = state.gen;
  try {
    const { body } = await api(`/v1/history?limit=${HISTORY_LIMIT}`);
    if (gen !== state.gen) return;
    for (const ev of body) { state.lastSeq = ev.seq; logEvent(ev); }
  } catch (e) {
    if (e instanceof NeedsLogin) return showLogin();
  }
  if (state.lastSeq === null) state.lastSeq = 0;
  refresh();
  connectEvents();
}

start();
