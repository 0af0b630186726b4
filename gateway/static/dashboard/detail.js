// The station detail panel: one station's EVSEs as cards with their controls (Start, Stop,
// Info, Maintenance), the commands' answers and the station's recent alerts. Opened on demand
// (a table row, a map marker, an alert), patched in place from the live feed.
//
// Honest state: an offline station's controls are disabled with the reason and the age of
// the last report; an answer expires after ANSWER_TTL_MS or when the EVSE's status moves.

import { holdLeft, isFree, isOffline } from "./store.js";
import { fmtAge, fmtCountdown, fmtKw, fmtKwh, fmtSoc, shortId, statusWord } from "./fmt.js";

const STALE_AFTER_S = 60;
export const ANSWER_TTL_MS = 30_000;
/** A command's own effect (e.g. Unavailable after maintenance) lands within this time. */
const ANSWER_SETTLE_MS = 5_000;

function expired(answer, status, now) {
  if (!answer || answer.kind === "busy") return false;
  const age = now - answer.at;
  return age > ANSWER_TTL_MS || (status !== answer.status && age > ANSWER_SETTLE_MS);
}
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
 * @param {{panel: HTMLElement, title: HTMLElement, where: HTMLElement, badges: HTMLElement,
 *          cards: HTMLElement, note: HTMLElement, alerts: HTMLElement, close: HTMLElement}} parts
 * @param {{onCommand: (evseId: string, command: string, arg?: any) => void,
 *          onClose: () => void}} hooks
 */
export class StationDetail {
  constructor(parts, hooks) {
    this.parts = parts;
    this.hooks = hooks;
    this.stationId = null;
    this.cards = new Map(); // evse id -> {card, parts}
    this.answers = new Map(); // evse id -> {text, kind, at, status}
    parts.close.addEventListener("click", () => this.hooks.onClose());
    parts.panel.addEventListener("keydown", (ev) => {
      if (ev.key === "Escape") this.hooks.onClose();
    });
  }

  get open() {
    return this.stationId !== null;
  }

  /** After a full reload: patch the open station in place (focus stays where it is). */
  refresh(fleet) {
    const st = fleet.station(this.stationId);
    if (!st) return false;
    const ids = fleet.evsesOf(st.id).map((e) => e.id);
    if (ids.length !== this.cards.size || !ids.every((id) => this.cards.has(id))) {
      this.show(fleet, st.id, null, { focus: false });
      return true;
    }
    this.updateStation(fleet);
    for (const e of fleet.evsesOf(st.id)) this.updateCard(e, st);
    return true;
  }

  /** Show one station (built afresh), focus its heading. */
  show(fleet, stationId, evseId = null, { focus = true } = {}) {
    const st = fleet.station(stationId);
    if (!st) return;
    this.stationId = stationId;
    this.cards.clear();
    this.parts.title.textContent = st.name;
    this.parts.where.textContent =
      `${st.id} · ${Number(st.lat).toFixed(4)}, ${Number(st.lon).toFixed(4)}`;
    this.parts.panel.dataset.stationId = stationId;
    if (this.parts.page) {
      this.parts.page.href = `/dashboard/station?id=${encodeURIComponent(stationId)}`;
      this.parts.page.setAttribute("aria-label", `Events of ${st.name} (its station page)`);
    }
    this.parts.cards.replaceChildren(...fleet.evsesOf(stationId).map((e) => this._card(e)));
    this.parts.panel.hidden = false;
    this.updateStation(fleet);
    for (const e of fleet.evsesOf(stationId)) this.updateCard(e, st);
    for (const [id, a] of this.answers) {
      const c = this.cards.get(id);
      if (c) Object.assign(c.parts.answer, { textContent: a.text, title: a.text }).dataset.kind = a.kind;
    }
    const card = evseId && this.cards.get(evseId);
    if (card) {
      card.card.classList.add("is-highlighted");
      setTimeout(() => card.card.classList.remove("is-highlighted"), 4000);
    }
    if (focus) this.parts.title.focus();
  }

  hide() {
    this.stationId = null;
    this.cards.clear();
    this.parts.panel.hidden = true;
    this.parts.cards.replaceChildren();
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
      "data-testid": "maintenance-toggle", "aria-describedby": this.parts.note.id,
    });
    const switchLabel = el("label", { class: "switch", for: toggle.id },
      toggle,
      el("span", { class: "switch__track", "aria-hidden": "true" }),
      el("span", { class: "switch__text" }, "Maintenance",
        el("span", { class: "visually-hidden", text: ` EVSE ${id}` })));
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
      b.setAttribute("aria-describedby", this.parts.note.id);
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

  /** The station's badges and, when it is offline, why its controls are disabled. */
  updateStation(fleet) {
    const st = fleet.station(this.stationId);
    if (!st) return;
    const evses = fleet.evsesOf(st.id);
    const free = fleet.freeCount(st.id);
    const offline = st.online === false || (evses.length > 0 && evses.every((e) => isOffline(e, st)));
    this.parts.panel.dataset.online = String(!offline);
    this.parts.badges.replaceChildren(
      el("span", { class: "station__free", "data-free": free === 0 ? "none" : free === evses.length ? "all" : "some",
        text: `${free} / ${evses.length} free` }),
      el("span", { class: `badge station__online ${offline ? "is-off" : "is-on"}`,
        "data-testid": "station-online", text: offline ? "Offline" : "Online" }),
    );
    this._note(fleet);
  }

  _note(fleet, now = Date.now()) {
    const st = fleet.station(this.stationId);
    const evses = fleet.evsesOf(this.stationId);
    const down = evses.filter((e) => isOffline(e, st));
    const note = this.parts.note;
    if (!down.length) {
      note.hidden = true;
      note.textContent = "";
      return;
    }
    const last = Math.max(...down.map((e) => e.reportedAt));
    const age = fmtAge(Math.max(0, (now - last) / 1000));
    const text = `${down.length === evses.length ? "The station is" : `${down.length} EVSE(s) are`} offline` +
      ` · last report ${age}. Start, Stop, Info and Maintenance are disabled until it reconnects.`;
    if (note.textContent !== text) note.textContent = text;
    note.hidden = false;
  }

  updateCard(e, station) {
    const c = this.cards.get(e.id);
    if (!c) return;
    const p = c.parts;
    const offline = isOffline(e, station);
    const status = offline ? "Offline" : e.status;
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
      p.session.title = (sess.id || "") + (sess.stop_reason ? ` (stopped: ${sess.stop_reason})` : "");
    } else {
      p.energy.textContent = fmtKwh(e.energy_wh, 1);
      p.energy.title = "Meter total";
      p.session.textContent = "—";
      p.session.title = "";
    }
    const busy = c.card.classList.contains("is-busy");
    const wantOn = Boolean(e.maintenance || e.maintenance_pending);
    if (!busy) p.toggle.checked = wantOn;
    p.toggle.setAttribute("aria-checked", String(p.toggle.checked));
    p.pending.hidden = !e.maintenance_pending;
    c.card.classList.toggle("is-pending", Boolean(e.maintenance_pending));
    c.card.classList.toggle("is-offline", offline);
    if (!busy) {
      const running = Boolean(sess && sess.open);
      p.stop.disabled = offline || !running;
      p.start.disabled = offline || running || !["Available", "Preparing", "Reserved"].includes(e.status);
      p.info.disabled = offline;
      p.toggle.disabled = offline;
    }
    this.tickCard(e, station);
  }

  tickCard(e, station, now = Date.now()) {
    const c = this.cards.get(e.id);
    if (!c) return;
    const left = holdLeft(e, now);
    c.parts.hold.hidden = left === 0;
    c.parts.hold.textContent = left ? `Held · ${fmtCountdown(left)}` : "";
    const ageS = Math.max(0, (now - e.reportedAt) / 1000);
    const offline = isOffline(e, station);
    c.parts.age.textContent = offline ? `last report ${fmtAge(ageS)}` : fmtAge(ageS); // pill: Offline
    // a running session reports every few seconds; an idle EVSE only when something changes
    const running = Boolean(e.session && e.session.open);
    c.parts.age.classList.toggle("is-stale", offline || (running && ageS > STALE_AFTER_S));
    // an answer belongs to the state it answered: it expires, or a later status retires it
    const answer = this.answers.get(e.id);
    if (answer && !answer.status) answer.status = offline ? "Offline" : e.status;
    if (expired(answer, offline ? "Offline" : e.status, now)) this._clearAnswer(e.id);
  }

  /** Once a second: ages, countdowns, expired answers, the offline note. */
  tick(fleet) {
    if (!this.open) return;
    const now = Date.now();
    const st = fleet.station(this.stationId);
    for (const e of fleet.evsesOf(this.stationId)) this.tickCard(e, st, now);
    this._note(fleet, now);
  }

  /** Show a command's answer on its card. `kind`: "ok" | "error" | "busy". */
  answer(evseId, text, kind) {
    this.answers.set(evseId, { text, kind, status: null, at: Date.now() });
    const c = this.cards.get(evseId);
    if (!c) return;
    c.parts.answer.textContent = text;
    c.parts.answer.dataset.kind = kind;
    c.parts.answer.title = text;
    c.parts.answer.dataset.at = String(Date.now());
  }

  _clearAnswer(evseId) {
    this.answers.delete(evseId);
    const c = this.cards.get(evseId);
    if (!c) return;
    c.parts.answer.textContent = "";
    delete c.parts.answer.dataset.kind;
    c.parts.answer.title = "";
  }

  busy(evseId, command, on) {
    const c = this.cards.get(evseId);
    if (!c) return;
    const control = command === "maintenance" ? c.parts.toggle : c.parts[command];
    if (control) control.disabled = on;
    c.card.classList.toggle("is-busy", on);
  }

  /** The station's recent alerts (newest first), as the alerts panel knows them. */
  showAlerts(alerts, render) {
    const list = this.parts.alerts;
    if (!alerts.length) {
      list.replaceChildren(el("li", { class: "muted", text: "No recent alerts for this station." }));
      return;
    }
    list.replaceChildren(...alerts.map(render));
  }
}

function connectorText(e) {
  const parts = [];
  if (e.connector) parts.push(e.connector);
  if (e.max_power_w) parts.push(`${Math.round(e.max_power_w / 1000)} kW`);
  return parts.join(" · ");
}
