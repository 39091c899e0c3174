"""Export speed beside Label Studio: 50,000 pairwise answers downloaded from each app's API.

    python benchmarks/export_speed.py            # installs Label Studio first if missing
    python benchmarks/export_speed.py --tasks 10000 --answers-per-task 5 --repeat 2

Both apps run at once on one private PostgreSQL cluster (see cpu_meter.py), each in its
own database, with the same data: 10,000 generated pairwise items (a ~150-character prompt,
two ~300-character answers), each answered by 5 annotators with the same choices in both
(A, B, or a tie one time in ten): 50,000 answers. This app gets the items through its
import endpoint and the answers through the ORM in bulk; Label Studio gets tasks with
their annotations in one import request (how its API takes finished work).

Measured, alternating between the apps, each download saved to a temporary file as a
browser saves it: this app's `GET /api/projects/{id}/export/?shape=pairs&format=jsonl
&ties=keep_as_column` (one TRL row per answer, ties kept so that the row counts match;
streamed), and Label Studio's `GET /api/projects/{id}/export?exportType=JSON` (its default
format; one task per item holding its annotations). Rows are answers in the file. Prints
seconds, rows/s, MB, server + PostgreSQL CPU, the server's memory growth (peak resident
memory of its process tree during the request, less before) and this client's (resident
memory after the download, less before), then the ratio.
Option --no-peer: this app only.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
import label_studio as ls
from annotators import download, log, start_web
from cpu_meter import CpuMeter, PrivatePostgres, rss_mb
from side_by_side import (
    PeakRss,
    pairwise_items,
    prefhub_api,
    prefhub_import,
    prefhub_prepare,
    prefhub_project,
    prefhub_seed_answers,
    prompt_rows,
    report,
    server_arguments,
    stop_servers,
)


def measure(name: str, server_pid: int, postmaster_pid: int, run, count) -> dict:
    """Time `run(file)`, then count the rows in what it wrote with `count(path)`."""
    with tempfile.NamedTemporaryFile(suffix=".export") as out:
        meter = CpuMeter(server_pid, postmaster_pid)
        client_before = rss_mb()
        with PeakRss(server_pid) as rss:
            meter.start()
            began = time.perf_counter()
            size = run(out)
            out.flush()
            seconds = time.perf_counter() - began
            cpu = meter.stop()
        client_growth = rss_mb() - client_before
        rows = count(Path(out.name))
    log(
        f"{name:13s} {rows:7,} rows {seconds:7.2f} s  {rows / seconds:9,.0f} rows/s  "
        f"{size / 1e6:5.1f} MB  server + PostgreSQL CPU {cpu.server + cpu.postgres:.2f} s "
        f"(client {cpu.client:.2f} s)  server +{rss.growth_mb:.0f} MB, "
        f"client +{client_growth:.0f} MB  "
        f"load {os.getloadavg()[0]:.1f}"
    )
    return {"rate": rows / seconds, "cpu": cpu.server + cpu.postgres, "growth": rss.growth_mb}


def ours_export(api, project_id: int):
    def run(out) -> int:
        params = {"shape": "pairs", "format": "jsonl", "ties": "keep_as_column"}
        return download(api, f"/api/projects/{project_id}/export/", params, out)

    return run


def count_lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for _ in f)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--answers-per-task", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=2)
    server_arguments(parser)
    args = parser.parse_args()

    venv = None if args.no_peer else ls.ensure_venv(args.ls_venv)
    per = args.answers_per_task
    items = pairwise_items(args.tasks)
    rng = random.Random(11)
    choices = [
        [rng.choices(["A", "B", "tie"], weights=[45, 45, 10])[0] for _ in range(per)] for _ in items
    ]
    log(
        f"{args.tasks:,} tasks x {per} answers = {args.tasks * per:,} answers; "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    )
    results: dict[str, list[dict]] = {"this app": [], "Label Studio": []}
    logs = Path(tempfile.mkdtemp(prefix="export-speed-"))
    with PrivatePostgres(args.pg_port) as pg:
        token, names = prefhub_prepare(pg.url, "prefhub_bench", per)
        ours = start_web(
            f"{pg.url}/prefhub_bench", args.port, args.workers, args.threads, logs / "ours.log"
        )
        peer = None
        try:
            api = prefhub_api(f"http://127.0.0.1:{args.port}", token)
            project = prefhub_project(per, names, name="Export")
            prefhub_import(api, project, prompt_rows(items))
            stored = prefhub_seed_answers(
                project, [list(zip(names, c, strict=True)) for c in choices]
            )
            log(f"this app: {stored:,} answers stored")
            if venv is not None:
                peer = ls.LabelStudio(venv, pg.port, "ls_bench")
                admin = peer.bootstrap(per)[0]
                peer.start(logs / "label_studio.log")
                peer_api = peer.client(admin)
                ids = ls.user_ids(peer_api)
                annotators = [ids[f"annotator{i}@bench.local"] for i in range(per)]
                peer_project = ls.create_project(peer_api, per, title="Export")
                reply = ls.import_tasks(
                    peer_api,
                    peer_project,
                    ls.task_rows(items, [list(zip(annotators, c, strict=True)) for c in choices]),
                )
                log(f"Label Studio: {reply.get('annotation_count', '?'):,} annotations imported")
            for _ in range(args.repeat):
                results["this app"].append(
                    measure("this app", ours.pid, pg.postmaster_pid, ours_export(api, project),
                            count_lines)
                )  # fmt: skip
                if peer is not None:
                    results["Label Studio"].append(
                        measure(
                            "Label Studio", peer.pid, pg.postmaster_pid,
                            lambda out: ls.export_json(peer_api, peer_project, out),
                            ls.count_annotations,
                        )
                    )  # fmt: skip
        finally:
            stop_servers(ours, peer)
    report(results, "rows")


if __name__ == "__main__":
    main()
