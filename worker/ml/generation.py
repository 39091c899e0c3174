"""Candidate-response generation with a local causal LM, batched for throughput.

`generate_completions` is the entry point: chats in, `n` completions per chat out.

Why an own decode loop instead of `model.generate` on padded batches: `generate` keeps a
finished row in the batch until the longest row is done, so a batch of 32 with a few long
answers spends most of its steps on rows that are already over. Here rows leave the batch
(and the KV cache) as soon as they stop, and waiting prompts are admitted into the freed
slots (continuous batching). Each row keeps its own positions and left padding, so a row
computes the same function as when it runs alone; the only difference is floating-point
summation order inside batched kernels, see `Completion.near_tie`.

Sampling draws one uniform number per step from a generator seeded by (seed, salt, prompt
key, sample), so sampled text does not depend on batch size, on which rows share a batch or
on where the prompt sits in the call: a job passes prompt ids as keys and a hash of the
model's name as salt, so a resumed job draws what an uninterrupted one would have.

A prompt whose tokens plus max_new_tokens do not fit the model's context is not generated
(nor truncated): its completions come back refused, with the reason.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
import zlib
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import transformers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    DynamicCache,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.cache_utils import DynamicLayer
from transformers.tokenization_utils_base import VERY_LARGE_INTEGER

from worker.ml.device import Device

logger = logging.getLogger(__name__)

Message = dict[str, str]
Chat = Sequence[Message]
ProgressCallback = Callable[[float, int], None]

# Top-1 minus top-2 logit below this marks a step whose greedy choice could flip between
# batch shapes: fp32 kernels differ by ~1e-6..1e-4 in the logits across shapes, bf16/fp16
# ones by ~1e-2 (8-bit mantissa).
TIE_TOLERANCE = {torch.float32: 1e-3, torch.float64: 1e-6}
HALF_TIE_TOLERANCE = 0.1
# Prompts prefilled per forward pass on admission; bounds the padded [b, L, L] mask and
# keeps the prefill GEMMs in the efficient size range on CPU.
PREFILL_CHUNK = 8


@dataclass(frozen=True)
class GenerationParams:
    """Settings of one generation job (stored as the Job's params).

    n: completions per prompt. temperature: 0 means greedy (then the n completions are
    identical and computed once). top_p: nucleus mass kept when sampling. batch_size: rows
    decoded together; the main speed/memory knob. salt: mixed into every sample's seed
    with `seed`, so that two models given the same seed draw different streams (a job
    passes `seed_salt(model name)`).
    """

    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    seed: int = 0
    batch_size: int = 32
    salt: int = 0

    def __post_init__(self) -> None:
        if self.n < 1 or self.batch_size < 1 or self.max_new_tokens < 1:
            raise ValueError("n, batch_size and max_new_tokens must be >= 1")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError("temperature must be >= 0 and top_p in (0, 1]")


@dataclass(frozen=True)
class Completion:
    """One generated response.

    completion_tokens counts generated tokens including the stop token, like vLLM.
    finish_reason is "stop" (a stop token), "length" (max_new_tokens reached) or "refused"
    (nothing generated: the prompt does not fit the context or the server refused the
    request; `refusal` says why and the text is empty).
    near_tie (greedy only) is True when some step's top-2 logits were closer than the tie
    tolerance, i.e. the text may differ from a run with another batch shape.
    """

    text: str
    token_ids: tuple[int, ...]
    prompt_tokens: int
    completion_tokens: int
    finish_reason: Literal["stop", "length", "refused"]
    near_tie: bool = False
    refusal: str = ""

    @classmethod
    def refused(cls, reason: str, *, prompt_tokens: int = 0) -> Completion:
        return cls("", (), prompt_tokens, 0, "refused", refusal=reason)


def seed_salt(name: str) -> int:
    """A stable 32-bit number for a model's name (hash() differs between processes)."""
    return zlib.crc32(name.encode("utf-8"))


def load_causal_lm(
    name_or_path: str,
    *,
    gguf_file: str | None = None,
    device: Device,
    gguf_cache: Path | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer from a local directory (or a GGUF file in it).

    The tokenizer pads on the left (generation appends on the right) and always has a pad
    token; the model is moved to `device` in `device.dtype` and put in eval mode.
    gguf_cache: a directory where a GGUF file, once converted, is kept as a transformers
    checkpoint (`gguf_converted_dir`): converting parses the file three times and rebuilds
    the tokenizer in Python (a minute on a busy CPU for SmolLM2-135M); the checkpoint
    loads in seconds, in every later worker.
    """
    source, gguf, keep = name_or_path, gguf_file, None
    if gguf_file is not None and gguf_cache is not None:
        converted = gguf_converted_dir(Path(name_or_path) / gguf_file, gguf_cache, device.dtype)
        if converted.is_dir():
            source, gguf = str(converted), None
        else:
            keep = converted
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=gguf)
    model = AutoModelForCausalLM.from_pretrained(source, gguf_file=gguf, dtype=device.dtype)
    if keep is not None and all(p.dtype == device.dtype for p in model.parameters()):
        # De-quantized, a plain model now (weights left in GGUF blocks, as with the
        # `kernels` package, are not kept: they load quickly anyway).
        model.hf_quantizer.remove_quantization_config(model)
        _save_converted(model, tokenizer, keep)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    model.to(device.torch)
    model.eval()
    return model, tokenizer


def gguf_converted_dir(gguf: Path, cache: Path, dtype: torch.dtype) -> Path:
    """Where `gguf`'s conversion lives under `cache`: named by the file's content, the
    transformers version that converted it (its mapping of GGUF names changes between
    releases) and the dtype the weights were stored in."""
    with gguf.open("rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()[:16]
    kind = str(dtype).removeprefix("torch.")
    return cache / f"{gguf.stem}-{digest}-transformers{transformers.__version__}-{kind}"


def _save_converted(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, target: Path
) -> None:
    """Write the checkpoint beside its final place, then rename it there: a worker never
    sees half a checkpoint, and of two workers converting at once the second one's rename
    fails and its copy is dropped. A cache that cannot be written is skipped, not fatal:
    the model is loaded either way."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    except OSError as error:
        logger.warning("GGUF conversion not kept in %s: %s", target.parent, error)
        return
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        staging.rename(target)
    except OSError as error:
        if not target.is_dir():
            logger.warning("GGUF conversion not kept in %s: %s", target, error)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def render_chat(tokenizer: PreTrainedTokenizerBase, chat: Chat) -> str:
    """Chat as the prompt text the model expects, ending where the assistant speaks.

    Uses the tokenizer's chat template when it has one, else "role: content" lines.
    """
    if tokenizer.chat_template:
        return tokenizer.apply_chat_template(list(chat), tokenize=False, add_generation_prompt=True)
    lines = [f"{m['role']}: {m['content']}" for m in chat]
    return "\n".join([*lines, "assistant:"])


def encode_chats(tokenizer: PreTrainedTokenizerBase, chats: Sequence[Chat]) -> list[list[int]]:
    """Token ids of each rendered chat (templates carry their own special tokens)."""
    ids = []
    for chat in chats:
        text = render_chat(tokenizer, chat)
        add_special = not tokenizer.chat_template
        ids.append(tokenizer(text, add_special_tokens=add_special)["input_ids"])
    return ids


def context_length(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> int | None:
    """Tokens the model attends over (prompt plus completion), None when nothing says.

    The config's max_position_embeddings (GPT-2's n_positions) is what the weights were
    built for; the tokenizer's model_max_length is the fallback, unless it is the
    "unset" sentinel transformers puts there.
    """
    limit = getattr(model.config, "max_position_embeddings", None)
    if isinstance(limit, int) and limit > 0:
        return limit
    limit = tokenizer.model_max_length
    return limit if isinstance(limit, int) and 0 < limit < VERY_LARGE_INTEGER else None


def stop_token_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> set[int]:
    """EOS ids from the generation config and the tokenizer (chat models often have two)."""
    ids: set[int] = set()
    eos = model.generation_config.eos_token_id
    if isinstance(eos, int):
        ids.add(eos)
    elif eos is not None:
        ids.update(eos)
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


def generate_completions(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    chats: Sequence[Chat],
    params: GenerationParams,
    *,
    on_progress: ProgressCallback | None = None,
    tie_tolerance: float | None = None,
    keys: Sequence[int] | None = None,
) -> list[list[Completion]]:
    """Generate `params.n` completions for each chat; result[i][j] is sample j of chat i.

    A chat is a list of {"role", "content"} messages; a plain prompt is one user message.
    keys: a stable id per chat (a prompt id) that seeds its samples; default its position.
    A chat whose tokens plus max_new_tokens exceed `context_length` gets n refused
    completions. on_progress(done, total) is called as decoding goes: done counts the
    finished completions (refused ones too) and the decoded share of running ones, so it
    may be fractional; total = len(chats) * n. tie_tolerance: logit gap under which a
    greedy step counts as a near tie (default by the model's dtype, TIE_TOLERANCE).
    """
    prompts = encode_chats(tokenizer, chats)
    keys = list(range(len(chats))) if keys is None else list(keys)
    if len(keys) != len(chats):
        raise ValueError("one key per chat")
    limit = context_length(model, tokenizer)
    fits = [
        i for i, p in enumerate(prompts) if limit is None or len(p) + params.max_new_tokens <= limit
    ]
    skipped = (len(prompts) - len(fits)) * params.n
    total = len(prompts) * params.n
    if skipped and on_progress is not None:
        on_progress(skipped, total)
    rows = generate_token_ids(
        model,
        [prompts[i] for i in fits],
        params,
        stop_ids=stop_token_ids(model, tokenizer),
        pad_id=tokenizer.pad_token_id,
        on_progress=None
        if on_progress is None
        else lambda done, _total: on_progress(skipped + done, total),
        tie_tolerance=tie_tolerance,
        keys=[keys[i] for i in fits],
    )
    generated = dict(zip(fits, rows, strict=True))
    out = []
    for i, prompt in enumerate(prompts):
        if i not in generated:
            why = (
                f"the prompt has {len(prompt)} tokens; with max_new_tokens "
                f"{params.max_new_tokens} that exceeds the model's context of {limit} tokens"
            )
            out.append([Completion.refused(why, prompt_tokens=len(prompt))] * params.n)
            continue
        completions = []
        for ids, reason, tie in generated[i]:
            body = ids[:-1] if reason == "stop" else ids
            completions.append(
                Completion(
                    text=tokenizer.decode(body, skip_special_tokens=True),
                    token_ids=tuple(ids),
                    prompt_tokens=len(prompt),
                    completion_tokens=len(ids),
                    finish_reason=reason,
                    near_tie=tie,
                )
            )
        out.append(completions)
    return out


# --- decode loop -------------------------------------------------------------------------

RawCompletion = tuple[list[int], Literal["stop", "length"], bool]


class _RowLayer(DynamicLayer):
    """A DynamicLayer over a preallocated [rows, heads, capacity, dim] buffer.

    DynamicLayer concatenates on every step, copying the whole cache (hundreds of MB at
    batch 32); here a step writes one slot, and the buffer is only rebuilt when rows leave
    or join. `keys`/`values` stay views of the filled part, as callers of the base expect.
    """

    def __init__(self, k: torch.Tensor, v: torch.Tensor, length: int) -> None:
        super().__init__()
        self._kbuf, self._vbuf, self._len = k, v, length
        self.dtype, self.device = k.dtype, k.device
        self.is_initialized = True
        self._refresh()

    def _refresh(self) -> None:
        self.keys = self._kbuf[:, :, : self._len]
        self.values = self._vbuf[:, :, : self._len]

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        raise AssertionError("_RowLayer is created initialised")

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        new = key_states.shape[-2]
        if self._len + new > self._kbuf.shape[-2]:
            self._kbuf = _grow(self._kbuf, self._len, 2 * (self._len + new))
            self._vbuf = _grow(self._vbuf, self._len, 2 * (self._len + new))
        self._kbuf[:, :, self._len : self._len + new] = key_states
        self._vbuf[:, :, self._len : self._len + new] = value_states
        self._len += new
        self._refresh()
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self._len


def _grow(buf: torch.Tensor, length: int, capacity: int) -> torch.Tensor:
    b, h, _, d = buf.shape
    out = buf.new_zeros(b, h, capacity, d)
    out[:, :, :length] = buf[:, :, :length]
    return out


@dataclass
class _Row:
    """A sequence being decoded: which prompt/sample it answers and what it has so far."""

    prompt: int
    sample: int
    rng: torch.Generator | None
    tokens: list[int]
    near_tie: bool = False


@dataclass
class _Batch:
    """Rows decoded in lockstep, right-aligned: column -1 of `mask` is the newest token.

    kv[layer] = (keys, values), each [rows, kv_heads, T, head_dim]; mask [rows, T] marks
    real tokens (1) vs left padding (0); pos [rows] is the position of the next token.
    """

    rows: list[_Row]
    kv: list[tuple[torch.Tensor, torch.Tensor]]
    mask: torch.Tensor
    pos: torch.Tensor
    next_ids: torch.Tensor


def _merge(parts: list[tuple[_Batch, torch.Tensor]], headroom: int) -> _Batch:
    """One batch from selected rows of several batches, dropping all-padding columns.

    parts: (batch, row indices to keep). Copies the cache once, into a buffer with
    `headroom` free slots so the following steps write in place.
    """
    kept = [(b, idx, b.mask[idx]) for b, idx in parts if len(idx)]
    lengths = []
    for _, _, m in kept:
        used = m.any(dim=0).nonzero()
        lengths.append(m.shape[1] - int(used[0]) if len(used) else 0)
    t = max(lengths)
    n_rows = sum(len(idx) for _, idx, _ in kept)
    first = kept[0][0]
    mask = first.mask.new_zeros(n_rows, t)
    kv = []
    for layer in range(len(first.kv)):
        k0 = first.kv[layer][0]
        shape = (n_rows, k0.shape[1], t + headroom, k0.shape[3])
        # Uninitialised: the headroom is written before it is read, and only the left
        # padding needs zeros (masked, but NaN garbage would survive a zero weight).
        kbuf, vbuf = k0.new_empty(shape), k0.new_empty(shape)
        r = 0
        for (b, idx, _), length in zip(kept, lengths, strict=True):
            k, v = b.kv[layer]
            end, rows = b.mask.shape[1], slice(r, r + len(idx))
            kbuf[rows, :, : t - length] = 0
            vbuf[rows, :, : t - length] = 0
            kbuf[rows, :, t - length : t] = k[idx, :, end - length : end]
            vbuf[rows, :, t - length : t] = v[idx, :, end - length : end]
            r += len(idx)
        kv.append((kbuf, vbuf))
    r = 0
    for (_, idx, m), length in zip(kept, lengths, strict=True):
        mask[r : r + len(idx), t - length :] = m[:, m.shape[1] - length :]
        r += len(idx)
    rows = [b.rows[i] for b, idx, _ in kept for i in idx.tolist()]
    pos = torch.cat([b.pos[idx] for b, idx, _ in kept])
    next_ids = torch.cat([b.next_ids[idx] for b, idx, _ in kept])
    return _Batch(rows, kv, mask, pos, next_ids)


def _cache_of(batch: _Batch) -> DynamicCache:
    cache = DynamicCache()
    cache.layers = [_RowLayer(k, v, batch.mask.shape[1]) for k, v in batch.kv]
    return cache


def _row_seed(params: GenerationParams, key: int, sample: int) -> int:
    # SeedSequence takes non-negative ints only; a negative seed maps to its 64-bit twin.
    words = [params.seed % 2**64, params.salt % 2**64, key % 2**64, sample]
    return int(np.random.SeedSequence(words).generate_state(1)[0])


class _Decoder:
    """Continuous-batching greedy/sampling decode over token-id prompts."""

    def __init__(
        self,
        model: PreTrainedModel,
        params: GenerationParams,
        stop_ids: set[int],
        pad_id: int,
        tie_tolerance: float | None,
    ) -> None:
        self.model, self.params = model, params
        weight = next(model.parameters())
        self.device = weight.device
        if tie_tolerance is None:
            tie_tolerance = TIE_TOLERANCE.get(weight.dtype, HALF_TIE_TOLERANCE)
        self.stop_ids = torch.tensor(sorted(stop_ids), device=self.device)
        self.pad_id, self.tie_tolerance = pad_id, tie_tolerance

    @torch.inference_mode()
    def prefill(self, prompts: list[list[int]]) -> tuple[_Batch, torch.Tensor]:
        """KV cache and last-token logits of left-padded prompts (rows have no samples yet)."""
        t = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), t), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), t), dtype=torch.long)
        for i, p in enumerate(prompts):
            ids[i, t - len(p) :] = torch.tensor(p)
            mask[i, t - len(p) :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache()
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=pos,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        keep = mask[:, None, :, None].bool()
        # Padding positions attend to nothing; zero their K/V so that no NaN from a fully
        # masked softmax can leak into real rows (0 * NaN is NaN even under a zero weight).
        kv = [
            (
                torch.where(keep, layer.keys, 0.0),
                torch.where(keep, layer.values, 0.0),
            )
            for layer in out.past_key_values.layers
        ]
        batch = _Batch([], kv, mask, mask.sum(-1), ids[:, -1])
        return batch, out.logits[:, -1, :].float()

    @torch.inference_mode()
    def step(self, batch: _Batch) -> torch.Tensor:
        """Feed each row's next token; returns the logits for the token after it."""
        cache = _cache_of(batch)
        mask = torch.cat([batch.mask, batch.mask.new_ones(len(batch.rows), 1)], dim=1)
        out = self.model(
            input_ids=batch.next_ids[:, None],
            attention_mask=mask,
            position_ids=batch.pos[:, None],
            past_key_values=cache,
            use_cache=True,
        )
        batch.kv = [(layer._kbuf, layer._vbuf) for layer in cache.layers]
        batch.mask = mask
        batch.pos = batch.pos + 1
        return out.logits[:, -1, :].float()

    def choose(self, logits: torch.Tensor, rows: list[_Row]) -> torch.Tensor:
        """Next token per row: argmax when greedy, else top-p sampling with the row's rng."""
        p = self.params
        if p.temperature == 0:
            top2 = logits.topk(2, dim=-1).values
            ties = (top2[:, 0] - top2[:, 1]) < self.tie_tolerance
            for row, tie in zip(rows, ties.tolist(), strict=True):
                row.near_tie |= tie
            return logits.argmax(dim=-1)
        probs = torch.softmax(logits / p.temperature, dim=-1)
        u = torch.stack([torch.rand((), generator=r.rng) for r in rows]).to(self.device)
        if p.top_p < 1:
            probs, order = probs.sort(dim=-1, descending=True)
            cum = probs.cumsum(-1)
            # Keep the smallest prefix whose mass reaches top_p (always the top token).
            probs = probs.masked_fill(cum - probs >= p.top_p, 0.0)
        else:
            order = None
        cdf = probs.cumsum(-1)
        idx = torch.searchsorted(cdf, (u * cdf[:, -1])[:, None]).clamp(max=cdf.shape[1] - 1)
        return (order.gather(-1, idx) if order is not None else idx).squeeze(-1)

    def advance(self, batch: _Batch, logits: torch.Tensor, done: list[_Row]) -> torch.Tensor:
        """Append the chosen tokens; move finished rows to `done`; return indices kept."""
        chosen = self.choose(logits, batch.rows)
        stopped = torch.isin(chosen, self.stop_ids).tolist()
        keep = []
        for i, (row, tok, stop) in enumerate(
            zip(batch.rows, chosen.tolist(), stopped, strict=True)
        ):
            row.tokens.append(tok)
            if stop or len(row.tokens) >= self.params.max_new_tokens:
                done.append(row)
            else:
                keep.append(i)
        batch.next_ids = chosen
        return torch.tensor(keep, dtype=torch.long, device=self.device)


def generate_token_ids(
    model: PreTrainedModel,
    prompts: Sequence[Sequence[int]],
    params: GenerationParams,
    *,
    stop_ids: set[int],
    pad_id: int,
    on_progress: ProgressCallback | None = None,
    tie_tolerance: float | None = None,
    keys: Sequence[int] | None = None,
) -> list[list[RawCompletion]]:
    """Token-level core of `generate_completions`: (ids, finish reason, near tie) per sample.

    keys seed each prompt's samples (default: its position). Rows are admitted in order of
    prompt length (less padding per prefill chunk) whenever a quarter of the batch is free,
    prefilled in chunks of PREFILL_CHUNK, and evicted the step they stop.
    """
    greedy = params.temperature == 0
    samples = 1 if greedy else params.n  # greedy samples are all the same sequence
    total = len(prompts) * params.n
    decoder = _Decoder(model, params, stop_ids, pad_id, tie_tolerance)
    keys = list(range(len(prompts))) if keys is None else list(keys)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    pending = deque((i, s) for i in order for s in range(samples))
    results: dict[tuple[int, int], RawCompletion] = {}
    running: _Batch | None = None
    threshold = max(1, params.batch_size // 4)

    def finish(done: list[_Row]) -> None:
        for row in done:
            reason = "stop" if row.tokens[-1] in stop_ids else "length"
            results[(row.prompt, row.sample)] = (row.tokens, reason, row.near_tie)

    def report() -> None:
        # Rows of a batch often all run to max_new_tokens and finish on one step: counted
        # only when finished, a job's bar would sit at 0 until then. Running rows count by
        # the share of their tokens decoded.
        if on_progress is None:
            return
        partial = sum(len(row.tokens) for row in running.rows) if running is not None else 0
        finished = len(results) + partial / params.max_new_tokens
        on_progress(finished * (params.n if greedy else 1), total)

    while pending or running is not None:
        free = params.batch_size - (len(running.rows) if running else 0)
        if pending and free >= min(threshold, len(pending)):
            jobs = [pending.popleft() for _ in range(min(free, len(pending)))]
            parts = [] if running is None else [(running, _all_rows(running))]
            for fresh, logits in _prefill_jobs(decoder, prompts, keys, jobs):
                done: list[_Row] = []
                parts.append((fresh, decoder.advance(fresh, logits, done)))
                finish(done)
            parts = [(b, i) for b, i in parts if len(i)]
            running = _merge(parts, params.max_new_tokens) if parts else None
        if running is None:
            continue
        logits = decoder.step(running)
        done = []
        keep = decoder.advance(running, logits, done)
        finish(done)
        if len(keep) == 0:
            running = None
        elif len(keep) < len(running.rows):
            running = _merge([(running, keep)], params.max_new_tokens)
        report()
    report()  # the last rows may have stopped at their prefill

    return [
        [results[(p, 0 if greedy else s)] for s in range(params.n)] for p in range(len(prompts))
    ]


def _all_rows(batch: _Batch) -> torch.Tensor:
    return torch.arange(len(batch.rows), device=batch.mask.device)


def _prefill_jobs(
    decoder: _Decoder,
    prompts: Sequence[Sequence[int]],
    keys: Sequence[int],
    jobs: list[tuple[int, int]],
) -> Iterator[tuple[_Batch, torch.Tensor]]:
    """Batches (and first-token logits) for (prompt, sample) jobs, PREFILL_CHUNK prompts a
    forward pass; samples of one prompt share its prefill and get their own rng."""
    p = decoder.params
    unique = list(dict.fromkeys(prompt for prompt, _ in jobs))
    for c in range(0, len(unique), PREFILL_CHUNK):
        chunk = unique[c : c + PREFILL_CHUNK]
        batch, logits = decoder.prefill([list(prompts[i]) for i in chunk])
        where = {prompt: i for i, prompt in enumerate(chunk)}
        mine = [(prompt, s) for prompt, s in jobs if prompt in where]
        idx = torch.tensor([where[prompt] for prompt, _ in mine], device=batch.mask.device)
        rows = [
            _Row(
                prompt,
                s,
                None
                if p.temperature == 0
                else torch.Generator().manual_seed(_row_seed(p, keys[prompt], s)),
                [],
            )
            for prompt, s in mine
        ]
        kv = [(k[idx], v[idx]) for k, v in batch.kv]
        yield _Batch(rows, kv, batch.mask[idx], batch.pos[idx], batch.next_ids[idx]), logits[idx]
