// A station's page (/dashboard/station?id=st-0001): its EVSEs as the CSMS sees them now, and
// its recent events (status changes, sessions, alerts). Without an id: the list of stations.

import { $, bootPage, el, fmtKw, fmtKwh, fmtTime, labelCells, reasonOf, say } from "./ops.js";

const REFRESH_MS = 15_000;
const KINDS = {
  status: "Status change",
  session_started: "Session started",
  session_ended: "Session ended",
  alert: "Alert",
};
const STATUS_WORDS = { SuspendedEV: "Suspended (EV)", SuspendedEVSE: "Suspended (EVSE)" };

let api = null;
let timer = null;
const stationId = new URLSearchParams(window.location.search).get("id");

function age(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds < 60) return `${Math.round(seconds)} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  return `${Math.round(seconds / 3600)} h ago`;
}

function evseRow(evse) {
  const status = evse.maintenance ? `${evse.status}, maintenance` : evse.status;
  return el(
    "tr",
    { "data-evse": evse.id },
    el("td", { class: "mono", text: evse.id }),
    el(
      "td",
      {},
      el("span", {
        class: "badge",
        "data-status": evse.status,
        text: STATUS_WORDS[evse.status] ? status.replace(evse.status, STATUS_WORDS[evse.status]) : status,
      }),
    ),
    el("td", { class: "num", text: fmtKw(evse.power_w) }),
    el("td", { class: "num", text: evse.soc === null ? "—" : `${Math.round(evse.soc)} %` }),
    el("td", { class: "num", text: evse.session ? fmtKwh(evse.session.energy_wh) : "—" }),
    el("td", { class: "num", text: age(evse.last_report_age_s) }),
  );
}

function eventRow(event) {
  const what = el("td", {}, KINDS[event.kind] || event.kind);
  if (event.severity) {
    const tone = { bad: "bad", warn: "warn", good: "good" }[event.severity] || "";
    what.append(" ", el("span", { class: "tag", "data-tone": tone, text: event.severity }));
  }
  return el(
    "tr",
    { "data-kind": event.kind },
    el("td", { text: fmtTime(event.at) }),
    what,
    el("td", { class: "mono", text: event.evse_id || "—" }),
    el("td", { class: "wrap", text: event.message }),
  );
}

async function loadStation() {
  const status = $("station-status");
  try {
    const [station, events] = await Promise.all([
      api.get(`/api/v1/stations/${encodeURIComponent(stationId)}`),
      api.get(`/api/v1/stations/${encodeURIComponent(stationId)}/events`, { limit: 100 }),
    ]);
    const title = station.name && station.name !== station.id ? `${station.name} (${station.id})` : station.id;
    $("page-title").textContent = title;
    document.title = `smartcharge · ${title}`;
    $("summary-title").textContent = `${station.evses.length} EVSE${station.evses.length === 1 ? "" : "s"}`;
    const online = $("station-online");
    online.textContent = station.online ? "Online" : "Offline";
    online.dataset.tone = station.online ? "good" : "bad";
    $("station-where").textContent = `${station.lat.toFixed(4)}, ${station.lon.toFixed(4)}`;
    $("station-sessions").href = `/dashboard/sessions?station=${encodeURIComponent(station.id)}`;
    $("evse-rows").replaceChildren(...station.evses.map(evseRow));
    const rows = events.events.map(eventRow);
    $("event-rows").replaceChildren(
      ...(rows.length
        ? rows
        : [el("tr", {}, el("td", { colspan: 4, class: "ops-empty", text: "No events recorded yet." }))]),
    );
    labelCells($("evse-rows").closest("table"));
    labelCells($("event-rows").closest("table"));
    say(status, `Updated ${new Date().toLocaleTimeString()}.`);
  } catch (error) {
    const missing = error && error.status === 404;
    say(status, missing ? `There is no station ${stationId}.` : `Could not load: ${reasonOf(error)}`, "error");
  }
}

async function loadIndex() {
  try {
    const { stations } = await api.get("/api/v1/stations");
    $("station-list").replaceChildren(
      ...stations.map((s) => {
        const free = s.evses.filter((e) => e.status === "Available").length;
        return el(
          "li",
          {},
          el(
            "a",
            { href: `/dashboard/station?id=${encodeURIComponent(s.id)}` },
            el("strong", { text: s.id }),
            el("br"),
            el("span", { class: "muted", text: `${s.online ? "Online" : "Offline"} · ${free}/${s.evses.length} free` }),
          ),
        );
      }),
    );
  } catch (error) {
    $("station-list").replaceChildren(el("li", { class: "form-error", text: reasonOf(error) }));
  }
}

bootPage(async (client) => {
  api = client;
  if (!stationId) {
    $("station-index").hidden = false;
    await loadIndex();
    return;
  }
  $("station-view").hidden = false;
  if (!timer) {
    $("refresh").addEventListener("click", loadStation);
    timer = setInterval(() => {
      if (!document.hidden && !$("page-view").hidden) loadStation();
    }, REFRESH_MS);
  }
  await loadStation();
});
