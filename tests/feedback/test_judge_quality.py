"""Judge quality: weighted kappa over the aspect's whole scale, and position bias."""

import pytest
from sklearn.metrics import cohen_kappa_score

from feedback.judges import judge_quality, people_position_wins
from feedback.models import Job, JudgeOutput
from feedback.services import FeedbackInput, PairwiseInput, RatingInput, submission_create
from tests.factories import AspectFactory, JudgeFactory, task_with_responses

pytestmark = pytest.mark.django_db


def test_rating_kappa_weighs_distances_on_the_whole_scale_in_numeric_order(project, annotator):
    AspectFactory(project=project, name="Detail", scale_min=1, scale_max=10)
    aspect = project.aspects.get(name="Detail")
    judge = JudgeFactory()
    pairs = [(1, 2), (2, 2), (10, 9), (9, 10), (2, 10), (9, 9)]
    for said, human in pairs:
        task = task_with_responses(project, "single", 1)
        response_id = task.links.get().response_id
        for source, value in (({"judge": judge}, said), ({"annotator": annotator}, human)):
            submission_create(
                task=task,
                feedback=FeedbackInput(ratings=[RatingInput(response_id, aspect.pk, value)]),
                **source,
            )
    kappa = judge_quality(project=project, judge=judge).ratings["Detail"].kappa
    judged, people = zip(*pairs, strict=True)
    expected = cohen_kappa_score(judged, people, labels=list(range(1, 11)), weights="linear")
    assert kappa == pytest.approx(expected)
    # Observed values sorted as strings (1, 10, 2, 9) put 10 next to 1.
    wrong = cohen_kappa_score(judged, people, labels=[1, 10, 2, 9], weights="linear")
    assert kappa != pytest.approx(wrong)


def test_first_position_wins_for_the_judge_as_asked_and_for_people(project, annotator):
    judge = JudgeFactory()
    job = Job.objects.create(project=project, kind="judge", status="succeeded")
    for human, said, swapped_said in [("A", "A", "A"), ("B", "A", "A"), ("tie", "B", "A")]:
        task = task_with_responses(project, "pair", 2)
        submission_create(
            task=task, annotator=annotator, feedback=FeedbackInput(pairwise=PairwiseInput(human))
        )
        for swapped, choice in ((False, said), (True, swapped_said)):
            JudgeOutput.objects.create(
                job=job,
                task=task,
                judge=judge,
                kind="pairwise",
                swapped=swapped,
                parsed={"choice": choice},
            )
    wins = judge_quality(project=project, judge=judge).first_position_wins
    assert (wins.n, wins.share) == (6, pytest.approx(5 / 6))  # always A but once
    people = people_position_wins(project=project)
    assert (people.n, people.share) == (2, pytest.approx(1 / 2))  # the tie is left out
