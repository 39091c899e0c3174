import dataclasses

import pytest
import torch

from worker.ml.device import pick_device
from worker.ml.generation import (
    GenerationParams,
    context_length,
    encode_chats,
    generate_completions,
    load_causal_lm,
    render_chat,
    seed_salt,
)
from worker.ml.tiny import build_tokenizer

PROMPTS = [
    "the quick brown fox",
    "name three primary colours",
    "a",
    "explain how a cache makes a model answer faster ? people compare two answers",
    "what is the capital of france ?",
    "write a short poem about the sea",
    "red",
    "people compare two answers and pick the better one",
    "the lazy dog",
]
CHATS = [[{"role": "user", "content": p}] for p in PROMPTS]
CHATS.append([{"role": "system", "content": "a reward model"}, *CHATS[0]])

GREEDY = GenerationParams(max_new_tokens=24, batch_size=4)
SAMPLED = GenerationParams(n=3, temperature=1.0, top_p=0.9, max_new_tokens=24, batch_size=4)


def _ids(result):
    return [[c.token_ids for c in samples] for samples in result]


def test_batched_greedy_equals_one_prompt_at_a_time(tiny_lm):
    model, tok = tiny_lm
    batched = generate_completions(model, tok, CHATS, GREEDY)
    single = generate_completions(model, tok, CHATS, dataclasses.replace(GREEDY, batch_size=1))
    assert batched == single
    lengths = {c.completion_tokens for samples in batched for c in samples}
    assert min(lengths) < GREEDY.max_new_tokens, "no early stop: eviction was not exercised"


def test_greedy_equals_transformers_generate(tiny_lm):
    model, tok = tiny_lm
    ours = generate_completions(model, tok, CHATS, GREEDY)
    for prompt, samples in zip(encode_chats(tok, CHATS), ours, strict=True):
        ids = torch.tensor([prompt])
        ref = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            do_sample=False,
            max_new_tokens=GREEDY.max_new_tokens,
        )
        assert samples[0].token_ids == tuple(ref[0, len(prompt) :].tolist())


def test_completion_stops_at_eos_and_leaves_it_out_of_the_text(tiny_lm):
    model, tok = tiny_lm
    result = generate_completions(model, tok, CHATS, GREEDY)
    stopped = [c for samples in result for c in samples if c.finish_reason == "stop"]
    assert stopped
    for c in stopped:
        assert c.token_ids[-1] == tok.eos_token_id
        assert c.completion_tokens == len(c.token_ids)
        assert "<|im_end|>" not in c.text
    for c in (c for samples in result for c in samples if c.finish_reason == "length"):
        assert c.completion_tokens == GREEDY.max_new_tokens


def test_each_prompt_gets_n_completions_with_prompt_token_counts(tiny_lm):
    model, tok = tiny_lm
    result = generate_completions(model, tok, CHATS, SAMPLED)
    assert len(result) == len(CHATS)
    assert all(len(samples) == SAMPLED.n for samples in result)
    for prompt, samples in zip(encode_chats(tok, CHATS), result, strict=True):
        assert {c.prompt_tokens for c in samples} == {len(prompt)}
    distinct = {c.token_ids for samples in result for c in samples}
    assert len(distinct) > len(CHATS)


def test_greedy_with_n_repeats_the_single_greedy_answer(tiny_lm):
    model, tok = tiny_lm
    result = generate_completions(model, tok, CHATS[:3], dataclasses.replace(GREEDY, n=3))
    assert all(len(set(samples)) == 1 and len(samples) == 3 for samples in result)


def test_sampling_is_reproducible_and_independent_of_batch_size(tiny_lm):
    model, tok = tiny_lm
    first = generate_completions(model, tok, CHATS, SAMPLED)
    again = generate_completions(model, tok, CHATS, SAMPLED)
    one_by_one = generate_completions(model, tok, CHATS, dataclasses.replace(SAMPLED, batch_size=1))
    assert _ids(first) == _ids(again) == _ids(one_by_one)


def test_another_seed_gives_other_samples(tiny_lm):
    model, tok = tiny_lm
    first = generate_completions(model, tok, CHATS, SAMPLED)
    other = generate_completions(model, tok, CHATS, dataclasses.replace(SAMPLED, seed=1))
    assert _ids(first) != _ids(other)


def test_progress_counts_up_to_the_number_of_completions(tiny_lm):
    model, tok = tiny_lm
    calls: list[tuple[int, int]] = []
    generate_completions(model, tok, CHATS, SAMPLED, on_progress=lambda d, t: calls.append((d, t)))
    done = [d for d, _ in calls]
    assert done == sorted(done) and done[-1] == len(CHATS) * SAMPLED.n
    assert {t for _, t in calls} == {len(CHATS) * SAMPLED.n}


def test_chat_template_is_used_when_the_tokenizer_has_one():
    tok = build_tokenizer()
    text = render_chat(tok, [{"role": "user", "content": "red"}])
    assert text == "<|im_start|>user\nred<|im_end|>\n<|im_start|>assistant\n"


def test_chats_render_as_role_lines_without_a_template():
    tok = build_tokenizer()
    tok.chat_template = None
    chat = [{"role": "system", "content": "a"}, {"role": "user", "content": "red"}]
    assert render_chat(tok, chat) == "system: a\nuser: red\nassistant:"


def test_loaded_tokenizer_pads_left_and_has_a_pad_token(tiny_lm_dir):
    model, tok = load_causal_lm(str(tiny_lm_dir), device=pick_device("cpu"))
    assert tok.padding_side == "left" and tok.pad_token is not None
    assert not model.training


@pytest.mark.parametrize("bad", [{"n": 0}, {"temperature": -1.0}, {"top_p": 0.0}])
def test_invalid_params_are_refused(bad):
    with pytest.raises(ValueError):
        GenerationParams(**bad)


# --- Seeds follow the prompt, not its place in the call ----------------------------------

KEYS = [1000 + 7 * i for i in range(len(CHATS))]  # prompt ids, as a job passes them


def test_a_prompt_samples_the_same_alone_at_another_position_or_batch_size(tiny_lm):
    model, tok = tiny_lm
    together = generate_completions(model, tok, CHATS, SAMPLED, keys=KEYS)
    alone = generate_completions(model, tok, CHATS[5:6], SAMPLED, keys=KEYS[5:6])
    assert _ids(alone) == _ids(together)[5:6]
    reversed_ = generate_completions(model, tok, CHATS[::-1], SAMPLED, keys=KEYS[::-1])
    assert _ids(reversed_) == _ids(together)[::-1]
    one_by_one = generate_completions(
        model, tok, CHATS, dataclasses.replace(SAMPLED, batch_size=1), keys=KEYS
    )
    assert _ids(one_by_one) == _ids(together)


def test_prompts_with_the_same_text_but_other_keys_get_other_samples(tiny_lm):
    model, tok = tiny_lm
    twins = generate_completions(model, tok, [CHATS[3], CHATS[3]], SAMPLED, keys=[41, 42])
    assert _ids(twins)[0] != _ids(twins)[1]


def test_another_salt_gives_other_samples(tiny_lm):
    model, tok = tiny_lm
    first = generate_completions(model, tok, CHATS, SAMPLED, keys=KEYS)
    other = generate_completions(
        model, tok, CHATS, dataclasses.replace(SAMPLED, salt=seed_salt("model-b")), keys=KEYS
    )
    assert _ids(first) != _ids(other)


def test_a_seed_salt_is_the_same_in_every_process():
    # zlib.crc32, not hash(): Python salts str hashes per process (PYTHONHASHSEED).
    assert seed_salt("tiny-a") == 789_914_502
    assert seed_salt("tiny-a") != seed_salt("tiny-b")
    assert seed_salt("İstanbul 🌊") == seed_salt("İstanbul 🌊")


# --- Prompts longer than the model's context ----------------------------------------------

LONG_CHAT = [
    {"role": "system", "content": "a reward model"},
    {"role": "user", "content": "the quick brown fox jumps over the lazy dog . " * 60},
]


def test_a_prompt_too_long_for_the_context_is_refused_and_the_others_are_generated(tiny_lm):
    model, tok = tiny_lm
    chats = [CHATS[0], LONG_CHAT, CHATS[1]]
    result = generate_completions(model, tok, chats, SAMPLED, keys=[1, 2, 3])
    assert [c.finish_reason for c in result[1]] == ["refused"] * SAMPLED.n
    (prompt_tokens,) = {c.prompt_tokens for c in result[1]}
    assert prompt_tokens + SAMPLED.max_new_tokens > 512
    assert {c.text for c in result[1]} == {""}
    assert all(c.refusal == result[1][0].refusal for c in result[1])
    assert f"{prompt_tokens} tokens" in result[1][0].refusal
    assert "512" in result[1][0].refusal
    without = generate_completions(model, tok, [CHATS[0], CHATS[1]], SAMPLED, keys=[1, 3])
    assert _ids([result[0], result[2]]) == _ids(without)


def test_a_prompt_that_fills_the_context_exactly_is_generated(tiny_lm):
    model, tok = tiny_lm
    chat = [{"role": "user", "content": "the quick brown fox jumps over the lazy dog . " * 48}]
    (prompt,) = encode_chats(tok, [chat])
    fits = dataclasses.replace(GREEDY, max_new_tokens=512 - len(prompt))
    (samples,) = generate_completions(model, tok, [chat], fits)
    assert samples[0].finish_reason in {"stop", "length"} and samples[0].token_ids
    over = dataclasses.replace(fits, max_new_tokens=fits.max_new_tokens + 1)
    (samples,) = generate_completions(model, tok, [chat], over)
    assert samples[0].finish_reason == "refused"


def test_progress_counts_refused_prompts_as_done(tiny_lm):
    model, tok = tiny_lm
    calls: list[tuple[int, int]] = []
    generate_completions(
        model, tok, [LONG_CHAT, CHATS[0]], SAMPLED, on_progress=lambda d, t: calls.append((d, t))
    )
    assert calls[-1] == (2 * SAMPLED.n, 2 * SAMPLED.n)


def test_the_context_is_read_from_the_model_config_else_the_tokenizer(tiny_lm):
    model, tok = tiny_lm
    assert context_length(model, tok) == 512
    assert tok.model_max_length > 10**18  # "no limit" sentinel, not a real one
