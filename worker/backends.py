"""One interface over the two ways a job gets text from a model: a local transformers
model or an OpenAI-compatible server (vLLM, TGI, llama.cpp, a hosted API)."""

from __future__ import annotations

import functools
import gc
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from django.conf import settings
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from feedback.endpoints import endpoint_get, local_model_refusal
from feedback.jobs import ModelSpec
from feedback.jobs import judge_model_spec as judge_model_spec  # worker.runs reads it here
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

# Per chat, the JSON schema its answer must follow, or None. Only a backend that can
# constrain decoding sends it; the others ignore it (parsers read free text too).
Schemas = Sequence[Mapping[str, Any] | None] | None


class TextGenerator(Protocol):
    def generate(
        self,
        chats: Sequence[Chat],
        params: GenerationParams,
        on_progress: ProgressCallback | None = None,
        keys: Sequence[int] | None = None,
        *,
        schemas: Schemas = None,
    ) -> list[list[Completion]]:
        """n completions per chat; `keys` (prompt ids) seed each chat's samples, `schemas`
        constrain each chat's answer where the backend can."""
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
        *,
        schemas: Schemas = None,
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
        *,
        schemas: Schemas = None,
    ) -> list[list[Completion]]:
        return generate_completions_openai(
            self.endpoint, chats, params, on_progress=on_progress, schemas=schemas, keys=keys
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
    """A generator for `spec`; a `.gguf` location loads that file from its directory (its
    conversion is kept under ARTIFACT_ROOT/gguf for the next load, see `load_causal_lm`).

    Local models are cached one at a time per worker process; loading another drops the
    previous one first, so two models never share the memory. Raises ValueError for an
    unregistered endpoint and PermissionError for a path outside the allowed directories.
    """
    if spec.backend == "openai":
        # Looked up again here: the worker trusts its own registry, not the job's row.
        endpoint = endpoint_get(spec.endpoint)
        key = os.environ.get(endpoint.api_key_env) if endpoint.api_key_env else None
        return RemoteGenerator(
            OpenAIEndpoint(base_url=endpoint.base_url, model=spec.location, api_key=key or None)
        )
    location = spec.location
    if refusal := local_model_refusal(location):
        raise PermissionError(refusal)
    if location not in _loaded:
        _loaded.clear()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if location.endswith(".gguf"):
            path = Path(location)
            model, tokenizer = load_causal_lm(
                str(path.parent),
                gguf_file=path.name,
                device=worker_device(),
                gguf_cache=settings.ARTIFACT_ROOT / "gguf",
            )
        else:
            model, tokenizer = load_causal_lm(location, device=worker_device())
        _loaded[location] = LocalGenerator(model, tokenizer)
    return _loaded[location]
