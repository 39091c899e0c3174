"""Fixtures for job tests: a tiny local model on disk and a judge that follows a script."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from django.db import connection

from feedback.jobs import ModelSpec
from tests.worker.celery_worker import BROKER_URL, WorkerProcess
from tests.worker.ml.test_openai_backend import FakeVLLM, QuietServer
from worker.celery import app
from worker.ml.generation import Chat, Completion, GenerationParams, ProgressCallback
from worker.ml.tiny import build_tiny_causal_lm, build_tiny_sentence_encoder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_causal_lm(tmp_path_factory.mktemp("tiny-lm"))


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer sentence encoder: the embedding backbone of reward models in tests."""
    return build_tiny_sentence_encoder(tmp_path_factory.mktemp("tiny-encoder"))


@pytest.fixture(scope="session")
def trained_reward_dir(tiny_encoder_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A reward model trained once per session on the tiny encoder, under its own
    artifact root (`dir.parent.parent`), for tests of what uses a trained model."""
    from worker.ml.rewards import Comparison, TrainConfig, train

    pairs = [
        Comparison(
            prompt=[{"role": "user", "content": f"name three primary colours ? {i}"}],
            chosen="red , yellow and blue .",
            rejected="the lazy dog .",
            group=str(i),
        )
        for i in range(8)
    ]
    config = TrainConfig(
        backbone=str(tiny_encoder_dir), backbone_kind="embedding", max_epochs=1, max_length=32
    )
    out_dir = tmp_path_factory.mktemp("artifacts") / "reward_models" / "tiny"
    train(pairs, [], config, out_dir)
    return out_dir


@pytest.fixture
def reward_model(project, trained_reward_dir: Path, settings):
    """A RewardModel row of `project` whose files are the session's tiny reward model."""
    from feedback.models import RewardModel

    settings.ARTIFACT_ROOT = trained_reward_dir.parent.parent
    return RewardModel.objects.create(
        project=project,
        name="tiny",
        backbone="tiny-encoder",
        backbone_kind="embedding",
        parameters={"data": {"pairs": True}},
        artifact_path="reward_models/tiny",
    )


@pytest.fixture(autouse=True)
def models_under_tmp_allowed(settings, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Job tests build their models under pytest's temporary directory: let jobs load them."""
    settings.LOCAL_MODEL_DIRS = [*settings.LOCAL_MODEL_DIRS, str(tmp_path_factory.getbasetemp())]


@dataclass
class ScriptedGenerator:
    """A stand-in model whose answer to a chat is `script(prompt text)`.

    Judge tests use it to say exactly what a judge would say; `calls` records prompts and
    `schemas` the JSON schema asked for with each (None when none was).
    """

    script: Callable[[str], str]
    calls: list[str] = field(default_factory=list)
    schemas: list[Mapping[str, Any] | None] = field(default_factory=list)

    def generate(
        self,
        chats: Sequence[Chat],
        params: GenerationParams,
        on_progress: ProgressCallback | None = None,
        keys: Sequence[int] | None = None,
        *,
        schemas: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> list[list[Completion]]:
        self.schemas += schemas or [None] * len(chats)
        out = []
        for chat in chats:
            prompt = chat[-1]["content"]
            self.calls.append(prompt)
            text = self.script(prompt)
            out.append([Completion(text, (), len(prompt), len(text), "stop")] * params.n)
        return out


@pytest.fixture
def scripted() -> Callable[[Callable[[str], str]], Callable[[ModelSpec], ScriptedGenerator]]:
    """scripted(fn) -> a loader that hands out one ScriptedGenerator answering with fn."""

    def make(script: Callable[[str], str]) -> Callable[[ModelSpec], ScriptedGenerator]:
        generator = ScriptedGenerator(script)

        def load(spec: ModelSpec) -> ScriptedGenerator:
            return generator

        load.generator = generator  # type: ignore[attr-defined]
        return load

    return make


def claimed_job(project, kind: str, params: dict, user=None):
    """A job started through job_start (its enqueue waits for a commit that tests never
    make) and claimed as a worker would, ready for a job body to run."""
    from feedback.jobs import job_claim, job_start

    job = job_start(project=project, kind=kind, params=params, created_by=user)
    return job_claim(job_id=job.pk)


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    """A fake vLLM server on a free loopback port, one per test module."""
    server = QuietServer(("127.0.0.1", 0), FakeVLLM)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Send this process's tasks to Redis instead of running them in-process."""
    client = redis.Redis.from_url(BROKER_URL)
    client.flushdb()
    saved = {key: app.conf[key] for key in ("broker_url", "task_always_eager")}
    app.conf.update(broker_url=BROKER_URL, task_always_eager=False)
    # Eager runs earlier in the session built connection pools for the default broker URL;
    # start from empty pools so that publishing reads the URL above.
    monkeypatch.setattr(app, "_pool", None)
    monkeypatch.setattr(app.amqp, "_producer_pool", None)
    yield
    app.conf.update(saved)
    client.flushdb()


@pytest.fixture
def start_worker(tmp_path, tmp_path_factory, broker) -> Iterator[Callable[..., WorkerProcess]]:
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "DATABASE_CONN_MAX_AGE": "0",
        "CELERY_BROKER_URL": BROKER_URL,
        "HF_HUB_OFFLINE": "1",
        "PREFHUB_DEVICE": "cpu",
        "OMP_NUM_THREADS": "1",
        "PREFHUB_LOCAL_MODEL_DIRS": str(tmp_path_factory.getbasetemp()),
    }
    workers: list[WorkerProcess] = []

    def start(pool: str = "solo", **extra_env: str) -> WorkerProcess:
        log = tmp_path / f"worker{len(workers)}.log"
        worker = WorkerProcess({**env, **extra_env}, log, pool)
        workers.append(worker)
        worker.wait_ready()
        return worker

    yield start
    for worker in workers:
        worker.stop()
