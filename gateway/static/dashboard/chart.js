// A small live line chart of fleet power (kW) over the last ten minutes, drawn as SVG.

const SVG_NS = "http://www.w3.org/2000/svg";
const WINDOW_MS = 10 * 60 * 1000;

function node(name, attrs = {}, parent = null) {
  const n = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, String(v));
  if (parent) parent.appendChild(n);
  return n;
}

function niceMax(value) {
  if (value <= 0) return 10;
  const exp = 10 ** Math.floor(Math.log10(value));
  for (const m of [1, 2, 2.5, 5, 10]) if (value <= m * exp) return m * exp;
  return 10 * exp;
}

export class PowerChart {
  constructor(svg, { now = () => Date.now() } = {}) {
    this.svg = svg;
    this.now = now;
    this.samples = []; // {t, kw}
    this._resize = new ResizeObserver(() => this.draw());
    this._resize.observe(svg);
  }

  /** Record the fleet power now (called on a timer and on live changes). */
  add(kw, t = this.now()) {
    const last = this.samples[this.samples.length - 1];
    if (last && t - last.t < 1000) last.kw = kw; // at most one point a second
    else this.samples.push({ t, kw });
    const cutoff = t - WINDOW_MS - 60_000;
    while (this.samples.length && this.samples[0].t < cutoff) this.samples.shift();
  }

  draw() {
    const svg = this.svg;
    const width = Math.max(200, Math.round(svg.clientWidth || 400));
    const height = Math.max(100, Math.round(svg.clientHeight || 150));
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    const pad = { l: 40, r: 10, t: 10, b: 22 };
    const w = width - pad.l - pad.r;
    const h = height - pad.t - pad.b;
    const now = this.now();
    const from = now - WINDOW_MS;
    const points = this.samples.filter((s) => s.t >= from - 5000);
    const top = niceMax(Math.max(1, ...points.map((p) => p.kw)) * 1.1);
    const x = (t) => pad.l + ((t - from) / WINDOW_MS) * w;
    const y = (kw) => pad.t + h - (kw / top) * h;

    const defs = node("defs", {}, svg);
    const grad = node("linearGradient", { id: "pc-fill", x1: 0, y1: 0, x2: 0, y2: 1 }, defs);
    node("stop", { offset: "0%", class: "chart__stop-top" }, grad);
    node("stop", { offset: "100%", class: "chart__stop-bottom" }, grad);

    const axes = node("g", { class: "chart__axes", "aria-hidden": "true" }, svg);
    for (let i = 0; i <= 4; i += 1) {
      const kw = (top * i) / 4;
      const yy = y(kw);
      node("line", { x1: pad.l, x2: pad.l + w, y1: yy, y2: yy, class: "chart__grid" }, axes);
      const label = node("text", { x: pad.l - 6, y: yy + 4, class: "chart__label", "text-anchor": "end" }, axes);
      label.textContent = kw >= 10 ? Math.round(kw) : kw.toFixed(1).replace(/\.0$/, "");
    }
    for (const [min, anchor] of [[10, "start"], [5, "middle"], [0, "end"]]) {
      const t = node("text", {
        x: x(now - min * 60_000), y: height - 6, class: "chart__label", "text-anchor": anchor,
      }, axes);
      t.textContent = min === 0 ? "now" : `−${min} min`;
    }

    if (points.length) {
      const clampX = (t) => Math.max(pad.l, x(t));
      const pts = points.map((p) => [clampX(p.t), y(p.kw)]);
      pts.push([x(now), y(points[points.length - 1].kw)]); // hold the last value to "now"
      const line = pts.map(([a, b], i) => `${i ? "L" : "M"}${a.toFixed(1)} ${b.toFixed(1)}`).join(" ");
      node("path", {
        d: `${line} L${pts[pts.length - 1][0].toFixed(1)} ${pad.t + h} L${pts[0][0].toFixed(1)} ${pad.t + h} Z`,
        class: "chart__area", fill: "url(#pc-fill)",
      }, svg);
      node("path", { d: line, class: "chart__line" }, svg);
      const [lx, ly] = pts[pts.length - 1];
      node("circle", { cx: lx, cy: ly, r: 3.5, class: "chart__dot" }, svg);
      const last = points[points.length - 1].kw;
      svg.setAttribute("aria-label", `Fleet power over the last 10 minutes; now ${last.toFixed(1)} kW`);
      svg.dataset.points = String(points.length);
    }
  }
}
