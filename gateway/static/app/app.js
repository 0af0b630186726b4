/**
 * The smartcharge driver app: sign-in, tabs (Nearby / Charging / History / Alerts), and the
 * live event stream that feeds them. Everything is a module; nothing is put on `window`.
 */

import { createClient } from "/static/shared/api.js";
import { openStream } from "/static/shared/sse.js";
import { createActivity } from "./activity.js";
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
let current = "nearby";
let stream = null;
let signedIn = false;

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
  if (tab === "history") activity.loadHistory();
  if (tab === "nearby") nearby.refresh();
  window.scrollTo({ top: 0 });
}

const activity = createActivity({ api, isVisible: (tab) => current === tab });
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
  byId("live-state").dataset.state = state;
  byId("live-text").textContent = label[state] || state;
}

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

function showAuth(message) {
  byId("shell").hidden = true;
  byId("auth-screen").hidden = false;
  setError(byId("auth-error"), message || "");
}

async function enter() {
  signedIn = true;
  byId("auth-screen").hidden = true;
  byId("shell").hidden = false;
  goto("nearby");
  connect();
  await Promise.all([activity.load(), charging.restore(), nearby.activate()]);
  if (charging.active) goto("charging");
}

function leave(message) {
  signedIn = false;
  if (stream) stream.close();
  stream = null;
  nearby.deactivate();
  charging.reset();
  activity.reset();
  showAuth(message);
}

api.onAuthChange((now) => {
  if (!now && signedIn) leave("Your session has ended. Please sign in again.");
});

async function authenticate(button, how) {
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
      if (how === "register") await api.register(email, password);
      else await api.login(email, password);
      setError(error, "");
      byId("password").value = "";
      await enter();
      if (how === "register") toast("Welcome to smartcharge!", { tone: "success", title: "Account created" });
    } catch (failure) {
      setError(error, failure.reason || String(failure));
    }
  });
}

byId("auth-form").addEventListener("submit", (event) => {
  event.preventDefault();
  authenticate(event.submitter || document.querySelector("[data-testid=login]"), "login");
});
byId("register-button").addEventListener("click", (event) =>
  authenticate(event.currentTarget, "register"),
);
byId("sign-out").addEventListener("click", async () => {
  signedIn = false;
  await api.logout();
  leave("");
});

for (const button of document.querySelectorAll(".tabbar .tab, [data-goto]")) {
  button.addEventListener("click", () => goto(button.dataset.tab || button.dataset.goto));
}

// -- start ----------------------------------------------------------------------------------

async function boot() {
  if (api.hasStoredSession() && (await api.resume())) {
    await enter();
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
