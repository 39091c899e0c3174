"""A failed generation job, retried, generates only what it had not stored: no copies."""

import pytest

from feedback.jobs import (
    GeneratedSample,
    job_claim,
    job_fail,
    job_params,
    job_retry,
    responses_add_generated,
)
from feedback.models import Job, Response
from tests.factories import ProjectFactory, PromptFactory
from tests.worker.conftest import claimed_job
from worker.runs import generation_run

pytestmark = pytest.mark.django_db


def test_a_retried_generation_job_adds_only_the_samples_it_lacked(scripted):
    project = ProjectFactory(
        collects_rating=False,
        collects_ranking=False,
        collects_spans=False,
        collects_free_text=False,
    )
    prompts = [
        PromptFactory(project=project, text="İstanbul nerede? 🌉"),
        PromptFactory(project=project, text="<script>alert(1)</script>"),
        PromptFactory(project=project, text="ما هي عاصمة تركيا؟"),
    ]
    params = {"models": [{"name": "org/scripted"}], "n": 2}
    job = claimed_job(project, Job.Kind.GENERATE, params)
    # The first attempt stored the first prompt's samples, then the worker ran out of memory.
    responses_add_generated(
        job=job,
        model_name="org/scripted",
        samples=[GeneratedSample(prompts[0].pk, i, f"first try {i}", {}) for i in range(2)],
    )
    job_fail(job=job, error="CUDA out of memory")

    job_retry(job=job)
    rerun = job_claim(job_id=job.pk)
    load = scripted(lambda prompt: f"answer to {prompt}")
    generation_run(rerun, job_params(rerun), load=load)

    assert rerun.pk == job.pk
    # The scripted model says the same twice: each new prompt keeps one sample and lists
    # the other as skipped (same text), so 2 + 1 + 1 stored.
    assert Response.objects.filter(prompt__project=project).count() == 4
    assert Response.objects.filter(prompt=prompts[0]).count() == 2
    assert load.generator.calls == [prompts[1].text, prompts[2].text]
    rerun.refresh_from_db()
    assert rerun.attempts == 2 and (rerun.done, rerun.total) == (3, 3)
    assert [skip["prompt_id"] for skip in rerun.skipped] == [prompts[1].pk, prompts[2].pk]
