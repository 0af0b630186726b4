/**
 * A small SVG map drawn by the page (no tiles, no third-party code): an equirectangular
 * projection of the points' bounding box, one marker per point, optional "you are here".
 *
 *   import { drawMap } from "/static/shared/map.js";
 *   drawMap(svg, [{ id, lat, lon, label, colour }], {
 *     onClick: (point) => ...,        // markers become keyboard-focusable buttons
 *     user: { lat, lon },             // optional: drawn as a pulsing dot
 *     selectedId: "st-001",           // optional: a ring around that marker
 *   });
 *
 * `colour` is any CSS colour, e.g. "var(--status-Available)" (see format.js statusColour).
 * Exported names (stable): drawMap, project.
 */

const SVG_NS = "http://www.w3.org/2000/svg";

function el(name, attrs = {}, parent = null) {
  const node = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (parent) parent.appendChild(node);
  return node;
}

/**
 * Project lat/lon into a width×height box holding every point, with a margin, keeping
 * the aspect of an equirectangular projection (x scaled by cos of the mean latitude).
 * @returns {(lat: number, lon: number) => [number, number]}
 */
export function project(coords, width, height, margin = 24) {
  const lats = coords.map((c) => c.lat);
  const lons = coords.map((c) => c.lon);
  let minLat = Math.min(...lats);
  let maxLat = Math.max(...lats);
  let minLon = Math.min(...lons);
  let maxLon = Math.max(...lons);
  const k = Math.cos((((minLat + maxLat) / 2) * Math.PI) / 180) || 1;
  // never zoom closer than ~300 m across, so one point is not a degenerate box
  const minSpan = 0.003;
  if (maxLat - minLat < minSpan) {
    const mid = (minLat + maxLat) / 2;
    minLat = mid - minSpan / 2;
    maxLat = mid + minSpan / 2;
  }
  if ((maxLon - minLon) * k < minSpan) {
    const mid = (minLon + maxLon) / 2;
    minLon = mid - minSpan / (2 * k);
    maxLon = mid + minSpan / (2 * k);
  }
  const spanX = (maxLon - minLon) * k;
  const spanY = maxLat - minLat;
  const scale = Math.min((width - 2 * margin) / spanX, (height - 2 * margin) / spanY);
  const offX = (width - spanX * scale) / 2;
  const offY = (height - spanY * scale) / 2;
  return (lat, lon) => [offX + (lon - minLon) * k * scale, offY + (maxLat - lat) * scale];
}

/**
 * Draw (or redraw) the map into `svg`. Its viewBox is kept if set, else 360×220.
 * @param {SVGSVGElement} svg
 * @param {{id: string, lat: number, lon: number, label?: string, colour?: string}[]} points
 * @param {{onClick?: Function, user?: {lat: number, lon: number}|null, selectedId?: string}} [options]
 */
export function drawMap(svg, points, options = {}) {
  const box = svg.viewBox && svg.viewBox.baseVal && svg.viewBox.baseVal.width
    ? svg.viewBox.baseVal
    : { width: 360, height: 220 };
  const width = box.width;
  const height = box.height;
  if (!svg.getAttribute("viewBox")) svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.classList.add("sc-map");
  while (svg.firstChild) svg.removeChild(svg.firstChild);

  el("rect", { x: 0, y: 0, width, height, rx: 12, class: "sc-map-bg" }, svg);
  const grid = el("g", { class: "sc-map-grid", "aria-hidden": "true" }, svg);
  for (let i = 1; i < 6; i += 1) {
    el("line", { x1: (width * i) / 6, y1: 0, x2: (width * i) / 6, y2: height }, grid);
  }
  for (let i = 1; i < 4; i += 1) {
    el("line", { x1: 0, y1: (height * i) / 4, x2: width, y2: (height * i) / 4 }, grid);
  }

  const valid = points.filter((p) => Number.isFinite(p.lat) && Number.isFinite(p.lon));
  const user = options.user && Number.isFinite(options.user.lat) ? options.user : null;
  const coords = user ? [...valid, user] : valid;
  if (!coords.length) {
    const text = el("text", { x: width / 2, y: height / 2, class: "sc-map-empty" }, svg);
    text.textContent = "Nothing to show yet";
    return;
  }
  const xy = project(coords, width, height, 28);

  if (user) {
    const [ux, uy] = xy(user.lat, user.lon);
    const me = el("g", { class: "sc-map-user", transform: `translate(${ux} ${uy})` }, svg);
    el("circle", { r: 14, class: "sc-map-user-halo" }, me);
    el("circle", { r: 6, class: "sc-map-user-dot" }, me);
    el("title", {}, me).textContent = "Your position";
  }

  const markers = el("g", { class: "sc-map-markers" }, svg);
  for (const point of valid) {
    const [x, y] = xy(point.lat, point.lon);
    const g = el("g", { class: "sc-map-marker", transform: `translate(${x} ${y})` }, markers);
    g.dataset.id = point.id;
    if (point.id === options.selectedId) {
      g.classList.add("is-selected");
      el("circle", { r: 15, class: "sc-map-ring" }, g);
    }
    const pin = el("path", { d: "M0 0 C -7 -9 -10 -13 -10 -18 A 10 10 0 1 1 10 -18 C 10 -13 7 -9 0 0 Z" }, g);
    pin.classList.add("sc-map-pin");
    if (point.colour) pin.style.fill = point.colour;
    el("circle", { cx: 0, cy: -18, r: 4, class: "sc-map-pin-hole" }, g);
    const label = point.label || point.id;
    el("title", {}, g).textContent = label;
    if (options.onClick) {
      g.setAttribute("role", "button");
      g.setAttribute("tabindex", "0");
      g.setAttribute("aria-label", label);
      g.addEventListener("click", () => options.onClick(point));
      g.addEventListener("keydown", (event) => {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          options.onClick(point);
        }
      });
    }
  }
}
