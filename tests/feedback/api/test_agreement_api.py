"""Agreement and consistency over the API, on the shared three-annotator fixture."""

import pytest
from django.urls import reverse

from feedback.models import Judge
from feedback.services import FeedbackInput, PairwiseInput, RatingInput, submission_create

pytestmark = pytest.mark.django_db


def test_agreement_reports_every_kind_per_project_and_per_annotator(viewer_client, project, filled):
    result = viewer_client.get(reverse("api:project-agreement", args=[project.pk])).json()
    # Choices A,A,A / A,A,A / B,B,A / tie,tie,A: observed 2/3, expected 1/2.
    assert result["pairwise"]["fleiss_kappa"] == pytest.approx(1 / 3)
    # annotator and ann2 always agree (kappa 1); ann3 always says A (kappa 0 with each).
    assert result["pairwise"]["items"] == 4
    assert result["pairwise"]["mean_cohen_kappa"] == pytest.approx(1 / 3)
    assert result["pairwise"]["raters"] == pytest.approx({"annotator": 0.5, "ann2": 0.5, "ann3": 0})
    helpfulness = next(a for a in result["ratings"] if a["aspect"] == "Helpfulness")
    assert helpfulness["krippendorff_alpha"] is not None
    assert set(helpfulness["alpha_without_rater"]) == {"annotator", "ann2", "ann3"}
    # Two rankers agree, the third reverses: taus 1, -1, -1.
    assert result["rankings"]["mean_kendall_tau"] == pytest.approx(-1 / 3)
    assert 0 < result["spans"]["mean_f1"] < 1


def test_agreement_can_count_judges_as_raters(viewer_client, project, filled):
    url = reverse("api:project-agreement", args=[project.pk])
    people = viewer_client.get(url).json()["pairwise"]["fleiss_kappa"]
    everyone = viewer_client.get(url, {"sources": "all"}).json()["pairwise"]["fleiss_kappa"]
    assert everyone != people  # the judge's B on the first pair breaks its unanimity


def test_a_judge_sharing_tasks_with_annotators_gets_a_kappa_under_its_name(
    viewer_client, project, filled
):
    judge = Judge.objects.get(name="judge-a")
    submission_create(
        task=filled["pairs"][1], judge=judge, feedback=FeedbackInput(pairwise=PairwiseInput("A"))
    )
    url = reverse("api:project-agreement", args=[project.pk])
    raters = viewer_client.get(url, {"sources": "all"}).json()["pairwise"]["raters"]
    # B then A against the annotators' A, A: agreement no better than chance.
    assert raters["judge:judge-a"] == pytest.approx(0)


def test_consistency_counts_where_ratings_contradict_choices(viewer_client, project, filled):
    result = viewer_client.get(reverse("api:project-consistency", args=[project.pk])).json()
    people = result["annotators"]["pooled"]
    assert (people["compared"], people["opposite"], people["rating_ties"]) == (10, 2, 0)
    assert people["disagreement_rate"] == pytest.approx(0.2)
    assert result["annotators"]["same_rater"]["compared"] == 10
    assert result["judges"]["pooled"]["opposite"] == 1
    assert result["judges"]["same_rater"]["compared"] == 0


def test_span_f1_leaves_out_a_judge_that_was_not_asked_for_spans(viewer_client, project, filled):
    url = reverse("api:project-agreement", args=[project.pk])
    before = viewer_client.get(url, {"sources": "all"}).json()["spans"]
    judge = Judge.objects.get(name="judge-a")
    for task in filled["singles"]:
        response_id = task.links.get().response_id
        aspect = project.aspects.first()
        submission_create(
            task=task,
            judge=judge,
            feedback=FeedbackInput(ratings=[RatingInput(response_id, aspect.pk, 3)]),
        )
    after = viewer_client.get(url, {"sources": "all"}).json()["spans"]
    assert after == before
    assert "judge:judge-a" not in after["raters"]
    # Asked for spans and finding none, it disagrees with everyone who marked some.
    for task in filled["singles"]:
        submission_create(task=task, judge=judge, feedback=FeedbackInput(spans_checked=True))
    checked = viewer_client.get(url, {"sources": "all"}).json()["spans"]
    assert checked["raters"]["judge:judge-a"] == 0
