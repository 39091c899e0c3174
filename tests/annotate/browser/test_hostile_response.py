"""Model output that tries to run script is shown as text and runs nothing."""

import pytest

from tests.factories import ProjectFactory, task_with_responses

pytestmark = [pytest.mark.browser, pytest.mark.slow]

HOSTILE = (
    "<script>window.pwned = 'script'</script>\n\n"
    '<img src="x" onerror="window.pwned = \'onerror\'">\n\n'
    "[click me](javascript:window.pwned='link') and "
    "<a href=\"javascript:window.pwned='anchor'\">raw link</a>"
)


def test_a_response_with_script_onerror_and_javascript_links_renders_as_text(
    page, open_workspace, screenshot
):
    project = ProjectFactory(
        collects_pairwise=True,
        collects_rating=False,
        collects_ranking=False,
        collects_spans=False,
        collects_free_text=False,
    )
    task_with_responses(project, "pair", 2, texts=[HOSTILE, "A harmless answer."])
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    open_workspace(project)

    response = page.locator(".pair .response").first
    shown = response.inner_text()
    assert "<script>window.pwned = 'script'</script>" in shown
    assert '<img src="x" onerror=' in shown
    assert response.locator("script, img, [onerror]").count() == 0
    assert response.locator("a[href^='javascript']").count() == 0
    response.get_by_text("click me").click()
    response.get_by_text("raw link").click()
    page.wait_for_timeout(200)
    screenshot(page, "hostile")
    assert page.evaluate("window.pwned") is None
    assert dialogs == []
