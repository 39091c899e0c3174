"""CPU cost of one judgment (a pairwise answer, replied with the next card), in process, on a
kept database.

Run after `python benchmarks/annotate_load.py --keep` (same `--database`):

    python benchmarks/annotate_profile.py --judgments 300 [--profile 25]

The requests go through Django's whole handler (middleware, CSRF, session, templates) with
the production settings the load test's web server uses, from one thread: no HTTP, no queueing.
Prints CPU milliseconds per request of this process and of its PostgreSQL backend (read from
/proc, so the server must run on this machine), queries per request, the floor (the cheapest
annotator request: middleware, session, user, a one-line partial), and with --profile the
top functions by cumulative time.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import random
import statistics
import sys
import time
from collections import defaultdict
from contextlib import nullcontext
from urllib.parse import urlencode

sys.path.insert(0, os.path.dirname(__file__))
from annotators import HTMX, PG, answer_for, setup_django
from cpu_meter import cpu_seconds

FORM = "application/x-www-form-urlencoded"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", default="prefhub_bench_annotate")
    parser.add_argument("--judgments", type=int, default=300)
    parser.add_argument("--annotators", type=int, default=8, help="bench0..N-1 take turns")
    parser.add_argument("--profile", type=int, default=0, help="print the top N functions")
    parser.add_argument(
        "--statements", action="store_true", help="PostgreSQL CPU of each statement, averaged"
    )
    args = parser.parse_args()
    for name, value in (
        ("DJANGO_DEBUG", "0"),
        ("DJANGO_SECURE_SSL_REDIRECT", "0"),
        ("DJANGO_SECURE_COOKIES", "0"),
        ("DATABASE_CONN_MAX_AGE", "600"),
    ):
        os.environ[name] = value
    setup_django(f"{PG}/{args.database}")
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from feedback.models import Project

    project_id = Project.objects.get(name="Load test").pk
    clients = []
    for i in range(args.annotators):
        client = Client(enforce_csrf_checks=True, HTTP_HOST="127.0.0.1")
        client.get("/accounts/login/")
        token = client.cookies["csrftoken"].value
        client.post(
            "/accounts/login/",
            {"username": f"bench{i}", "password": "bench-pass", "csrfmiddlewaretoken": token},
        )
        clients.append((client, {**HTMX, "X-CSRFToken": client.cookies["csrftoken"].value}))
    rng = random.Random(1)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]

    cards: dict[int, str] = {}  # each client's card on screen

    def judge(n: int, cost: dict[str, list[float]]) -> None:
        """One judgment: answer the card shown; the reply is the next card. Adds the request's
        CPU ms (here, in PostgreSQL) and queries."""
        client, headers = clients[n % len(clients)]
        if n not in cards:  # as the page: POSTed once for the first card
            cards[n] = client.post(f"/projects/{project_id}/", "", FORM, headers=headers)
            cards[n] = cards[n].content.decode()
        task_id, data = answer_for(cards[n], rng)
        cpu, db = time.process_time(), cpu_seconds([backend])[backend]
        with CaptureQueriesContext(connection) as queries:
            # As htmx sends it: url-encoded (the test client's default is multipart).
            url = f"/projects/{project_id}/tasks/{task_id}/submit/"
            reply = client.post(url, urlencode(data), FORM, headers=headers)
            assert reply.status_code == 200, reply.status_code
        cost["app"].append((time.process_time() - cpu) * 1000)
        cost["db"].append((cpu_seconds([backend])[backend] - db) * 1000)
        cost["queries"].append(len(queries))
        cards[n] = reply.content.decode()

    for n in range(len(clients)):  # warm: templates compiled, caches filled
        judge(n, defaultdict(list))
    cost: dict[str, list[float]] = defaultdict(list)
    by_statement: dict[str, list[float]] = defaultdict(list)

    def measure_statement(execute, sql, params, many, context):
        """The backend's CPU for one statement, keyed by the statement's start."""
        before = cpu_seconds([backend])[backend]
        try:
            return execute(sql, params, many, context)
        finally:
            spent = (cpu_seconds([backend])[backend] - before) * 1000
            by_statement[" ".join(sql.split())[:90]].append(spent)

    profiler = cProfile.Profile(time.process_time)  # CPU, not waits
    with connection.execute_wrapper(measure_statement) if args.statements else nullcontext():
        for n in range(args.judgments):
            if args.profile:
                profiler.enable()
            judge(n % len(clients), cost)
            profiler.disable()
    for name, values in cost.items():
        unit = "" if name.endswith("queries") else " CPU ms"
        print(
            f"{name + unit:18s} mean {statistics.fmean(values):6.2f}  "
            f"p50 {statistics.median(values):6.2f}"
        )
    total = sum(statistics.fmean(v) for k, v in cost.items() if not k.endswith("queries"))
    print(f"per judgment (Django + PostgreSQL): {total:.2f} ms CPU; load {os.getloadavg()}")
    if args.statements:
        print("PostgreSQL CPU ms a judgment, by statement (the rest: COMMIT and the protocol):")
        for sql, values in sorted(by_statement.items(), key=lambda kv: -sum(kv[1])):
            share, times = sum(values) / args.judgments, len(values) / args.judgments
            print(f"  {share:5.2f}  x{times:4.2f}  {sql}")
    # The floor under any view: the same middleware, session, user and a one-line partial.
    client, headers = clients[0]
    floor = []
    for _ in range(args.judgments):
        cpu = time.process_time()
        client.get(f"/projects/{project_id}/progress/", headers=headers)
        floor.append((time.process_time() - cpu) * 1000)
    print(f"floor: the progress partial, {statistics.median(floor):.2f} ms CPU a request (p50)")
    if args.profile:
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("cumulative").print_stats(args.profile)
        stats.sort_stats("tottime").print_stats(args.profile)
        print(out.getvalue())


if __name__ == "__main__":
    main()
