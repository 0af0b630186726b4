/**
 * Tabs of one browser that agree on their login (docs/auth.md, "Tabs of one browser").
 *
 * - `withLock(work)`: runs `work` under the Web Lock `smartcharge-refresh:<key>`, so one tab
 *   refreshes at a time (without Web Locks it just runs: the server's grace window covers
 *   the race).
 * - `shareTokens(tokens)`: tells the other tabs about a new pair (BroadcastChannel).
 * - `shareSignOut()`: tells the other tabs the user signed out; a removed storage key
 *   (`storage` event) says the same to browsers without BroadcastChannel.
 *
 *   import { createTabSync } from "/static/shared/tabsync.js";
 *   const sync = createTabSync("smartcharge.driver.refresh", {
 *     onTokens: (tokens) => ..., onSignOut: () => ...,
 *   });
 *
 * Exported names (stable): createTabSync.
 */

/**
 * @param {string} key the localStorage key of the refresh token
 * @param {{onTokens?: (tokens: {access_token: string, expires_in: number,
 *          refresh_token: string}) => void, onSignOut?: () => void}} handlers
 */
export function createTabSync(key, handlers = {}) {
  const onTokens = handlers.onTokens ?? (() => {});
  const onSignOut = handlers.onSignOut ?? (() => {});
  let channel = null;
  try {
    channel = "BroadcastChannel" in window ? new BroadcastChannel(`smartcharge-auth:${key}`) : null;
  } catch {
    channel = null;
  }
  if (channel) {
    channel.addEventListener("message", (event) => {
      const data = event.data || {};
      if (data.type === "tokens" && data.tokens && typeof data.tokens.access_token === "string") {
        onTokens(data.tokens);
      } else if (data.type === "signout") {
        onSignOut();
      }
    });
  }
  window.addEventListener("storage", (event) => {
    // another tab removed the refresh token (signed out, or its session was revoked)
    if ((event.key === key || event.key === null) && !event.newValue) onSignOut();
  });

  function post(message) {
    try {
      if (channel) channel.postMessage(message);
    } catch {
      /* a closed channel: the storage event still tells the other tabs */
    }
  }

  return {
    /** Run `work` while no other tab of this browser runs a refresh. */
    withLock(work) {
      if (navigator.locks && typeof navigator.locks.request === "function") {
        return navigator.locks.request(`smartcharge-refresh:${key}`, () => work());
      }
      return work();
    },
    shareTokens(tokens) {
      post({
        type: "tokens",
        tokens: {
          access_token: tokens.access_token,
          expires_in: tokens.expires_in,
          refresh_token: tokens.refresh_token,
        },
      });
    },
    shareSignOut() {
      post({ type: "signout" });
    },
  };
}
