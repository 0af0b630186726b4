/**
 * Server-Sent Events with reconnect and a current token on each (re)connection.
 *
 * Browsers cannot put headers on an EventSource, so the token goes in `?access_token=`
 * (the gateway accepts it on /api/v1/me/events and /api/v1/events only).
 * The server ends each stream after a few minutes; this wrapper reconnects with a new
 * URL (so an expired token is never reused), backing off after failures. A refresh is
 * forced (`getToken({force: true})`) only after an auth failure: a stream that never opened
 * is probed once with a plain request, and only a 401/403 counts. A stream that ended, or a
 * server that is down or restarting, never costs a refresh (docs/auth.md).
 *
 *   import { openStream } from "/static/shared/sse.js";
 *   const stream = openStream("/api/v1/me/events", {
 *     getToken: (opts) => api.freshToken(opts),   // async; {force: true} after a failure
 *     handlers: { session: (data) => ..., notification: (data) => ... },
 *     onState: (state) => ...,                     // "connecting" | "open" | "retrying" | "closed"
 *   });
 *   stream.close();
 *
 * Exported names (stable): openStream, EVENT_KINDS.
 */

export const EVENT_KINDS = ["evse", "session", "notification", "alert", "station", "lagged"];

/**
 * @param {string} path e.g. "/api/v1/me/events"
 * @param {object} options
 * @param {(opts: {force: boolean}) => Promise<string|null>} [options.getToken]
 * @param {Record<string, (data: any, event: MessageEvent) => void>} [options.handlers]
 * @param {(state: string) => void} [options.onState]
 * @param {number} [options.maxDelayMs] longest wait between attempts (default 30 s)
 */
export function openStream(path, options = {}) {
  const handlers = options.handlers ?? {};
  const onState = options.onState ?? (() => {});
  const maxDelay = options.maxDelayMs ?? 30_000;
  let source = null;
  let timer = null;
  let closed = false;
  let failures = 0;
  let authFailed = false;
  let state = "";

  function setState(next) {
    if (next !== state) {
      state = next;
      onState(next);
    }
  }

  function dispatch(kind, event) {
    const handler = handlers[kind];
    if (!handler) return;
    let data = null;
    try {
      data = event.data ? JSON.parse(event.data) : null;
    } catch {
      return; // not ours
    }
    handler(data, event);
  }

  async function connect() {
    timer = null;
    if (closed) return;
    setState(failures ? "retrying" : "connecting");
    let url = path;
    if (options.getToken) {
      let token = null;
      try {
        token = await options.getToken({ force: authFailed });
      } catch {
        token = null;
      }
      if (closed) return;
      if (!token) {
        failures += 1;
        schedule();
        return;
      }
      url += (url.includes("?") ? "&" : "?") + "access_token=" + encodeURIComponent(token);
    }
    authFailed = false;
    const es = new EventSource(url);
    source = es;
    let opened = false;
    es.addEventListener("open", () => {
      opened = true;
      failures = 0;
      setState("open");
    });
    es.addEventListener("error", async () => {
      // Either the server ended the stream or the connection failed: reconnect ourselves
      // rather than let EventSource retry the old URL.
      es.close();
      if (source === es) source = null;
      if (closed) return;
      failures += 1;
      setState("retrying");
      if (!opened && options.getToken) authFailed = await refused(url);
      if (closed) return;
      schedule();
    });
    for (const kind of Object.keys(handlers)) {
      es.addEventListener(kind, (event) => dispatch(kind, event));
    }
  }

  /** Whether the server refuses this URL's token (the reason a stream may fail to open). */
  async function refused(url) {
    const abort = new AbortController();
    try {
      const response = await fetch(url, {
        headers: { Accept: "text/event-stream" },
        cache: "no-store",
        signal: abort.signal,
      });
      return response.status === 401 || response.status === 403;
    } catch {
      return false; // unreachable: not an auth failure
    } finally {
      abort.abort(); // a stream that does open is not read
    }
  }

  function schedule() {
    if (closed || timer) return;
    const delay = Math.min(maxDelay, 500 * 2 ** Math.min(failures, 6));
    timer = setTimeout(connect, failures <= 1 ? 300 : delay);
  }

  connect();

  return {
    close() {
      closed = true;
      if (timer) clearTimeout(timer);
      timer = null;
      if (source) source.close();
      source = null;
      setState("closed");
    },
    /** Drop the connection and reconnect now (e.g. after signing in again). */
    reconnect() {
      if (closed) return;
      if (source) source.close();
      source = null;
      if (timer) clearTimeout(timer);
      failures = 0;
      connect();
    },
    get state() {
      return state;
    },
  };
}
