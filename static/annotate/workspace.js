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
  const dataScript = card.querySelector("#card-data");
  const data = dataScript ? JSON.parse(dataScript.textContent) : null;
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
});

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
