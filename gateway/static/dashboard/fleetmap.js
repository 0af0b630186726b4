// The station map: the shared tiled map (shared/map.js StationMap, Leaflet with clustering),
// pins coloured and labelled by how many EVSEs are free; a click opens the station's popup
// and selects it on the dashboard.

import { StationMap, freeBand, pinLabel } from "/static/shared/map.js";

const DOWN_STATUSES = new Set(["Faulted", "Unavailable", "Offline"]);
const REDRAW_MS = 400; // live events: the pins follow at most this often

export class FleetMap {
  /** @param {HTMLElement} container  @param {{onSelect: (stationId: string) => void}} options */
  constructor(container, { onSelect }) {
    this.onSelect = onSelect;
    this._selectedId = null;
    this._timer = null;
    this._fleet = null;
    this.map = new StationMap(container, {
      label: "Map of the stations; choose a pin to open its station",
      onSelect: (point) => {
        this._selectedId = point.id;
        this.onSelect(point.id);
      },
      popup: (point) => this._popup(point),
    });
  }

  get selectedId() {
    return this._selectedId;
  }

  /** Selecting from elsewhere (the feed, a card) shows the station's pin on the map. */
  set selectedId(id) {
    this._selectedId = id;
    this.map.ready.then(() => this.map.select(id, { reveal: true })).catch(() => {});
  }

  /** Follow the fleet: at once with `force`, else at most every REDRAW_MS. */
  update(fleet, force = false) {
    this._fleet = fleet;
    if (force) {
      clearTimeout(this._timer);
      this._timer = null;
      this._draw();
      return;
    }
    if (this._timer === null) {
      this._timer = setTimeout(() => {
        this._timer = null;
        this._draw();
      }, REDRAW_MS);
    }
  }

  _draw() {
    const fleet = this._fleet;
    if (!fleet) return;
    const points = [];
    for (const st of fleet.stations.values()) {
      const evses = fleet.evsesOf(st.id);
      const total = st.evseIds.length;
      const free = fleet.freeCount(st.id);
      const working = evses.filter((e) => !DOWN_STATUSES.has(e.status)).length;
      const point = {
        id: st.id,
        lat: Number(st.lat),
        lon: Number(st.lon),
        name: st.name || st.id,
        free,
        total,
        online: st.online,
      };
      point.band = freeBand({ free, total, online: st.online, working });
      points.push(point);
    }
    this.map.setPoints(points);
  }

  _popup(point) {
    const box = document.createElement("div");
    box.className = "sc-popup";
    const title = document.createElement("p");
    title.className = "sc-popup__title";
    title.textContent = point.name;
    const meta = document.createElement("p");
    meta.className = "sc-popup__meta";
    meta.dataset.testid = "map-popup-meta";
    const state = pinLabel(point).slice(point.name.length + 2);
    meta.textContent = `${point.id} · ${state}`;
    const actions = document.createElement("div");
    actions.className = "sc-popup__actions";
    const show = document.createElement("button");
    show.type = "button";
    show.className = "sc-popup__primary";
    show.textContent = "Show station";
    show.dataset.testid = "map-popup-show";
    show.addEventListener("click", () => this.onSelect(point.id));
    const page = document.createElement("a");
    page.href = `/dashboard/station?id=${encodeURIComponent(point.id)}`;
    page.textContent = "Station page";
    page.dataset.testid = "map-popup-page";
    actions.append(show, page);
    box.append(title, meta, actions);
    return box;
  }
}
