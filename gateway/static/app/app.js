/**
 * The smartcharge driver app: sign-in, tabs (Nearby / Charging / History / Alerts), and the
 * live event stream that feeds them. Everything is a module; nothing is put on `window`.
 */

import { createClient } from "/static/shared/api.js";
import { openStream } from "/static/shared/sse.js";
import { createActivity } from "./activity.js";
import { createCards } from "./cards.js";
import { createCharging } from "./charging.js";
import { createNearby } from "./nearby.js";
import { busy, byId, setError, toast } from "./ui.js";

const TABS = {
  nearby: "Nearby",
  charging: "Charging",
  history: "History",
  alerts: "Alerts",
};

const api = createClient({ storageKey: "smartcharge.driver.refresh" });
const ACCOUNT_KEY = "smartcharge.driver.account"; // the email shown when opened offline
let current = "nearby";
let stream = null;
let signedIn = false;
let liveState = "connecting";
let bannerTimer = null;

function goto(tab) {
  if (!(tab in TABS)) return;
  current = tab;
  for (const name of Object.keys(TABS)) {
    byId(`view-${name}`).hidden = name !== tab;
  }
  for (const button of document.querySelectorAll(".tabbar .tab")) {
    if (button.dataset.tab === tab) button.setAttribute("aria-current", "page");
    else button.removeAttribute("aria-current");
  }
  byId("screen-title").textContent = TABS[tab];
  document.title = `${TABS[tab]} · smartcharge`;
  if (tab === "alerts") activity.seen();
  if (tab === "history") {
    activity.loadHistory();
    cards.load();
  }
  if (tab === "nearby") nearby.refresh();
  window.scrollTo({ top: 0 });
}

const activity = createActivity({ api, isVisible: (tab) => current === tab });
const cards = createCards({ api });
const nearby = createNearby({
  api,
  isVisible: () => current === "nearby",
  startCharging: (evseId, label) => charging.start(evseId, label),
});
const charging = createCharging({
  api,
  goto,
  targetSoc: () => nearby.targetSoc(),
  onStarted: (evseId) => nearby.charged(evseId),
  onEnded: () => activity.loadHistory(),
});

// -- live events ----------------------------------------------------------------------------

function setLive(state) {
  const label = { open: "live", connecting: "connecting", retrying: "reconnecting", closed: "offline" };
  liveState = state;
  byId("live-state").dataset.state = state;
  byId("live-text").textContent = label[state] || state;
  updateConnection();
}

const OFFLINE_TEXT = "You are offline — charging continues; to stop now, use the charger.";
const RECONNECTING_TEXT =
  "Reconnecting to smartcharge… Live figures are paused. Charging continues; to stop now, use the charger.";

/** The banner says when the app is offline or reconnecting, and what to do meanwhile. A
 * stream the server ended on purpose reconnects within a second: no banner for that. */
function updateConnection() {
  if (!signedIn) {
    showBanner("");
    return;
  }
  const offline = navigator.onLine === false;
  const down = offline || liveState === "retrying";
  clearTimeout(bannerTimer);
  bannerTimer = null;
  if (!down) {
    showBanner("");
    charging.setConnected(true);
  } else if (offline) {
    showBanner(OFFLINE_TEXT);
    charging.setConnected(false);
  } else {
    bannerTimer = setTimeout(() => {
      showBanner(RECONNECTING_TEXT);
      charging.setConnected(false);
    }, 1500);
  }
}

function showBanner(text) {
  const banner = byId("connection-banner");
  if (byId("connection-text").textContent !== text) byId("connection-text").textContent = text;
  banner.dataset.state = text === OFFLINE_TEXT ? "offline" : text ? "reconnecting" : "ok";
}

window.addEventListener("offline", updateConnection);
window.addEventListener("online", () => {
  updateConnection();
  if (stream && liveState !== "open") stream.reconnect();
});

function connect() {
  if (stream) stream.close();
  stream = openStream("/api/v1/me/events", {
    getToken: (options) => api.freshToken(options),
    onState: setLive,
    handlers: {
      session: (data) => charging.onSession(data),
      notification: (data) => {
        activity.onNotification(data);
        nearby.onNotification(data);
        if (data.kind === "session_ended") charging.onEnded(data);
      },
      lagged: () => {
        activity.load();
        charging.restore();
      },
    },
  });
}

// -- signing in and out -----------------------------------------------------------------------

function showAuth(message, info = "") {
  byId("shell").hidden = true;
  byId("auth-screen").hidden = false;
  byId("offline-login").hidden = true;
  byId("auth-form").hidden = false;
  setError(byId("auth-error"), message || "");
  setInfo(info);
}

function setInfo(message) {
  const node = byId("auth-info");
  node.textContent = message || "";
  node.hidden = !message;
}

/** Where a mailed link leads: `#confirm=<token>` or `#reset=<token>` (never sent to a server
 * by the browser, and taken off the address bar at once). */
function accountLink() {
  const match = /^#(confirm|reset)=([A-Za-z0-9_-]{16,200})$/.exec(window.location.hash);
  if (match) history.replaceState(null, "", window.location.pathname + window.location.search);
  return match ? { purpose: match[1], token: match[2] } : null;
}

let resetToken = null;

function showReset(token) {
  resetToken = token;
  byId("auth-title").textContent = "Choose a new password";
  byId("email").closest(".field").hidden = true;
  byId("password").autocomplete = "new-password";
  byId("login-button").textContent = "Save the new password";
  for (const id of ["forgot-button", "new-here", "register-button"]) byId(id).hidden = true;
  showAuth("", "Enter the new password for your account.");
  byId("password").focus();
}

async function enter() {
  signedIn = true;
  byId("auth-screen").hidden = true;
  byId("offline-login").hidden = true;
  byId("auth-form").hidden = false;
  byId("shell").hidden = false;
  const account = api.account;
  if (account) saveAccount(account.email);
  goto("nearby");
  connect();
  await Promise.all([activity.load(), charging.restore(), nearby.activate()]);
  if (charging.active) {
    goto("charging");
    charging.reveal();
  }
  updateConnection();
}

function saveAccount(email) {
  try {
    if (email) window.localStorage.setItem(ACCOUNT_KEY, email);
    else window.localStorage.removeItem(ACCOUNT_KEY);
  } catch {
    /* storage unavailable */
  }
}

function storedAccount() {
  try {
    return window.localStorage.getItem(ACCOUNT_KEY);
  } catch {
    return null;
  }
}

/** Opened offline with a stored login: say who is signed in and what to do, not a bare
 * sign-in form; back online, the session resumes by itself. */
function showOfflineLogin() {
  byId("shell").hidden = true;
  byId("auth-screen").hidden = false;
  byId("auth-form").hidden = true;
  byId("offline-login").hidden = false;
  byId("offline-account").textContent = storedAccount() || "your account";
  byId("offline-status").textContent = "";
}

async function retryOffline(button) {
  const attempt = async () => {
    byId("offline-status").textContent = "";
    if (!api.hasStoredSession()) showAuth("");
    else if (await api.resume()) await enter();
    else if (!api.lastRefreshUnreachable) showAuth("Your session has ended. Please sign in again.");
    else byId("offline-status").textContent = "Still no connection to smartcharge. Try again in a moment.";
  };
  if (button) await busy(button, attempt);
  else await attempt();
}

byId("offline-retry").addEventListener("click", (event) => retryOffline(event.currentTarget));
window.addEventListener("online", () => {
  if (!signedIn && !byId("offline-login").hidden) retryOffline(null);
});

function leave(message) {
  signedIn = false;
  clearTimeout(bannerTimer);
  showBanner("");
  if (stream) stream.close();
  stream = null;
  nearby.deactivate();
  charging.reset();
  activity.reset();
  cards.reset();
  showAuth(message);
}

api.onAuthChange((now, why) => {
  if (now || !signedIn) return;
  saveAccount(null);
  if (why === "elsewhere") leave("You signed out in another tab or window.");
  else leave("Your session has ended. Please sign in again.");
});

async function authenticate(button, how) {
  if (resetToken) return resetPassword(button);
  const email = byId("email").value.trim();
  const password = byId("password").value;
  const error = byId("auth-error");
  if (!email || !password) {
    setError(error, "Enter your email and password.");
    (email ? byId("password") : byId("email")).focus();
    return;
  }
  await busy(button, async () => {
    try {
      if (how === "register") {
        const result = await api.register(email, password);
        if (result.pending) {
          setError(error, "");
          byId("password").value = "";
          setInfo("Check your mailbox: a link there confirms your address, then sign in.");
          return;
        }
      } else await api.login(email, password);
      setError(error, "");
      setInfo("");
      byId("password").value = "";
      await enter();
      if (how === "register") toast("Welcome to smartcharge!", { tone: "success", title: "Account created" });
    } catch (failure) {
      setError(error, failure.reason || String(failure));
    }
  });
}

async function resetPassword(button) {
  const password = byId("password").value;
  const error = byId("auth-error");
  if (!password) {
    setError(error, "Enter the new password.");
    byId("password").focus();
    return;
  }
  await busy(button, async () => {
    try {
      await api.resetPassword(resetToken, password);
      resetToken = null;
      byId("password").value = "";
      await enter();
      toast("Your new password is saved.", { tone: "success", title: "Password changed" });
    } catch (failure) {
      setError(error, failure.reason || String(failure));
    }
  });
}

byId("forgot-button").addEventListener("click", async (event) => {
  const email = byId("email").value.trim();
  if (!email) {
    setError(byId("auth-error"), "Enter your email first: the reset link goes there.");
    byId("email").focus();
    return;
  }
  await busy(event.currentTarget, async () => {
    try {
      await api.requestReset(email);
      setError(byId("auth-error"), "");
      setInfo("If this address has an account, a link to choose a new password is on its way.");
    } catch (failure) {
      setError(byId("auth-error"), failure.reason || String(failure));
    }
  });
});

byId("auth-form").addEventListener("submit", (event) => {
  event.preventDefault();
  authenticate(event.submitter || document.querySelector("[data-testid=login]"), "login");
});
byId("register-button").addEventListener("click", (event) =>
  authenticate(event.currentTarget, "register"),
);
byId("sign-out").addEventListener("click", async () => {
  signedIn = false;
  saveAccount(null);
  await api.logout();
  leave("");
});

for (const button of document.querySelectorAll(".tabbar .tab, [data-goto]")) {
  button.addEventListener("click", () => goto(button.dataset.tab || button.dataset.goto));
}

// -- start ----------------------------------------------------------------------------------

/** Follow a mailed link; false when the address holds none. */
async function followAccountLink() {
  const link = accountLink();
  if (!link) return false;
  if (signedIn) leave("");
  if (link.purpose === "reset") {
    showReset(link.token);
    return true;
  }
  try {
    await api.confirmEmail(link.token);
    showAuth("", "Your address is confirmed: sign in.");
  } catch (failure) {
    showAuth(failure.reason || String(failure));
  }
  return true;
}

window.addEventListener("hashchange", () => {
  followAccountLink();
});

async function boot() {
  if (await followAccountLink()) {
    /* the link's screen is up */
  } else if (api.hasStoredSession() && (await api.resume())) {
    await enter();
  } else if (api.hasStoredSession() && api.lastRefreshUnreachable) {
    showOfflineLogin();
  } else {
    showAuth("");
  }
  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("/static/app/sw.js", { scope: "/app" }).catch(() => {
      /* no offline shell (e.g. an untrusted certificate): the app works without it */
    });
  }
}

boot();
