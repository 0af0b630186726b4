/**
 * Formatting helpers (shared). Pure functions, no DOM.
 *
 * Exported names (stable): formatKw, formatKwh, formatPercent, formatDistance,
 * formatDuration, formatCountdown, formatAge, formatRelative, formatDateTime,
 * statusColour, STATUSES, statusLabel, endReasonLabel, notificationText.
 */

export const STATUSES = [
  "Available",
  "Preparing",
  "Reserved",
  "Charging",
  "SuspendedEV",
  "SuspendedEVSE",
  "Finishing",
  "Unavailable",
  "Faulted",
  "Offline",
];

const number = (value, digits) =>
  Number(value).toLocaleString(undefined, {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });

const missing = (value) => value === null || value === undefined || Number.isNaN(Number(value));

/** Watts → "7.4 kW" (one decimal below 100 kW). */
export function formatKw(watts, digits) {
  if (missing(watts)) return "–";
  const kw = Number(watts) / 1000;
  return `${number(kw, digits ?? (Math.abs(kw) >= 100 ? 0 : 1))} kW`;
}

/** Watt-hours → "12.35 kWh". */
export function formatKwh(wattHours, digits = 2) {
  if (missing(wattHours)) return "–";
  return `${number(Number(wattHours) / 1000, digits)} kWh`;
}

/** 0–100 → "42 %". */
export function formatPercent(value, digits = 0) {
  if (missing(value)) return "–";
  return `${number(value, digits)} %`;
}

/** Kilometres → "850 m" / "3.2 km". */
export function formatDistance(km) {
  if (missing(km)) return "–";
  const value = Number(km);
  if (value < 1) return `${Math.round(value * 1000)} m`;
  return `${number(value, value < 10 ? 1 : 0)} km`;
}

/** Seconds → "0:42", "12:05", "1:02:03". */
export function formatDuration(seconds) {
  if (missing(seconds)) return "–";
  const total = Math.max(0, Math.floor(Number(seconds)));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const pad = (n) => String(n).padStart(2, "0");
  return h ? `${h}:${pad(m)}:${pad(s)}` : `${m}:${pad(s)}`;
}

/** Milliseconds left → "mm:ss" (never negative). */
export function formatCountdown(ms) {
  const total = Math.max(0, Math.ceil(Number(ms || 0) / 1000));
  const m = Math.floor(total / 60);
  const s = total % 60;
  return `${String(m).padStart(2, "0")}:${String(s).padStart(2, "0")}`;
}

/** An age in seconds → "just now", "12 s ago", "5 min ago", "3 h ago", "2 d ago". */
export function formatAge(seconds) {
  if (missing(seconds)) return "–";
  const s = Math.max(0, Number(seconds));
  if (s < 5) return "just now";
  if (s < 60) return `${Math.floor(s)} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

/** Epoch ms → relative age from `now` (default: the current time). */
export function formatRelative(epochMs, now = Date.now()) {
  if (missing(epochMs)) return "–";
  return formatAge((now - Number(epochMs)) / 1000);
}

/** Epoch ms → a short local date and time. */
export function formatDateTime(epochMs) {
  if (missing(epochMs)) return "–";
  return new Date(Number(epochMs)).toLocaleString(undefined, {
    day: "numeric",
    month: "short",
    hour: "2-digit",
    minute: "2-digit",
  });
}

/** A status's colour as a CSS value (the variables live in base.css). */
export function statusColour(status) {
  const known = STATUSES.includes(status) ? status : "Offline";
  return `var(--status-${known})`;
}

/** What a driver reads for each EVSE status (OCPP's names stay in data attributes). */
const STATUS_LABELS = {
  Available: "Available",
  Preparing: "Plugged in",
  Reserved: "Reserved",
  Charging: "Charging",
  SuspendedEV: "Paused by the car",
  SuspendedEVSE: "Paused by the charger",
  Finishing: "Finishing",
  Unavailable: "Out of service",
  Faulted: "Out of order",
  Offline: "Offline",
};

/** "SuspendedEV" → "Paused by the car"; an unknown status is shown as it is. */
export function statusLabel(status) {
  return STATUS_LABELS[status] || String(status ?? "Unknown");
}

/** Why a session ended (the station's stop reason), in words. */
const END_REASONS = {
  Remote: "stopped from the app",
  Local: "stopped at the charger",
  EVDisconnected: "car unplugged",
  SoCReached: "target charge reached",
  SoCLimitReached: "target charge reached",
  PowerLoss: "power cut at the charger",
  Other: "ended",
};

/** "Remote" → "stopped from the app"; unknown codes → "ended" (never a raw code). */
export function endReasonLabel(reason) {
  return END_REASONS[reason] || "ended";
}

/** A driver notification's text without protocol codes: the session-end message is built
 * from its data; any other keeps the server's words with a trailing "(Code)" mapped. */
export function notificationText(note) {
  const data = (note && note.data) || {};
  if (note && note.kind === "session_ended" && typeof data.energy_wh === "number") {
    const where = data.evse_id ? ` at ${data.evse_id}` : "";
    const why = endReasonLabel(data.reason);
    return `Charging${where} finished: ${formatKwh(data.energy_wh)}, ${why}.`;
  }
  const message = String((note && note.message) || "");
  return message.replace(/\s*\(([A-Za-z]+)\)\s*$/, (_, code) => `, ${endReasonLabel(code)}`);
}
