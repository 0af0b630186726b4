// The notification feed: operator alerts, station online/offline, interrupted reservations.

const MAX_ITEMS = 100;

const KINDS = {
  station_offline: { level: "bad", label: "Station offline" },
  station_online: { level: "good", label: "Station online" },
  actor_restarted: { level: "warn", label: "Actor restarted" },
  evse_faulted: { level: "bad", label: "EVSE faulted" },
  reservation_interrupted: { level: "warn", label: "Reservation interrupted" },
  maintenance: { level: "info", label: "Maintenance" },
  command: { level: "info", label: "Command" },
};

export class Feed {
  constructor(list, empty, { onSelect } = {}) {
    this.list = list;
    this.empty = empty;
    this.onSelect = onSelect;
    this.recent = new Map(); // dedup key -> time
  }

  /**
   * @param {{kind: string, message: string, created_at?: number, station_id?: string,
   *          evse_id?: string}} item
   */
  add(item) {
    const key = `${item.kind}|${item.message}`;
    const at = Number(item.created_at) || Date.now();
    const seen = this.recent.get(key);
    if (seen !== undefined && Math.abs(at - seen) < 2000) return; // the same alert twice
    this.recent.set(key, at);
    if (this.recent.size > 500) this.recent.clear();

    const meta = KINDS[item.kind] || { level: "info", label: item.kind.replace(/_/g, " ") };
    const li = document.createElement("li");
    li.className = `feed-item feed-item--${meta.level}`;
    li.setAttribute("data-testid", "feed-item");
    li.dataset.kind = item.kind;
    const time = document.createElement("time");
    time.className = "feed-item__time";
    time.dateTime = new Date(at).toISOString();
    time.textContent = new Date(at).toLocaleTimeString(undefined, {
      hour: "2-digit", minute: "2-digit", second: "2-digit",
    });
    const label = document.createElement("span");
    label.className = "feed-item__kind";
    label.textContent = meta.label;
    const text = document.createElement("p");
    text.className = "feed-item__text";
    text.textContent = item.message;
    li.append(label, time, text);
    const target = item.station_id || (item.data && item.data.station_id) || null;
    const evse = item.evse_id || (item.data && item.data.evse_id) || null;
    if ((target || evse) && this.onSelect) {
      const go = document.createElement("button");
      go.type = "button";
      go.className = "btn btn--link feed-item__go";
      go.textContent = evse ? `Show ${evse}` : `Show ${target}`;
      go.addEventListener("click", () => this.onSelect({ stationId: target, evseId: evse }));
      li.append(go);
    }
    this.list.prepend(li);
    while (this.list.children.length > MAX_ITEMS) this.list.lastElementChild.remove();
    this.empty.hidden = true;
  }

  clear() {
    this.list.replaceChildren();
    this.empty.hidden = false;
  }
}
