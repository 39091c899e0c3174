"""Export throughput and peak memory at two sizes: memory must not grow with the rows.

Seeds N pairwise feedback records per size into its own PostgreSQL database (COPY, once;
later runs reuse them), then exports TRL preference pairs as JSONL and as Parquet through
the code the export endpoint streams (or, with --http, through the endpoint itself), each
export in a fresh process so that its peak resident memory is its own. Prints rows/s, the
CPU seconds of the process and of its PostgreSQL backend (on a busy machine the CPU time is
the steadier figure) and peak RSS; exits 1 if a target is missed.

    python benchmarks/export_memory.py                    # 200,000 and 1,000,000 records
    python benchmarks/export_memory.py --sizes 50000 --http
    EXPORT_BENCH_DATABASE=prefhub_other python benchmarks/export_memory.py

Targets: >= 20,000 rows/s in JSONL and in Parquet, < 300 MB peak RSS at every size, peak
memory flat across sizes. The Parquet/JSONL ratio is printed, not checked: both formats
stream the same Python rows, and Parquet's Arrow conversion and encoder cost more than
orjson's encoding of them, so Parquet is the slower of the two here (and 15x smaller).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from annotators import PG, ensure_database, setup_django
from cpu_meter import cpu_seconds

DATABASE = os.environ.get("EXPORT_BENCH_DATABASE", "prefhub_bench_export")
DATABASE_URL = f"{PG}/{DATABASE}"
ANNOTATORS = 5  # each pair task is judged by five annotators
TARGET_ROWS_S = 20_000
TARGET_PEAK_MB = 300


def seed(records: int) -> int:
    """A project of `records` pairwise records (ties about 10%); returns its id.

    Every third prompt is a multi-turn chat opening with a system turn, the others plain
    text, so the export runs in the conversational form a mixed project gets.
    """
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from feedback.models import Project, ProjectMember

    name = f"bench-mixed-{records}"
    existing = Project.objects.filter(name=name).first()
    if existing is not None:
        return existing.pk
    started = time.perf_counter()
    rng = random.Random(records)
    with transaction.atomic():
        project = Project.objects.create(
            name=name, collects_pairwise=True, annotators_per_task=ANNOTATORS
        )
        users = []
        for i in range(ANNOTATORS):
            user, _ = get_user_model().objects.get_or_create(username=f"bench-annotator-{i}")
            ProjectMember.objects.create(project=project, user=user, role="annotator")
            users.append(user.pk)
        prompts = records // ANNOTATORS
        with connection.cursor() as cursor:
            ids = {
                table: _next_id(cursor, table)
                for table in (
                    "prompt",
                    "response",
                    "task",
                    "taskresponse",
                    "submission",
                    "pairwisefeedback",
                )
            }
            words = [
                "the",
                "a",
                "model",
                "answer",
                "question",
                "reason",
                "because",
                "therefore",
                "clearly",
                "step",
            ]

            def sentence(n: int) -> str:
                return " ".join(rng.choice(words) for _ in range(n)).capitalize() + "."

            with cursor.copy(
                "COPY feedback_prompt (id, project_id, external_id, text, messages, metadata,"
                " created_at) FROM STDIN"
            ) as copy:
                for i in range(prompts):
                    text, messages = sentence(25), None
                    if i % 3 == 0:
                        turns = [
                            {"role": "system", "content": "Answer in <b>one</b> line, İ ok."},
                            {"role": "user", "content": sentence(8)},
                            {"role": "assistant", "content": sentence(12)},
                            {"role": "user", "content": text},
                        ]
                        text, messages = "", json.dumps(turns)
                    copy.write_row(
                        (ids["prompt"] + i, project.pk, f"p{i}", text, messages, "{}", "now")
                    )
            with cursor.copy(
                "COPY feedback_response (id, prompt_id, text, model_name, generation_params,"
                " created_at) FROM STDIN"
            ) as copy:
                for i in range(prompts):
                    for j in range(2):
                        copy.write_row(
                            (
                                ids["response"] + 2 * i + j,
                                ids["prompt"] + i,
                                sentence(60),
                                f"model-{j}",
                                "{}",
                                "now",
                            )
                        )
            with cursor.copy(
                "COPY feedback_task (id, project_id, prompt_id, layout, priority, slots_taken,"
                " is_full, created_at) FROM STDIN"
            ) as copy:
                for i in range(prompts):
                    task = (ids["task"] + i, project.pk, ids["prompt"] + i, "pair", 0)
                    copy.write_row((*task, ANNOTATORS, True, "now"))
            with cursor.copy(
                "COPY feedback_taskresponse (id, task_id, response_id, position) FROM STDIN"
            ) as copy:
                for i in range(prompts):
                    for j in range(2):
                        copy.write_row(
                            (
                                ids["taskresponse"] + 2 * i + j,
                                ids["task"] + i,
                                ids["response"] + 2 * i + j,
                                j,
                            )
                        )
            with cursor.copy(
                "COPY feedback_submission (id, task_id, annotator_id, created_at, duration_ms,"
                " is_current, spans_checked) FROM STDIN"
            ) as copy:
                for i in range(prompts):
                    for k, user in enumerate(users):
                        sid = ids["submission"] + ANNOTATORS * i + k
                        duration = rng.randint(2000, 90000)
                        copy.write_row((sid, ids["task"] + i, user, "now", duration, True, False))
            with cursor.copy(
                "COPY feedback_pairwisefeedback (id, submission_id, choice, strength) FROM STDIN"
            ) as copy:
                for n in range(prompts * ANNOTATORS):
                    roll = rng.random()
                    choice = "tie" if roll < 0.1 else "A" if roll < 0.55 else "B"
                    strength = None if choice == "tie" else rng.randint(1, 3)
                    copy.write_row(
                        (ids["pairwisefeedback"] + n, ids["submission"] + n, choice, strength)
                    )
            for table in ids:
                cursor.execute(
                    f"SELECT setval(pg_get_serial_sequence('feedback_{table}', 'id'),"
                    f" (SELECT max(id) FROM feedback_{table}))"
                )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    print(f"seeded {records:,} records in {time.perf_counter() - started:.1f}s", flush=True)
    return project.pk


def _next_id(cursor, table: str) -> int:
    cursor.execute(f"SELECT coalesce(max(id), 0) + 1 FROM feedback_{table}")
    return cursor.fetchone()[0]


def run_export(project_id: int, fmt: str, http: bool) -> dict:
    """In this (fresh) process: stream the export, keep nothing, measure.

    With `http`, through the export endpoint (Django's test client: the view, DRF and the
    streaming response, without a socket); else the rows and writer the view streams.
    """
    from django.db import connection
    from django.urls import reverse

    from feedback.exports import ExportOptions, Shape, export_rows
    from feedback.io import export_jsonl, export_parquet
    from feedback.models import Project

    writer = {"jsonl": export_jsonl, "parquet": export_parquet}[fmt]
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    project = Project.objects.get(pk=project_id)
    counted = 0

    def counting(rows):
        nonlocal counted
        for row in rows:
            counted += 1
            yield row

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    client = _viewer_client(project) if http else None
    db_started = cpu_seconds([backend])[backend]
    cpu_started = time.process_time()
    started = time.perf_counter()
    if client is not None:
        url = reverse("api:project-export", args=[project.pk])
        response = client.get(url, {"shape": "pairs", "margin": "true", "format": fmt}, secure=True)
        assert response.status_code == 200, response.status_code
        blocks = response.streaming_content
    else:
        rows = export_rows(project=project, options=ExportOptions(shape=Shape.PAIRS, margin=True))
        blocks = writer.write_rows(counting(rows))
    size = 0
    newlines = 0
    for block in blocks:
        size += len(block)
        newlines += block.count(b"\n") if http and fmt == "jsonl" else 0
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    db_cpu = cpu_seconds([backend])[backend] - db_started
    if http:
        # A Parquet file says how many rows it holds in its footer; JSONL counts its lines.
        counted = newlines if fmt == "jsonl" else _parquet_rows(project)
    return {
        "rows": counted,
        "bytes": size,
        "seconds": seconds,
        "rows_per_s": counted / seconds,
        "cpu_s": cpu,
        "db_cpu_s": db_cpu,
        "baseline_mb": baseline,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _viewer_client(project):
    """A test client signed in as a viewer of the project, as a reader of its exports."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    from feedback.models import ProjectMember

    user, _ = get_user_model().objects.get_or_create(username="bench-viewer")
    ProjectMember.objects.get_or_create(project=project, user=user, defaults={"role": "viewer"})
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    return client


def _parquet_rows(project) -> int:
    """Rows of the same export, counted again without the endpoint (not timed)."""
    from feedback.exports import ExportOptions, Shape, export_rows

    options = ExportOptions(shape=Shape.PAIRS, margin=True)
    return sum(1 for _ in export_rows(project=project, options=options))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200_000, 1_000_000])
    parser.add_argument(
        "--http", action="store_true", help="through the export endpoint (in process, no socket)"
    )
    parser.add_argument("--run", nargs=2, metavar=("PROJECT_ID", "FORMAT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        setup_django(DATABASE_URL)
        print(json.dumps(run_export(int(args.run[0]), args.run[1], args.http)))
        return 0

    ensure_database(DATABASE)
    setup_django(DATABASE_URL)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    projects = {size: seed(size) for size in args.sizes}
    failures = []
    print(
        f"{'records':>10} {'format':>8} {'rows':>10} {'MB out':>8} {'s':>7} {'rows/s':>9} "
        f"{'cpu s':>6} {'db cpu s':>8} {'base MB':>8} {'peak MB':>8}"
    )
    results = {}
    for size, project_id in projects.items():
        for fmt in ("jsonl", "parquet"):
            out = subprocess.run(
                [sys.executable, __file__, "--run", str(project_id), fmt]
                + (["--http"] if args.http else []),
                check=True,
                capture_output=True,
                text=True,
            )
            r = json.loads(out.stdout.strip().splitlines()[-1])
            results[(size, fmt)] = r
            print(
                f"{size:>10,} {fmt:>8} {r['rows']:>10,} {r['bytes'] / 1e6:>8.0f} "
                f"{r['seconds']:>7.1f} {r['rows_per_s']:>9,.0f} {r['cpu_s']:>6.2f} "
                f"{r['db_cpu_s']:>8.2f} {r['baseline_mb']:>8.0f} "
                f"{r['peak_mb']:>8.0f}",
                flush=True,
            )
            if r["peak_mb"] >= TARGET_PEAK_MB:
                failures.append(f"{fmt} at {size:,}: peak {r['peak_mb']:.0f} MB")
            if r["rows_per_s"] < TARGET_ROWS_S:
                failures.append(f"{fmt} at {size:,}: {r['rows_per_s']:,.0f} rows/s")
    for size in args.sizes:
        jsonl, parquet = results[(size, "jsonl")], results[(size, "parquet")]
        speed = parquet["rows_per_s"] / jsonl["rows_per_s"]
        size_ratio = parquet["bytes"] / jsonl["bytes"]
        print(f"{size:,} records: parquet/jsonl rows/s {speed:.2f}, bytes {size_ratio:.3f}")
    if len(args.sizes) > 1:
        small, large = min(args.sizes), max(args.sizes)
        for fmt in ("jsonl", "parquet"):
            growth = results[(large, fmt)]["peak_mb"] - results[(small, fmt)]["peak_mb"]
            print(f"{fmt}: peak grows {growth:+.0f} MB from {small:,} to {large:,} records")
            if growth > 0.1 * results[(small, fmt)]["peak_mb"]:
                failures.append(f"{fmt} peak memory grows with rows ({growth:+.0f} MB)")
    for failure in failures:
        print("MISSED:", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
