"""A submit that fails is said in the task card, and the annotator's input stays.

htmx swaps nothing on a 4xx/5xx (other than the 422 error list) or a dropped connection, so
without a message the page would look as if the answer had been saved.
"""

import re

import pytest

from feedback.models import Submission
from tests.factories import ProjectFactory, task_with_responses

pytestmark = [pytest.mark.browser, pytest.mark.slow]

RATIONALE = "B is right: İstanbul 🚀 <script>alert(1)</script> שלום"
ALERT = "#task-card #task-errors [role=alert]"


@pytest.fixture
def pair_card(page, open_workspace):
    """A pairwise card with B, Much and a rationale filled in; the task is returned."""
    project = ProjectFactory(
        collects_rating=False,
        collects_ranking=False,
        collects_spans=False,
        asks_critique=False,
        asks_rewrite=False,
    )
    task = task_with_responses(project, "pair", 2, texts=["Short.", "Longer, with detail."])
    open_workspace(project)
    page.get_by_role("radio", name="B is better").check()
    page.get_by_role("radio", name="Much").check()
    page.fill("textarea[name=rationale]", RATIONALE)
    return task


def input_is_kept(page) -> bool:
    return (
        page.get_by_role("radio", name="B is better").is_checked()
        and page.get_by_role("radio", name="Much").is_checked()
        and page.input_value("textarea[name=rationale]") == RATIONALE
    )


@pytest.mark.parametrize(
    ("status", "says"),
    [(500, r"not saved.*500"), (413, r"not saved.*too large"), (401, r"not saved.*log in")],
)
def test_a_failed_submit_is_shown_in_the_card_and_the_form_is_kept(page, pair_card, status, says):
    page.route(re.compile(r".*/submit/$"), lambda route: route.fulfill(status=status, body="x"))
    page.click("[data-action=submit]")
    alert = page.locator(ALERT)
    alert.wait_for()
    assert re.search(says, alert.inner_text(), re.IGNORECASE | re.DOTALL)
    assert page.locator("#task-card").get_attribute("data-task-id") == str(pair_card.pk)
    assert input_is_kept(page)
    assert not Submission.objects.exists()


def test_a_dropped_connection_is_shown_and_a_retry_then_saves(page, pair_card):
    page.route(re.compile(r".*/submit/$"), lambda route: route.abort())
    page.click("[data-action=submit]")
    page.locator(ALERT).wait_for()
    assert "not saved" in page.locator(ALERT).inner_text()
    assert input_is_kept(page)

    page.unroute(re.compile(r".*/submit/$"))
    page.click("[data-action=submit]")
    page.wait_for_function(
        "id => document.getElementById('task-card')?.dataset.taskId !== id",
        arg=str(pair_card.pk),
    )
    submission = Submission.objects.get()
    assert submission.pairwise.choice == "B"
    assert submission.texts.get().text == RATIONALE
