"""The preference-pair export trains TRL's RewardTrainer as it is, without any edits."""

import math

import pytest
from datasets import load_dataset
from django.urls import reverse
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2ForSequenceClassification, PreTrainedTokenizerFast
from trl import RewardConfig, RewardTrainer

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

CHAT_TEMPLATE = (
    "{% for message in messages %}<{{ message['role'] }}> {{ message['content'] }} {% endfor %}"
)


def tiny_tokenizer(texts: list[str]) -> PreTrainedTokenizerFast:
    """A word-level tokenizer trained here on the exported text: no hub involved."""
    tokenizer = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]", "[EOS]"])
    tokenizer.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="[PAD]", unk_token="[UNK]", eos_token="[EOS]"
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


@pytest.mark.parametrize("form", ["text", "chat"])
def test_pair_export_trains_one_reward_model_step(viewer_client, project, filled, tmp_path, form):
    response = viewer_client.get(
        reverse("api:project-export", args=[project.pk]),
        {"shape": "pairs", "format": "jsonl", "form": form, "margin": "true"},
    )
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(b"".join(response.streaming_content))
    dataset = load_dataset(
        "json", data_files=str(path), split="train", cache_dir=str(tmp_path / "cache")
    )
    texts = [str(row["prompt"]) + str(row["chosen"]) + str(row["rejected"]) for row in dataset]
    tokenizer = tiny_tokenizer([*texts, "user assistant < >"])
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_layer=2,
        n_head=2,
        n_embd=32,
        n_positions=256,
        num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = GPT2ForSequenceClassification(config)
    args = RewardConfig(
        output_dir=str(tmp_path / "out"),
        max_steps=1,
        per_device_train_batch_size=4,
        bf16=False,
        gradient_checkpointing=False,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        logging_steps=1,
        max_length=256,
    )
    trainer = RewardTrainer(
        model=model, args=args, train_dataset=dataset, processing_class=tokenizer
    )
    result = trainer.train()
    assert result.global_step == 1 and math.isfinite(result.training_loss)
