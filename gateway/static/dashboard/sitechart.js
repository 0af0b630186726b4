// A site's power over the last minutes (2, 5, 10 or 15: the shortest that holds the readings,
// so a site the node has just started deciding for is not a sliver at the right edge) as a
// small SVG chart: the limit in force (a dashed
// step line), what the site actor allocated (a step line) and what the EVSEs measured (a line
// over a soft area). Colours are CSS classes (sites.css); the legend and the readings table
// (the chart's text alternative) are HTML beside it (sites.js).
//
//   const chart = new SiteChart(svgElement);
//   chart.add({at, limit_kw, allocated_kw, measured_kw});  // history and each poll
//   chart.draw();

const SVG_NS = "http://www.w3.org/2000/svg";
export const WINDOW_MS = 15 * 60 * 1000;
const KEEP_MS = WINDOW_MS + 60_000;
/** The windows (minutes) and their time ticks. */
const WINDOWS = [
  [2, [2, 1, 0]],
  [5, [5, 4, 3, 2, 1, 0]],
  [10, [10, 5, 0]],
  [15, [15, 10, 5, 0]],
];
export const SERIES = [
  { key: "limit_kw", name: "Limit", css: "sc-limit", step: true },
  { key: "allocated_kw", name: "Allocated", css: "sc-allocated", step: true },
  { key: "measured_kw", name: "Measured", css: "sc-measured", step: false },
];

function node(name, attrs, parent) {
  const n = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, String(v));
  parent.appendChild(n);
  return n;
}

/** A round grid step at or above `value` (1, 2, 5 x 10^n). */
export function niceStep(value) {
  if (!(value > 0)) return 1;
  const exp = 10 ** Math.floor(Math.log10(value));
  for (const m of [1, 2, 5, 10]) if (value <= m * exp + 1e-9) return m * exp;
  return 10 * exp;
}

const f1 = (n) => n.toFixed(1);

export class SiteChart {
  constructor(svg, { now = () => Date.now() } = {}) {
    this.svg = svg;
    this.now = now;
    this.byAt = new Map(); // at (epoch ms) -> reading
    if (typeof ResizeObserver === "function") {
      this._resize = new ResizeObserver(() => this.draw());
      this._resize.observe(svg);
    }
  }

  /** Record a reading (the same `at` twice keeps the later one); old ones are dropped. */
  add(reading) {
    if (!reading || !Number.isFinite(reading.at)) return;
    const clean = { at: reading.at };
    for (const { key } of SERIES) {
      const v = Number(reading[key]);
      clean[key] = Number.isFinite(v) && v >= 0 ? v : 0;
    }
    this.byAt.set(reading.at, clean);
    const cutoff = this.end() - KEEP_MS;
    for (const at of this.byAt.keys()) if (at < cutoff) this.byAt.delete(at);
  }

  /** The readings, oldest first. */
  readings() {
    return [...this.byAt.values()].sort((a, b) => a.at - b.at);
  }

  /** The right edge: now, or the newest reading when the node's clock runs ahead. */
  end() {
    let newest = 0;
    for (const at of this.byAt.keys()) newest = Math.max(newest, at);
    return Math.max(this.now(), newest);
  }

  /** The window shown: the shortest of 2, 5, 10 or 15 minutes that holds the readings. */
  window() {
    let oldest = Infinity;
    for (const at of this.byAt.keys()) oldest = Math.min(oldest, at);
    const span = this.end() - oldest;
    for (const [minutes, ticks] of WINDOWS) {
      if (span <= minutes * 60_000) return { minutes, ticks, span: Number.isFinite(span) ? span : 0 };
    }
    const [minutes, ticks] = WINDOWS[WINDOWS.length - 1];
    return { minutes, ticks, span };
  }

  draw() {
    const svg = this.svg;
    const width = Math.max(240, Math.round(svg.clientWidth || 600));
    const height = Math.max(140, Math.round(svg.clientHeight || 220));
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svg.replaceChildren();
    const pad = { l: 44, r: 12, t: 20, b: 24 };
    const w = width - pad.l - pad.r;
    const h = height - pad.t - pad.b;
    const end = this.end();
    const { minutes, ticks, span } = this.window();
    const windowMs = minutes * 60_000;
    const from = end - windowMs;
    const all = this.readings();
    // the last reading before the window holds its value into it
    const firstIn = all.findIndex((p) => p.at >= from);
    const points = firstIn === -1 ? all.slice(-1) : all.slice(Math.max(0, firstIn - 1));
    const peak = Math.max(1, ...points.flatMap((p) => SERIES.map((s) => p[s.key])));
    const step = niceStep((peak * 1.1) / 4);
    const top = step * 4;
    const x = (t) => pad.l + ((Math.max(t, from) - from) / windowMs) * w;
    const y = (kw) => pad.t + h - (kw / top) * h;

    const axes = node("g", { class: "sc-axes", "aria-hidden": "true" }, svg);
    for (let i = 0; i <= 4; i += 1) {
      const kw = (top * i) / 4;
      node("line", { x1: pad.l, x2: pad.l + w, y1: y(kw), y2: y(kw), class: "sc-grid" }, axes);
      const label = node("text", { x: pad.l - 6, y: y(kw) + 4, class: "sc-label", "text-anchor": "end" }, axes);
      label.textContent = Number.isInteger(kw) ? String(kw) : kw.toFixed(1);
    }
    for (const min of ticks) {
      const anchor = min === minutes ? "start" : min === 0 ? "end" : "middle";
      const t = node("text", { x: x(end - min * 60_000), y: height - 6, class: "sc-label", "text-anchor": anchor }, axes);
      t.textContent = min === 0 ? "now" : `−${min} min`;
    }
    const unit = node("text", { x: pad.l - 6, y: 12, class: "sc-label", "text-anchor": "end" }, axes);
    unit.textContent = "kW";

    svg.dataset.points = String(points.length);
    svg.dataset.minutes = String(minutes);
    svg.dataset.spanS = String(Math.round(span / 1000));
    if (!points.length) return;
    for (const series of [SERIES[2], SERIES[1], SERIES[0]]) {
      const pts = [];
      points.forEach((p, i) => {
        const px = x(p.at);
        const py = y(p[series.key]);
        if (series.step && i > 0) pts.push([px, pts[pts.length - 1][1]]);
        pts.push([px, py]);
      });
      pts.push([x(end), pts[pts.length - 1][1]]); // hold the last value to "now"
      const line = pts.map(([a, b], i) => `${i ? "L" : "M"}${f1(a)} ${f1(b)}`).join(" ");
      if (series.key === "measured_kw") {
        const base = f1(pad.t + h);
        node("path", { d: `${line} L${f1(pts[pts.length - 1][0])} ${base} L${f1(pts[0][0])} ${base} Z`, class: "sc-area" }, svg);
      }
      node("path", { d: line, class: `sc-line ${series.css}`, "data-series": series.key }, svg);
    }
    const last = points[points.length - 1];
    node("circle", { cx: f1(x(last.at)), cy: f1(y(last.measured_kw)), r: 3.5, class: "sc-dot" }, svg);
  }

  disconnect() {
    if (this._resize) this._resize.disconnect();
  }
}
