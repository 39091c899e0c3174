"""The leaderboard of a large project, end to end, beside choix on the same votes.

Stores `--votes` pairwise votes over `--models` models in the real tables of a throwaway
PostgreSQL database (COPY; the server and user are DATABASE_URL's, the database is
`<its name>_bench_leaderboard`), then times what the page and the API run: counts
aggregated in SQL, the Bradley-Terry fit, `--resamples` bootstrap refits over prompts,
style control, online Elo. Beside it, on the same vote list in the same run,
`choix.ilsr_pairwise` (a tie given as one win each way) and the rank correlations of the
two fits with each other and with the strengths the votes were drawn from.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/prefhub python benchmarks/leaderboard.py
    python benchmarks/leaderboard.py --votes 20000 --models 10     # a smoke run
    python benchmarks/leaderboard.py --keep    # keep the database: the next run reuses it

Votes: each prompt is answered by `--answers` models drawn at random, its answers are
paired into tasks (display order shuffled), and each task is judged by `--raters`
annotators, in time order, from Bradley-Terry with strengths ~ N(0, 1), 10% ties. Goal:
the whole leaderboard with intervals in under 2 s at 1,000,000 votes over 100 models,
and the same ranking as choix.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TIE_SHARE = 0.1
GOAL_SECONDS = 2.0


def database_urls() -> tuple[str, str, str]:
    """(server URL, benchmark database URL, benchmark database name) from DATABASE_URL."""
    url = os.environ.get("DATABASE_URL")
    if not url:
        sys.exit(
            "Set DATABASE_URL (postgres://user@host:port/name): the benchmark creates a "
            "database beside that one."
        )
    parts = urlsplit(url)
    name = f"{parts.path.lstrip('/') or 'prefhub'}_bench_leaderboard"
    server = urlunsplit(parts._replace(scheme="postgresql", path="/postgres"))
    return server, urlunsplit(parts._replace(path=f"/{name}")), name


def create_database(server: str, name: str) -> bool:
    """Create the database if missing; True if it was created."""
    import psycopg

    with psycopg.connect(server, autocommit=True) as connection:
        if connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            return False
        connection.execute(f'CREATE DATABASE "{name}"')
        return True


def drop_database(server: str, name: str) -> None:
    import psycopg

    with psycopg.connect(server, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def setup_django(url: str) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_DEBUG", "0")
    os.environ.setdefault("DJANGO_SECRET_KEY", "django-insecure-benchmark-only-key")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()


def seed(*, votes: int, models: int, answers: int, raters: int, seed: int) -> tuple[int, dict]:
    """A project with `votes` pairwise votes; returns its id and the true strengths by name.

    A project seeded earlier with the same figures is reused (its strengths are drawn
    again from the same seed).
    """
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from feedback.models import Project, ProjectMember

    rng = np.random.default_rng(seed)
    names = [f"model-{index:03d}" for index in range(models)]
    strengths = rng.normal(0.0, 1.0, models)
    truth = dict(zip(names, strengths.tolist(), strict=True))
    title = f"bench-leaderboard-{votes}-{models}-{answers}-{raters}-{seed}"
    existing = Project.objects.filter(name=title).first()
    if existing is not None:
        return existing.pk, truth

    started = time.perf_counter()
    pairs_per_prompt = answers // 2
    prompts = -(-votes // (pairs_per_prompt * raters))
    tasks = prompts * pairs_per_prompt
    # Each prompt's answers come from `answers` distinct models, paired in display order.
    answered_by = np.argsort(rng.random((prompts, models)), axis=1)[:, :answers]
    first = answered_by[:, 0::2][:, :pairs_per_prompt].ravel()
    second = answered_by[:, 1::2][:, :pairs_per_prompt].ravel()
    gap = strengths[first] - strengths[second]
    # Each task's raters: ties at TIE_SHARE, else Bradley-Terry on the strengths.
    p_first = 1.0 / (1.0 + np.exp(-gap))
    roll = rng.random((tasks, raters))
    choice = np.where(
        roll < TIE_SHARE, 2, np.where(roll < TIE_SHARE + (1 - TIE_SHARE) * p_first[:, None], 0, 1)
    ).ravel()[:votes]

    with transaction.atomic():
        project = Project.objects.create(
            name=title, collects_pairwise=True, annotators_per_task=raters
        )
        users = []
        for index in range(raters):
            user, _ = get_user_model().objects.get_or_create(username=f"bench-rater-{index}")
            ProjectMember.objects.create(project=project, user=user, role="annotator")
            users.append(user.pk)
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
            with cursor.copy(
                "COPY feedback_prompt (id, project_id, external_id, text, metadata, created_at)"
                " FROM STDIN"
            ) as copy:
                for index in range(prompts):
                    topic = ("code", "maths", "writing")[index % 3]
                    copy.write_row(
                        (
                            ids["prompt"] + index,
                            project.pk,
                            f"p{index}",
                            f"Question {index} about {topic}?",
                            f'{{"topic": "{topic}"}}',
                            "now",
                        )
                    )
            # Lengths and Markdown vary by answer, not only by model.
            lengths = rng.integers(1, 6, (prompts, answers))
            with cursor.copy(
                "COPY feedback_response (id, prompt_id, text, model_name, generation_params,"
                " created_at) FROM STDIN"
            ) as copy:
                for index in range(prompts):
                    for slot in range(answers):
                        text = "- step\n" * int(lengths[index, slot]) + "**Answer** here."
                        copy.write_row(
                            (
                                ids["response"] + index * answers + slot,
                                ids["prompt"] + index,
                                text,
                                names[answered_by[index, slot]],
                                "{}",
                                "now",
                            )
                        )
            with cursor.copy(
                "COPY feedback_task (id, project_id, prompt_id, layout, priority, slots_taken,"
                " is_full, display_seed, created_at) FROM STDIN"
            ) as copy:
                for task in range(tasks):
                    prompt = ids["prompt"] + task // pairs_per_prompt
                    row = (ids["task"] + task, project.pk, prompt, "pair", 0, raters, True, task)
                    copy.write_row((*row, "now"))
            with cursor.copy(
                "COPY feedback_taskresponse (id, task_id, response_id, position) FROM STDIN"
            ) as copy:
                for task in range(tasks):
                    prompt, pair = divmod(task, pairs_per_prompt)
                    for position in range(2):
                        response = ids["response"] + prompt * answers + 2 * pair + position
                        link = ids["taskresponse"] + 2 * task + position
                        copy.write_row((link, ids["task"] + task, response, position))
            with cursor.copy(
                "COPY feedback_submission (id, task_id, annotator_id, created_at, is_current,"
                " spans_checked) FROM STDIN"
            ) as copy:
                start = datetime(2026, 1, 1, tzinfo=UTC)
                for vote in range(votes):
                    task, rater = divmod(vote, raters)
                    at = start + timedelta(seconds=vote)  # the online Elo's order
                    row = (ids["submission"] + vote, ids["task"] + task, users[rater], at)
                    copy.write_row((*row, True, False))
            with cursor.copy(
                "COPY feedback_pairwisefeedback (id, submission_id, choice, strength) FROM STDIN"
            ) as copy:
                labels = ("A", "B", "tie")
                for vote in range(votes):
                    label = labels[choice[vote]]
                    strength = None if label == "tie" else 1 + vote % 3
                    copy.write_row(
                        (ids["pairwisefeedback"] + vote, ids["submission"] + vote, label, strength)
                    )
            for table in ids:
                cursor.execute(
                    f"SELECT setval(pg_get_serial_sequence('feedback_{table}', 'id'),"
                    f" (SELECT max(id) FROM feedback_{table}))"
                )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    print(f"seeded {votes:,} votes in {time.perf_counter() - started:.1f} s", flush=True)
    return project.pk, truth


def _next_id(cursor, table: str) -> int:
    cursor.execute(f"SELECT coalesce(max(id), 0) + 1 FROM feedback_{table}")
    return cursor.fetchone()[0]
