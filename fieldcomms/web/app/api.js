/* The API with the officer's token, and how an answer is sorted: done, try again later, or refused. */

let token = null;

export function setToken(value) { token = value; }
export function getToken() { return token; }

/* 16 random bytes as hex: an Idempotency-Key. (crypto.randomUUID exists only in secure contexts.) */
export function randomKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function request(method, path, {body, key, headers = {}, signal} = {}) {
  const init = {method, headers: {Accept: "application/json", ...headers}, cache: "no-store", signal};
  if (token) init.headers.Authorization = "Bearer " + token;
  if (key) init.headers["Idempotency-Key"] = key;
  if (body instanceof FormData) init.body = body;
  else if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  return fetch(path, init);
}

/* Which failures are worth another try: no answer at all (fetch throws), a timeout, too many requests, or
   the server's own trouble. Any other 4xx will not change by trying again. */
export function retryable(status) { return status === 408 || status === 429 || status >= 500; }

/* What went wrong, in the server's words: the problem's detail and each field's message. */
export async function problemText(resp) {
  let problem = null;
  try { problem = await resp.json(); } catch (e) { problem = null; }
  if (!problem || typeof problem !== "object") return `The server answered ${resp.status}.`;
  const parts = [problem.detail || problem.title || `The server answered ${resp.status}.`];
  for (const error of problem.errors || []) {
    if (error && error.message && !parts[0].includes(error.message)) parts.push(`${error.field}: ${error.message}`);
  }
  return parts.join(" ");
}

export async function json(method, path, options) {
  const resp = await request(method, path, options);
  if (!resp.ok) {
    const error = new Error(await problemText(resp));
    error.status = resp.status;
    throw error;
  }
  return resp.status === 204 ? null : resp.json();
}
