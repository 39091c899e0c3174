"""Tiny models with a locally trained tokenizer, for tests that must not touch a hub.

`build_tiny_causal_lm(dir)` writes a directory that `load_causal_lm(dir, device=...)` and
`AutoModelForCausalLM.from_pretrained(dir)` load: random weights from a config (2 layers,
width 32), a word-level tokenizer over a few sentences, a ChatML chat template and EOS
<|im_end|>. `build_tiny_reward_model(dir)` writes a sequence classifier with one output
(a reward model, as TRL's RewardTrainer loads it) and `build_tiny_sentence_encoder(dir)` a
BERT encoder that sentence-transformers loads with mean pooling. Building takes well under
a second.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    BertConfig,
    BertModel,
    GenerationConfig,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

SPECIAL_TOKENS = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>"]
CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = (
    "system user assistant",
    "the quick brown fox jumps over the lazy dog .",
    "name three primary colours : red , yellow and blue .",
    "explain how a cache makes a model answer faster ?",
    "people compare two answers and pick the better one .",
    "a reward model learns which answer people prefer .",
    "write a short poem about the sea and the moon !",
    "what is the capital of france ? paris is .",
)


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Word-level tokenizer over CORPUS with ChatML specials and chat template."""
    words = sorted({w for line in CORPUS for w in line.split()})
    vocab = {tok: i for i, tok in enumerate([*SPECIAL_TOKENS, *words])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins with spaces
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        unk_token="<unk>",
        eos_token="<|im_end|>",
        additional_special_tokens=["<|im_start|>"],
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    tokenizer.padding_side = "left"
    return tokenizer


def build_tiny_model(
    tokenizer: PreTrainedTokenizerFast, *, arch: Literal["llama", "gpt2"] = "llama", seed: int = 0
) -> PreTrainedModel:
    """Randomly initialised 2-layer model sized to the tokenizer.

    initializer_range is large on purpose: with the usual 0.02 the logits of a random model
    are nearly flat, and greedy decoding would be dominated by near-ties. The EOS row of the
    output layer is scaled up so that some completions stop early and others run to the
    length limit, which is what exercises eviction and admission in batched decoding.
    """
    ids = {
        "vocab_size": len(tokenizer),
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.convert_tokens_to_ids("<|im_start|>"),
    }
    torch.manual_seed(seed)
    if arch == "llama":
        config = LlamaConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=512,
            initializer_range=0.5,
            tie_word_embeddings=False,
            **ids,
        )
        model: PreTrainedModel = LlamaForCausalLM(config)
    else:
        config = GPT2Config(
            n_embd=32, n_layer=2, n_head=4, n_positions=512, initializer_range=0.5, **ids
        )
        model = GPT2LMHeadModel(config)
    with torch.no_grad():
        model.get_output_embeddings().weight[ids["eos_token_id"]] *= 3.0
    model.generation_config = GenerationConfig(
        eos_token_id=ids["eos_token_id"], pad_token_id=ids["pad_token_id"]
    )
    return model.eval()


def build_tiny_causal_lm(
    directory: str | Path, *, arch: Literal["llama", "gpt2"] = "llama", seed: int = 0
) -> Path:
    """Save a tiny model + tokenizer to `directory` (created if missing) and return it."""
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    build_tiny_model(tokenizer, arch=arch, seed=seed).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def build_tiny_reward_model(directory: str | Path, *, seed: int = 0) -> Path:
    """Save a 2-layer Llama sequence classifier (num_labels=1) + tokenizer to `directory`.

    Usual initialisation (0.02), unlike the generation model: a reward model is trained,
    and a large initial scale only slows that down.
    """
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    torch.manual_seed(seed)
    config = LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        num_labels=1,
    )
    LlamaForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def build_tiny_sentence_encoder(directory: str | Path, *, seed: int = 0) -> Path:
    """Save a 2-layer BERT + tokenizer: a plain transformers directory, which
    sentence-transformers loads as an encoder with mean pooling."""
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
    )
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
