/**
 * The Nearby tab's map: every station of the network (the public `/stations` read) on the
 * shared tiled map (shared/map.js, Leaflet with clustering), pins coloured and labelled by
 * free chargers, the driver's position as a dot. A pin opens a popup: station name, free
 * count, Reserve (the first free charger), Details (its chargers in the list) and Navigate
 * (a `geo:` link for the phone's maps app, plus an OpenStreetMap directions link).
 */

import { StationMap, freeBand, pinLabel } from "/static/shared/map.js";

const STATIONS_EVERY_MS = 30_000; // the whole network: refreshed at most this often
const DOWN_STATUSES = new Set(["Faulted", "Unavailable", "Offline"]);

/** `geo:` URI (RFC 5870 with the Android `q=` label) for the platform's maps app. */
export function geoUri(lat, lon, name) {
  const la = Number(lat).toFixed(6);
  const lo = Number(lon).toFixed(6);
  return `geo:${la},${lo}?q=${la},${lo}(${encodeURIComponent(name)})`;
}

/** OpenStreetMap's directions to a point (only a link; nothing is fetched from there). */
export function osmDirections(lat, lon) {
  const la = Number(lat).toFixed(6);
  const lo = Number(lon).toFixed(6);
  return `https://www.openstreetmap.org/directions?to=${la}%2C${lo}#map=17/${la}/${lo}`;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (key === "testid") node.dataset.testid = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  node.append(...children);
  return node;
}

/**
 * @param {HTMLElement} container
 * @param {{api: any, reserve: (evse: object, label: string) => Promise<void>,
 *          details: (point: object) => void}} ctx
 */
export function createNearbyMap(container, ctx) {
  const stations = new Map(); // id -> the /stations entry
  let loadedAt = 0;
  let loading = null;

  const map = new StationMap(container, {
    label: "Map of the charging stations and your position",
    popup: (point) => popup(point),
  });

  function pointOf(st) {
    const evses = st.evses || [];
    const free = evses.filter((e) => e.status === "Available").length;
    const working = evses.filter((e) => !DOWN_STATUSES.has(e.status)).length;
    const point = {
      id: st.id,
      lat: Number(st.lat),
      lon: Number(st.lon),
      name: st.name || st.id,
      free,
      total: evses.length,
      online: st.online,
    };
    point.band = freeBand({ free, total: evses.length, online: st.online, working });
    return point;
  }

  function popup(point) {
    const st = stations.get(point.id);
    const freeEvse = st && st.online !== false
      ? (st.evses || []).find((e) => e.status === "Available")
      : null;
    const reserve = el(
      "button",
      { type: "button", class: "sc-popup__primary", testid: "map-reserve", disabled: !freeEvse },
      "Reserve",
    );
    reserve.addEventListener("click", async () => {
      if (!freeEvse) return;
      reserve.disabled = true;
      try {
        await ctx.reserve(
          { ...freeEvse, station_id: point.id, station_name: point.name },
          `${point.name} · ${freeEvse.id}`,
        );
        map.map.closePopup();
        refresh({ force: true });
      } finally {
        reserve.disabled = false;
      }
    });
    const details = el("button", { type: "button", testid: "map-details" }, "Details");
    details.addEventListener("click", () => {
      map.map.closePopup();
      ctx.details(point);
    });
    const navigate = el(
      "a",
      { href: geoUri(point.lat, point.lon, point.name), testid: "map-navigate" },
      "Navigate",
    );
    const osm = el(
      "a",
      {
        href: osmDirections(point.lat, point.lon),
        target: "_blank",
        rel: "noopener noreferrer",
        testid: "map-directions",
      },
      "Directions (OpenStreetMap)",
    );
    const state = pinLabel(point).slice(point.name.length + 2);
    return el(
      "div",
      { class: "sc-popup" },
      el("p", { class: "sc-popup__title", testid: "map-popup-name" }, point.name),
      el("p", { class: "sc-popup__meta", testid: "map-popup-meta" }, state),
      el("div", { class: "sc-popup__actions" }, reserve, details, navigate, osm),
    );
  }

  /** Fetch the network (at most every STATIONS_EVERY_MS unless `force`) and redraw. */
  function refresh({ force = false } = {}) {
    if (loading) return loading;
    if (!force && Date.now() - loadedAt < STATIONS_EVERY_MS) return Promise.resolve();
    loading = ctx.api
      .publicGet("/stations")
      .then((body) => {
        stations.clear();
        for (const st of body.stations || []) stations.set(st.id, st);
        loadedAt = Date.now();
        map.setPoints([...stations.values()].map(pointOf));
      })
      .catch(() => {
        /* the list says what went wrong; the map keeps what it has */
      })
      .finally(() => {
        loading = null;
      });
    return loading;
  }

  return {
    refresh,
    /** The driver's position (a dot) and the station chosen in the list. */
    show(position, selectedStation) {
      map.setUser(position);
      if (selectedStation !== map.selectedId) map.select(selectedStation);
    },
    open: (stationId) => map.open(stationId),
    map,
  };
}
