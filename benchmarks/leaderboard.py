"""The leaderboard of a large project, end to end, beside choix on the same votes.

Stores `--votes` pairwise votes over `--models` models in the real tables of a throwaway
PostgreSQL database (COPY; the server and user are DATABASE_URL's, the database is
`<its name>_bench_leaderboard`), then times what the page and the API run: the counts read
in SQL, the Bradley-Terry fit, `--resamples` bootstrap refits over prompts, style control,
online Elo. Beside it, on the same vote list in the same run, `choix.ilsr_pairwise` (a tie
given as one win each way) and the rank correlations of the two fits with each other and
with the strengths the votes were drawn from.

The app counts each vote into PairwiseTally as it stores it (`submission_create`); votes
stored by COPY are counted afterwards by `pairwise_tally_rebuild`, the SQL of the
migration's backfill. That count is shown, not timed with the leaderboard: the leaderboard
reads the counts, a row per voted task, and its first call the project's responses (model,
prompt, style), which later calls find in memory. Times are wall-clock; CPU seconds are
this process's plus those of its database server process (read from /proc when the
server is local).

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

import argparse
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
    from feedback.services import pairwise_tally_rebuild

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
        stored = time.perf_counter()
        pairwise_tally_rebuild(project=project)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    print(
        f"seeded {votes:,} votes in {stored - started:.1f} s,"
        f" counted into PairwiseTally in {time.perf_counter() - stored:.1f} s",
        flush=True,
    )
    return project.pk, truth


def _next_id(cursor, table: str) -> int:
    cursor.execute(f"SELECT coalesce(max(id), 0) + 1 FROM feedback_{table}")
    return cursor.fetchone()[0]


def vote_list(project_id: int, names: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every vote as (first model, second model, outcome 0/1/2 = first, second, tie)."""
    from django.db import connection

    index = {name: n for n, name in enumerate(names)}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT f.model_name, s.model_name,"
            " CASE v.choice WHEN 'A' THEN 0 WHEN 'B' THEN 1 ELSE 2 END"
            " FROM feedback_pairwisefeedback v"
            " JOIN feedback_submission u ON u.id = v.submission_id"
            " JOIN feedback_task t ON t.id = u.task_id"
            " JOIN feedback_taskresponse fl ON fl.task_id = t.id AND fl.position = 0"
            " JOIN feedback_taskresponse sl ON sl.task_id = t.id AND sl.position = 1"
            " JOIN feedback_response f ON f.id = fl.response_id"
            " JOIN feedback_response s ON s.id = sl.response_id"
            " WHERE t.project_id = %s AND u.is_current",
            [project_id],
        )
        rows = cursor.fetchall()
    first = np.array([index[row[0]] for row in rows])
    second = np.array([index[row[1]] for row in rows])
    return first, second, np.array([row[2] for row in rows])


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - started


def server_cpu_seconds() -> float:
    """CPU seconds of this connection's PostgreSQL server process so far (NaN where its
    /proc entry cannot be read: another machine). Parallel workers are not included."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_timed(function, *args, **kwargs):
    """(result, wall seconds, CPU seconds of this process and of its database server)."""
    server, process = server_cpu_seconds(), time.process_time()
    result, wall = timed(function, *args, **kwargs)
    return result, wall, time.process_time() - process + server_cpu_seconds() - server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--votes", type=int, default=1_000_000)
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--answers", type=int, default=10, help="models answering each prompt")
    parser.add_argument("--raters", type=int, default=5, help="votes on each task")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the database for a rerun")
    args = parser.parse_args()
    if args.answers < 2 or args.answers > args.models:
        parser.error("--answers is between 2 and --models")

    server, url, name = database_urls()
    create_database(server, name)
    try:
        return run(args, url)
    finally:
        if not args.keep:
            from django.db import connections

            connections.close_all()
            drop_database(server, name)


def run(args: argparse.Namespace, url: str) -> int:
    setup_django(url)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    project_id, truth = seed(
        votes=args.votes,
        models=args.models,
        answers=args.answers,
        raters=args.raters,
        seed=args.seed,
    )
    import choix
    from scipy.stats import kendalltau, spearmanr

    from feedback import leaderboard as lb
    from feedback import selectors
    from feedback.models import Project

    project = Project.objects.get(pk=project_id)
    print(f"{args.votes:,} votes, {args.models} models, {args.resamples} resamples", flush=True)
    # The first call pays for imports (scipy.sparse), a cold cache and the read of the
    # project's responses, which later calls find in memory (`_response_table`, until an
    # edit of a response); both are shown.
    board, cold, cold_cpu = cpu_timed(
        selectors.project_leaderboard,
        project=project,
        resamples=args.resamples,
    )
    board, warm, warm_cpu = cpu_timed(
        selectors.project_leaderboard,
        project=project,
        resamples=args.resamples,
    )
    _, with_elo, with_elo_cpu = cpu_timed(
        selectors.project_leaderboard, project=project, resamples=args.resamples, online_elo=True
    )
    # The same steps one by one (the selector's private parts), for where the time goes.
    with selectors._roomy_queries():
        counts, counting, counting_cpu = cpu_timed(
            selectors._leaderboard_counts, project, "all", None, None
        )
    names = counts.names
    rated = (counts.first >= 0) & (counts.second >= 0) & (counts.first != counts.second)
    comparisons = lb.Comparisons(
        n_models=len(names),
        prompt=np.unique(counts.prompt[rated], return_inverse=True)[1],
        first=counts.first[rated],
        second=counts.second[rated],
        first_wins=counts.first_wins[rated],
        second_wins=counts.second_wins[rated],
        ties=counts.ties[rated],
    )
    table, folding, folding_cpu = cpu_timed(lb.pair_table, comparisons)
    strengths, fitting, fitting_cpu = cpu_timed(lb.bt_fit, table)
    _, resampling, resampling_cpu = cpu_timed(
        lb.bootstrap, table, strengths, resamples=args.resamples
    )

    (first, second, outcome), fetching = timed(vote_list, project_id, names)
    # choix takes (winner, loser) pairs; a tie is one win each way.
    winners = np.concatenate([first[outcome == 0], second[outcome == 1], first[outcome == 2]])
    losers = np.concatenate([second[outcome == 0], first[outcome == 1], second[outcome == 2]])
    winners = np.concatenate([winners, second[outcome == 2]])
    losers = np.concatenate([losers, first[outcome == 2]])
    data = list(zip(winners.tolist(), losers.tolist(), strict=True))
    theirs, choix_seconds, choix_cpu = cpu_timed(choix.ilsr_pairwise, len(names), data)
    # Our fit on choix's likelihood: there a tie is a win each way, not half a win.
    same_likelihood = lb.bt_fit(
        lb.pair_table(
            lb.Comparisons(
                n_models=len(names),
                prompt=np.zeros(len(first), dtype=np.int64),
                first=first,
                second=second,
                first_wins=(outcome != 1).astype(np.float64),
                second_wins=(outcome != 0).astype(np.float64),
                ties=np.zeros(len(first)),
            )
        )
    )

    ours = np.array([next(m.rating for m in board.models if m.model == n) for n in names])
    true = np.array([truth[n] for n in names])
    rank_ours_choix = (spearmanr(ours, theirs).statistic, kendalltau(ours, theirs).statistic)
    rank_same_choix = (
        spearmanr(same_likelihood, theirs).statistic,
        kendalltau(same_likelihood, theirs).statistic,
    )
    rank_ours_truth = (spearmanr(ours, true).statistic, kendalltau(ours, true).statistic)
    rank_choix_truth = (spearmanr(theirs, true).statistic, kendalltau(theirs, true).statistic)

    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'step':<58} {'seconds':>8} {'CPU s':>7}")
    for label, seconds, cpu in [
        ("leaderboard, first call (reads the responses too)", cold, cold_cpu),
        ("leaderboard, second call (counts, fit, bootstrap, style)", warm, warm_cpu),
        ("leaderboard with online Elo (when asked)", with_elo, with_elo_cpu),
        (f"  counts read in SQL ({len(counts.task):,} rows)", counting, counting_cpu),
        ("  folded into model pairs", folding, folding_cpu),
        (f"  Bradley-Terry fit on {len(table.i):,} pair counts", fitting, fitting_cpu),
        (
            f"  {args.resamples} bootstrap refits over {table.n_prompts:,} prompts",
            resampling,
            resampling_cpu,
        ),
        (f"vote list for choix ({len(first):,} votes, not timed below)", fetching, None),
        (f"choix.ilsr_pairwise on {len(data):,} (winner, loser) pairs", choix_seconds, choix_cpu),
    ]:
        cpu_text = "" if cpu is None else f"{cpu:.3f}"
        print(f"{label:<58} {seconds:>8.3f} {cpu_text:>7}")
    for label, (spearman, kendall) in [
        ("ours vs choix", rank_ours_choix),
        ("ours, choix's tie rule, vs choix", rank_same_choix),
        ("ours vs truth", rank_ours_truth),
        ("choix vs truth", rank_choix_truth),
    ]:
        print(f"Spearman / Kendall, {label + ':':<34} {spearman:.4f} / {kendall:.4f}")
    failures = []
    if warm > GOAL_SECONDS:
        failures.append(f"leaderboard took {warm:.2f} s (goal {GOAL_SECONDS} s)")
    if rank_same_choix[1] < 1 - 1e-9:
        failures.append(f"ranking differs from choix's (Kendall {rank_same_choix[1]:.4f})")
    for failure in failures:
        print("MISSED:", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
