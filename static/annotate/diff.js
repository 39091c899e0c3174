// Rewrite mode: show the annotator's edit as a word diff against the response (jsdiff).

function render(out, original, edited) {
  const parts = Diff.diffWords(original, edited);
  const changed = parts.some((part) => part.added || part.removed);
  out.hidden = !changed;
  out.replaceChildren(
    ...parts.map((part) => {
      const el = document.createElement(part.added ? "ins" : part.removed ? "del" : "span");
      el.textContent = part.value;
      return el;
    }),
  );
}

export function initDiffs(card, data) {
  for (const area of card.querySelectorAll("textarea[data-rewrite]")) {
    const out = card.querySelector(`[data-diff-for="${area.dataset.rewrite}"]`);
    const original = data.texts[area.dataset.rewrite].replaceAll("\r\n", "\n");
    let timer;
    area.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => render(out, original, area.value), 120);
    });
    render(out, original, area.value);
  }
}
