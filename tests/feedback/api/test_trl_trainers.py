"""Every training export feeds TRL's trainer for it, as it is, for one step.

Pairs go to RewardTrainer and DPOTrainer, unpaired rows to KTOTrainer; each both as
plain text and in the conversational form that a project with multi-turn chats (system
turn included) exports. Models and tokenizer are tiny and built here: no hub.
"""

import copy
import math

import pytest
from datasets import load_dataset
from django.urls import reverse
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import (
    GPT2Config,
    GPT2ForSequenceClassification,
    GPT2LMHeadModel,
    PreTrainedTokenizerFast,
)
from trl import (
    DPOConfig,
    DPOTrainer,
    KTOConfig,
    KTOTrainer,
    RewardConfig,
    RewardTrainer,
)

from tests.factories import JudgeFactory, feedback_fill

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

CHAT_TEMPLATE = (
    "{% for message in messages %}<{{ message['role'] }}> {{ message['content'] }} {% endfor %}"
    "{% if add_generation_prompt %}<assistant> {% endif %}"
)
COMMON = {
    "max_steps": 1,
    "per_device_train_batch_size": 4,
    "bf16": False,
    "gradient_checkpointing": False,
    "use_cpu": True,
    "report_to": [],
    "save_strategy": "no",
    "logging_steps": 1,
    "max_length": 256,
}


@pytest.fixture(params=["conversational", "text"])
def exported_project(request, project, members):
    annotators = [members["annotator"], members["ann2"], members["ann3"]]
    chat = request.param == "conversational"
    feedback_fill(project, annotators, judge=JudgeFactory(name="judge-a"), chat=chat)
    return project, chat


def download(client, project, tmp_path, **params):
    response = client.get(reverse("api:project-export", args=[project.pk]), params)
    assert response.status_code == 200
    path = tmp_path / f"{params['shape']}.jsonl"
    path.write_bytes(b"".join(response.streaming_content))
    return load_dataset("json", data_files=str(path), split="train", cache_dir=str(tmp_path / "c"))


def tiny_tokenizer(dataset) -> PreTrainedTokenizerFast:
    """A word-level tokenizer trained here on the exported text."""
    texts = [str(value) for column in dataset.column_names for value in dataset[column]]
    tokenizer = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    special = ["[PAD]", "[UNK]", "[EOS]"]
    tokenizer.train_from_iterator(
        [*texts, "< > system user assistant"], trainers.WordLevelTrainer(special_tokens=special)
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="[PAD]", unk_token="[UNK]", eos_token="[EOS]"
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_config(tokenizer, **extra) -> GPT2Config:
    return GPT2Config(
        vocab_size=len(tokenizer),
        n_layer=2,
        n_head=2,
        n_embd=32,
        n_positions=256,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **extra,
    )


def assert_one_step(trainer) -> None:
    result = trainer.train()
    assert result.global_step == 1 and math.isfinite(result.training_loss)


def test_pairs_train_a_reward_model(viewer_client, exported_project, tmp_path):
    project, chat = exported_project
    dataset = download(viewer_client, project, tmp_path, shape="pairs", margin="true")
    assert isinstance(dataset[0]["prompt"], list) == chat
    tokenizer = tiny_tokenizer(dataset)
    model = GPT2ForSequenceClassification(tiny_config(tokenizer, num_labels=1))
    args = RewardConfig(output_dir=str(tmp_path / "out"), **COMMON)
    assert_one_step(
        RewardTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    )


def test_pairs_train_dpo(viewer_client, exported_project, tmp_path):
    project, chat = exported_project
    dataset = download(viewer_client, project, tmp_path, shape="pairs")
    assert isinstance(dataset[0]["prompt"], list) == chat
    tokenizer = tiny_tokenizer(dataset)
    model = GPT2LMHeadModel(tiny_config(tokenizer))
    args = DPOConfig(output_dir=str(tmp_path / "out"), **COMMON)
    assert_one_step(
        DPOTrainer(
            model=model,
            ref_model=copy.deepcopy(model),  # built here: TRL would look it up on the hub
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
        )
    )


def test_unpaired_rows_train_kto(viewer_client, exported_project, tmp_path):
    project, chat = exported_project
    dataset = download(viewer_client, project, tmp_path, shape="unpaired", seed="3")
    assert isinstance(dataset[0]["prompt"], list) == chat
    tokenizer = tiny_tokenizer(dataset)
    model = GPT2LMHeadModel(tiny_config(tokenizer))
    args = KTOConfig(output_dir=str(tmp_path / "out"), **COMMON)
    assert_one_step(
        KTOTrainer(
            model=model,
            ref_model=copy.deepcopy(model),
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
        )
    )
