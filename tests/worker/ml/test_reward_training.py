"""Training reward models on generated preferences whose true preference is known."""

import json
import random
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.worker.ml.preference_sets import FILLER, PROPERTY, chat_prompt, property_pairs, response
from worker.ml.device import pick_device
from worker.ml.rewards import Comparison, Ranking, TrainConfig, load_scorer, split_by_group, train
from worker.ml.tiny import build_tiny_sentence_encoder

CPU = pick_device("cpu")


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from threads, and on a busy machine torch's spinning
    threads make a run many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def config(backbone: Path, **fields) -> TrainConfig:
    defaults = {
        "learning_rate": 1e-3,
        "max_epochs": 3,
        "held_out_share": 0.2,
        "patience": 0,
        "precision": "fp32",  # scores compared to 1e-5 across batch shapes
    }
    return TrainConfig(backbone=str(backbone), **(defaults | fields))


def trl_held_out_accuracy(
    backbone: Path, train_rows: list[Comparison], held_out: list[Comparison]
) -> float:
    """TRL's RewardTrainer on the same rows, with the same epochs, batch and learning rate."""
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    def dataset(rows: list[Comparison]) -> Dataset:
        return Dataset.from_list(
            [
                {
                    "prompt": c.prompt,
                    "chosen": [{"role": "assistant", "content": c.chosen}],
                    "rejected": [{"role": "assistant", "content": c.rejected}],
                }
                for c in rows
            ]
        )

    args = RewardConfig(
        output_dir=tempfile.mkdtemp(),
        num_train_epochs=3,
        per_device_train_batch_size=16,
        per_device_eval_batch_size=len(held_out),  # one batch: its accuracy is exact
        learning_rate=1e-3,
        report_to="none",
        save_strategy="no",
        logging_strategy="no",
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
    )
    trainer = RewardTrainer(model=str(backbone), args=args, train_dataset=dataset(train_rows))
    trainer.train()
    return trainer.evaluate(dataset(held_out))["eval_accuracy"]


@pytest.mark.slow
def test_a_tiny_model_learns_a_known_preference_about_as_well_as_trl(tiny_reward_dir, tmp_path):
    pairs = property_pairs(320)
    train_rows, held_out = split_by_group(pairs, 0.2, seed=0)
    result = train(train_rows, [], config(tiny_reward_dir), tmp_path, held_out=held_out, device=CPU)
    ours = result.metrics["held_out"]["accuracy"]
    theirs = trl_held_out_accuracy(tiny_reward_dir, train_rows, held_out)
    assert ours >= 0.9, result.curve
    assert theirs >= 0.8
    assert ours >= theirs - 0.05


def test_training_writes_everything_and_the_scorer_round_trips(tiny_reward_dir, tmp_path):
    pairs = property_pairs(160, groups=20)
    # Judge labels that contradict the humans: with judge_weight=0 they must not be learnt.
    judges = [
        Comparison(c.prompt, c.rejected, c.chosen, c.group, source="judge:contrarian")
        for c in property_pairs(160, seed=1, groups=20)
    ]
    events = []
    result = train(
        pairs + judges,
        [],
        config(tiny_reward_dir, judge_weight=0.0, eval_steps=4),
        tmp_path,
        progress=events.append,
        device=CPU,
    )
    held = result.metrics["held_out"]
    assert result.n_train == len(
        [c for c in pairs if c.group not in {h.group for h in result.held_out}]
    )
    assert held["accuracy_on"] == "human" and held["accuracy"] >= 0.85
    assert held["judge_agreement"][0]["judge"] == "contrarian"
    assert held["judge_agreement"][0]["agreement"] <= 0.25
    assert {c.group for c in result.held_out}.isdisjoint(
        {c.group for c in pairs + judges if c not in result.held_out}
    )

    steps = [e["step"] for e in events if e["phase"] == "train"]
    assert steps == list(range(1, steps[-1] + 1)) and events[-1]["phase"] == "eval"
    assert [p["step"] for p in result.curve] == [e["step"] for e in events if e["phase"] == "eval"]
    assert set(result.curve[0]) >= {
        "step",
        "epoch",
        "train_loss",
        "held_out_loss",
        "held_out_accuracy",
    }
    assert result.curve[-1]["train_loss"] < result.curve[0]["train_loss"]

    assert (
        json.loads((tmp_path / "metrics.json").read_text())["held_out"]["accuracy"]
        == held["accuracy"]
    )
    assert json.loads((tmp_path / "curve.json").read_text()) == result.curve
    assert json.loads((tmp_path / "params.json").read_text())["config"]["judge_weight"] == 0.0
    assert (tmp_path / "config.json").exists() and (tmp_path / "tokenizer.json").exists()

    scorer = load_scorer(tmp_path, device=CPU)
    prompts = [c.prompt for c in result.held_out]
    chosen = scorer.score(prompts, [c.chosen for c in result.held_out], batch_size=7)
    assert np.allclose(chosen, result.held_out_chosen, atol=1e-5)
    text_prompt = scorer.score(["a plain prompt"], ["paris is"])
    assert text_prompt.shape == (1,)


def test_early_stopping_keeps_the_weights_of_the_best_evaluation(tiny_reward_dir, tmp_path):
    pairs = property_pairs(160, groups=20)
    result = train(
        pairs,
        [],
        config(tiny_reward_dir, learning_rate=3e-3, max_epochs=4, eval_steps=2, patience=2),
        tmp_path,
        device=CPU,
    )
    best = min(result.curve, key=lambda p: p["held_out_loss"])
    assert result.metrics["best_step"] == best["step"]
    assert result.metrics["held_out"]["accuracy"] == best["held_out_accuracy"]
    if result.metrics["stopped_early"]:
        assert result.curve[-1]["step"] - best["step"] == 2 * 2  # two evaluations without gain


@pytest.mark.slow  # two trainings
def test_span_feedback_lowers_the_reward_of_flagged_text(tiny_reward_dir, tmp_path):
    """Reviewers flag "fox" where it appears, only ever in chosen responses: the pairs alone
    teach that fox goes with winning. The span penalties pull its reward down against the
    plain model, below that of a neutral word."""
    rng = random.Random(3)
    pairs = []
    for comparison in property_pairs(240, groups=30):
        chosen = comparison.chosen
        if rng.random() < 0.5:
            chosen = f"fox {chosen}"
        spans = ((0, 3, 1.0),) if chosen.startswith("fox ") else ()
        pairs.append(
            Comparison(
                comparison.prompt,
                chosen,
                comparison.rejected,
                comparison.group,
                chosen_penalties=spans,
            )
        )
    probe_rng = random.Random(4)
    prompts = [chat_prompt(probe_rng) for _ in range(40)]
    bodies = [response(probe_rng, good=True) for _ in range(40)]

    def fox_gap(span_penalty: float) -> float:
        out = tmp_path / f"penalty-{span_penalty}"
        train(pairs, [], config(tiny_reward_dir, span_penalty=span_penalty), out, device=CPU)
        scorer = load_scorer(out, device=CPU)
        with_fox = scorer.score(prompts, [f"fox {body}" for body in bodies])
        without = scorer.score(prompts, [f"dog {body}" for body in bodies])
        return float(np.mean(with_fox - without))

    plain, penalised = fox_gap(0.0), fox_gap(1.0)
    assert plain > 0.25  # the spurious correlation
    assert penalised < min(0.0, plain - 0.4)  # about -0.6 to -0.7 on two data seeds


@pytest.mark.slow  # importing sentence-transformers takes seconds
def test_an_embedding_backbone_learns_from_pairs_and_rankings_with_bootstrap_heads(tmp_path):
    encoder = build_tiny_sentence_encoder(tmp_path / "encoder")
    pairs = property_pairs(200, groups=25)
    rng = random.Random(5)
    rankings = [
        Ranking(c.prompt, (c.chosen, " ".join(rng.choices(FILLER, k=6)), c.rejected), c.group)
        for c in property_pairs(60, seed=2, groups=25)
    ]
    result = train(
        pairs,
        rankings,
        config(encoder, backbone_kind="embedding", heads=3, learning_rate=3e-3),
        tmp_path / "model",
        device=CPU,
    )
    assert result.metrics["held_out"]["accuracy"] >= 0.85
    scorer = load_scorer(tmp_path / "model", device=CPU)
    prompts = [c.prompt for c in result.held_out]
    heads = scorer.score_heads(prompts, [c.chosen for c in result.held_out])
    assert heads.shape == (3, len(result.held_out))
    assert np.allclose(heads[0], result.held_out_chosen, atol=1e-5)
    assert not np.allclose(heads[1], heads[2])  # different bootstrap draws
    good = scorer.score(prompts, [f"{PROPERTY} is"] * len(prompts))
    bad = scorer.score(prompts, ["dog is"] * len(prompts))
    assert (good > bad).mean() >= 0.9


def test_nothing_to_train_on_is_an_error(tiny_reward_dir, tmp_path):
    ties = [
        Comparison(c.prompt, c.chosen, c.rejected, c.group, tie=True) for c in property_pairs(10)
    ]
    with pytest.raises(ValueError, match="no training rows"):
        train(ties, [], config(tiny_reward_dir), tmp_path, device=CPU)
