"""The leaderboard over the API, as CSV and as a page: who reads it, what it says."""

import csv
import io

import pytest
from django.test import Client
from django.urls import reverse

from feedback.models import Response
from tests.feedback.api.conftest import client_for

pytestmark = pytest.mark.django_db

HOSTILE = "<img src=x onerror=alert(1)>$x^{$"


@pytest.fixture
def hostile_names(project, filled):
    """The shared fixture's two models, one of them renamed to HTML and TeX."""
    Response.objects.filter(prompt__project=project, model_name="model-1").update(
        model_name=HOSTILE
    )
    Response.objects.filter(prompt__project=project, model_name="model-0").update(
        model_name='=HYPERLINK("http://x")'
    )


def test_viewers_read_the_ratings_of_each_model(viewer_client, project, hostile_names):
    url = reverse("api:leaderboard", args=[project.pk])
    board = viewer_client.get(url, {"resamples": 50}).json()
    assert {m["model"] for m in board["models"]} == {HOSTILE, '=HYPERLINK("http://x")'}
    assert board["sources"] == "all" and board["resamples"] == 50
    assert board["first_decided"] > 0 and 0 <= board["first_win_rate"] <= 1
    best = board["models"][0]
    assert best["rank"] == 1 and best["rating_low"] <= best["rating"] <= best["rating_high"]
    assert [p["model_a"] for p in board["pairs"]] == [best["model"]]
    assert {s["feature"] for s in board["style"]} == {"length", "headers", "lists", "bold"}


def test_the_csv_has_the_table_and_keeps_formulas_as_text(viewer_client, project, hostile_names):
    url = reverse("api:leaderboard", args=[project.pk])
    response = viewer_client.get(url, {"format": "csv", "resamples": 0, "sources": "annotators"})
    assert response["Content-Type"].startswith("text/csv")
    assert 'filename="' in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert {row["model"] for row in rows} == {HOSTILE, '\'=HYPERLINK("http://x")'}
    json_board = viewer_client.get(url, {"resamples": 0, "sources": "annotators"}).json()
    for row, model in zip(rows, json_board["models"], strict=True):
        assert float(row["rating"]) == pytest.approx(model["rating"])
        assert row["rating_low"] == ""  # no resamples, no interval


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"sources": "everyone"}, "sources"),
        ({"category": "no-colon"}, "category"),
        ({"resamples": "5000"}, "resamples"),
        ({"min_votes": "-1"}, "min_votes"),
        ({"format": "xlsx"}, "format"),
        ({"include_rankings": ""}, "include_rankings"),
    ],
)
def test_bad_parameters_are_refused_naming_the_field(viewer_client, project, params, field):
    response = viewer_client.get(reverse("api:leaderboard", args=[project.pk]), params)
    assert response.status_code == 400
    assert field in response.json()


def test_annotators_and_outsiders_cannot_read_it(members, outsider, project):
    url = reverse("api:leaderboard", args=[project.pk])
    assert client_for(members["annotator"]).get(url).status_code == 403
    assert client_for(outsider).get(url).status_code == 404
    assert client_for(None).get(url).status_code == 401
    page = reverse("feedback:project-leaderboard", args=[project.pk])
    for user, status in ((members["annotator"], 403), (outsider, 404)):
        browser = Client()
        browser.force_login(user)
        assert browser.get(page).status_code == status
    assert Client().get(page).status_code == 302


def test_the_page_shows_table_and_charts_with_names_escaped(members, project, hostile_names):
    browser = Client()
    browser.force_login(members["viewer"])
    page = reverse("feedback:project-leaderboard", args=[project.pk])
    html = browser.get(page, {"resamples": 30, "sources": "annotators"}).content.decode()
    assert HOSTILE not in html
    assert "&lt;img src=x onerror=alert(1)&gt;$x^{$" in html
    assert html.count('src="data:image/svg+xml;base64,') == 2
    assert "few votes" in html  # the fixture has a handful of votes
    # The download links carry the slice shown.
    assert "sources=annotators" in html and "format=csv" in html
    with_elo = browser.get(page, {"resamples": 0, "online_elo": "true"}).content.decode()
    assert '<option value="true" selected>' in with_elo
    assert '<option value="false" selected>' in html  # online Elo only when asked


def test_the_page_offers_the_prompts_metadata_as_categories(members, project, filled):
    project.prompts.filter(pk=project.prompts.first().pk).update(metadata={"topic": "<b>x</b>"})
    browser = Client()
    browser.force_login(members["admin"])
    page = reverse("feedback:project-leaderboard", args=[project.pk])
    html = browser.get(page, {"category": "topic:<b>x</b>", "resamples": 0}).content.decode()
    assert '<option value="topic:&lt;b&gt;x&lt;/b&gt;" selected>' in html
    assert "between two models on 1 prompt;" in html  # the first pair prompt only
