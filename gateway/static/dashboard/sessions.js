// Sessions: every charging session, filtered (station, EVSE, driver, status, dates), paged
// newest first, and the same list as a CSV file. The filters live in the URL, so a link
// (the station page's "Sessions at this station") opens the list already filtered.

import {
  $,
  CursorPager,
  bootPage,
  el,
  fmtDuration,
  fmtKw,
  fmtKwh,
  fmtTime,
  labelCells,
  reasonOf,
  say,
} from "./ops.js";

const PAGE_SIZE = 50;
const CSV_MAX_ROWS = 10_000;
const FIELDS = ["station", "evse", "driver", "status", "from", "to"];

let api = null;
const pager = new CursorPager();

/** A local date (YYYY-MM-DD) as epoch ms at its start, or that of the next day. */
function dayStart(text, nextDay = false) {
  const [y, m, d] = text.split("-").map(Number);
  if (!y || !m || !d) return undefined;
  return new Date(y, m - 1, d + (nextDay ? 1 : 0)).getTime();
}

function formValues() {
  const form = $("filters");
  return Object.fromEntries(FIELDS.map((name) => [name, form.elements[name].value.trim()]));
}

/** The API's query for the form: dates become the local day's bounds. */
function apiQuery() {
  const v = formValues();
  return {
    station: v.station,
    evse: v.evse,
    driver: v.driver,
    status: v.status,
    from: v.from ? dayStart(v.from) : undefined,
    to: v.to ? dayStart(v.to, true) : undefined,
  };
}

function fillFromUrl() {
  const params = new URLSearchParams(window.location.search);
  const form = $("filters");
  for (const name of FIELDS) {
    const value = params.get(name);
    if (value === null) continue;
    if (name === "station" && ![...form.elements.station.options].some((o) => o.value === value)) {
      form.elements.station.append(el("option", { value, text: value }));
    }
    form.elements[name].value = value;
  }
}

function keepInUrl() {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(formValues())) if (value) params.set(name, value);
  const query = params.toString();
  window.history.replaceState(null, "", query ? `?${query}` : window.location.pathname);
}

async function loadStations() {
  try {
    const { stations } = await api.get("/api/v1/stations");
    const select = $("f-station");
    const chosen = select.value;
    const options = stations.map((s) =>
      el("option", { value: s.id, text: s.name && s.name !== s.id ? `${s.id} · ${s.name}` : s.id }),
    );
    select.replaceChildren(el("option", { value: "", text: "All stations" }), ...options);
    select.value = chosen;
  } catch {
    /* the list still filters by the station in the URL */
  }
}

function row(s) {
  const end = s.ended_at ?? Date.now();
  return el(
    "tr",
    { "data-session": s.id },
    el("td", { title: s.id }, fmtTime(s.started_at)),
    el(
      "td",
      {},
      el("a", { href: `/dashboard/station?id=${encodeURIComponent(s.station_id)}`, text: s.station_id }),
    ),
    el("td", { class: "mono", text: s.evse_id }),
    el("td", { text: s.driver_email || (s.driver_id ? "deleted account" : "—") }),
    el(
      "td",
      {},
      el("span", {
        class: "tag",
        "data-tone": s.open ? "good" : "",
        text: s.open ? "Open" : "Closed",
      }),
    ),
    el("td", { class: "num", text: fmtDuration(end - s.started_at) }),
    el("td", { class: "num", text: fmtKwh(s.energy_wh) }),
    el("td", { class: "num", text: fmtKw(s.peak_power_w) }),
    el("td", { text: s.end_reason || (s.open ? "" : "—") }),
  );
}

async function load() {
  const status = $("list-status");
  say(status, "Loading…");
  try {
    const body = await api.get("/api/v1/sessions", {
      ...apiQuery(),
      limit: PAGE_SIZE,
      before: pager.current,
    });
    pager.next = body.next;
    const rows = body.sessions.map(row);
    $("rows").replaceChildren(...rows);
    if (!rows.length) {
      $("rows").replaceChildren(
        el("tr", {}, el("td", { colspan: 9, class: "ops-empty", text: "No sessions match." })),
      );
    }
    labelCells($("rows").closest("table"));
    say(status, `${rows.length} session${rows.length === 1 ? "" : "s"} on this page.`);
    $("page-info").textContent = `Page ${pager.page} · ${PAGE_SIZE} a page`;
    $("older").disabled = !pager.next;
    $("newer").disabled = pager.page === 1;
  } catch (error) {
    say(status, `Could not load the sessions: ${reasonOf(error)}`, "error");
  }
}

async function downloadCsv() {
  const status = $("list-status");
  const button = $("csv");
  button.disabled = true;
  say(status, "Preparing the CSV file…");
  try {
    const text = await api.request("GET", "/api/v1/sessions.csv", { query: apiQuery() });
    const csv = typeof text === "string" ? text : "";
    const lines = csv.split("\r\n").filter(Boolean).length - 1;
    const stamp = new Date().toISOString().slice(0, 19).replace(/[:T]/g, "-");
    const url = URL.createObjectURL(new Blob([csv], { type: "text/csv" }));
    const link = el("a", { href: url, download: `sessions-${stamp}.csv`, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
    const capped = lines >= CSV_MAX_ROWS;
    say(
      status,
      capped
        ? `Downloaded the newest ${CSV_MAX_ROWS.toLocaleString()} sessions (a file's limit); narrow the dates for older ones.`
        : `Downloaded ${lines} session${lines === 1 ? "" : "s"} as CSV.`,
    );
  } catch (error) {
    say(status, `Could not export: ${reasonOf(error)}`, "error");
  } finally {
    button.disabled = false;
  }
}

let started = false;

bootPage(async (client) => {
  api = client;
  if (started) {
    await load();
    return;
  }
  started = true;
  fillFromUrl();
  $("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    keepInUrl();
    pager.reset();
    load();
  });
  $("f-reset").addEventListener("click", () => {
    $("filters").reset();
    keepInUrl();
    pager.reset();
    load();
  });
  $("older").addEventListener("click", () => pager.older() && load());
  $("newer").addEventListener("click", () => pager.newer() && load());
  $("csv").addEventListener("click", downloadCsv);
  await Promise.all([loadStations().then(fillFromUrl), load()]);
});
