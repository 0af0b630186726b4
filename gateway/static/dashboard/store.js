// The dashboard's model of the fleet: stations and EVSEs as the API and the live feed
// (operator SSE stream) describe them. Pure data, no DOM.

export const STATUSES = [
  "Available", "Reserved", "Preparing", "Charging", "SuspendedEV", "SuspendedEVSE",
  "Finishing", "Unavailable", "Faulted", "Offline",
];

/** Statuses in which an EVSE counts as busy with a session. */
const IN_SESSION = new Set(["Preparing", "Charging", "SuspendedEV", "SuspendedEVSE", "Finishing"]);

/** Milliseconds left on the CSMS's reservation count of an EVSE (0: none). */
export function holdLeft(evse, now = Date.now()) {
  return evse.reservationUntil ? Math.max(0, evse.reservationUntil - now) : 0;
}

/** An EVSE the CSMS cannot reach: its own status says so, or its station is offline. */
export function isOffline(evse, station) {
  return evse.status === "Offline" || (station ? station.online === false : false);
}

export function isFree(evse, station) {
  return evse.status === "Available" && !holdLeft(evse) && (!station || station.online !== false);
}

export class Fleet {
  constructor(now = () => Date.now()) {
    this.now = now;
    this.stations = new Map(); // id -> {id, name, lat, lon, online, evseIds}
    this.evses = new Map(); // id -> EVSE JSON + reportedAt (ms, local clock)
    this._baseline = new Map(); // id -> meter energy_wh at midnight (or first sighting)
    this._day = new Date(now()).toDateString();
  }

  /** Replace everything with a `GET /api/v1/stations` answer. */
  load(body) {
    const now = this.now();
    const seen = new Set();
    this.stations.clear();
    for (const st of body.stations || []) {
      this.stations.set(st.id, {
        id: st.id, name: st.name || st.id, lat: st.lat, lon: st.lon, online: st.online,
        evseIds: (st.evses || []).map((e) => e.id),
      });
      for (const e of st.evses || []) {
        seen.add(e.id);
        this.putEvse(e, now);
      }
    }
    for (const id of [...this.evses.keys()]) if (!seen.has(id)) this.evses.delete(id);
  }

  /** One EVSE as `GET /api/v1/evses/{id}` (or the list) describes it. */
  putEvse(e, now = this.now()) {
    const age = Number.isFinite(e.last_report_age_s) ? e.last_report_age_s * 1000 : 0;
    const hold = e.reservation && Number.isFinite(e.reservation.remaining_s);
    const record = {
      ...e,
      reportedAt: now - age,
      reservationUntil: hold ? now + e.reservation.remaining_s * 1000 : null,
    };
    this.evses.set(e.id, record);
    this._noteEnergy(record);
    return record;
  }

  /**
   * A live `evse` event (the public summary). Returns `{evse, refetch}`: `refetch` is true
   * when the summary says more than it carries (a new session: its id is not in the event).
   */
  applyEvse(summary) {
    const now = this.now();
    const old = this.evses.get(summary.id);
    if (!old) return { evse: null, refetch: true };
    const session = old.session ? { ...old.session } : null;
    let refetch = false;
    if (summary.session_open) {
      if (!session || !session.open) refetch = true;
      else session.energy_wh = summary.session_energy_wh;
    } else if (session && session.open) {
      session.open = false;
      session.energy_wh = summary.session_energy_wh;
      refetch = true; // the stop reason
    }
    const evse = {
      ...old,
      status: summary.status,
      soc: summary.soc,
      power_w: summary.power_w,
      energy_wh: summary.energy_wh,
      maintenance: summary.maintenance,
      maintenance_pending: summary.maintenance_pending,
      session,
      // going Offline is the CSMS's conclusion, not a report: keep the last report's time
      reportedAt: summary.status === "Offline" ? old.reportedAt : now,
    };
    // the summary carries no reservation: ask again when the status enters or leaves Reserved
    // (not on every move between charging states: at fleet scale that is a request a second)
    if (old.status !== evse.status && (old.status === "Reserved" || evse.status === "Reserved" || old.reservationUntil)) {
      refetch = true;
    }
    this.evses.set(evse.id, evse);
    this._noteEnergy(evse);
    return { evse, refetch };
  }

  /** A live `station` event `{id, online}`. */
  applyStation({ id, online }) {
    const st = this.stations.get(id);
    if (!st) return null;
    st.online = online;
    return st;
  }

  station(id) {
    return this.stations.get(id);
  }

  evsesOf(stationId) {
    const st = this.stations.get(stationId);
    return st ? st.evseIds.map((id) => this.evses.get(id)).filter(Boolean) : [];
  }

  freeCount(stationId) {
    const st = this.stations.get(stationId);
    return this.evsesOf(stationId).filter((e) => isFree(e, st)).length;
  }

  totals() {
    const byStatus = Object.fromEntries(STATUSES.map((s) => [s, 0]));
    let powerW = 0;
    let sessions = 0;
    for (const e of this.evses.values()) {
      byStatus[e.status] = (byStatus[e.status] || 0) + 1;
      powerW += e.power_w || 0;
      if ((e.session && e.session.open) || IN_SESSION.has(e.status)) sessions += 1;
    }
    const stations = [...this.stations.values()];
    return {
      byStatus,
      evses: this.evses.size,
      powerW,
      sessions,
      stations: stations.length,
      online: stations.filter((s) => s.online).length,
      liveEnergyWh: this.liveEnergyWh(),
    };
  }

  /** Meter energy counted by the live feed since midnight (or since the page opened). */
  liveEnergyWh() {
    this._rollDay();
    let wh = 0;
    for (const e of this.evses.values()) {
      const base = this._baseline.get(e.id);
      if (base !== undefined && e.energy_wh > base) wh += e.energy_wh - base;
    }
    return wh;
  }

  _noteEnergy(e) {
    this._rollDay();
    const base = this._baseline.get(e.id);
    // a meter that went backwards (station replaced/reset) starts a new baseline
    if (base === undefined || e.energy_wh < base) this._baseline.set(e.id, e.energy_wh || 0);
  }

  _rollDay() {
    const day = new Date(this.now()).toDateString();
    if (day === this._day) return;
    this._day = day;
    for (const e of this.evses.values()) this._baseline.set(e.id, e.energy_wh || 0);
  }
}
