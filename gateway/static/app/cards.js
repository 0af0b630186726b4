/**
 * The History tab's "Charging cards" panel: the RFID cards (OCPP idTags) a driver badges at
 * chargers with (`/me/tags`, docs/ocpp.md "RFID cards"). List, add (the format checked here
 * first, as the API does), remove after an inline confirmation; every refusal in words.
 */

import { formatDateTime } from "/static/shared/format.js";
import { busy, byId, h, setError, toast } from "./ui.js";

/** The API's rule (storage.ID_TAG_PATTERN): OCPP's CiString20, letters, digits, _ : - */
const ID_TAG = /^[A-Za-z0-9_:-]{1,20}$/;
const FORMAT = "A card number is 1 to 20 letters, digits, _ : or - (no spaces).";
const OFFLINE = "You are offline: cards can be changed once you are back online.";

/** "in 12 min (at 14:05)" for a wait in seconds. */
function whenToRetry(seconds) {
  const wait = Math.max(1, Number(seconds) || 60);
  const at = new Date(Date.now() + wait * 1000).toLocaleTimeString([], {
    hour: "2-digit",
    minute: "2-digit",
  });
  const span = wait < 60 ? `${wait} s` : `${Math.ceil(wait / 60)} min`;
  return `in ${span} (at ${at})`;
}

/** The words for a refused add (or remove): what happened and what to do. */
export function cardError(error, max) {
  const status = error && error.status;
  const reason = String((error && error.reason) || error || "");
  if (status === 0) return OFFLINE;
  if (status === 422) return FORMAT;
  if (status === 429) {
    return `Too many cards tried in the last hour. Try again ${whenToRetry(error.retryAfter)}.`;
  }
  if (status === 409 && /at most/i.test(reason)) {
    return `You already have ${max} cards, the most an account can hold: remove one first.`;
  }
  if (status === 409) return "This card is already registered to another account.";
  if (status === 404) return "This card is no longer on your account.";
  return reason || "Something went wrong. Try again.";
}

/** @param {{api: any}} ctx */
export function createCards(ctx) {
  const { api } = ctx;
  const panel = byId("cards");
  const list = byId("card-list");
  const input = byId("card-input");
  const error = byId("card-error");
  const addButton = byId("card-add");
  let cards = [];
  let max = 10;
  let questions = 0; // ids of the confirmation questions

  function showError(message) {
    setError(error, message);
    if (message) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
  }

  function item(card) {
    const remove = h(
      "button",
      {
        type: "button",
        class: "btn btn-small",
        "data-testid": "card-remove",
        "aria-label": `Remove card ${card.id_tag}`,
      },
      "Remove",
    );
    const row = h(
      "li",
      { class: "card-item", "data-testid": "card-item", dataset: { idTag: card.id_tag } },
      h(
        "div",
        { class: "card-main" },
        h("span", { class: "card-tag", "data-testid": "card-tag" }, card.id_tag),
        h("span", { class: "muted small" }, `Added ${formatDateTime(card.created_at)}`),
      ),
      h("div", { class: "card-actions" }, remove),
    );
    remove.addEventListener("click", () => confirmRemove(row, card));
    return row;
  }

  /** Remove asks once more in place; Keep (focused: the safe choice) or Escape puts it back. */
  function confirmRemove(row, card) {
    const actions = row.querySelector(".card-actions");
    const keep = h("button", { type: "button", class: "btn btn-small", "data-testid": "card-keep" }, "Keep");
    const yes = h(
      "button",
      { type: "button", class: "btn btn-small btn-danger", "data-testid": "card-remove-confirm" },
      "Remove",
    );
    questions += 1;
    const question = h("p", { class: "card-question", id: `card-question-${questions}` }, "Remove this card?");
    yes.setAttribute("aria-describedby", question.id);
    actions.replaceChildren(question, h("div", { class: "card-confirm" }, keep, yes));
    const restore = () => {
      render();
      focusRow(card.id_tag);
    };
    keep.addEventListener("click", restore);
    actions.addEventListener("keydown", (event) => {
      if (event.key === "Escape") restore();
    });
    yes.addEventListener("click", () => busy(yes, () => remove(card)));
    keep.focus();
  }

  function focusRow(tag) {
    const row = list.querySelector(`[data-id-tag="${CSS.escape(tag)}"]`);
    const button = row && row.querySelector("[data-testid=card-remove]");
    if (button) button.focus();
  }

  async function remove(card) {
    const index = cards.findIndex((c) => c.id_tag === card.id_tag);
    try {
      await api.del(`/me/tags/${encodeURIComponent(card.id_tag)}`);
    } catch (failure) {
      if (failure.status !== 404) {
        toast(cardError(failure, max), { tone: "danger", title: "Card not removed" });
        render();
        focusRow(card.id_tag);
        return;
      }
    }
    cards = cards.filter((c) => c.id_tag !== card.id_tag);
    render();
    toast(`Card ${card.id_tag} no longer starts charges for you.`, { tone: "success", title: "Card removed" });
    // focus the next card's Remove (or the previous one's), else the input: never lost
    const next = cards[Math.min(index, cards.length - 1)];
    if (next) focusRow(next.id_tag);
    else input.focus();
  }

  function render() {
    list.replaceChildren(...cards.map(item));
    byId("cards-empty").hidden = cards.length > 0;
    byId("cards-count").textContent = `${cards.length} of ${max}`;
  }

  async function load() {
    try {
      const body = await api.get("/me/tags");
      cards = body.tags || [];
      max = body.max || max;
      panel.hidden = false;
      render();
    } catch (failure) {
      // 404: this gateway keeps no SQL storage, so no cards (the panel stays hidden)
      if (failure.status === 404) {
        panel.hidden = true;
      } else if (failure.status !== 401) {
        panel.hidden = false;
        byId("cards-empty").hidden = true;
        showError(cardError(failure, max));
      }
    }
  }

  async function add() {
    const tag = input.value.trim();
    if (!ID_TAG.test(tag)) {
      showError(tag ? FORMAT : "Enter the number printed on your card.");
      reveal();
      return;
    }
    if (cards.some((c) => c.id_tag.toLowerCase() === tag.toLowerCase())) {
      showError("This card is already on your account.");
      reveal();
      return;
    }
    await busy(addButton, async () => {
      try {
        const card = await api.post("/me/tags", { id_tag: tag });
        cards = [...cards, card];
        showError("");
        input.value = "";
        render();
        toast("Badge it at a charger to start charging.", { tone: "success", title: `Card ${card.id_tag} added` });
      } catch (failure) {
        if (failure.status === 401) return;
        showError(cardError(failure, max));
      }
    });
    reveal();
  }

  /** Focus stays in the field for the next card; an error is scrolled clear of the tab bar. */
  function reveal() {
    input.focus({ preventScroll: !error.hidden });
    if (!error.hidden) error.scrollIntoView({ block: "center" });
  }

  byId("card-form").addEventListener("submit", (event) => {
    event.preventDefault();
    add();
  });
  input.addEventListener("input", () => {
    if (!error.hidden) showError("");
  });

  return {
    load,
    reset() {
      cards = [];
      panel.hidden = true;
      input.value = "";
      showError("");
      list.replaceChildren();
    },
  };
}
