"""A project's feedback as reward-model training rows, read through the export.

Training and evaluation call `export_rows` with the options stored on the job, in process,
so what a model learns from is what `GET /api/projects/{id}/export/` with those options
downloads. This module maps the export's rows to `worker.ml.rewards` items and counts what
it read (the data snapshot).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from feedback.exports import ExportOptions, Form, PairSource, Shape, Ties, export_rows
from feedback.jobs import RewardData
from feedback.models import Project
from worker.ml.rewards import Comparison, Ranking

# Span severities as penalty weights (0..1) on the characters they mark.
SEVERITY_WEIGHT = {"minor": 1 / 3, "major": 2 / 3, "critical": 1.0}


@dataclass
class RewardRows:
    """What a job trains or evaluates on, and where it came from.

    `pair_ids[i]` holds the (chosen, rejected) response ids of `comparisons[i]`;
    `export_options` the export query per part (pairs, rankings, ratings, spans);
    `snapshot` the newest submission read and the number of items per part and source.
    """

    comparisons: list[Comparison] = field(default_factory=list)
    rankings: list[Ranking] = field(default_factory=list)
    pair_ids: list[tuple[int, int]] = field(default_factory=list)
    export_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    snapshot: dict[str, Any] = field(default_factory=dict)


def export_queries(data: RewardData, *, listwise: bool) -> dict[str, ExportOptions]:
    """The export options for each part `data` asks for. Rankings are read whole when
    `listwise` (training), else as the pairs they imply (evaluation)."""
    pairs = {
        "form": Form.CHAT,
        "margin": data.margin,
        "sources": data.sources,
        "aggregate": data.aggregate,
        "min_agreement": data.min_agreement,
        "ties": Ties.DROP,
    }
    queries: dict[str, ExportOptions] = {}
    if data.pairs:
        queries["pairs"] = ExportOptions(shape=Shape.PAIRS, pairs_from=PairSource.PAIRWISE, **pairs)
    if data.rankings:
        queries["rankings"] = (
            ExportOptions(shape=Shape.RANKINGS, form=Form.CHAT, sources=data.sources)
            if listwise
            else ExportOptions(shape=Shape.PAIRS, pairs_from=PairSource.RANKINGS, **pairs)
        )
    if data.ratings:
        queries["ratings"] = ExportOptions(
            shape=Shape.PAIRS, pairs_from=PairSource.RATINGS, aspect=data.aspect, **pairs
        )
    if data.spans:
        queries["spans"] = ExportOptions(shape=Shape.SPANS, form=Form.CHAT, sources=data.sources)
    return queries


def reward_rows(project: Project, data: RewardData, *, listwise: bool) -> RewardRows:
    """Read the export parts `data` asks for; raises FeedbackError for options the project
    cannot satisfy (an unknown aspect, say), as the download would."""
    queries = export_queries(data, listwise=listwise)
    out = RewardRows(export_options={part: _query(options) for part, options in queries.items()})
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    newest = 0
    penalties: dict[int, set[tuple[int, int, float]]] = defaultdict(set)
    pair_rows: list[dict[str, Any]] = []
    for part, options in queries.items():
        for row in export_rows(project=project, options=options):
            submissions = row.get("submission_ids") or [row["submission_id"]]
            newest = max(newest, *submissions)
            if options.shape == Shape.SPANS:
                counts[part][_source(row)] += 1
                for span in row["spans"]:
                    weight = SEVERITY_WEIGHT[span["severity"]]
                    penalties[row["response_id"]].add((span["start"], span["end"], weight))
            elif options.shape == Shape.RANKINGS:
                counts[part][_source(row)] += 1
                out.rankings.append(_ranking(row))
            else:
                counts[part][_source(row)] += 1
                pair_rows.append(row)
    agreement = _vote_agreement(pair_rows) if data.aggregate == "none" else {}
    for index, row in enumerate(pair_rows):
        ids = (row["chosen_response_id"], row["rejected_response_id"])
        out.pair_ids.append(ids)
        out.comparisons.append(
            Comparison(
                prompt=row["prompt"],
                chosen=row["chosen"][0]["content"],
                rejected=row["rejected"][0]["content"],
                group=str(row["prompt_id"]),
                margin=float(row.get("margin", 0.0)),
                source=_source(row),
                agreement=agreement.get(index, row["agreement"] if row["votes"] > 1 else None),
                chosen_penalties=tuple(sorted(penalties.get(ids[0], ()))),
                rejected_penalties=tuple(sorted(penalties.get(ids[1], ()))),
            )
        )
    out.snapshot = {
        "max_submission_id": newest,
        "counts": {part: dict(sorted(by_source.items())) for part, by_source in counts.items()},
        "comparisons": len(out.comparisons),
        "rankings": len(out.rankings),
    }
    return out


def _query(options: ExportOptions) -> dict[str, Any]:
    """The options as the export endpoint's query parameters."""
    return {key: str(value) for key, value in asdict(options).items() if value is not None}


def _source(row: dict[str, Any]) -> str:
    """`judge:<name>` for a judge's row, `human` when any person's vote made it."""
    if "sources" in row:  # pairs: "annotator:<name>" or "judge:<name>" per vote
        judges = sorted(source for source in row["sources"] if source.startswith("judge:"))
        return judges[0] if len(judges) == len(row["sources"]) else "human"
    return f"judge:{row['judge']}" if row["judge"] else "human"


def _ranking(row: dict[str, Any]) -> Ranking:
    return Ranking(
        prompt=row["prompt"],
        responses=tuple(row["completions"]),
        group=str(row["prompt_id"]),
        source=_source(row),
    )


def _vote_agreement(rows: Iterable[dict[str, Any]]) -> dict[int, float | None]:
    """Per row of single votes: the share of the votes on the same two responses that
    chose as this one did; None when it is the only vote."""
    by_pair: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
    for index, row in enumerate(rows):
        chosen, rejected = row["chosen_response_id"], row["rejected_response_id"]
        by_pair[(min(chosen, rejected), max(chosen, rejected))].append((index, chosen))
    agreement: dict[int, float | None] = {}
    for votes in by_pair.values():
        winners = Counter(chosen for _, chosen in votes)
        for index, chosen in votes:
            agreement[index] = winners[chosen] / len(votes) if len(votes) > 1 else None
    return agreement
