"""factory_boy factories for the feedback domain."""

from collections.abc import Sequence

import factory
from django.contrib.auth import get_user_model

from feedback.models import (
    Judge,
    Project,
    ProjectMember,
    Prompt,
    RatingAspect,
    Response,
    SpanLabel,
    Task,
    TaskResponse,
)


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ["username"]

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("pw")


class ProjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Project

    name = factory.Sequence(lambda n: f"Project {n}")
    guidelines = "Be careful."
    collects_pairwise = True
    collects_rating = True
    collects_ranking = True
    collects_spans = True
    collects_free_text = True
    asks_critique = True
    asks_rewrite = True
    asks_rationale = True
    ranking_size = 3


class MemberFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ProjectMember

    project = factory.SubFactory(ProjectFactory)
    user = factory.SubFactory(UserFactory)
    role = ProjectMember.Role.ANNOTATOR


class AspectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = RatingAspect

    project = factory.SubFactory(ProjectFactory)
    name = factory.Sequence(lambda n: f"Aspect {n}")
    rubric = "1 bad, 5 good"
    scale_min = 1
    scale_max = 5


class SpanLabelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SpanLabel

    project = factory.SubFactory(ProjectFactory)
    name = factory.Sequence(lambda n: f"Label {n}")


class PromptFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Prompt

    project = factory.SubFactory(ProjectFactory)
    text = factory.Sequence(lambda n: f"Question number {n}?")


class ResponseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Response

    prompt = factory.SubFactory(PromptFactory)
    text = factory.Sequence(lambda n: f"Answer number {n}, with some words.")
    model_name = "test-model"


class JudgeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Judge

    name = factory.Sequence(lambda n: f"judge-{n}")
    model_name = "tiny"


def task_with_responses(
    project: Project, layout: str, count: int, texts: Sequence[str] = (), **prompt_fields
) -> Task:
    """A task of `layout` on a fresh prompt with `count` responses (texts if given), in order."""
    prompt = PromptFactory(project=project, **prompt_fields)
    task = Task.objects.create(project=project, prompt=prompt, layout=layout)
    for position in range(count):
        extra = {"text": texts[position]} if position < len(texts) else {}
        TaskResponse.objects.create(
            task=task, response=ResponseFactory(prompt=prompt, **extra), position=position
        )
    return task


def feedback_fill(project: Project, annotators: list, judge: Judge | None = None) -> dict:
    """Every kind of feedback from each annotator (and a judge), through submission_create.

    Pairs: two where all agree on A (strength 3 and 2), one split 2:1 for B, one tie.
    Lists of three ranked by all; singles rated, spanned and critiqued by all. The pair
    tasks are rated too, so ratings and choices can be compared.
    """
    from feedback.services import (
        FeedbackInput,
        FreeTextInput,
        PairwiseInput,
        RatingInput,
        SpanInput,
        submission_create,
    )

    aspects = list(project.aspects.all())
    labels = list(project.span_labels.all())
    pairs = [task_with_responses(project, "pair", 2) for _ in range(4)]
    lists = [task_with_responses(project, "list", 3) for _ in range(2)]
    singles = [task_with_responses(project, "single", 1) for _ in range(2)]
    choices = [["A", "A", "A"], ["A", "A", "A"], ["B", "B", "A"], ["tie", "tie", "A"]]
    for index, annotator in enumerate(annotators):
        for task, votes in zip(pairs, choices, strict=True):
            a, b = (link.response_id for link in task.links.order_by("position"))
            choice = votes[index % 3]
            submission_create(
                task=task,
                annotator=annotator,
                duration_ms=1000 + index,
                feedback=FeedbackInput(
                    pairwise=PairwiseInput(choice, None if choice == "tie" else 1 + index % 3),
                    ratings=[
                        RatingInput(a, aspects[0].pk, 4),
                        RatingInput(b, aspects[0].pk, 2 + index % 2),
                    ],
                ),
            )
        for task in lists:
            ids = [link.response_id for link in task.links.order_by("position")]
            order = ids if index < 2 else list(reversed(ids))
            submission_create(task=task, annotator=annotator, feedback=FeedbackInput(ranking=order))
        for task in singles:
            response = task.links.get().response
            submission_create(
                task=task,
                annotator=annotator,
                feedback=FeedbackInput(
                    ratings=[
                        RatingInput(response.pk, aspects[0].pk, 3 + index % 2, "Clear enough."),
                        RatingInput(response.pk, aspects[1].pk, 5, ""),
                    ],
                    spans=[
                        SpanInput(response.pk, labels[0].pk, 0, 6 + index, "major", "Wrong."),
                    ],
                    texts=[FreeTextInput("critique", "Too short.", response.pk)],
                ),
            )
    if judge is not None:
        submission_create(
            task=pairs[0], judge=judge, feedback=FeedbackInput(pairwise=PairwiseInput("B", 2))
        )
    return {"pairs": pairs, "lists": lists, "singles": singles}
