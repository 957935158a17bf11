/* Web Push: after sign-in, and only where the browser has PushManager, the officer allowed notifications and
   the server publishes its key, the app subscribes and hands the subscription to the server, so an alert
   reaches the phone with the app closed. Anything missing on the way (an older server, no push service, a
   refusal) leaves the app as it is: the stream still brings alerts while the app is open. */

import {json, request} from "./api.js";

const KEY = "fc.push";

function keyBytes(base64url) {
  const text = atob(base64url.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((base64url.length + 3) % 4));
  return Uint8Array.from(text, (c) => c.charCodeAt(0));
}

export async function startPush() {
  try {
    if (!("PushManager" in window) || !navigator.serviceWorker || !("Notification" in window)) return;
    if (Notification.permission !== "granted") return;
    const reg = await navigator.serviceWorker.ready;
    const resp = await request("GET", "/api/v1/push/key");
    if (!resp.ok) return;
    const {public_key: publicKey} = await resp.json();
    const subscription = (await reg.pushManager.getSubscription()) ||
      await reg.pushManager.subscribe({userVisibleOnly: true, applicationServerKey: keyBytes(publicKey)});
    const saved = await json("POST", "/api/v1/push/subscriptions", {body: subscription.toJSON()});
    localStorage.setItem(KEY, saved.id);
  } catch (e) {
    // no push on this browser or server: alerts come through the stream while the app is open
  }
}

export async function stopPush() {
  const id = localStorage.getItem(KEY);
  localStorage.removeItem(KEY);
  try {
    if (id) await request("DELETE", `/api/v1/push/subscriptions/${encodeURIComponent(id)}`);
    const reg = navigator.serviceWorker && await navigator.serviceWorker.getRegistration("/app");
    const subscription = reg && reg.pushManager && await reg.pushManager.getSubscription();
    if (subscription) await subscription.unsubscribe();
  } catch (e) { /* offline: the server ends it when the push service answers 410 */ }
}
