"""Celery tasks: take a job id, claim the job, run its body, finish the row.

Delivery is at least once (`acks_late`, redelivery after a lost worker), so every task
may run twice: `job_lease` keeps two deliveries from running at once, and the bodies
skip what is already stored.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from celery import Task as CeleryTask
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, connections, transaction

from feedback.jobs import (
    JobCancelled,
    job_claim,
    job_fail,
    job_heartbeats,
    job_is_pending,
    job_lease,
    job_params,
    job_requeue,
    job_succeed,
)
from feedback.models import Job
from worker.celery import app
from worker.ml.openai_backend import TransientBackendError
from worker.runs import generation_run, judging_run

logger = logging.getLogger(__name__)


# Worth retrying later: the inference server was down, overloaded or slow.
TRANSIENT: tuple[type[BaseException], ...] = (TransientBackendError, ConnectionError, TimeoutError)
RETRY = {
    "autoretry_for": TRANSIENT,
    "retry_backoff": 15,  # seconds, doubled on each retry
    "retry_backoff_max": 600,
    "retry_jitter": True,
    "max_retries": 5,
}
# PostgreSQL went away (a restart, a failover): nothing can be written, not even the error.
DATABASE_DOWN: tuple[type[BaseException], ...] = (OperationalError, InterfaceError)
DATABASE_RETRY_SECONDS = 10
# How soon a delivery that found the job's lease held looks again.
LEASE_RETRY_SECONDS = 10


def run_job(task: CeleryTask, job_id: int, body: Callable[..., None]) -> None:
    try:
        _run_leased(task, job_id, body)
    except DATABASE_DOWN as exc:
        if task.request.is_eager:
            raise
        # What the job stored is committed and the lease went with the session; the row
        # still says running, so the retry claims it again and resumes.
        logger.warning("job %s: database unavailable (%s); retrying", job_id, exc)
        connection.close()
        raise task.retry(exc=exc, countdown=DATABASE_RETRY_SECONDS) from exc


def _run_leased(task: CeleryTask, job_id: int, body: Callable[..., None]) -> None:
    with job_lease(job_id) as held:
        if not held:
            # In-process (eager) runs cannot come back later.
            if not task.request.is_eager and job_is_pending(job_id=job_id):
                # Another worker runs it, or PostgreSQL has not yet ended the session of
                # one that died (a SIGKILLed prefork child is requeued at once). Either
                # way the job is unfinished: look again later rather than drop it.
                logger.info("job %s is leased by another session; trying again later", job_id)
                task.apply_async((job_id,), countdown=LEASE_RETRY_SECONDS)
            return
        job = job_claim(job_id=job_id)
        if job is None:
            logger.info("job %s is not queued or running; nothing to do", job_id)
            return
        try:
            with job_heartbeats(job_id=job_id):
                body(job, job_params(job))
        except JobCancelled:
            logger.info("job %s was cancelled", job_id)
            return
        except TRANSIENT as exc:
            # In-process (eager) runs cannot wait out a backoff: they fail at once.
            if not task.request.is_eager and task.request.retries < task.max_retries:
                job_requeue(job=job, error=f"{type(exc).__name__}: {exc}")
                raise  # autoretry_for schedules the retry
            tries = task.request.retries + 1
            job_fail(job=job, error=f"Gave up after {tries} attempt(s): {exc}")
            return
        except DATABASE_DOWN:
            raise
        except Exception as exc:
            # Failed jobs end here, not in Celery: the row carries the error to the page.
            logger.exception("job %s failed", job_id)
            job_fail(job=job, error=f"{type(exc).__name__}: {exc}")
            return
        job_succeed(job=job)


@app.task(bind=True, **RETRY)
def generate_candidates(self: CeleryTask, job_id: int) -> None:
    run_job(self, job_id, generation_run)


@app.task(bind=True, **RETRY)
def run_judge(self: CeleryTask, job_id: int) -> None:
    run_job(self, job_id, judging_run)


def task_for_kind(kind: str) -> Any:
    return {Job.Kind.GENERATE: generate_candidates, Job.Kind.JUDGE: run_judge}[kind]


# --- Without a broker: a thread of this process ------------------------------------------

_in_process: queue.SimpleQueue[tuple[CeleryTask, int]] = queue.SimpleQueue()
_runner_lock = threading.Lock()
_runner: threading.Thread | None = None


def job_enqueue(job: Job) -> None:
    """Send the job's task once the transaction that queued it commits.

    To the broker; or, with `JOBS_IN_THREAD` (no broker: the demo), to one thread of this
    process that runs jobs one after another, as a worker with concurrency 1 would. Run in
    the request instead, a SmolLM2 job held the browser for most of a minute with no
    progress shown; beside it, the page answers at once and polls the job's row.
    """
    task = task_for_kind(job.kind)
    if settings.JOBS_IN_THREAD:
        transaction.on_commit(lambda: _run_beside(task, job.pk))
    else:
        task.delay_on_commit(job.pk)


def _run_beside(task: CeleryTask, job_id: int) -> None:
    global _runner
    _in_process.put((task, job_id))
    with _runner_lock:
        if _runner is None or not _runner.is_alive():
            # A daemon: stopping the server does not wait for a job; one cut off shows as
            # stalled and is retried from the jobs page.
            _runner = threading.Thread(target=_run_queued, name="prefhub-jobs", daemon=True)
            _runner.start()


def _run_queued() -> None:
    while True:
        task, job_id = _in_process.get()
        try:
            # Eager, as in the caller: run_job records the job's own failures on its row.
            task.apply(args=[job_id], throw=True)
        except Exception:
            logger.exception("job %s: in-process run failed", job_id)
        finally:
            connections.close_all()  # this thread's connections only
