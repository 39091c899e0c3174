"""What the side-by-side benchmarks share: the pairwise data both apps get, and this app's
side (database, users, token, project, its import and export over the REST API).

Used by `annotate_load.py --vs-label-studio`, `import_speed.py` and `export_speed.py`;
run those, not this.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import threading
import time
from pathlib import Path

import httpx
import label_studio as ls
from annotators import PASSWORD, create_database, log, setup_django

TOPICS = [
    "sort a list of dictionaries by two keys in Python",
    "explain why the sky looks blue at noon and red at sunset",
    "write a polite email declining a meeting invitation",
    "find the derivative of x squared times the sine of x",
    "choose between PostgreSQL and SQLite for a small web app",
    "summarise the causes of the French Revolution",
    "make a weekly meal plan for a vegetarian on a budget",
    "fix a race condition between two threads that share a counter",
]
SENTENCES = [
    "First, state what is given and what is asked.",
    "Then work through it one step at a time, checking each step.",
    "A short example makes the idea concrete.",
    "One common mistake is to skip the edge cases.",
    "The result follows directly from the previous step.",
    "If the input is empty, the answer is trivially the same.",
    "In practice this takes a few minutes and no special tools.",
    "That is the whole method; the rest is bookkeeping.",
]


def pairwise_items(n: int, seed: int = 7) -> list[dict[str, str]]:
    """`n` pairwise items: a prompt of ~150 characters and two answers of ~300."""
    rng = random.Random(seed)

    def text(length: int, lead: str) -> str:
        out = lead
        while len(out) < length:
            out += " " + rng.choice(SENTENCES)
        return out[:length]

    return [
        {
            "prompt": text(150, f"Question {i}: please {rng.choice(TOPICS)}."),
            "answer_a": text(300, f"Answer A to {i}."),
            "answer_b": text(300, f"Answer B to {i}."),
        }
        for i in range(n)
    ]


def prompt_rows(items: list[dict[str, str]]) -> list[dict]:
    """The same items as this app's import rows: a prompt with its two responses."""
    return [
        {"id": f"q{i}", "prompt": it["prompt"], "responses": [it["answer_a"], it["answer_b"]]}
        for i, it in enumerate(items)
    ]


def percentile(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


# --- This app ---------------------------------------------------------------------------


def prefhub_prepare(pg_url: str, database: str, annotators: int) -> tuple[str, list[str]]:
    """Create and migrate this app's database; an admin with a token and `annotators`
    users. Returns (admin token, annotator usernames). Django runs in this process."""
    create_database(database, server=pg_url)
    setup_django(f"{pg_url}/{database}")
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.core.management import call_command
    from rest_framework.authtoken.models import Token

    call_command("migrate", interactive=False, verbosity=0)
    User = get_user_model()
    admin = User.objects.create_user("bench-admin", password=PASSWORD, is_staff=True)
    hashed = make_password(PASSWORD)
    names = [f"bench{i}" for i in range(annotators)]
    User.objects.bulk_create(User(username=name, password=hashed) for name in names)
    return Token.objects.create(user=admin).key, names


def prefhub_project(overlap: int, annotators: list[str], name: str = "Benchmark") -> int:
    """A pairwise-only project taking `overlap` annotators a task; the bench users join."""
    from django.contrib.auth import get_user_model

    from feedback import services
    from feedback.models import ProjectMember

    User = get_user_model()
    project = services.project_create(
        creator=User.objects.get(username="bench-admin"),
        name=name,
        collects_pairwise=True,
        annotators_per_task=overlap,
    )
    ProjectMember.objects.bulk_create(
        ProjectMember(project=project, user=user, role=ProjectMember.Role.ANNOTATOR)
        for user in User.objects.filter(username__in=annotators)
    )
    return project.pk


def prefhub_api(base: str, token: str, timeout: float = 600) -> httpx.Client:
    return httpx.Client(base_url=base, headers={"Authorization": f"Token {token}"}, timeout=timeout)


def prefhub_import(api: httpx.Client, project_id: int, rows: list[dict]) -> dict:
    """All rows in one request to the REST import endpoint."""
    reply = api.post(f"/api/projects/{project_id}/prompts/", json={"rows": rows})
    if reply.status_code != 201:
        raise SystemExit(f"import refused: {reply.status_code} {reply.text[:300]}")
    return reply.json()


def prefhub_seed_answers(project_id: int, choices: list[list[tuple[str, str]]]) -> int:
    """Store finished pairwise answers on the project's tasks (in task id order): task i
    gets one submission per (username, choice) in `choices[i]`. Through the ORM in bulk:
    the seed, not a measured path."""
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from feedback.models import PairwiseFeedback, Submission, Task

    users = {u.username: u for u in get_user_model().objects.filter(username__startswith="bench")}
    tasks = list(Task.objects.filter(project_id=project_id).order_by("id"))
    with transaction.atomic():
        subs = Submission.objects.bulk_create(
            (
                Submission(task=task, annotator=users[name], duration_ms=5000)
                for task, answers in zip(tasks, choices, strict=False)
                for name, _ in answers
            ),
            batch_size=5000,
        )
        flat = [c for _, answers in zip(tasks, choices, strict=False) for _, c in answers]
        PairwiseFeedback.objects.bulk_create(
            (
                PairwiseFeedback(submission=s, choice=c, strength=None if c == "tie" else 2)
                for s, c in zip(subs, flat, strict=True)
            ),
            batch_size=5000,
        )
    return len(subs)


# --- Memory -----------------------------------------------------------------------------


class PeakRss:
    """Samples the resident memory of a process tree every 50 ms in a thread; `peak`
    minus `before` is how much a request made it grow."""

    def __init__(self, pid: int) -> None:
        from cpu_meter import tree_rss_bytes

        self._rss = tree_rss_bytes
        self.pid = pid
        self.before = tree_rss_bytes(pid)
        self.peak = self.before
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss(self.pid))
            time.sleep(0.05)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss(self.pid))

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.before) / 2**20


# --- The comparison scripts' shared frame ------------------------------------------------


def server_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every side-by-side script takes for the two servers and the cluster."""
    parser.add_argument("--ls-venv", type=Path, default=ls.DEFAULT_VENV)
    parser.add_argument("--no-peer", action="store_true", help="this app only")
    parser.add_argument("--pg-port", type=int, default=5442)
    parser.add_argument("--port", type=int, default=8107)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)


def stop_servers(ours: subprocess.Popen, peer: ls.LabelStudio | None) -> None:
    os.killpg(ours.pid, signal.SIGTERM)
    ours.wait(timeout=30)
    if peer is not None:
        peer.stop()
    from django.db import connections

    connections.close_all()


def report(results: dict[str, list[dict]], unit: str) -> None:
    """Each app's best rate of `unit`s per second and, with the peer, the two ratios."""
    best = max(r["rate"] for r in results["this app"])
    log(f"\nthis app: best {best:,.0f} {unit}/s")
    if results["Label Studio"]:
        peer_best = max(r["rate"] for r in results["Label Studio"])
        cpu_ratio = min(r["cpu"] for r in results["Label Studio"]) / min(
            r["cpu"] for r in results["this app"]
        )
        log(
            f"Label Studio {ls.VERSION}: best {peer_best:,.0f} {unit}/s\n"
            f"ratio: {best / peer_best:.2f}x Label Studio's {unit}/s; Label Studio spends "
            f"{cpu_ratio:.2f}x this app's server + PostgreSQL CPU"
        )
