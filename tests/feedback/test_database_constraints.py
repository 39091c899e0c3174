"""The rules one row can state hold in the database too, whatever code writes the row."""

import pytest
from django.db import IntegrityError, transaction

from feedback.models import (
    FreeTextFeedback,
    PairwiseFeedback,
    Project,
    Prompt,
    RankingEntry,
    RankingFeedback,
    RatingAspect,
    RatingFeedback,
    SpanFeedback,
    SpanLabel,
    Submission,
)
from tests.factories import JudgeFactory, task_with_responses

pytestmark = pytest.mark.django_db


def refused_by(constraint: str, create) -> None:
    with pytest.raises(IntegrityError, match=constraint), transaction.atomic():
        create()


@pytest.fixture
def pair_submission(project, annotator):
    task = task_with_responses(project, "pair", 2)
    return Submission.objects.create(task=task, annotator=annotator)


def test_tie_with_strength(pair_submission):
    refused_by(
        "pairwisefeedback_tie_has_no_strength",
        lambda: PairwiseFeedback.objects.create(
            submission=pair_submission, choice="tie", strength=1
        ),
    )


def test_unknown_pairwise_choice(pair_submission):
    refused_by(
        "pairwisefeedback_choice_valid",
        lambda: PairwiseFeedback.objects.create(submission=pair_submission, choice="C"),
    )


def test_second_rating_of_the_same_aspect(pair_submission, project):
    aspect = project.aspects.first()
    response = pair_submission.task.ordered_responses()[0]
    RatingFeedback.objects.create(
        submission=pair_submission, response=response, aspect=aspect, value=3
    )
    refused_by(
        "ratingfeedback_one_value_per_aspect",
        lambda: RatingFeedback.objects.create(
            submission=pair_submission, response=response, aspect=aspect, value=4
        ),
    )


def test_ranking_with_a_repeated_rank_or_response(project, annotator):
    task = task_with_responses(project, "list", 3)
    first, second, _ = task.ordered_responses()
    ranking = RankingFeedback.objects.create(
        submission=Submission.objects.create(task=task, annotator=annotator)
    )
    RankingEntry.objects.create(ranking=ranking, response=first, rank=1)
    refused_by(
        "rankingentry_unique_rank",
        lambda: RankingEntry.objects.create(ranking=ranking, response=second, rank=1),
    )
    refused_by(
        "rankingentry_unique_response",
        lambda: RankingEntry.objects.create(ranking=ranking, response=first, rank=2),
    )
    refused_by(
        "rankingentry_rank_positive",
        lambda: RankingEntry.objects.create(ranking=ranking, response=second, rank=0),
    )


def test_span_that_ends_before_it_starts(pair_submission, project):
    response = pair_submission.task.ordered_responses()[0]
    refused_by(
        "spanfeedback_not_empty",
        lambda: SpanFeedback.objects.create(
            submission=pair_submission,
            response=response,
            label=project.span_labels.first(),
            start=5,
            end=5,
        ),
    )


def test_blank_free_text(pair_submission):
    refused_by(
        "freetextfeedback_text_not_blank",
        lambda: FreeTextFeedback.objects.create(
            submission=pair_submission, mode="critique", text=""
        ),
    )


def test_rewrite_without_a_response(pair_submission):
    refused_by(
        "freetextfeedback_rewrite_names_response",
        lambda: FreeTextFeedback.objects.create(
            submission=pair_submission, mode="rewrite", text="Better."
        ),
    )


def test_second_current_submission_of_one_annotator(pair_submission, annotator):
    refused_by(
        "submission_one_current_per_annotator",
        lambda: Submission.objects.create(task=pair_submission.task, annotator=annotator),
    )


def test_submission_from_both_an_annotator_and_a_judge(pair_submission, annotator):
    refused_by(
        "submission_one_source",
        lambda: Submission.objects.create(
            task=pair_submission.task, annotator=annotator, judge=JudgeFactory(), is_current=False
        ),
    )


def test_prompt_with_both_text_and_messages(project):
    refused_by(
        "prompt_text_xor_messages",
        lambda: Prompt.objects.create(
            project=project, text="Hi", messages=[{"role": "user", "content": "Hi"}]
        ),
    )


def test_aspect_with_an_empty_scale(project):
    refused_by(
        "ratingaspect_scale_ordered",
        lambda: RatingAspect.objects.create(project=project, name="X", scale_min=3, scale_max=3),
    )


def test_label_colour_that_is_not_hex(project):
    refused_by(
        "spanlabel_color_hex",
        lambda: SpanLabel.objects.create(project=project, name="Bad", color="red"),
    )


def test_project_collecting_nothing(db):
    refused_by(
        "project_collects_some_kind",
        lambda: Project.objects.create(name="Empty", collects_pairwise=False),
    )
