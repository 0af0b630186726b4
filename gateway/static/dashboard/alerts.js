// The alerts panel: the stored operator alerts (GET /api/v1/alerts, newest first) plus the
// live `alert` / `alert_ack` events, filtered by severity and station, each with the time the
// CSMS stamped it (`at`, its clock) and an Acknowledge button that records who and when.
// A server without the alerts API: the panel says stored alerts are unavailable and still
// lists the live ones.

import { ApiError } from "/static/shared/api.js";

const KINDS = {
  station_offline: { severity: "bad", label: "Station offline" },
  station_online: { severity: "good", label: "Back online" },
  actor_restarted: { severity: "warn", label: "Actor restarted" },
  evse_faulted: { severity: "bad", label: "EVSE faulted" },
  reservation_interrupted: { severity: "warn", label: "Reservation interrupted" },
  maintenance: { severity: "info", label: "Maintenance" },
};
const SEVERITIES = new Set(["bad", "warn", "info", "good"]);
const SHOWN = 10; // rendered at a time ("Show older" adds more): no wall of tab stops
const FETCHED = 100;

/** The station of a CSMS-wide EVSE id (``station.evse``). */
const stationOf = (evseId) => (typeof evseId === "string" && evseId.includes(".") ? evseId.split(".")[0] : null);

/** An alert as the contract shapes it, from either the API or an older live event. */
export function normalise(raw) {
  const data = raw.data || {};
  const kind = String(raw.kind || "alert");
  const meta = KINDS[kind] || {};
  const id = Number.isInteger(raw.id) ? raw.id : null;
  const at = Number(raw.at ?? raw.created_at) || Date.now();
  return {
    id,
    key: id !== null ? `id:${id}` : `live:${kind}|${raw.message}|${Math.round(at / 2000)}`,
    at,
    kind,
    label: meta.label || kind.replace(/_/g, " "),
    severity: SEVERITIES.has(raw.severity) ? raw.severity : meta.severity || "info",
    station_id: raw.station_id || data.station_id || stationOf(raw.evse_id || data.evse_id),
    evse_id: raw.evse_id || data.evse_id || null,
    message: String(raw.message || ""),
    acked_by: raw.acked_by || null,
    acked_at: raw.acked_at ?? null,
  };
}

export function fmtWhen(ms) {
  const d = new Date(ms);
  const time = d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  if (d.toDateString() === new Date().toDateString()) return time;
  return `${d.toLocaleDateString(undefined, { day: "numeric", month: "short" })} ${time}`;
}

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

export class AlertsPanel {
  /**
   * @param {{list: HTMLElement, empty: HTMLElement, state: HTMLElement,
   *          severity: HTMLSelectElement, station: HTMLInputElement, more: HTMLButtonElement}} parts
   * @param {{api: any, available: () => Promise<boolean>, onSelect: (sel: object) => void,
   *          onChange: (stationIds: Set<string>) => void, isStation: (id: string) => boolean}} hooks
   */
  constructor(parts, hooks) {
    this.parts = parts;
    this.hooks = hooks;
    this.items = new Map(); // key -> alert
    this.nodes = new Map(); // key -> {li, sig}
    this.available = null; // null: not known yet
    this.next = null; // the API's cursor for older alerts
    this.limit = SHOWN;
    this._queued = false;
    this._refilter = null;
    parts.severity.addEventListener("change", () => this._filtersChanged());
    parts.station.addEventListener("input", () => this._filtersChanged());
    parts.more.addEventListener("click", () => this.showOlder());
  }

  get filters() {
    return { severity: this.parts.severity.value, station: this.parts.station.value.trim() };
  }

  /** (Re)load the newest stored alerts matching the filters. */
  async load({ before = null } = {}) {
    if (this.available === null) this.available = await this.hooks.available();
    if (!this.available) {
      this._state("Stored alerts unavailable: this server has no alerts API. Live alerts still appear below.", "unavailable");
      this._schedule();
      return;
    }
    const { severity, station } = this.filters;
    try {
      // the API filters by an exact station id; a partial one filters what is loaded here
      const exact = station && this.hooks.isStation && this.hooks.isStation(station) ? station : undefined;
      const body = await this.hooks.api.get("/api/v1/alerts", {
        limit: FETCHED, severity, station: exact, before,
      });
      this._state("", "ok");
      const changed = new Set();
      for (const raw of body.alerts || []) this._merge(normalise(raw), changed);
      if (!severity && !exact) this.next = body.next ?? null;
      this._changed(changed);
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        this.available = false;
        this._state("Stored alerts unavailable.", "unavailable");
      } else {
        this._state(`Could not load the alerts: ${error.reason || error}`, "error");
      }
      this._schedule();
    }
  }

  /** A live `alert` or `alert_ack` event. */
  add(raw) {
    const changed = new Set();
    this._merge(normalise(raw), changed);
    this._changed(changed);
  }

  async ack(alert, button) {
    button.disabled = true;
    try {
      const body = await this.hooks.api.post(`/api/v1/alerts/${alert.id}/ack`, {});
      this.add(body);
    } catch (error) {
      button.disabled = false;
      button.textContent = "Acknowledge (failed, retry)";
      button.title = error.reason || String(error);
    }
  }

  async showOlder() {
    this.limit += SHOWN;
    if (this.available && this.next !== null && this.limit > this.items.size) {
      await this.load({ before: this.next });
    }
    this._schedule();
  }

  /** The newest alerts of one station (for its detail panel). */
  forStation(stationId, n = 8) {
    return this._sorted().filter((a) => a.station_id === stationId).slice(0, n);
  }

  /** One alert as a list item (also used by the station detail panel). */
  item(alert, { withShow = true } = {}) {
    const li = el("li", `feed-item feed-item--${alert.severity}`);
    li.setAttribute("data-testid", "alert-item");
    li.dataset.kind = alert.kind;
    li.dataset.severity = alert.severity;
    if (alert.id !== null) li.dataset.alertId = String(alert.id);
    if (alert.station_id) li.dataset.stationId = alert.station_id;
    const time = el("time", "feed-item__time", fmtWhen(alert.at));
    time.dateTime = new Date(alert.at).toISOString();
    time.title = "CSMS time of the event";
    li.append(el("span", "feed-item__kind", alert.label), time, el("p", "feed-item__text", alert.message));
    const actions = el("div", "feed-item__actions");
    if (withShow && (alert.station_id || alert.evse_id) && this.hooks.onSelect) {
      const go = el("button", "btn btn--link feed-item__go", `Show ${alert.evse_id || alert.station_id}`);
      go.type = "button";
      go.addEventListener("click", () =>
        this.hooks.onSelect({ stationId: alert.station_id, evseId: alert.evse_id }));
      actions.append(go);
    }
    if (alert.acked_by || alert.acked_at) {
      const who = el("span", "feed-item__acked muted",
        `Acknowledged by ${alert.acked_by || "an operator"}${alert.acked_at ? ` at ${fmtWhen(alert.acked_at)}` : ""}`);
      who.setAttribute("data-testid", "acked");
      actions.append(who);
    } else if (alert.id !== null && this.available) {
      const ack = el("button", "btn btn-small btn-ghost", "Acknowledge");
      ack.type = "button";
      ack.setAttribute("data-testid", "ack");
      ack.setAttribute("aria-label", `Acknowledge: ${alert.label}, ${alert.message}`);
      ack.addEventListener("click", () => this.ack(alert, ack));
      actions.append(ack);
    }
    if (actions.childElementCount) li.append(actions);
    return li;
  }

  _merge(alert, changed) {
    const old = this.items.get(alert.key);
    if (old && old.acked_at && !alert.acked_at) return; // never un-ack from an older copy
    this.items.set(alert.key, alert);
    if (alert.station_id) changed.add(alert.station_id);
    if (this.items.size > 2000) {
      for (const a of this._sorted().slice(1500)) this.items.delete(a.key);
    }
  }

  _changed(stationIds) {
    this._schedule();
    if (stationIds.size && this.hooks.onChange) this.hooks.onChange(stationIds);
  }

  _filtersChanged() {
    this.limit = SHOWN;
    this._schedule();
    clearTimeout(this._refilter);
    const { severity, station } = this.filters;
    const exact = station && this.hooks.isStation && this.hooks.isStation(station);
    if (this.available && (severity || exact)) this._refilter = setTimeout(() => this.load(), 300);
  }

  _state(text, kind) {
    this.parts.state.textContent = text;
    this.parts.state.dataset.kind = kind;
    this.parts.state.hidden = !text;
  }

  _sorted() {
    return [...this.items.values()].sort((a, b) => b.at - a.at || (b.id ?? 0) - (a.id ?? 0));
  }

  _schedule() {
    if (this._queued) return;
    this._queued = true;
    requestAnimationFrame(() => {
      this._queued = false;
      this.render();
    });
  }

  render() {
    const { severity, station } = this.filters;
    const q = station.toLowerCase();
    const matching = this._sorted().filter(
      (a) =>
        (!severity || a.severity === severity) &&
        (!q || (a.station_id || "").toLowerCase().includes(q) || (a.evse_id || "").toLowerCase().includes(q)),
    );
    const shown = matching.slice(0, this.limit);
    const lis = shown.map((a) => {
      const sig = `${a.acked_by}|${a.acked_at}|${this.available}`;
      let node = this.nodes.get(a.key);
      if (!node || node.sig !== sig) {
        node = { li: this.item(a), sig };
        this.nodes.set(a.key, node);
      }
      return node.li;
    });
    const list = this.parts.list;
    const same = list.children.length === lis.length && lis.every((li, i) => list.children[i] === li);
    if (!same) list.replaceChildren(...lis);
    if (this.nodes.size > 4 * SHOWN + this.limit) {
      const keep = new Set(shown.map((a) => a.key));
      for (const key of this.nodes.keys()) if (!keep.has(key)) this.nodes.delete(key);
    }
    this.parts.empty.hidden = lis.length > 0;
    this.parts.empty.textContent = this.items.size
      ? "No alert matches the filter."
      : "No alerts yet. Stations going offline or back online, faults and interrupted reservations appear here live.";
    this.parts.more.hidden = !(matching.length > shown.length || (this.available && this.next !== null && !severity && !q));
  }
}
