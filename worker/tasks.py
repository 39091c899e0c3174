"""Celery tasks: take a job id, claim the job, run its body, finish the row.

Delivery is at least once (`acks_late`, redelivery after a lost worker), so every task
may run twice: `job_lease` keeps two deliveries from running at once, and the bodies
skip what is already stored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from celery import Task as CeleryTask
from django.db import InterfaceError, OperationalError, connection

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
from worker.celery import app
from worker.ml.openai_backend import TransientBackendError
from worker.runs import (
    generation_run,
    judging_run,
    reward_evaluation_run,
    reward_training_run,
    scoring_run,
)

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


@app.task(bind=True, **RETRY)
def train_reward_model(self: CeleryTask, job_id: int) -> None:
    run_job(self, job_id, reward_training_run)


@app.task(bind=True, **RETRY)
def score_responses(self: CeleryTask, job_id: int) -> None:
    run_job(self, job_id, scoring_run)


@app.task(bind=True, **RETRY)
def evaluate_reward_model(self: CeleryTask, job_id: int) -> None:
    run_job(self, job_id, reward_evaluation_run)
