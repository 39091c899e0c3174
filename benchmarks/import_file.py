"""Our import's speed: 10,000 pairwise rows in one API request, and a large file's memory.

`request`: posts N rows (prompt ~150 characters, two responses ~300 characters, as the
Label Studio comparison in benchmarks/import_speed.py uses) to the prompt import endpoint
in ONE request, in process through Django's test client (middleware, parser, view; no
socket), into a project collecting pairwise feedback only. Prints tasks/s (wall and CPU).

`file`: writes a JSONL file of N such rows (every tenth a chat opening with a system turn,
some Unicode) and imports it with `manage.py import_prompts` in a fresh process, whose
peak resident memory is then its own. Prints tasks/s and peak RSS.

    python benchmarks/import_file.py request                  # 10,000 rows, 3 runs
    python benchmarks/import_file.py request --profile        # cProfile's top entries
    python benchmarks/import_file.py file --rows 1000000

Targets: >= 13,000 tasks/s for the request (5x Label Studio 1.23.2's 2,643 measured
here), < 500 MB peak RSS for the 1,000,000-row file. Exits 1 if one is missed.
Runs in its own PostgreSQL database (prefhub_bench_import), a new project each run.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from annotators import PG, ensure_database, setup_django
from cpu_meter import cpu_seconds

DATABASE = "prefhub_bench_import"
DATABASE_URL = f"{PG}/{DATABASE}"
TARGET_TASKS_S = 13_000
TARGET_PEAK_MB = 500
WORDS = ["the", "model", "answer", "question", "because", "therefore", "naïve", "Grüße", "東京"]


def text(rng: random.Random, characters: int) -> str:
    words: list[str] = []
    length = 0
    while length < characters:
        words.append(rng.choice(WORDS))
        length += len(words[-1]) + 1
    return " ".join(words).capitalize() + "."


def row(rng: random.Random, i: int, chats: bool) -> dict:
    prompt: str | list[dict] = text(rng, 150)
    if chats and i % 10 == 0:
        prompt = [
            {"role": "system", "content": "Answer in <b>one</b> line."},
            {"role": "user", "content": text(rng, 40)},
            {"role": "assistant", "content": text(rng, 60)},
            {"role": "user", "content": prompt},
        ]
    responses = [{"text": text(rng, 300), "model": f"model-{j}"} for j in range(2)]
    return {"id": f"r{i}", "prompt": prompt, "responses": responses}


def fresh_project(name: str):
    from django.contrib.auth import get_user_model

    from feedback.models import Project, ProjectMember

    # A new project each run: deleting a million-row one through the ORM takes longer than
    # the import. Drop the database to reclaim its space.
    project = Project.objects.create(name=f"{name} {time.time():.0f}", collects_pairwise=True)
    user, _ = get_user_model().objects.get_or_create(username="bench-import-admin")
    ProjectMember.objects.create(project=project, user=user, role="admin")
    return project, user


def run_request(rows: int, runs: int, profile: bool) -> list[str]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse
    from rest_framework.test import APIClient

    from feedback.models import Task

    rng = random.Random(rows)
    body = json.dumps({"rows": [row(rng, i, chats=False) for i in range(rows)]}).encode()
    print(f"request: {rows:,} rows, {len(body) / 1e6:.1f} MB body, {runs} run(s)")
    best = 0.0
    for run in range(runs):
        project, user = fresh_project(f"bench-import-{run}")
        client = APIClient(SERVER_NAME="localhost")  # in ALLOWED_HOSTS
        client.force_authenticate(user)
        url = reverse("api:prompt-list", args=[project.pk])
        profiler = cProfile.Profile() if profile else None
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            backend = cursor.fetchone()[0]
        db_cpu = cpu_seconds([backend])[backend]
        cpu, wall = time.process_time(), time.perf_counter()
        with CaptureQueriesContext(connection) as queries:
            if profiler:
                profiler.enable()
            response = client.post(url, body, content_type="application/json", secure=True)
            if profiler:
                profiler.disable()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        db_cpu = cpu_seconds([backend])[backend] - db_cpu
        assert response.status_code == 201, response.content[:500]
        tasks = Task.objects.filter(project=project).count()
        assert tasks == rows, tasks
        best = max(best, tasks / wall)
        print(
            f"  run {run + 1}: {wall:.2f} s wall, {cpu:.2f} s CPU (this process), "
            f"{db_cpu:.2f} s CPU (its PostgreSQL backend), "
            f"{len(queries)} queries, {tasks / wall:,.0f} tasks/s"
        )
        if profiler:
            slowest = sorted(queries.captured_queries, key=lambda q: -float(q["time"]))[:5]
            for query in slowest:
                print(f"    {float(query['time']):6.2f} s  {query['sql'][:150]}")
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
            pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
    print(f"best: {best:,.0f} tasks/s (target {TARGET_TASKS_S:,})")
    return [f"request: {best:,.0f} tasks/s"] if best < TARGET_TASKS_S else []


def run_file(rows: int) -> list[str]:
    from feedback.models import Task

    project, _ = fresh_project("bench-import-file")
    rng = random.Random(rows)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "rows.jsonl"
        with path.open("w", encoding="utf-8") as out:
            for i in range(rows):
                out.write(json.dumps(row(rng, i, chats=True), ensure_ascii=False) + "\n")
        size = path.stat().st_size
        print(f"file: {rows:,} rows, {size / 1e6:.0f} MB JSONL")
        started = time.perf_counter()
        out = subprocess.run(
            [sys.executable, __file__, "--import-file", str(project.pk), str(path)],
            check=True,
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - started
    measured = json.loads(out.stdout.strip().splitlines()[-1])
    tasks = Task.objects.filter(project=project).count()
    assert tasks == rows, tasks
    print(
        f"  {wall:.1f} s wall, {measured['cpu_s']:.1f} s CPU (importing process), "
        f"{tasks / wall:,.0f} tasks/s, peak RSS {measured['peak_mb']:.0f} MB"
    )
    failures = []
    if measured["peak_mb"] >= TARGET_PEAK_MB:
        failures.append(f"file: peak RSS {measured['peak_mb']:.0f} MB")
    return failures


def import_file(project_id: int, path: str) -> None:
    """In this fresh process: the management command, then its CPU time and peak RSS."""
    from django.core.management import call_command

    with open(os.devnull, "w") as quiet:
        call_command("import_prompts", str(project_id), path, stdout=quiet)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"cpu_s": usage.ru_utime + usage.ru_stime, "peak_mb": usage.ru_maxrss / 1024}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", nargs="?", choices=["request", "file"], default="request")
    parser.add_argument("--rows", type=int, help="10,000 for a request, 1,000,000 for a file")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--import-file", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.import_file:
        setup_django(DATABASE_URL)
        import_file(int(args.import_file[0]), args.import_file[1])
        return 0
    ensure_database(DATABASE)
    setup_django(DATABASE_URL)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    print(f"load: {os.getloadavg()[0]:.2f}")
    if args.mode == "request":
        failures = run_request(args.rows or 10_000, args.runs, args.profile)
    else:
        failures = run_file(args.rows or 1_000_000)
    for failure in failures:
        print("MISSED:", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
