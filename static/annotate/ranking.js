// Ranking: order responses by drag and drop (SortableJS, vendored) or by keyboard.

function items(list) {
  return [...list.querySelectorAll(":scope > [data-response-id]")];
}

function renumber(list) {
  items(list).forEach((item, index) => {
    item.querySelector(".rank-num").textContent = String(index + 1);
  });
}

function focused(list) {
  return list.querySelector(":scope > [data-response-id]:focus") ?? null;
}

export function focusItem(list, step) {
  const all = items(list);
  const current = focused(list);
  const index = current ? all.indexOf(current) + step : 0;
  all[Math.max(0, Math.min(index, all.length - 1))]?.focus();
}

export function moveFocusedItem(list, step) {
  const item = focused(list);
  if (!item) return;
  const sibling = step > 0 ? item.nextElementSibling : item.previousElementSibling;
  if (!sibling) return;
  if (step > 0) sibling.after(item);
  else sibling.before(item);
  renumber(list);
  item.focus();
}

export function moveItemToRank(list, rank) {
  const item = focused(list);
  if (!item) return;
  const others = items(list).filter((other) => other !== item);
  const index = Math.min(rank - 1, others.length);
  if (index === others.length) list.append(item);
  else others[index].before(item);
  renumber(list);
  item.focus();
}

export function initRanking(card) {
  const list = card.querySelector("[data-ranking]");
  if (!list) return;
  // Mouse-event dragging (forceFallback) behaves the same in every browser and in tests.
  new Sortable(list, {
    animation: 120,
    forceFallback: true,
    ghostClass: "dragging",
    onEnd: () => renumber(list),
  });
  renumber(list);
}
