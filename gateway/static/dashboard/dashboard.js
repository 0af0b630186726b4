// The operator dashboard: sign in, load the fleet, then follow the operator live stream.
//
// Fleet scale: live events only update the in-memory store (a Map) and mark EVSEs dirty; one
// requestAnimationFrame renders what changed on the visible table page and the open station
// detail. Totals at most every TOTALS_EVERY_MS, the map and the chart once a second.

import { ApiError, createClient } from "/static/shared/api.js";
import { openStream } from "/static/shared/sse.js";
import { AlertsPanel } from "./alerts.js";
import { PowerChart } from "./chart.js";
import { StationDetail } from "./detail.js";
import { FleetMap } from "./fleetmap.js";
import { STATUSES, Fleet } from "./store.js";
import { EvseTable } from "./table.js";
import { fmtKw, fmtKwh, statusWord } from "./fmt.js";

const $ = (id) => document.getElementById(id);

const TOTALS_EVERY_MS = 500;
const REFETCH_PARALLEL = 4;
const REFETCH_BACKLOG = 100; // more pending than this: one full reload instead
const RELOAD_EVERY_MS = 10_000;

const api = createClient({ storageKey: "smartcharge.operator.refresh" });
const fleet = new Fleet();
let stream = null;
let table = null;
let detail = null;
let map = null;
let chart = null;
let alerts = null;
let metricsAvailable = null; // null: not asked yet; false: endpoint missing
let energyTodayWh = null; // the stored sessions' energy today, at the last poll
let energySnapshot = new Map(); // session id -> its energy at that poll
const timers = [];
const dirty = new Set(); // EVSE ids changed since the last frame
const dirtyStations = new Set();
let frameQueued = false;
let totalsAt = 0;
let totalsDue = false;
const refetchQueue = new Set();
let refetchRunning = 0;
let reloadAt = 0;
let reloadTimer = null;

/** Whether the server's API description lists a path (asked once; a 404 would be a console
 * error on a wall screen). */
let specPromise = null;
function apiHas(path) {
  specPromise = specPromise || fetch("/openapi.json", { cache: "no-store" })
    .then((r) => r.json())
    .catch(() => null);
  return specPromise.then((spec) => Boolean(spec && spec.paths && spec.paths[path]));
}

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
  table = table || new EvseTable({
    table: $("evse-table"), body: $("evse-rows"), info: $("page-info"),
    prev: $("page-prev"), next: $("page-next"), count: $("table-count"),
  }, { onOpen: (stationId, evseId) => openStation(stationId, evseId) });
  detail = detail || new StationDetail({
    panel: $("detail"), title: $("detail-title"), where: $("detail-where"),
    badges: $("detail-badges"), cards: $("detail-cards"), note: $("detail-note"),
    alerts: $("detail-alerts"), close: $("detail-close"), page: $("detail-page"),
  }, { onCommand: command, onClose: closeStation });
  map = map || new FleetMap($("map"), { onSelect: (id) => openStation(id) });
  chart = chart || new PowerChart($("power-chart"));
  alerts = alerts || new AlertsPanel({
    list: $("feed"), empty: $("feed-empty"), state: $("alerts-state"),
    severity: $("alert-severity"), station: $("alert-station"), more: $("alerts-more"),
  }, {
    api,
    available: () => apiHas("/api/v1/alerts"),
    isStation: (id) => Boolean(fleet.station(id)),
    onSelect: select,
    onChange: (stationIds) => {
      if (detail.open && stationIds.has(detail.stationId)) renderDetailAlerts();
    },
  });
  await reload();
  alerts.load();
  stream = openStream("/api/v1/events", {
    getToken: (opts) => api.freshToken(opts),
    onState: linkState,
    handlers: {
      evse: onEvse,
      station: onStation,
      alert: (data) => alerts.add(data),
      alert_ack: (data) => alerts.add(data),
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
  if (detail) closeStation();
}

async function reload() {
  reloadAt = performance.now();
  try {
    const body = await api.get("/api/v1/stations");
    fleet.load(body);
    dirty.clear();
    table.setFleet(fleet);
    $("evse-table").setAttribute("aria-busy", "false");
    if (detail.open && !detail.refresh(fleet)) closeStation();
    map.update(fleet, true);
    renderTotals();
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      showLogin("Your session ended; sign in again.");
      stop();
      return;
    }
    alerts.add({ kind: "error", severity: "bad", message: `Could not load the fleet: ${error.reason || error}` });
  }
}

/** A full reload, at most once per RELOAD_EVERY_MS (bursts of unknown EVSEs, long backlogs). */
function reloadSoon() {
  if (reloadTimer) return;
  const wait = Math.max(0, reloadAt + RELOAD_EVERY_MS - performance.now());
  reloadTimer = setTimeout(() => {
    reloadTimer = null;
    reload();
  }, wait);
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
    if (wasOpen) {
      reload(); // events may have been missed while the stream was down
      alerts.load();
    }
    wasOpen = true;
  }
}

// ------------------------------------------------------------------ live updates, per frame

function schedule() {
  if (frameQueued) return;
  frameQueued = true;
  requestAnimationFrame(frame);
}

function frame() {
  frameQueued = false;
  if (!table) return;
  table.flush(dirty);
  for (const sid of dirtyStations) table.touchStation(sid);
  if (detail.open) {
    const st = fleet.station(detail.stationId);
    let touched = dirtyStations.has(detail.stationId);
    for (const id of dirty) {
      const e = fleet.evses.get(id);
      if (e && e.station_id === detail.stationId) {
        detail.updateCard(e, st);
        touched = true;
      }
    }
    if (touched) detail.updateStation(fleet);
  }
  dirty.clear();
  dirtyStations.clear();
  const now = performance.now();
  if (totalsDue && now - totalsAt >= TOTALS_EVERY_MS) renderTotals();
}

function onEvse(summary) {
  const { evse, refetch } = fleet.applyEvse(summary);
  if (evse) {
    dirty.add(evse.id);
    totalsDue = true;
    schedule();
  }
  if (!evse) reloadSoon(); // a new EVSE: rebuild the station list
  else if (refetch) queueRefetch(summary.id);
}

function queueRefetch(id) {
  refetchQueue.add(id);
  if (refetchQueue.size > REFETCH_BACKLOG) {
    refetchQueue.clear();
    reloadSoon();
    return;
  }
  while (refetchRunning < REFETCH_PARALLEL && refetchQueue.size) {
    const next = refetchQueue.values().next().value;
    refetchQueue.delete(next);
    refetchRunning += 1;
    refetchEvse(next).finally(() => {
      refetchRunning -= 1;
      if (refetchQueue.size) queueRefetch(refetchQueue.values().next().value);
    });
  }
}

/** The summary event lacks the session id and the reservation: ask for the EVSE. */
async function refetchEvse(id) {
  try {
    const e = await api.get(`/api/v1/evses/${encodeURIComponent(id)}`);
    const current = fleet.evses.get(id);
    if (!current) return;
    // keep the live values if a newer event arrived meanwhile; take the session and reservation
    // an EVSE back to Available no longer names its session: keep showing the one that ended
    const session = e.session || (current.session ? { ...current.session, open: false } : null);
    const merged = fleet.putEvse({
      ...e,
      status: current.status,
      soc: current.soc,
      power_w: current.power_w,
      session,
      last_report_age_s: Math.max(0, (Date.now() - current.reportedAt) / 1000),
    });
    dirty.add(merged.id);
    schedule();
  } catch {
    /* the next event will tell */
  }
}

function onStation({ id, online }) {
  const st = fleet.applyStation({ id, online });
  if (!st) {
    reloadSoon();
    return;
  }
  dirtyStations.add(id);
  totalsDue = true;
  schedule();
}

// ------------------------------------------------------------------ station detail

/** The detail covers the table's right-hand side, not the map and alerts beside it. */
function placeDetail() {
  const table = document.querySelector(".panel--stations").getBoundingClientRect();
  const beside = window.innerWidth >= 1100 && table.right > 0;
  $("detail").style.setProperty("--detail-right", `${beside ? Math.max(16, window.innerWidth - table.right) : 16}px`);
}

function openStation(stationId, evseId = null) {
  if (!fleet.station(stationId)) return;
  placeDetail();
  for (const row of document.querySelectorAll(".evse-row.is-selected")) row.classList.remove("is-selected");
  detail.show(fleet, stationId, evseId);
  if (map.selectedId !== stationId) {
    map.selectedId = stationId;
    map.update(fleet);
  }
  for (const row of document.querySelectorAll(`.evse-row[data-station-id="${CSS.escape(stationId)}"]`)) {
    row.classList.add("is-selected");
  }
  renderDetailAlerts();
}

function closeStation() {
  const was = detail.stationId;
  detail.hide();
  for (const row of document.querySelectorAll(".evse-row.is-selected")) row.classList.remove("is-selected");
  const back = was && document.querySelector(`.evse-row[tabindex="0"]`);
  if (back && !back.hidden) back.focus();
}

function renderDetailAlerts() {
  if (!detail.open) return;
  detail.showAlerts(alerts.forStation(detail.stationId), (a) => alerts.item(a, { withShow: false }));
}

function select({ stationId, evseId }) {
  const sid = stationId || fleet.evses.get(evseId)?.station_id;
  if (!sid) return;
  if (evseId) table.reveal(evseId);
  openStation(sid, evseId);
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
  detail.busy(evseId, name, true);
  detail.answer(evseId, `${name}: waiting for the station…`, "busy");
  try {
    let body;
    if (name === "maintenance") body = await api.put(`${path}/maintenance`, { enabled: Boolean(arg) });
    else if (name === "start") body = await api.post(`${path}/start`, {});
    else if (name === "stop") body = await api.post(`${path}/stop`, {});
    else body = await api.get(`${path}/info`);
    detail.answer(evseId, describeOutcome(body), body.accepted === false ? "error" : "ok");
    if (body.evse) {
      const current = fleet.evses.get(evseId);
      if (current) {
        current.maintenance = body.evse.maintenance;
        current.maintenance_pending = body.evse.maintenance_pending;
      }
    }
  } catch (error) {
    const reason = error instanceof ApiError ? error.reason : String(error);
    detail.answer(evseId, `${name} failed: ${reason}`, "error");
    if (error instanceof ApiError && error.status === 401) showLogin("Your session ended; sign in again.");
  } finally {
    detail.busy(evseId, name, false);
    const e = fleet.evses.get(evseId);
    if (e) detail.updateCard(e, fleet.station(e.station_id));
  }
}

// ------------------------------------------------------------------ totals, chart, clock

async function loadMetrics() {
  if (metricsAvailable === false) return;
  if (metricsAvailable === null && !(await apiHas("/api/v1/metrics/summary"))) {
    metricsAvailable = false;
    renderTotals();
    return;
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
  totalsAt = performance.now();
  totalsDue = false;
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
  if (!table) return;
  table.tick();
  detail.tick(fleet);
  map.update(fleet);
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
window.addEventListener("resize", () => detail && detail.open && placeDetail());
$("logout").addEventListener("click", signOut);
$("filter").addEventListener("input", () => table && table.setFilter({ text: $("filter").value }));
$("status-filter").addEventListener("change", () => table && table.setFilter({ status: $("status-filter").value }));
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
