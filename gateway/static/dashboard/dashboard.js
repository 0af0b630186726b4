// The operator dashboard: sign in, load the fleet, then follow the operator live stream.

import { ApiError, createClient } from "/static/shared/api.js";
import { openStream } from "/static/shared/sse.js";
import { CardBoard } from "./cards.js";
import { PowerChart } from "./chart.js";
import { Feed } from "./feed.js";
import { FleetMap } from "./fleetmap.js";
import { STATUSES, Fleet } from "./store.js";
import { fmtKw, fmtKwh, statusWord } from "./fmt.js";

const $ = (id) => document.getElementById(id);

const api = createClient({ storageKey: "smartcharge.operator.refresh" });
const fleet = new Fleet();
let stream = null;
let board = null;
let map = null;
let chart = null;
let feed = null;
let metricsAvailable = null; // null: not asked yet; false: endpoint missing
let energyTodayWh = null; // the stored sessions' energy today, at the last poll
let energySnapshot = new Map(); // session id -> its energy at that poll
const timers = [];
const refetching = new Set();

// ------------------------------------------------------------------ sign in / out

function showLogin(message = "") {
  $("dash-view").hidden = true;
  $("login-view").hidden = false;
  const error = $("login-error");
  error.textContent = message;
  error.hidden = !message;
  $("login-email").focus();
}

async function onLogin(event) {
  event.preventDefault();
  const email = $("login-email").value.trim();
  const password = $("login-password").value;
  const button = event.submitter || document.querySelector("[data-testid=login]");
  if (!email || !password) {
    showLogin("Enter your email and password.");
    return;
  }
  button.disabled = true;
  try {
    await api.login(email, password);
    await enter(email);
  } catch (error) {
    showLogin(error instanceof ApiError ? error.reason : String(error));
  } finally {
    button.disabled = false;
  }
}

function roleOf(token) {
  try {
    const payload = JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
    return { role: payload.role, email: payload.email || payload.sub };
  } catch {
    return { role: null, email: null };
  }
}

async function enter(email) {
  const token = await api.freshToken();
  const who = roleOf(token || "");
  if (who.role && who.role !== "operator") {
    await api.logout();
    showLogin("This dashboard is for operators; this account is a driver's.");
    return;
  }
  $("whoami").textContent = email || who.email || "operator";
  $("login-view").hidden = true;
  $("dash-view").hidden = false;
  await start();
}

async function signOut() {
  stop();
  await api.logout();
  $("login-password").value = "";
  showLogin();
}

// ------------------------------------------------------------------ the dashboard

async function start() {
  board = board || new CardBoard($("stations"), { onCommand: command });
  map = map || new FleetMap($("map"), { onSelect: (id) => board.highlight(id) });
  chart = chart || new PowerChart($("power-chart"));
  feed = feed || new Feed($("feed"), $("feed-empty"), { onSelect: select });
  await reload();
  stream = openStream("/api/v1/events", {
    getToken: (opts) => api.freshToken(opts),
    onState: linkState,
    handlers: {
      evse: onEvse,
      station: onStation,
      alert: onAlert,
      lagged: () => reload(),
    },
  });
  timers.push(setInterval(tick, 1000));
  timers.push(setInterval(() => loadMetrics(), 15_000));
  loadMetrics();
}

function stop() {
  if (stream) stream.close();
  stream = null;
  while (timers.length) clearInterval(timers.pop());
}

async function reload() {
  try {
    const body = await api.get("/api/v1/stations");
    fleet.load(body);
    board.build(fleet);
    board.filter(fleet, $("filter").value);
    $("stations").setAttribute("aria-busy", "false");
    map.update(fleet, true);
    renderTotals();
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      showLogin("Your session ended; sign in again.");
      stop();
      return;
    }
    feed.add({ kind: "error", message: `Could not load the fleet: ${error.reason || error}` });
  }
}

let wasOpen = false;
function linkState(state) {
  const node = $("link-state");
  node.dataset.state = state;
  node.textContent = {
    connecting: "Connecting…",
    open: "Live",
    retrying: "Reconnecting…",
    closed: "Disconnected",
  }[state] || state;
  if (state === "open") {
    if (wasOpen) reload(); // events may have been missed while the stream was down
    wasOpen = true;
  }
}

function onEvse(summary) {
  const { evse, refetch } = fleet.applyEvse(summary);
  if (evse) {
    board.updateCard(evse, fleet.station(evse.station_id));
    board.updateStation(fleet, evse.station_id);
    map.update(fleet);
    renderTotals();
  }
  if (refetch) refetchEvse(summary.id, !evse);
}

async function refetchEvse(id, unknown) {
  if (refetching.has(id)) return;
  refetching.add(id);
  try {
    if (unknown) {
      await reload(); // a new EVSE: rebuild the station list
      return;
    }
    const e = await api.get(`/api/v1/evses/${encodeURIComponent(id)}`);
    const current = fleet.evses.get(id);
    // keep the live values if a newer event arrived meanwhile; take the session and reservation
    // an EVSE back to Available no longer names its session: keep showing the one that ended
    const session = e.session || (current && current.session ? { ...current.session, open: false } : null);
    const merged = fleet.putEvse({
      ...e,
      session,
      last_report_age_s: current ? Math.max(0, (Date.now() - current.reportedAt) / 1000) : e.last_report_age_s,
    });
    board.updateCard(merged, fleet.station(merged.station_id));
  } catch {
    /* the next event will tell */
  } finally {
    refetching.delete(id);
  }
}

function onStation({ id, online }) {
  const before = fleet.station(id)?.online;
  const st = fleet.applyStation({ id, online });
  if (!st) {
    reload();
    return;
  }
  board.updateStation(fleet, id);
  for (const e of fleet.evsesOf(id)) board.updateCard(e, st);
  map.update(fleet);
  renderTotals();
  if (before !== online) {
    feed.add({
      kind: online ? "station_online" : "station_offline",
      message: `${st.name} (${id}) is ${online ? "back online" : "offline"}`,
      station_id: id,
    });
  }
}

function onAlert(alert) {
  feed.add({
    kind: alert.kind || "alert",
    message: alert.message || JSON.stringify(alert),
    created_at: alert.at ?? alert.created_at, // a stored Alert: `at`, on the CSMS's clock
    station_id: alert.station_id || (alert.data && alert.data.station_id),
    evse_id: alert.evse_id || (alert.data && alert.data.evse_id),
  });
}

function select({ stationId, evseId }) {
  const sid = stationId || fleet.evses.get(evseId)?.station_id;
  if (!sid) return;
  map.selectedId = sid;
  map.update(fleet);
  board.highlight(sid);
  const card = evseId && board.card(evseId);
  if (card) {
    card.classList.add("is-highlighted");
    setTimeout(() => card.classList.remove("is-highlighted"), 6000);
  }
}

// ------------------------------------------------------------------ commands

function describeOutcome(body) {
  const e = body && body.evse;
  const verdict = body.accepted ? "accepted" : `refused${body.reason ? `: ${body.reason}` : ""}`;
  if (!e) return `${body.command} ${verdict}`;
  const bits = [statusWord(e.status)];
  if (e.soc !== null && e.soc !== undefined) bits.push(`${Math.round(e.soc)} %`);
  bits.push(fmtKw(e.power_w));
  if (e.session_id) bits.push(`session ${fmtKwh(e.session_energy_wh)}`);
  if (e.maintenance) bits.push("maintenance on");
  else if (e.maintenance_pending) bits.push("maintenance pending");
  return `${body.command} ${verdict} · station says ${bits.join(", ")}`;
}

async function command(evseId, name, arg) {
  const path = `/api/v1/evses/${encodeURIComponent(evseId)}`;
  board.busy(evseId, name, true);
  board.answer(evseId, `${name}: waiting for the station…`, "busy");
  try {
    let body;
    if (name === "maintenance") body = await api.put(`${path}/maintenance`, { enabled: Boolean(arg) });
    else if (name === "start") body = await api.post(`${path}/start`, {});
    else if (name === "stop") body = await api.post(`${path}/stop`, {});
    else body = await api.get(`${path}/info`);
    board.answer(evseId, describeOutcome(body), body.accepted === false ? "error" : "ok");
    if (body.evse) {
      const current = fleet.evses.get(evseId);
      if (current) {
        current.maintenance = body.evse.maintenance;
        current.maintenance_pending = body.evse.maintenance_pending;
      }
    }
  } catch (error) {
    const reason = error instanceof ApiError ? error.reason : String(error);
    board.answer(evseId, `${name} failed: ${reason}`, "error");
    if (error instanceof ApiError && error.status === 401) showLogin("Your session ended; sign in again.");
  } finally {
    board.busy(evseId, name, false);
    const e = fleet.evses.get(evseId);
    if (e) board.updateCard(e, fleet.station(e.station_id));
  }
}

// ------------------------------------------------------------------ totals, chart, clock

async function loadMetrics() {
  if (metricsAvailable === false) return;
  if (metricsAvailable === null) {
    // ask the API description first: a 404 would be a console error on a wall screen
    try {
      const spec = await (await fetch("/openapi.json", { cache: "no-store" })).json();
      if (!spec.paths || !spec.paths["/api/v1/metrics/summary"]) {
        metricsAvailable = false;
        renderTotals();
        return;
      }
    } catch {
      return;
    }
  }
  try {
    const body = await api.get("/api/v1/metrics/summary");
    if (body && Number.isFinite(body.energy_today_wh)) {
      metricsAvailable = true;
      energyTodayWh = body.energy_today_wh;
      energySnapshot = sessionEnergies();
    } else {
      metricsAvailable = false;
    }
  } catch (error) {
    if (error instanceof ApiError && (error.status === 404 || error.status === 405)) {
      metricsAvailable = false;
    }
  }
  renderTotals();
}

function sessionEnergies() {
  const out = new Map();
  for (const e of fleet.evses.values()) if (e.session) out.set(e.session.id, e.session.energy_wh || 0);
  return out;
}

/** Energy the live feed has seen sessions deliver since the last metrics poll. */
function energySinceSnapshot() {
  let wh = 0;
  for (const [sid, now] of sessionEnergies()) wh += Math.max(0, now - (energySnapshot.get(sid) ?? 0));
  return wh;
}

const pageOpened = new Date();

function renderTotals() {
  const t = fleet.totals();
  const list = $("status-counts");
  const shown = STATUSES.filter((s) => t.byStatus[s] > 0 || ["Available", "Charging", "Faulted", "Offline"].includes(s));
  const sig = shown.map((s) => `${s}:${t.byStatus[s]}`).join(",");
  if (list.dataset.sig !== sig) {
    list.dataset.sig = sig;
    list.replaceChildren(...shown.map((s) => {
      const li = document.createElement("li");
      li.className = "status-count";
      li.dataset.status = s;
      li.setAttribute("data-testid", `count-${s}`);
      const n = document.createElement("strong");
      n.textContent = String(t.byStatus[s]);
      const w = document.createElement("span");
      w.textContent = statusWord(s);
      li.append(n, " ", w);
      return li;
    }));
    // proportions of the fleet, one segment per status
    const bar = $("status-bar");
    bar.replaceChildren(...STATUSES.filter((s) => t.byStatus[s] > 0).map((s) => {
      const seg = document.createElement("span");
      seg.className = "status-bar__seg";
      seg.dataset.status = s;
      seg.style.flexGrow = String(t.byStatus[s]);
      return seg;
    }));
  }
  $("total-power").textContent = (t.powerW / 1000).toFixed(1);
  $("chart-now").textContent = (t.powerW / 1000).toFixed(1);
  $("total-sessions").textContent = String(t.sessions);
  $("total-online").textContent = String(t.online);
  $("total-stations").textContent = ` / ${t.stations}`;
  const midnight = new Date();
  midnight.setHours(0, 0, 0, 0);
  if (metricsAvailable && energyTodayWh !== null) {
    $("energy-label").textContent = "Energy today";
    $("energy-label").title = "Sessions started today, stored, plus live progress since the last poll";
    $("total-energy").textContent = ((energyTodayWh + energySinceSnapshot()) / 1000).toFixed(1);
  } else {
    const since = pageOpened > midnight ? pageOpened : midnight;
    const hhmm = since.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
    $("energy-label").textContent = `Energy since ${hhmm}`;
    $("energy-label").title = "Counted from the live feed since midnight or since this page opened";
    $("total-energy").textContent = (t.liveEnergyWh / 1000).toFixed(1);
  }
}

function tick() {
  if (!board) return;
  board.tickAll(fleet);
  const t = fleet.totals();
  chart.add(t.powerW / 1000);
  chart.draw();
  renderTotals();
  $("clock").textContent = new Date().toLocaleTimeString(undefined, {
    hour: "2-digit", minute: "2-digit", second: "2-digit",
  });
}

// ------------------------------------------------------------------ boot

$("login-form").addEventListener("submit", onLogin);
$("logout").addEventListener("click", signOut);
$("filter").addEventListener("input", () => board && board.filter(fleet, $("filter").value));
$("feed-clear").addEventListener("click", () => feed && feed.clear());
api.onAuthChange((signedIn) => {
  if (!signedIn && !$("dash-view").hidden) {
    stop();
    showLogin("Your session ended; sign in again.");
  }
});

(async () => {
  if (api.hasStoredSession() && (await api.resume())) {
    await enter(null);
  } else {
    showLogin();
  }
})();
