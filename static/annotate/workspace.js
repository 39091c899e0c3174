// The annotator workspace: wires each task card swapped in by htmx to the small modules.
import { installShortcuts } from "./shortcuts.js";
import { initSpans } from "./spans.js";
import { initRanking } from "./ranking.js";
import { initDiffs } from "./diff.js";

let shownAt = performance.now();

function initCard(card) {
  if (card.dataset.ready) return;
  card.dataset.ready = "1";
  shownAt = performance.now();
  const dataHolder = card.querySelector("#card-data");
  const data = dataHolder ? JSON.parse(dataHolder.dataset.json) : null;
  if (data) {
    initSpans(card, data);
    initDiffs(card, data);
  }
  initRanking(card);
  card.querySelector("[data-rating-row]")?.classList.add("current");
  card.focus({ preventScroll: true });
}

htmx.onLoad((root) => {
  const card = root.id === "task-card" ? root : root.querySelector?.("#task-card");
  if (card) initCard(card);
});

// Time on task: from the card being shown to its submission, measured in the page.
document.addEventListener("htmx:configRequest", (event) => {
  if (event.detail.elt.id === "task-form") {
    event.detail.parameters.set("duration_ms", String(Math.round(performance.now() - shownAt)));
  }
  // The CSRF token of the current cookie: after logging in again in another tab the one
  // written into the page is stale, and the retried submit would be refused.
  const token = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  if (token) event.detail.headers["X-CSRFToken"] = decodeURIComponent(token[1]);
});

// A failed request swaps nothing (422 alone carries an error list to swap in), so say it in
// the card; the form is left alone, with everything the annotator entered.
const FAILURE_REASONS = {
  400: "the server could not read it (400). It may be too large; shorten it and try again.",
  401: "your session has ended. Log in again in another tab, then submit again here.",
  403: "the server refused it (403). Reload the page, or log in again in another tab.",
  404: "this task is no longer yours (404). Skip to the next task.",
  413: "it is too large to send (413). Shorten it and submit again.",
};

function failureMessage(elt, status) {
  const what = elt.id === "task-form" ? "Your answer was not saved" : "That did not work";
  if (status === 0) {
    return `${what}: the server could not be reached. Check your connection and try again.`;
  }
  const reason =
    FAILURE_REASONS[status] ??
    (status >= 500
      ? `the server failed (error ${status}). Try again in a moment.`
      : `the server answered ${status}.`);
  return `${what}: ${reason}`;
}

function showFailure(event, status) {
  const card = document.getElementById("task-card");
  if (!card) return;
  let box = card.querySelector("#task-errors");
  if (!box) {
    box = document.createElement("div");
    box.id = "task-errors";
    box.setAttribute("aria-live", "polite");
    const bar = card.querySelector(".card-bar");
    if (bar) bar.after(box);
    else card.prepend(box);
  }
  const alert = document.createElement("div");
  alert.className = "errors";
  alert.setAttribute("role", "alert");
  const text = document.createElement("strong");
  text.textContent = failureMessage(event.detail.elt, status);
  alert.append(text);
  box.replaceChildren(alert);
}

document.addEventListener("htmx:responseError", (event) =>
  showFailure(event, event.detail.xhr.status),
);
document.addEventListener("htmx:sendError", (event) => showFailure(event, 0));

// A new card replaces the old one: start at its top.
document.addEventListener("htmx:afterSwap", (event) => {
  if (event.detail.target.id === "task-card" || event.detail.elt.id === "task-card") {
    window.scrollTo({ top: 0 });
  }
});

document.addEventListener("click", (event) => {
  const opener = event.target.closest("[data-open-dialog]");
  if (opener) document.getElementById(opener.dataset.openDialog)?.showModal();
  const closer = event.target.closest("[data-close-dialog]");
  if (closer) closer.closest("dialog")?.close();
});

installShortcuts();
const first = document.getElementById("task-card");
if (first) initCard(first);
