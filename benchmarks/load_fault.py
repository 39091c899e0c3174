"""Load and faults: 50 annotators submit while a judge job runs; a worker is SIGKILLed,
PostgreSQL and Redis are each restarted once. Then every answer must be stored once.

Run from the repository root, as root (PostgreSQL is started as the `postgres` user):

    python benchmarks/load_fault.py                 # about 90 s; --duration S for longer

Everything runs on 127.0.0.1 in throwaway instances this script starts and removes: its
own PostgreSQL cluster (initdb into a temporary directory, a free port) and its own
redis-server (append-only file, a free port), never the machine's shared ones; granian
and two Celery workers (solo pool) on those.

What happens, over --duration seconds of traffic:
1. A project of 6,000 open tasks (3 annotators each) is seeded, and a judge job (a tiny
   local model) over 40 pair tasks is started.
2. 50 simulated annotators log in and repeat: ask for the next task, submit an answer.
   A request that fails (connection error or 5xx) is sent again, the same answer with the
   card's submit key, up to --retries times with backoff: a re-sent answer that had been
   stored is answered as the first was, not stored again. Stored answers are counted per
   (task, annotator), superseded copies included, so a doubled answer would show.
3. Once the job has progress, the worker running it is SIGKILLed; at 45% of the time
   PostgreSQL is restarted (fast shutdown: every session is cut), at 70% Redis.
4. Afterwards it waits (at most --job-timeout s) for the job, then counts and prints
   submitted / acknowledged / stored / duplicated / lost, tasks over their overlap, and
   the job's attempts and rows. Exit status 1 if anything was lost or doubled.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from glob import glob
from pathlib import Path

import httpx
import psycopg

sys.path.insert(0, os.path.dirname(__file__))
from annotators import (
    HTMX,
    OVERLAP,
    ROOT,
    answer_for,
    create_database,
    log,
    seed,
    setup_django,
    start_web,
)

DATABASE = "prefhub_load_fault"
JUDGED_TASKS = 40


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


# --- Throwaway services ---------------------------------------------------------------


class Postgres:
    """A PostgreSQL cluster of our own, run as the postgres user, so that restarting it
    disturbs no one else's tests."""

    def __init__(self, root: Path) -> None:
        self.bin = Path(sorted(glob("/usr/lib/postgresql/*/bin"))[-1])
        self.dir = root / "pg"
        self.port = free_port()
        self.url = f"postgres://postgres@127.0.0.1:{self.port}"
        self.dir.mkdir()
        shutil.chown(root, "postgres")
        shutil.chown(self.dir, "postgres")
        self._as_postgres("initdb", "-D", str(self.dir), "-A", "trust", "-U", "postgres")
        conf = self.dir / "postgresql.conf"
        with conf.open("a") as out:
            out.write("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n")
            out.write("listen_addresses = '127.0.0.1'\nmax_connections = 100\n")

    def _as_postgres(self, program: str, *args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(self.bin / program), *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd="/tmp",
        )

    def _ctl(self, action: str) -> None:
        options = f"-p {self.port} -k {self.dir}"
        log_file = str(self.dir / "server.log")
        self._as_postgres(
            "pg_ctl", "-D", str(self.dir), "-o", options, "-l", log_file, "-w", "-m", "fast", action
        )

    def start(self) -> None:
        self._ctl("start")

    def restart(self) -> None:
        self._ctl("restart")

    def stop(self) -> None:
        if (self.dir / "postmaster.pid").exists():
            self._ctl("stop")


class Redis:
    """A redis-server of our own; its append-only file keeps queued and unacknowledged
    messages over a restart, as a production Redis for Celery should."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.dir = root / "redis"
        self.dir.mkdir()
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--daemonize", "no",
             "--dir", str(self.dir), "--appendonly", "yes", "--save", ""],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        wait_until(self.ready, 10, "redis-server")

    def ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: Redis flushes its append-only file and exits
            self.proc.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()


class Worker:
    def __init__(self, name: str, env: dict[str, str], log_path: Path) -> None:
        self.name, self.log_path = name, log_path
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "worker", "worker", "--pool=solo",
             "--loglevel=INFO", "--without-gossip", "--without-mingle", "-n", f"{name}@%h"],
            cwd=ROOT, env=env, stdout=log_path.open("ab"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


# --- Annotators -----------------------------------------------------------------------


@dataclass
class Client:
    username: str
    submitted: int = 0  # answers sent (each counted once however often it was re-sent)
    acknowledged: list[int] = field(default_factory=list)  # task ids whose answer was taken
    failed_attempts: int = 0  # connection errors and 5xx replies
    retried: int = 0  # answers that needed more than one attempt
    gave_up: list[int] = field(default_factory=list)  # task ids never acknowledged
    refused: list[str] = field(default_factory=list)  # 4xx replies


def send(
    client: Client, attempt: Callable[[], httpx.Response], retries: int
) -> httpx.Response | None:
    """The reply, after up to `retries` more tries on a connection error or 5xx."""
    for tries in range(retries + 1):
        try:
            reply = attempt()
            if reply.status_code < 500:
                return reply
        except httpx.TransportError:
            pass
        client.failed_attempts += 1
        time.sleep(min(0.25 * 2**tries, 2.0) * random.uniform(0.5, 1.5))
    return None


def session_cookie(username: str) -> str:
    """A logged-in session made in the database: logging 50 annotators in through the form
    would spend a minute of CPU on password hashing before any traffic."""
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.auth.models import User

    user = User.objects.get(username=username)
    session = import_module(settings.SESSION_ENGINE).SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[-1]
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return session.session_key


def annotate(
    client: Client,
    base: str,
    project_id: int,
    session: str,
    start: threading.Barrier,
    deadline: list[float],
    retries: int,
) -> None:
    rng = random.Random(client.username)
    with httpx.Client(base_url=base, timeout=10, cookies={"sessionid": session}) as http:
        http.get(f"/projects/{project_id}/")  # the page sets the CSRF cookie
        headers = {**HTMX, "X-CSRFToken": http.cookies["csrftoken"]}
        start.wait()
        card = None  # the card shown: the page's first, then each answer's reply
        while time.monotonic() < deadline[0]:
            if card is None:
                card = send(
                    client, lambda: http.post(f"/projects/{project_id}/", headers=headers), retries
                )
                if card is None:
                    continue
            answer = answer_for(card.text, rng) if card.status_code == 200 else None
            if answer is None:
                client.refused.append(f"card: {card.status_code}")
                return  # no task left for this annotator
            task_id, data = answer
            url = f"/projects/{project_id}/tasks/{task_id}/submit/"
            client.submitted += 1
            before = client.failed_attempts
            reply = send(
                client,
                lambda url=url, data=data: http.post(url, data=data, headers=headers),
                retries,
            )
            client.retried += client.failed_attempts > before
            card = None
            if reply is None:
                client.gave_up.append(task_id)
            elif reply.status_code == 200:  # taken; the reply is the next card
                client.acknowledged.append(task_id)
                card = reply
            else:
                client.refused.append(f"submit {task_id}: {reply.status_code}")
            time.sleep(rng.uniform(0.05, 0.25))  # a (short) look at the next card


# --- Check ----------------------------------------------------------------------------


def count(db_url: str, clients: list[Client], job_id: int) -> dict[str, int]:
    acked = {(c.username, t) for c in clients for t in c.acknowledged}
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT u.username, s.task_id, count(*) FILTER (WHERE s.is_current),"
            " count(*) FROM feedback_submission s JOIN auth_user u ON u.id = s.annotator_id"
            " WHERE u.username LIKE 'bench%%' GROUP BY u.username, s.task_id"
        ).fetchall()
        current = {(user, task): n for user, task, n, _ in rows}
        copies = sum(total - 1 for *_, total in rows)
        over = conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM feedback_submission WHERE is_current"
            " AND annotator_id IS NOT NULL GROUP BY task_id"
            f" HAVING count(*) > {OVERLAP}) o"
        ).fetchone()[0]
        slots = conn.execute(
            "SELECT count(*) FROM feedback_task t WHERE t.slots_taken <> (SELECT count(*)"
            " FROM feedback_assignment a WHERE a.task_id = t.id"
            " AND a.status IN ('active', 'submitted'))"
        ).fetchone()[0]
        status, attempts, done, total = conn.execute(
            "SELECT status, attempts, done, total FROM feedback_job WHERE id = %s", [job_id]
        ).fetchone()
        outputs, distinct_outputs = conn.execute(
            "SELECT count(*), count(DISTINCT (task_id, kind, swapped)) FROM feedback_judgeoutput"
            " WHERE job_id = %s",
            [job_id],
        ).fetchone()
        judged = conn.execute(
            "SELECT count(*), count(DISTINCT task_id) FROM feedback_submission"
            " WHERE job_id = %s AND is_current",
            [job_id],
        ).fetchone()
    return {
        "submitted": sum(c.submitted for c in clients),
        "acknowledged": len(acked),
        "stored": sum(1 for n in current.values() if n == 1),
        # Stored more than once, a superseded copy included: a re-sent answer stored again.
        "duplicated": sum(1 for *_, total in rows if total > 1),
        "lost": sum(1 for key in acked if current.get(key, 0) == 0),
        "stored without an acknowledgement": sum(
            1 for k, n in current.items() if n and k not in acked
        ),
        "superseded copies from re-sent answers": copies,
        f"tasks with more than {OVERLAP} annotators": over,
        "tasks whose slot counter disagrees with their leases": slots,
        "failed attempts (connection error or 5xx)": sum(c.failed_attempts for c in clients),
        "answers re-sent after a failure": sum(c.retried for c in clients),
        "answers given up after all retries": sum(len(c.gave_up) for c in clients),
        "refused (4xx)": sum(len(c.refused) for c in clients),
        f"job {status}: attempts": attempts,
        f"job done of {total}": done,
        "job outputs": outputs,
        "job outputs doubled": outputs - distinct_outputs,
        "job answers doubled": judged[0] - judged[1],
    }


# --- Run ------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=40.0, help="seconds of traffic")
    parser.add_argument("--annotators", type=int, default=50)
    parser.add_argument("--tasks", type=int, default=6000)
    parser.add_argument("--retries", type=int, default=8, help="per request, after a failure")
    parser.add_argument("--job-timeout", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=2, help="web server processes")
    parser.add_argument("--threads", type=int, default=8, help="web server threads per process")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: the throwaway PostgreSQL is started as the postgres user")

    root = Path(tempfile.mkdtemp(prefix="prefhub-load-fault-"))
    postgres, redis = Postgres(root), Redis(root)
    server: subprocess.Popen | None = None
    workers: list[Worker] = []
    started = time.monotonic()
    try:
        postgres.start()
        redis.start()
        db_url = f"{postgres.url}/{DATABASE}"
        create_database(DATABASE, postgres.url)
        model_dir = root / "tiny-lm"
        env = {
            "CELERY_BROKER_URL": redis.url,
            # Unacknowledged messages of a killed worker come back after this many seconds.
            "CELERY_VISIBILITY_TIMEOUT": "10",
            "PREFHUB_LOCAL_MODEL_DIRS": str(root),
            "PREFHUB_DEVICE": "cpu",
            "OMP_NUM_THREADS": "1",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "JOB_HEARTBEAT_SECONDS": "2",
        }
        os.environ.update(env)
        os.environ.setdefault("DJANGO_SECRET_KEY", "django-insecure-benchmark-only-key")
        worker_env = {
            **os.environ,
            "DATABASE_URL": db_url,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATABASE_CONN_MAX_AGE": "600",
        }
        # Workers take longest to start (torch): they boot while the project is seeded.
        workers = [Worker(f"fault{i}", worker_env, root / f"worker{i}.log") for i in range(2)]
        setup_django(db_url)
        project_id = seed(db_url, args.tasks, args.annotators, past_records=0)
        judge_id = judge_create(model_dir)
        port = free_port()
        # Each request cut by a restart logs a traceback: to a file, the clients count them.
        server = start_web(db_url, port, args.workers, args.threads, root / "web.log")
        for worker in workers:
            wait_until(lambda w=worker: " ready." in w.output(), 120, f"worker {worker.name}")

        clients = [Client(f"bench{i}") for i in range(args.annotators)]
        start = threading.Barrier(args.annotators + 1)
        deadline = [0.0]  # set when every annotator holds a session
        threads = [
            threading.Thread(
                target=annotate,
                args=(
                    c,
                    f"http://127.0.0.1:{port}",
                    project_id,
                    session_cookie(c.username),
                    start,
                    deadline,
                    args.retries,
                ),
            )
            for c in clients
        ]
        for thread in threads:
            thread.start()
        deadline[0] = time.monotonic() + args.duration
        job_id = judge_job_start(project_id, judge_id)
        start.wait()
        log(f"set up in {time.monotonic() - started:.0f} s; {args.annotators} annotators for "
            f"{args.duration:.0f} s while judge job {job_id} runs")  # fmt: skip
        faults(db_url, job_id, workers, postgres, redis, deadline[0], args.duration)
        for thread in threads:
            thread.join()
        log("traffic over; waiting for the judge job")
        wait_job(db_url, job_id, args.job_timeout)
        figures = count(db_url, clients, job_id)
        if not any(name.startswith("job succeeded") for name in figures):
            for worker in workers:
                log(f"--- worker {worker.name}, last lines:\n{worker.output()[-3000:]}")
    finally:
        for worker in workers:
            worker.stop()
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(30)
        redis.stop()
        postgres.stop()
        shutil.rmtree(root, ignore_errors=True)

    log(f"\n{args.annotators} annotators, {args.duration:.0f} s, {os.cpu_count()} CPUs; "
        f"whole run {time.monotonic() - started:.0f} s")  # fmt: skip
    for name, value in figures.items():
        log(f"  {name}: {value:,}")
    bad = (
        figures["duplicated"]
        + figures["lost"]
        + figures[f"tasks with more than {OVERLAP} annotators"]
        + figures["job outputs doubled"]
        + figures["job answers doubled"]
    )
    # Succeeded, and redone by another worker after the SIGKILL: a second attempt.
    job_ok = figures.get("job succeeded: attempts", 0) >= 2
    log("OK" if not bad and job_ok else "FAILED")
    sys.exit(0 if not bad and job_ok else 1)


def judge_create(model_dir: Path) -> int:
    """A judge on a tiny local model (random weights: its verdicts rarely parse, which is
    fine here: every call's output is stored either way)."""
    from feedback.models import Judge
    from worker.ml.tiny import build_tiny_causal_lm

    build_tiny_causal_lm(model_dir)
    judge = Judge.objects.create(
        name="tiny judge",
        model_name=str(model_dir),
        parameters={"max_new_tokens": 24, "batch_size": 1},
    )
    return judge.pk


def judge_job_start(project_id: int, judge_id: int) -> int:
    """A judge job over the last pair tasks, enqueued on our Redis."""
    from feedback.jobs import job_start
    from feedback.models import Project, Task

    project = Project.objects.get(pk=project_id)
    tasks = Task.objects.filter(project=project, layout="pair").order_by("-id")[:JUDGED_TASKS]
    job = job_start(
        project=project,
        kind="judge",
        params={"judge_id": judge_id, "kinds": ["pairwise"], "task_ids": [t.pk for t in tasks]},
    )
    return job.pk


def job_row(db_url: str, job_id: int) -> tuple[str, int]:
    try:
        with psycopg.connect(db_url, connect_timeout=2) as conn:
            return conn.execute(
                "SELECT status, done FROM feedback_job WHERE id = %s", [job_id]
            ).fetchone()
    except psycopg.OperationalError:
        return ("unknown", 0)


def faults(
    db_url: str,
    job_id: int,
    workers: list[Worker],
    postgres: Postgres,
    redis: Redis,
    deadline: float,
    duration: float,
) -> None:
    """SIGKILL the worker running the job once it has progress, then restart PostgreSQL
    at 45% of the time and Redis at 70%."""
    begin = deadline - duration
    wait_until(
        lambda: job_row(db_url, job_id)[1] > 0 or time.monotonic() > begin + 0.3 * duration,
        duration,
        "the judge job",
    )
    # "run_judge[<id>] received": the banner of every worker names the task too.
    running = [w for w in workers if "run_judge[" in w.output()]
    victim = running[0] if running else workers[0]
    status, done = job_row(db_url, job_id)
    victim.kill()
    log(f"{time.monotonic() - begin:5.1f} s: SIGKILLed worker {victim.name} (job {status}, "
        f"{done} done)")  # fmt: skip
    time.sleep(max(0.0, begin + 0.45 * duration - time.monotonic()))
    postgres.restart()
    log(f"{time.monotonic() - begin:5.1f} s: PostgreSQL restarted")
    time.sleep(max(0.0, begin + 0.7 * duration - time.monotonic()))
    redis.restart()
    log(f"{time.monotonic() - begin:5.1f} s: Redis restarted")


def wait_job(db_url: str, job_id: int, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if job_row(db_url, job_id)[0] not in ("queued", "running", "unknown"):
            return
        time.sleep(0.5)


if __name__ == "__main__":
    main()
