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
