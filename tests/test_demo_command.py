"""`manage.py demo` seeds a past to look at: a judge, finished generation and judge jobs
with real durations (run beside the caller, as the pages run them), and simulated
annotators' answers with times, skips and disagreement. A tiny local model stands in for
SmolLM2 here; `tests/test_demo.py` starts the real thing."""

from collections import Counter

import pytest
from django.core.management import call_command

from annotate.templatetags.annotate_tags import duration
from feedback.management.commands.demo import DEMO_JUDGE, DEMO_MODEL_NAME, SIMULATED
from feedback.models import (
    Assignment,
    Job,
    Judge,
    JudgeOutput,
    PairwiseFeedback,
    Project,
    Response,
    Submission,
)
from worker.ml.tiny import build_tiny_causal_lm

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_the_demo_seeds_a_judge_finished_jobs_and_simulated_answers(settings, tmp_path):
    settings.DEBUG = True
    settings.JOBS_IN_THREAD = True  # as in the demo: jobs run in a thread, the command waits
    settings.LOCAL_MODEL_DIRS = [str(tmp_path)]
    model = build_tiny_causal_lm(tmp_path / "tiny")

    call_command("demo", "--no-serve", "--model", str(model))

    project = Project.objects.get()
    generation = Job.objects.get(kind=Job.Kind.GENERATE)
    judging = Job.objects.get(kind=Job.Kind.JUDGE)
    for job in (generation, judging):
        assert job.status == Job.Status.SUCCEEDED, job.error
        assert job.started_at < job.finished_at and job.done == job.total > 0
        assert duration(job.elapsed).endswith(" s")  # not "0 minutes"
    assert Response.objects.filter(job=generation, model_name=DEMO_MODEL_NAME).count() == 2
    judge = Judge.objects.get(name=DEMO_JUDGE)
    assert judge.model_name == str(model)
    assert JudgeOutput.objects.filter(job=judging, judge=judge).count() == 2 * judging.total

    answers = Submission.objects.filter(task__project=project, annotator__isnull=False)
    per_person = Counter(answers.values_list("annotator__username", flat=True))
    # Each answers up to their quota, or until the simulated past reaches the present.
    for person in SIMULATED:
        assert person.answers // 2 <= per_person[person.username] <= person.answers
    seconds = sorted(answers.values_list("duration_ms", flat=True))
    assert 5_000 < seconds[len(seconds) // 2] < 120_000  # a realistic median
    first, last = answers.order_by("created_at").values_list("created_at", flat=True)[
        :: len(seconds) - 1
    ]
    assert (last - first).total_seconds() > 12 * 3600  # spread over the past day or two
    assert Assignment.objects.filter(project=project, status="skipped").exists()
    assert Assignment.objects.filter(project=project, status="active").count() == 1
    # Some pair tasks split their two annotators.
    choices: dict[int, set[str]] = {}
    for task_id, choice in PairwiseFeedback.objects.filter(submission__in=answers).values_list(
        "submission__task_id", "choice"
    ):
        choices.setdefault(task_id, set()).add(choice)
    assert any(len(seen) > 1 for seen in choices.values())

    # A second start adds nothing.
    call_command("demo", "--no-serve", "--model", str(model))
    assert Job.objects.count() == 2 and answers.count() == sum(per_person.values())
