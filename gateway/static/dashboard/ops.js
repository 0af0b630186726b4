// The operator pages' shell (sessions, users, a station): sign-in with the dashboard's own
// stored login (the same refresh-token key, so one sign-in serves every operator page),
// the nav's sign-out, and the small DOM and formatting helpers the pages share.
//
//   import { bootPage, el } from "./ops.js";
//   bootPage(async (api) => { ... the page, signed in as an operator ... });

import { ApiError, createClient } from "/static/shared/api.js";

export { ApiError };

export const api = createClient({ storageKey: "smartcharge.operator.refresh" });

export const $ = (id) => document.getElementById(id);

/** An element with attributes (`class`, `text`, data-*, aria-*, ...) and children. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "text") node.textContent = String(value);
    else if (key === "class") node.className = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

const DATE_TIME = { dateStyle: "medium", timeStyle: "medium" };

/** Epoch ms as the browser's local date and time; "—" for none. */
export function fmtTime(ms) {
  if (ms === null || ms === undefined) return "—";
  return new Date(ms).toLocaleString(undefined, DATE_TIME);
}

export function fmtDuration(ms) {
  if (ms === null || ms === undefined || ms < 0) return "—";
  const s = Math.round(ms / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (h > 0) return `${h} h ${String(m).padStart(2, "0")} min`;
  if (m > 0) return `${m} min ${String(s % 60).padStart(2, "0")} s`;
  return `${s} s`;
}

export const fmtKwh = (wh) => (wh === null || wh === undefined ? "—" : (wh / 1000).toFixed(2));
export const fmtKw = (w) => (w === null || w === undefined ? "—" : (w / 1000).toFixed(1));

/** A status line: `tone` "error" makes it stand out (and assertive for screen readers). */
export function say(node, text, tone = "") {
  node.textContent = text;
  node.dataset.tone = tone;
}

export function reasonOf(error) {
  return error instanceof ApiError ? error.reason : String((error && error.message) || error);
}

function roleOf(token) {
  try {
    const body = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const payload = JSON.parse(atob(body));
    return { role: payload.role, email: payload.email || payload.sub };
  } catch {
    return { role: null, email: null };
  }
}

/**
 * Show the sign-in form until an operator is signed in, then run `enter(api)` (once per
 * sign-in). Markup the page provides: #login-view (with #login-form, #login-email,
 * #login-password, #login-error), #page-view, #whoami, #logout.
 */
export function bootPage(enter) {
  const showLogin = (message = "") => {
    $("page-view").hidden = true;
    $("login-view").hidden = false;
    $("logout").hidden = true;
    $("whoami").textContent = "";
    const error = $("login-error");
    error.textContent = message;
    error.hidden = !message;
  };

  const open = async (email) => {
    const who = roleOf((await api.freshToken()) || "");
    if (who.role && who.role !== "operator") {
      await api.logout();
      showLogin("These pages are for operators; this account is a driver's.");
      return;
    }
    $("whoami").textContent = email || who.email || "operator";
    $("login-view").hidden = true;
    $("page-view").hidden = false;
    $("logout").hidden = false;
    await enter(api);
  };

  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const email = $("login-email").value.trim();
    const password = $("login-password").value;
    if (!email || !password) {
      showLogin("Enter your email and password.");
      return;
    }
    const button = $("login-form").querySelector("button[type=submit]");
    button.disabled = true;
    try {
      await api.login(email, password);
      $("login-password").value = "";
      await open(email);
    } catch (error) {
      showLogin(reasonOf(error));
    } finally {
      button.disabled = false;
    }
  });

  $("logout").addEventListener("click", async () => {
    await api.logout();
    showLogin();
    $("login-email").focus();
  });

  api.onAuthChange((signedIn) => {
    if (!signedIn && !$("page-view").hidden) showLogin("Your session ended; sign in again.");
  });

  (async () => {
    if (api.hasStoredSession() && (await api.resume())) await open(null);
    else showLogin();
  })();
}

/** Each body cell of `table` gets its column's heading as `data-label` (phones show the
 * rows as cards, each value next to its label; see ops.css). */
export function labelCells(table) {
  const headings = [...table.querySelectorAll("thead th")].map((th) => th.textContent.trim());
  for (const row of table.tBodies[0].rows) {
    [...row.cells].forEach((cell, i) => {
      if (headings[i] && cell.colSpan === 1) cell.dataset.label = headings[i];
    });
  }
}

/** A cursor pager over a list endpoint: `older()` follows `next`, `newer()` goes back. */
export class CursorPager {
  constructor() {
    this.stack = []; // the `before` of each page shown before this one
    this.current = null;
    this.next = null;
  }

  reset() {
    this.stack = [];
    this.current = null;
    this.next = null;
  }

  get page() {
    return this.stack.length + 1;
  }

  older() {
    if (!this.next) return false;
    this.stack.push(this.current);
    this.current = this.next;
    return true;
  }

  newer() {
    if (!this.stack.length) return false;
    this.current = this.stack.pop();
    return true;
  }
}
