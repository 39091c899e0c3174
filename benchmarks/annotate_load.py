"""Load test of the annotator workspace: gunicorn + PostgreSQL, 16 simulated annotators.

Run from the repository root (PostgreSQL on 127.0.0.1:5432, user postgres):

    python benchmarks/annotate_load.py            # seed, serve, drive for 60 s, check, drop

Options: --duration S (measured, after --warmup S, default 10), --annotators N, --think-ms MS
(mean pause between judgments; 0, the default, has every annotator ask again at once and so
measures the saturated server), --workers W --threads T (gunicorn),
--keep (leave the database for a rerun), --reuse (use a kept database, seeding nothing).

What it does:
1. Creates the database `prefhub_bench_annotate`, migrates it, and seeds one project with
   100,000 tasks (40,000 single-response tasks for ratings, spans and critiques, 60,000 pairs)
   and past work of 30 annotators at 3 annotators per task: 260,000 submissions holding
   1,000,000 feedback records (ratings, spans, critiques, pairwise choices, rationales), all
   through PostgreSQL COPY. About 13,000 pair tasks still need annotators.
2. Starts gunicorn (gthread) on 127.0.0.1:8106 with DEBUG off and persistent connections.
3. Each simulated annotator logs in, then repeats: ask for the next task (the htmx GET the
   page makes), submit a pairwise judgment (the htmx POST; 204 on success), as fast as it can.
4. Prints judgments/s and p50/p95/p99 latency of next-task and submit, then counts in the
   database: judgments the server accepted but did not store (lost), answers stored twice
   for one annotator and task (duplicates), tasks with more than 3 annotators, and tasks
   whose slot counter disagrees with their leases.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[1]
PG = "postgres://postgres@127.0.0.1:5432"
PASSWORD = "bench-pass"
OVERLAP = 3
PAST_ANNOTATORS = 30
TASKS_PER_PROMPT = 5  # 2 single + 3 pairs over 4 responses
RESPONSE_TEXT = (
    "Here is a careful answer to question {n}.\n\n"
    "1. **First**, restate the problem in your own words and list what is known.\n"
    "2. Then work through it step by step; check each step against the givens.\n"
    "3. Finally, state the result and how sure you are about it.\n\n"
    "```python\ndef solve(x):\n    return x * {n} % 97\n```\n\n"
    "In short: the answer depends on the inputs, and variant {v} explains why in a few "
    "sentences with an example, a counter-example and a caveat about edge cases."
)


def log(message: str) -> None:
    print(message, flush=True)


# --- Database and seed ----------------------------------------------------------------


def create_database(name: str) -> None:
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(name: str) -> None:
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def setup_django(db_url: str) -> None:
    os.environ["DATABASE_URL"] = db_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DJANGO_SECRET_KEY", "django-insecure-benchmark-only-key")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    # One log line per request would cost the load generator the CPU the server needs.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def seed(db_url: str, tasks: int, annotators: int) -> int:
    """Seed the project; return its id. Small tables through the ORM, big ones by COPY."""
    from django.contrib.auth.hashers import make_password
    from django.core.management import call_command

    from feedback.models import Project, ProjectMember, RatingAspect, SpanLabel

    call_command("migrate", interactive=False, verbosity=0)
    from django.contrib.auth import get_user_model

    User = get_user_model()
    hashed = make_password(PASSWORD)
    past = User.objects.bulk_create(
        User(username=f"past{i}", password=hashed) for i in range(PAST_ANNOTATORS)
    )
    live = User.objects.bulk_create(
        User(username=f"bench{i}", password=hashed) for i in range(annotators)
    )
    project = Project.objects.create(
        name="Load test",
        guidelines="Pick the better answer.",
        collects_pairwise=True,
        collects_rating=True,
        collects_spans=True,
        collects_free_text=True,
        asks_critique=True,
        asks_rationale=True,
        annotators_per_task=OVERLAP,
        lease_minutes=30,
    )
    ProjectMember.objects.bulk_create(
        ProjectMember(project=project, user=user, role=ProjectMember.Role.ANNOTATOR)
        for user in past + live
    )
    aspects = RatingAspect.objects.bulk_create(
        RatingAspect(project=project, name=name, position=i)
        for i, name in enumerate(["Instruction following", "Truthfulness", "Honesty", "Help"])
    )
    label = SpanLabel.objects.create(project=project, name="Factual error")

    started = time.perf_counter()
    with psycopg.connect(db_url) as conn:
        copy_seed(conn, project.pk, tasks, [u.pk for u in past], [a.pk for a in aspects], label.pk)
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
    log(f"seeded in {time.perf_counter() - started:.0f} s")
    return project.pk


def copy_seed(
    conn: psycopg.Connection,
    project_id: int,
    tasks: int,
    past: list[int],
    aspects: list[int],
    label_id: int,
) -> None:
    now = "2026-01-01 00:00:00+00"
    prompts = tasks // TASKS_PER_PROMPT
    cur = conn.cursor()
    with cur.copy(
        "COPY feedback_prompt (id, project_id, external_id, text, metadata, created_at) FROM STDIN"
    ) as copy:
        for p in range(1, prompts + 1):
            copy.write_row(
                (p, project_id, f"p{p}", f"Question {p}: how would you do it?", "{}", now)
            )
    with cur.copy(
        "COPY feedback_response (id, prompt_id, text, model_name, generation_params, created_at)"
        " FROM STDIN"
    ) as copy:
        for p in range(1, prompts + 1):
            for v in range(4):
                text = RESPONSE_TEXT.format(n=p, v=v)
                copy.write_row(((p - 1) * 4 + v + 1, p, text, f"model-{v}", "{}", now))

    # Tasks, in id order: all single tasks first, then the pairs; past work fills tasks in
    # id order until 1,000,000 feedback records exist, so the open tasks are the last pairs.
    plan: list[tuple[int, str, list[int]]] = []  # (prompt, layout, response ids)
    for p in range(1, prompts + 1):
        r = [(p - 1) * 4 + v + 1 for v in range(4)]
        plan += [(p, "single", [r[0]]), (p, "single", [r[1]])]
    for p in range(1, prompts + 1):
        r = [(p - 1) * 4 + v + 1 for v in range(4)]
        plan += [(p, "pair", [r[0], r[1]]), (p, "pair", [r[2], r[3]]), (p, "pair", [r[0], r[2]])]
    records_per = {"single": len(aspects) + 2, "pair": 2}  # ratings+critique+span; choice+why
    records, full_until = 0, 0
    for index, (_, layout, _) in enumerate(plan):
        if records >= 1_000_000:
            break
        records += OVERLAP * records_per[layout]
        full_until = index + 1

    with cur.copy(
        "COPY feedback_task (id, project_id, prompt_id, layout, priority, slots_taken, is_full,"
        " created_at) FROM STDIN"
    ) as copy:
        for index, (p, layout, _) in enumerate(plan):
            full = index < full_until
            copy.write_row(
                (index + 1, project_id, p, layout, 0.0, OVERLAP if full else 0, full, now)
            )
    with cur.copy(
        "COPY feedback_taskresponse (id, task_id, response_id, position) FROM STDIN"
    ) as copy:
        link = 0
        for index, (_, _, ids) in enumerate(plan):
            for position, rid in enumerate(ids):
                link += 1
                copy.write_row((link, index + 1, rid, position))

    rng = random.Random(7)
    submission = 0
    counters = {"pairwise": 0, "rating": 0, "text": 0, "span": 0}
    with (
        cur.copy(
            "COPY feedback_submission (id, task_id, annotator_id, created_at, duration_ms,"
            " is_current, spans_checked) FROM STDIN"
        ) as subs,
    ):
        for index in range(full_until):
            for k in range(OVERLAP):
                submission += 1
                annotator = past[(index * OVERLAP + k) % len(past)]
                duration = rng.randint(3000, 60000)
                checked = plan[index][1] == "single"  # the span tool was on the card
                subs.write_row((submission, index + 1, annotator, now, duration, True, checked))
    with cur.copy(
        "COPY feedback_assignment (id, project_id, task_id, annotator_id, status, leased_until,"
        " created_at, finished_at) FROM STDIN"
    ) as copy:
        submission = 0
        for index in range(full_until):
            for k in range(OVERLAP):
                submission += 1
                annotator = past[(index * OVERLAP + k) % len(past)]
                copy.write_row(
                    (submission, project_id, index + 1, annotator, "submitted", now, now, now)
                )
    with (
        cur.copy(
            "COPY feedback_pairwisefeedback (id, submission_id, choice, strength) FROM STDIN"
        ) as pairwise,
    ):
        submission = 0
        for index in range(full_until):
            for _ in range(OVERLAP):
                submission += 1
                if plan[index][1] == "pair":
                    counters["pairwise"] += 1
                    choice = rng.choice(["A", "B", "tie"])
                    strength = None if choice == "tie" else rng.randint(1, 3)
                    pairwise.write_row((counters["pairwise"], submission, choice, strength))
    with cur.copy(
        "COPY feedback_ratingfeedback (id, submission_id, response_id, aspect_id, value, rationale)"
        " FROM STDIN"
    ) as ratings:
        submission = 0
        for index in range(full_until):
            for _ in range(OVERLAP):
                submission += 1
                if plan[index][1] == "single":
                    for aspect in aspects:
                        counters["rating"] += 1
                        ratings.write_row(
                            (
                                counters["rating"],
                                submission,
                                plan[index][2][0],
                                aspect,
                                rng.randint(1, 5),
                                "",
                            )
                        )
    with cur.copy(
        "COPY feedback_freetextfeedback (id, submission_id, response_id, mode, text) FROM STDIN"
    ) as texts:
        submission = 0
        for index in range(full_until):
            for _ in range(OVERLAP):
                submission += 1
                counters["text"] += 1
                if plan[index][1] == "single":
                    response_id = plan[index][2][0]
                    row = (counters["text"], submission, response_id, "critique", "Too long.")
                else:
                    row = (counters["text"], submission, None, "rationale", "Clearer steps.")
                texts.write_row(row)
    with cur.copy(
        "COPY feedback_spanfeedback (id, submission_id, response_id, label_id, severity, start,"
        ' "end", comment) FROM STDIN'
    ) as spans:
        submission = 0
        for index in range(full_until):
            for _ in range(OVERLAP):
                submission += 1
                if plan[index][1] == "single":
                    counters["span"] += 1
                    spans.write_row(
                        (
                            counters["span"],
                            submission,
                            plan[index][2][0],
                            label_id,
                            "minor",
                            5,
                            20,
                            "",
                        )
                    )
    for table in (
        "prompt", "response", "task", "taskresponse", "submission", "assignment",
        "pairwisefeedback", "ratingfeedback", "freetextfeedback", "spanfeedback",
    ):  # fmt: skip
        cur.execute(
            f"SELECT setval(pg_get_serial_sequence('feedback_{table}', 'id'),"
            f" (SELECT coalesce(max(id), 1) FROM feedback_{table}))"
        )
    log(
        f"seeded {len(plan):,} tasks ({full_until:,} full), {submission:,} submissions, "
        f"{sum(counters.values()):,} feedback records {counters}"
    )


# --- Server ---------------------------------------------------------------------------


def start_gunicorn(db_url: str, port: int, workers: int, threads: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "DJANGO_DEBUG": "0",
        # Production settings, spoken over plain http: no TLS proxy in front here.
        "DJANGO_SECURE_SSL_REDIRECT": "0",
        "DJANGO_SECURE_COOKIES": "0",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_CONN_MAX_AGE": "600",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_WORKERS": str(workers),
        "GUNICORN_THREADS": str(threads),
        "LOG_LEVEL": "WARNING",
    }
    # As in production: DEBUG off serves the hashed files collectstatic writes.
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=ROOT,
        env=env,
        check=True,
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.conf.py", "config.wsgi"],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    for _ in range(100):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/accounts/login/", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.kill()
    raise SystemExit("gunicorn did not start")


# --- Simulated annotators -------------------------------------------------------------

TASK_ID = re.compile(r'data-task-id="(\d+)"')
LAYOUT = re.compile(r'data-layout="(\w+)"')
RATING = re.compile(r'name="(rating-\d+-\d+)"')


@dataclass
class Annotator:
    username: str
    next_ms: list[float] = field(default_factory=list)
    submit_ms: list[float] = field(default_factory=list)
    accepted: list[int] = field(default_factory=list)  # task ids answered with 204
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
    rng = random.Random(annotator.username)
    with httpx.Client(base_url=base, timeout=30) as client:
        client.get("/accounts/login/")
        client.post(
            "/accounts/login/",
            data={
                "username": annotator.username,
                "password": PASSWORD,
                "csrfmiddlewaretoken": client.cookies["csrftoken"],
            },
        )
        headers = {"HX-Request": "true", "X-CSRFToken": client.cookies["csrftoken"]}
        start.wait()
        # Until warm, workers compile templates and fill caches: not measured.
        warm = time.perf_counter() + warmup
        deadline = warm + duration
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            measuring = began >= warm
            card = client.get(f"/projects/{project_id}/", headers=headers)
            if measuring:
                annotator.next_ms.append((time.perf_counter() - began) * 1000)
            found = TASK_ID.search(card.text)
            if card.status_code != 200 or not found:
                annotator.errors.append(f"next: {card.status_code}")
                break
            task_id = int(found.group(1))
            if LAYOUT.search(card.text).group(1) == "pair":
                choice = rng.choice(["A", "B", "tie"])
                data = {
                    "choice": choice,
                    "strength": "" if choice == "tie" else str(rng.randint(1, 3)),
                }
            else:
                data = {name: str(rng.randint(1, 5)) for name in RATING.findall(card.text)}
            data["duration_ms"] = str(rng.randint(2000, 30000))
            began = time.perf_counter()
            answer = client.post(
                f"/projects/{project_id}/tasks/{task_id}/submit/", data=data, headers=headers
            )
            if measuring:
                annotator.submit_ms.append((time.perf_counter() - began) * 1000)
            if answer.status_code == 204:
                annotator.accepted.append(task_id)
                annotator.measured += measuring
            else:
                annotator.errors.append(f"submit {task_id}: {answer.status_code}")
            if think_ms:
                time.sleep(rng.uniform(0.5, 1.5) * think_ms / 1000)


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
            "tasks whose slot counter disagrees with their leases": one(
                "SELECT count(*) FROM feedback_task t WHERE t.project_id = %(project)s AND"
                " t.slots_taken <> (SELECT count(*) FROM feedback_assignment a"
                " WHERE a.task_id = t.id AND a.status IN ('active', 'submitted'))"
            ),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", default="prefhub_bench_annotate")
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--annotators", type=int, default=16)
    parser.add_argument("--duration", type=float, default=60.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds run before measuring")
    parser.add_argument("--port", type=int, default=8106)
    parser.add_argument(
        "--think-ms",
        type=float,
        default=0.0,
        help="mean pause after each judgment (0: ask again at once, the server saturated)",
    )
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reuse", action="store_true", help="use a kept database, seed nothing")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()
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
    server = start_gunicorn(db_url, args.port, args.workers, args.threads)
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
        for thread in threads:
            thread.join()
        elapsed = args.duration
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)

    next_ms = [ms for a in annotators for ms in a.next_ms]
    submit_ms = [ms for a in annotators for ms in a.submit_ms]
    accepted = sum(len(a.accepted) for a in annotators)
    measured = sum(a.measured for a in annotators)
    errors = [e for a in annotators for e in a.errors]
    log(
        f"\n{args.annotators} annotators, {elapsed:.0f} s after {args.warmup:.0f} s warm-up, "
        f"gunicorn {args.workers} workers x "
        f"{args.threads} threads, {os.cpu_count()} CPUs, think time {args.think_ms:.0f} ms, "
        f"load average before {load_before:.1f}"
    )
    log(f"judgments: {measured:,} measured, {measured / elapsed:.1f} judgments/s")
    for name, values in (("next-task", next_ms), ("submit", submit_ms)):
        log(
            f"{name:9s} n={len(values):6,}  p50={percentile(values, 50):6.1f} ms  "
            f"p95={percentile(values, 95):6.1f} ms  p99={percentile(values, 99):6.1f} ms"
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
