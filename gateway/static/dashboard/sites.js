// Sites (/dashboard/sites): each smart-charging site's limit in force (and its schedule), what
// the CSMS node allocated and measured, a chart of the three over the last 15 minutes, each
// EVSE's limit (paused ones marked), and a form to change the limit. Polls GET /api/v1/sites
// every few seconds; a new limit shows as "in force" once the node's site actor applied it.

import { $, bootPage, el, labelCells, reasonOf, say } from "./ops.js";
import { SERIES, SiteChart } from "./sitechart.js";

const POLL_MS = 3000;
const MAX_LIMIT_KW = 100_000;
const TABLE_ROWS = 30;
const WAIT_NOTE_MS = 30_000;

let api = null;
let timer = null;
let seq = 0;
const cards = new Map(); // site id -> SiteCard

const kw = (n) => (n === null || n === undefined ? "—" : `${Number(n).toFixed(1)} kW`);
const clock = (ms) => new Date(ms).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });

/** The limit in force now for a site's base limit and schedule (the node's rule: the last
 * step started today in the site's time zone, else yesterday's last step). */
export function expectedLimit(limitKw, schedule, timezone, now = new Date()) {
  if (!schedule || !schedule.length) return limitKw;
  let minute;
  try {
    const parts = new Intl.DateTimeFormat("en-GB", {
      timeZone: timezone || "UTC", hour: "2-digit", minute: "2-digit", hourCycle: "h23",
    }).formatToParts(now);
    const part = (type) => Number(parts.find((p) => p.type === type).value);
    minute = part("hour") * 60 + part("minute");
  } catch {
    return null;
  }
  const steps = schedule
    .map((s) => ({ start: Number(s.from.slice(0, 2)) * 60 + Number(s.from.slice(3, 5)), kw: s.limit_kw }))
    .sort((a, b) => a.start - b.start);
  let current = steps[steps.length - 1];
  for (const step of steps) if (step.start <= minute) current = step;
  return current.kw;
}

function scheduleText(site) {
  if (!site.schedule.length) return `Limit ${kw(site.limit_kw)}, no schedule.`;
  const steps = site.schedule.map((s) => `from ${s.from} ${kw(s.limit_kw)}`).join(" · ");
  return `Schedule (${site.timezone}): ${steps}. Without a schedule: ${kw(site.limit_kw)}.`;
}

/** A number of kW from a text field: the number, or an error message. */
function parseKw(text, what) {
  const value = text.trim().replace(",", ".");
  if (!value) return { error: `Enter ${what} in kW.` };
  if (!/^\d+(\.\d+)?$/.test(value)) return { error: `${what[0].toUpperCase()}${what.slice(1)} must be a number of kW, such as 50 or 22.5.` };
  return { value: Number(value) };
}

class SiteCard {
  constructor(site) {
    this.id = site.id;
    this.prefix = `site-${(seq += 1)}`;
    const root = $("site-template").content.firstElementChild.cloneNode(true);
    this.root = root;
    root.dataset.site = site.id;
    const q = (cls) => root.querySelector(`.${cls}`);
    this.q = q;
    const title = q("site-name");
    title.id = `${this.prefix}-title`;
    root.setAttribute("aria-labelledby", title.id);

    const caption = q("site-chart-title");
    caption.id = `${this.prefix}-chart`;
    this.svg = q("site-svg");
    this.svg.setAttribute("aria-labelledby", caption.id);
    this.svg.setAttribute("aria-describedby", `${this.prefix}-chart-now`);
    const now = el("p", { id: `${this.prefix}-chart-now`, class: "visually-hidden" });
    this.svg.after(now);
    this.chartNow = now;
    this.chart = new SiteChart(this.svg);
    root.querySelectorAll(".ops-table-wrap")[0].setAttribute("aria-label", `Readings of ${site.name}`);
    q("site-evses-title").id = `${this.prefix}-evses`;
    root.querySelectorAll(".ops-table-wrap")[1].setAttribute("aria-labelledby", `${this.prefix}-evses`);

    const input = q("limit-input");
    input.id = `${this.prefix}-limit`;
    q("limit-label").setAttribute("for", input.id);
    q("limit-error").id = `${this.prefix}-error`;
    this.form = q("site-form");
    this.form.setAttribute("aria-label", `Change the limit of ${site.name}`);
    this.steps = q("step-list");
    this.stepCount = 0;
    q("add-step").addEventListener("click", () => {
      this.dirty = true;
      const row = this.addStep({ from: "", limit_kw: "" });
      row.querySelector("input").focus();
    });
    this.dirty = false; // the operator edited the form: polls leave it alone
    this.form.addEventListener("input", () => {
      this.dirty = true;
    });
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    this.pending = null;
    this.fillForm(site);
  }

  addStep(step) {
    const n = (this.stepCount += 1);
    const fromId = `${this.prefix}-step${n}-from`;
    const kwId = `${this.prefix}-step${n}-kw`;
    const row = el(
      "li",
      { class: "step-row", "data-testid": "step" },
      el("span", { class: "field" },
        el("label", { for: fromId, text: "Starts at" }),
        el("input", { id: fromId, name: "from", type: "time", value: step.from, required: true })),
      el("span", { class: "field" },
        el("label", { for: kwId, text: "Limit from then (kW)" }),
        el("input", { id: kwId, name: "step_kw", type: "text", inputmode: "decimal", size: 8, value: step.limit_kw, autocomplete: "off" })),
    );
    const remove = el("button", { type: "button", class: "btn btn-small btn-ghost", text: "Remove" });
    remove.setAttribute("aria-label", `Remove the step ${step.from || n}`);
    remove.addEventListener("click", () => {
      this.dirty = true;
      row.remove();
      this.q("add-step").focus();
    });
    row.append(remove);
    this.steps.append(row);
    return row;
  }

  fillForm(site) {
    this.filled = JSON.stringify([site.limit_kw, site.schedule]);
    this.dirty = false;
    this.q("limit-input").value = String(site.limit_kw);
    this.steps.replaceChildren();
    for (const step of site.schedule) this.addStep(step);
  }

  /** The form's body, or null after showing what is wrong. */
  readForm() {
    const input = this.q("limit-input");
    const fields = [input, ...this.steps.querySelectorAll("input")];
    for (const f of fields) f.removeAttribute("aria-invalid");
    const fail = (field, message) => {
      field.setAttribute("aria-invalid", "true");
      field.setAttribute("aria-describedby", `${this.prefix}-error`);
      this.showError(message);
      field.focus();
      return null;
    };
    const limit = parseKw(input.value, "the limit");
    if (limit.error) return fail(input, limit.error);
    const schedule = [];
    for (const row of this.steps.querySelectorAll(".step-row")) {
      const [from, stepKw] = row.querySelectorAll("input");
      if (!/^([01]\d|2[0-3]):[0-5]\d$/.test(from.value)) return fail(from, "Give each step a start time (HH:MM).");
      const value = parseKw(stepKw.value, `the limit from ${from.value}`);
      if (value.error) return fail(stepKw, value.error);
      schedule.push({ from: from.value, limit_kw: value.value });
    }
    return { limit_kw: limit.value, schedule };
  }

  showError(message) {
    const error = this.q("limit-error");
    error.textContent = message;
  }

  async submit() {
    this.showError("");
    const body = this.readForm();
    if (!body) return;
    const button = this.q("site-form").querySelector("button[type=submit]");
    const status = this.q("limit-status");
    button.disabled = true;
    try {
      const site = await api.put(`/api/v1/sites/${encodeURIComponent(this.id)}/limit`, body);
      const expected = expectedLimit(site.limit_kw, site.schedule, site.timezone);
      this.pending = { expected, since: Date.now() };
      this.fillForm(site);
      say(status, `Saved. Waiting for the node to apply ${kw(expected)}…`);
      this.update(site);
      schedulePoll(500);
    } catch (error) {
      const input = this.q("limit-input");
      if (error && error.status === 422) {
        input.setAttribute("aria-invalid", "true");
        input.setAttribute("aria-describedby", `${this.prefix}-error`);
      }
      this.showError(`The limit was not changed: ${reasonOf(error)}`);
      say(status, "");
    } finally {
      button.disabled = false;
    }
  }

  update(site) {
    const q = this.q;
    const live = site.live;
    const changed = JSON.stringify([site.limit_kw, site.schedule]) !== this.filled;
    if (changed && !this.dirty && !this.pending && !this.form.contains(document.activeElement)) {
      this.fillForm(site); // changed elsewhere (another operator, smartcharge admin)
      say(q("limit-status"), "");
    }
    q("site-name").textContent = site.name;
    q("site-id").textContent = site.name === site.id ? "" : site.id;
    const state = q("site-state");
    q("site-schedule").textContent = scheduleText(site);
    if (!live) {
      state.textContent = "Waiting for the node";
      state.dataset.tone = "warn";
      for (const name of ["site-limit", "site-allocated", "site-measured", "site-active", "site-paused"]) q(name).textContent = "—";
    } else {
      const full = live.allocated_kw >= live.limit_kw - 0.05 && live.active_sessions > 0;
      state.textContent = live.paused.length ? "Pausing EVSEs in turn" : full ? "At its limit" : "Within its limit";
      state.dataset.tone = live.paused.length ? "warn" : "good";
      q("site-limit").textContent = kw(live.limit_kw);
      q("site-allocated").textContent = kw(live.allocated_kw);
      q("site-measured").textContent = kw(live.measured_kw);
      q("site-active").textContent = String(live.active_sessions);
      q("site-paused").textContent = live.paused.length ? `${live.paused.length}: ${live.paused.join(", ")}` : "None";
      for (const reading of live.history || []) this.chart.add(reading);
      if (Number.isFinite(live.at)) this.chart.add(live);
      this.updateEvses(site, live);
    }
    this.chart.draw();
    q("site-chart-title").textContent = `Power over the last ${this.chart.window().minutes} minutes (kW)`;
    this.updateReadings(site, live);
    this.updatePending(live);
  }

  updatePending(live) {
    if (!this.pending) return;
    const status = this.q("limit-status");
    const { expected, since } = this.pending;
    if (live && expected !== null && Math.abs(live.limit_kw - expected) < 0.05) {
      say(status, `In force: ${kw(live.limit_kw)} (applied by ${clock(live.at)}).`);
      this.pending = null;
    } else if (Date.now() - since > WAIT_NOTE_MS) {
      say(status, `Saved, but the node has not applied ${kw(expected)} yet: is the CSMS node running?`, "error");
    }
  }

  updateEvses(site, live) {
    const paused = new Set(live.paused);
    const ids = Object.keys(live.evse_limits_w).sort();
    const body = this.root.querySelector('[data-testid="evse-limits"] tbody');
    if (!ids.length) {
      body.replaceChildren(el("tr", {}, el("td", { colspan: 4, class: "ops-empty", text: "No EVSE charges at this site now." })));
      return;
    }
    body.replaceChildren(
      ...ids.map((id) => {
        const bounds = site.evse_limits[id];
        const isPaused = paused.has(id);
        return el(
          "tr",
          { "data-evse": id, "data-paused": isPaused ? "true" : "false" },
          el("td", { class: "mono" }, el("a", { href: `/dashboard/station?id=${encodeURIComponent(id.split(".")[0])}`, text: id })),
          el("td", { class: "num", text: (live.evse_limits_w[id] / 1000).toFixed(1) }),
          el("td", { class: "num", text: bounds ? `${bounds.min_kw.toFixed(1)}–${bounds.max_kw.toFixed(1)}` : "station's" }),
          el("td", {}, el("span", { class: "tag", "data-tone": isPaused ? "warn" : "good", text: isPaused ? "Paused" : "Charging" })),
        );
      }),
    );
    labelCells(body.closest("table"));
  }

  updateReadings(site, live) {
    const readings = this.chart.readings();
    const body = this.root.querySelector('[data-testid="site-readings"] tbody');
    const shown = readings.slice(-TABLE_ROWS).reverse();
    this.root.querySelector('[data-testid="site-readings"] caption').textContent =
      `${site.name}: the last ${shown.length} readings, newest first`;
    body.replaceChildren(
      ...shown.map((r) =>
        el("tr", {},
          el("td", { text: clock(r.at) }),
          ...SERIES.map((s) => el("td", { class: "num", text: r[s.key].toFixed(1) })))),
    );
    labelCells(body.closest("table"));
    this.chartNow.textContent = live
      ? `Now: limit ${kw(live.limit_kw)}, allocated ${kw(live.allocated_kw)}, measured ${kw(live.measured_kw)}; ${readings.length} readings, in the table below the chart.`
      : "No readings yet.";
  }

  remove() {
    this.chart.disconnect();
    this.root.remove();
  }
}

async function load() {
  const status = $("sites-status");
  try {
    const { sites } = await api.get("/api/v1/sites");
    const seen = new Set();
    for (const site of sites) {
      seen.add(site.id);
      let card = cards.get(site.id);
      if (!card) {
        card = new SiteCard(site);
        cards.set(site.id, card);
        $("sites").append(card.root);
      }
      card.update(site);
    }
    for (const [id, card] of cards) {
      if (!seen.has(id)) {
        card.remove();
        cards.delete(id);
      }
    }
    const empty = $("sites").querySelector(".site-empty");
    if (!sites.length && !empty) {
      $("sites").append(el("p", { class: "ops-panel site-empty", text: "No sites yet: create one with PUT /api/v1/sites/{id} or smartcharge admin site-set." }));
    } else if (sites.length && empty) {
      empty.remove();
    }
    say(status, `Updated ${clock(Date.now())}.`);
  } catch (error) {
    say(status, `Could not load the sites: ${reasonOf(error)}`, "error");
  }
}

function schedulePoll(delay = POLL_MS) {
  clearTimeout(timer);
  timer = setTimeout(async () => {
    if (!document.hidden && !$("page-view").hidden) await load();
    schedulePoll();
  }, delay);
}

bootPage(async (client) => {
  api = client;
  await load();
  schedulePoll();
});
