/* The outbox: what the officer sent, kept on the device until the server has it.

   Each entry gets its Idempotency-Key and captured_at when send is pressed, and keeps them through every
   retry, so a post whose answer was lost is stored once however often it is sent. Entries go in the order
   they were made, one at a time; a network error, 408, 429 or 5xx stops the queue and it tries again later
   (doubling the wait, at most 60 s, sooner when the phone comes back online); any other 4xx moves the entry to
   the "not sent" list with the server's reason. Photos are uploaded one by one first and their ids kept in
   the entry, so a weak signal does not make them go up twice. */

import * as db from "./db.js";
import {getToken, problemText, randomKey, request, retryable} from "./api.js";

export const MAX_WAIT_MS = 60000;
const FIRST_WAIT_MS = 1000;

const RETRY = "retry";
const DONE = "done";

export class Outbox {
  constructor(onChange) {
    this.onChange = onChange;
    this.failures = 0;
    this.timer = null;
    this.nextTry = null;
    this.sending = false;
    this.lastError = "";
  }

  /* An update: {tag, body: {text, kind, visibility, location?, captured_at}, files: [Blob]}. */
  async post(tag, body, files) {
    await db.add(db.OUTBOX, {type: "update", key: randomKey(), tag, body, files, photoIds: [],
      queued_at: new Date().toISOString()});
    this.changed();
    this.kick();
  }

  async acknowledge(alertId, text) {
    await db.add(db.OUTBOX, {type: "ack", key: randomKey(), alertId, text, queued_at: new Date().toISOString()});
    this.changed();
    this.kick();
  }

  waiting() { return db.all(db.OUTBOX); }
  notSent() { return db.all(db.NOT_SENT); }

  /* A refused post goes back in the queue as a new post (a new key: the server stored nothing for it). */
  async sendAgain(key) {
    const entry = (await this.notSent()).find((e) => e.key === key);
    if (!entry) return;
    const {n, detail, status, failed_at, ...rest} = entry;
    await db.move(db.NOT_SENT, key, db.OUTBOX, {...rest, key: randomKey(), photoIds: []});
    this.changed();
    this.kick();
  }

  async discard(key) {
    await db.remove(db.NOT_SENT, key);
    this.changed();
  }

  async forgetAll() {
    await db.clear(db.OUTBOX);
    await db.clear(db.NOT_SENT);
    this.changed();
  }

  changed() { this.onChange(); }

  /* Try now: at start, after a post is queued, and when the phone comes back online. */
  kick() {
    clearTimeout(this.timer);
    this.timer = null;
    this.nextTry = null;
    this.drain();
  }

  async drain() {
    // Signed out because the token stopped working: the outbox waits for the next sign-in rather than
    // collecting 401s in "not sent".
    if (!getToken()) return;
    if (this.sending) {
      this.again = true;
      return;
    }
    this.sending = true;
    try {
      do {
        this.again = false;
        // One sender per device: two open windows of the app never send the same entry at once.
        if (navigator.locks) await navigator.locks.request("fieldcomms-outbox", () => this.sendAll());
        else await this.sendAll();
      } while (this.again && !this.timer);
    } finally {
      this.sending = false;
    }
  }

  async sendAll() {
    for (;;) {
      const entries = await this.waiting();
      if (!entries.length) {
        this.failures = 0;
        this.lastError = "";
        return;
      }
      const entry = entries[0];
      const outcome = await this.send(entry);
      if (outcome === RETRY) {
        this.later();
        this.changed();
        return;
      }
      this.failures = 0;
      this.lastError = "";
      if (outcome === DONE) await db.remove(db.OUTBOX, entry.n);
      else await db.move(db.OUTBOX, entry.n, db.NOT_SENT, {...entry, ...outcome, failed_at: new Date().toISOString()});
      this.changed();
    }
  }

  later() {
    this.failures += 1;
    const wait = Math.min(MAX_WAIT_MS, FIRST_WAIT_MS * 2 ** (this.failures - 1));
    const delay = Math.round(wait * (0.75 + Math.random() * 0.25)); // phones in one crowd do not retry in step
    this.nextTry = Date.now() + delay;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.nextTry = null;
      this.drain();
    }, delay);
  }

  /* DONE, RETRY, or {status, detail} for a refusal. */
  async send(entry) {
    try {
      if (entry.type === "ack") {
        return await this.outcome(await request("POST", `/api/v1/alerts/${encodeURIComponent(entry.alertId)}/ack`));
      }
      const files = entry.files || [];
      for (let i = 0; i < files.length; i++) {
        if (entry.photoIds[i]) continue;
        const form = new FormData();
        form.append("file", files[i], files[i].name || `photo-${i + 1}.jpg`);
        const resp = await request("POST", "/api/v1/photos", {body: form, key: `${entry.key}-photo-${i}`});
        if (!resp.ok) return await this.outcome(resp);
        entry.photoIds[i] = (await resp.json()).id;
        await db.put(db.OUTBOX, entry);
      }
      const body = files.length ? {...entry.body, photos: entry.photoIds} : entry.body;
      return await this.outcome(await request("POST", `/api/v1/events/${encodeURIComponent(entry.tag)}/updates`,
        {body, key: entry.key}));
    } catch (e) {
      this.lastError = "No connection.";
      return RETRY; // no answer: the request may or may not have arrived; the key makes sending again safe
    }
  }

  async outcome(resp) {
    if (resp.ok) return DONE;
    if (retryable(resp.status)) {
      this.lastError = `The server answered ${resp.status}.`;
      return RETRY;
    }
    return {status: resp.status, detail: await problemText(resp)};
  }
}
