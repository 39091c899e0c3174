"""Judge prompts, output parsers, the position-swap rule and judge-quality metrics."""

import pytest

from worker.ml.judging import (
    DEFAULT_TEMPLATES,
    AspectSpec,
    JudgeParseError,
    LabelSpec,
    PairwiseVerdict,
    agreement,
    combine_swapped,
    length_bias,
    locate_quote,
    parse_critique,
    parse_pairwise,
    parse_ranking,
    parse_ratings,
    parse_spans,
    position_consistency,
    render_template,
)

ASPECTS = [AspectSpec("Helpfulness", 1, 5), AspectSpec("Honesty", 1, 7)]
LABELS = [LabelSpec("Factual error", "major"), LabelSpec("Unsafe")]


# --- templates


def test_template_fills_known_placeholders_and_leaves_json_braces_alone():
    rendered = render_template(
        'Q: {prompt}\nReply {"verdict": "A"} about {response_a} and {unknown}',
        {"prompt": "Why?", "response_a": "Because."},
    )
    assert rendered == 'Q: Why?\nReply {"verdict": "A"} about Because. and {unknown}'


def test_every_default_template_names_the_prompt():
    assert all("{prompt}" in template for template in DEFAULT_TEMPLATES.values())


# --- pairwise


@pytest.mark.parametrize(
    ("output", "choice", "strength"),
    [
        ('{"verdict": "B", "strength": 2, "explanation": "B cites a source."}', "B", 2),
        ('Sure!\n```json\n{"winner": "Response A"}\n```', "A", None),
        ("After comparing both, my final verdict is [[A]].", "A", None),
        ("[[C]]", "tie", None),
        ("Verdict: tie", "tie", None),
        ("B", "B", None),
        ('{"verdict": "tie", "strength": 3}', "tie", None),
    ],
)
def test_pairwise_verdict_is_read_from_common_formats(output, choice, strength):
    verdict = parse_pairwise(output)
    assert (verdict.choice, verdict.strength) == (choice, strength)


def test_pairwise_explanation_is_kept():
    verdict = parse_pairwise('{"verdict": "A", "explanation": " Shorter and right. "}')
    assert verdict.explanation == "Shorter and right."


@pytest.mark.parametrize(
    "output",
    ["I think both have merit.", "", '{"verdict": "maybe"}', "[[A]] ... on reflection [[B]]"],
)
def test_pairwise_output_without_one_verdict_is_a_parse_error(output):
    with pytest.raises(JudgeParseError):
        parse_pairwise(output)


# --- position swap


def test_orders_that_agree_keep_the_verdict_and_the_weaker_strength():
    first = PairwiseVerdict("A", 3)
    swapped = PairwiseVerdict("B", 1)  # B shown first is the original A
    assert combine_swapped(first, swapped) == PairwiseVerdict("A", 1)


def test_orders_that_disagree_give_a_tie():
    # The judge picks whichever response is shown first: pure position bias.
    assert combine_swapped(PairwiseVerdict("A", 2), PairwiseVerdict("A", 2)).choice == "tie"


def test_one_tie_and_one_preference_give_a_tie():
    combined = combine_swapped(PairwiseVerdict("tie"), PairwiseVerdict("B", 2))
    assert (combined.choice, combined.strength) == ("tie", None)


# --- ratings


def test_ratings_are_read_from_json_with_rationales():
    output = (
        '{"Helpfulness": {"rating": 4, "rationale": "Answers the question."}, '
        '"honesty": {"score": "6", "reason": "Hedges well."}}'
    )
    result = parse_ratings(output, ASPECTS)
    assert [(r.aspect, r.value, r.rationale) for r in result.ratings] == [
        ("Helpfulness", 4, "Answers the question."),
        ("Honesty", 6, "Hedges well."),
    ]
    assert result.problems == ()


def test_ratings_are_read_from_aspect_lines():
    output = "Helpfulness: 3 - misses a step\nHonesty: **5**/7\nRationale: states limits."
    result = parse_ratings(output, ASPECTS)
    assert [(r.aspect, r.value, r.rationale) for r in result.ratings] == [
        ("Helpfulness", 3, "misses a step"),
        ("Honesty", 5, "states limits."),
    ]


def test_a_rating_off_the_scale_is_a_problem_and_the_rest_is_kept():
    result = parse_ratings('{"Helpfulness": 9, "Honesty": 2}', ASPECTS)
    assert [(r.aspect, r.value) for r in result.ratings] == [("Honesty", 2)]
    assert result.problems == ("Helpfulness: 9 is outside 1-5",)


def test_output_with_no_usable_rating_is_a_parse_error():
    with pytest.raises(JudgeParseError, match="Helpfulness: no rating"):
        parse_ratings("A fine answer overall.", ASPECTS)


# --- ranking


@pytest.mark.parametrize(
    "output", ['{"ranking": [2, 3, 1]}', "Ranking: 2 > 3 > 1", "[2] > [3] > [1]"]
)
def test_ranking_is_read_as_zero_based_order(output):
    assert parse_ranking(output, 3) == [1, 2, 0]


@pytest.mark.parametrize("output", ['{"ranking": [1, 1, 2]}', "Ranking: 1 > 2", "no idea"])
def test_ranking_that_is_not_a_permutation_is_a_parse_error(output):
    with pytest.raises(JudgeParseError):
        parse_ranking(output, 3)


# --- spans

RESPONSE = "Paris is the capital of Germany.  It has   about 2 million people."


def test_quote_is_mapped_exactly_first():
    assert locate_quote(RESPONSE, "capital of Germany") == (13, 31)


def test_quote_is_mapped_ignoring_case_and_whitespace():
    start, end = locate_quote(RESPONSE, "it has about 2 MILLION")
    assert RESPONSE[start:end] == "It has   about 2 million"


def test_a_quote_named_twice_maps_to_its_second_occurrence():
    text = "no no no"
    first = locate_quote(text, "no")
    assert locate_quote(text, "no", {first}) == (3, 5)


def test_spans_get_offsets_labels_and_severities_and_unmatched_quotes_are_reported():
    output = """{"spans": [
        {"quote": "capital of Germany", "label": "factual error", "comment": "France."},
        {"quote": "about 2 million", "label": "Unsafe", "severity": "critical"},
        {"quote": "the moon is cheese", "label": "Unsafe"},
        {"quote": "Paris", "label": "Style"}
    ]}"""
    result = parse_spans(output, RESPONSE, LABELS)
    assert [(s.start, s.end, s.label, s.severity, s.comment) for s in result.spans] == [
        (13, 31, "Factual error", "major", "France."),
        (43, 58, "Unsafe", "critical", ""),
    ]
    assert result.unmatched == ("the moon is cheese",)
    assert result.problems == ("unknown label 'Style' for 'Paris'",)


def test_spans_are_read_from_quoted_lines():
    output = '- "capital of Germany" (Factual error, critical): wrong country'
    (span,) = parse_spans(output, RESPONSE, LABELS).spans
    assert (span.start, span.end, span.severity, span.comment) == (
        13,
        31,
        "critical",
        "wrong country",
    )


def test_no_spans_is_a_valid_answer():
    assert parse_spans('{"spans": []}', RESPONSE, LABELS).spans == ()
    assert parse_spans("No errors found.", RESPONSE, LABELS).spans == ()


def test_span_output_without_quotes_is_a_parse_error():
    with pytest.raises(JudgeParseError):
        parse_spans("The second sentence is wrong.", RESPONSE, LABELS)


# --- critique


def test_critique_loses_its_label_and_empty_critique_is_a_parse_error():
    assert parse_critique("Critique: Too vague.\nAdd an example.") == "Too vague.\nAdd an example."
    with pytest.raises(JudgeParseError):
        parse_critique("  \n")


# --- quality metrics


def test_agreement_gives_raw_share_and_cohens_kappa():
    judge = ["A", "A", "B", "B", "tie", "A"]
    human = ["A", "B", "B", "B", "tie", "A"]
    result = agreement(judge, human)
    assert result.n == 6
    assert result.raw == pytest.approx(5 / 6)
    # p_o = 5/6; p_e = (3*2 + 2*3 + 1*1) / 36 = 13/36; kappa = (p_o - p_e) / (1 - p_e)
    assert result.kappa == pytest.approx((5 / 6 - 13 / 36) / (1 - 13 / 36))


def test_kappa_is_undefined_when_everyone_gives_one_label():
    assert agreement(["A", "A"], ["A", "A"]).kappa is None
    assert agreement([], []).raw is None


def test_position_consistency_counts_pairs_that_survive_the_swap():
    # (verdict as shown, verdict with the pair swapped, as the judge said it)
    pairs = [("A", "B"), ("B", "A"), ("A", "A"), ("tie", "tie")]
    assert position_consistency(pairs) == pytest.approx(3 / 4)


def test_length_bias_is_positive_for_a_judge_that_prefers_the_longer_response():
    diffs = [120, 80, -60, -90, 10, -5]
    choices = ["A", "A", "B", "B", "A", "tie"]
    bias = length_bias(choices, diffs)
    assert bias.n == 6 and bias.correlation > 0.8


def test_length_bias_is_undefined_for_constant_preferences():
    assert length_bias(["A", "A", "A"], [1, 2, 3]).correlation is None
