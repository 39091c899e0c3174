"""Load test of the annotator workspace: granian + PostgreSQL, 16 simulated annotators.

Run from the repository root (PostgreSQL on 127.0.0.1:5432, user postgres):

    python benchmarks/annotate_load.py            # seed, serve, drive for 60 s, check, drop

Options: --duration S (measured, after --warmup S, default 10), --annotators N, --think-ms MS
(mean pause between judgments; 0, the default, has every annotator ask again at once and so
measures the saturated server), --workers W --threads T (the web server),
--keep (leave the database for a rerun), --reuse (use a kept database, seeding nothing).

Beside Label Studio 1.23.2 (installed into --ls-venv, default /work/lsvenv, when missing):

    python benchmarks/annotate_load.py --vs-label-studio

runs both apps at once on a private PostgreSQL cluster (cpu_meter.py), each given the same
10,000 generated pairwise items (--tasks; a ~150-character prompt, two ~300-character
answers) through its import API, into a new project for each phase, 3 annotators a task
(--overlap), and drives each in turn, alternating, with the same client (lean_http.py): 8
annotators looping next task + submit with no pause (--annotators), then one annotator
alone, each first with a new connection per request (a browser behind a proxy that closes
them) and then with keep-alive; --duration S measured
after --warmup S per phase (defaults 20 and 3 in this mode). This app: what the htmx page
sends (log in once; POST the page for the first card, then POST each answer, whose reply is
the next card: one request a judgment). Label Studio: what its labeling stream sends, `GET
/api/projects/{id}/next/` and `POST /api/tasks/{id}/annotations/` with a token (two requests
a judgment), served by uwsgi as its image runs it. Prints judgments/s, loop p50/p95 (one
judgment: next task and answer), server + PostgreSQL CPU per judgment (process trees,
psutil) and the ratios.

What it does:
1. Creates the database `prefhub_bench_annotate`, migrates it, and seeds one project with
   100,000 tasks (40,000 single-response tasks for ratings, spans and critiques, 60,000 pairs)
   and past work of 30 annotators at 3 annotators per task: 260,000 submissions holding
   1,000,000 feedback records (ratings, spans, critiques, pairwise choices, rationales), all
   through PostgreSQL COPY. About 13,000 pair tasks still need annotators.
2. Starts the web server (config/serve.py, granian) on 127.0.0.1:8106 with DEBUG off and
   persistent connections.
3. Each simulated annotator logs in, POSTs the page for its first card (the claim the htmx
   page makes), then submits a pairwise judgment on each card as fast as it can (the htmx
   POST; its reply is the next card, as the page swaps it in).
4. Prints judgments/s and p50/p95/p99 latency of an answer (with its next card) and of the
   first card (after the warm-up, or after a refused answer), then counts in the
   database: judgments the server accepted but did not store (lost), answers stored twice
   for one annotator and task (duplicates), tasks with more than 3 annotators, tasks
   whose slot counter disagrees with their leases, and annotators whose progress count
   (the card's "You: n", kept by triggers) disagrees with theirs.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field

import psycopg

sys.path.insert(0, os.path.dirname(__file__))
from annotators import (
    OVERLAP,
    PG,
    annotator_client,
    answer_for,
    create_database,
    drop_database,
    log,
    seed,
    server_processes,
    setup_django,
    start_web,
)
from cpu_meter import cpu_seconds, cpu_used, rss_mb


@dataclass
class Annotator:
    username: str
    first_ms: list[float] = field(default_factory=list)  # the page's first card (a claim)
    answer_ms: list[float] = field(default_factory=list)  # an answer, replied with the next card
    accepted: list[int] = field(default_factory=list)  # task ids whose answer was taken
    measured: int = 0  # judgments accepted after the warm-up
    errors: list[str] = field(default_factory=list)


def drive(
    annotator: Annotator,
    base: str,
    project_id: int,
    duration: float,
    warmup: float,
    think_ms: float,
    start: threading.Barrier,
) -> None:
    """As the page: POST it for the first card (takes a task), then answer each card; the
    answer's reply is the next card. After a refused answer, POST the page again."""
    rng = random.Random(annotator.username)
    client = annotator_client(base, annotator.username)
    try:
        start.wait()
        # Until warm, workers compile templates and fill caches: not measured.
        warm = time.perf_counter() + warmup
        deadline = warm + duration
        card = None
        while time.perf_counter() < deadline:
            if card is None:
                began = time.perf_counter()
                card = client.post(f"/projects/{project_id}/")
                if began >= warm:
                    annotator.first_ms.append((time.perf_counter() - began) * 1000)
            answer = answer_for(card.text, rng) if card.status_code == 200 else None
            if answer is None:
                annotator.errors.append(f"card: {card.status_code}")
                break
            task_id, data = answer
            began = time.perf_counter()
            measuring = began >= warm
            reply = client.post(f"/projects/{project_id}/tasks/{task_id}/submit/", data)
            if measuring:
                annotator.answer_ms.append((time.perf_counter() - began) * 1000)
            if reply.status_code == 200:
                annotator.accepted.append(task_id)
                annotator.measured += measuring
                card = reply
            else:
                annotator.errors.append(f"submit {task_id}: {reply.status_code}")
                card = None
            if think_ms:
                time.sleep(rng.uniform(0.5, 1.5) * think_ms / 1000)
    finally:
        client.close()


def percentile(values: list[float], q: float) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else 0.0
    )


def check(
    db_url: str, project_id: int, usernames: list[str], accepted: int, before: dict[str, int]
) -> dict[str, int]:
    """Counts after the run; the first two are net of what `before` (a run on a kept database)
    already held."""
    with psycopg.connect(db_url) as conn:

        def one(sql: str) -> int:
            return conn.execute(sql, {"project": project_id, "users": usernames}).fetchone()[0]

        live = "SELECT id FROM auth_user WHERE username = ANY(%(users)s)"
        return {
            "accepted by the server": accepted,
            "stored (current answers of the simulated annotators)": one(
                "SELECT count(*) FROM feedback_submission WHERE is_current"
                f" AND annotator_id IN ({live})"
            )
            - before.get("stored (current answers of the simulated annotators)", 0),
            "assignments submitted by them": one(
                "SELECT count(*) FROM feedback_assignment WHERE status = 'submitted'"
                f" AND annotator_id IN ({live})"
            )
            - before.get("assignments submitted by them", 0),
            "duplicates (annotator answered one task twice)": one(
                "SELECT count(*) FROM (SELECT 1 FROM feedback_submission WHERE is_current"
                " AND annotator_id IS NOT NULL GROUP BY task_id, annotator_id"
                " HAVING count(*) > 1) d"
            ),
            f"tasks with more than {OVERLAP} annotators": one(
                "SELECT count(*) FROM (SELECT 1 FROM feedback_submission WHERE is_current"
                f" AND annotator_id IS NOT NULL GROUP BY task_id HAVING count(*) > {OVERLAP}) o"
            ),
            "annotators whose progress count disagrees with their leases": one(
                "SELECT count(*) FROM (SELECT annotator_id, count(*) AS n"
                " FROM feedback_assignment WHERE project_id = %(project)s"
                " AND status = 'submitted' GROUP BY annotator_id) a"
                " FULL JOIN (SELECT annotator_id, submitted FROM feedback_annotatorprogress"
                " WHERE project_id = %(project)s AND submitted > 0) p USING (annotator_id)"
                " WHERE a.n IS DISTINCT FROM p.submitted"
            ),
            "tasks whose slot counter disagrees with their leases": one(
                "SELECT count(*) FROM feedback_task t WHERE t.project_id = %(project)s AND"
                " t.slots_taken <> (SELECT count(*) FROM feedback_assignment a"
                " WHERE a.task_id = t.id AND a.status IN ('active', 'submitted'))"
            ),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", default="prefhub_bench_annotate")
    parser.add_argument("--tasks", type=int, help="default 100,000; 10,000 beside Label Studio")
    parser.add_argument("--annotators", type=int, help="default 16; 8 beside Label Studio")
    parser.add_argument("--duration", type=float, help="measured seconds (60; 20 a phase vs LS)")
    parser.add_argument("--warmup", type=float, help="seconds run before measuring (10; 3)")
    parser.add_argument("--port", type=int, default=8106)
    parser.add_argument(
        "--think-ms",
        type=float,
        default=0.0,
        help="mean pause after each judgment (0: ask again at once, the server saturated)",
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reuse", action="store_true", help="use a kept database, seed nothing")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument(
        "--vs-label-studio", action="store_true", help="beside Label Studio (see the top)"
    )
    parser.add_argument("--overlap", type=int, default=OVERLAP, help="with --vs-label-studio")
    parser.add_argument("--ls-venv", default="/work/lsvenv", help="with --vs-label-studio")
    parser.add_argument("--pg-port", type=int, default=5442, help="with --vs-label-studio")
    args = parser.parse_args()
    vs = args.vs_label_studio
    args.tasks = args.tasks or (10_000 if vs else 100_000)
    args.annotators = args.annotators or (8 if vs else 16)
    args.duration = args.duration if args.duration is not None else (20.0 if vs else 60.0)
    args.warmup = args.warmup if args.warmup is not None else (3.0 if vs else 10.0)
    if vs:
        from annotate_vs_label_studio import compare

        compare(args)
        return
    db_url = f"{PG}/{args.database}"

    if not args.reuse:
        create_database(args.database)
    setup_django(db_url)
    if args.reuse:
        from feedback.models import Project

        project_id = Project.objects.get(name="Load test").pk
    else:
        project_id = seed(db_url, args.tasks, args.annotators)

    usernames = [f"bench{i}" for i in range(args.annotators)]
    load_before = os.getloadavg()[0]
    before = check(db_url, project_id, usernames, 0, {})
    server = start_web(db_url, args.port, args.workers, args.threads)
    try:
        annotators = [Annotator(name) for name in usernames]
        start = threading.Barrier(args.annotators + 1)
        base = f"http://127.0.0.1:{args.port}"
        threads = [
            threading.Thread(
                target=drive,
                args=(a, base, project_id, args.duration, args.warmup, args.think_ms, start),
            )
            for a in annotators
        ]
        for thread in threads:
            thread.start()
        # Everyone logs in first; the clock starts when all are ready.
        start.wait()
        # CPU the server spends in the measured window: web processes and their PostgreSQL backends.
        time.sleep(args.warmup)
        processes = server_processes(server, db_url)
        cpu_before = {name: cpu_seconds(pids) for name, pids in processes.items()}
        client_before = time.process_time()
        time.sleep(args.duration)
        client_cpu = time.process_time() - client_before
        processes = server_processes(server, db_url)
        cpu = {
            name: cpu_used(cpu_before[name], cpu_seconds(pids)) for name, pids in processes.items()
        }
        worker_rss = [rss_mb(pid) for pid in processes["web"][1:]]
        for thread in threads:
            thread.join()
        elapsed = args.duration
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)

    first_ms = [ms for a in annotators for ms in a.first_ms]
    answer_ms = [ms for a in annotators for ms in a.answer_ms]
    accepted = sum(len(a.accepted) for a in annotators)
    measured = sum(a.measured for a in annotators)
    errors = [e for a in annotators for e in a.errors]
    log(
        f"\n{args.annotators} annotators, {elapsed:.0f} s after {args.warmup:.0f} s warm-up, "
        f"granian {args.workers} workers x "
        f"{args.threads} threads, {os.cpu_count()} CPUs, think time {args.think_ms:.0f} ms, "
        f"load average before {load_before:.1f}"
    )
    log(f"judgments: {measured:,} measured, {measured / elapsed:.1f} judgments/s")
    for name, values in (("answer + next card", answer_ms), ("first card", first_ms)):
        log(
            f"{name:18s} n={len(values):6,}  p50={percentile(values, 50):6.1f} ms  "
            f"p95={percentile(values, 95):6.1f} ms  p99={percentile(values, 99):6.1f} ms"
        )
    per = {name: 1000 * seconds / max(measured, 1) for name, seconds in cpu.items()}
    log(
        f"server CPU per judgment: {sum(per.values()):.1f} ms"
        f" ({', '.join(f'{name} {ms:.1f}' for name, ms in per.items())});"
        f" web workers' memory {min(worker_rss):.0f}-{max(worker_rss):.0f} MiB"
    )
    log(
        f"client CPU per judgment: {1000 * client_cpu / max(measured, 1):.1f} ms"
        " (the simulated annotators, this process, on the same cores)"
    )
    if errors:
        log(f"errors ({len(errors)}): {errors[:10]}")
    for name, value in check(db_url, project_id, usernames, accepted, before).items():
        log(f"  {name}: {value:,}")
    if not args.keep:
        from django.db import connections

        connections.close_all()
        drop_database(args.database)


if __name__ == "__main__":
    main()
