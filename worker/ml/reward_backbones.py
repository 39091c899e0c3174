"""Reward-model backbones: what text a model reads, tokens with offsets, and the nets.

A `RewardNet` maps tokenized (prompt, response) rows to rewards (n, heads) and, with a
token head, per-token rewards (span feedback). Two kinds:
- `SequenceClassifierNet`: any transformers AutoModelForSequenceClassification with
  num_labels = heads; the conversation is one sequence, through the tokenizer's chat
  template when it has one, else `plain_chat`.
- `EmbeddingNet`: a sentence-transformers encoder and a linear head over `pair_features`
  of the separately encoded prompt and response.

Token offsets are kept relative to the response, so span feedback (characters of the
response) maps onto tokens whatever the template put around it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

Message = dict[str, str]
BackboneKind = Literal["sequence-classification", "embedding"]
HEADS_FILE = "reward_heads.safetensors"  # heads not stored in the backbone's own files
ENCODER_DIR = "encoder"  # embedding backbones: the fine-tuned sentence-transformers model


def plain_chat(messages: Sequence[Message]) -> str:
    """Readable turns ("System: ...", "User: ...") for tokenizers without a chat template."""
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages)


@dataclass
class TextRow:
    """One tokenized (prompt, response).

    ids: the sequence the backbone reads (the whole conversation for a sequence classifier,
    the response alone for an embedding backbone, whose prompt is `prompt_ids`, shared by
    every row of that prompt). offsets: (start, end) characters of each token within the
    response, (-1, -1) outside it.
    """

    ids: list[int]
    offsets: np.ndarray
    prompt_ids: list[int] | None = None

    @property
    def length(self) -> int:
        return len(self.ids) + (len(self.prompt_ids) if self.prompt_ids else 0)


def conversation_text(
    tokenizer: Any, prompt: Sequence[Message], response: str
) -> tuple[str, tuple[int, int]]:
    """The text a sequence classifier reads for (prompt, response), and the response's
    (start, end) characters in it: the chat template when the tokenizer has one, else
    `plain_chat` with the response as the assistant's turn."""
    if not getattr(tokenizer, "chat_template", None):
        head = plain_chat([*prompt, {"role": "assistant", "content": ""}])
        return head + response, (len(head), len(head) + len(response))
    prefix = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    text = tokenizer.apply_chat_template(
        [*prompt, {"role": "assistant", "content": response}], tokenize=False
    )
    return text, _response_span(text, prefix, response)


def _response_span(text: str, prefix: str, response: str) -> tuple[int, int]:
    """Where the response sits in a templated conversation.

    Searched after the part shared with the generation prompt. A template that strips the
    content is matched on the stripped text; the start is then shifted back by the removed
    whitespace, so that start + k is still the response's character k.
    """
    pairs = zip(text, prefix, strict=False)
    shared = next((i for i, (a, b) in enumerate(pairs) if a != b), min(len(text), len(prefix)))
    index = text.find(response, shared)
    if index >= 0:
        return index, index + len(response)
    stripped = response.strip()
    index = text.find(stripped, shared)
    if not stripped or index < 0:
        raise ValueError("the chat template does not keep the response text")
    return index - (len(response) - len(response.lstrip())), index + len(stripped)


def tokenize_with_offsets(
    tokenizer: Any,
    texts: list[str],
    spans: list[tuple[int, int]],
    max_length: int,
    *,
    special_tokens: bool,
) -> list[tuple[list[int], np.ndarray]]:
    """Token ids, and offsets relative to the response, of texts whose response sits at
    `spans` (start, end) characters; tokens outside the response get (-1, -1).

    Over `max_length`, tokens are dropped from the prompt's start first (the latest turns
    matter most), then from the end; special tokens at both ends are kept.
    """
    encoded = tokenizer(
        texts,
        add_special_tokens=special_tokens,
        return_offsets_mapping=True,
        return_special_tokens_mask=True,
        return_attention_mask=False,
        verbose=False,
    )
    out = []
    for ids, offsets, special, (start, end) in zip(
        encoded["input_ids"],
        encoded["offset_mapping"],
        encoded["special_tokens_mask"],
        spans,
        strict=True,
    ):
        chars = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
        lead = next((i for i, s in enumerate(special) if not s), len(ids))
        trail = next((i for i, s in enumerate(reversed(special)) if not s), 0)
        body = list(range(lead, len(ids) - trail))
        if len(ids) > max_length:
            budget = max(max_length - lead - trail, 1)
            in_prompt = sum(1 for i in body if chars[i, 0] < start)
            kept_response = body[in_prompt:][:budget]
            kept_prompt = body[:in_prompt][in_prompt - (budget - len(kept_response)) :]
            body = kept_prompt + kept_response
        keep = [*range(lead), *body, *range(len(ids) - trail, len(ids))]
        kept = chars[keep]
        inside = (kept[:, 0] >= start) & (kept[:, 1] <= end) & (kept[:, 1] > kept[:, 0])
        relative = np.where(inside[:, None], kept - start, -1)
        out.append(([ids[i] for i in keep], relative))
    return out


def _pad(sequences: list[list[int]], value: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and attention mask, padded to the longest sequence only."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), value, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, s in enumerate(sequences):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids, mask


def response_offsets(rows: list[TextRow], width: int) -> torch.Tensor:
    offsets = torch.full((len(rows), width, 2), -1, dtype=torch.long)
    for i, row in enumerate(rows):
        offsets[i, : len(row.offsets)] = torch.from_numpy(row.offsets)
    return offsets


def _disable_dropout(model: nn.Module) -> None:
    """Dropout off, as TRL's default: it makes chosen and rejected see different noise."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0


# --- Backbones -------------------------------------------------------------------------


class RewardNet(nn.Module):
    """A backbone with `heads` scalar reward heads and an optional per-token penalty head.

    `forward` returns (preference rewards (n, heads), token rewards (n, L) over the row's
    `ids`, 0 outside the response, or None). The two are trained apart: the preference
    heads on preferences, the token head on span labels only, as the separate fine-grained
    reward models of Wu et al. 2023. Trained together on one sum, the preference head
    learns to cancel a penalty wherever the flagged text tends to be in chosen responses.
    `reward` adds them: a response's reward is its preference reward plus the token
    rewards of its response tokens.
    """

    kind: BackboneKind
    heads: int
    token_head: nn.Linear | None

    def rows(
        self, prompts: Sequence[list[Message]], responses: Sequence[str], max_length: int
    ) -> list[TextRow]:
        raise NotImplementedError

    def save(self, out_dir: Path) -> None:
        raise NotImplementedError

    def reward(self, rows: list[TextRow]) -> torch.Tensor:
        """What a scorer returns, (n, heads): preference rewards plus summed token rewards."""
        rewards, token_rewards = self(rows)
        if token_rewards is None:
            return rewards
        return rewards + token_rewards.sum(dim=1, keepdim=True).float()

    def _token_rewards(self, hidden: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
        assert self.token_head is not None
        return self.token_head(hidden).squeeze(-1).float() * response_mask

    def _save_heads(self, out_dir: Path, modules: dict[str, nn.Module | None]) -> None:
        from safetensors.torch import save_file

        tensors = {
            f"{name}.{key}": value.detach().float().cpu().contiguous()
            for name, module in modules.items()
            if module is not None
            for key, value in module.state_dict().items()
        }
        if tensors:
            save_file(tensors, str(out_dir / HEADS_FILE))

    def _load_heads(self, directory: Path, modules: dict[str, nn.Module | None]) -> None:
        from safetensors.torch import load_file

        path = directory / HEADS_FILE
        if not any(module is not None for module in modules.values()):
            return
        tensors = load_file(str(path))
        for name, module in modules.items():
            if module is not None:
                prefix = f"{name}."
                module.load_state_dict(
                    {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
                )


class SequenceClassifierNet(RewardNet):
    """A transformers AutoModelForSequenceClassification with num_labels = heads.

    The conversation goes through the tokenizer's chat template when it has one, else
    through `plain_chat`; one sequence per (prompt, response), its reward the model's logits.
    """

    kind: BackboneKind = "sequence-classification"

    def __init__(self, path: str | Path, *, heads: int, token_head: bool, trained: bool) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        super().__init__()
        self.heads = heads
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        if not self.tokenizer.is_fast:
            raise ValueError(f"backbone: {path} has no fast tokenizer (offsets are needed)")
        if self.tokenizer.pad_token is None:  # as TRL: decoder models often have none
            if self.tokenizer.eos_token is None:
                self.tokenizer.add_special_tokens({"pad_token": "<pad>"})
            else:
                self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForSequenceClassification.from_pretrained(
            str(path), num_labels=heads, ignore_mismatched_sizes=not trained
        )
        if len(self.tokenizer) > self.model.get_input_embeddings().num_embeddings:
            self.model.resize_token_embeddings(len(self.tokenizer))
        # The classifier pools the last non-pad token (decoders): it must know the pad id.
        self.model.config.pad_token_id = self.tokenizer.pad_token_id
        _disable_dropout(self.model)
        hidden = self.model.config.get_text_config().hidden_size
        self.token_head = nn.Linear(hidden, 1) if token_head else None
        if self.token_head is not None:
            nn.init.zeros_(self.token_head.weight)  # starts as the plain model
            nn.init.zeros_(self.token_head.bias)
        if trained:
            self._load_heads(Path(path), {"token_head": self.token_head})

    def rows(
        self, prompts: Sequence[list[Message]], responses: Sequence[str], max_length: int
    ) -> list[TextRow]:
        texts, spans = [], []
        for prompt, response in zip(prompts, responses, strict=True):
            text, span = conversation_text(self.tokenizer, prompt, response)
            texts.append(text)
            spans.append(span)
        templated = bool(getattr(self.tokenizer, "chat_template", None))
        # A chat template writes its own special tokens (BOS, turn markers).
        tokens = tokenize_with_offsets(
            self.tokenizer, texts, spans, max_length, special_tokens=not templated
        )
        return [TextRow(ids, offsets) for ids, offsets in tokens]

    def forward(self, rows: list[TextRow]) -> tuple[torch.Tensor, torch.Tensor | None]:
        device = self.model.device
        ids, mask = _pad([row.ids for row in rows], self.tokenizer.pad_token_id)
        ids, mask = ids.to(device), mask.to(device)
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            output_hidden_states=self.token_head is not None,
            use_cache=False,
        )
        rewards = out.logits.float()
        if self.token_head is None:
            return rewards, None
        response = (response_offsets(rows, ids.shape[1])[..., 0] >= 0).to(device)
        return rewards, self._token_rewards(out.hidden_states[-1], response)

    def save(self, out_dir: Path) -> None:
        self.model.save_pretrained(out_dir)
        self.tokenizer.save_pretrained(out_dir)
        self._save_heads(out_dir, {"token_head": self.token_head})


class EmbeddingNet(RewardNet):
    """A sentence-transformers encoder with a linear head over (prompt, response) features.

    Prompt and response are encoded separately (each prompt once per batch) and combined by
    `pair_features`; the same features the frozen `Embedder` gives, so a fine-tuned
    model and the fast path look at a pair the same way.
    """

    kind: BackboneKind = "embedding"

    def __init__(self, path: str | Path, *, heads: int, token_head: bool, trained: bool) -> None:
        super().__init__()
        self.heads = heads
        self.encoder = load_sentence_encoder(Path(path) / ENCODER_DIR if trained else path)
        _disable_dropout(self.encoder)
        width = self.encoder.get_embedding_dimension()
        self.head = nn.Linear(2 * width, heads)
        token_width = self.encoder[0].auto_model.config.hidden_size
        self.token_head = nn.Linear(token_width, 1) if token_head else None
        if self.token_head is not None:
            nn.init.zeros_(self.token_head.weight)
            nn.init.zeros_(self.token_head.bias)
        if trained:
            self._load_heads(Path(path), {"head": self.head, "token_head": self.token_head})

    @property
    def tokenizer(self) -> Any:
        return self.encoder.tokenizer

    def rows(
        self, prompts: Sequence[list[Message]], responses: Sequence[str], max_length: int
    ) -> list[TextRow]:
        max_length = min(max_length, self.encoder.max_seq_length)
        keys = [json.dumps(prompt, ensure_ascii=False) for prompt in prompts]
        unique = dict(zip(keys, prompts, strict=True))
        prompt_texts = [plain_chat(prompt) for prompt in unique.values()]
        # The whole text is "prompt": truncation then keeps its end, the latest turn.
        encoded_prompts = tokenize_with_offsets(
            self.tokenizer,
            prompt_texts,
            [(len(text), len(text)) for text in prompt_texts],
            max_length,
            special_tokens=True,
        )
        prompt_ids = {key: ids for key, (ids, _) in zip(unique, encoded_prompts, strict=True)}
        tokens = tokenize_with_offsets(
            self.tokenizer,
            list(responses),
            [(0, len(response)) for response in responses],
            max_length,
            special_tokens=True,
        )
        return [
            TextRow(ids, offsets, prompt_ids[key])
            for (ids, offsets), key in zip(tokens, keys, strict=True)
        ]

    def embed(self, rows: list[TextRow]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(pair features (n, 2d), token embeddings of the responses, their attention mask)."""
        device = next(self.encoder.parameters()).device
        pad = self.tokenizer.pad_token_id
        slots: dict[int, int] = {}
        for row in rows:
            slots.setdefault(id(row.prompt_ids), len(slots))
        distinct = {id(row.prompt_ids): row.prompt_ids for row in rows}
        prompt_ids, prompt_mask = _pad(list(distinct.values()), pad)
        ids, mask = _pad([row.ids for row in rows], pad)
        prompts = self.encoder(
            {"input_ids": prompt_ids.to(device), "attention_mask": prompt_mask.to(device)}
        )
        responses = self.encoder({"input_ids": ids.to(device), "attention_mask": mask.to(device)})
        index = torch.tensor([slots[id(row.prompt_ids)] for row in rows], device=device)
        features = pair_features(
            prompts["sentence_embedding"][index], responses["sentence_embedding"]
        )
        return features, responses["token_embeddings"], mask.to(device)

    def forward(self, rows: list[TextRow]) -> tuple[torch.Tensor, torch.Tensor | None]:
        features, tokens, mask = self.embed(rows)
        rewards = self.head(features).float()
        if self.token_head is None:
            return rewards, None
        response = (response_offsets(rows, tokens.shape[1])[..., 0] >= 0).to(tokens.device)
        return rewards, self._token_rewards(tokens, response & mask.bool())

    def save(self, out_dir: Path) -> None:
        self.encoder.save(str(out_dir / ENCODER_DIR))
        self._save_heads(out_dir, {"head": self.head, "token_head": self.token_head})


def load_sentence_encoder(path: str | Path, device: str = "cpu") -> Any:
    """A sentence-transformers model from a local directory (imported here: the package
    takes seconds to import and only the embedding backbone needs it)."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(path), device=device, local_files_only=True)


def pair_features(prompt: torch.Tensor, response: torch.Tensor) -> torch.Tensor:
    """[e_r, e_p * e_r] of unit-normalised embeddings: what the response says, and how it
    matches the prompt (a linear head on a prompt-only feature would cancel in a pair)."""
    e_p = F.normalize(prompt.float(), dim=-1)
    e_r = F.normalize(response.float(), dim=-1)
    return torch.cat([e_r, e_p * e_r], dim=-1)


def build_net(
    kind: BackboneKind, path: str | Path, *, heads: int, token_head: bool, trained: bool
) -> RewardNet:
    nets: dict[str, type[SequenceClassifierNet] | type[EmbeddingNet]] = {
        "sequence-classification": SequenceClassifierNet,
        "embedding": EmbeddingNet,
    }
    if kind not in nets:
        raise ValueError(f"backbone_kind must be one of {sorted(nets)}, not {kind!r}")
    return nets[kind](path, heads=heads, token_head=token_head, trained=trained)
