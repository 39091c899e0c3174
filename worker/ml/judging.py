"""LLM-as-judge, without Django: prompts from templates, parsers for the five kinds of
feedback, the position-swap rule and judge-quality metrics.

Parsers raise `JudgeParseError` with a message a person can act on; the caller keeps the
raw output next to that message instead of failing the job.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Any, Literal

Verdict = Literal["A", "B", "tie"]


class JudgeParseError(ValueError):
    """The judge's output does not contain the answer its prompt asked for."""


# --- Templates ------------------------------------------------------------------------

_VERDICT_FORMAT = (
    'Reply with JSON only: {"verdict": "A" | "B" | "tie", "strength": 1 | 2 | 3, '
    '"explanation": "one or two sentences"}. Strength: 1 slightly, 2 clearly, 3 much better.'
)

DEFAULT_TEMPLATES: dict[str, str] = {
    "pairwise": (
        "You are an impartial judge. Compare two assistant responses to the user's request "
        "and decide which one is better. Do not let the order, the length or the style of "
        "the responses sway you.\n\n"
        "{guidelines}\n"
        "[Conversation]\n{prompt}\n\n"
        "[Response A]\n{response_a}\n\n"
        "[Response B]\n{response_b}\n\n" + _VERDICT_FORMAT
    ),
    "rating": (
        "You are an impartial judge. Rate the assistant response to the user's request on "
        "each aspect below, with a short rationale per aspect.\n\n"
        "{guidelines}\n"
        "[Aspects]\n{aspects}\n\n"
        "[Conversation]\n{prompt}\n\n"
        "[Response]\n{response}\n\n"
        'Reply with JSON only: {"<aspect name>": {"rating": <integer>, '
        '"rationale": "<why>"}, ...}, one entry per aspect.'
    ),
    "ranking": (
        "You are an impartial judge. Rank the numbered assistant responses to the user's "
        "request from best to worst.\n\n"
        "{guidelines}\n"
        "[Conversation]\n{prompt}\n\n"
        "{responses}\n\n"
        'Reply with JSON only: {"ranking": [<response numbers, best first>]}, naming every '
        "response exactly once."
    ),
    "span": (
        "You are a careful reviewer. Find the parts of the assistant response that are "
        "wrong or problematic, quoting each one exactly as it appears in the response.\n\n"
        "{guidelines}\n"
        "[Labels]\n{labels}\n\n"
        "[Conversation]\n{prompt}\n\n"
        "[Response]\n{response}\n\n"
        'Reply with JSON only: {"spans": [{"quote": "<exact text from the response>", '
        '"label": "<label>", "severity": "minor" | "major" | "critical", '
        '"comment": "<why>"}]}. Reply {"spans": []} if nothing is wrong.'
    ),
    "free_text": (
        "You are a careful reviewer. Write a short critique of the assistant response to "
        "the user's request: what is wrong or missing, and what would make it better.\n\n"
        "{guidelines}\n"
        "[Conversation]\n{prompt}\n\n"
        "[Response]\n{response}\n\nCritique:"
    ),
}

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def render_template(template: str, values: Mapping[str, str]) -> str:
    """Fill `{name}` placeholders whose name is in `values`; leave every other brace alone.

    str.format would choke on the JSON examples that judge prompts are full of.
    """
    return _PLACEHOLDER.sub(
        lambda m: values[m.group(1)] if m.group(1) in values else m.group(0), template
    )


def conversation_text(turns: Sequence[Mapping[str, str]]) -> str:
    """A chat as plain text for a judge prompt; a single user turn is shown as is."""
    if len(turns) == 1 and turns[0]["role"] == "user":
        return turns[0]["content"]
    return "\n\n".join(f"{t['role'].capitalize()}: {t['content']}" for t in turns)


@dataclass(frozen=True)
class AspectSpec:
    name: str
    scale_min: int
    scale_max: int
    rubric: str = ""


def aspects_text(aspects: Sequence[AspectSpec]) -> str:
    lines = []
    for a in aspects:
        rubric = f": {a.rubric.strip()}" if a.rubric.strip() else ""
        lines.append(f"- {a.name} (integer {a.scale_min}-{a.scale_max}){rubric}")
    return "\n".join(lines)


def responses_text(responses: Sequence[str]) -> str:
    return "\n\n".join(f"[Response {i}]\n{text}" for i, text in enumerate(responses, start=1))


# --- Shared parsing helpers -------------------------------------------------------------

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def extract_json(text: str) -> Any | None:
    """The first JSON object in `text` (inside a code fence or bare), or None."""
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    decoder = json.JSONDecoder()
    for candidate in candidates:
        for start in (i for i, ch in enumerate(candidate) if ch in "{["):
            try:
                value, _ = decoder.raw_decode(candidate[start:])
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict | list):
                return value
    return None


def _norm_key(key: str) -> str:
    return re.sub(r"[^a-z0-9]", "", key.lower())


def _lookup(data: Mapping[str, Any], *names: str) -> Any:
    """Value of the first key matching one of `names`, ignoring case and punctuation."""
    wanted = {_norm_key(n) for n in names}
    for key, value in data.items():
        if _norm_key(str(key)) in wanted:
            return value
    return None


def _snippet(text: str, limit: int = 80) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


# --- Pairwise -------------------------------------------------------------------------


@dataclass(frozen=True)
class PairwiseVerdict:
    """Which of the two responses, as shown, the judge prefers."""

    choice: Verdict
    strength: int | None = None
    explanation: str = ""


_VERDICT_WORDS: dict[str, Verdict] = {
    "a": "A",
    "b": "B",
    "tie": "tie",
    "c": "tie",  # MT-Bench writes [[C]] for a tie
    "equal": "tie",
    "draw": "tie",
    "responsea": "A",
    "responseb": "B",
}
_BRACKETED = re.compile(r"\[\[\s*(A|B|C|tie)\s*\]\]", re.IGNORECASE)
_LABELLED = re.compile(
    r"(?:verdict|winner|better(?: response)?|preferred(?: response)?|choice|answer)"
    r"\s*(?:is)?\s*[:=\-]?\s*\**\s*\"?(?:response\s+)?(A|B|tie)\b",
    re.IGNORECASE,
)


def _verdict_of(value: Any) -> Verdict | None:
    if not isinstance(value, str):
        return None
    return _VERDICT_WORDS.get(_norm_key(value))


def parse_pairwise(text: str) -> PairwiseVerdict:
    """Read a verdict from JSON (`verdict`), MT-Bench's `[[A]]` or a "Verdict: B" line.

    A bare "A", "B" or "tie" is accepted too. Strength outside 1-3 is dropped; a tie
    never has one.
    """
    data = extract_json(text)
    if isinstance(data, dict):
        choice = _verdict_of(_lookup(data, "verdict", "winner", "choice", "preferred", "better"))
        if choice is not None:
            strength = _lookup(data, "strength", "margin")
            strength = strength if isinstance(strength, int) and 1 <= strength <= 3 else None
            explanation = _lookup(data, "explanation", "rationale", "reason", "reasoning")
            return PairwiseVerdict(
                choice,
                None if choice == "tie" else strength,
                explanation.strip() if isinstance(explanation, str) else "",
            )
    stripped = text.strip().strip(".*\"'").strip()
    for pattern in (_BRACKETED, _LABELLED):
        found = {_verdict_of(m.group(1)) for m in pattern.finditer(text)}
        if len(found) == 1:
            return PairwiseVerdict(found.pop(), None, stripped if len(stripped) > 3 else "")
        if len(found) > 1:
            raise JudgeParseError(f"conflicting verdicts in the output: {_snippet(text)!r}")
    bare = _verdict_of(stripped)
    if bare is not None:
        return PairwiseVerdict(bare)
    raise JudgeParseError(f"no verdict (A, B or tie) found in: {_snippet(text)!r}")


def flip(choice: Verdict) -> Verdict:
    """The same verdict, seen with the two responses swapped."""
    return {"A": "B", "B": "A", "tie": "tie"}[choice]  # type: ignore[return-value]


def combine_swapped(first: PairwiseVerdict, swapped: PairwiseVerdict) -> PairwiseVerdict:
    """One verdict from asking in both orders, the second with B shown first.

    Agreeing orders keep the verdict and the weaker of the two strengths; any
    disagreement (including one tie) is a tie, because the preference did not survive
    the swap (Zheng et al. 2023, "Judging LLM-as-a-judge", position bias).
    """
    second = flip(swapped.choice)
    if first.choice != second or first.choice == "tie":
        return PairwiseVerdict("tie", None, first.explanation)
    strengths = [s for s in (first.strength, swapped.strength) if s is not None]
    return PairwiseVerdict(first.choice, min(strengths) if strengths else None, first.explanation)


# --- Ratings --------------------------------------------------------------------------


@dataclass(frozen=True)
class AspectRating:
    aspect: str  # the AspectSpec's name, as the project spells it
    value: int
    rationale: str = ""


@dataclass(frozen=True)
class RatingsParse:
    ratings: tuple[AspectRating, ...]
    problems: tuple[str, ...] = ()  # aspects missing or out of scale


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+(?:\.0+)?\s*", value):
        return int(float(value))
    return None


def _ratings_from_json(data: Any) -> dict[str, tuple[Any, str]]:
    found: dict[str, tuple[Any, str]] = {}
    if isinstance(data, dict) and isinstance(_lookup(data, "ratings", "scores"), list | dict):
        data = _lookup(data, "ratings", "scores")
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(value, dict):
                score = _lookup(value, "rating", "score", "value")
                why = _lookup(value, "rationale", "reason", "explanation")
                found[_norm_key(str(key))] = (score, why if isinstance(why, str) else "")
            else:
                found[_norm_key(str(key))] = (value, "")
    elif isinstance(data, list):
        for item in data:
            if isinstance(item, dict):
                name = _lookup(item, "aspect", "name")
                score = _lookup(item, "rating", "score", "value")
                why = _lookup(item, "rationale", "reason", "explanation")
                if isinstance(name, str):
                    found[_norm_key(name)] = (score, why if isinstance(why, str) else "")
    return found


def _ratings_from_lines(text: str, aspects: Sequence[AspectSpec]) -> dict[str, tuple[Any, str]]:
    """`Helpfulness: 4` lines; text after the score, or a `Rationale:` line below, is why."""
    found: dict[str, tuple[Any, str]] = {}
    lines = text.splitlines()
    for i, line in enumerate(lines):
        for aspect in aspects:
            m = re.match(
                rf"^\W*{re.escape(aspect.name)}\W*(?:rating|score)?\s*[:=\-]\s*\**\s*"
                r"(-?\d+)\**(?:\s*/\s*\d+)?\**\s*(.*)$",
                line.strip(),
                re.IGNORECASE,
            )
            if not m:
                continue
            why = m.group(2).strip(" -\u2013\u2014:()")
            if not why and i + 1 < len(lines):
                nxt = re.match(r"^\W*(?:rationale|reason)\s*:\s*(.+)$", lines[i + 1].strip(), re.I)
                why = nxt.group(1).strip() if nxt else ""
            found.setdefault(_norm_key(aspect.name), (m.group(1), why))
    return found


def parse_ratings(text: str, aspects: Sequence[AspectSpec]) -> RatingsParse:
    """Per-aspect ratings from JSON (`{"Helpfulness": {"rating": 4, "rationale": ...}}`,
    or a list of `{aspect, rating, rationale}`) or from `Aspect: 4` lines.

    Aspects that are missing or off their scale go to `problems`; raises when no aspect
    could be read at all.
    """
    data = extract_json(text)
    found = _ratings_from_json(data) if data is not None else {}
    if not any(_norm_key(a.name) in found for a in aspects):
        found = _ratings_from_lines(text, aspects)
    ratings, problems = [], []
    for aspect in aspects:
        raw, why = found.get(_norm_key(aspect.name), (None, ""))
        value = _as_int(raw)
        if raw is None:
            problems.append(f"{aspect.name}: no rating")
        elif value is None:
            problems.append(f"{aspect.name}: {raw!r} is not an integer")
        elif not aspect.scale_min <= value <= aspect.scale_max:
            problems.append(
                f"{aspect.name}: {value} is outside {aspect.scale_min}-{aspect.scale_max}"
            )
        else:
            ratings.append(AspectRating(aspect.name, value, why.strip()))
    if not ratings:
        raise JudgeParseError("no usable rating: " + "; ".join(problems))
    return RatingsParse(tuple(ratings), tuple(problems))


# --- Ranking --------------------------------------------------------------------------


def parse_ranking(text: str, count: int) -> list[int]:
    """The order of `count` numbered responses, best first, as 0-based indices.

    Reads JSON `{"ranking": [2, 1, 3]}` or a line such as "Ranking: 2 > 1 > 3" or
    "[2] > [1] > [3]". The order must name each response exactly once.
    """
    candidates: list[list[Any]] = []
    data = extract_json(text)
    if isinstance(data, dict) and isinstance(_lookup(data, "ranking", "order", "rank"), list):
        candidates.append(_lookup(data, "ranking", "order", "rank"))
    elif isinstance(data, list):
        candidates.append(data)
    line = re.search(r"(?:ranking|order)\s*[:=]\s*(.+)", text, re.IGNORECASE)
    source = line.group(1) if line else text
    if line or ">" in source:
        candidates.append(re.findall(r"\d+", source))
    expected = list(range(1, count + 1))
    for numbers in candidates:
        ints = [_as_int(n) for n in numbers]
        if all(n is not None for n in ints) and sorted(ints) == expected:  # type: ignore[type-var]
            return [n - 1 for n in ints]  # type: ignore[operator]
    if not candidates:
        raise JudgeParseError(f"no ranking of response numbers found in: {_snippet(text)!r}")
    raise JudgeParseError(f"ranking {candidates[0]} does not name responses 1-{count} exactly once")


# --- Spans ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelSpec:
    name: str
    default_severity: str = "minor"


@dataclass(frozen=True)
class FoundSpan:
    start: int  # character offsets into the response, [start, end)
    end: int
    label: str
    severity: str
    comment: str = ""


@dataclass(frozen=True)
class SpansParse:
    spans: tuple[FoundSpan, ...]
    unmatched: tuple[str, ...] = ()  # quotes not found in the response
    problems: tuple[str, ...] = ()  # unknown labels, bad items


SEVERITIES = ("minor", "major", "critical")


def _normalised(text: str) -> tuple[str, list[int]]:
    """Lower-cased text with whitespace runs collapsed, and each char's original index."""
    chars: list[str] = []
    index: list[int] = []
    previous_space = False
    for i, ch in enumerate(text):
        if ch.isspace():
            if previous_space:
                continue
            chars.append(" ")
            previous_space = True
        else:
            chars.append(ch.lower())
            previous_space = False
        index.append(i)
    return "".join(chars), index


def locate_quote(
    response: str, quote: str, taken: Set[tuple[int, int]] = frozenset()
) -> tuple[int, int] | None:
    """Offsets [start, end) of `quote` in `response`: exact match first, then ignoring
    case and whitespace differences. Occurrences in `taken` are skipped, so a quote named
    twice maps to its second occurrence."""
    quote = quote.strip()
    if not quote:
        return None
    start = response.find(quote)
    while start != -1:
        if (start, start + len(quote)) not in taken:
            return start, start + len(quote)
        start = response.find(quote, start + 1)
    haystack, index = _normalised(response)
    needle, _ = _normalised(quote)
    needle = needle.strip()
    at = haystack.find(needle)
    while at != -1:
        begin, last = index[at], index[at + len(needle) - 1]
        if (begin, last + 1) not in taken:
            return begin, last + 1
        at = haystack.find(needle, at + 1)
    return None


def _span_items(text: str) -> list[dict[str, Any]]:
    data = extract_json(text)
    if isinstance(data, dict):
        data = _lookup(data, "spans", "errors", "issues")
    if isinstance(data, list):
        return [item for item in data if isinstance(item, dict)]
    # Fallback: lines like  - "quoted text" (Label, major): comment
    items = []
    for m in re.finditer(
        r'["\u201c](.+?)["\u201d]\s*\(([^)]+)\)\s*[:\-\u2013\u2014]?\s*(.*)', text
    ):
        label, _, severity = m.group(2).partition(",")
        items.append(
            {
                "quote": m.group(1),
                "label": label.strip(),
                "severity": severity.strip(),
                "comment": m.group(3).strip(),
            }
        )
    if not items and not re.search(r"\bno (?:errors?|issues?|problems?)\b|\[\s*\]", text, re.I):
        raise JudgeParseError(f"no quoted spans found in: {_snippet(text)!r}")
    return items


def parse_spans(text: str, response: str, labels: Sequence[LabelSpec]) -> SpansParse:
    """Quoted spans mapped to character offsets in `response`.

    Reads JSON `{"spans": [{"quote", "label", "severity", "comment"}]}` or lines like
    `"quote" (Label, major): comment`. An empty list is a valid answer (nothing wrong).
    Quotes not in the response go to `unmatched`, unknown labels to `problems`.
    """
    by_name = {_norm_key(label.name): label for label in labels}
    spans: list[FoundSpan] = []
    unmatched: list[str] = []
    problems: list[str] = []
    taken: set[tuple[int, int]] = set()
    for item in _span_items(text):
        quote = _lookup(item, "quote", "text", "span")
        label_name = _lookup(item, "label", "category", "type")
        if not isinstance(quote, str) or not quote.strip():
            problems.append(f"a span without a quote: {_snippet(json.dumps(item))}")
            continue
        label = by_name.get(_norm_key(label_name)) if isinstance(label_name, str) else None
        if label is None:
            if len(labels) == 1:
                label = labels[0]
            else:
                problems.append(f"unknown label {label_name!r} for {_snippet(quote, 40)!r}")
                continue
        where = locate_quote(response, quote, taken)
        if where is None:
            unmatched.append(quote)
            continue
        taken.add(where)
        severity = _lookup(item, "severity")
        severity = severity.lower() if isinstance(severity, str) else ""
        comment = _lookup(item, "comment", "explanation", "reason")
        spans.append(
            FoundSpan(
                where[0],
                where[1],
                label.name,
                severity if severity in SEVERITIES else label.default_severity,
                comment.strip() if isinstance(comment, str) else "",
            )
        )
    return SpansParse(tuple(spans), tuple(unmatched), tuple(problems))


# --- Free text ------------------------------------------------------------------------


def parse_critique(text: str) -> str:
    """The critique without a leading "Critique:" label; empty output is an error."""
    data = extract_json(text)
    if isinstance(data, dict):
        value = _lookup(data, "critique", "feedback", "comment")
        if isinstance(value, str) and value.strip():
            return value.strip()
    body = re.sub(r"^\s*\**critique\**\s*:\s*", "", text, flags=re.IGNORECASE).strip()
    if not body:
        raise JudgeParseError("the critique is empty")
    return body


# --- Judge quality --------------------------------------------------------------------


@dataclass(frozen=True)
class Agreement:
    """Cohen's kappa (None when undefined: one label only) and the raw share agreeing."""

    n: int
    raw: float | None
    kappa: float | None


def agreement(
    judge: Sequence[Any],
    human: Sequence[Any],
    *,
    weights: Literal["linear"] | None = None,
    labels: Sequence[Any] | None = None,
) -> Agreement:
    """Agreement of paired labels. `weights="linear"` for ordinal scales (ratings), with
    `labels` the whole scale in order: weights are distances between places in that list,
    so observed values alone (or sorted as strings, 10 before 2) would measure wrong ones.
    """
    from sklearn.metrics import cohen_kappa_score

    if len(judge) != len(human):
        raise ValueError("judge and human labels must be paired")
    n = len(judge)
    if n == 0:
        return Agreement(0, None, None)
    raw = sum(a == b for a, b in zip(judge, human, strict=True)) / n
    if labels is None:
        labels = sorted(set(judge) | set(human))
    if len(set(judge) | set(human)) < 2:
        return Agreement(n, raw, None)
    kappa = float(cohen_kappa_score(judge, human, labels=labels, weights=weights))
    return Agreement(n, raw, None if math.isnan(kappa) else kappa)


def position_consistency(pairs: Sequence[tuple[Verdict, Verdict]]) -> float | None:
    """Share of pairs whose verdict survives the swap.

    Each pair is (verdict in the shown order, verdict with the responses swapped, as
    the judge said it, i.e. before flipping back).
    """
    if not pairs:
        return None
    return sum(first == flip(swapped) for first, swapped in pairs) / len(pairs)


@dataclass(frozen=True)
class LengthBias:
    """Pearson correlation of preference (+1 A, -1 B, 0 tie) with len(A) - len(B)."""

    n: int
    correlation: float | None
    p_value: float | None


def length_bias(choices: Sequence[Verdict], length_diffs: Sequence[int]) -> LengthBias:
    """Does the judge prefer the longer response? r near +1: yes; near 0: no bias."""
    from scipy.stats import pearsonr

    n = len(choices)
    score = [{"A": 1, "B": -1, "tie": 0}[c] for c in choices]
    if n < 3 or len(set(score)) < 2 or len(set(length_diffs)) < 2:
        return LengthBias(n, None, None)
    result = pearsonr(score, list(length_diffs))
    return LengthBias(n, float(result.statistic), float(result.pvalue))
