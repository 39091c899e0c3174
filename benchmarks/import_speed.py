"""Import speed beside Label Studio: 10,000 pairwise tasks in one API request to each app.

    python benchmarks/import_speed.py            # installs Label Studio first if missing
    python benchmarks/import_speed.py --tasks 10000 --repeat 3 --ls-venv /work/lsvenv

Both apps run at once on one private PostgreSQL cluster (see cpu_meter.py), each in its
own database, and get the same generated items (a ~150-character prompt, two ~300-character
answers). This app: `POST /api/projects/{id}/prompts/` with `{"rows": [{"id", "prompt",
"responses": [a, b]}, ...]}` (a prompt, two responses and one pair task per row; 7.6 MB
for 10,000 rows, within PREFHUB_API_IMPORT_MAX_BYTES's 64 MiB default), granian 2 workers x
2 threads. Label Studio 1.23.2: `POST /api/projects/{id}/import` with the list of tasks
(`{"data": {"prompt", "answer_a", "answer_b"}}`), uwsgi as its image runs it. Each
repeat imports into a fresh project of each app, alternating, so both see the same load.

Prints per app and repeat: seconds, tasks/s, server + PostgreSQL CPU per 1,000 tasks, the
server's memory growth; then the ratio of the best tasks/s. Option --no-peer: this app only.

Then the database alone: the same prompts, responses, tasks and task links written by
COPY from this process into fresh projects, with no HTTP, parsing or checks, once as the
import writes them and once without the foreign-key checks (`session_replication_role =
replica`, which the benchmark's superuser may set). Its PostgreSQL CPU bounds what any
import into this schema could reach on these cores, beside Label Studio's rate.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
import label_studio as ls
from annotators import log, start_web
from cpu_meter import CpuMeter, PrivatePostgres
from side_by_side import (
    PeakRss,
    pairwise_items,
    prefhub_api,
    prefhub_import,
    prefhub_prepare,
    prefhub_project,
    prompt_rows,
    report,
    server_arguments,
    stop_servers,
)


def measure(name: str, server_pid: int, postmaster_pid: int, tasks: int, run) -> dict:
    meter = CpuMeter(server_pid, postmaster_pid)
    with PeakRss(server_pid) as rss:
        meter.start()
        began = time.perf_counter()
        run()
        seconds = time.perf_counter() - began
        cpu = meter.stop()
    log(
        f"{name:13s} {seconds:7.2f} s  {tasks / seconds:8,.0f} tasks/s  "
        f"CPU per 1,000 tasks: {cpu.per(tasks // 1000)}  server +{rss.growth_mb:.0f} MB  "
        f"load {os.getloadavg()[0]:.1f}"
    )
    return {
        "seconds": seconds,
        "rate": tasks / seconds,
        "cpu": cpu.server + cpu.postgres,
        "postgres": cpu.postgres,
    }


def database_alone(project_id: int, rows: list[dict], *, foreign_key_checks: bool) -> None:
    """Write the rows' prompts, responses, pair tasks and task links as the import does
    (`rows_insert`, batches of IMPORT_BATCH_ROWS, one transaction), with nothing else: the
    database's share alone."""
    from django.db import connection, transaction
    from django.utils import timezone

    from feedback.bulk import rows_insert
    from feedback.models import Prompt, Response, Task, TaskResponse
    from feedback.services import IMPORT_BATCH_ROWS

    now = timezone.now().isoformat()
    with transaction.atomic():
        if not foreign_key_checks:
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL session_replication_role = replica")
        for start in range(0, len(rows), IMPORT_BATCH_ROWS):
            batch = rows[start : start + IMPORT_BATCH_ROWS]
            prompt_ids = rows_insert(
                Prompt,
                ("project_id", "external_id", "text", "metadata", "created_at"),
                [(project_id, row["id"], row["prompt"], {}, now) for row in batch],
            )
            response_ids = rows_insert(
                Response,
                ("prompt_id", "text", "model_name", "generation_params", "created_at"),
                [
                    (prompt_id, text, "", {}, now)
                    for prompt_id, row in zip(prompt_ids, batch, strict=True)
                    for text in row["responses"]
                ],
            )
            task_ids = rows_insert(
                Task,
                ("project_id", "prompt_id", "layout", "priority", "slots_taken", "is_full",
                 "display_seed", "created_at"),
                [(project_id, prompt, "pair", 0.0, 0, False, 0, now) for prompt in prompt_ids],
            )  # fmt: skip
            rows_insert(
                TaskResponse,
                ("task_id", "response_id", "position"),
                [
                    (task_id, response_ids[2 * index + position], position)
                    for index, task_id in enumerate(task_ids)
                    for position in (0, 1)
                ],
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    server_arguments(parser)
    args = parser.parse_args()

    venv = None if args.no_peer else ls.ensure_venv(args.ls_venv)
    items = pairwise_items(args.tasks)
    rows = prompt_rows(items)
    tasks = ls.task_rows(items)
    log(
        f"{args.tasks:,} tasks: this app's request {len(json.dumps({'rows': rows})) / 1e6:.1f} MB,"
        f" Label Studio's {len(json.dumps(tasks)) / 1e6:.1f} MB; {os.cpu_count()} CPUs, "
        f"load {os.getloadavg()[0]:.1f}"
    )
    results: dict[str, list[dict]] = {"this app": [], "Label Studio": []}
    logs = Path(tempfile.mkdtemp(prefix="import-speed-"))
    with PrivatePostgres(args.pg_port) as pg:
        token, _ = prefhub_prepare(pg.url, "prefhub_bench", 0)
        ours = start_web(
            f"{pg.url}/prefhub_bench", args.port, args.workers, args.threads, logs / "ours.log"
        )
        peer = None
        try:
            if venv is not None:
                peer = ls.LabelStudio(venv, pg.port, "ls_bench")
                admin = peer.bootstrap(0)[0]
                peer.start(logs / "label_studio.log")
            api = prefhub_api(f"http://127.0.0.1:{args.port}", token)
            for r in range(args.repeat):
                project = prefhub_project(1, [], name=f"Import {r}")
                results["this app"].append(
                    measure(
                        "this app", ours.pid, pg.postmaster_pid, args.tasks,
                        lambda p=project: prefhub_import(api, p, rows),
                    )
                )  # fmt: skip
                if peer is not None:
                    with peer.client(admin) as peer_api:
                        project = ls.create_project(peer_api, 1, title=f"Import {r}")
                        results["Label Studio"].append(
                            measure(
                                "Label Studio", peer.pid, pg.postmaster_pid, args.tasks,
                                lambda p=project: ls.import_tasks(peer_api, p, tasks),
                            )
                        )  # fmt: skip
            alone = {True: [], False: []}
            for r in range(args.repeat):
                for checks in (True, False):
                    project = prefhub_project(1, [], name=f"Database alone {r} {checks}")
                    name = "database alone" if checks else "  without FKs"
                    alone[checks].append(
                        measure(
                            name, os.getpid(), pg.postmaster_pid, args.tasks,
                            lambda p=project, c=checks: database_alone(
                                p, rows, foreign_key_checks=c
                            ),
                        )
                    )  # fmt: skip
        finally:
            stop_servers(ours, peer)
    report(results, "tasks")
    peer_best = max((r["rate"] for r in results["Label Studio"]), default=0.0)
    log(
        f"PostgreSQL CPU for the {args.tasks:,} tasks, least of the repeats: the import "
        f"{min(r['postgres'] for r in results['this app']):.2f} s, the database alone "
        f"{min(r['postgres'] for r in alone[True]):.2f} s"
    )
    for checks, label in ((True, "with"), (False, "without")):
        postgres = min(r["postgres"] for r in alone[checks])
        bound = args.tasks / postgres
        ratio = f" = {bound / peer_best:.2f}x Label Studio's best" if peer_best else ""
        log(
            f"database alone, {label} foreign-key checks: PostgreSQL {postgres:.2f} s CPU, "
            f"so at most {bound:,.0f} tasks/s on its one backend{ratio}"
        )


if __name__ == "__main__":
    main()
