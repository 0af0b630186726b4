// Station groups and EVSE cards: built once per station list, then patched in place
// from the live feed (no re-render: focus, switch state and answers survive updates).

import { holdLeft, isFree } from "./store.js";
import { fmtAge, fmtCountdown, fmtKw, fmtKwh, fmtSoc, shortId, statusWord } from "./fmt.js";

const STALE_AFTER_S = 60;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

function metric(label, testid, extraClass = "") {
  const dd = el("dd", { "data-testid": testid, class: extraClass });
  return [el("div", { class: "metric" }, el("dt", { text: label }), dd), dd];
}

/**
 * @param {HTMLElement} root the container of the station groups
 * @param {{onCommand: (evseId: string, command: string, arg?: any) => void}} hooks
 */
export class CardBoard {
  constructor(root, hooks) {
    this.root = root;
    this.hooks = hooks;
    this.cards = new Map(); // evse id -> {card, parts}
    this.groups = new Map(); // station id -> {section, parts}
  }

  /** Build every station group and card from the fleet (after a full load). */
  build(fleet) {
    const wanted = [...fleet.stations.values()].map((s) => s.id).join("|");
    const have = [...this.groups.keys()].join("|");
    const haveEvses = [...this.cards.keys()].sort().join("|");
    const wantEvses = [...fleet.evses.keys()].sort().join("|");
    if (wanted !== have || haveEvses !== wantEvses) {
      this.root.replaceChildren();
      this.cards.clear();
      this.groups.clear();
      const stations = [...fleet.stations.values()].sort((a, b) =>
        a.id.localeCompare(b.id, undefined, { numeric: true }),
      );
      for (const st of stations) this.root.append(this._group(st, fleet));
    }
    for (const st of fleet.stations.values()) this.updateStation(fleet, st.id);
    for (const e of fleet.evses.values()) this.updateCard(e, fleet.station(e.station_id));
  }

  _group(st, fleet) {
    const title = el("h3", { class: "station__name", id: `station-title-${st.id}`, text: st.name });
    const online = el("span", { class: "badge station__online" });
    const free = el("span", { class: "station__free" });
    const where = el("span", {
      class: "station__where muted",
      text: `${st.id} · ${Number(st.lat).toFixed(4)}, ${Number(st.lon).toFixed(4)}`,
    });
    const grid = el("div", { class: "evse-grid" });
    const section = el(
      "section",
      {
        class: "station",
        id: `station-${st.id}`,
        "data-testid": "station",
        "data-station-id": st.id,
        "aria-labelledby": title.id,
        tabindex: "-1",
      },
      el("header", { class: "station__head" },
        el("div", { class: "station__title" }, title, where),
        el("div", { class: "station__badges" }, free, online)),
      grid,
    );
    for (const e of fleet.evsesOf(st.id)) grid.append(this._card(e));
    this.groups.set(st.id, { section, parts: { online, free, title } });
    return section;
  }

  _card(e) {
    const id = e.id;
    const titleId = `evse-title-${id}`;
    const status = el("span", { class: "status-pill", "data-testid": "status" });
    const socFill = el("span", { class: "soc__fill" });
    const socBar = el("div", {
      class: "soc__bar", role: "progressbar", "aria-label": `State of charge of ${id}`,
      "aria-valuemin": "0", "aria-valuemax": "100",
    }, socFill);
    const soc = el("span", { class: "soc__value", "data-testid": "soc" });
    const [mPower, power] = metric("Power", "power", "num");
    const [mEnergy, energy] = metric("Energy", "energy", "num");
    const [mSession, session] = metric("Session", "session", "mono");
    const [mAge, age] = metric("Reported", "age", "num");

    const toggle = el("input", {
      type: "checkbox", role: "switch", class: "switch__input", id: `maint-${id}`,
      "data-testid": "maintenance-toggle",
    });
    const switchLabel = el("label", { class: "switch", for: toggle.id },
      toggle,
      el("span", { class: "switch__track", "aria-hidden": "true" }),
      el("span", { class: "switch__text", text: "Maintenance" }));
    const pending = el("span", {
      class: "badge badge--pending", "data-testid": "maintenance-pending", hidden: true,
      title: "Maintenance starts when the running session ends",
      text: "Pending",
    });
    const hold = el("span", {
      class: "badge badge--hold", "data-testid": "reservation", hidden: true,
      title: "A driver holds this EVSE (the CSMS's reservation count)",
    });
    toggle.addEventListener("change", () => {
      this.hooks.onCommand(id, "maintenance", toggle.checked);
    });

    const button = (command, label) => {
      const b = el("button", {
        type: "button", class: `btn btn-small btn--${command}`, "data-testid": command,
        "aria-label": `${label} ${id}`, text: label,
      });
      b.addEventListener("click", () => this.hooks.onCommand(id, command));
      return b;
    };
    const start = button("start", "Start");
    const stop = button("stop", "Stop");
    const info = button("info", "Info");
    const answer = el("output", {
      class: "answer", "data-testid": "answer", "aria-live": "polite", for: "",
    });

    const card = el(
      "article",
      {
        class: "evse-card", "data-testid": "evse-card", "data-evse-id": id,
        "aria-labelledby": titleId,
      },
      el("header", { class: "evse-card__head" },
        el("h4", { class: "evse-card__title", id: titleId },
          el("span", { class: "evse-card__id", text: id }),
          el("span", { class: "evse-card__meta muted", text: connectorText(e) })),
        status),
      el("div", { class: "soc" }, socBar, soc),
      el("dl", { class: "metrics" }, mPower, mEnergy, mSession, mAge),
      el("div", { class: "evse-card__maint" }, switchLabel, pending, hold),
      el("div", { class: "evse-card__actions" }, start, stop, info),
      answer,
    );
    this.cards.set(id, {
      card,
      parts: { status, soc, socBar, socFill, power, energy, session, age, toggle, pending, hold,
        start, stop, info, answer },
    });
    return card;
  }

  updateStation(fleet, stationId) {
    const g = this.groups.get(stationId);
    const st = fleet.station(stationId);
    if (!g || !st) return;
    const evses = fleet.evsesOf(stationId);
    const free = fleet.freeCount(stationId);
    g.section.dataset.online = String(st.online !== false);
    g.parts.online.textContent = st.online === false ? "Offline" : "Online";
    g.parts.online.className = `badge station__online ${st.online === false ? "is-off" : "is-on"}`;
    g.parts.free.textContent = `${free} / ${evses.length} free`;
    g.parts.free.dataset.free = free === 0 ? "none" : free === evses.length ? "all" : "some";
  }

  updateCard(e, station) {
    const c = this.cards.get(e.id);
    if (!c) return;
    const p = c.parts;
    const status = e.status;
    c.card.dataset.status = status;
    c.card.classList.toggle("is-free", isFree(e, station));
    p.status.textContent = statusWord(status);
    p.status.dataset.status = status;
    const soc = e.soc;
    p.soc.textContent = fmtSoc(soc);
    p.socFill.style.width = soc == null ? "0%" : `${Math.max(0, Math.min(100, soc))}%`;
    if (soc == null) {
      p.socBar.removeAttribute("aria-valuenow");
      p.socBar.setAttribute("aria-valuetext", "no vehicle");
    } else {
      p.socBar.setAttribute("aria-valuenow", String(Math.round(soc)));
      p.socBar.setAttribute("aria-valuetext", `${Math.round(soc)} percent`);
    }
    p.power.textContent = fmtKw(e.power_w);
    const sess = e.session;
    if (sess) {
      p.energy.textContent = fmtKwh(sess.energy_wh, 1);
      p.energy.title = `This session; meter total ${fmtKwh(e.energy_wh)}`;
      p.session.textContent = shortId(sess.id) + (sess.open ? "" : " · ended");
      p.session.title = sess.id + (sess.stop_reason ? ` (stopped: ${sess.stop_reason})` : "");
    } else {
      p.energy.textContent = fmtKwh(e.energy_wh, 1);
      p.energy.title = "Meter total";
      p.session.textContent = "—";
      p.session.title = "";
    }
    const wantOn = Boolean(e.maintenance || e.maintenance_pending);
    if (!p.toggle.disabled) p.toggle.checked = wantOn;
    p.toggle.setAttribute("aria-checked", String(p.toggle.checked));
    p.pending.hidden = !e.maintenance_pending;
    c.card.classList.toggle("is-pending", Boolean(e.maintenance_pending));
    const running = Boolean(sess && sess.open);
    p.stop.disabled = !running;
    p.start.disabled = running || !["Available", "Preparing", "Reserved"].includes(e.status);
    this.tickCard(e);
  }

  tickCard(e, now = Date.now()) {
    const c = this.cards.get(e.id);
    if (!c) return;
    const left = holdLeft(e, now);
    c.parts.hold.hidden = left === 0;
    c.parts.hold.textContent = left ? `Held · ${fmtCountdown(left)}` : "";
    const ageS = Math.max(0, (now - e.reportedAt) / 1000);
    c.parts.age.textContent = fmtAge(ageS);
    // a running session reports every few seconds; an idle EVSE only when something changes
    const running = Boolean(e.session && e.session.open);
    c.parts.age.classList.toggle("is-stale", running && ageS > STALE_AFTER_S);
  }

  tickAll(fleet) {
    const now = Date.now();
    for (const e of fleet.evses.values()) this.tickCard(e, now);
  }

  /** Show a command's answer on its card. `kind`: "ok" | "error" | "busy". */
  answer(evseId, text, kind = "ok") {
    const c = this.cards.get(evseId);
    if (!c) return;
    c.parts.answer.textContent = text;
    c.parts.answer.dataset.kind = kind;
    c.parts.answer.title = text;
  }

  busy(evseId, command, on) {
    const c = this.cards.get(evseId);
    if (!c) return;
    const control = command === "maintenance" ? c.parts.toggle : c.parts[command];
    if (control) control.disabled = on;
    c.card.classList.toggle("is-busy", on);
  }

  card(evseId) {
    return this.cards.get(evseId)?.card ?? null;
  }

  /** Scroll to a station group and flash it (from the map). */
  highlight(stationId) {
    const g = this.groups.get(stationId);
    if (!g) return;
    for (const other of this.groups.values()) other.section.classList.remove("is-highlighted");
    g.section.hidden = false;
    g.section.classList.add("is-highlighted");
    g.section.scrollIntoView({ behavior: "smooth", block: "start" });
    g.section.focus({ preventScroll: true });
    clearTimeout(this._hl);
    this._hl = setTimeout(() => g.section.classList.remove("is-highlighted"), 6000);
  }

  /** Text filter on station id/name and EVSE ids. */
  filter(fleet, text) {
    const q = text.trim().toLowerCase();
    for (const [sid, g] of this.groups) {
      const st = fleet.station(sid);
      const hay = [sid, st?.name || "", ...(st?.evseIds || [])].join(" ").toLowerCase();
      g.section.hidden = q !== "" && !hay.includes(q);
    }
  }
}

function connectorText(e) {
  const parts = [];
  if (e.connector) parts.push(e.connector);
  if (e.max_power_w) parts.push(`${Math.round(e.max_power_w / 1000)} kW`);
  return parts.join(" · ");
}
