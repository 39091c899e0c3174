"""The OpenAI-compatible backend against a real HTTP server on 127.0.0.1 (no httpx mocks).

The fake server answers like vLLM: the completion echoes the last message and the seed;
model names starting with "status-" make it answer with that status instead, "slow" makes
it wait past the client's timeout, and a last message with "TOO LONG" in it is refused with
vLLM's 400 for a prompt over the model's context.
"""

import json
import socket
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from worker.ml.generation import GenerationParams, seed_salt
from worker.ml.openai_backend import (
    OpenAIEndpoint,
    PermanentBackendError,
    TransientBackendError,
    generate_completions_openai,
)

CHATS = [
    [{"role": "user", "content": "Name three primary colours."}],
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Why is the sky blue?"},
    ],
]


class FakeVLLM(BaseHTTPRequestHandler):
    requests: list[dict] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeVLLM.requests.append({"path": self.path, "auth": self.headers["Authorization"], **body})
        model = body["model"]
        if model.startswith("status-"):
            status = int(model.removeprefix("status-"))
            self._send(status, {"error": {"message": "nope"}}, {"Retry-After": "3"})
            return
        if "TOO LONG" in body["messages"][-1]["content"]:
            message = "This model's maximum context length is 2048 tokens. However, you asked 2100"
            self._send(400, {"object": "error", "message": message, "code": 400})
            return
        if model == "slow":
            time.sleep(1.0)
        if model == "garbage":
            self._send(200, {"hello": "world"})
            return
        words = body["messages"][-1]["content"].split()
        text = " ".join(words[: body["max_tokens"]]) + f" #{body['seed']}"
        reason = "length" if len(words) > body["max_tokens"] else "stop"
        self._send(
            200,
            {
                "id": "cmpl-1",
                "object": "chat.completion",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": reason,
                    }
                ],
                "usage": {"prompt_tokens": len(body["messages"]) * 10, "completion_tokens": 5},
            },
        )

    def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # the timeout test hangs up before the slow answer is written


@pytest.fixture(autouse=True)
def clear_requests() -> None:
    FakeVLLM.requests.clear()


def _endpoint(url: str, model: str = "smollm2", **kwargs: object) -> OpenAIEndpoint:
    return OpenAIEndpoint(base_url=url, model=model, api_key="secret", **kwargs)


def test_each_chat_gets_n_completions_with_token_counts(server_url):
    params = GenerationParams(n=3, temperature=0.7, top_p=0.9, max_new_tokens=2, seed=5)
    result = generate_completions_openai(_endpoint(server_url), CHATS, params)
    assert [len(samples) for samples in result] == [3, 3]
    first = result[0][0]
    assert first.text.startswith("Name three #")
    assert (first.prompt_tokens, first.completion_tokens, first.finish_reason) == (10, 5, "length")
    assert result[1][0].prompt_tokens == 20
    assert len({c.text for c in result[0]}) == 3, "samples must get different seeds"


def test_request_carries_the_openai_parameters(server_url):
    params = GenerationParams(n=1, temperature=0.7, top_p=0.9, max_new_tokens=64, seed=5)
    generate_completions_openai(_endpoint(server_url), CHATS[1:], params)
    (sent,) = FakeVLLM.requests
    assert sent["path"] == "/v1/chat/completions"
    assert sent["auth"] == "Bearer secret"
    assert sent["messages"] == CHATS[1]
    assert (sent["model"], sent["n"], sent["temperature"], sent["top_p"]) == (
        "smollm2",
        1,
        0.7,
        0.9,
    )
    assert sent["max_tokens"] == 64 and isinstance(sent["seed"], int)


def test_same_seed_sends_same_seeds_and_sample_seeds_do_not_depend_on_n(server_url):
    params = GenerationParams(n=2, temperature=1.0, seed=11)
    a = generate_completions_openai(_endpoint(server_url), CHATS, params)
    b = generate_completions_openai(_endpoint(server_url), CHATS, params)
    more = generate_completions_openai(
        _endpoint(server_url), CHATS, GenerationParams(n=4, temperature=1.0, seed=11)
    )
    assert a == b
    assert [samples[:2] for samples in more] == a


def test_greedy_asks_once_per_chat_and_repeats_the_answer(server_url):
    calls = []
    result = generate_completions_openai(
        _endpoint(server_url),
        CHATS,
        GenerationParams(n=3, temperature=0.0),
        on_progress=lambda done, total: calls.append((done, total)),
    )
    assert len(FakeVLLM.requests) == 2
    assert all(len(set(samples)) == 1 for samples in result)
    assert sorted(calls) == [(3, 6), (6, 6)]


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_overload_and_server_errors_are_transient(server_url, status):
    with pytest.raises(TransientBackendError) as info:
        generate_completions_openai(
            _endpoint(server_url, f"status-{status}"), CHATS, GenerationParams()
        )
    assert info.value.retry_after == 3.0


@pytest.mark.parametrize("status", [401, 403, 404])
def test_refusals_that_would_hit_every_request_are_permanent(server_url, status):
    with pytest.raises(PermanentBackendError, match=str(status)):
        generate_completions_openai(
            _endpoint(server_url, f"status-{status}"), CHATS, GenerationParams()
        )


def test_a_reply_that_is_not_a_chat_completion_is_permanent(server_url):
    with pytest.raises(PermanentBackendError, match="not a chat completion"):
        generate_completions_openai(_endpoint(server_url, "garbage"), CHATS, GenerationParams())


def test_a_read_timeout_is_transient(server_url):
    endpoint = _endpoint(server_url, "slow", timeout_s=0.2)
    with pytest.raises(TransientBackendError, match="ReadTimeout"):
        generate_completions_openai(endpoint, CHATS, GenerationParams())


def test_an_unreachable_server_is_transient():
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(TransientBackendError, match="ConnectError"):
        generate_completions_openai(
            _endpoint(f"http://127.0.0.1:{port}/v1"), CHATS, GenerationParams()
        )


def test_a_json_schema_is_sent_as_response_format_only_with_the_chat_it_belongs_to(server_url):
    schema = {
        "type": "object",
        "properties": {"verdict": {"type": "string", "enum": ["A", "B", "tie"]}},
        "required": ["verdict"],
        "additionalProperties": False,
    }
    params = GenerationParams(n=2, temperature=0.7, max_new_tokens=8)
    generate_completions_openai(_endpoint(server_url), CHATS, params, schemas=[schema, None])

    with_schema = [r for r in FakeVLLM.requests if r["messages"] == CHATS[0]]
    without = [r for r in FakeVLLM.requests if r["messages"] == CHATS[1]]
    assert (len(with_schema), len(without)) == (2, 2)
    assert all(
        r["response_format"]
        == {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": schema, "strict": True},
        }
        for r in with_schema
    )
    assert not any("response_format" in r for r in without)


def test_no_schemas_send_no_response_format(server_url):
    generate_completions_openai(_endpoint(server_url), CHATS, GenerationParams())
    assert all("response_format" not in r for r in FakeVLLM.requests)


@pytest.mark.parametrize("status", [400, 413, 422])
def test_a_request_refused_as_bad_refuses_only_its_own_sample(server_url, status):
    result = generate_completions_openai(
        _endpoint(server_url, f"status-{status}"), CHATS, GenerationParams(n=2, temperature=1.0)
    )
    assert {c.finish_reason for samples in result for c in samples} == {"refused"}
    assert result[0][0].refusal.startswith(f"HTTP {status}")


def test_a_prompt_over_the_context_is_refused_while_the_others_are_generated(server_url):
    long_chat = [
        {"role": "system", "content": "Answer in <b>bold</b>."},
        {"role": "user", "content": "İstanbul 🌊 مرحبا <script>alert(1)</script> TOO LONG"},
    ]
    calls = []
    result = generate_completions_openai(
        _endpoint(server_url),
        [CHATS[0], long_chat, CHATS[1]],
        GenerationParams(n=2, temperature=1.0),
        on_progress=lambda done, total: calls.append((done, total)),
    )
    assert [c.finish_reason for c in result[1]] == ["refused", "refused"]
    assert "maximum context length" in result[1][0].refusal
    assert "HTTP 400" in result[1][0].refusal
    assert result[1][0].text == "" and result[1][0].completion_tokens == 0
    assert all(c.finish_reason in {"stop", "length"} for c in result[0] + result[2])
    assert max(calls) == (6, 6)


# --- Seeds follow the prompt, not its place in the call ----------------------------------


def _seeds(result):
    return [[c.text.rsplit("#", 1)[1] for c in samples] for samples in result]


def test_a_prompt_gets_the_same_seeds_alone_or_at_another_position(server_url):
    params = GenerationParams(n=2, temperature=1.0, seed=11)
    both = generate_completions_openai(_endpoint(server_url), CHATS, params, keys=[70, 71])
    alone = generate_completions_openai(_endpoint(server_url), CHATS[1:], params, keys=[71])
    swapped = generate_completions_openai(_endpoint(server_url), CHATS[::-1], params, keys=[71, 70])
    assert _seeds(alone) == _seeds(both)[1:]
    assert _seeds(swapped) == _seeds(both)[::-1]


def test_same_text_under_other_keys_or_another_salt_gets_other_seeds(server_url):
    params = GenerationParams(n=1, temperature=1.0, seed=11)
    twins = generate_completions_openai(
        _endpoint(server_url), [CHATS[0], CHATS[0]], params, keys=[5, 6]
    )
    assert _seeds(twins)[0] != _seeds(twins)[1]
    salted = generate_completions_openai(
        _endpoint(server_url), [CHATS[0]], replace(params, salt=seed_salt("other")), keys=[5]
    )
    assert _seeds(salted)[0] != _seeds(twins)[0]
    assert all(0 <= int(seed) < 2**31 for samples in _seeds(twins + salted) for seed in samples)
