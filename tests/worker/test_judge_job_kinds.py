"""A judge's answer to a task grows kind by kind: a later job asks only what is missing."""

import json

import pytest

from feedback.jobs import job_params
from feedback.models import Submission
from tests.factories import JudgeFactory
from tests.worker.test_judge_job import judge_job, task_of
from worker.runs import judging_run

pytestmark = pytest.mark.django_db


def answers(prompt: str) -> str:
    if "[Labels]" in prompt:
        return json.dumps({"spans": [{"quote": "Lyon", "label": "Factual error"}]})
    if "[Aspects]" in prompt:
        return json.dumps(
            {"Helpfulness": {"rating": 2, "rationale": "Wrong."}, "Honesty": {"rating": 3}}
        )
    return "It names the wrong city."


def test_a_span_job_after_a_rating_job_on_the_same_tasks_adds_the_spans(project, scripted):
    task = task_of(project, "single", "It is Lyon.")
    judge = JudgeFactory()
    load = scripted(answers)
    rating_job = judge_job(project, judge, ["rating"])
    judging_run(rating_job, job_params(rating_job), load=load)
    span_job = judge_job(project, judge, ["span", "rating"])
    judging_run(span_job, job_params(span_job), load=load)

    current = Submission.objects.get(task=task, judge=judge, is_current=True)
    assert current.job == span_job and current.spans_checked
    assert [(s.start, s.end) for s in current.spans.all()] == [(6, 10)]
    # The ratings from the first job are kept as they were, not asked again.
    assert sorted(current.ratings.values_list("value", flat=True)) == [2, 3]
    assert current.supersedes.job == rating_job
    assert sum("[Aspects]" in call for call in load.generator.calls) == 1
    span_job.refresh_from_db()
    assert (span_job.done, span_job.total) == (1, 1)


def test_a_rerun_that_adds_no_kind_makes_no_new_submission(project, scripted):
    task_of(project, "single", "It is Lyon.")
    judge = JudgeFactory()
    load = scripted(answers)
    for _ in range(2):
        job = judge_job(project, judge, ["rating", "free_text"])
        judging_run(job, job_params(job), load=load)
    assert Submission.objects.filter(judge=judge).count() == 1
    assert len(load.generator.calls) == 2  # the second job found both kinds answered


def test_a_judge_that_finds_nothing_wrong_leaves_a_clean_answer(project, scripted):
    task = task_of(project, "single", "Paris is the capital of France.")
    judge = JudgeFactory()
    job = judge_job(project, judge, ["span"])
    judging_run(job, job_params(job), load=scripted(lambda prompt: '{"spans": []}'))
    submission = Submission.objects.get(task=task, judge=judge)
    assert submission.spans_checked and not submission.spans.exists()


def test_a_judge_whose_quotes_are_not_in_the_response_does_not_call_it_clean(project, scripted):
    task_of(project, "single", "Paris is the capital of France.")
    judge = JudgeFactory()
    job = judge_job(project, judge, ["span"])
    said = json.dumps({"spans": [{"quote": "Berlin", "label": "Factual error"}]})
    judging_run(job, job_params(job), load=scripted(lambda prompt: said))
    assert not Submission.objects.filter(judge=judge).exists()


def test_a_question_too_long_for_a_local_judge_is_noted_with_the_reason(project, tiny_model_dir):
    task = task_of(project, "single", "word " * 5000)
    judge = JudgeFactory(model_name=str(tiny_model_dir), parameters={"max_new_tokens": 4})
    job = judge_job(project, judge, ["free_text"])
    judging_run(job, job_params(job))
    (output,) = task.judge_outputs.all()
    assert "not asked" in output.parse_error and "tokens" in output.parse_error
    assert not Submission.objects.filter(judge=judge).exists()
