"""Parts of the annotator load tests: seeding a project by COPY, serving it with granian,
and what a simulated annotator does on the page (log in, answer the card it is shown).

Used by `annotate_load.py` (speed) and `load_fault.py` (faults); run those, not this.
"""

from __future__ import annotations

import logging
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
from lean_http import LeanClient

ROOT = Path(__file__).resolve().parents[1]
PG = "postgres://postgres@127.0.0.1:5432"  # the machine's PostgreSQL
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


def create_database(name: str, server: str = PG) -> None:
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


def ensure_database(name: str, server: str = PG) -> None:
    """Create the database unless it exists (a rerun keeps what it seeded)."""
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(name: str, server: str = PG) -> None:
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def setup_django(db_url: str) -> None:
    os.environ["DATABASE_URL"] = db_url
    os.environ.setdefault("DJANGO_DEBUG", "0")  # DEBUG would keep every query in memory
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DJANGO_SECRET_KEY", "django-insecure-benchmark-only-key")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    # One log line per request would cost the load generator the CPU the server needs.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def seed(db_url: str, tasks: int, annotators: int, past_records: int = 1_000_000) -> int:
    """Seed the project; return its id. Small tables through the ORM, big ones by COPY.

    Past annotators fill tasks in id order until they hold `past_records` feedback records.
    """
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
        copy_seed(
            conn,
            project.pk,
            tasks,
            [u.pk for u in past],
            [a.pk for a in aspects],
            label.pk,
            past_records,
        )
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
    past_records: int = 1_000_000,
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
    # id order until `past_records` feedback records exist, so the open tasks are the last.
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
        if records >= past_records:
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


def start_web(
    db_url: str,
    port: int,
    workers: int,
    threads: int,
    output: Path | None = None,
    **extra_env: str,
) -> subprocess.Popen:
    """The web server (config/serve.py, granian) serving `db_url` on 127.0.0.1:`port`; its
    log goes to `output` if given."""
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "DJANGO_DEBUG": "0",
        # Production settings, spoken over plain http: no TLS proxy in front here.
        "DJANGO_SECURE_SSL_REDIRECT": "0",
        "DJANGO_SECURE_COOKIES": "0",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_CONN_MAX_AGE": "600",
        "WEB_BIND": f"127.0.0.1:{port}",
        "WEB_WORKERS": str(workers),
        "WEB_THREADS": str(threads),
        "LOG_LEVEL": "WARNING",
        **extra_env,
    }
    # As in production: DEBUG off serves the hashed files collectstatic writes.
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=ROOT,
        env=env,
        check=True,
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "config.serve"],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=output.open("ab") if output else None,
        stderr=subprocess.STDOUT if output else None,
    )
    for _ in range(100):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/accounts/login/", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    os.killpg(server.pid, signal.SIGKILL)  # the server and its workers
    raise SystemExit("the web server did not start")


def server_processes(server: subprocess.Popen, db_url: str) -> dict[str, list[int]]:
    """Process ids of the web server (granian's main process and the workers it forked) and of
    the PostgreSQL backends connected to `db_url`'s database (PostgreSQL must run on this
    machine)."""
    children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
    with psycopg.connect(db_url, autocommit=True) as conn:
        backends = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()"
        ).fetchall()
    return {"web": [server.pid, *map(int, children)], "PostgreSQL": [p for (p,) in backends]}


def download(api: httpx.Client, url: str, params: dict, out) -> int:
    """Stream a GET into the file `out`, as a browser saves a download; returns the bytes."""
    size = 0
    with api.stream("GET", url, params=params) as reply:
        reply.raise_for_status()
        for chunk in reply.iter_bytes():
            size += len(chunk)
            out.write(chunk)
    return size


# --- Simulated annotators -------------------------------------------------------------

TASK_ID = re.compile(r'data-task-id="(\d+)"')
LAYOUT = re.compile(r'data-layout="(\w+)"')
RATING = re.compile(r'name="(rating-\d+-\d+)"')
SUBMIT_KEY = re.compile(r'name="submit_key" value="([0-9a-f-]+)"')
HTMX = {"HX-Request": "true"}


def log_in(client: httpx.Client, username: str) -> dict[str, str]:
    """Log the client in as `username`; return the headers the htmx page sends."""
    client.get("/accounts/login/")
    client.post(
        "/accounts/login/",
        data={
            "username": username,
            "password": PASSWORD,
            "csrfmiddlewaretoken": client.cookies["csrftoken"],
        },
    )
    return {**HTMX, "X-CSRFToken": client.cookies["csrftoken"]}


def annotator_client(base: str, username: str, keepalive: bool = True) -> LeanClient:
    """A client logged in as `username` that sends what the htmx page sends (its cookies, the
    CSRF header); the log-in itself goes through httpx, unmeasured."""
    with httpx.Client(base_url=base, timeout=30) as browser:
        headers = log_in(browser, username)
        cookies = "; ".join(f"{name}={value}" for name, value in browser.cookies.items())
    return LeanClient(base, keepalive=keepalive, headers={**headers, "Cookie": cookies})


def answer_for(card: str, rng: random.Random) -> tuple[int, dict[str, str]] | None:
    """(task id, form data) answering the task card the page shows; None without a card."""
    found = TASK_ID.search(card)
    if not found:
        return None
    if LAYOUT.search(card).group(1) == "pair":
        choice = rng.choice(["A", "B", "tie"])
        data = {"choice": choice, "strength": "" if choice == "tie" else str(rng.randint(1, 3))}
    else:
        data = {name: str(rng.randint(1, 5)) for name in RATING.findall(card)}
    data["duration_ms"] = str(rng.randint(2000, 30000))
    # The card's key: a re-sent answer (after an error) is then stored once, not twice.
    data["submit_key"] = SUBMIT_KEY.search(card).group(1)
    return int(found.group(1)), data
