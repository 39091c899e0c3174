"""Generated preference sets whose true preference is known, in the tiny tokenizer's words.

The property a model must read is the word "paris" in the response: the chosen one has it,
the rejected one has another word in its place, so both have the same length distribution
and length alone predicts nothing. Prompts are chats with a system turn.
"""

from __future__ import annotations

import random

from worker.ml.rewards import Comparison
from worker.ml.tiny import CORPUS

PROPERTY = "paris"
FILLER = sorted({word for line in CORPUS[1:] for word in line.split()} - {PROPERTY})


def filler(rng: random.Random, low: int = 3, high: int = 12) -> list[str]:
    return rng.choices(FILLER, k=rng.randint(low, high))


def chat_prompt(rng: random.Random) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "a reward model learns which answer people prefer ."},
        {"role": "user", "content": " ".join(filler(rng, 4, 8))},
    ]


def response(rng: random.Random, *, good: bool) -> str:
    words = filler(rng)
    words.insert(rng.randrange(len(words) + 1), PROPERTY if good else rng.choice(FILLER))
    return " ".join(words)


def property_pairs(n: int, *, seed: int = 0, groups: int = 40) -> list[Comparison]:
    """n comparisons over `groups` prompts; the chosen response contains PROPERTY."""
    rng = random.Random(seed)
    prompts = [chat_prompt(rng) for _ in range(groups)]
    return [
        Comparison(
            prompt=prompts[i % groups],
            chosen=response(rng, good=True),
            rejected=response(rng, good=False),
            group=f"prompt-{i % groups}",
        )
        for i in range(n)
    ]
