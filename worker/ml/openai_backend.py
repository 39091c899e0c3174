"""Candidate generation through an OpenAI-compatible `/v1/chat/completions` endpoint (vLLM).

Same inputs and outputs as `generation.generate_completions`, so a task can switch
backends by configuration. Errors are split for Celery's `autoretry_for`: retry
`TransientBackendError` (connection trouble, timeouts, 408/429/5xx), fail the job on
`PermanentBackendError` (other 4xx, malformed answers). A 400/413/422 refuses what one
request asked (vLLM answers 400 to a prompt over the context): that sample comes back
refused and the others go on.

Each sample is its own request with `n=1` and a seed derived from (seed, salt, prompt key,
sample), as in the local backend: sample j of a prompt does not change when n changes or
the prompt moves in the call, and the API's usage block then gives exact per-completion
token counts. Requests run concurrently, because vLLM batches concurrent requests on the
server.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

from worker.ml.generation import Chat, Completion, GenerationParams, ProgressCallback

logger = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class BackendError(Exception):
    """Generation through a remote endpoint failed."""


class TransientBackendError(BackendError):
    """Worth retrying later: the server was unreachable, slow, overloaded or failing.

    retry_after: seconds the server asked us to wait (Retry-After header), if any.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentBackendError(BackendError):
    """Retrying will not help: the request was refused (bad model name, bad parameters,
    authentication) or the answer was not an OpenAI chat completion.

    status: the HTTP status of a refusal, None for a malformed answer.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


# Refusals of what one request asked (too long a prompt, a bad value in it), unlike
# 401/403/404 (key, model), which every other request would get too.
REQUEST_REFUSED_STATUS = frozenset({400, 413, 422})


@dataclass(frozen=True)
class OpenAIEndpoint:
    """Where and how to call the server. base_url ends in /v1 (e.g. http://vllm:8000/v1).

    timeout_s bounds a whole request (a long completion on a busy server takes a while);
    connect_timeout_s is short so a dead host fails fast and the task retries.
    """

    base_url: str
    model: str
    api_key: str | None = None
    timeout_s: float = 120.0
    connect_timeout_s: float = 5.0
    concurrency: int = 8


def make_client(endpoint: OpenAIEndpoint) -> httpx.Client:
    """An httpx client with the endpoint's timeouts, auth header and connection pool."""
    headers = {"Authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else {}
    return httpx.Client(
        base_url=endpoint.base_url.rstrip("/") + "/",
        headers=headers,
        timeout=httpx.Timeout(endpoint.timeout_s, connect=endpoint.connect_timeout_s),
        limits=httpx.Limits(max_connections=endpoint.concurrency),
    )


def _sample_seed(params: GenerationParams, key: int, sample: int) -> int:
    # 31 bits: some servers reject seeds outside a signed 32-bit int. SeedSequence takes
    # non-negative ints only; a negative seed maps to its 64-bit twin.
    words = [params.seed % 2**64, params.salt % 2**64, key % 2**64, sample]
    return int(np.random.SeedSequence(words).generate_state(1)[0]) >> 1


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["retry-after"])
    except (KeyError, ValueError):
        return None


def chat_completion(
    client: httpx.Client,
    endpoint: OpenAIEndpoint,
    chat: Chat,
    params: GenerationParams,
    *,
    seed: int,
    schema: Mapping[str, Any] | None = None,
) -> Completion:
    """One completion of one chat, its answer constrained to the JSON `schema` if given;
    raises Transient/PermanentBackendError on failure."""
    body: dict[str, Any] = {
        "model": endpoint.model,
        "messages": [{"role": m["role"], "content": m["content"]} for m in chat],
        "n": 1,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "max_tokens": params.max_new_tokens,
        "seed": seed,
    }
    if schema is not None:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": schema, "strict": True},
        }
    try:
        response = client.post("chat/completions", json=body)
    except httpx.TransportError as exc:  # connect/read/write errors and timeouts
        raise TransientBackendError(f"{type(exc).__name__}: {exc}") from exc
    # Errors reach the Jobs page: the standard status line only, nothing the server wrote.
    if response.is_error:
        logger.warning(
            "%s answered %s: %.500s", endpoint.base_url, response.status_code, response.text
        )
    status = f"HTTP {response.status_code} {httpx.codes.get_reason_phrase(response.status_code)}"
    if response.status_code in RETRYABLE_STATUS:
        raise TransientBackendError(
            status,
            retry_after=_retry_after(response),
        )
    if response.is_error:
        # A refused request's reason ("maximum context length") is listed with the sample it
        # cost: a short excerpt, from an endpoint the operator registered. Otherwise the
        # status line only.
        detail = (
            f": {response.text[:200]}" if response.status_code in REQUEST_REFUSED_STATUS else ""
        )
        raise PermanentBackendError(status + detail, status=response.status_code)
    try:
        data = response.json()
        choice = data["choices"][0]
        usage = data["usage"]
        reason = choice.get("finish_reason")
        return Completion(
            text=choice["message"]["content"] or "",
            token_ids=(),
            prompt_tokens=int(usage["prompt_tokens"]),
            completion_tokens=int(usage["completion_tokens"]),
            finish_reason="length" if reason == "length" else "stop",
        )
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        logger.warning("%s sent no chat completion: %.500s", endpoint.base_url, response.text)
        raise PermanentBackendError("not a chat completion") from exc


def generate_completions_openai(
    endpoint: OpenAIEndpoint,
    chats: Sequence[Chat],
    params: GenerationParams,
    *,
    client: httpx.Client | None = None,
    on_progress: ProgressCallback | None = None,
    schemas: Sequence[Mapping[str, Any] | None] | None = None,
    keys: Sequence[int] | None = None,
) -> list[list[Completion]]:
    """`params.n` completions per chat from the endpoint; result[i][j] is sample j of chat i.
    `schemas[i]`, when given and not None, is the JSON schema chat i's answers must follow.

    keys: a stable id per chat (a prompt id) that seeds its samples; default its position.
    Greedy (temperature 0) asks once per chat and repeats the answer n times. A request
    refused with a REQUEST_REFUSED_STATUS gives a refused completion. Any other failure
    cancels the requests not yet sent and is raised after those in flight end; nothing is
    returned partially, so a retried task starts over.
    """
    keys = list(range(len(chats))) if keys is None else list(keys)
    greedy = params.temperature == 0
    samples = 1 if greedy else params.n
    jobs = [(p, s) for p in range(len(chats)) for s in range(samples)]
    total = len(chats) * params.n
    results: dict[tuple[int, int], Completion] = {}
    http = client or make_client(endpoint)
    pool = ThreadPoolExecutor(max_workers=endpoint.concurrency)
    try:
        futures = {
            pool.submit(
                chat_completion,
                http,
                endpoint,
                chats[p],
                params,
                seed=_sample_seed(params, keys[p], s),
                schema=schemas[p] if schemas else None,
            ): (p, s)
            for p, s in jobs
        }
        # Progress is reported from this thread: the callback may use a DB connection,
        # which Django keeps per thread.
        for future in as_completed(futures):
            try:
                results[futures[future]] = future.result()
            except PermanentBackendError as exc:
                if exc.status not in REQUEST_REFUSED_STATUS:
                    raise
                results[futures[future]] = Completion.refused(str(exc))
            if on_progress is not None:
                on_progress(len(results) * (params.n if greedy else 1), total)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if client is None:
            http.close()
    return [[results[(p, 0 if greedy else s)] for s in range(params.n)] for p in range(len(chats))]
