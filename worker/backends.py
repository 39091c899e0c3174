"""One interface over the two ways a job gets text from a model: a local transformers
model or an OpenAI-compatible server (vLLM, TGI, llama.cpp, a hosted API)."""

from __future__ import annotations

import functools
import gc
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from feedback.jobs import ModelSpec
from feedback.models import Judge
from worker.ml.device import Device, pick_device
from worker.ml.generation import (
    Chat,
    Completion,
    GenerationParams,
    ProgressCallback,
    generate_completions,
    load_causal_lm,
)
from worker.ml.openai_backend import OpenAIEndpoint, generate_completions_openai


class TextGenerator(Protocol):
    def generate(
        self,
        chats: Sequence[Chat],
        params: GenerationParams,
        on_progress: ProgressCallback | None = None,
        keys: Sequence[int] | None = None,
    ) -> list[list[Completion]]:
        """n completions per chat; `keys` (prompt ids) seed each chat's samples."""
        ...


@dataclass
class LocalGenerator:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase

    def generate(
        self,
        chats: Sequence[Chat],
        params: GenerationParams,
        on_progress: ProgressCallback | None = None,
        keys: Sequence[int] | None = None,
    ) -> list[list[Completion]]:
        return generate_completions(
            self.model, self.tokenizer, chats, params, on_progress=on_progress, keys=keys
        )


@dataclass
class RemoteGenerator:
    endpoint: OpenAIEndpoint

    def generate(
        self,
        chats: Sequence[Chat],
        params: GenerationParams,
        on_progress: ProgressCallback | None = None,
        keys: Sequence[int] | None = None,
    ) -> list[list[Completion]]:
        return generate_completions_openai(
            self.endpoint, chats, params, on_progress=on_progress, keys=keys
        )


Loader = Callable[[ModelSpec], TextGenerator]


@functools.cache
def worker_device() -> Device:
    """The device of this worker process: PREFHUB_DEVICE (auto, cpu, cuda), default auto."""
    return pick_device(os.environ.get("PREFHUB_DEVICE", "auto"))  # type: ignore[arg-type]


# The local model a worker loaded last, kept for the next job: a judge job after the
# generation job that used the same model (or the next judge job) skips reloading it.
_loaded: dict[str, LocalGenerator] = {}


def generator_load(spec: ModelSpec) -> TextGenerator:
    """A generator for `spec`; a `.gguf` location loads that file from its directory.

    Local models are cached one at a time per worker process; loading another drops the
    previous one first, so two models never share the memory.
    """
    if spec.backend == "openai":
        return RemoteGenerator(
            OpenAIEndpoint(
                base_url=spec.base_url,
                model=spec.location,
                api_key=os.environ.get(spec.api_key_env) or None,
            )
        )
    location = spec.location
    if location not in _loaded:
        _loaded.clear()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if location.endswith(".gguf"):
            path = Path(location)
            model, tokenizer = load_causal_lm(
                str(path.parent), gguf_file=path.name, device=worker_device()
            )
        else:
            model, tokenizer = load_causal_lm(location, device=worker_device())
        _loaded[location] = LocalGenerator(model, tokenizer)
    return _loaded[location]


def judge_model_spec(judge: Judge) -> ModelSpec:
    return ModelSpec(
        name=judge.model_name,
        backend=judge.backend,  # type: ignore[arg-type]
        base_url=judge.base_url,
        api_key_env=judge.parameters.get("api_key_env", "OPENAI_API_KEY"),
    )
