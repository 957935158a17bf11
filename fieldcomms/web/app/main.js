/* The officer's handset: sign in, post (through the outbox), read the event live, answer alerts, share the
   position. Offline first: everything shows from what the phone kept, and the network only adds to it. */

import {getToken, json, request, setToken} from "./api.js";
import {Outbox} from "./outbox.js";
import {Stream} from "./stream.js";
import {$, alertItem, clock, entryItem, feedItem} from "./view.js";
import {startPush, stopPush} from "./push.js";

const cfg = $("app-config").dataset;
const POSITION_MS = Math.max(5, Number(cfg.positionInterval) || 30) * 1000;
const FEED_MAX = 100;
const K = {token: "fc.token", me: "fc.me", events: "fc.events", event: "fc.event", acked: "fc.acked",
  sharing: "fc.sharing"};
const feedKey = (tag) => `fc.feed.${tag}`;

const app = {ready: false, stream: "closed", worker: "none", tag: null, me: null, received: 0};
window.fieldcomms = Object.assign(window.fieldcomms || {}, {app});

const stored = (key, fallback) => {
  try { return JSON.parse(localStorage.getItem(key)) ?? fallback; } catch (e) { return fallback; }
};
const keep = (key, value) => localStorage.setItem(key, JSON.stringify(value));

let stream = null;
let chosen = [];
let fix = null;
let fixLost = false;
let watchId = null;
let shareTimer = null;
const acked = new Map(stored(K.acked, []));

const outbox = new Outbox(() => renderOutbox());
app.outbox = outbox;

/* ---- status line and outbox ------------------------------------------------------------------------ */

function renderNet() {
  const online = navigator.onLine && app.stream !== "offline";
  const node = $("net");
  node.dataset.state = !navigator.onLine ? "offline" : app.stream;
  node.textContent = !navigator.onLine ? "No connection" : app.stream === "live" ? "Live" :
    online ? "Connecting\u2026" : "No connection";
}

async function renderOutbox() {
  const [waiting, refused] = await Promise.all([outbox.waiting(), outbox.notSent()]);
  const posts = waiting.filter((e) => e.type === "update").length;
  $("outbox-count").textContent = String(posts);
  $("outbox-label").textContent = posts === 1 ? "post waiting" : "posts waiting";
  $("waiting").dataset.count = String(posts + refused.length);
  $("outbox-list").replaceChildren(...waiting.map((e) => entryItem(e)));
  let state = "Nothing waiting: everything you sent has reached the server.";
  if (waiting.length) {
    state = outbox.nextTry ? `${outbox.lastError || "Not sent yet."} Trying again in ` +
      `${Math.max(1, Math.round((outbox.nextTry - Date.now()) / 1000))} s.` : "Sending\u2026";
    if (!navigator.onLine) state = "No connection. Posts are kept on this phone and go as soon as there is a signal.";
  }
  $("outbox-state").textContent = state;
  $("not-sent").replaceChildren(...refused.map((e) => entryItem(e, [
    ["Send again", (x) => outbox.sendAgain(x.key)],
    ["Discard", (x) => { if (confirm("Discard this post? It will not be sent.")) outbox.discard(x.key); }]])));
  $("not-sent-section").hidden = refused.length === 0;
}
setInterval(() => { if (outbox.nextTry) renderOutbox(); }, 1000);

/* ---- the feed and the alerts ----------------------------------------------------------------------- */

function showUpdate(u) {
  const feed = $("feed");
  const old = feed.querySelector(`li[data-id="${CSS.escape(u.id)}"]`);
  if (u.status === "retracted") {
    if (old) old.remove();
    return;
  }
  const item = feedItem(u);
  item.__update = u; // kept with the item, so the feed can be saved for the next start without a signal
  if (old) old.replaceWith(item);
  else {
    feed.prepend(item);
    while (feed.children.length > FEED_MAX) feed.lastElementChild.remove();
  }
}

function saveFeed(lastSeq) {
  const items = [...$("feed").children].map((li) => li.__update).filter(Boolean);
  keep(feedKey(app.tag), {items: items.slice(0, 50), last_seq: lastSeq});
}

function renderFeed(items) {
  $("feed").replaceChildren();
  for (const u of [...items].reverse()) showUpdate(u);
}

function markAcked(id, note) {
  acked.set(id, note);
  keep(K.acked, [...acked].slice(-200));
}

function showAlert(a, fresh) {
  const list = $("alert-list");
  const old = list.querySelector(`li[data-id="${CSS.escape(a.id)}"]`);
  const item = alertItem(a, acked.get(a.id), acknowledge);
  if (old) old.replaceWith(item);
  else if (acked.has(a.id) && !fresh) return; // answered before: only new alerts come back on a restart
  else {
    list.prepend(item);
    if (fresh) {
      if (navigator.vibrate) navigator.vibrate([400, 150, 400, 150, 400]);
      notify(a);
    }
  }
  $("alerts").hidden = list.children.length === 0;
}

function notify(a) {
  if (!("Notification" in window) || Notification.permission !== "granted" || !navigator.serviceWorker) return;
  navigator.serviceWorker.ready.then((reg) => reg.showNotification("Alert", {
    body: a.text, tag: `alert-${a.id}`, renotify: true, requireInteraction: true, icon: "/app/icon-192.png"}))
    .catch(() => {});
}

async function acknowledge(a, button) {
  button.disabled = true;
  let note;
  try {
    const resp = await request("POST", `/api/v1/alerts/${encodeURIComponent(a.id)}/ack`);
    if (resp.ok) note = `Acknowledged at ${clock()}`;
    else if (resp.status === 408 || resp.status === 429 || resp.status >= 500) throw new Error("retry");
    else {
      button.disabled = false;
      button.after(Object.assign(document.createElement("p"), {className: "error", textContent:
        `Not acknowledged: the server answered ${resp.status}.`}));
      return;
    }
  } catch (e) {
    await outbox.acknowledge(a.id, a.text); // acknowledging twice counts once, so the outbox may retry it
    note = `Acknowledged at ${clock()}: waiting to be sent`;
  }
  markAcked(a.id, note);
  showAlert(a, false);
}

/* ---- the event ------------------------------------------------------------------------------------- */

async function loadEvent(tag) {
  if (stream) stream.stop();
  app.tag = tag;
  app.stream = "closed";
  keep(K.event, tag);
  const cached = stored(feedKey(tag), {items: [], last_seq: null});
  renderFeed(cached.items);
  $("alert-list").replaceChildren();
  $("alerts").hidden = true;
  let lastSeq = cached.last_seq;
  try {
    const page = await json("GET", `/api/v1/events/${encodeURIComponent(tag)}/updates?limit=50`);
    renderFeed(page.items);
    lastSeq = page.last_seq;
    saveFeed(lastSeq);
    $("feed-status").textContent = "";
    const alerts = await json("GET", `/api/v1/events/${encodeURIComponent(tag)}/alerts?limit=20`);
    for (const a of [...alerts.items].reverse()) showAlert(a, false);
  } catch (e) {
    $("feed-status").textContent = navigator.onLine ? `Could not load the updates: ${e.message}` :
      "No connection: showing what this phone kept. New updates come when there is a signal.";
  }
  if (app.tag !== tag) return;
  stream = new Stream(tag, lastSeq, {
    state(name) { app.stream = name; renderNet(); },
    unauthorised() { signOut(true, "This token is no longer valid. Sign in again."); },
    event(type, data) {
      app.received += 1;
      if (type === "update" || type === "update-retracted") {
        showUpdate(type === "update" ? data : {...data, status: "retracted"});
        saveFeed(stream.lastEventId);
      } else if (type === "alert") showAlert(data, true);
      else if (type === "reset") loadEvent(tag);
    },
  });
  stream.start();
  app.ready = true;
}

async function loadEvents() {
  let events = stored(K.events, []);
  try {
    events = (await json("GET", "/api/v1/events")).items.filter((e) => e.status !== "closed");
    keep(K.events, events);
  } catch (e) { /* offline: the list this phone kept */ }
  const select = $("event");
  const current = stored(K.event, null);
  select.replaceChildren(...events.map((e) => new Option(`${e.title} (#${e.tag})`, e.tag)));
  const live = events.find((e) => e.tag === current) || events.find((e) => e.status === "live") || events[0];
  if (live) {
    select.value = live.tag;
    loadEvent(live.tag);
  } else $("feed-status").textContent = "No event is open yet.";
}

/* ---- signing in and out ---------------------------------------------------------------------------- */

function show(signedIn) {
  $("signin").hidden = signedIn;
  $("signed-in").hidden = !signedIn;
}

async function checkToken(token) {
  setToken(token);
  try {
    const resp = await request("GET", "/api/v1/me");
    if (resp.status === 401) return false;
    if (resp.ok) {
      app.me = await resp.json();
      keep(K.me, app.me);
    }
  } catch (e) { /* offline: the token is checked when there is a signal */ }
  return true;
}

async function enter(token) {
  setToken(token);
  app.me = stored(K.me, null);
  show(true);
  $("whoami").textContent = app.me ? `${app.me.callsign} (${app.me.name})` : "Signed in";
  await loadEvents();
  watchLocation();
  if (stored(K.sharing, false)) share(true);
  outbox.kick();
  renderOutbox();
  $("notify").hidden = !("Notification" in window) || Notification.permission !== "default";
  startPush();
}

async function signIn(token, fromLink) {
  token = token.trim();
  $("signin-error").textContent = "";
  if (!(await checkToken(token))) {
    setToken(null);
    show(false);
    $("signin-error").textContent = fromLink ? "The sign-in link's token is not valid. Ask control for a new one."
      : "This token is not valid. Check it, or ask control for a new one.";
    return;
  }
  localStorage.setItem(K.token, token);
  $("token").value = "";
  await enter(token);
}

async function signOut(forced, message) {
  if (!forced) {
    const waiting = (await outbox.waiting()).length + (await outbox.notSent()).length;
    if (waiting && !confirm(`${waiting} ${waiting === 1 ? "post has" : "posts have"} not been sent. Signing out ` +
      "deletes them from this phone. Sign out anyway?")) return;
    await stopPush();
    await outbox.forgetAll();
  }
  if (stream) stream.stop();
  share(false);
  if (watchId !== null) navigator.geolocation.clearWatch(watchId);
  watchId = null;
  for (const key of Object.keys(localStorage)) if (key.startsWith("fc.") && (!forced || key === K.token)) localStorage.removeItem(key);
  setToken(null);
  app.ready = false;
  show(false);
  $("signin-error").textContent = message || "";
}

/* ---- location, posting, sharing -------------------------------------------------------------------- */

function asLocation(position) {
  const c = position.coords;
  return {lat: c.latitude, lon: c.longitude, accuracy_m: Math.round(c.accuracy * 10) / 10};
}

function watchLocation() {
  if (!navigator.geolocation || watchId !== null) return;
  watchId = navigator.geolocation.watchPosition((position) => {
    fix = {location: asLocation(position), at: Date.now()};
    fixLost = false;
    $("fix").textContent = `(\u00b1${Math.round(fix.location.accuracy_m)} m)`;
  }, (error) => {
    fixLost = true;
    $("fix").textContent = error.code === 1 ? "(location not allowed)" : "(no location fix yet)";
  }, {enableHighAccuracy: true, maximumAge: 15000});
}

function currentLocation() {
  if (fix && (!fixLost || Date.now() - fix.at < 120000)) return Promise.resolve(fix.location);
  if (!navigator.geolocation) return Promise.resolve(null);
  return new Promise((resolve) => navigator.geolocation.getCurrentPosition(
    (position) => resolve(asLocation(position)), () => resolve(null),
    {enableHighAccuracy: true, maximumAge: 60000, timeout: 5000}));
}

async function send(event) {
  event.preventDefault();
  const text = $("text").value.trim();
  const status = $("post-status");
  if (!text) {
    status.textContent = "Write a message first.";
    $("text").focus();
    return;
  }
  if (!app.tag) {
    status.textContent = "Choose an event first.";
    return;
  }
  // The moment send is pressed is when the post was made, however long it then waits.
  const body = {text, kind: $("kind").value, visibility: $("public").checked ? "public" : "internal",
    captured_at: new Date().toISOString().replace(/\.\d+Z$/, "Z")};
  const files = chosen;
  const button = $("send");
  button.disabled = true;
  try {
    if ($("with-location").checked) {
      status.textContent = "Getting your location\u2026";
      const location = await currentLocation();
      if (location) body.location = location;
    }
    await outbox.post(app.tag, body, files);
    $("post-form").reset();
    $("with-location").checked = true;
    chosen = [];
    renderChosen();
    status.textContent = `Post kept on this phone at ${clock(body.captured_at)}; it goes as soon as it can.`;
  } catch (e) {
    status.textContent = `The post could not be kept on this phone: ${e.message}`;
  } finally {
    button.disabled = false;
  }
}

function renderChosen() {
  $("chosen").replaceChildren(...chosen.map((file, i) => {
    const img = document.createElement("img");
    img.src = URL.createObjectURL(file);
    img.alt = `Photo ${i + 1} for this post`;
    const li = document.createElement("li");
    li.append(img);
    return li;
  }));
}

async function sendPosition() {
  if (!app.tag || !navigator.geolocation) return;
  const current = fix;
  if (!current) {
    $("position-status").textContent = "Sharing: waiting for a location fix.";
    return;
  }
  // watchPosition speaks only when the phone moves: while it reports no error, the last fix is where the
  // officer is now, so a stationary officer does not turn stale on the control room's map.
  const at = new Date(fixLost ? current.at : Date.now()).toISOString().replace(/\.\d+Z$/, "Z");
  const {lat, lon, accuracy_m} = current.location;
  try {
    const resp = await request("POST", `/api/v1/events/${encodeURIComponent(app.tag)}/positions`,
      {body: {lat, lon, accuracy_m, at}});
    $("position-status").textContent = resp.ok ? `Sharing: sent at ${clock()}, every ${POSITION_MS / 1000} s.`
      : `Sharing: the server answered ${resp.status}.`;
  } catch (e) {
    $("position-status").textContent = "Sharing: no connection; trying again shortly.";
  }
}

function share(on) {
  clearInterval(shareTimer);
  shareTimer = null;
  const button = $("share-position");
  button.setAttribute("aria-pressed", String(on));
  button.textContent = on ? "Stop sharing my position" : "Share my position";
  if (on) {
    watchLocation();
    sendPosition();
    shareTimer = setInterval(sendPosition, POSITION_MS);
  } else $("position-status").textContent = "Not sharing.";
  if (getToken()) keep(K.sharing, on);
}

/* ---- start ------------------------------------------------------------------------------------------ */

function tokenFromLink() {
  if (!location.hash) return null;
  const params = new URLSearchParams(location.hash.slice(1));
  // Out of the address bar (and the history) at once: a token must not be shared with a screenshot.
  history.replaceState(null, "", location.pathname + location.search);
  return params.get("token");
}

function start() {
  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("/app/sw.js", {scope: "/app"}).then(() => { app.worker = "registered"; })
      .catch(() => { app.worker = "failed"; });
  }
  $("signin-form").addEventListener("submit", (e) => { e.preventDefault(); signIn($("token").value, false); });
  $("post-form").addEventListener("submit", send);
  $("photo").addEventListener("change", () => { chosen = [...$("photo").files].slice(0, 4); renderChosen(); });
  $("event").addEventListener("change", () => loadEvent($("event").value));
  $("share-position").addEventListener("click", () => share($("share-position").getAttribute("aria-pressed") !== "true"));
  $("sign-out").addEventListener("click", () => signOut(false));
  $("notify").addEventListener("click", async () => {
    await Notification.requestPermission();
    $("notify").hidden = Notification.permission !== "default";
    startPush();
  });
  window.addEventListener("online", () => { renderNet(); outbox.kick(); if (stream) stream.now(); });
  window.addEventListener("offline", () => { renderNet(); renderOutbox(); });
  renderNet();
  renderOutbox();
  const linked = tokenFromLink();
  const token = linked || localStorage.getItem(K.token);
  if (linked) signIn(linked, true);
  else if (token) enter(token);
  else show(false);
}

start();
