"""Jobs through a real Celery worker process on the local Redis and PostgreSQL.

The worker is a subprocess reading the test database, so these tests commit their rows
(transactional_db) and enqueue through Redis (TEST_CELERY_BROKER_URL); the worker fixtures
are in tests/worker/conftest.py and celery_worker.py.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter

import psycopg
import pytest
from django.db import connection

from feedback.jobs import JOB_LOCK_NAMESPACE, job_start
from feedback.models import Job, JudgeOutput, Response, Submission, Task
from tests.factories import JudgeFactory, ProjectFactory, PromptFactory
from tests.worker.celery_worker import finished, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def assert_every_sample_stored_or_skipped(job, responses, count: int) -> None:
    stored = [(r.prompt_id, r.sample_index) for r in responses]
    skipped = [(s["prompt_id"], s["sample_index"]) for s in job.skipped]
    assert len(set(stored) | set(skipped)) == len(stored) + len(skipped) == count


def test_a_worker_runs_a_generation_job_and_then_a_judge_job(start_worker, tiny_model_dir):
    worker = start_worker()
    project = ProjectFactory(
        collects_rating=False,
        collects_ranking=False,
        collects_spans=False,
        asks_rewrite=False,
        asks_rationale=False,
    )
    for _ in range(3):
        PromptFactory(project=project, text="what is the capital of france ?")
    generation = job_start(
        project=project,
        kind=Job.Kind.GENERATE,
        params={
            "models": [{"name": "tiny", "path": str(tiny_model_dir)}],
            "n": 2,
            "temperature": 0.9,
            "max_new_tokens": 8,
            "batch_size": 4,
        },
    )
    wait_for(lambda: finished(generation), 120, worker.output)

    assert generation.status == Job.Status.SUCCEEDED, generation.error
    assert (generation.done, generation.total, generation.attempts) == (3, 3, 1)
    # Samples are seeded by prompt id: an empty or repeated one is skipped, not stored.
    stored = Response.objects.filter(job=generation, model_name="tiny")
    assert_every_sample_stored_or_skipped(generation, stored, 6)
    per_prompt = Counter(stored.values_list("prompt_id", flat=True))
    pairs = sum(k * (k - 1) // 2 for k in per_prompt.values())
    singles = stored.count()
    assert Task.objects.filter(project=project, layout="pair").count() == pairs
    assert Task.objects.filter(project=project, layout="single").count() == singles

    judge = JudgeFactory(model_name=str(tiny_model_dir), parameters={"max_new_tokens": 8})
    judging = job_start(
        project=project,
        kind=Job.Kind.JUDGE,
        params={"judge_id": judge.pk, "kinds": ["pairwise", "free_text"]},
    )
    wait_for(lambda: finished(judging), 120, worker.output)

    assert judging.status == Job.Status.SUCCEEDED, judging.error
    assert (judging.done, judging.total) == (pairs + singles, pairs + singles)
    # Every task was asked (pairs twice) and the answer kept, parsed or not.
    assert JudgeOutput.objects.filter(job=judging).count() == pairs * 2 + singles
    critiques = Submission.objects.filter(judge=judge, texts__mode="critique")
    assert critiques.exists()
    for submission in critiques:
        assert submission.job_id == judging.pk and submission.texts.get().text.strip()


def test_a_job_whose_worker_is_killed_is_redone_by_another_without_duplicates(
    start_worker, tiny_model_dir
):
    # Unacked messages go back to the queue this long after delivery (default: hours).
    redelivery = {"CELERY_VISIBILITY_TIMEOUT": "5"}
    first = start_worker(**redelivery)
    project = ProjectFactory()
    # Long enough that the first sample is not nearly the last: 12 prompts were all done
    # within one poll of wait_for on a fast machine, before the worker could be killed.
    prompts = 120
    job = poem_job(project, prompts, tiny_model_dir)

    def some_saved() -> bool:
        return Response.objects.filter(job=job).exists()

    wait_for(some_saved, 120, first.output)
    first.kill()
    job.refresh_from_db()
    assert job.status == Job.Status.RUNNING and job.done < job.total
    saved_before = set(Response.objects.filter(job=job).values_list("pk", flat=True))

    second = start_worker(**redelivery)
    wait_for(lambda: finished(job), 180, second.output)

    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.attempts == 2 and job.done == job.total == prompts
    responses = Response.objects.filter(job=job)
    assert_every_sample_stored_or_skipped(job, responses, 2 * prompts)
    # What the first worker stored was kept, not generated again.
    assert saved_before <= set(responses.values_list("pk", flat=True))


def poem_job(project, prompts: int, model_dir) -> Job:
    """A sampling job over `prompts` copies of one prompt, generated one prompt at a time."""
    for _ in range(prompts):
        PromptFactory(project=project, text="write a short poem about the sea and the moon !")
    return job_start(
        project=project,
        kind=Job.Kind.GENERATE,
        params={
            "models": [{"name": "tiny", "path": str(model_dir)}],
            "n": 2,
            "temperature": 1.0,
            "max_new_tokens": 64,
            "batch_size": 1,
        },
    )


def test_a_redelivery_that_finds_the_dead_childs_lock_still_held_waits_and_runs_the_job(
    start_worker, tiny_model_dir
):
    """A prefork child is SIGKILLed mid-job; its parent requeues the message at once, before
    PostgreSQL may have ended the dead child's session. Here a waiting session takes the
    job's advisory lock the moment the child's is dropped and holds it a few seconds, as a
    session not yet reaped would: the redelivery must come back later, not be acked."""
    worker = start_worker(pool="prefork")
    project = ProjectFactory()
    prompts = 120  # enough that the job is still running when the child is killed
    job = poem_job(project, prompts, tiny_model_dir)
    wait_for(lambda: Response.objects.filter(job=job).exists(), 120, worker.output)
    db = connection.settings_dict
    with psycopg.connect(
        host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=db["NAME"], autocommit=True
    ) as holder:
        # Queue behind the child's lock, then kill the child: this session gets the lock.
        holder.execute("SET lock_timeout = '30s'")
        waiter = holder.cursor()
        child = worker.children()[0]
        taken = threading.Event()

        def take() -> None:
            waiter.execute("SELECT pg_advisory_lock(%s, %s)", [JOB_LOCK_NAMESPACE, job.pk])
            taken.set()

        thread = threading.Thread(target=take)
        thread.start()
        time.sleep(0.5)
        os.kill(child, signal.SIGKILL)
        thread.join(30)
        assert taken.is_set()
        # The parent has requeued the message and a new child has read it meanwhile.
        wait_for(lambda: worker.output().count("] received") >= 2, 30, worker.output)
        time.sleep(3)
        job.refresh_from_db()
        assert job.status == Job.Status.RUNNING
        holder.execute("SELECT pg_advisory_unlock(%s, %s)", [JOB_LOCK_NAMESPACE, job.pk])

    wait_for(lambda: finished(job), 120, worker.output)
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.attempts == 2 and job.done == job.total == prompts
    # Every sample stored once or listed once as skipped (a text equal to another's).
    assert Response.objects.filter(job=job).count() + len(job.skipped) == 2 * prompts


def test_a_job_whose_database_session_is_cut_mid_run_is_retried_and_resumed(
    start_worker, tiny_model_dir
):
    """As when PostgreSQL restarts: the worker's sessions end while the job runs. The task
    cannot even write the error then; it must come back and finish the job."""
    worker = start_worker()
    project = ProjectFactory()
    # Long enough that the first sample is not nearly the last: 12 prompts were all done
    # within one poll of wait_for on a fast machine, before any session could be cut.
    prompts = 120
    job = poem_job(project, prompts, tiny_model_dir)
    wait_for(lambda: Response.objects.filter(job=job).exists(), 120, worker.output)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        assert cursor.fetchone()[0] >= 1

    wait_for(lambda: finished(job), 120, worker.output)
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.attempts == 2 and job.done == job.total == prompts
    # Every sample stored once or listed once as skipped (a text equal to another's).
    assert Response.objects.filter(job=job).count() + len(job.skipped) == 2 * prompts
