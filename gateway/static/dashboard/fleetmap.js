// The station map: the shared SVG map, markers coloured by how many EVSEs are free.

import { drawMap } from "/static/shared/map.js";

export const FREE_COLOURS = {
  all: "var(--map-free-all)",
  some: "var(--map-free-some)",
  none: "var(--map-free-none)",
  offline: "var(--map-offline)",
};

export class FleetMap {
  constructor(svg, { onSelect }) {
    this.svg = svg;
    this.onSelect = onSelect;
    this.selectedId = null;
    this._sig = "";
  }

  /** Redraw when anything a marker shows changed (free counts, online, selection). */
  update(fleet, force = false) {
    const points = [...fleet.stations.values()].map((st) => {
      const total = st.evseIds.length;
      const free = fleet.freeCount(st.id);
      const band = st.online === false ? "offline" : free === 0 ? "none" : free === total ? "all" : "some";
      return {
        id: st.id,
        lat: Number(st.lat),
        lon: Number(st.lon),
        free,
        total,
        band,
        label: `${st.name} (${st.id}): ${st.online === false ? "offline" : `${free} of ${total} EVSEs free`}`,
        colour: FREE_COLOURS[band],
      };
    });
    const sig = JSON.stringify([this.selectedId, points.map((p) => [p.id, p.band, p.free])]);
    if (!force && sig === this._sig) return;
    this._sig = sig;
    drawMap(this.svg, points, {
      selectedId: this.selectedId,
      onClick: (point) => {
        this.selectedId = point.id;
        this.update(fleet);
        this.onSelect(point.id);
      },
    });
    const byId = new Map(points.map((p) => [p.id, p]));
    for (const marker of this.svg.querySelectorAll(".sc-map-marker")) {
      const p = byId.get(marker.dataset.id);
      if (!p) continue;
      marker.setAttribute("data-testid", "map-marker");
      marker.setAttribute("data-station-id", p.id);
      marker.setAttribute("data-free", String(p.free));
      marker.setAttribute("data-band", p.band);
      // the free count, printed in the pin's head
      const count = document.createElementNS("http://www.w3.org/2000/svg", "text");
      count.setAttribute("x", "0");
      count.setAttribute("y", "-14.5");
      count.setAttribute("text-anchor", "middle");
      count.setAttribute("class", "map-count");
      count.setAttribute("aria-hidden", "true");
      count.textContent = p.band === "offline" ? "×" : String(p.free);
      marker.append(count);
    }
  }
}
