"""How good is an LLM judge on a project: reads of its feedback next to people's."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import Count, Q, QuerySet
from django.db.models.functions import Length

from feedback.models import (
    FeedbackKind,
    Judge,
    JudgeOutput,
    PairwiseFeedback,
    Project,
    RatingAspect,
    RatingFeedback,
    TaskResponse,
)
from worker.ml.judging import (
    Agreement,
    LengthBias,
    agreement,
    length_bias,
    position_consistency,
)


@dataclass(frozen=True)
class PositionWins:
    """How often the response shown first won, among verdicts that chose one.

    Display order is shuffled per task and judges are asked in both orders, so an
    unbiased source scores near 0.5 whatever the responses (Zheng et al. 2023).
    """

    n: int
    share: float | None


def position_wins(choices: Iterable[str]) -> PositionWins:
    decided = [choice for choice in choices if choice != PairwiseFeedback.Choice.TIE]
    first = sum(choice == PairwiseFeedback.Choice.A for choice in decided)
    return PositionWins(len(decided), first / len(decided) if decided else None)


def people_position_wins(*, project: Project) -> PositionWins:
    """The same for the annotators' current pairwise answers, the judges' reference."""
    return position_wins(
        PairwiseFeedback.objects.filter(
            submission__task__project=project,
            submission__is_current=True,
            submission__annotator__isnull=False,
        )
        .values_list("choice", flat=True)
        .iterator(chunk_size=2000)
    )


@dataclass(frozen=True)
class JudgeQuality:
    """One judge on one project.

    pairwise: agreement with each person's current verdict on the tasks both judged.
    ratings: per aspect name, linear-weighted kappa against people's ratings of the same
    response. position_consistency: share of pairs whose verdict survived the swap.
    first_position_wins: its verdicts as asked, in either order, that chose the response
    shown first. length_bias: correlation of its pairwise preference with len(A) - len(B).
    """

    judge_id: int
    judge_name: str
    pairwise: Agreement
    ratings: dict[str, Agreement]
    position_consistency: float | None
    position_pairs: int
    first_position_wins: PositionWins
    length_bias: LengthBias
    outputs: int
    parse_errors: int


def judges_of_project(project: Project) -> QuerySet[Judge]:
    """Judges that answered or were asked something in the project."""
    return Judge.objects.filter(
        Q(submissions__task__project=project) | Q(outputs__task__project=project)
    ).distinct()


def judge_quality(*, project: Project, judge: Judge) -> JudgeQuality:
    current = {"submission__is_current": True, "submission__task__project": project}

    judged = dict(
        PairwiseFeedback.objects.filter(submission__judge=judge, **current).values_list(
            "submission__task_id", "choice"
        )
    )
    human = PairwiseFeedback.objects.filter(
        submission__annotator__isnull=False, submission__task_id__any=judged, **current
    ).values_list("submission__task_id", "choice")
    pairs = [(judged[task_id], choice) for task_id, choice in human]

    judge_ratings = {
        (response, aspect): value
        for response, aspect, value in RatingFeedback.objects.filter(
            submission__judge=judge, **current
        ).values_list("response_id", "aspect_id", "value")
    }
    scales = {
        name: range(low, high + 1)
        for name, low, high in RatingAspect.objects.filter(project=project).values_list(
            "name", "scale_min", "scale_max"
        )
    }
    by_aspect: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for response, aspect, name, value in RatingFeedback.objects.filter(
        submission__annotator__isnull=False, **current
    ).values_list("response_id", "aspect_id", "aspect__name", "value"):
        if (response, aspect) in judge_ratings:
            by_aspect[name].append((judge_ratings[(response, aspect)], value))

    outputs = JudgeOutput.objects.filter(judge=judge, task__project=project)
    orders: dict[tuple[int, int], dict[bool, str]] = defaultdict(dict)
    as_asked: list[str] = []
    for job_id, task_id, swapped, parsed in outputs.filter(
        kind=FeedbackKind.PAIRWISE, parsed__isnull=False
    ).values_list("job_id", "task_id", "swapped", "parsed"):
        orders[(job_id, task_id)][swapped] = parsed["choice"]
        as_asked.append(parsed["choice"])
    both = [(o[False], o[True]) for o in orders.values() if len(o) == 2]

    lengths: dict[int, dict[int, int]] = defaultdict(dict)
    for task_id, position, length in (
        TaskResponse.objects.filter(task_id__any=judged)
        .annotate(length=Length("response__text"))
        .values_list("task_id", "position", "length")
    ):
        lengths[task_id][position] = length
    choices = list(judged.values())
    diffs = [lengths[task_id][0] - lengths[task_id][1] for task_id in judged]
    counts = outputs.aggregate(total=Count("id"), errors=Count("id", filter=~Q(parse_error="")))

    return JudgeQuality(
        judge_id=judge.pk,
        judge_name=judge.name,
        pairwise=agreement([j for j, _ in pairs], [h for _, h in pairs]),
        ratings={
            name: agreement(
                [j for j, _ in values],
                [h for _, h in values],
                weights="linear",
                labels=list(scales[name]),
            )
            for name, values in sorted(by_aspect.items())
        },
        position_consistency=position_consistency(both),
        position_pairs=len(both),
        first_position_wins=position_wins(as_asked),
        length_bias=length_bias(choices, diffs),
        outputs=counts["total"],
        parse_errors=counts["errors"],
    )
