"""What the workspace's htmx answers look like to the page."""

from django.http import HttpResponse


def next_card(response: HttpResponse) -> str:
    """The card a submit or skip answers with, swapped in for the one answered; its HTML."""
    assert response.status_code == 200, response.content
    assert response.headers["HX-Retarget"] == "#task-card"
    assert response.headers["HX-Reswap"] == "outerHTML"
    return response.content.decode()
