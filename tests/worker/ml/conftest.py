import os

# Before transformers/huggingface_hub are imported: they read it once, at import.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path

import pytest
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from worker.ml.device import pick_device
from worker.ml.generation import load_causal_lm
from worker.ml.tiny import build_tiny_causal_lm, build_tiny_reward_model


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_causal_lm(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session", params=["llama", "gpt2"])
def tiny_lm(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    path = build_tiny_causal_lm(
        tmp_path_factory.mktemp(f"tiny-{request.param}"), arch=request.param
    )
    return load_causal_lm(str(path), device=pick_device("cpu"))


@pytest.fixture(scope="session")
def tiny_reward_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_reward_model(tmp_path_factory.mktemp("tiny-reward"))
