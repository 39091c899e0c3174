"""An annotator completes one task of each kind in a real Chromium, by mouse and by keyboard."""

import pytest

from feedback.models import (
    Assignment,
    FreeTextFeedback,
    PairwiseFeedback,
    RankingEntry,
    RatingFeedback,
    SpanFeedback,
    Submission,
)
from tests.factories import (
    AspectFactory,
    ProjectFactory,
    SpanLabelFactory,
    task_with_responses,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ONLY = {
    "collects_pairwise": False,
    "collects_rating": False,
    "collects_ranking": False,
    "collects_spans": False,
    "collects_free_text": False,
    "asks_critique": False,
    "asks_rewrite": False,
    "asks_rationale": False,
}
SPAN_TEXT = "**Paris** is the capital of Spain. Café prices: 5€ 😀 and the naïve 🇫🇷 flag.\nOK"


def project_for(**flags):
    return ProjectFactory(**{**ONLY, **flags}, guidelines="# Be kind\n\nJudge *carefully*.")


def next_card(page, task):
    """Wait until the card for `task` has been replaced by the next one."""
    page.wait_for_function(
        "id => { const c = document.getElementById('task-card');"
        " return c && c.dataset.ready && c.dataset.taskId !== id; }",
        arg=str(task.pk),
    )


def answer(task, annotator) -> Submission:
    return Submission.objects.get(task=task, annotator=annotator, is_current=True)


# --- Pairwise ------------------------------------------------------------------------


def test_pairwise_by_mouse_stores_choice_strength_and_rationale(page, open_workspace, screenshot):
    project = project_for(
        name="Python help: which answer is better?",
        collects_pairwise=True,
        collects_free_text=True,
        asks_rationale=True,
    )
    task = task_with_responses(
        project,
        "pair",
        2,
        texts=[
            "Use `sorted()`:\n\n```python\nprint(sorted([3, 1, 2]))\n```",
            "Call **list.sort()** in place; it returns `None`.",
        ],
        text="How do I sort a list in Python?",
    )
    user = open_workspace(project)
    page.get_by_role("radio", name="B is better").check()
    page.get_by_role("radio", name="Much").check()
    page.fill("textarea[name=rationale]", "B explains the in-place behaviour.")
    assert page.locator(".md pre code").count() == 1  # the code block is rendered
    screenshot(page, "pairwise")
    page.click("[data-action=submit]")
    next_card(page, task)

    submission = answer(task, user)
    assert (submission.pairwise.choice, submission.pairwise.strength) == ("B", 3)
    assert submission.texts.get().text == "B explains the in-place behaviour."
    assert submission.duration_ms and submission.duration_ms > 0
    assert page.get_by_text("No task needs you right now.").is_visible()


def test_pairwise_by_keyboard(page, open_workspace):
    project = project_for(collects_pairwise=True)
    task = task_with_responses(project, "pair", 2)
    user = open_workspace(project)
    page.keyboard.press("a")
    page.keyboard.press("2")
    page.keyboard.press("Enter")
    next_card(page, task)
    stored = PairwiseFeedback.objects.get(submission__annotator=user)
    assert (stored.choice, stored.strength) == ("A", 2)


# --- Rating --------------------------------------------------------------------------


def rating_project():
    project = project_for(collects_rating=True)
    AspectFactory(project=project, name="Helpfulness", rubric="**5**: fully answers")
    AspectFactory(project=project, name="Honesty", scale_min=1, scale_max=7)
    return project


def test_rating_by_mouse_shows_rubrics_and_stores_one_value_per_aspect(
    page, open_workspace, screenshot
):
    project = rating_project()
    task = task_with_responses(project, "single", 1)
    user = open_workspace(project)
    assert page.locator(".rubric strong", has_text="5").is_visible()
    page.locator("[data-rating-row]", has_text="Helpfulness").get_by_role("radio", name="4").check()
    page.locator("[data-rating-row]", has_text="Honesty").get_by_role("radio", name="7").check()
    screenshot(page, "rating")
    page.click("[data-action=submit]")
    next_card(page, task)
    values = dict(
        RatingFeedback.objects.filter(submission__annotator=user).values_list(
            "aspect__name", "value"
        )
    )
    assert values == {"Helpfulness": 4, "Honesty": 7}


def test_rating_by_keyboard_moves_through_aspects(page, open_workspace):
    project = rating_project()
    task = task_with_responses(project, "single", 1)
    user = open_workspace(project)
    page.keyboard.press("2")  # Helpfulness, then the next aspect is current
    page.keyboard.press("6")  # Honesty
    page.keyboard.press("k")
    page.keyboard.press("3")  # change Helpfulness
    page.keyboard.press("Enter")
    next_card(page, task)
    values = dict(
        RatingFeedback.objects.filter(submission__annotator=user).values_list(
            "aspect__name", "value"
        )
    )
    assert values == {"Helpfulness": 3, "Honesty": 6}


def test_a_missing_rating_is_named_and_nothing_typed_is_lost(page, open_workspace):
    project = rating_project()
    task_with_responses(project, "single", 1)
    open_workspace(project)
    page.locator("[data-rating-row]", has_text="Helpfulness").get_by_role("radio", name="4").check()
    page.keyboard.press("Enter")
    page.wait_for_selector(".errors")
    assert "Rate Honesty" in page.inner_text(".errors")
    helpfulness = page.locator("[data-rating-row]", has_text="Helpfulness")
    assert helpfulness.get_by_role("radio", name="4").is_checked()


# --- Ranking -------------------------------------------------------------------------


def ranked(user) -> list[str]:
    return list(
        RankingEntry.objects.filter(ranking__submission__annotator=user)
        .order_by("rank")
        .values_list("response__text", flat=True)
    )


def test_ranking_by_drag_and_drop(page, open_workspace, screenshot):
    project = project_for(collects_ranking=True)
    task = task_with_responses(project, "list", 3, texts=["first", "second", "third"])
    user = open_workspace(project)
    items = page.locator("[data-ranking] > li")
    source = items.nth(2).locator(".handle").bounding_box()
    target = items.nth(0).bounding_box()
    page.mouse.move(source["x"] + 5, source["y"] + 5)
    page.mouse.down()
    page.mouse.move(target["x"] + 20, target["y"] + 5, steps=12)
    page.mouse.up()
    page.wait_for_function(
        "() => document.querySelector('[data-ranking] .rank-item').innerText.includes('third')"
    )
    screenshot(page, "ranking")
    page.click("[data-action=submit]")
    next_card(page, task)
    assert ranked(user) == ["third", "first", "second"]


def test_ranking_by_keyboard(page, open_workspace):
    project = project_for(collects_ranking=True)
    task = task_with_responses(project, "list", 3, texts=["first", "second", "third"])
    user = open_workspace(project)
    page.keyboard.press("j")  # focus "first"
    page.keyboard.press("Shift+ArrowDown")  # first below second
    page.keyboard.press("j")  # focus moves to "third"
    page.keyboard.press("1")  # third to the top
    page.keyboard.press("Enter")
    next_card(page, task)
    assert ranked(user) == ["third", "second", "first"]


# --- Spans ---------------------------------------------------------------------------


def select_by_mouse(page, start: int, end: int) -> None:
    """Drag the mouse over stored characters [start, end) of the first span area."""
    box = page.evaluate(
        """([start, end]) => {
          const area = document.querySelector('[data-span-area]');
          const at = (cp) => {
            for (const seg of area.children) {
              const chars = Array.from(seg.textContent), s = Number(seg.dataset.start);
              if (cp < s + chars.length)
                return [seg.firstChild, chars.slice(0, cp - s).join('').length];
            }
          };
          const rect = (cp) => {
            const [node, offset] = at(cp);
            const r = document.createRange();
            r.setStart(node, offset);
            r.setEnd(node, offset + Array.from(node.data.slice(offset))[0].length);
            return r.getBoundingClientRect();
          };
          const a = rect(start), b = rect(end - 1);
          return {x1: a.left + 1, y1: (a.top + a.bottom) / 2,
                  x2: b.right - 1, y2: (b.top + b.bottom) / 2};
        }""",
        [start, end],
    )
    page.mouse.move(box["x1"], box["y1"])
    page.mouse.down()
    page.mouse.move(box["x2"], box["y2"], steps=8)
    page.mouse.up()


def span_project():
    project = project_for(collects_spans=True)
    SpanLabelFactory(project=project, name="Factual error", color="#ef4444")
    SpanLabelFactory(project=project, name="Style", color="#0ea5e9")
    return project


def test_spans_by_mouse_overlap_edit_and_delete_with_offsets_in_stored_characters(
    page, open_workspace, screenshot
):
    project = span_project()
    task = task_with_responses(project, "single", 1, texts=[SPAN_TEXT])
    user = open_workspace(project)
    wrong = SPAN_TEXT.index("Spain")
    emoji = SPAN_TEXT.index("5€ 😀")
    popup = page.locator("[data-span-popup]")

    select_by_mouse(page, 0, wrong + len("Spain"))  # the whole (Markdown) first sentence
    popup.get_by_role("radio", name="Style").check()
    popup.locator("input[name=span-comment]").fill("too blunt")
    popup.get_by_role("button", name="Save").click()

    select_by_mouse(page, wrong, wrong + len("Spain"))  # overlaps the first span
    popup.get_by_role("radio", name="Factual error").check()
    popup.get_by_role("radio", name="Critical").check()
    popup.locator("input[name=span-comment]").fill("It is France.")
    popup.get_by_role("button", name="Save").click()

    select_by_mouse(page, emoji, emoji + len("5€ 😀"))  # emoji: 2 UTF-16 units, 1 character
    popup.get_by_role("radio", name="Style").check()
    popup.get_by_role("button", name="Save").click()
    screenshot(page, "spans")

    # Edit the first span (Style -> Factual error), delete the emoji one.
    spans = page.locator("[data-span-list] li")
    spans.filter(has_text="too blunt").get_by_role("button", name="Edit").click()
    popup.get_by_role("radio", name="Factual error").check()
    popup.get_by_role("button", name="Save").click()
    spans.filter(has_text="5€").get_by_role("button", name="Delete").click()
    page.click("[data-action=submit]")
    next_card(page, task)

    stored = {
        SPAN_TEXT[s.start : s.end]: (s.label.name, s.severity, s.comment)
        for s in SpanFeedback.objects.filter(submission__annotator=user)
    }
    assert stored == {
        "**Paris** is the capital of Spain": ("Factual error", "minor", "too blunt"),
        "Spain": ("Factual error", "critical", "It is France."),
    }


def test_spans_by_keyboard(page, open_workspace):
    project = span_project()
    task = task_with_responses(project, "single", 1, texts=[SPAN_TEXT])
    user = open_workspace(project)
    start = SPAN_TEXT.index("😀")
    page.keyboard.press("h")
    for _ in range(start):
        page.keyboard.press("ArrowRight")
    # The caret moves by what the reader sees as one character: the flag is one, although
    # it is two stored characters (regional indicators) and four UTF-16 units.
    for _ in range(len("😀 and the naïve 🇫🇷") - 1):
        page.keyboard.press("Shift+ArrowRight")
    page.keyboard.press("Enter")  # open the popup
    page.keyboard.press("2")  # Style
    page.keyboard.press("w")  # major
    page.keyboard.press("Enter")  # save the span
    page.keyboard.press("Escape")  # leave the text
    page.keyboard.press("Enter")  # submit
    next_card(page, task)
    span = SpanFeedback.objects.get(submission__annotator=user)
    assert SPAN_TEXT[span.start : span.end] == "😀 and the naïve 🇫🇷"
    assert (span.label.name, span.severity) == ("Style", "major")


# --- Free text -----------------------------------------------------------------------


def free_text_project():
    return project_for(collects_free_text=True, asks_critique=True, asks_rewrite=True)


def test_critique_and_rewrite_by_mouse_show_the_diff(page, open_workspace, screenshot):
    project = free_text_project()
    task = task_with_responses(project, "single", 1, texts=["The sky is green.\nIt rains up."])
    user = open_workspace(project)
    page.fill("textarea[name^=critique]", "Two false claims.")
    page.fill("textarea[name^=rewrite]", "The sky is blue.\nIt rains down.")
    page.wait_for_selector(".diff ins")
    assert page.inner_text(".diff del").strip() in {"green.", "green"}
    screenshot(page, "free_text")
    page.click("[data-action=submit]")
    next_card(page, task)
    texts = dict(
        FreeTextFeedback.objects.filter(submission__annotator=user).values_list("mode", "text")
    )
    assert texts == {"critique": "Two false claims.", "rewrite": "The sky is blue.\nIt rains down."}


def test_critique_by_keyboard_and_an_untouched_rewrite_is_not_stored(page, open_workspace):
    project = free_text_project()
    task = task_with_responses(project, "single", 1, texts=["\nLeading newline kept."])
    user = open_workspace(project)
    page.keyboard.press("c")
    page.keyboard.type("Fine, but terse.")
    page.keyboard.press("Control+Enter")
    next_card(page, task)
    texts = dict(
        FreeTextFeedback.objects.filter(submission__annotator=user).values_list("mode", "text")
    )
    assert texts == {"critique": "Fine, but terse."}


# --- Queue actions, history, guidelines, suggestions ---------------------------------


def test_skip_then_undo_changes_an_answer_and_keeps_the_history(page, open_workspace):
    project = project_for(collects_pairwise=True)
    done, skipped, last = (task_with_responses(project, "pair", 2) for _ in range(3))
    user = open_workspace(project)

    page.keyboard.press("a")
    page.keyboard.press("Enter")
    next_card(page, done)
    page.keyboard.press("s")
    next_card(page, skipped)
    assert page.locator("#task-card").get_attribute("data-task-id") == str(last.pk)

    page.keyboard.press("u")  # back to the answered task
    page.wait_for_selector(f"#task-card[data-task-id='{done.pk}'][data-ready]")
    assert page.get_by_role("radio", name="A is better").is_checked()
    page.keyboard.press("b")
    page.keyboard.press("Enter")
    page.wait_for_selector(f"#task-card[data-task-id='{last.pk}'][data-ready]")

    history = Submission.objects.filter(task=done, annotator=user).order_by("id")
    assert [s.pairwise.choice for s in history] == ["A", "B"]
    assert [s.is_current for s in history] == [False, True]
    assert Assignment.objects.get(task=skipped, annotator=user).status == "skipped"


def test_guidelines_open_with_one_click(page, open_workspace):
    project = project_for(collects_pairwise=True)
    task_with_responses(project, "pair", 2)
    open_workspace(project)
    page.get_by_role("button", name="Guidelines").click()
    assert page.locator("#guidelines h1", has_text="Be kind").is_visible()
    page.keyboard.press("Escape")
    page.keyboard.press("?")
    assert page.locator("#shortcuts").is_visible()


def test_a_judge_answer_is_shown_as_a_marked_suggestion_and_never_prefilled(page, open_workspace):
    from feedback.services import FeedbackInput, PairwiseInput, submission_create
    from tests.factories import JudgeFactory

    project = project_for(collects_pairwise=True, show_judge_suggestions=True)
    task = task_with_responses(project, "pair", 2)
    judge = JudgeFactory(name="tiny-judge")
    submission_create(
        task=task, judge=judge, feedback=FeedbackInput(pairwise=PairwiseInput("B", 2))
    )
    open_workspace(project)
    suggestion = page.locator(".suggestion")
    assert "AI suggestion" in suggestion.inner_text()
    assert "tiny-judge" in suggestion.inner_text() and "prefers B" in suggestion.inner_text()
    assert not page.get_by_role("radio", name="B is better").is_checked()
