"""The task form: what it shows pre-filled, and how a POST becomes a FeedbackInput.

Field names: `choice`, `strength`, `rationale` (pair); `rating-<response>-<aspect>`
(single); `ranking` repeated, best first (list); `spans` as a JSON list; `critique-<response>`
and `rewrite-<response>`; `duration_ms` from the page's timer.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.http import QueryDict

from feedback.models import FeedbackKind, FreeTextFeedback, RatingAspect, Response
from feedback.schemas import NUL_MESSAGE
from feedback.selectors import TaskScreen
from feedback.services import (
    FeedbackError,
    FeedbackInput,
    FreeTextInput,
    PairwiseInput,
    RatingInput,
    SpanInput,
)

Mode = FreeTextFeedback.Mode
MAX_DURATION_MS = 24 * 3600 * 1000


@dataclass
class RatingRow:
    aspect: RatingAspect
    response: Response
    value: int | None

    @property
    def name(self) -> str:
        return f"rating-{self.response.pk}-{self.aspect.pk}"

    @property
    def options(self) -> range:
        return range(self.aspect.scale_min, self.aspect.scale_max + 1)


@dataclass
class TextRow:
    response: Response
    critique: str | None  # None: the project does not ask for it
    rewrite: str | None


@dataclass
class TaskForm:
    """Initial values of the task form: the annotator's current answer, or blanks."""

    choice: str = ""
    strength: int | None = None
    rationale: str | None = None
    ratings: list[RatingRow] = field(default_factory=list)
    ranking: list[Response] = field(default_factory=list)
    spans: list[dict[str, Any]] = field(default_factory=list)
    texts: list[TextRow] = field(default_factory=list)
    client: dict[str, Any] = field(default_factory=dict)  # JSON for the page's scripts

    @classmethod
    def initial(cls, screen: TaskScreen) -> TaskForm:
        project, current, kinds = screen.task.project, screen.current, screen.kinds
        modes = project.free_text_modes
        form = cls()
        pairwise = getattr(current, "pairwise", None) if current else None
        if pairwise is not None:
            form.choice, form.strength = pairwise.choice, pairwise.strength
        given_texts = (
            {(t.response_id, t.mode): t.text for t in current.texts.all()} if current else {}
        )
        if FeedbackKind.PAIRWISE in kinds and Mode.RATIONALE in modes:
            form.rationale = given_texts.get((None, Mode.RATIONALE), "")
        given_ratings = (
            {(r.response_id, r.aspect_id): r.value for r in current.ratings.all()}
            if current
            else {}
        )
        form.ratings = rating_rows(screen, given_ratings)
        if FeedbackKind.RANKING in kinds:
            form.ranking = list(screen.responses)
            ranking = getattr(current, "ranking", None) if current else None
            if ranking is not None:
                rank = {entry.response_id: entry.rank for entry in ranking.entries.all()}
                form.ranking.sort(key=lambda r: rank.get(r.pk, len(rank)))
        if current is not None:
            form.spans = [
                {
                    "response_id": s.response_id,
                    "label_id": s.label_id,
                    "start": s.start,
                    "end": s.end,
                    "severity": s.severity,
                    "comment": s.comment,
                }
                for s in current.spans.all()
            ]
        if screen.task.layout == "single" and FeedbackKind.FREE_TEXT in kinds:
            form.texts = [
                TextRow(
                    response=response,
                    critique=given_texts.get((response.pk, Mode.CRITIQUE), "")
                    if Mode.CRITIQUE in modes
                    else None,
                    rewrite=given_texts.get((response.pk, Mode.REWRITE), response.text)
                    if Mode.REWRITE in modes
                    else None,
                )
                for response in screen.responses
            ]
        form.client = {
            "texts": {str(response.pk): response.text for response in screen.responses},
            "labels": [
                {
                    "id": label.pk,
                    "name": label.name,
                    "color": label.color,
                    "severity": label.default_severity,
                    "description": label.description,
                }
                for label in screen.labels
            ],
            "spans": form.spans,
        }
        return form


def _lf(text: str) -> str:
    """Browsers send textarea line breaks as CRLF; the stored texts use LF."""
    return text.replace("\r\n", "\n")


def rating_rows(
    screen: TaskScreen, given: dict[tuple[int, int], int] | None = None
) -> list[RatingRow]:
    if not screen.aspects:  # spares reading the responses where no rating is asked
        return []
    given = given or {}
    return [
        RatingRow(aspect, response, given.get((response.pk, aspect.pk)))
        for response in screen.responses
        for aspect in screen.aspects
    ]


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


def duration_from_post(data: QueryDict) -> int | None:
    duration = _int(data.get("duration_ms"))
    return None if duration is None or duration < 0 else min(duration, MAX_DURATION_MS)


def submit_key_from_post(data: QueryDict) -> uuid.UUID | None:
    """The key of the card the answer came from; None (no deduplication) when malformed."""
    try:
        return uuid.UUID(data.get("submit_key") or "")
    except ValueError:
        return None


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number")


def spans_from_json(text: str) -> list[SpanInput]:
    """The page's span list; ValueError, TypeError, KeyError, OverflowError or RecursionError
    when it is not a list of span objects with finite numbers."""
    raw = json.loads(text, parse_constant=_no_constant)  # Infinity, NaN
    if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
        raise TypeError("spans must be a list of objects")
    return [
        SpanInput(
            response_id=int(item["response_id"]),
            label_id=int(item["label_id"]),
            start=int(item["start"]),  # OverflowError for 1e999, which parses as infinity
            end=int(item["end"]),
            severity=str(item.get("severity") or "minor"),
            comment=str(item.get("comment") or ""),
        )
        for item in raw
    ]


def feedback_from_post(data: QueryDict, screen: TaskScreen) -> FeedbackInput:
    """Read the task form; FeedbackError names each missing or malformed field."""
    kinds, modes = screen.kinds, screen.task.project.free_text_modes
    # PostgreSQL cannot store NUL: name the field rather than fail on the insert.
    errors: dict[str, list[str]] = {
        name: [f"The answer {NUL_MESSAGE}."]
        for name, values in data.lists()
        if any("\x00" in value for value in values)
    }
    pairwise = None
    texts: list[FreeTextInput] = []

    if FeedbackKind.PAIRWISE in kinds:
        choice = data.get("choice", "")
        if not choice:
            errors["choice"] = ["Choose A, B or tie."]
        else:
            strength = None if choice == "tie" else _int(data.get("strength"))
            pairwise = PairwiseInput(choice=choice, strength=strength)
        rationale = _lf(data.get("rationale", "")).strip()
        if rationale and Mode.RATIONALE in modes:
            texts.append(FreeTextInput(mode=Mode.RATIONALE, text=rationale))

    ratings = []
    for row in rating_rows(screen):
        value = _int(data.get(row.name))
        if value is None:
            errors.setdefault("ratings", []).append(
                f"Rate {row.aspect.name}"
                + (f" of response {row.response.pk}." if len(screen.responses) > 1 else ".")
            )
        else:
            ratings.append(
                RatingInput(response_id=row.response.pk, aspect_id=row.aspect.pk, value=value)
            )

    ranking: list[int] = []
    if FeedbackKind.RANKING in kinds:
        ranking = [value for value in map(_int, data.getlist("ranking")) if value is not None]

    spans: list[SpanInput] = []
    if FeedbackKind.SPAN in kinds and data.get("spans"):
        try:
            spans = spans_from_json(data["spans"])
        except (ValueError, TypeError, KeyError, OverflowError, RecursionError):
            errors["spans"] = ["The marked spans could not be read; reload the task."]

    if screen.task.layout == "single":
        for response in screen.responses:
            critique = _lf(data.get(f"critique-{response.pk}", "")).strip()
            if critique and Mode.CRITIQUE in modes:
                texts.append(
                    FreeTextInput(mode=Mode.CRITIQUE, text=critique, response_id=response.pk)
                )
            rewrite = _lf(data.get(f"rewrite-{response.pk}", ""))
            # An untouched rewrite box holds the response itself: no rewrite was made.
            if rewrite.strip() and rewrite != _lf(response.text) and Mode.REWRITE in modes:
                texts.append(
                    FreeTextInput(mode=Mode.REWRITE, text=rewrite, response_id=response.pk)
                )

    if errors:
        raise FeedbackError("Some answers are missing.", errors=errors)
    feedback = FeedbackInput(
        pairwise=pairwise,
        ratings=ratings,
        ranking=ranking,
        spans=spans,
        texts=texts,
        # The span tool was on the card: submitting with no span marked says "none here".
        spans_checked=FeedbackKind.SPAN in kinds,
    )
    if not feedback.kinds:
        raise FeedbackError("Nothing to submit yet: give an answer, or skip the task.")
    return feedback
