/* IndexedDB, the little of it the app needs, as promises. One database per device: the outbox (posts and
   acknowledgements waiting, in the order they were made), the posts the server refused, and nothing else.
   IndexedDB, not localStorage: it keeps photo files (Blobs) and survives the app closing and the phone
   restarting. */

const NAME = "fieldcomms-app";
const VERSION = 1;
export const OUTBOX = "outbox";
export const NOT_SENT = "not-sent";

let opened = null;

function promised(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

export function open() {
  if (!opened) {
    const request = indexedDB.open(NAME, VERSION);
    request.onupgradeneeded = () => {
      const db = request.result;
      // `n` numbers the entries in the order they were made: the outbox is sent in that order.
      if (!db.objectStoreNames.contains(OUTBOX)) db.createObjectStore(OUTBOX, {keyPath: "n", autoIncrement: true});
      if (!db.objectStoreNames.contains(NOT_SENT)) db.createObjectStore(NOT_SENT, {keyPath: "key"});
    };
    opened = promised(request);
  }
  return opened;
}

async function store(name, mode) {
  const db = await open();
  return db.transaction(name, mode).objectStore(name);
}

/* Every write waits for its transaction to commit, so "queued" means "on the disk". */
async function write(name, act) {
  const db = await open();
  const tx = db.transaction(name, "readwrite");
  const result = act(tx.objectStore(name));
  await new Promise((resolve, reject) => {
    tx.oncomplete = resolve;
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error || new Error("transaction aborted"));
  });
  return result ? result.result : undefined;
}

export async function all(name) { return promised((await store(name, "readonly")).getAll()); }
export function add(name, value) { return write(name, (s) => s.add(value)); }
export function put(name, value) { return write(name, (s) => s.put(value)); }
export function remove(name, key) { return write(name, (s) => s.delete(key)); }
export function clear(name) { return write(name, (s) => s.clear()); }

/* Moves one entry between stores in one transaction: a refused post is never in both lists, nor in neither. */
export async function move(from, key, to, value) {
  const db = await open();
  const tx = db.transaction([from, to], "readwrite");
  tx.objectStore(from).delete(key);
  tx.objectStore(to).put(value);
  await new Promise((resolve, reject) => {
    tx.oncomplete = resolve;
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error || new Error("transaction aborted"));
  });
}
