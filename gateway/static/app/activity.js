/** The History and Alerts tabs: past sessions, notifications (list, toasts, system alerts). */

import {
  formatDateTime,
  formatDuration,
  formatKw,
  formatKwh,
  formatRelative,
  notificationText,
} from "/static/shared/format.js";
import { byId, h, toast } from "./ui.js";

const KIND = {
  session_started: { icon: "⚡", tone: "success", title: "Charging started" },
  session_ended: { icon: "✓", tone: "success", title: "Charging finished" },
  reservation_interrupted: { icon: "!", tone: "danger", title: "Reservation interrupted" },
  reservation_expired: { icon: "⏱", tone: "warning", title: "Reservation expired" },
};

const REASONS = {
  Remote: "Stopped by you",
  Local: "Stopped at the charger",
  EVDisconnected: "Car unplugged",
  SoCReached: "Target reached",
  SoCLimitReached: "Target reached",
  PowerLoss: "Power loss",
  Other: "Ended",
};

/** @param {{api: any, isVisible: (tab: string) => boolean}} ctx */
export function createActivity(ctx) {
  const { api } = ctx;
  const historyList = byId("history-list");
  const noteList = byId("notification-list");
  const badge = byId("alerts-count");
  const enable = byId("enable-notifications");
  let notes = [];
  let unseen = 0;

  // -- history ------------------------------------------------------------------------------

  function sessionItem(s) {
    const end = s.ended_at ?? Date.now();
    const reason = s.open ? "In progress" : REASONS[s.end_reason] || "Ended";
    return h(
      "li",
      { class: "history-item card", "data-testid": "history-item", "data-session-id": s.id },
      h(
        "div",
        { class: "history-head" },
        h(
          "div",
          {},
          h("h3", {}, s.evse_id),
          h("p", { class: "muted small" }, formatDateTime(s.started_at)),
        ),
        h("span", { class: "history-energy" }, formatKwh(s.energy_wh)),
      ),
      h(
        "dl",
        { class: "history-facts" },
        h("div", {}, h("dt", {}, "Duration"), h("dd", {}, formatDuration((end - s.started_at) / 1000))),
        h("div", {}, h("dt", {}, "Peak"), h("dd", {}, formatKw(s.peak_power_w))),
        h(
          "div",
          {},
          h("dt", {}, "Result"),
          h("dd", { class: s.open ? "is-open" : "" }, reason),
        ),
      ),
    );
  }

  async function loadHistory() {
    try {
      const { sessions } = await api.get("/me/sessions", { limit: 50 });
      historyList.replaceChildren(...sessions.map(sessionItem));
      byId("history-empty").hidden = sessions.length > 0;
      const summary = byId("history-summary");
      const total = sessions.reduce((sum, s) => sum + (s.energy_wh || 0), 0);
      summary.hidden = sessions.length === 0;
      summary.replaceChildren(
        h("div", {}, h("span", { class: "summary-value" }, String(sessions.length)), h("span", { class: "summary-label" }, sessions.length === 1 ? "session" : "sessions")),
        h("div", {}, h("span", { class: "summary-value" }, formatKwh(total, 1)), h("span", { class: "summary-label" }, "charged")),
      );
    } catch (error) {
      toast(error.reason || String(error), { tone: "danger", title: "History unavailable" });
    }
  }

  byId("history-refresh").addEventListener("click", loadHistory);

  // -- notifications --------------------------------------------------------------------------

  function noteItem(n) {
    const kind = KIND[n.kind] || { icon: "i", tone: "info", title: "Notice" };
    return h(
      "li",
      { class: "notification-item card", "data-testid": "notification-item", "data-kind": n.kind, "data-tone": kind.tone },
      h("span", { class: "note-icon", "aria-hidden": "true" }, kind.icon),
      h(
        "div",
        { class: "note-body" },
        h("p", { class: "note-title" }, kind.title),
        h("p", {}, notificationText(n)),
        h("time", { class: "muted small", datetime: new Date(n.created_at).toISOString() }, formatRelative(n.created_at)),
      ),
    );
  }

  function renderNotes() {
    noteList.replaceChildren(...notes.map(noteItem));
    byId("notification-empty").hidden = notes.length > 0;
    badge.hidden = unseen === 0;
    badge.textContent = unseen > 9 ? "9+" : String(unseen);
    badge.setAttribute("aria-label", `${unseen} new`);
  }

  async function loadNotifications() {
    try {
      const body = await api.get("/me/notifications", { limit: 50 });
      notes = body.notifications || [];
      renderNotes();
    } catch (error) {
      toast(error.reason || String(error), { tone: "danger", title: "Notifications unavailable" });
    }
  }

  function systemNotification(n) {
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    if (document.visibilityState === "visible") return;
    try {
      const kind = KIND[n.kind] || { title: "smartcharge" };
      // eslint-disable-next-line no-new
      new Notification(kind.title, { body: notificationText(n), icon: "/static/app/icon-192.png", tag: n.kind });
    } catch {
      /* some phones only allow notifications from the service worker */
    }
  }

  function offerSystemNotifications() {
    enable.hidden = !("Notification" in window) || Notification.permission !== "default";
  }

  enable.addEventListener("click", async () => {
    try {
      await Notification.requestPermission();
    } finally {
      offerSystemNotifications();
    }
  });

  return {
    async load() {
      offerSystemNotifications();
      await Promise.all([loadHistory(), loadNotifications()]);
    },
    loadHistory,
    /** Tab shown: its badge is cleared. */
    seen() {
      unseen = 0;
      renderNotes();
    },
    /** A live notification: list, toast, and a system notification when hidden. */
    onNotification(n) {
      if (n.id !== undefined && notes.some((x) => x.id === n.id)) return;
      notes = [{ read: false, ...n }, ...notes].slice(0, 100);
      if (!ctx.isVisible("alerts")) unseen += 1;
      renderNotes();
      const kind = KIND[n.kind] || { tone: "info", title: "Notice" };
      toast(notificationText(n), { tone: kind.tone, title: kind.title, timeout: kind.tone === "danger" ? 10_000 : 6000 });
      systemNotification(n);
      if (n.kind === "session_ended" || n.kind === "session_started") loadHistory();
    },
    reset() {
      notes = [];
      unseen = 0;
      historyList.replaceChildren();
      renderNotes();
    },
  };
}
