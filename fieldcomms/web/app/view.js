/* Building the app's DOM from data: text only, never markup, so nothing from the server can become code. */

import {request} from "./api.js";

export const $ = (id) => document.getElementById(id);

export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.appendChild(typeof child === "object" ? child : document.createTextNode(String(child)));
  }
  return node;
}

const KINDS = {info: ["Information", "i"], warning: ["Warning", "\u26a0"], alert: ["Alert", "\u203c"]};
const pad = (n) => String(n).padStart(2, "0");

/* "10:02 UTC", or "12 Mar, 10:02 UTC" when it is not today: the same clock as the control room's. */
export function clock(value) {
  const d = value ? new Date(value) : new Date();
  if (isNaN(d.getTime())) return "";
  const time = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())} UTC`;
  const today = new Date().toISOString().slice(0, 10) === d.toISOString().slice(0, 10);
  return today ? time : `${d.getUTCDate()} ${d.toLocaleString("en-GB", {month: "short", timeZone: "UTC"})}, ${time}`;
}

export function truncate(text, n) {
  text = String(text || "");
  return text.length <= n ? text : text.slice(0, n - 1).replace(/\s+\S*$/, "") + "\u2026";
}

function kindBadge(kind) {
  const [label, symbol] = KINDS[kind] || KINDS.info;
  return el("span", {class: `badge kind-${kind in KINDS ? kind : "info"}`},
    el("span", {"aria-hidden": "true"}, symbol), ` ${label}`);
}

/* A photo of an internal update needs the officer's token, which an <img> cannot send: fetch it, show a blob. */
function photoImage(photo, alt) {
  const long = Math.max(Number(photo.width) || 320, Number(photo.height) || 320);
  const scale = Math.min(1, 160 / long);
  const img = el("img", {alt, width: Math.round((Number(photo.width) || 320) * scale),
    height: Math.round((Number(photo.height) || 320) * scale)});
  request("GET", photo.thumb_url).then((resp) => (resp.ok ? resp.blob() : null)).then((blob) => {
    if (blob) img.src = URL.createObjectURL(blob);
  }).catch(() => { /* offline: the space stays, with its alt text */ });
  return img;
}

export function feedItem(u) {
  const kind = u.kind in KINDS ? u.kind : "info";
  const meta = el("p", {class: "meta"}, kindBadge(kind),
    el("span", {class: `vis vis-${u.visibility}`}, u.visibility === "public" ? "Public" : "Internal"),
    el("time", {datetime: u.captured_at}, clock(u.captured_at)),
    u.author && u.author.callsign ? el("span", {class: "from"}, u.author.callsign) : null);
  const item = el("li", {class: `update kind-${kind}`, "data-id": u.id, "data-seq": u.seq}, meta,
    el("p", {class: "text"}, u.text));
  const photos = u.photos || [];
  if (photos.length) {
    const list = el("ul", {class: "photos"});
    photos.forEach((p, i) => list.appendChild(el("li", null,
      photoImage(p, `Photo ${i + 1} of ${photos.length}: ${truncate(u.text, 80)}`))));
    item.appendChild(list);
  }
  if (u.location) {
    item.appendChild(el("p", {class: "where"}, `At ${Number(u.location.lat).toFixed(5)}, ` +
      `${Number(u.location.lon).toFixed(5)}` + (u.zones && u.zones.length ? ` (${u.zones.map((z) => z.name).join(", ")})` : "")));
  }
  return item;
}

export function alertItem(a, acked, onAck) {
  const where = a.location ? ` within ${Math.round(a.radius_m)} m of ${Number(a.location.lat).toFixed(4)}, ` +
    `${Number(a.location.lon).toFixed(4)}` : "";
  const item = el("li", {class: "alert" + (acked ? " acked" : ""), "data-test": "alert", "data-id": a.id},
    el("p", {class: "alert-text"}, a.text),
    el("p", {class: "meta"}, `Sent ${clock(a.created_at || a.sent_at)}` + (a.by ? ` by ${a.by.callsign}` : "") + where));
  if (acked) item.appendChild(el("p", {class: "acked-note"}, acked));
  else {
    const button = el("button", {type: "button", class: "primary ack", "data-test": "ack"}, "Acknowledge");
    button.addEventListener("click", () => onAck(a, button));
    item.appendChild(button);
  }
  return item;
}

export function entryItem(entry, actions) {
  const text = entry.type === "ack" ? `Acknowledgement of the alert \u201c${truncate(entry.text, 60)}\u201d`
    : truncate(entry.body.text, 140);
  const files = (entry.files || []).length;
  const facts = [entry.body ? (entry.body.visibility === "public" ? "public" : "internal") : null,
    files ? `${files} photo${files > 1 ? "s" : ""}` : null,
    entry.body && entry.body.location ? "with location" : null,
    `made ${clock(entry.body ? entry.body.captured_at : entry.queued_at)}`].filter(Boolean).join(", ");
  const item = el("li", {"data-key": entry.key}, el("p", {class: "text"}, text), el("p", {class: "meta"}, facts));
  if (entry.detail) item.appendChild(el("p", {class: "detail"}, el("strong", null, "Refused: "), entry.detail));
  for (const [label, act] of actions || []) {
    const button = el("button", {type: "button", class: "button secondary"}, label);
    button.addEventListener("click", () => act(entry));
    item.appendChild(button);
  }
  return item;
}
