/**
 * The Charging tab: start and stop, and the live view of the driver's session fed by the
 * `session` events of /api/v1/me/events (SoC, energy, power, elapsed time, progress bar).
 */

import {
  formatDuration,
  formatKw,
  formatKwh,
  formatPercent,
  notificationText,
  statusLabel,
} from "/static/shared/format.js";
import { busy, byId, setPlace, toast } from "./ui.js";

/**
 * @param {{api: any, targetSoc: () => number, goto: (tab: string) => void,
 *          onStarted: (evseId: string) => void, onEnded: () => void}} ctx
 */
export function createCharging(ctx) {
  const { api } = ctx;
  const view = byId("charging");
  const emptyCard = byId("charging-empty");
  const stopButton = byId("stop");
  const dot = byId("charging-dot");
  let session = null; // {session_id, evse_id, label, started_at, soc, energy_wh, power_w, status, open, target_soc, stopping}
  let clock = null;
  let connected = true; // the live stream is up: figures are live and the clock runs
  let pausedAt = null; // when the stream went down: the elapsed time stops there
  const OFFLINE_NOTE = "Live figures are paused while the app reconnects. Charging continues; to stop now, use the charger.";

  function setText(id, text) {
    const node = byId(id);
    if (node.textContent !== text) node.textContent = text;
  }

  function render() {
    view.hidden = !session;
    emptyCard.hidden = Boolean(session);
    dot.hidden = !(session && session.open);
    if (!session) return;
    const soc = session.soc;
    setPlace(byId("charging-evse"), session.label || session.evse_id);
    const live = session.status || "Charging";
    let status = session.open ? statusLabel(live) : "Finished";
    if (session.open && session.stopping) status = "Stopping";
    const badge = byId("charging-status");
    badge.dataset.status = session.open && !session.stopping ? live : "Finishing";
    setText("charging-status", status);
    setText("soc", soc === null || soc === undefined ? "–" : formatPercent(soc));
    setText("kwh", formatKwh(session.energy_wh));
    setText("kw", formatKw(session.open ? session.power_w : 0));
    const until = session.ended_at || (connected ? Date.now() : pausedAt || Date.now());
    setText("elapsed", formatDuration((until - session.started_at) / 1000));
    const bar = byId("soc-bar");
    const value = Math.max(0, Math.min(100, Number(soc) || 0));
    bar.setAttribute("aria-valuenow", String(Math.round(value)));
    bar.setAttribute("aria-valuetext", soc === null || soc === undefined ? "unknown" : `${Math.round(value)} percent`);
    byId("soc-fill").style.width = `${value}%`;
    view.dataset.state = session.open ? "charging" : "finished";
    const targetMark = byId("soc-target");
    const target = Number(session.target_soc);
    targetMark.hidden = !(target > 0 && target < 100);
    if (!targetMark.hidden) targetMark.style.left = `${target}%`;
    setText("soc-target-text", target > 0 && target < 100 ? `Stops at ${formatPercent(target)}` : "Charging to full");
    stopButton.hidden = !session.open;
    byId("charging-done").hidden = session.open;
    const limit = byId("charging-limit");
    limit.hidden = !(session.open && typeof session.site_limit_kw === "number");
    if (!limit.hidden) setText("charging-limit", `Limited to ${formatKw(session.site_limit_kw * 1000)} by the site`);
    byId("departure-form").hidden = !session.open;
  }

  /** The site's limit on our EVSE (smart charging), from our open session's record. */
  async function refreshLimit() {
    if (!session || !session.open || !connected) return;
    try {
      const { sessions } = await api.get("/me/sessions", { limit: 5 });
      const mine = (sessions || []).find((s) => s.id === session.session_id);
      if (mine && session && mine.id === session.session_id) {
        session.site_limit_kw = mine.site_limit_kw;
        render();
      }
    } catch {
      /* the next round tries again */
    }
  }
  setInterval(refreshLimit, 10_000);

  /** The next time the clock shows `hhmm` (local), as epoch ms. */
  function nextOccurrence(hhmm) {
    const [h, m] = hhmm.split(":").map(Number);
    const at = new Date();
    at.setHours(h, m, 0, 0);
    if (at.getTime() <= Date.now()) at.setDate(at.getDate() + 1);
    return at.getTime();
  }

  byId("departure-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = byId("departure-time").value;
    if (!session || !session.open || !value) return;
    try {
      await api.put(`/me/sessions/${encodeURIComponent(session.session_id)}/departure`, {
        departure_at: nextOccurrence(value),
      });
      note(`Departure set for ${value}: on a busy site, sessions leaving sooner get more power.`);
    } catch (err) {
      note(`Departure not set: ${err && err.message ? err.message : "try again"}.`);
    }
  });

  function follow(next) {
    session = next;
    clearInterval(clock);
    clock = session && session.open && connected ? setInterval(render, 1000) : null;
    render();
  }

  /** Where the new view is: scrolled to, and focus on its heading line (screen readers). */
  function reveal() {
    view.scrollIntoView({ block: "start" });
    const place = byId("charging-evse");
    place.setAttribute("tabindex", "-1");
    place.focus({ preventScroll: true });
  }

  /** The live stream is up (true) or down: while down the timer stops and the note says so. */
  function setConnected(up) {
    if (up === connected) return;
    connected = up;
    pausedAt = up ? null : Date.now();
    if (!session || !session.open) return;
    follow(session);
    if (!up) note(OFFLINE_NOTE);
    else if (byId("charging-note").textContent === OFFLINE_NOTE) {
      note(session.stopping ? "Stopping…" : "Back online. Figures update live.");
    }
  }

  function note(text) {
    setText("charging-note", text);
  }

  /** Start on `evseId`; true when the station accepted. */
  async function start(evseId, label) {
    const target = ctx.targetSoc();
    try {
      const body = await api.post(`/evses/${encodeURIComponent(evseId)}/start`, {
        target_soc: target,
      });
      const live = body.evse || {};
      follow({
        session_id: body.session_id,
        evse_id: evseId,
        label,
        started_at: Date.now(),
        soc: live.soc ?? null,
        energy_wh: live.session_energy_wh ?? 0,
        power_w: live.power_w ?? 0,
        status: live.status || "Charging",
        open: true,
        target_soc: target,
      });
      note(connected ? "Charging started. Figures update live." : OFFLINE_NOTE);
      ctx.onStarted(evseId);
      ctx.goto("charging");
      reveal();
      return true;
    } catch (error) {
      toast(error.reason || String(error), { tone: "danger", title: "Could not start" });
      return false;
    }
  }

  stopButton.addEventListener("click", () =>
    busy(stopButton, async () => {
      if (!session) return;
      const stopped = session;
      try {
        await api.post(`/evses/${encodeURIComponent(stopped.evse_id)}/stop`, {});
        if (session === stopped && stopped.open) {
          // the end may have arrived first: then the note already says how it ended
          stopped.stopping = true;
          note("Stopping…");
          render();
        }
      } catch (error) {
        if (error.status === 0) {
          note("The app is offline, so the stop was not sent. Charging continues: to stop now, use the charger.");
          toast("Your phone cannot reach smartcharge right now. To stop now, use the charger (its stop button, or unplug if it allows); the app shows the end once it reconnects.", {
            tone: "danger",
            title: "Stop not sent: you are offline",
            timeout: 12_000,
          });
        } else {
          toast(error.reason || String(error), { tone: "danger", title: "Could not stop" });
        }
      }
    }),
  );

  byId("charging-done").addEventListener("click", () => {
    follow(null);
    note("");
    ctx.goto("history");
  });

  function finish(reasonText) {
    if (!session || !session.open) return;
    session.open = false;
    session.ended_at = Date.now();
    follow(session);
    note(reasonText || "Charging finished.");
    ctx.onEnded();
  }

  /** The station's name of an EVSE (`GET /stations/{id}`), or null when unknown. */
  async function stationName(evse) {
    const stationId = evse && evse.station_id;
    if (!stationId) return null;
    try {
      const station = await api.publicGet(`/stations/${encodeURIComponent(stationId)}`);
      return station && station.name ? `${station.name} · ${evse.id || evse.evse_id}` : null;
    } catch {
      return null;
    }
  }

  /** Fill in the station's name of a session picked up from the stream. */
  async function nameOf(evseId, target) {
    try {
      const label = await stationName(await api.get(`/evses/${encodeURIComponent(evseId)}`));
      if (label && session === target) {
        target.label = label;
        render();
      }
    } catch {
      /* the EVSE id stays */
    }
  }

  return {
    start,
    setConnected,
    reveal,
    /** A live `session` event. */
    onSession(data) {
      if (!data || !data.session_id) return;
      if (!session || session.session_id !== data.session_id) {
        if (!data.session_open) return;
        // a session of ours we did not start here (another device, or after a reload)
        follow({
          session_id: data.session_id,
          evse_id: data.id,
          label: data.id,
          started_at: Date.now(),
          open: true,
        });
        nameOf(data.id, session);
      }
      Object.assign(session, {
        soc: data.soc,
        energy_wh: data.session_energy_wh,
        power_w: data.power_w,
        status: data.status,
        target_soc: data.target_soc ?? session.target_soc,
      });
      if (!data.session_open && data.status !== "Preparing") {
        // Preparing comes before the session opens (its events may reach us after the
        // start's answer): only a later status means it ended.
        finish(`Charging finished: ${formatKwh(data.session_energy_wh)} delivered.`);
      } else {
        render();
      }
    },
    /** A `session_ended` notification. */
    onEnded(note_) {
      const data = note_.data || {};
      if (session && data.session_id === session.session_id) {
        if (typeof data.energy_wh === "number") session.energy_wh = data.energy_wh;
        finish(notificationText(note_));
        render();
      }
    },
    /** After sign-in (or a reload): pick up an open session of ours. */
    async restore() {
      try {
        const { sessions } = await api.get("/me/sessions", { limit: 5 });
        const open = (sessions || []).find((s) => s.open);
        if (!open) return;
        const evse = await api.get(`/evses/${encodeURIComponent(open.evse_id)}`); // our own ids
        follow({
          session_id: open.id,
          evse_id: open.evse_id,
          label: (await stationName(evse)) || open.evse_id,
          started_at: open.started_at,
          soc: evse.soc,
          energy_wh: evse.session ? evse.session.energy_wh : open.energy_wh,
          power_w: evse.power_w,
          status: evse.status,
          open: true,
          target_soc: evse.session ? evse.session.target_soc : null,
          site_limit_kw: open.site_limit_kw,
        });
      } catch {
        /* nothing to restore */
      }
    },
    reset() {
      follow(null);
      note("");
    },
    get active() {
      return Boolean(session && session.open);
    },
  };
}
