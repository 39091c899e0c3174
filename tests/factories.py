"""factory_boy factories for the feedback domain."""

import itertools
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
    RewardModel,
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


class RewardModelFactory(factory.django.DjangoModelFactory):
    """A reward model row with held-out metrics and a curve, as training stores them; its
    artifact directory is not written."""

    class Meta:
        model = RewardModel

    project = factory.SubFactory(ProjectFactory)
    name = factory.Sequence(lambda n: f"rm-{n}")
    backbone = "sentence-transformers/all-MiniLM-L6-v2"
    backbone_kind = RewardModel.BackboneKind.EMBEDDING
    artifact_path = factory.Sequence(lambda n: f"reward_models/test-{n}")
    parameters = factory.LazyFunction(lambda: {"data": {"pairs": True}, "n_train": 8})
    metrics = factory.LazyFunction(
        lambda: {
            "steps": 4,
            "held_out": {
                "n": 4,
                "n_target": 3,
                "accuracy": 0.75,
                "ece": 0.1,
                "accuracy_by_agreement": [{"agreement": 0.67, "accuracy": 0.5, "n": 2}],
                "reliability": [
                    {
                        "lower": 0.5,
                        "upper": 0.6,
                        "mean_predicted": 0.55,
                        "observed": 0.5,
                        "count": 4,
                    }
                ],
                "judge_agreement": [{"judge": "judge-<b>x</b>", "agreement": 0.5, "n": 2}],
            },
        }
    )
    curve = factory.LazyFunction(
        lambda: [
            {
                "step": 2,
                "epoch": 0.5,
                "train_loss": 0.69,
                "held_out_loss": 0.68,
                "held_out_accuracy": 0.5,
            },
            {
                "step": 4,
                "epoch": 1.0,
                "train_loss": 0.6,
                "held_out_loss": 0.65,
                "held_out_accuracy": 0.75,
            },
        ]
    )


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


SYSTEM_TURN = {"role": "system", "content": "You are terse. Réponds en <b>HTML</b> si besoin."}


def hard_prompt(index: int, chat: bool) -> dict:
    """Prompt fields that mix forms and the text exports must survive: a multi-turn chat
    with a system turn, a one-turn chat, plain text with Markdown, HTML-looking text,
    Unicode (İ lower-cases to two code points), emoji and a right-to-left override."""
    text = [
        "Explain **Markdown** lists in İstanbul style 🎉",
        "What does <script>alert('x')</script> do? Use `code`.",
        "Name a colour \u202eRTL\u202c please.",
        "Summarise: «Ünïcödé» & <img src=x onerror=alert(1)>",
    ][index % 4] + f" (#{index})"
    if not chat or index % 2:
        return {"text": text}
    if index % 4 == 0:
        return {
            "text": "",
            "messages": [
                SYSTEM_TURN,
                {"role": "user", "content": "Hi <i>there</i>"},
                {"role": "assistant", "content": "Hello! ¿Qué tal?"},
                {"role": "user", "content": text},
            ],
        }
    return {"text": "", "messages": [{"role": "user", "content": text}]}


def hard_response(prompt: Prompt, index: int) -> Response:
    return ResponseFactory(
        prompt=prompt,
        text=f"Answer {index}: **bold** <em>x</em> İstanbul ✓ and some words.",
        model_name=f"model-{index % 2}",
    )


def feedback_fill(
    project: Project, annotators: list, judge: Judge | None = None, *, chat: bool = True
) -> dict:
    """Every kind of feedback from each annotator (and a judge) as real use lays it out:
    tasks from tasks_extend, answers through submission_create, each kind on the task
    layout that asks for it, prompts from `hard_prompt` (all plain text if not `chat`).

    `pairs`: the pair tasks of four two-response prompts; all agree on A (strength 3 and
    2), one split 2:1 for B, one tie. `rated`: those prompts' single tasks, rated by each
    annotator with A (as shown in the pair) above B, no span marked. `lists`: the list
    tasks of two three-response prompts, ranked by all. `singles`: two one-response
    prompts' tasks, rated, spanned and critiqued by all. The judge answers the first pair.
    """
    from feedback.services import (
        FeedbackInput,
        FreeTextInput,
        PairwiseInput,
        RatingInput,
        SpanInput,
        submission_create,
        tasks_extend,
    )

    aspects = list(project.aspects.all())
    labels = list(project.span_labels.all())
    counter = itertools.count()

    def tasks_for(responses: int) -> dict[str, list[Task]]:
        prompt = PromptFactory(project=project, **hard_prompt(next(counter), chat))
        for index in range(responses):
            hard_response(prompt, index)
        tasks = tasks_extend(project=project, prompt_ids=[prompt.pk])
        by_layout: dict[str, list[Task]] = {"single": [], "pair": [], "list": []}
        for task in tasks:
            by_layout[task.layout].append(task)
        return by_layout

    pair_prompts = [tasks_for(2) for _ in range(4)]
    list_prompts = [tasks_for(3) for _ in range(2)]
    single_prompts = [tasks_for(1) for _ in range(2)]
    pairs = [layouts["pair"][0] for layouts in pair_prompts]
    lists = [layouts["list"][0] for layouts in list_prompts]
    singles = [layouts["single"][0] for layouts in single_prompts]
    rated = [task for layouts in pair_prompts for task in layouts["single"]]
    single_of = {task.links.get().response_id: task for task in rated}

    choices = [["A", "A", "A"], ["A", "A", "A"], ["B", "B", "A"], ["tie", "tie", "A"]]
    for index, annotator in enumerate(annotators):
        for task, votes in zip(pairs, choices, strict=True):
            choice = votes[index % 3]
            submission_create(
                task=task,
                annotator=annotator,
                duration_ms=1000 + index,
                feedback=FeedbackInput(
                    pairwise=PairwiseInput(choice, None if choice == "tie" else 1 + index % 3)
                ),
            )
            a, b = (link.response_id for link in task.links.order_by("position"))
            for response_id, value in ((a, 4), (b, 2 + index % 2)):
                submission_create(
                    task=single_of[response_id],
                    annotator=annotator,
                    feedback=FeedbackInput(
                        ratings=[
                            RatingInput(response_id, aspects[0].pk, value),
                            RatingInput(response_id, aspects[1].pk, 5),
                        ],
                        spans_checked=True,
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
                    texts=[FreeTextInput("critique", "Too short <b>really</b>.", response.pk)],
                ),
            )
    if judge is not None:
        submission_create(
            task=pairs[0], judge=judge, feedback=FeedbackInput(pairwise=PairwiseInput("B", 2))
        )
    return {"pairs": pairs, "lists": lists, "singles": singles, "rated": rated}
