"""Generation jobs with a tiny local model: responses, their provenance, tasks, resuming."""

import pytest

from feedback.jobs import (
    GeneratedSample,
    GenerateParams,
    GenerationRefused,
    job_params,
    job_start,
    responses_add_generated,
)
from feedback.models import Job, Response, Task
from feedback.services import FeedbackError, tasks_extend
from tests.factories import ProjectFactory, PromptFactory, ResponseFactory
from tests.worker.conftest import claimed_job
from worker.backends import generator_load
from worker.ml.generation import Completion
from worker.ml.openai_backend import PermanentBackendError
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
            def generate(self, chats, sampling, on_progress=None, keys=None):
                calls.append(len(chats))
                if len(calls) == 2:
                    raise RuntimeError("worker lost")
                return generator.generate(chats, sampling, on_progress, keys=keys)

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


# --- Samples follow the prompt: batch size, resuming and model names -----------------------

HARD_PROMPTS = [
    "name three primary colours :",
    "İstanbul 🌊 مرحبا",
    "<script>alert(1)</script> the quick brown fox",
    "what is the capital of france ?",
    "write a short poem about the sea",
    "a",
    "people compare two answers",
    "explain how a cache makes a model answer faster ?",
    "the lazy dog",
]


@pytest.fixture
def many_prompts_project():
    project = ProjectFactory(
        collects_rating=False,
        collects_ranking=False,
        collects_spans=False,
        collects_free_text=False,
    )
    for text in HARD_PROMPTS:
        PromptFactory(project=project, text=text)
    PromptFactory(
        project=project,
        text="",
        messages=[
            {"role": "system", "content": "a reward model"},
            {"role": "user", "content": "red"},
            {"role": "assistant", "content": "yellow"},
            {"role": "user", "content": "and blue ?"},
        ],
    )
    return project


def texts_of(job):
    return {
        (r.prompt_id, r.model_name, r.sample_index): r.text
        for r in Response.objects.filter(job=job)
    }


def test_a_jobs_samples_do_not_depend_on_its_batch_size(many_prompts_project, tiny_model_dir):
    params = generate_params(tiny_model_dir, n=2, max_new_tokens=8)
    one = claimed_job(many_prompts_project, Job.Kind.GENERATE, {**params, "batch_size": 1})
    four = claimed_job(many_prompts_project, Job.Kind.GENERATE, {**params, "batch_size": 4})
    generation_run(one, job_params(one))
    generation_run(four, job_params(four))
    assert len(texts_of(one)) > 10
    assert texts_of(one) == texts_of(four)


def test_a_resumed_job_stores_the_texts_of_an_uninterrupted_one(
    many_prompts_project, tiny_model_dir, monkeypatch
):
    params = generate_params(tiny_model_dir, n=2, max_new_tokens=8, batch_size=1)
    whole = claimed_job(many_prompts_project, Job.Kind.GENERATE, params)
    generation_run(whole, job_params(whole))

    cut = claimed_job(many_prompts_project, Job.Kind.GENERATE, params)
    calls = []

    def dies_on_third_chunk(spec):
        generator = generator_load(spec)

        class Dying:
            def generate(self, chats, sampling, on_progress=None, keys=None):
                calls.append(len(chats))
                if len(calls) == 3:
                    raise RuntimeError("worker lost")
                return generator.generate(chats, sampling, on_progress, keys=keys)

        return Dying()

    monkeypatch.setattr("worker.runs.CHUNK_BATCHES", 3)  # 3 prompts a chunk
    with pytest.raises(RuntimeError):
        generation_run(cut, job_params(cut), load=dies_on_third_chunk)
    cut.refresh_from_db()
    assert Response.objects.filter(job=cut).count() + len(cut.skipped) == 2 * 3 * 2
    # Lose a sample in the middle too: only it is generated again.
    Response.objects.filter(job=cut, sample_index=1).first().delete()
    generation_run(cut, job_params(cut))
    assert texts_of(cut) == texts_of(whole)
    whole.refresh_from_db()
    cut.refresh_from_db()
    assert sorted(cut.skipped, key=str) == sorted(whole.skipped, key=str)


def test_two_models_with_the_same_weights_sample_differently(many_prompts_project, tiny_model_dir):
    models = [
        {"name": "tiny-a", "path": str(tiny_model_dir)},
        {"name": "tiny-b", "path": str(tiny_model_dir)},
    ]
    job = claimed_job(
        many_prompts_project,
        Job.Kind.GENERATE,
        generate_params(tiny_model_dir, models=models, n=1, max_new_tokens=8),
    )
    generation_run(job, job_params(job))
    texts = texts_of(job)
    prompts = many_prompts_project.prompts.all()
    # A sample that repeats the other model's is recorded as skipped, not stored: the same.
    pairs = [(texts.get((p.pk, "tiny-a", 0)), texts.get((p.pk, "tiny-b", 0))) for p in prompts]
    differ = [a for a, b in pairs if a is not None and b is not None and a != b]
    assert len(differ) > len(prompts) // 2


# --- Prompts a model cannot answer are skipped and reported --------------------------------

TOO_LONG_FOR_TINY = "the quick brown fox jumps over the lazy dog . " * 60  # 600 > 512 tokens


def test_a_prompt_too_long_for_a_local_model_is_skipped_and_reported(
    pairwise_project, tiny_model_dir
):
    long = PromptFactory(project=pairwise_project, text=TOO_LONG_FOR_TINY)
    job = claimed_job(pairwise_project, Job.Kind.GENERATE, generate_params(tiny_model_dir))
    generation_run(job, job_params(job))

    assert not Response.objects.filter(prompt=long).exists()
    assert Response.objects.filter(job=job).count() == 6
    job.refresh_from_db()
    assert [(s["prompt_id"], s["model"], s["sample_index"]) for s in job.skipped] == [
        (long.pk, "tiny-a", 0),
        (long.pk, "tiny-a", 1),
    ]
    assert "512" in job.skipped[0]["reason"] and "max_new_tokens 6" in job.skipped[0]["reason"]
    assert (job.done, job.total) == (4, 4)
    assert not Task.objects.filter(prompt=long).exists()

    generation_run(job, job_params(job))  # a redelivered job reports it once
    job.refresh_from_db()
    assert len(job.skipped) == 2


def test_a_job_whose_every_prompt_is_too_long_fails_with_the_reason(
    pairwise_project, tiny_model_dir
):
    job = claimed_job(
        pairwise_project, Job.Kind.GENERATE, generate_params(tiny_model_dir, max_new_tokens=600)
    )
    with pytest.raises(GenerationRefused, match="max_new_tokens 600"):
        generation_run(job, job_params(job))
    assert not Response.objects.filter(job=job).exists()


@pytest.fixture
def vllm_url(settings, server_url) -> str:
    """The fake vLLM server, registered by the operator as the endpoint "fake-vllm"."""
    settings.INFERENCE_ENDPOINTS = {"fake-vllm": {"base_url": server_url}}
    return server_url


def served(url, model="smollm2", **overrides):
    spec = {"name": "served", "backend": "openai", "endpoint": "fake-vllm", "path": model}
    return {
        "models": [spec],
        "n": 2,
        "temperature": 1.0,
        "max_new_tokens": 6,
        "seed": 7,
        "batch_size": 2,
        **overrides,
    }


def test_a_prompt_the_server_refuses_is_skipped_while_the_others_are_generated(
    pairwise_project, vllm_url
):
    long = PromptFactory(project=pairwise_project, text="İstanbul <b>TOO LONG</b> 🌊")
    job = claimed_job(pairwise_project, Job.Kind.GENERATE, served(vllm_url))
    generation_run(job, job_params(job))

    assert Response.objects.filter(job=job).count() == 6
    assert not Response.objects.filter(prompt=long).exists()
    job.refresh_from_db()
    assert {(s["prompt_id"], s["sample_index"]) for s in job.skipped} == {
        (long.pk, 0),
        (long.pk, 1),
    }
    assert "HTTP 400" in job.skipped[0]["reason"]
    assert "maximum context length" in job.skipped[0]["reason"]


def test_a_server_that_refuses_every_request_fails_the_job(pairwise_project, vllm_url):
    job = claimed_job(pairwise_project, Job.Kind.GENERATE, served(vllm_url, "status-400"))
    with pytest.raises(GenerationRefused, match="HTTP 400"):
        generation_run(job, job_params(job))


@pytest.mark.parametrize("status", [401, 404])
def test_a_bad_key_or_unknown_model_fails_the_job_at_once(pairwise_project, vllm_url, status):
    job = claimed_job(pairwise_project, Job.Kind.GENERATE, served(vllm_url, f"status-{status}"))
    with pytest.raises(PermanentBackendError, match=str(status)):
        generation_run(job, job_params(job))


# --- Identical samples ---------------------------------------------------------------------


def test_greedy_sampling_with_several_samples_is_refused_when_the_job_starts(pairwise_project):
    with pytest.raises(FeedbackError) as caught:
        job_start(
            project=pairwise_project,
            kind=Job.Kind.GENERATE,
            params={"models": [{"name": "m"}], "temperature": 0, "n": 2},
        )
    assert list(caught.value.errors) == ["n"]
    assert "temperature 0" in caught.value.errors["n"][0]
    assert not Job.objects.exists()
    job_start(
        project=pairwise_project,
        kind=Job.Kind.GENERATE,
        params={"models": [{"name": "m"}], "temperature": 0, "n": 1},
    )


class Repeats:
    """A model whose samples of a prompt all say the same, except for the last prompt."""

    def __init__(self) -> None:
        self.calls = 0

    def generate(self, chats, sampling, on_progress=None, keys=None):
        self.calls += 1
        out = []
        for i, chat in enumerate(chats):
            texts = [f"{chat[-1]['content']} !"] * sampling.n
            if i == len(chats) - 1:
                texts = [f"{text} {j}" for j, text in enumerate(texts)]
            out.append([Completion(text, (), 3, 2, "stop") for text in texts])
        return out


def test_a_sample_with_the_text_of_an_earlier_one_is_not_stored_nor_paired(pairwise_project):
    prompts = list(pairwise_project.prompts.order_by("id"))
    model = Repeats()
    params = {"models": [{"name": "m"}], "n": 3, "temperature": 1.0, "batch_size": 8}
    job = claimed_job(pairwise_project, Job.Kind.GENERATE, params)
    generation_run(job, job_params(job), load=lambda spec: model)

    stored = Response.objects.filter(job=job)
    assert [stored.filter(prompt=p).count() for p in prompts] == [1, 1, 3]
    assert not Task.objects.filter(prompt__in=prompts[:2]).exists()
    assert Task.objects.filter(prompt=prompts[2], layout="pair").count() == 3
    job.refresh_from_db()
    assert len(job.skipped) == 4
    assert {s["reason"] for s in job.skipped} == {"same text as sample 0"}

    generation_run(job, job_params(job), load=lambda spec: model)  # nothing left to ask
    assert model.calls == 1


def test_a_sample_equal_to_one_stored_earlier_is_skipped(pairwise_project):
    prompt = pairwise_project.prompts.first()
    job = claimed_job(pairwise_project, Job.Kind.GENERATE, {"models": [{"name": "m"}]})
    sample = GeneratedSample(prompt.pk, 0, "İstanbul 🌊", {})
    responses_add_generated(job=job, model_name="m", samples=[sample])
    responses_add_generated(
        job=job,
        model_name="m",
        samples=[
            GeneratedSample(prompt.pk, 1, "İstanbul 🌊 ", {}),
            GeneratedSample(prompt.pk, 2, "   ", {}),
            GeneratedSample(prompt.pk, 3, "", {}, refusal="HTTP 400: too long"),
        ],
    )
    assert Response.objects.filter(job=job).count() == 1
    job.refresh_from_db()
    assert [(s["sample_index"], s["reason"]) for s in job.skipped] == [
        (1, "same text as sample 0"),
        (2, "empty completion"),
        (3, "HTTP 400: too long"),
    ]
