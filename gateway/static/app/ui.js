/** Small DOM helpers for the driver app: element lookup, element building, toasts. */

/** The element with this id (throws if the page lacks it: a bug, not a user error). */
export function byId(id) {
  const node = document.getElementById(id);
  if (!node) throw new Error(`#${id} is missing from the page`);
  return node;
}

/**
 * Build an element: h("li", {class: "x", dataset: {id}}, "text", child).
 * Strings become text nodes (never HTML), so API data cannot inject markup.
 */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2), value);
    } else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const TOAST_MS = 4500;

/**
 * Show a toast in the page's live region.
 * @param {string} message
 * @param {{tone?: "info"|"success"|"warning"|"danger", title?: string, timeout?: number}} [options]
 */
export function toast(message, options = {}) {
  const region = byId("toasts");
  const close = h("button", { type: "button", "aria-label": "Dismiss notification" }, "×");
  const item = h(
    "div",
    { class: "toast", "data-testid": "toast", "data-tone": options.tone || "info" },
    h(
      "div",
      { class: "toast-body" },
      options.title ? h("strong", { class: "toast-title" }, options.title) : null,
      h("span", {}, message),
    ),
    close,
  );
  const remove = () => item.remove();
  close.addEventListener("click", remove);
  region.append(item);
  while (region.children.length > 2) region.firstElementChild.remove();
  const timeout = options.timeout ?? TOAST_MS;
  if (timeout > 0) setTimeout(remove, timeout);
  return item;
}

/** Show or hide an error paragraph. */
export function setError(node, message) {
  node.textContent = message || "";
  node.hidden = !message;
}

/** Disable a button while `work` runs (prevents double taps). */
export async function busy(button, work) {
  if (button.disabled) return undefined;
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    return await work();
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}

/** "Station · EVSE id" as a name line and an id line (the id never breaks at its hyphens). */
export function setPlace(node, label) {
  const [name, id] = String(label || "").split(" · ");
  node.replaceChildren(
    document.createTextNode(name),
    id ? h("span", { class: "place-id" }, id) : "",
  );
}
