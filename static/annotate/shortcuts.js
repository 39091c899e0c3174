// Keyboard shortcuts for every choice, submit, skip and undo. The list is in the page
// (annotate/_shortcuts.html); keep the two in step.
import { moveFocusedItem, moveItemToRank, focusItem } from "./ranking.js";

const TYPING = "input[type=text], input:not([type]), textarea, select, [contenteditable=true]";

function card() {
  return document.getElementById("task-card");
}

function click(selector) {
  const target = card()?.querySelector(selector);
  if (target) target.click();
  return Boolean(target);
}

export function submitTask() {
  const form = card()?.querySelector("#task-form");
  if (form) form.requestSubmit();
}

function ratingRows(root) {
  return [...root.querySelectorAll("[data-rating-row]")];
}

function currentRatingIndex(rows) {
  const index = rows.findIndex((row) => row.classList.contains("current"));
  return index < 0 ? 0 : index;
}

function setRatingRow(rows, index) {
  rows.forEach((row, i) => row.classList.toggle("current", i === index));
  rows[index]?.scrollIntoView({ block: "nearest" });
}

function onRatingKey(root, key) {
  const rows = ratingRows(root);
  if (!rows.length) return false;
  const index = currentRatingIndex(rows);
  if (key === "j" || key === "ArrowDown") {
    setRatingRow(rows, Math.min(index + 1, rows.length - 1));
    return true;
  }
  if (key === "k" || key === "ArrowUp") {
    setRatingRow(rows, Math.max(index - 1, 0));
    return true;
  }
  if (/^[0-9]$/.test(key)) {
    const radio = rows[index].querySelector(`input[type=radio][value="${key}"]`);
    if (!radio) return true;
    radio.click();
    setRatingRow(rows, Math.min(index + 1, rows.length - 1));
    return true;
  }
  return false;
}

function onRankingKey(root, event) {
  const list = root.querySelector("[data-ranking]");
  if (!list) return false;
  const { key, shiftKey } = event;
  const down = key === "ArrowDown" || key === "j" || key === "J";
  const up = key === "ArrowUp" || key === "k" || key === "K";
  if ((down || up) && shiftKey) {
    moveFocusedItem(list, down ? 1 : -1);
    return true;
  }
  if (down || up) {
    focusItem(list, down ? 1 : -1);
    return true;
  }
  if (/^[1-9]$/.test(key)) {
    moveItemToRank(list, Number(key));
    return true;
  }
  return false;
}

function onKey(event) {
  const root = card();
  if (!root || event.defaultPrevented) return;
  if (document.querySelector("dialog[open]")) return; // Esc closes it natively
  const target = event.target;
  if (target.closest?.("[data-span-popup]")) return; // the popup has its own keys
  if (target.matches?.(TYPING)) {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      submitTask();
    } else if (event.key === "Escape") {
      target.blur();
      root.focus({ preventScroll: true });
    }
    return;
  }
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const key = event.key;
  let handled = true;
  if (key === "Enter") {
    if (target.matches?.("button, a, summary")) return; // let it act as clicked
    submitTask();
  } else if (key === "s") {
    click("[data-action=skip]");
  } else if (key === "u") {
    click("[data-action=previous]");
  } else if (key === "g") {
    document.getElementById("guidelines")?.showModal();
  } else if (key === "?") {
    document.getElementById("shortcuts")?.showModal();
  } else if (key === "h") {
    root.querySelector("[data-span-area]")?.focus();
  } else if (onRatingKey(root, key) || onRankingKey(root, event)) {
    // handled there
  } else if (root.querySelector(`[data-key-focus="${CSS.escape(key)}"]`)) {
    root.querySelector(`[data-key-focus="${CSS.escape(key)}"]`).focus();
  } else if (!click(`[data-key="${CSS.escape(key)}"]`)) {
    handled = false;
  }
  if (handled) event.preventDefault();
}

export function installShortcuts() {
  document.addEventListener("keydown", onKey);
}
