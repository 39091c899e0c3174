"""The Celery tasks around the job bodies: claiming, duplicates, failures, retries.

Run in-process (eager); tests/worker/test_celery_worker.py runs them in a real worker.
"""

from types import SimpleNamespace

import psycopg
import pytest
from django.db import connection

from feedback.jobs import JOB_LOCK_NAMESPACE, TASK_NAMES, job_cancel, job_start
from feedback.models import Job, Response
from tests.factories import JudgeFactory, PromptFactory
from tests.worker.test_judge_job import task_of
from worker.celery import app
from worker.ml.openai_backend import TransientBackendError
from worker.runs import judging_run
from worker.tasks import generate_candidates, run_job, run_judge

pytestmark = pytest.mark.django_db


def queued_generation(project, model_dir):
    PromptFactory(project=project)
    params = {"models": [{"name": "tiny", "path": str(model_dir)}], "max_new_tokens": 4}
    return job_start(project=project, kind=Job.Kind.GENERATE, params=params)


def test_a_job_runs_to_success_with_timings_and_full_progress(project, tiny_model_dir):
    job = queued_generation(project, tiny_model_dir)
    generate_candidates.apply(args=[job.pk])
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED
    assert (job.done, job.total, job.attempts, job.error) == (1, 1, 1, "")
    assert job.started_at <= job.finished_at


def test_a_failing_job_keeps_the_error_text(project, tmp_path):
    PromptFactory(project=project)
    missing = tmp_path / "nonexistent-model"
    job = job_start(
        project=project,
        kind=Job.Kind.GENERATE,
        params={"models": [{"name": "missing", "path": str(missing)}]},
    )
    generate_candidates.apply(args=[job.pk])
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert str(missing) in job.error
    assert job.finished_at is not None


def test_a_finished_job_delivered_again_does_nothing(project, tiny_model_dir):
    job = queued_generation(project, tiny_model_dir)
    generate_candidates.apply(args=[job.pk])
    generate_candidates.apply(args=[job.pk])
    job.refresh_from_db()
    assert job.attempts == 1 and Response.objects.filter(job=job).count() == 1


def test_a_duplicate_delivery_while_the_job_runs_elsewhere_does_nothing(project, tiny_model_dir):
    job = queued_generation(project, tiny_model_dir)
    Job.objects.filter(pk=job.pk).update(status=Job.Status.RUNNING, attempts=1)
    dsn = connection.get_connection_params()
    with psycopg.connect(**dsn, autocommit=True) as other_worker:
        other_worker.execute("SELECT pg_advisory_lock(%s, %s)", [JOB_LOCK_NAMESPACE, job.pk])
        generate_candidates.apply(args=[job.pk])
    job.refresh_from_db()
    assert (job.status, job.attempts) == (Job.Status.RUNNING, 1)
    assert not Response.objects.filter(job=job).exists()


def test_a_running_job_whose_worker_died_is_taken_over(project, tiny_model_dir):
    job = queued_generation(project, tiny_model_dir)
    Job.objects.filter(pk=job.pk).update(status=Job.Status.RUNNING, attempts=1)
    generate_candidates.apply(args=[job.pk])
    job.refresh_from_db()
    assert (job.status, job.attempts) == (Job.Status.SUCCEEDED, 2)


def test_a_cancelled_job_is_not_run(project, tiny_model_dir):
    job = queued_generation(project, tiny_model_dir)
    job_cancel(job=job)
    generate_candidates.apply(args=[job.pk])
    job.refresh_from_db()
    assert job.status == Job.Status.CANCELLED and not Response.objects.exists()


def judge_job_queued(project):
    task_of(project, "pair", "Lyon.", "Paris.")
    return job_start(
        project=project,
        kind=Job.Kind.JUDGE,
        params={"judge_id": JudgeFactory().pk, "kinds": ["pairwise"]},
    )


def server_down(spec):
    raise TransientBackendError("HTTP 503: overloaded")


def worker_task(retries: int):
    """What _run reads of a Celery task delivered by a broker, `retries` retries in."""
    return SimpleNamespace(request=SimpleNamespace(is_eager=False, retries=retries), max_retries=5)


def test_a_transient_error_requeues_the_job_for_celerys_retry(project, monkeypatch):
    job = judge_job_queued(project)
    monkeypatch.setattr("worker.runs.generator_load", server_down)
    with pytest.raises(TransientBackendError):
        run_job(worker_task(retries=0), job.pk, judging_run)
    job.refresh_from_db()
    assert job.status == Job.Status.QUEUED
    assert job.error == "Retrying after: TransientBackendError: HTTP 503: overloaded"


def test_a_transient_error_on_the_last_retry_fails_the_job(project, monkeypatch):
    job = judge_job_queued(project)
    monkeypatch.setattr("worker.runs.generator_load", server_down)
    run_job(worker_task(retries=5), job.pk, judging_run)
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert job.error == "Gave up after 6 attempt(s): HTTP 503: overloaded"


def test_tasks_run_in_process_fail_on_a_transient_error_without_retrying(project, monkeypatch):
    job = judge_job_queued(project)
    monkeypatch.setattr("worker.runs.generator_load", server_down)
    run_judge.apply(args=[job.pk])
    job.refresh_from_db()
    assert (job.status, job.attempts) == (Job.Status.FAILED, 1)


def test_judge_tasks_retry_transient_errors_with_backoff():
    assert TransientBackendError in run_judge.autoretry_for
    assert run_judge.retry_backoff and run_judge.max_retries == 5


def test_job_start_enqueues_the_task_once_the_job_is_committed(
    project, tiny_model_dir, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        job = queued_generation(project, tiny_model_dir)
        assert not Response.objects.exists()
    assert len(callbacks) == 1
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED


def test_every_job_kind_is_sent_to_a_task_the_worker_registers():
    # feedback/ names the tasks without importing the worker: the names must stay true.
    assert set(TASK_NAMES) == set(Job.Kind.values)
    assert set(TASK_NAMES.values()) <= set(app.tasks)
