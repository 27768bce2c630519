// The console's only way to the server: same-origin fetch with the session cookie. Changes carry
// the session's CSRF token. The API key itself is never kept by the page.

const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);

export const session = { role: null, account_id: null, key_id: null, label: null, csrf_token: null };

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function headers(method, extra) {
  const out = { Accept: "application/json", ...extra };
  if (UNSAFE.has(method) && session.csrf_token) out["X-CSRF-Token"] = session.csrf_token;
  return out;
}

async function errorOf(resp) {
  let message = `HTTP ${resp.status}`;
  try {
    const body = await resp.json();
    if (body && body.error && body.error.message) message = `${resp.status}: ${body.error.message}`;
  } catch {
    // Not JSON: the status says enough.
  }
  return new ApiError(resp.status, message);
}

async function send(method, path, body) {
  const init = { method, credentials: "same-origin", headers: headers(method) };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const resp = await fetch(path, init);
  if (!resp.ok) throw await errorOf(resp);
  return resp;
}

/** fetch with the cookie; `body` is sent as JSON. Returns the parsed JSON (null for no body). */
export async function api(method, path, body) {
  const text = await (await send(method, path, body)).text();
  return text ? JSON.parse(text) : null;
}

/** A GET that may be answered from the last good read while the database is away: the JSON and
 * its age in seconds (X-XRouter-Stale), or null when it is fresh. */
export async function read(path) {
  const resp = await send("GET", path);
  const stale = resp.headers.get("X-XRouter-Stale");
  return { body: await resp.json(), stale: stale === null ? null : Number(stale) };
}

/** The raw response of a request that streams (the playground). */
export async function stream(path, body, signal) {
  const resp = await fetch(path, {
    method: "POST", credentials: "same-origin", signal,
    headers: headers("POST", { "Content-Type": "application/json", Accept: "text/event-stream" }),
    body: JSON.stringify(body),
  });
  if (!resp.ok) throw await errorOf(resp);
  return resp;
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const text = q.toString();
  return text ? `?${text}` : "";
}

export async function loadSession() {
  try {
    const reply = await api("GET", "/console/session");
    Object.assign(session, reply.data);
    return true;
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return false;
    throw err;
  }
}

export async function signIn(key) {
  const reply = await api("POST", "/console/session", { key });
  Object.assign(session, reply.data);
}

export async function signOut() {
  try {
    await api("DELETE", "/console/session");
  } finally {
    for (const k of Object.keys(session)) session[k] = null;
  }
}

/** The account a page asks about: the operator's filter field, else "#/page?account_id=" (any
 * other account is refused by the API: the page shows that error), else the session's own. */
export function accountParam(ctx, input) {
  if (session.role === "master") return input ? input.value.trim() : "";
  return ctx.params.get("account_id") || "";
}
