"""submission_create: every kind stored when valid, refused with a named field when not."""

import pytest

from feedback.models import (
    FreeTextFeedback,
    PairwiseFeedback,
    RankingEntry,
    RatingFeedback,
    SpanFeedback,
    Submission,
)
from feedback.services import (
    FeedbackError,
    FeedbackInput,
    FreeTextInput,
    PairwiseInput,
    RatingInput,
    SpanInput,
    submission_create,
)
from tests.factories import JudgeFactory, ProjectFactory, SpanLabelFactory, task_with_responses

pytestmark = pytest.mark.django_db


def refusal(**kwargs) -> FeedbackError:
    with pytest.raises(FeedbackError) as caught:
        submission_create(**kwargs)
    return caught.value


def test_pairwise_choice_and_strength_are_stored(project, annotator):
    task = task_with_responses(project, "pair", 2)
    feedback = FeedbackInput(pairwise=PairwiseInput(choice="B", strength=3))
    submission = submission_create(
        task=task, annotator=annotator, feedback=feedback, duration_ms=4200
    )
    stored = PairwiseFeedback.objects.get(submission=submission)
    assert (stored.choice, stored.strength) == ("B", 3)
    assert submission.duration_ms == 4200 and submission.annotator == annotator


def test_pairwise_tie_with_strength_is_refused(project, annotator):
    task = task_with_responses(project, "pair", 2)
    error = refusal(
        task=task,
        annotator=annotator,
        feedback=FeedbackInput(pairwise=PairwiseInput(choice="tie", strength=2)),
    )
    assert "A tie has no strength." in error.errors["pairwise"]
    assert not Submission.objects.exists()


def test_pairwise_unknown_choice_is_refused(project, annotator):
    task = task_with_responses(project, "pair", 2)
    error = refusal(
        task=task, annotator=annotator, feedback=FeedbackInput(pairwise=PairwiseInput(choice="C"))
    )
    assert "pairwise.choice" in error.errors


def test_rating_inside_scale_is_stored_per_aspect(project, annotator):
    task = task_with_responses(project, "single", 1)
    response = task.ordered_responses()[0]
    helpfulness, honesty = project.aspects.all()
    feedback = FeedbackInput(
        ratings=[
            RatingInput(response_id=response.pk, aspect_id=helpfulness.pk, value=5),
            RatingInput(response_id=response.pk, aspect_id=honesty.pk, value=7, rationale="ok"),
        ]
    )
    submission_create(task=task, annotator=annotator, feedback=feedback)
    values = dict(RatingFeedback.objects.values_list("aspect__name", "value"))
    assert values == {"Helpfulness": 5, "Honesty": 7}


def test_rating_out_of_scale_is_refused_and_names_the_field(project, annotator):
    task = task_with_responses(project, "single", 1)
    response = task.ordered_responses()[0]
    helpfulness = project.aspects.get(name="Helpfulness")
    error = refusal(
        task=task,
        annotator=annotator,
        feedback=FeedbackInput(
            ratings=[RatingInput(response_id=response.pk, aspect_id=helpfulness.pk, value=6)]
        ),
    )
    assert error.errors["ratings[0].value"] == ["6 is outside Helpfulness's scale 1-5."]
    assert not RatingFeedback.objects.exists()


def test_ranking_that_is_a_permutation_is_stored_in_order(project, annotator):
    task = task_with_responses(project, "list", 3)
    first, second, third = (r.pk for r in task.ordered_responses())
    feedback = FeedbackInput(ranking=[third, first, second])
    submission = submission_create(task=task, annotator=annotator, feedback=feedback)
    order = list(
        RankingEntry.objects.filter(ranking__submission=submission)
        .order_by("rank")
        .values_list("response_id", flat=True)
    )
    assert order == [third, first, second]


@pytest.mark.parametrize("order", ["repeat", "missing", "foreign"])
def test_ranking_that_is_not_a_permutation_is_refused(project, annotator, order):
    task = task_with_responses(project, "list", 3)
    ids = [r.pk for r in task.ordered_responses()]
    other = task_with_responses(project, "list", 1).ordered_responses()[0].pk
    ranking = {
        "repeat": [ids[0], ids[0], ids[1]],
        "missing": ids[:2],
        "foreign": [ids[0], ids[1], other],
    }[order]
    error = refusal(task=task, annotator=annotator, feedback=FeedbackInput(ranking=ranking))
    assert "exactly once" in error.errors["ranking"][0]
    assert not RankingEntry.objects.exists()


def test_overlapping_spans_are_stored(project, annotator):
    task = task_with_responses(project, "single", 1)
    response = task.ordered_responses()[0]
    label = project.span_labels.first()
    spans = [
        SpanInput(response_id=response.pk, label_id=label.pk, start=0, end=10, severity="major"),
        SpanInput(response_id=response.pk, label_id=label.pk, start=5, end=12, comment="why"),
    ]
    submission_create(task=task, annotator=annotator, feedback=FeedbackInput(spans=spans))
    stored = list(SpanFeedback.objects.order_by("start").values_list("start", "end", "severity"))
    assert stored == [(0, 10, "major"), (5, 12, "minor")]


def test_span_past_end_of_response_is_refused(project, annotator):
    task = task_with_responses(project, "single", 1)
    response = task.ordered_responses()[0]
    label = project.span_labels.first()
    past = len(response.text) + 1
    error = refusal(
        task=task,
        annotator=annotator,
        feedback=FeedbackInput(
            spans=[SpanInput(response_id=response.pk, label_id=label.pk, start=2, end=past)]
        ),
    )
    assert "past the response's" in error.errors["spans[0].end"][0]


def test_span_label_of_another_project_is_refused(project, annotator):
    task = task_with_responses(project, "single", 1)
    response = task.ordered_responses()[0]
    foreign_label = SpanLabelFactory(project=ProjectFactory(), name="Elsewhere")
    error = refusal(
        task=task,
        annotator=annotator,
        feedback=FeedbackInput(
            spans=[SpanInput(response_id=response.pk, label_id=foreign_label.pk, start=0, end=3)]
        ),
    )
    assert error.errors["spans[0].label"] == ["Elsewhere is not a label of this project."]


def test_free_text_critique_and_rewrite_are_stored(project, annotator):
    task = task_with_responses(project, "single", 1)
    response = task.ordered_responses()[0]
    texts = [
        FreeTextInput(mode="critique", text="Too vague.", response_id=response.pk),
        FreeTextInput(mode="rewrite", text="A better answer.", response_id=response.pk),
    ]
    submission_create(task=task, annotator=annotator, feedback=FeedbackInput(texts=texts))
    assert set(FreeTextFeedback.objects.values_list("mode", flat=True)) == {"critique", "rewrite"}


def test_blank_free_text_is_refused(project, annotator):
    task = task_with_responses(project, "pair", 2)
    error = refusal(
        task=task,
        annotator=annotator,
        feedback=FeedbackInput(texts=[FreeTextInput(mode="rationale", text="   ")]),
    )
    assert "texts[0].text" in error.errors


def test_annotator_outside_the_project_is_refused(project, outsider):
    task = task_with_responses(project, "pair", 2)
    error = refusal(
        task=task, annotator=outsider, feedback=FeedbackInput(pairwise=PairwiseInput(choice="A"))
    )
    assert "not an annotator of this project" in error.errors["annotator"][0]


def test_superuser_outside_the_project_may_answer_as_in_the_workspace(project, outsider):
    """The workspace opens every project to superusers; their answers are taken there too."""
    outsider.is_superuser = True
    outsider.save()
    task = task_with_responses(project, "pair", 2)
    submission = submission_create(
        task=task, annotator=outsider, feedback=FeedbackInput(pairwise=PairwiseInput(choice="A"))
    )
    assert PairwiseFeedback.objects.get(submission=submission).choice == "A"


def test_kind_the_project_does_not_collect_is_refused(annotator):
    project = annotator.memberships.get().project
    project.collects_ranking = False
    project.save()
    task = task_with_responses(project, "list", 2)
    ids = [r.pk for r in task.ordered_responses()]
    error = refusal(task=task, annotator=annotator, feedback=FeedbackInput(ranking=ids))
    assert "does not collect Ranking" in str(error)


def test_changing_an_answer_keeps_the_old_one_as_history(project, annotator):
    task = task_with_responses(project, "pair", 2)
    first = submission_create(
        task=task, annotator=annotator, feedback=FeedbackInput(pairwise=PairwiseInput("A", 1))
    )
    second = submission_create(
        task=task, annotator=annotator, feedback=FeedbackInput(pairwise=PairwiseInput("tie"))
    )
    first.refresh_from_db()
    assert not first.is_current and second.is_current and second.supersedes == first
    assert list(PairwiseFeedback.objects.order_by("id").values_list("choice", flat=True)) == [
        "A",
        "tie",
    ]


def test_refused_change_leaves_the_current_answer_in_place(project, annotator):
    task = task_with_responses(project, "pair", 2)
    first = submission_create(
        task=task, annotator=annotator, feedback=FeedbackInput(pairwise=PairwiseInput("A", 1))
    )
    refusal(task=task, annotator=annotator, feedback=FeedbackInput(pairwise=PairwiseInput("Z")))
    first.refresh_from_db()
    assert first.is_current and Submission.objects.count() == 1


def test_judge_feedback_records_the_judge(project):
    task = task_with_responses(project, "pair", 2)
    judge = JudgeFactory()
    submission = submission_create(
        task=task, judge=judge, feedback=FeedbackInput(pairwise=PairwiseInput("A", 2))
    )
    assert submission.judge == judge and submission.annotator is None
