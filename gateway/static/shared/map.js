/**
 * The stations' map of both UIs: Leaflet with marker clustering (vendored under
 * /static/vendor/, loaded on demand, no CDN), tiles from the gateway's setting.
 *
 * Exported names (stable): StationMap, loadLeaflet, mapSettings, freeBand, pinLabel,
 * TILES_UNAVAILABLE.
 */

// ---------------------------------------------------------------------------------------------
// The tiled map (Leaflet + Leaflet.markercluster, vendored under /static/vendor/, no CDN).
//
//   import { StationMap, freeBand } from "/static/shared/map.js";
//   const map = new StationMap(container, {
//     label: "Map of the stations",
//     onSelect: (point) => ...,            // a pin was clicked (or Enter on it)
//     popup: (point) => Node | null,       // the pin's popup content (optional)
//   });
//   map.setPoints([{ id, lat, lon, name, free, total, band }]);  // band: freeBand(...)
//   map.setUser({ lat, lon });   map.select(id, { reveal: true });
//
// The tile URL and attribution come from the page's <meta name="sc-map-tiles"> and
// <meta name="sc-map-attribution"> (filled in by the gateway: gateway/map_tiles.py);
// "none" or a tile that fails to load shows "Map tiles unavailable — showing stations only",
// the pins stay on a plain background. Pins are buttons named "Station X, 2 of 2 free";
// clusters are named by their station count; a "Skip map" link jumps past the map.
// ---------------------------------------------------------------------------------------------

const VENDOR = "/static/vendor";
const STYLES = [
  `${VENDOR}/leaflet/leaflet.css`,
  `${VENDOR}/markercluster/MarkerCluster.css`,
  "/static/shared/map.css",
];
export const TILES_UNAVAILABLE = "Map tiles unavailable — showing stations only";
const TILE_PATIENCE_MS = 10_000;

let leafletLoading = null;

/** Leaflet and the cluster plugin, loaded once (both set globals: window.L). */
export function loadLeaflet() {
  if (!leafletLoading) {
    for (const href of STYLES) {
      if (document.querySelector(`link[href="${href}"]`)) continue;
      const link = document.createElement("link");
      link.rel = "stylesheet";
      link.href = href;
      document.head.appendChild(link);
    }
    leafletLoading = import(`${VENDOR}/leaflet/leaflet.js`)
      .then(() => import(`${VENDOR}/markercluster/leaflet.markercluster.js`))
      .then(() => window.L);
  }
  return leafletLoading;
}

/** The page's tile setting: {url: string|null, attribution: string}. */
export function mapSettings(doc = document) {
  const read = (name) => {
    const meta = doc.querySelector(`meta[name="${name}"]`);
    return meta ? meta.getAttribute("content") || "" : "";
  };
  const url = read("sc-map-tiles");
  const ok = /^https?:\/\/[^\s"'<>]+$/.test(url) && ["{z}", "{x}", "{y}"].every((p) => url.includes(p));
  return { url: ok ? url : null, attribution: ok ? read("sc-map-attribution") : "" };
}

/**
 * A station's band from its free and working EVSEs: "free" (some free), "busy" (none free),
 * "down" (offline, or every EVSE faulted/unavailable).
 */
export function freeBand({ free, total, online = true, working = total }) {
  if (online === false || total === 0 || working === 0) return "down";
  return free > 0 ? "free" : "busy";
}

/** What a pin says, for screen readers and the tooltip. */
export function pinLabel(point) {
  const name = point.name || point.id;
  if (point.band === "down") return `${name}, ${point.online === false ? "offline" : "out of order"}`;
  return `${name}, ${point.free} of ${point.total} free`;
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** A Leaflet divIcon that carries an accessible name and test hooks on its element. */
function iconClass(L) {
  if (L.ScStationIcon) return L.ScStationIcon;
  L.ScStationIcon = L.DivIcon.extend({
    createIcon(old) {
      const div = L.DivIcon.prototype.createIcon.call(this, old);
      const o = this.options;
      div.setAttribute("aria-label", o.label);
      div.setAttribute("role", "button");
      div.title = o.label;
      for (const [key, value] of Object.entries(o.data || {})) div.dataset[key] = value;
      return div;
    },
  });
  return L.ScStationIcon;
}

export class StationMap {
  /**
   * @param {HTMLElement} container  an empty block element (the map fills it)
   * @param {{label?: string, onSelect?: Function, popup?: Function, maxZoom?: number}} [options]
   */
  constructor(container, options = {}) {
    this.container = container;
    this.options = options;
    this.points = new Map(); // id -> point
    this.markers = new Map(); // id -> L.Marker
    this.selectedId = null;
    this.user = null;
    this.fitted = false;
    this.L = null;
    this.map = null;
    this._pending = null;
    this._tileErrors = 0;
    this._tileLoads = 0;
    this._prepareDom();
    this.ready = loadLeaflet()
      .then((L) => this._init(L))
      .catch((error) => {
        this._setNotice(`The map could not be loaded: ${error && error.message ? error.message : error}`);
        throw error;
      });
    this.ready.catch(() => {});
  }

  _prepareDom() {
    const box = this.container;
    box.classList.add("sc-tilemap");
    box.setAttribute("role", "region");
    box.setAttribute("aria-label", this.options.label || "Map of the stations");
    const id = box.id || `sc-map-${Math.random().toString(36).slice(2, 8)}`;
    box.id = id;
    // "Skip map": the pins are tab stops; this jumps past them
    const skip = document.createElement("a");
    skip.className = "sc-map-skip";
    skip.href = `#${id}-after`;
    skip.textContent = "Skip map";
    skip.dataset.testid = "skip-map";
    const after = document.createElement("span");
    after.id = `${id}-after`;
    after.className = "sc-map-after";
    after.tabIndex = -1;
    skip.addEventListener("click", (event) => {
      event.preventDefault();
      after.focus();
    });
    box.before(skip);
    this.notice = document.createElement("p");
    this.notice.className = "sc-map-notice";
    this.notice.dataset.testid = "map-notice";
    this.notice.setAttribute("role", "status");
    this.notice.hidden = true;
    box.after(this.notice);
    this.notice.after(after);
  }

  _setNotice(text) {
    this.notice.textContent = text || "";
    this.notice.hidden = !text;
    this.container.dataset.tiles = text ? "unavailable" : "ok";
  }

  _init(L) {
    this.L = L;
    const still = window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches;
    const map = L.map(this.container, {
      fadeAnimation: !still,
      zoomAnimation: !still,
      markerZoomAnimation: !still,
      zoomControl: true,
      attributionControl: true,
      keyboard: true,
      worldCopyJump: false,
      maxZoom: this.options.maxZoom || 18,
      minZoom: 2,
    });
    map.attributionControl.setPrefix('<a href="https://leafletjs.com">Leaflet</a>');
    map.setView([44.4949, 11.3426], 12); // replaced by the points' bounds
    const settings = mapSettings();
    if (settings.url) {
      const tiles = L.tileLayer(settings.url, {
        maxZoom: 19,
        attribution: escapeHtml(settings.attribution),
        crossOrigin: false,
      });
      tiles.on("tileerror", () => {
        this._tileErrors += 1;
        if (!this._tileLoads) this._setNotice(TILES_UNAVAILABLE);
      });
      tiles.on("tileload", () => {
        this._tileLoads += 1;
        this._setNotice("");
      });
      tiles.addTo(map);
      this.container.dataset.tiles = "loading";
      // a tile server that never answers (no error either): say so after a while
      const waitForTiles = () => {
        if (!this._tileLoads && this.container.clientWidth) this._setNotice(TILES_UNAVAILABLE);
      };
      setTimeout(waitForTiles, TILE_PATIENCE_MS);
    } else {
      this._setNotice(TILES_UNAVAILABLE);
    }
    const Icon = iconClass(L);
    this.cluster = L.markerClusterGroup({
      animate: !still,
      showCoverageOnHover: false,
      spiderfyOnMaxZoom: true,
      maxClusterRadius: 60,
      chunkedLoading: true,
      iconCreateFunction: (cluster) => {
        const children = cluster.getAllChildMarkers();
        let free = 0;
        let up = 0;
        for (const m of children) {
          const p = this.points.get(m.options.stationId);
          if (!p) continue;
          free += p.free || 0;
          if (p.band !== "down") up += 1;
        }
        const n = children.length;
        const band = up === 0 ? "down" : free > 0 ? "free" : "busy";
        const label = `${n} stations, ${free} EVSEs free; zoom in`;
        const span = document.createElement("span");
        span.className = "sc-cluster__count";
        span.textContent = String(n);
        return new Icon({
          html: span,
          className: `sc-cluster sc-band-${band}`,
          iconSize: L.point(40, 40),
          label,
          data: { testid: "map-cluster", count: String(n), free: String(free), band },
        });
      },
    });
    this.cluster.on("click", (event) => this._clicked(event.layer, false));
    this.cluster.on("keypress", (event) => {
      const key = event.originalEvent && event.originalEvent.key;
      if (key === "Enter" || key === " ") {
        event.originalEvent.preventDefault();
        this._clicked(event.layer, true);
      }
    });
    this.popup = L.popup({ maxWidth: 260, autoPanPadding: [16, 16], offset: [0, -10] });
    map.addLayer(this.cluster);
    const settled = () => {
      this.container.dataset.zoom = String(map.getZoom());
    };
    map.on("zoomend", settled);
    this.cluster.on("animationend", settled);
    settled();
    this.map = map;
    // a map made while its view was hidden has no size: follow the container's size, and
    // fit the stations once it has one
    if (typeof ResizeObserver === "function") {
      this._resize = new ResizeObserver(() => {
        if (!this.container.clientWidth || !this.container.clientHeight) return;
        map.invalidateSize({ pan: false });
        if (!this.fitted && this.markers.size) {
          this.fit();
          this.fitted = true;
        }
      });
      this._resize.observe(this.container);
    }
    this.userLayer = null;
    if (this._pending) {
      const pending = this._pending;
      this._pending = null;
      this.setPoints(pending);
    }
    if (this.user) this.setUser(this.user);
    return this;
  }

  _icon(point) {
    const Icon = iconClass(this.L);
    const span = document.createElement("span");
    span.className = "sc-pin__count";
    span.setAttribute("aria-hidden", "true");
    span.textContent = point.band === "down" ? "×" : String(point.free);
    const selected = point.id === this.selectedId ? " is-selected" : "";
    return new Icon({
      html: span,
      className: `sc-pin sc-band-${point.band}${selected}`,
      iconSize: this.L.point(30, 30),
      iconAnchor: this.L.point(15, 15),
      popupAnchor: this.L.point(0, -14),
      label: pinLabel(point),
      data: {
        testid: "map-marker",
        stationId: point.id,
        free: String(point.free),
        total: String(point.total),
        band: point.band,
      },
    });
  }

  _iconKey(point) {
    return `${point.band}|${point.free}|${point.total}|${point.name}|${point.id === this.selectedId}`;
  }

  _clicked(marker, byKeyboard) {
    const point = this.points.get(marker.options.stationId);
    if (!point) return;
    this.select(point.id);
    // the page reacts first (it may scroll or move the focus); then the popup takes the focus
    if (this.options.onSelect) this.options.onSelect(point);
    const content = this.options.popup ? this.options.popup(point) : null;
    if (content) {
      this.popup.setLatLng(marker.getLatLng()).setContent(content).openOn(this.map);
      const popupEl = this.popup.getElement();
      if (popupEl) {
        popupEl.dataset.testid = "map-popup";
        popupEl.dataset.stationId = point.id;
        this._popupMarker = marker;
        if (!popupEl.dataset.keys) {
          popupEl.dataset.keys = "1";
          // Escape closes the popup and gives the focus back to its pin
          popupEl.addEventListener("keydown", (event) => {
            if (event.key !== "Escape") return;
            event.preventDefault();
            this.map.closePopup();
            const icon = this._popupMarker && this._popupMarker.getElement();
            if (icon) icon.focus();
          });
        }
        if (byKeyboard) {
          const first = popupEl.querySelector(
            ".leaflet-popup-content a, .leaflet-popup-content button:not([disabled])",
          );
          if (first) first.focus({ preventScroll: true });
        }
      }
    }
  }

  /** Show these stations (markers added, changed or removed as needed). */
  setPoints(points) {
    const valid = points.filter((p) => Number.isFinite(p.lat) && Number.isFinite(p.lon));
    if (!this.map) {
      this._pending = valid;
      return;
    }
    const L = this.L;
    const seen = new Set();
    const added = [];
    const changed = [];
    for (const point of valid) {
      seen.add(point.id);
      const before = this.points.get(point.id);
      this.points.set(point.id, point);
      const marker = this.markers.get(point.id);
      if (!marker) {
        const m = L.marker([point.lat, point.lon], {
          icon: this._icon(point),
          keyboard: true,
          riseOnHover: true,
          stationId: point.id,
        });
        m._scKey = this._iconKey(point);
        this.markers.set(point.id, m);
        added.push(m);
        continue;
      }
      if (before && (before.lat !== point.lat || before.lon !== point.lon)) {
        marker.setLatLng([point.lat, point.lon]);
      }
      const key = this._iconKey(point);
      if (marker._scKey !== key) {
        marker._scKey = key;
        marker.setIcon(this._icon(point));
        changed.push(marker);
      }
    }
    const removed = [];
    for (const [id, marker] of this.markers) {
      if (seen.has(id)) continue;
      removed.push(marker);
      this.markers.delete(id);
      this.points.delete(id);
    }
    if (removed.length) this.cluster.removeLayers(removed);
    if (added.length) this.cluster.addLayers(added);
    if (changed.length) this.cluster.refreshClusters(changed);
    this.container.dataset.stations = String(this.markers.size);
    if (!this.fitted && this.markers.size && this.container.clientWidth) {
      this.fit();
      this.fitted = true;
    }
  }

  /** Zoom to show every station (and the user, if known). */
  fit() {
    if (!this.map) return;
    const L = this.L;
    const latlngs = [...this.points.values()].map((p) => [p.lat, p.lon]);
    if (this.user) latlngs.push([this.user.lat, this.user.lon]);
    if (!latlngs.length) return;
    const bounds = L.latLngBounds(latlngs);
    this.map.fitBounds(bounds, { padding: [24, 24], maxZoom: 15, animate: false });
  }

  /** The driver's position, as a dot (not a button). */
  setUser(user) {
    this.user = user && Number.isFinite(user.lat) && Number.isFinite(user.lon) ? user : null;
    if (!this.map) return;
    if (this.userLayer) {
      this.userLayer.remove();
      this.userLayer = null;
    }
    if (!this.user) return;
    this.userLayer = this.L.circleMarker([this.user.lat, this.user.lon], {
      radius: 7,
      className: "sc-map-me",
      interactive: false,
      weight: 3,
    }).addTo(this.map);
  }

  /** Mark a station as selected; with `reveal`, zoom/pan until its pin shows. */
  select(id, { reveal = false } = {}) {
    const before = this.selectedId;
    this.selectedId = id;
    for (const sid of [before, id]) {
      const marker = sid && this.markers.get(sid);
      const point = sid && this.points.get(sid);
      if (!marker || !point) continue;
      const key = this._iconKey(point);
      if (marker._scKey !== key) {
        marker._scKey = key;
        marker.setIcon(this._icon(point));
      }
    }
    const marker = id && this.markers.get(id);
    if (reveal && marker && this.map) this.cluster.zoomToShowLayer(marker, () => {});
  }

  /** Open the popup of a station (as a click would), e.g. from a list. */
  open(id) {
    const marker = this.markers.get(id);
    if (!marker || !this.map) return;
    this.cluster.zoomToShowLayer(marker, () => this._clicked(marker, false));
  }
}
