"""Generation jobs with a tiny local model: responses, their provenance, tasks, resuming."""

import pytest

from feedback.jobs import GenerateParams, job_params
from feedback.models import Job, Response, Task
from feedback.services import tasks_extend
from tests.factories import ProjectFactory, PromptFactory, ResponseFactory
from tests.worker.conftest import claimed_job
from worker.backends import generator_load
from worker.runs import generation_run

pytestmark = pytest.mark.django_db


@pytest.fixture
def pairwise_project():
    project = ProjectFactory(
        collects_rating=False,
        collects_ranking=False,
        collects_spans=False,
        collects_free_text=False,
    )
    for _ in range(3):
        PromptFactory(project=project, text="name three primary colours :")
    return project


def generate_params(model_dir, **overrides):
    params = {
        "models": [{"name": "tiny-a", "path": str(model_dir)}],
        "n": 2,
        "temperature": 1.0,
        "max_new_tokens": 6,
        "seed": 7,
        "batch_size": 2,
    }
    return {**params, **overrides}


def test_generation_stores_n_samples_per_prompt_with_model_and_parameters(
    pairwise_project, tiny_model_dir
):
    job = claimed_job(pairwise_project, Job.Kind.GENERATE, generate_params(tiny_model_dir))
    generation_run(job, job_params(job))

    responses = Response.objects.filter(job=job)
    assert responses.count() == 6
    assert {(r.prompt_id, r.sample_index) for r in responses} == {
        (p.pk, i) for p in pairwise_project.prompts.all() for i in range(2)
    }
    first = responses.first()
    assert first.model_name == "tiny-a"
    assert first.generation_params["model"] == str(tiny_model_dir)
    assert first.generation_params["temperature"] == 1.0
    assert first.generation_params["seed"] == 7
    assert first.generation_params["finish_reason"] in {"stop", "length"}
    job.refresh_from_db()
    assert (job.done, job.total) == (3, 3)


def test_generation_creates_the_tasks_for_the_new_responses(pairwise_project, tiny_model_dir):
    job = claimed_job(pairwise_project, Job.Kind.GENERATE, generate_params(tiny_model_dir))
    generation_run(job, job_params(job))
    # Two samples per prompt make one pair per prompt.
    assert Task.objects.filter(project=pairwise_project, layout="pair").count() == 3


def test_running_a_generation_job_again_writes_nothing_twice(pairwise_project, tiny_model_dir):
    job = claimed_job(pairwise_project, Job.Kind.GENERATE, generate_params(tiny_model_dir))
    generation_run(job, job_params(job))
    before = (Response.objects.count(), Task.objects.count())
    generation_run(job, job_params(job))
    assert (Response.objects.count(), Task.objects.count()) == before


def test_a_job_cut_off_mid_way_resumes_without_duplicates(
    pairwise_project, tiny_model_dir, monkeypatch
):
    params = generate_params(tiny_model_dir, batch_size=1)
    job = claimed_job(pairwise_project, Job.Kind.GENERATE, params)
    calls = []

    def dies_on_second_chunk(spec):
        generator = generator_load(spec)

        class Dying:
            def generate(self, chats, sampling, on_progress=None):
                calls.append(len(chats))
                if len(calls) == 2:
                    raise RuntimeError("worker lost")
                return generator.generate(chats, sampling, on_progress)

        return Dying()

    monkeypatch.setattr("worker.runs.CHUNK_BATCHES", 1)  # a prompt per chunk: one is saved
    with pytest.raises(RuntimeError):
        generation_run(job, job_params(job), load=dies_on_second_chunk)
    assert Response.objects.filter(job=job).count() == 2
    generation_run(job, job_params(job))
    assert Response.objects.filter(job=job).count() == 6


def test_each_model_of_a_job_answers_every_prompt(pairwise_project, tiny_model_dir):
    models = [
        {"name": "tiny-a", "path": str(tiny_model_dir)},
        {"name": "tiny-b", "path": str(tiny_model_dir)},
    ]
    job = claimed_job(
        pairwise_project, Job.Kind.GENERATE, generate_params(tiny_model_dir, models=models, n=1)
    )
    generation_run(job, job_params(job))
    by_model = {
        name: Response.objects.filter(job=job, model_name=name).count()
        for name in ("tiny-a", "tiny-b")
    }
    assert by_model == {"tiny-a": 3, "tiny-b": 3}
    job.refresh_from_db()
    assert job.total == 6 and job.done == 6


def test_new_responses_are_paired_with_the_old_ones_once(pairwise_project):
    prompt = pairwise_project.prompts.first()
    old = [ResponseFactory(prompt=prompt) for _ in range(2)]
    tasks_extend(project=pairwise_project, prompt_ids=[prompt.pk])
    new = ResponseFactory(prompt=prompt)

    created = tasks_extend(project=pairwise_project, prompt_ids=[prompt.pk])

    pairs = {frozenset(t.links.values_list("response_id", flat=True)) for t in created}
    assert pairs == {frozenset({old[0].pk, new.pk}), frozenset({old[1].pk, new.pk})}
    assert tasks_extend(project=pairwise_project, prompt_ids=[prompt.pk]) == []


def test_generation_params_are_checked_when_the_job_starts(pairwise_project):
    from feedback.jobs import job_start
    from feedback.services import FeedbackError

    with pytest.raises(FeedbackError) as caught:
        job_start(
            project=pairwise_project,
            kind=Job.Kind.GENERATE,
            params={"models": [{"name": "m", "backend": "openai"}], "top_p": 0},
        )
    assert set(caught.value.errors) == {"models.0", "top_p"}
    assert not Job.objects.exists()


def test_generate_params_default_to_sampling_with_a_seed():
    params = GenerateParams.model_validate({"models": [{"name": "m"}]})
    assert (params.n, params.temperature, params.seed) == (1, 0.7, 0)
