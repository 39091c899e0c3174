// Span marking: select text, pick a label and a severity, add a comment.
//
// Offsets are stored in characters (Unicode code points) of the stored response text, the
// way Python counts them. The text is shown as written (no Markdown rendering), split into
// segments at every span boundary; each segment carries its start offset in code points, so
// a DOM selection maps back to stored offsets exactly. JS strings count UTF-16 units, so
// lengths inside a segment are converted with Array.from (one entry per code point).

const SEVERITY_KEYS = { q: "minor", w: "major", e: "critical" };

const codePoints = (text) => Array.from(text).length;

function hexAlpha(color, alpha) {
  const n = parseInt(color.slice(1), 16);
  return `rgba(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255}, ${alpha})`;
}

export function initSpans(card, data) {
  const areas = [...card.querySelectorAll("[data-span-area]")];
  if (!areas.length) return;
  const input = card.querySelector("[data-spans-input]");
  const popup = card.querySelector("[data-span-popup]");
  const labels = new Map(data.labels.map((label) => [String(label.id), label]));
  // Colours come as data, set through the CSSOM: the CSP refuses style attributes.
  for (const pill of popup?.querySelectorAll("[data-label-color]") ?? []) {
    pill.style.setProperty("--label", pill.dataset.labelColor);
  }
  const spans = data.spans.map((span) => ({ ...span }));
  let draft = null; // {index|null, response_id, start, end}

  function areaFor(responseId) {
    return areas.find((area) => area.dataset.responseId === String(responseId));
  }

  function quote(span) {
    return Array.from(data.texts[String(span.response_id)]).slice(span.start, span.end).join("");
  }

  function renderArea(area) {
    const rid = area.dataset.responseId;
    const chars = Array.from(data.texts[rid]);
    const mine = spans
      .map((span, index) => ({ ...span, index }))
      .filter((span) => String(span.response_id) === rid);
    const cuts = new Set([0, chars.length]);
    for (const span of mine) cuts.add(span.start).add(span.end);
    const points = [...cuts].sort((a, b) => a - b);
    const segments = [];
    for (let k = 0; k + 1 < points.length; k++) {
      const [start, end] = [points[k], points[k + 1]];
      const segment = document.createElement("span");
      segment.dataset.start = String(start);
      segment.textContent = chars.slice(start, end).join("");
      // Shortest first: the innermost span colours the background, every span adds a line.
      const covering = mine
        .filter((span) => span.start <= start && span.end >= end)
        .sort((a, b) => a.end - a.start - (b.end - b.start));
      if (covering.length) {
        const colors = covering.map((span) => labels.get(String(span.label_id))?.color ?? "#999999");
        segment.className = "mark";
        segment.dataset.spans = covering.map((span) => span.index).join(" ");
        segment.style.background = hexAlpha(colors[0], 0.25);
        segment.style.boxShadow = colors
          .map((color, i) => `inset 0 -${2 * (i + 1)}px 0 ${color}`)
          .join(", ");
        segment.title = covering
          .map((span) => `${labels.get(String(span.label_id))?.name} (${span.severity})`)
          .join("; ");
      }
      segments.push(segment);
    }
    area.replaceChildren(...segments);
  }

  function renderList(rid) {
    const list = card.querySelector(`[data-span-list="${rid}"]`);
    const rows = spans
      .map((span, index) => ({ span, index }))
      .filter(({ span }) => String(span.response_id) === rid)
      .sort((a, b) => a.span.start - b.span.start || a.span.end - b.span.end)
      .map(({ span, index }) => {
        const label = labels.get(String(span.label_id));
        const li = document.createElement("li");
        li.dataset.spanIndex = String(index);
        const chip = document.createElement("span");
        chip.className = "chip";
        chip.style.setProperty("--label", label?.color ?? "#999999");
        chip.textContent = `${label?.name ?? "?"} · ${span.severity}`;
        const text = document.createElement("q");
        text.textContent = quote(span);
        const comment = document.createElement("small");
        comment.textContent = span.comment ? ` ${span.comment}` : "";
        const edit = document.createElement("button");
        edit.type = "button";
        edit.textContent = "Edit";
        edit.dataset.spanEdit = String(index);
        const remove = document.createElement("button");
        remove.type = "button";
        remove.textContent = "Delete";
        remove.dataset.spanRemove = String(index);
        li.append(chip, " ", text, comment, " ", edit, " ", remove);
        return li;
      });
    list.replaceChildren(...rows);
  }

  function sync() {
    input.value = JSON.stringify(spans);
    for (const area of areas) {
      renderArea(area);
      renderList(area.dataset.responseId);
    }
  }

  // --- From a DOM selection to stored offsets --------------------------------------
  function pointOffset(area, node, offset) {
    if (node.nodeType === Node.TEXT_NODE) {
      const segment = node.parentElement.closest("[data-start]");
      return Number(segment.dataset.start) + codePoints(node.data.slice(0, offset));
    }
    if (node === area) {
      const child = area.childNodes[offset];
      return child ? Number(child.dataset.start) : codePoints(data.texts[area.dataset.responseId]);
    }
    const segment = node.closest("[data-start]");
    return Number(segment.dataset.start) + (offset === 0 ? 0 : codePoints(segment.textContent));
  }

  function selectionIn(area) {
    const selection = window.getSelection();
    if (!selection.rangeCount || selection.isCollapsed) return null;
    const range = selection.getRangeAt(0);
    if (!area.contains(range.startContainer) || !area.contains(range.endContainer)) return null;
    const start = pointOffset(area, range.startContainer, range.startOffset);
    const end = pointOffset(area, range.endContainer, range.endOffset);
    return end > start ? { start, end, rect: range.getBoundingClientRect() } : null;
  }

  // --- The popup -------------------------------------------------------------------
  function openPopup(next, rect) {
    draft = next;
    const span = next.index === null ? null : spans[next.index];
    popup.querySelector("[data-span-quote]").textContent = quote(next);
    for (const radio of popup.querySelectorAll("input[name=span-label]")) {
      radio.checked = span !== null && radio.value === String(span.label_id);
    }
    for (const radio of popup.querySelectorAll("input[name=span-severity]")) {
      radio.checked = span !== null && radio.value === span.severity;
    }
    popup.querySelector("input[name=span-comment]").value = span?.comment ?? "";
    popup.querySelector("[data-span-delete]").hidden = span === null;
    const box = card.getBoundingClientRect();
    popup.style.top = `${rect.bottom - box.top + 6}px`;
    popup.style.left = `${Math.max(0, rect.left - box.left)}px`;
    popup.hidden = false;
    popup.classList.remove("invalid");
    popup.querySelector("input[name=span-label]")?.focus({ preventScroll: true });
  }

  function closePopup() {
    const area = draft && areaFor(draft.response_id);
    draft = null;
    popup.hidden = true;
    window.getSelection().removeAllRanges();
    area?.focus({ preventScroll: true });
  }

  function chooseLabel(radio) {
    radio.checked = true;
    const severityChosen = popup.querySelector("input[name=span-severity]:checked");
    if (!severityChosen) {
      const severity = radio.dataset.severity;
      popup.querySelector(`input[name=span-severity][value="${severity}"]`).checked = true;
    }
  }

  function save() {
    const label = popup.querySelector("input[name=span-label]:checked");
    if (!draft || !label) {
      popup.classList.add("invalid");
      return;
    }
    const severity = popup.querySelector("input[name=span-severity]:checked")?.value ?? "minor";
    const span = {
      response_id: Number(draft.response_id),
      label_id: Number(label.value),
      start: draft.start,
      end: draft.end,
      severity,
      comment: popup.querySelector("input[name=span-comment]").value.trim(),
    };
    if (draft.index === null) spans.push(span);
    else spans[draft.index] = span;
    sync();
    closePopup();
  }

  function remove(index) {
    spans.splice(index, 1);
    sync();
  }

  popup.addEventListener("change", (event) => {
    if (event.target.name === "span-label") chooseLabel(event.target);
  });
  popup.addEventListener("click", (event) => {
    if (event.target.closest("[data-span-save]")) save();
    else if (event.target.closest("[data-span-cancel]")) closePopup();
    else if (event.target.closest("[data-span-delete]")) {
      const index = draft.index;
      closePopup();
      remove(index);
    }
  });
  popup.addEventListener("keydown", (event) => {
    const inComment = event.target.name === "span-comment";
    let handled = true;
    if (event.key === "Escape") closePopup();
    else if (event.key === "Enter") save();
    else if (inComment) handled = false;
    else if (/^[1-9]$/.test(event.key)) {
      const radio = popup.querySelectorAll("input[name=span-label]")[Number(event.key) - 1];
      if (radio) chooseLabel(radio);
    } else if (SEVERITY_KEYS[event.key]) {
      const value = SEVERITY_KEYS[event.key];
      popup.querySelector(`input[name=span-severity][value="${value}"]`).checked = true;
    } else if (event.key === "Delete" && draft?.index !== null) {
      const index = draft.index;
      closePopup();
      remove(index);
    } else handled = false;
    if (handled) {
      event.preventDefault();
      event.stopPropagation();
    }
  });

  card.addEventListener("click", (event) => {
    const edit = event.target.closest("[data-span-edit]");
    if (edit) {
      const index = Number(edit.dataset.spanEdit);
      openPopup({ index, ...spans[index] }, edit.getBoundingClientRect());
      return;
    }
    const removeButton = event.target.closest("[data-span-remove]");
    if (removeButton) remove(Number(removeButton.dataset.spanRemove));
  });

  for (const area of areas) {
    area.addEventListener("mouseup", (event) => {
      const selected = selectionIn(area);
      if (selected) {
        const { start, end, rect } = selected;
        openPopup({ index: null, response_id: area.dataset.responseId, start, end }, rect);
        return;
      }
      // A click on a marked part edits its innermost span.
      const mark = event.target.closest(".mark");
      if (mark) {
        const index = Number(mark.dataset.spans.split(" ")[0]);
        openPopup({ index, ...spans[index] }, mark.getBoundingClientRect());
      }
    });
    // Keyboard selection: arrows move a caret through the text, Shift extends, Enter marks.
    area.addEventListener("keydown", (event) => {
      const selection = window.getSelection();
      const arrows = {
        ArrowLeft: "backward",
        ArrowRight: "forward",
        ArrowUp: "backward",
        ArrowDown: "forward",
      };
      if (arrows[event.key]) {
        if (!selection.rangeCount || !area.contains(selection.anchorNode)) {
          const first = area.firstChild?.firstChild;
          if (!first) return;
          selection.collapse(first, 0);
        }
        const unit = event.key.startsWith("ArrowU") || event.key.startsWith("ArrowD")
          ? "line"
          : event.ctrlKey || event.altKey
            ? "word"
            : "character";
        selection.modify(event.shiftKey ? "extend" : "move", arrows[event.key], unit);
      } else if (event.key === "Enter") {
        const selected = selectionIn(area);
        if (!selected) return;
        openPopup(
          { index: null, response_id: area.dataset.responseId, start: selected.start, end: selected.end },
          selected.rect,
        );
      } else if (event.key === "Escape") {
        area.blur();
        card.focus({ preventScroll: true });
      } else return;
      event.preventDefault();
      event.stopPropagation();
    });
  }

  sync();
}
