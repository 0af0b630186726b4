/**
 * The Nearby tab: where the driver is, the nearest EVSEs as a list and a map, and the
 * reservation countdown (with its interruption shown in place, without a reload).
 */

import {
  formatCountdown,
  formatDistance,
  formatKw,
} from "/static/shared/format.js";
import { statusLabel } from "/static/shared/format.js";
import { createNearbyMap } from "./nearbymap.js";
import { busy, byId, h, setError, setPlace, toast } from "./ui.js";

const RESERVATION_KEY = "smartcharge.driver.reservation";
const POSITION_KEY = "smartcharge.driver.position";
const REFRESH_MS = 10_000;
const RESULT_LIMIT = 12;

function load(key) {
  try {
    return JSON.parse(window.localStorage.getItem(key) || "null");
  } catch {
    return null;
  }
}

function save(key, value) {
  try {
    if (value === null) window.localStorage.removeItem(key);
    else window.localStorage.setItem(key, JSON.stringify(value));
  } catch {
    /* storage unavailable: nothing survives a reload */
  }
}

/**
 * @param {{api: any, startCharging: (evseId: string, label: string) => Promise<boolean>,
 *          isVisible: () => boolean}} ctx
 */
export function createNearby(ctx) {
  const { api } = ctx;
  const form = byId("search-form");
  const lat = byId("lat");
  const lon = byId("lon");
  const list = byId("evse-list");
  const empty = byId("evse-empty");
  const count = byId("result-count");
  const searchError = byId("search-error");
  const map = createNearbyMap(byId("map"), {
    api,
    reserve: (evse, label) => reserveEvse(evse, label),
    details: (point) => showStation(point),
  });
  const card = byId("reservation");
  const countdown = byId("countdown");
  const status = byId("reservation-status");
  const announce = byId("countdown-announce");
  const target = byId("target-soc");
  const targetValue = byId("target-soc-value");

  let position = null;
  let results = [];
  let selectedStation = null;
  let reservation = null; // {id, evse_id, label, deadline, state}
  let ticker = null;
  let poller = null;
  let lastMinute = null;

  // -- search -------------------------------------------------------------------------------

  async function search({ quiet = false } = {}) {
    if (!position) return;
    try {
      const body = await api.publicGet("/evses/nearest", {
        lat: position.lat,
        lon: position.lon,
        limit: RESULT_LIMIT,
      });
      results = body.evses || [];
      setError(searchError, "");
      render();
      map.refresh();
    } catch (error) {
      if (!quiet) setError(searchError, error.reason || String(error));
    }
  }

  function searchAt(latValue, lonValue) {
    position = { lat: latValue, lon: lonValue };
    lat.value = String(Math.round(latValue * 1e5) / 1e5);
    lon.value = String(Math.round(lonValue * 1e5) / 1e5);
    save(POSITION_KEY, position);
    return search();
  }

  function useLocation(button) {
    if (!("geolocation" in navigator)) {
      setError(searchError, "This browser cannot share its location; type coordinates instead.");
      return Promise.resolve();
    }
    return busy(
      button,
      () =>
        new Promise((resolve) => {
          navigator.geolocation.getCurrentPosition(
            (found) => resolve(searchAt(found.coords.latitude, found.coords.longitude)),
            (error) => {
              const why = error.code === error.PERMISSION_DENIED
                ? "Location access is off for this site; type coordinates instead."
                : "Your location could not be found; type coordinates instead.";
              setError(searchError, why);
              resolve();
            },
            { enableHighAccuracy: false, timeout: 10_000, maximumAge: 60_000 },
          );
        }),
    );
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const la = Number.parseFloat(lat.value);
    const lo = Number.parseFloat(lon.value);
    if (!Number.isFinite(la) || la < -90 || la > 90 || !Number.isFinite(lo) || lo < -180 || lo > 180) {
      setError(searchError, "Enter a latitude (-90 to 90) and a longitude (-180 to 180).");
      return;
    }
    busy(byId("search"), () => searchAt(la, lo));
  });
  const locate = byId("use-location");
  locate.addEventListener("click", () => useLocation(locate));
  target.addEventListener("input", () => {
    targetValue.textContent = `${target.value} %`;
  });

  // -- rendering ----------------------------------------------------------------------------

  function mine(evse) {
    return reservation !== null && reservation.state === "active" && reservation.evse_id === evse.id;
  }

  function item(evse) {
    const reservedByMe = mine(evse);
    const canReserve = evse.status === "Available";
    const canStart = evse.status === "Available" || evse.status === "Preparing" || reservedByMe;
    const label = `${evse.station_name} · ${evse.id}`;
    const reserve = h(
      "button",
      {
        type: "button",
        class: "btn btn-small",
        "data-testid": "reserve",
        "aria-label": `Reserve ${evse.id}`,
        disabled: !canReserve,
      },
      "Reserve",
    );
    const start = h(
      "button",
      {
        type: "button",
        class: "btn btn-small btn-primary",
        "data-testid": "start",
        "aria-label": `Start charging at ${evse.id}`,
        disabled: !canStart,
      },
      "Start",
    );
    reserve.addEventListener("click", () => busy(reserve, () => reserveEvse(evse, label)));
    start.addEventListener("click", () => busy(start, () => ctx.startCharging(evse.id, label)));
    const shownStatus = reservedByMe ? "Reserved" : evse.status;
    return h(
      "li",
      {
        class: `evse-item${evse.station_id === selectedStation ? " is-selected" : ""}`,
        "data-testid": "evse-item",
        "data-evse-id": evse.id,
        "data-station-id": evse.station_id,
        "data-status": evse.status,
      },
      h(
        "div",
        { class: "evse-main" },
        h("span", { class: "evse-bar", "aria-hidden": "true", "data-status": evse.status }),
        h(
          "div",
          { class: "evse-text" },
          h("h3", { class: "evse-station" }, evse.station_name),
          h(
            "p",
            { class: "evse-meta" },
            h("span", {}, evse.id),
            h("span", { "aria-hidden": "true" }, "·"),
            h("span", {}, evse.connector || "Type2"),
          ),
          h("p", { class: "evse-power" }, `Up to ${formatKw(evse.max_power_w, 0)}`),
        ),
        h(
          "div",
          { class: "evse-side" },
          h("span", { class: "evse-distance" }, formatDistance(evse.distance_km)),
          h(
            "span",
            { class: "badge", "data-status": shownStatus },
            reservedByMe ? "Reserved for you" : statusLabel(shownStatus),
          ),
        ),
      ),
      h("div", { class: "evse-actions" }, reserve, start),
    );
  }

  function select(point) {
    selectedStation = point.id;
    render();
    const first = list.querySelector(`[data-station-id="${CSS.escape(point.id)}"]`);
    if (first) {
      first.scrollIntoView({ behavior: "smooth", block: "center" });
      const button = first.querySelector("button:not([disabled])");
      if (button) button.focus({ preventScroll: true });
    }
  }

  /** A map pin's Details: that station's chargers in the list (searched there if needed). */
  async function showStation(point) {
    if (!results.some((e) => e.station_id === point.id)) await searchAt(point.lat, point.lon);
    select(point);
  }

  function render() {
    list.replaceChildren(...results.map(item));
    empty.hidden = results.length > 0;
    if (position && !results.length) empty.textContent = "No chargers found near here.";
    const free = results.filter((e) => e.status === "Available").length;
    count.textContent = results.length ? `${free} of ${results.length} free` : "";
    map.show(position, selectedStation);
  }

  // -- reservation --------------------------------------------------------------------------

  async function reserveEvse(evse, label) {
    try {
      const body = await api.post(`/evses/${encodeURIComponent(evse.id)}/reservation`, {});
      showReservation({
        id: body.id,
        evse_id: evse.id,
        label,
        expires_at: body.expires_at,
        remaining_s: body.remaining_s,
      });
      toast(`${evse.id} is held for you for 15 minutes.`, { tone: "success", title: "Reserved" });
      revealReservation();
      search({ quiet: true });
    } catch (error) {
      toast(error.reason || String(error), { tone: "danger", title: "Could not reserve" });
    }
  }

  /** `expires_at` is the server's clock; `remaining_s` corrects for a skewed phone clock. */
  function showReservation({ id, evse_id, label, expires_at, remaining_s }) {
    const serverNow = expires_at - remaining_s * 1000;
    const deadline = expires_at + (Date.now() - serverNow);
    reservation = { id, evse_id, label, deadline, state: "active" };
    save(RESERVATION_KEY, { id, evse_id, label });
    setPlace(byId("reservation-evse"), label);
    card.hidden = false;
    card.dataset.state = "active";
    countdown.hidden = false;
    countdown.parentElement.hidden = false;
    setStatus("Held for you. Start charging before the time runs out.");
    byId("cancel-reservation").hidden = false;
    byId("reservation-start").hidden = false;
    byId("reservation-dismiss").hidden = true;
    lastMinute = null;
    clearInterval(ticker);
    tick();
    ticker = setInterval(tick, 250);
    render();
  }

  /** The new card is above the list: scroll to it and move focus there (not lost with the
   * list's re-render). */
  function revealReservation() {
    card.setAttribute("tabindex", "-1");
    card.scrollIntoView({ block: "start" });
    card.focus({ preventScroll: true });
  }

  function setStatus(text) {
    status.textContent = text;
  }

  function tick() {
    if (!reservation || reservation.state !== "active") return;
    const left = reservation.deadline - Date.now();
    const text = formatCountdown(left);
    if (countdown.textContent !== text) countdown.textContent = text;
    const minute = Math.ceil(left / 60_000);
    if (minute !== lastMinute) {
      if (lastMinute !== null && minute > 0) {
        announce.textContent = `${minute} minute${minute === 1 ? "" : "s"} left on your reservation`;
      }
      lastMinute = minute;
    }
    if (left <= 0) end("expired", "Your reservation has expired.");
  }

  /** The reservation is over: say why, in place, until dismissed. */
  function end(state, message) {
    if (!reservation) return;
    reservation.state = state;
    clearInterval(ticker);
    ticker = null;
    save(RESERVATION_KEY, null);
    card.dataset.state = state;
    if (state !== "expired") countdown.parentElement.hidden = true;
    else countdown.textContent = "00:00";
    setStatus(message);
    byId("cancel-reservation").hidden = true;
    byId("reservation-start").hidden = true;
    byId("reservation-dismiss").hidden = false;
    render();
  }

  function clearReservation() {
    clearInterval(ticker);
    ticker = null;
    reservation = null;
    save(RESERVATION_KEY, null);
    card.hidden = true;
    render();
  }

  byId("cancel-reservation").addEventListener("click", (event) =>
    busy(event.currentTarget, async () => {
      if (!reservation) return;
      try {
        await api.del(`/evses/${encodeURIComponent(reservation.evse_id)}/reservation`);
        end("cancelled", "Reservation cancelled. The charger is free for others again.");
        toast("Your reservation was cancelled.", { title: "Cancelled" });
        search({ quiet: true });
      } catch (error) {
        toast(error.reason || String(error), { tone: "danger", title: "Could not cancel" });
      }
    }),
  );
  byId("reservation-dismiss").addEventListener("click", clearReservation);
  byId("reservation-start").addEventListener("click", (event) =>
    busy(event.currentTarget, async () => {
      if (reservation) await ctx.startCharging(reservation.evse_id, reservation.label);
    }),
  );

  async function restoreReservation() {
    const saved = load(RESERVATION_KEY);
    if (!saved || !saved.evse_id) return;
    try {
      // with the token: the reservation's id is shown to its holder only
      const evse = await api.get(`/evses/${encodeURIComponent(saved.evse_id)}`);
      if (evse.reservation && evse.reservation.id === saved.id) {
        showReservation({ ...saved, ...evse.reservation });
        return;
      }
    } catch {
      /* fall through: forget it */
    }
    save(RESERVATION_KEY, null);
  }

  // -- polling ------------------------------------------------------------------------------

  function startPolling() {
    clearInterval(poller);
    poller = setInterval(() => {
      if (ctx.isVisible() && document.visibilityState === "visible") search({ quiet: true });
    }, REFRESH_MS);
  }

  async function autoLocate() {
    const saved = load(POSITION_KEY);
    if (saved && Number.isFinite(saved.lat)) {
      searchAt(saved.lat, saved.lon);
    }
    try {
      if (navigator.permissions && "geolocation" in navigator) {
        const state = await navigator.permissions.query({ name: "geolocation" });
        if (state.state === "granted") await useLocation(locate);
      }
    } catch {
      /* the Permissions API is optional */
    }
  }

  render();

  return {
    /** After sign-in: restore the reservation, find where we are, keep the list fresh. */
    async activate() {
      await restoreReservation();
      autoLocate();
      startPolling();
    },
    deactivate() {
      clearInterval(poller);
      clearInterval(ticker);
      reservation = null;
      card.hidden = true;
      save(RESERVATION_KEY, null);
    },
    refresh: () => search({ quiet: true }),
    targetSoc: () => Number(target.value),
    /** A notification arrived: an interrupted or expired reservation is shown in place. */
    onNotification(note) {
      const data = note.data || {};
      if (!reservation || reservation.state !== "active") return;
      const ours = data.reservation_id ? data.reservation_id === reservation.id
        : data.evse_id === reservation.evse_id;
      if (!ours) return;
      if (note.kind === "reservation_interrupted") {
        end("interrupted", `Reservation interrupted: ${data.reason || note.message}`);
      } else if (note.kind === "reservation_expired") {
        end("expired", "Your reservation has expired.");
      }
    },
    /** Charging started on `evseId`: a reservation there has been used. */
    charged(evseId) {
      if (reservation && reservation.evse_id === evseId) clearReservation();
      search({ quiet: true });
    },
  };
}
