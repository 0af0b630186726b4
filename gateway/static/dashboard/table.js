// The EVSE table: every EVSE of the fleet as one row, filtered, sorted and paged in memory;
// only the visible page is in the DOM (a fixed pool of rows, patched cell by cell).
// Keyboard: the table is one tab stop (roving tabindex on the rows); arrows move,
// Enter/Space opens the row's station, PageUp/PageDown turn pages, Home/End jump.

import { STATUSES, isOffline } from "./store.js";
import { fmtAge, fmtKw, fmtKwh, fmtSoc, shortId, statusWord } from "./fmt.js";

export const PAGE_SIZE = 50;
const RESORT_EVERY_MS = 1000; // live changes re-sort/re-filter at most this often

const STATUS_RANK = Object.fromEntries(STATUSES.map((s, i) => [s, i]));
const byText = new Intl.Collator(undefined, { numeric: true }).compare; // one collator: fast sorts

/** The sortable columns: key -> value of an EVSE (and its station) to sort by. */
const SORT_VALUES = {
  status: (e) => STATUS_RANK[e.status] ?? 99,
  station: (e, st) => (st ? st.name : e.station_id),
  evse: (e) => e.id,
  power: (e) => e.power_w || 0,
  soc: (e) => (e.soc == null ? -1 : e.soc),
  energy: (e) => (e.session ? e.session.energy_wh || 0 : -1),
  session: (e) => (e.session && e.session.open ? e.session.id || "" : ""),
  age: (e) => -e.reportedAt,
};

function cell(row, cls) {
  const td = document.createElement("td");
  if (cls) td.className = cls;
  row.append(td);
  return td;
}

export class EvseTable {
  /**
   * @param {{table: HTMLTableElement, body: HTMLElement, info: HTMLElement,
   *          prev: HTMLButtonElement, next: HTMLButtonElement, count: HTMLElement}} parts
   * @param {{onOpen: (stationId: string, evseId: string) => void}} hooks
   */
  constructor(parts, hooks) {
    this.parts = parts;
    this.hooks = hooks;
    this.fleet = null;
    this.text = "";
    this.status = "";
    this.sortKey = "station";
    this.sortDir = 1;
    this.page = 0;
    this.view = []; // evse ids after filter + sort
    this.hay = new Map(); // evse id -> lowercase text the site filter searches
    this.rows = []; // the pool: {tr, cells, id}
    this.shown = new Map(); // evse id -> pool row, for the visible page
    this.active = 0; // the row index holding the tab stop
    this.stale = false; // live changes since the last filter/sort
    this.sortedAt = 0;
    for (let i = 0; i < PAGE_SIZE; i += 1) this.rows.push(this._row(i));
    parts.body.addEventListener("click", (ev) => this._onClick(ev));
    parts.body.addEventListener("keydown", (ev) => this._onKey(ev));
    parts.prev.addEventListener("click", () => this.turn(-1));
    parts.next.addEventListener("click", () => this.turn(1));
    for (const button of parts.table.querySelectorAll("th button[data-sort]")) {
      button.addEventListener("click", () => this.sortBy(button.dataset.sort));
    }
  }

  _row(index) {
    const tr = document.createElement("tr");
    tr.className = "evse-row";
    tr.tabIndex = index === 0 ? 0 : -1;
    tr.dataset.index = String(index);
    tr.setAttribute("data-testid", "evse-row");
    const pill = document.createElement("span");
    pill.className = "status-pill";
    pill.setAttribute("data-testid", "status");
    cell(tr, "col-status").append(pill);
    const stName = cell(tr, "col-station"); // its id is in the EVSE's
    const cells = {
      pill,
      stName,
      evse: cell(tr, "col-evse mono"),
      power: cell(tr, "num"),
      soc: cell(tr, "num"),
      energy: cell(tr, "num"),
      session: cell(tr, "mono col-session"),
      age: cell(tr, "col-age"),
    };
    for (const [key, td] of Object.entries(cells)) {
      if (td.tagName === "TD") td.setAttribute("data-testid", `cell-${key === "stName" ? "station" : key}`);
    }
    tr.hidden = true;
    this.parts.body.append(tr);
    return { tr, cells, id: null, sig: "" };
  }

  /** A new station list (after a full load): index the site filter, re-filter, re-render. */
  setFleet(fleet) {
    this.fleet = fleet;
    this.hay.clear();
    for (const e of fleet.evses.values()) {
      const st = fleet.station(e.station_id);
      this.hay.set(e.id, `${e.id} ${e.station_id} ${st ? st.name : ""}`.toLowerCase());
    }
    this.refresh();
  }

  setFilter({ text, status }) {
    if (text !== undefined) this.text = text.trim().toLowerCase();
    if (status !== undefined) this.status = status;
    this.page = 0;
    this.refresh();
  }

  sortBy(key) {
    if (!SORT_VALUES[key]) return;
    this.sortDir = this.sortKey === key ? -this.sortDir : 1;
    this.sortKey = key;
    for (const th of this.parts.table.querySelectorAll("th[data-col]")) {
      th.setAttribute("aria-sort", th.dataset.col === key ? (this.sortDir > 0 ? "ascending" : "descending") : "none");
    }
    this.refresh();
  }

  turn(delta) {
    const last = Math.max(0, Math.ceil(this.view.length / PAGE_SIZE) - 1);
    const page = Math.min(last, Math.max(0, this.page + delta));
    if (page === this.page) return false;
    this.page = page;
    this.render();
    return true;
  }

  /** Filter and sort the whole fleet (an array of ids: cheap at thousands), then render. */
  refresh() {
    const fleet = this.fleet;
    if (!fleet) return;
    const q = this.text;
    const want = this.status;
    const value = SORT_VALUES[this.sortKey];
    const keyed = [];
    for (const e of fleet.evses.values()) {
      if (want && (want === "Offline" ? !isOffline(e, fleet.station(e.station_id)) : e.status !== want)) continue;
      if (q && !(this.hay.get(e.id) || "").includes(q)) continue;
      keyed.push([value(e, fleet.station(e.station_id)), e.id]);
    }
    const dir = this.sortDir;
    keyed.sort((a, b) => {
      const c = typeof a[0] === "string" ? byText(a[0], b[0]) : a[0] - b[0];
      return c !== 0 ? c * dir : byText(a[1], b[1]);
    });
    this.view = keyed.map((k) => k[1]);
    this.stale = false;
    this.sortedAt = performance.now();
    const last = Math.max(0, Math.ceil(this.view.length / PAGE_SIZE) - 1);
    if (this.page > last) this.page = last;
    this.render();
  }

  /** Put the current page into the row pool. */
  render() {
    const start = this.page * PAGE_SIZE;
    this.shown.clear();
    for (let i = 0; i < PAGE_SIZE; i += 1) {
      const row = this.rows[i];
      const id = this.view[start + i];
      const e = id && this.fleet.evses.get(id);
      if (!e) {
        row.tr.hidden = true;
        row.id = null;
        continue;
      }
      row.tr.hidden = false;
      if (row.id !== id) row.sig = "";
      row.id = id;
      this.shown.set(id, row);
      this._fill(row, e);
    }
    const total = this.view.length;
    const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
    const to = Math.min(total, start + PAGE_SIZE);
    this.parts.info.textContent = total
      ? `${start + 1}–${to} of ${total} · page ${this.page + 1} of ${pages}`
      : "No EVSE matches the filter";
    this.parts.count.textContent = `${total} of ${this.fleet.evses.size} EVSEs`;
    this.parts.prev.disabled = this.page === 0;
    this.parts.next.disabled = this.page >= pages - 1;
    const visible = Math.min(PAGE_SIZE, Math.max(0, total - start));
    if (this.active >= visible) this._setActive(Math.max(0, visible - 1), false);
  }

  _fill(row, e, now = Date.now()) {
    const st = this.fleet.station(e.station_id);
    const c = row.cells;
    const offline = isOffline(e, st);
    const status = offline && e.status !== "Offline" ? "Offline" : e.status;
    const sess = e.session;
    const sig = [status, e.power_w, e.soc, sess && sess.energy_wh, sess && sess.id, sess && sess.open, st && st.name].join("|");
    if (sig !== row.sig) {
      row.sig = sig;
      row.tr.dataset.evseId = e.id;
      row.tr.dataset.stationId = e.station_id;
      row.tr.dataset.status = status;
      c.pill.dataset.status = status;
      c.pill.textContent = statusWord(status);
      c.stName.textContent = st ? st.name : e.station_id;
      c.stName.title = e.station_id;
      c.evse.textContent = e.id;
      c.power.textContent = fmtKw(e.power_w);
      c.soc.textContent = fmtSoc(e.soc);
      c.energy.textContent = sess ? fmtKwh(sess.energy_wh, 1) : "—";
      c.session.textContent = sess ? shortId(sess.id) + (sess.open ? "" : " · ended") : "—";
      c.session.title = sess && sess.id ? sess.id : "";
    }
    this._age(row, e, offline, now);
  }

  _age(row, e, offline, now) {
    const text = fmtAge(Math.max(0, (now - e.reportedAt) / 1000));
    const shown = offline ? `last report ${text}` : text; // the status says Offline
    if (row.cells.age.textContent !== shown) row.cells.age.textContent = shown;
    row.cells.age.classList.toggle("is-stale", offline);
  }

  /** Live changes (ids of changed EVSEs): patch the visible rows; re-sort now and then. */
  flush(dirty) {
    if (!this.fleet || !dirty.size) return;
    this.stale = true;
    const sortsLive = this.sortKey !== "station" && this.sortKey !== "evse";
    if ((sortsLive || this.status) && performance.now() - this.sortedAt >= RESORT_EVERY_MS) {
      this.refresh();
      return;
    }
    for (const id of dirty) {
      const row = this.shown.get(id);
      const e = row && this.fleet.evses.get(id);
      if (e) this._fill(row, e);
    }
  }

  /** Station online/offline: its rows change look. */
  touchStation(stationId) {
    for (const [id, row] of this.shown) {
      const e = this.fleet.evses.get(id);
      if (e && e.station_id === stationId) {
        row.sig = "";
        this._fill(row, e);
      }
    }
  }

  /** Once a second: the ages of the visible rows (and a pending re-sort). */
  tick() {
    if (!this.fleet) return;
    if (this.stale && performance.now() - this.sortedAt >= RESORT_EVERY_MS) {
      this.refresh();
      return;
    }
    const now = Date.now();
    for (const [id, row] of this.shown) {
      const e = this.fleet.evses.get(id);
      if (e) this._age(row, e, isOffline(e, this.fleet.station(e.station_id)), now);
    }
  }

  /** Show the page holding an EVSE (e.g. after a map click) and mark its row. */
  reveal(evseId) {
    const at = this.view.indexOf(evseId);
    if (at < 0) return false;
    this.page = Math.floor(at / PAGE_SIZE);
    this.render();
    this._setActive(at % PAGE_SIZE, false);
    return true;
  }

  _setActive(index, focus) {
    const old = this.rows[this.active];
    if (old) old.tr.tabIndex = -1;
    this.active = index;
    const row = this.rows[index];
    row.tr.tabIndex = 0;
    if (focus) row.tr.focus();
  }

  _onClick(ev) {
    const tr = ev.target.closest("tr.evse-row");
    if (!tr || tr.hidden) return;
    this._setActive(Number(tr.dataset.index), false);
    this.hooks.onOpen(tr.dataset.stationId, tr.dataset.evseId);
  }

  _onKey(ev) {
    const tr = ev.target.closest("tr.evse-row");
    if (!tr) return;
    const index = Number(tr.dataset.index);
    const visible = Math.min(PAGE_SIZE, this.view.length - this.page * PAGE_SIZE);
    let next = null;
    switch (ev.key) {
      case "ArrowDown":
        if (index + 1 < visible) next = index + 1;
        else if (this.turn(1)) next = 0;
        break;
      case "ArrowUp":
        if (index > 0) next = index - 1;
        else if (this.turn(-1)) next = PAGE_SIZE - 1;
        break;
      case "Home":
        next = 0;
        break;
      case "End":
        next = visible - 1;
        break;
      case "PageDown":
        if (this.turn(1)) next = 0;
        break;
      case "PageUp":
        if (this.turn(-1)) next = 0;
        break;
      case "Enter":
      case " ":
        ev.preventDefault();
        this.hooks.onOpen(tr.dataset.stationId, tr.dataset.evseId);
        return;
      default:
        return;
    }
    ev.preventDefault();
    if (next !== null) this._setActive(Math.max(0, next), true);
  }
}
