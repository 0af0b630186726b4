// Dashboard formatting: the shared helpers plus the few the dashboard alone needs.

import {
  formatAge,
  formatCountdown,
  formatKw,
  formatKwh,
  formatPercent,
  statusColour,
} from "/static/shared/format.js";

export { statusColour };

export const fmtKw = (w) => formatKw(w);
export const fmtKwh = (wh, digits = 2) => formatKwh(wh, digits);
export const fmtSoc = (soc) => (soc === null || soc === undefined ? "—" : formatPercent(soc));
export const fmtAge = (s) => formatAge(s);
export const fmtCountdown = (ms) => formatCountdown(ms);

/** The first block of a session id: enough to tell sessions apart on a wall screen. */
export function shortId(id) {
  if (!id) return "—";
  const text = String(id);
  const head = text.split("-")[0];
  return head.length >= 6 ? head.slice(0, 8) : text.slice(0, 8);
}

const WORDS = {
  SuspendedEV: "Suspended (EV)",
  SuspendedEVSE: "Suspended (EVSE)",
};

export function statusWord(status) {
  return WORDS[status] || status || "Unknown";
}
