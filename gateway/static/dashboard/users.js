// Driver accounts: search by email, page newest first, and disable or enable an account
// after a confirmation (a disabled driver is signed out at once and cannot sign in).

import { $, CursorPager, bootPage, el, fmtTime, labelCells, reasonOf, say } from "./ops.js";

const PAGE_SIZE = 50;

let api = null;
const pager = new CursorPager();

function accountTag(user) {
  return el("span", {
    class: "tag",
    "data-tone": user.disabled ? "bad" : "good",
    text: user.disabled ? "Disabled" : "Active",
  });
}

function actionButton(user) {
  const verb = user.disabled ? "Enable" : "Disable";
  const button = el("button", {
    type: "button",
    class: user.disabled ? "btn btn-small" : "btn btn-small btn-danger",
    "aria-label": `${verb} ${user.email}`,
    "data-action": verb.toLowerCase(),
    text: verb,
  });
  button.addEventListener("click", () => confirmChange(user, button));
  return button;
}

function row(user) {
  const sessions = el("a", {
    href: `/dashboard/sessions?driver=${encodeURIComponent(user.email)}`,
    "aria-label": `${user.sessions} sessions of ${user.email}`,
    text: String(user.sessions),
  });
  return el(
    "tr",
    { "data-user": user.id, "data-email": user.email },
    el("td", { text: user.email }),
    el("td", { text: fmtTime(user.created_at) }),
    el("td", { text: user.confirmed ? "Yes" : "Not yet" }),
    el("td", { class: "num" }, sessions),
    el("td", {}, accountTag(user)),
    el("td", {}, actionButton(user)),
  );
}

/** Ask first; resolves true when the operator confirmed. */
function ask(user) {
  const dialog = $("confirm");
  const disable = !user.disabled;
  $("confirm-title").textContent = disable ? "Disable this account?" : "Enable this account?";
  $("confirm-text").textContent = disable
    ? `${user.email} is signed out at once and cannot sign in, refresh or act until enabled again.`
    : `${user.email} can sign in again (their old logins stay ended).`;
  const ok = $("confirm-ok");
  ok.textContent = disable ? "Disable" : "Enable";
  ok.className = disable ? "btn btn-danger" : "btn btn-primary";
  return new Promise((resolve) => {
    const done = (answer) => {
      ok.removeEventListener("click", yes);
      $("confirm-cancel").removeEventListener("click", no);
      dialog.removeEventListener("cancel", no);
      if (dialog.open) dialog.close();
      resolve(answer);
    };
    const yes = () => done(true);
    const no = () => done(false);
    ok.addEventListener("click", yes);
    $("confirm-cancel").addEventListener("click", no);
    dialog.addEventListener("cancel", no);
    dialog.showModal();
    $("confirm-cancel").focus();
  });
}

async function confirmChange(user, button) {
  const status = $("list-status");
  if (!(await ask(user))) {
    button.focus();
    return;
  }
  const verb = user.disabled ? "enable" : "disable";
  button.disabled = true;
  try {
    const updated = await api.post(`/api/v1/users/${encodeURIComponent(user.id)}/${verb}`);
    const fresh = row(updated);
    button.closest("tr").replaceWith(fresh);
    labelCells(fresh.closest("table"));
    say(status, `${updated.email} is ${updated.disabled ? "disabled" : "enabled"}.`);
    fresh.querySelector("button").focus();
  } catch (error) {
    button.disabled = false;
    say(status, `Could not ${verb} ${user.email}: ${reasonOf(error)}`, "error");
  }
}

async function load() {
  const status = $("list-status");
  say(status, "Loading…");
  try {
    const body = await api.get("/api/v1/users", {
      q: $("q").value.trim(),
      limit: PAGE_SIZE,
      before: pager.current,
    });
    pager.next = body.next;
    const rows = body.users.map(row);
    $("rows").replaceChildren(...rows);
    if (!rows.length) {
      $("rows").replaceChildren(
        el("tr", {}, el("td", { colspan: 6, class: "ops-empty", text: "No driver accounts match." })),
      );
    }
    labelCells($("rows").closest("table"));
    say(status, `${rows.length} account${rows.length === 1 ? "" : "s"} on this page.`);
    $("page-info").textContent = `Page ${pager.page} · ${PAGE_SIZE} a page`;
    $("older").disabled = !pager.next;
    $("newer").disabled = pager.page === 1;
  } catch (error) {
    say(status, `Could not load the accounts: ${reasonOf(error)}`, "error");
  }
}

let started = false;

bootPage(async (client) => {
  api = client;
  if (!started) {
    started = true;
    const q = new URLSearchParams(window.location.search).get("q");
    if (q) $("q").value = q;
    $("search").addEventListener("submit", (event) => {
      event.preventDefault();
      pager.reset();
      load();
    });
    $("older").addEventListener("click", () => pager.older() && load());
    $("newer").addEventListener("click", () => pager.newer() && load());
  }
  await load();
});
