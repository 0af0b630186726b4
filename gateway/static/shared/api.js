/**
 * smartcharge API client (shared by the driver app and the operator dashboard).
 *
 * Same-origin fetch wrapper: JSON in and out, `Authorization: Bearer <access token>`,
 * one automatic refresh + retry on 401, errors thrown as ApiError carrying the API's `reason`.
 * The access token lives in memory only; the rotating refresh token in localStorage.
 *
 *   import { createClient, ApiError } from "/static/shared/api.js";
 *   const api = createClient({ storageKey: "smartcharge.driver.refresh" });
 *   await api.login(email, password);           // or api.register(...) / await api.resume()
 *   const { evses } = await api.get("/api/v1/evses/nearest", { lat, lon, limit: 10 });
 *   await api.post(`/api/v1/evses/${id}/reservation`);
 *   try { ... } catch (e) { if (e instanceof ApiError) show(e.reason); }
 *
 * Tabs of one browser agree (shared/tabsync.js, docs/auth.md): one refresh at a time, new
 * tokens shared, and signing out in one tab signs out all of them.
 *
 * Exported names (stable): ApiError, createClient, API_PREFIX.
 */

import { createTabSync } from "./tabsync.js";

export const API_PREFIX = "/api/v1";

export class ApiError extends Error {
  /**
   * @param {number} status HTTP status (0 for a network failure)
   * @param {string} reason the API's `reason` (or a readable fallback)
   * @param {any} body the parsed error body, if any
   * @param {number|null} retryAfter seconds from a `Retry-After` header (a 429, a 503), if any
   */
  constructor(status, reason, body = null, retryAfter = null) {
    super(reason);
    this.name = "ApiError";
    this.status = status;
    this.reason = reason;
    this.body = body;
    this.retryAfter = retryAfter;
  }
}

function withQuery(path, query) {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== "") params.set(key, String(value));
  }
  const text = params.toString();
  if (!text) return path;
  return path + (path.includes("?") ? "&" : "?") + text;
}

function absolute(path) {
  return path.startsWith("/api/") || path.startsWith("http") ? path : API_PREFIX + path;
}

async function readBody(response) {
  if (response.status === 204) return null;
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** `{email, role}` from a JWT's payload (not verified: the server does that), or null. */
function accountOf(token) {
  if (!token) return null;
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(part + "=".repeat((4 - (part.length % 4)) % 4)));
    return typeof claims.email === "string" ? { email: claims.email, role: claims.role } : null;
  } catch {
    return null;
  }
}

/**
 * A client with its own token state.
 * @param {object} [options]
 * @param {string} [options.base] URL prefix (default: same origin, "")
 * @param {string} [options.storageKey] localStorage key of the refresh token
 * @param {(signedIn: boolean, why?: string) => void} [options.onAuthChange] called on sign-in
 *   and sign-out (`why`: "ended", or "elsewhere" when another tab signed out)
 */
export function createClient(options = {}) {
  const base = options.base ?? "";
  const storageKey = options.storageKey ?? "smartcharge.refresh";
  const listeners = new Set();
  if (options.onAuthChange) listeners.add(options.onAuthChange);
  let accessToken = null;
  let expiresAt = 0; // ms since epoch (client clock)
  let refreshing = null; // the in-flight refresh, shared by concurrent callers
  let lastRefreshStatus = null; // HTTP status of the last failed refresh (0: unreachable)

  const storage = {
    get() {
      try {
        return window.localStorage.getItem(storageKey);
      } catch {
        return null;
      }
    },
    set(value) {
      try {
        if (value) window.localStorage.setItem(storageKey, value);
        else window.localStorage.removeItem(storageKey);
      } catch {
        /* private mode: the session lasts as long as the page */
      }
    },
  };

  /** `why` (signed out only): "ended" (refused or signed out here) or "elsewhere" (another
   * tab of this browser signed out). */
  function emit(signedIn, why = "ended") {
    for (const listener of listeners) listener(signedIn, signedIn ? undefined : why);
  }

  const sync = createTabSync(storageKey, {
    // another tab refreshed: its access token serves this tab too (it stored the new
    // refresh token already)
    onTokens(tokens) {
      if (accessToken === null && storage.get() === null) return; // not signed in here
      accessToken = tokens.access_token;
      expiresAt = Date.now() + (Number(tokens.expires_in) || 900) * 1000;
    },
    // another tab signed out: so does this one (without a call: that tab made it)
    onSignOut() {
      const was = accessToken !== null;
      accessToken = null;
      expiresAt = 0;
      if (was) emit(false, "elsewhere");
    },
  });

  function accept(tokens) {
    accessToken = tokens.access_token;
    expiresAt = Date.now() + (Number(tokens.expires_in) || 900) * 1000;
    storage.set(tokens.refresh_token);
    emit(true);
    return tokens;
  }

  function forget() {
    const was = accessToken !== null || storage.get() !== null;
    accessToken = null;
    expiresAt = 0;
    storage.set(null);
    if (was) emit(false);
  }

  async function raw(method, path, { body, query, token, signal } = {}) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (token) headers.Authorization = `Bearer ${token}`;
    let response;
    try {
      response = await fetch(base + withQuery(absolute(path), query), {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: "same-origin",
        cache: "no-store",
        signal,
      });
    } catch (error) {
      if (error && error.name === "AbortError") throw error;
      throw new ApiError(0, "cannot reach the server; check your connection", null);
    }
    const data = await readBody(response);
    if (!response.ok) {
      const reason =
        (data && typeof data === "object" && (data.reason || data.title)) ||
        `${response.status} ${response.statusText || "error"}`;
      const wait = Number.parseInt(response.headers.get("Retry-After") || "", 10);
      throw new ApiError(response.status, reason, data, Number.isFinite(wait) ? wait : null);
    }
    return data;
  }

  /** Trade the stored refresh token for new tokens; false when there is none or it failed.
   * One tab at a time: a tab that waited finds the new tokens another tab shared. */
  async function refresh() {
    if (!refreshing) {
      const before = accessToken;
      refreshing = sync
        .withLock(async () => {
          const stored = storage.get();
          if (!stored) return false;
          if (accessToken !== null && accessToken !== before && Date.now() < expiresAt - 60_000) {
            return true; // another tab refreshed while this one waited
          }
          try {
            const tokens = await raw("POST", "/auth/refresh", { body: { refresh_token: stored } });
            lastRefreshStatus = null;
            accept(tokens);
            sync.shareTokens(tokens);
            return true;
          } catch (error) {
            lastRefreshStatus = error instanceof ApiError ? error.status : 0;
            if (error instanceof ApiError && error.status !== 0 && error.status < 500) forget();
            return false;
          }
        })
        .catch(() => false) // a lock that could not be taken: no refresh this time
        .finally(() => {
          refreshing = null;
        });
    }
    return refreshing;
  }

  /** A usable access token (refreshed first if it expires within a minute), or null. */
  async function freshToken({ force = false } = {}) {
    if (force || !accessToken || Date.now() > expiresAt - 60_000) {
      if (!(await refresh())) return accessToken && !force ? accessToken : null;
    }
    return accessToken;
  }

  /** Any call; `auth: false` sends no token. Retries once after a refresh on 401. */
  async function request(method, path, { body, query, auth = true, signal } = {}) {
    const token = auth ? await freshToken() : null;
    try {
      return await raw(method, path, { body, query, token, signal });
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 401 || !auth) throw error;
      if (!(await refresh())) {
        forget();
        throw error;
      }
      return raw(method, path, { body, query, token: accessToken, signal });
    }
  }

  return {
    request,
    get: (path, query, opts = {}) => request("GET", path, { ...opts, query }),
    post: (path, body = {}, opts = {}) => request("POST", path, { ...opts, body }),
    put: (path, body = {}, opts = {}) => request("PUT", path, { ...opts, body }),
    del: (path, opts = {}) => request("DELETE", path, opts),
    /** Public read without a token. */
    publicGet: (path, query, opts = {}) => request("GET", path, { ...opts, query, auth: false }),
    async login(email, password) {
      return accept(await raw("POST", "/auth/login", { body: { email, password } }));
    },
    /** Signed in at once, or `{ pending: true, message }` when a mailed link must confirm
     * the address first (a server with mail answers 202, the same for every address). */
    async register(email, password) {
      const data = await raw("POST", "/auth/register", { body: { email, password } });
      if (data && data.access_token) return accept(data);
      return { pending: true, message: (data && data.message) || "check your mailbox" };
    },
    /** Ask for a reset link by mail (202 whether or not the address has an account). */
    requestReset: (email) => raw("POST", "/auth/reset", { body: { email } }),
    /** A new password through a mailed reset link: signed in with it. */
    async resetPassword(token, password) {
      return accept(await raw("POST", "/auth/reset/confirm", { body: { token, password } }));
    },
    /** Confirm the address through a mailed link. */
    confirmEmail: (token) => raw("POST", "/auth/confirm", { body: { token } }),
    async logout() {
      const stored = storage.get();
      forget();
      sync.shareSignOut();
      if (stored) {
        try {
          await raw("POST", "/auth/logout", { body: { refresh_token: stored } });
        } catch {
          /* signed out locally either way */
        }
      }
    },
    /** Sign in again from a stored refresh token (after a reload); true when signed in. */
    resume: () => refresh(),
    refresh,
    freshToken,
    get signedIn() {
      return accessToken !== null;
    },
    /** Whether a refresh token is stored (a session may be resumed). */
    hasStoredSession: () => storage.get() !== null,
    /** Whether the last refresh failed because the server was out of reach (not refused). */
    get lastRefreshUnreachable() {
      return lastRefreshStatus === 0 || (lastRefreshStatus !== null && lastRefreshStatus >= 500);
    },
    /** The signed-in account's email and role, read from the access token (no call). */
    get account() {
      return accountOf(accessToken);
    },
    onAuthChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}
