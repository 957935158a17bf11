/* The event's live stream, read with fetch() because EventSource cannot send the officer's token, and parsed
   by the rules of the HTML standard. It reconnects with Last-Event-ID, so nothing is missed or repeated. */

import {request} from "./api.js";

const SILENCE_MS = 45000; // keep-alives come every 15 s: three missed means a dead connection

export class Stream {
  constructor(tag, lastEventId, handlers) {
    this.tag = tag;
    this.lastEventId = lastEventId;
    this.handlers = handlers; // {event(type, data), state(name), unauthorised()}
    this.retryMs = 3000;
    this.running = false;
    this.abort = null;
    this.heard = 0;
  }

  start() {
    if (this.running) return;
    this.running = true;
    this.connect();
    this.watchdog = setInterval(() => {
      if (this.abort && Date.now() - this.heard > SILENCE_MS) this.abort.abort();
    }, 5000);
  }

  stop() {
    this.running = false;
    clearInterval(this.watchdog);
    clearTimeout(this.timer);
    if (this.abort) this.abort.abort();
  }

  /* Reconnect now, e.g. when the phone comes back online, rather than at the next retry. */
  now() {
    if (!this.running || this.abort) return;
    clearTimeout(this.timer);
    this.connect();
  }

  async connect() {
    const ctrl = new AbortController();
    this.abort = ctrl;
    this.heard = Date.now();
    this.handlers.state("connecting");
    const headers = {Accept: "text/event-stream"};
    if (this.lastEventId !== null && this.lastEventId !== undefined) headers["Last-Event-ID"] = String(this.lastEventId);
    try {
      const resp = await request("GET", `/api/v1/events/${encodeURIComponent(this.tag)}/stream`,
        {headers, signal: ctrl.signal});
      if (resp.status === 401) {
        this.handlers.unauthorised();
        this.running = false;
      } else if (resp.ok && resp.body) {
        this.handlers.state("live");
        await this.read(resp.body);
      }
    } catch (e) {
      // no connection, or aborted: try again below
    }
    if (this.abort === ctrl) this.abort = null;
    if (!this.running) return;
    this.handlers.state("offline");
    this.timer = setTimeout(() => this.connect(), this.retryMs);
  }

  async read(body) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let type = "";
    let data = [];
    let id = null;
    const line = (text) => {
      if (text === "") {
        if (id !== null) this.lastEventId = id;
        if (type === "reset") this.handlers.event("reset", null);
        else if (data.length) {
          let parsed = null;
          try { parsed = JSON.parse(data.join("\n")); } catch (e) { parsed = null; }
          if (parsed) this.handlers.event(type || "message", parsed);
        }
        type = "";
        data = [];
        id = null;
        return;
      }
      if (text[0] === ":") return;
      const colon = text.indexOf(":");
      const field = colon < 0 ? text : text.slice(0, colon);
      const value = colon < 0 ? "" : text.slice(colon + 1).replace(/^ /, "");
      if (field === "event") type = value;
      else if (field === "data") data.push(value);
      else if (field === "id" && !value.includes("\0")) id = value;
      else if (field === "retry" && /^\d+$/.test(value)) this.retryMs = Number(value);
    };
    for (;;) {
      const chunk = await reader.read();
      if (chunk.done) return;
      this.heard = Date.now();
      buffer += chunk.value;
      let match;
      while ((match = /\r\n|\r|\n/.exec(buffer)) !== null) {
        if (match[0] === "\r" && match.index === buffer.length - 1) break; // "\r\n" may be split across chunks
        line(buffer.slice(0, match.index));
        buffer = buffer.slice(match.index + match[0].length);
      }
    }
  }
}
