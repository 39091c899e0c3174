"""LLM-as-judge, without Django: prompts from templates, parsers for the five kinds of
feedback, the position-swap rule and judge-quality metrics.

Parsers raise `JudgeParseError` with a message a person can act on; the caller keeps the
raw output next to that message instead of failing the job. Judges reason first and answer
last, and their reasoning may quote a response that itself holds an answer, so parsers read
the last answer in the output. `answer_schema` gives the JSON schema of each kind's answer
for backends that can constrain decoding to it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

Verdict = Literal["A", "B", "tie"]
T = TypeVar("T")


class JudgeParseError(ValueError):
    """The judge's output does not contain the answer its prompt asked for."""


# --- Templates ------------------------------------------------------------------------

# Explanation before verdict, as MT-Bench's judge prompt asks (Zheng et al. 2023): the
# judge compares first and decides after; `answer_schema` keeps the same order.
_VERDICT_FORMAT = (
    'Reply with JSON only: {"explanation": "one or two sentences", '
    '"verdict": "A" | "B" | "tie", "strength": 1 | 2 | 3}. '
    "Strength: 1 slightly, 2 clearly, 3 much better."
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
        'Reply with JSON only: {"<aspect name>": {"rationale": "<why>", '
        '"rating": <integer>}, ...}, one entry per aspect.'
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

_JSON_START = re.compile(r"[{\[]")
_DECODER = json.JSONDecoder()


def json_values(text: str) -> list[tuple[int, Any]]:
    """Each top-level JSON object or array in `text`, bare or in a code fence, in order,
    with the offset where it ends (values nested in another are part of it)."""
    found: list[tuple[int, Any]] = []
    at = 0
    while (start := _JSON_START.search(text, at)) is not None:
        try:
            value, end = _DECODER.raw_decode(text, start.start())
        except json.JSONDecodeError:
            at = start.start() + 1
            continue
        found.append((end, value))
        at = end
    return found


def _last_json(text: str, read: Callable[[Any], T | None]) -> tuple[int, T] | None:
    """(end offset, what `read` makes of it) for the last JSON value `read` accepts."""
    for end, value in reversed(json_values(text)):
        got = read(value)
        if got is not None:
            return end, got
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
# Arena-Hard's verdicts (Li et al. 2024): [[A>>B]] significantly better, [[A>B]] slightly
# better, [[A=B]] a tie; mapped onto our strengths 3 and 1.
_ARENA = re.compile(r"\[\[\s*([AB])\s*(>>|>|=)\s*([AB])\s*\]\]")
_ARENA_STRENGTH = {">>": 3, ">": 1}
# Outside JSON a verdict letter is a capital: "a" is the article ("an answer a novice can
# follow"). Words (tie, Response, Verdict) are read in any case.
_BRACKETED = re.compile(r"\[\[\s*(A|B|C|(?i:tie))\s*\]\]")
_NAMED = r"(?:(?i:response|assistant|answer|output|option)\s+)?"
_PUNCT = r"[\s*_\"'\u201c\u201d]*"
_LABELLED = re.compile(
    r"\b(?i:(?:final\s+)?(?:verdict|winner|choice|decision|judge?ment|preference)|final\s+answer"
    r"|(?:better|best|preferred|winning)(?:\s+(?:one|response|answer|assistant|output))?)"
    + _PUNCT
    + r"(?::|=|-|\u2013|\u2014|\b(?i:is)\b)"
    + _PUNCT
    + r"(?:(?i:a\s+)?((?i:tie))|"
    + _NAMED
    + r"([AB]))\b"
)
_PROSE = re.compile(
    r"\b(?i:prefer(?:s|red)?|choose|chose|pick|select|go\s+with)\s+" + _NAMED + r"([AB])\b"
    r"|\b" + _NAMED + r"([AB])\s+(?i:is|was)\s+"
    r"(?:(?i:clearly|slightly|much|significantly|far|somewhat|marginally|overall|the)\s+)*"
    r"(?i:better|superior|preferable|preferred|stronger)\b"
    r"|\b(?i:it(?:'|\u2019)?s|it\s+is)\s+(?i:a\s+)?((?i:tie))\b"
)
_BARE = re.compile(_NAMED + r"([AB])|((?i:tie))")


def _verdict_of(value: Any) -> tuple[Verdict, int | None] | None:
    """A JSON verdict value ("A", "response b", "tie", "A>>B") and the strength it implies."""
    if not isinstance(value, str):
        return None
    arena = _ARENA.fullmatch(f"[[{value.strip()}]]")
    if arena is not None:
        return _arena_verdict(arena)
    choice = _VERDICT_WORDS.get(_norm_key(value))
    return None if choice is None else (choice, None)


def _arena_verdict(match: re.Match[str]) -> tuple[Verdict, int | None] | None:
    left, op, right = match.groups()
    if op == "=":
        return "tie", None
    return (left, _ARENA_STRENGTH[op]) if left != right else None  # type: ignore[return-value]


def _word_verdict(match: re.Match[str]) -> Verdict:
    """The verdict named by whichever group of a verdict pattern matched."""
    word = next(g for g in match.groups() if g is not None)
    return _VERDICT_WORDS[_norm_key(word)]


def _json_verdict(data: Any) -> PairwiseVerdict | None:
    if not isinstance(data, dict):
        return None
    found = _verdict_of(_lookup(data, "verdict", "winner", "choice", "preferred", "better"))
    if found is None:
        return None
    choice, implied = found
    strength = _as_int(_lookup(data, "strength", "margin"))
    strength = strength if strength is not None and 1 <= strength <= 3 else implied
    explanation = _lookup(data, "explanation", "rationale", "reason", "reasoning")
    return PairwiseVerdict(
        choice,
        None if choice == "tie" else strength,
        explanation.strip() if isinstance(explanation, str) else "",
    )


def parse_pairwise(text: str) -> PairwiseVerdict:
    """The judge's last verdict: from JSON (`verdict`, `winner`...), MT-Bench's `[[A]]` /
    `[[C]]` or Arena-Hard's `[[A>>B]]`; failing those a labelled one ("Verdict: B",
    "the better response is A"), then prose ("I prefer B", "A is better"), then a bare
    "A", "B" or "tie".

    The last verdict of the most explicit form found wins: reasoning comes first and may
    quote a response that holds a verdict of its own. Strength outside 1-3 is dropped; a
    tie never has one. A verdict outside JSON keeps the whole output as its explanation.
    """
    explained = text.strip().strip(".*\"'").strip()
    explanation = explained if len(explained) > 3 else ""
    marked: list[tuple[int, PairwiseVerdict]] = []
    in_json = _last_json(text, _json_verdict)
    if in_json is not None:
        marked.append(in_json)
    for m in _BRACKETED.finditer(text):
        marked.append((m.end(), PairwiseVerdict(_word_verdict(m), None, explanation)))
    for m in _ARENA.finditer(text):
        found = _arena_verdict(m)
        if found is not None:
            marked.append((m.end(), PairwiseVerdict(found[0], found[1], explanation)))
    if marked:
        return max(marked, key=lambda item: item[0])[1]
    for pattern in (_LABELLED, _PROSE):
        matches = list(pattern.finditer(text))
        if matches:
            return PairwiseVerdict(_word_verdict(matches[-1]), None, explanation)
    bare = _BARE.fullmatch(explained)
    if bare is not None:
        return PairwiseVerdict(_word_verdict(bare))
    raise JudgeParseError(f"no verdict (A, B or tie) found in: {_snippet(text)!r}")


def flip(choice: Verdict) -> Verdict:
    """The same verdict, seen with the two responses swapped."""
    return {"A": "B", "B": "A", "tie": "tie"}[choice]  # type: ignore[return-value]


def combine_swapped(first: PairwiseVerdict, swapped: PairwiseVerdict) -> PairwiseVerdict:
    """One verdict from asking in both orders, the second with B shown first.

    Agreeing orders keep the verdict, the weaker of the two strengths and the first
    order's explanation; any disagreement (including one tie) is a tie, because the
    preference did not survive the swap (Zheng et al. 2023, "Judging LLM-as-a-judge",
    position bias). That tie has no explanation: each order's argues for a preference the
    tie does not hold (both stay in the raw outputs).
    """
    second = flip(swapped.choice)
    if first.choice != second:
        return PairwiseVerdict("tie")
    if first.choice == "tie":
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


_NUMBER = re.compile(r"\s*-?\d+(?:\.\d+)?\s*")


def _shown(value: Any) -> str:
    """A rating as the judge wrote it: 4.5 for both 4.5 and "4.5", 'good' quoted."""
    if isinstance(value, str):
        return value.strip() if _NUMBER.fullmatch(value) else repr(value)
    return json.dumps(value, ensure_ascii=False)


def _ratings_from_json(data: Any) -> dict[str, tuple[Any, str]]:
    """Normalised aspect name -> (raw rating, rationale) from one JSON value."""
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
                r"(-?\d+(?:\.\d+)?)\**(?:\s*/\s*\d+)?\**\s*(.*)$",
                line.strip(),
                re.IGNORECASE,
            )
            if not m:
                continue
            why = m.group(2).strip(" -\u2013\u2014:()")
            if not why and i + 1 < len(lines):
                nxt = re.match(r"^\W*(?:rationale|reason)\s*:\s*(.+)$", lines[i + 1].strip(), re.I)
                why = nxt.group(1).strip() if nxt else ""
            found[_norm_key(aspect.name)] = (m.group(1), why)  # the last line wins
    return found


def parse_ratings(text: str, aspects: Sequence[AspectSpec]) -> RatingsParse:
    """Per-aspect ratings from JSON (`{"Helpfulness": {"rating": 4, "rationale": ...}}`,
    or a list of `{aspect, rating, rationale}`) or from `Aspect: 4` lines.

    The last JSON naming an aspect wins, and for lines the last line of each aspect.
    Aspects that are missing, not integers (4.5 is refused, not truncated) or off their
    scale go to `problems`; raises when no aspect could be read at all.
    """
    names = {_norm_key(a.name) for a in aspects}

    def naming_an_aspect(data: Any) -> dict[str, tuple[Any, str]] | None:
        found = _ratings_from_json(data)
        return found if names & found.keys() else None

    in_json = _last_json(text, naming_an_aspect)
    found = in_json[1] if in_json is not None else _ratings_from_lines(text, aspects)
    ratings, problems = [], []
    for aspect in aspects:
        raw, why = found.get(_norm_key(aspect.name), (None, ""))
        value = _as_int(raw)
        if raw is None:
            problems.append(f"{aspect.name}: no rating")
        elif value is None:
            problems.append(
                f"{aspect.name}: {_shown(raw)} is not an integer on the "
                f"{aspect.scale_min}-{aspect.scale_max} scale"
            )
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


def _ranking_of(data: Any) -> list[Any] | None:
    if isinstance(data, dict):
        data = _lookup(data, "ranking", "order", "rank")
    return data if isinstance(data, list) else None


def parse_ranking(text: str, count: int) -> list[int]:
    """The order of `count` numbered responses, best first, as 0-based indices.

    Reads the last JSON `{"ranking": [2, 1, 3]}` (or bare list), else the last line such as
    "Ranking: 2 > 1 > 3", or "[2] > [1] > [3]". The order must name each response exactly
    once; the JSON is tried first, then the line.
    """
    candidates: list[list[Any]] = []
    in_json = _last_json(text, _ranking_of)
    if in_json is not None:
        candidates.append(in_json[1])
    lines = list(re.finditer(r"(?:ranking|order)\s*[:=]\s*(.+)", text, re.IGNORECASE))
    source = lines[-1].group(1) if lines else text
    if lines or ">" in source:
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
    # Matched over the original text: a lower-cased copy can be longer ("\u0130".lower() is
    # two code points), so offsets found in it would be shifted or run past the end.
    words = re.compile(r"\s+".join(map(re.escape, quote.split())), re.IGNORECASE)
    at = 0
    while (found := words.search(response, at)) is not None:
        if found.span() not in taken:
            return found.span()
        at = found.start() + 1
    return None


def _span_list(data: Any) -> list[dict[str, Any]] | None:
    if isinstance(data, dict):
        data = _lookup(data, "spans", "errors", "issues")
    if isinstance(data, list) and all(isinstance(item, dict) for item in data):
        return data
    return None


def _span_items(text: str) -> list[dict[str, Any]]:
    in_json = _last_json(text, _span_list)
    if in_json is not None:
        return in_json[1]
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
    Quotes not in the response go to `unmatched`, unknown labels to `problems`. One quote
    may carry several labels (the same offsets again); the same quote with the same label
    again maps to its next occurrence.
    """
    by_name = {_norm_key(label.name): label for label in labels}
    spans: list[FoundSpan] = []
    unmatched: list[str] = []
    problems: list[str] = []
    taken: dict[str, set[tuple[int, int]]] = {}  # per label
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
        used = taken.setdefault(label.name, set())
        where = locate_quote(response, quote, used)
        if where is None:
            if used and locate_quote(response, quote) is not None:
                problems.append(
                    f"{_snippet(quote, 40)!r} is quoted more often than it occurs "
                    f"(label {label.name})"
                )
            else:
                unmatched.append(quote)
            continue
        used.add(where)
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
    """The critique without a leading "Critique:" label, or the last JSON `critique`;
    empty output is an error."""

    def critique_of(data: Any) -> str | None:
        value = _lookup(data, "critique", "feedback", "comment") if isinstance(data, dict) else None
        return value.strip() if isinstance(value, str) and value.strip() else None

    in_json = _last_json(text, critique_of)
    if in_json is not None:
        return in_json[1]
    body = re.sub(r"^\s*\**critique\**\s*:\s*", "", text, flags=re.IGNORECASE).strip()
    if not body:
        raise JudgeParseError("the critique is empty")
    return body


# --- Structured output ----------------------------------------------------------------


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    # Every property required and no others: what OpenAI's strict mode demands.
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


_TEXT = {"type": "string"}


def answer_schema(
    kind: str,
    *,
    aspects: Sequence[AspectSpec] = (),
    labels: Sequence[LabelSpec] = (),
    count: int = 0,
) -> dict[str, Any] | None:
    """The JSON schema of a judge's answer of `kind`, as the default templates ask for it;
    None for a free-text critique.

    For backends that constrain decoding to a schema (an OpenAI-compatible
    `response_format`; vLLM and llama.cpp servers honour it), so the answer always parses.
    Reasons come before the verdict or rating they support, as in the templates, because
    constrained decoding writes properties in schema order. `count`: responses ranked.
    """
    if kind == "pairwise":
        return _object(
            {
                "explanation": _TEXT,
                "verdict": {"type": "string", "enum": ["A", "B", "tie"]},
                "strength": {"type": "integer", "enum": [1, 2, 3]},
            }
        )
    if kind == "rating":
        return _object(
            {
                a.name: _object(
                    {
                        "rationale": _TEXT,
                        "rating": {
                            "type": "integer",
                            "enum": list(range(a.scale_min, a.scale_max + 1)),
                        },
                    }
                )
                for a in aspects
            }
        )
    if kind == "ranking":
        number = {"type": "integer", "enum": list(range(1, count + 1))}
        return _object(
            {"ranking": {"type": "array", "items": number, "minItems": count, "maxItems": count}}
        )
    if kind == "span":
        label = {"type": "string", "enum": [lb.name for lb in labels]} if labels else _TEXT
        span = _object(
            {
                "quote": _TEXT,
                "label": label,
                "severity": {"type": "string", "enum": list(SEVERITIES)},
                "comment": _TEXT,
            }
        )
        return _object({"spans": {"type": "array", "items": span}})
    return None


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
