"""The annotate loop of this app beside Label Studio's: `annotate_load.py --vs-label-studio`
(its docstring says what is measured); run that, not this."""

from __future__ import annotations

import http.client
import os
import random
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import label_studio as ls
from annotators import annotator_client, answer_for, log, start_web
from cpu_meter import CpuMeter, CpuWindow, PrivatePostgres
from lean_http import LeanClient, Reply
from side_by_side import (
    pairwise_items,
    percentile,
    prefhub_api,
    prefhub_import,
    prefhub_prepare,
    prefhub_project,
    prompt_rows,
)

Step = Callable[[], str | None]  # one judgment (next task + submit); an error or None


@dataclass
class Phase:
    loop_ms: list[float] = field(default_factory=list)
    judgments: int = 0
    errors: list[str] = field(default_factory=list)
    cpu: CpuWindow | None = None
    load: float = 0.0


def ours_annotator(base: str, project_id: int, username: str, keepalive: bool) -> Step:
    """This app's page: POST it for the first card (takes a task), then POST each answer; the
    answer's reply is the next card, so a judgment is one request."""
    client = annotator_client(base, username, keepalive)
    rng = random.Random(username)
    card: Reply | None = None

    def step() -> str | None:
        nonlocal card
        if card is None:
            card = client.post(f"/projects/{project_id}/")
        answer = answer_for(card.text, rng) if card.status_code == 200 else None
        if answer is None:
            status, card = card.status_code, None
            return f"card: {status}"
        task_id, data = answer
        reply = client.post(f"/projects/{project_id}/tasks/{task_id}/submit/", data)
        card = reply if reply.status_code == 200 else None
        return None if card is not None else f"submit: {reply.status_code}"

    return step


def peer_annotator(peer: ls.LabelStudio, project_id: int, token: str, keepalive: bool) -> Step:
    """Label Studio's labeling stream: next task, then the annotation."""
    client = LeanClient(peer.base, keepalive=keepalive, headers={"Authorization": f"Token {token}"})
    rng = random.Random(token)

    def step() -> str | None:
        task = ls.next_task(client, project_id)
        if task is None:
            return "next: no task"
        choice = rng.choice(["A", "B", "tie"])
        code = ls.submit(client, project_id, task["id"], choice, rng.uniform(2, 30))
        return None if code == 201 else f"submit: {code}"

    return step


def run_phase(steps: list[Step], meter: CpuMeter, warmup: float, duration: float) -> Phase:
    """Every step loops with no pause; judgments finished inside the window count."""
    phase = Phase()
    lock = threading.Lock()
    start = threading.Barrier(len(steps) + 1)
    window = [0.0, 0.0]

    def loop(step: Step) -> None:
        start.wait()
        while True:
            began = time.perf_counter()
            if began >= window[1]:
                return
            try:
                error = step()
            except (OSError, http.client.HTTPException) as exc:  # counted, not a dead thread
                error = f"{type(exc).__name__}: {exc}"
            done = time.perf_counter()
            with lock:
                if error is not None:
                    phase.errors.append(error)
                    if len(phase.errors) > 50:
                        return
                elif window[0] <= began and done <= window[1]:
                    phase.loop_ms.append((done - began) * 1000)
                    phase.judgments += 1
                elif window[0] <= done <= window[1]:
                    phase.judgments += 1

    threads = [threading.Thread(target=loop, args=(s,)) for s in steps]
    for thread in threads:
        thread.start()
    now = time.perf_counter()
    window[0], window[1] = now + warmup, now + warmup + duration
    start.wait()
    time.sleep(max(0.0, window[0] - time.perf_counter()))
    meter.start()
    time.sleep(max(0.0, window[1] - time.perf_counter()))
    phase.cpu = meter.stop()
    phase.load = os.getloadavg()[0]
    for thread in threads:
        thread.join()
    return phase


def report(name: str, phase: Phase, duration: float) -> None:
    rate = phase.judgments / duration
    log(
        f"  {name:13s} {rate:7.1f} judgments/s  loop p50 {percentile(phase.loop_ms, 50):6.1f} ms"
        f"  p95 {percentile(phase.loop_ms, 95):6.1f} ms  CPU per judgment "
        f"{phase.cpu.per(phase.judgments)}  load {phase.load:.1f}"
        + (f"  errors {len(phase.errors)}: {phase.errors[:3]}" if phase.errors else "")
    )


def compare(args) -> None:
    venv = ls.ensure_venv(Path(args.ls_venv))
    items = pairwise_items(args.tasks)
    logs = Path(tempfile.mkdtemp(prefix="annotate-vs-ls-"))
    log(
        f"{args.tasks:,} pairwise tasks, {args.overlap} annotators a task; {os.cpu_count()} CPUs,"
        f" load {os.getloadavg()[0]:.1f}; server logs in {logs}"
    )
    with PrivatePostgres(args.pg_port) as pg:
        token, names = prefhub_prepare(pg.url, "prefhub_bench", args.annotators)
        ours = start_web(
            f"{pg.url}/prefhub_bench", args.port, args.workers, args.threads, logs / "ours.log"
        )
        peer = ls.LabelStudio(venv, pg.port, "ls_bench", port=args.port + 2)
        try:
            base = f"http://127.0.0.1:{args.port}"
            tokens = peer.bootstrap(args.annotators)
            peer.start(logs / "label_studio.log")

            def fresh_projects(phase: str) -> tuple[int, int]:
                """The same items, imported into a new project of each app for each phase,
                so no phase starts on a queue another one emptied."""
                project = prefhub_project(args.overlap, names, name=f"Benchmark, {phase}")
                with prefhub_api(base, token) as api:
                    prefhub_import(api, project, prompt_rows(items))
                with peer.client(tokens[0]) as api:
                    peer_project = ls.create_project(api, args.overlap, title=phase)
                    ls.import_tasks(api, peer_project, ls.task_rows(items))
                return project, peer_project

            from django.db import connections

            summary = []
            for keepalive in (False, True):
                mode = "keep-alive" if keepalive else "new connection per request"
                for count in (args.annotators, 1):
                    project, peer_project = fresh_projects(f"{count} annotators, {mode}")
                    connections.close_all()  # the bench process holds none while measuring
                    log(f"\n{count} annotator(s), no pause, {mode}:")
                    ours_steps = [
                        ours_annotator(base, project, n, keepalive) for n in names[:count]
                    ]
                    mine = run_phase(
                        ours_steps, CpuMeter(ours.pid, pg.postmaster_pid),
                        args.warmup, args.duration,
                    )  # fmt: skip
                    report("this app", mine, args.duration)
                    peer_steps = [
                        peer_annotator(peer, peer_project, t, keepalive)
                        for t in tokens[1 : count + 1]
                    ]
                    theirs = run_phase(
                        peer_steps, CpuMeter(peer.pid, pg.postmaster_pid),
                        args.warmup, args.duration,
                    )  # fmt: skip
                    report("Label Studio", theirs, args.duration)
                    summary.append((count, mode, mine, theirs))
        finally:
            os.killpg(ours.pid, signal.SIGTERM)
            ours.wait(timeout=30)
            peer.stop()
            from django.db import connections

            connections.close_all()

    log(f"\nthis app against Label Studio {ls.VERSION} ({args.duration:.0f} s a phase):")
    for count, mode, mine, theirs in summary:

        def cpu(p: Phase) -> float:
            return (p.cpu.server + p.cpu.postgres) * 1000 / max(p.judgments, 1)

        log(
            f"  {count} annotator(s), {mode}: {mine.judgments / args.duration:.1f} vs "
            f"{theirs.judgments / args.duration:.1f} judgments/s "
            f"({mine.judgments / max(theirs.judgments, 1):.1f}x); loop p50 "
            f"{percentile(mine.loop_ms, 50):.0f} vs {percentile(theirs.loop_ms, 50):.0f} ms; "
            f"server + PostgreSQL CPU per judgment {cpu(mine):.1f} vs {cpu(theirs):.1f} ms "
            f"({cpu(mine) / cpu(theirs):.2f}x)"
        )
