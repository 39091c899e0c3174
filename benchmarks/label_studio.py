"""Label Studio 1.23.2 as the peer in side-by-side benchmarks: install, serve, drive.

Used by `annotate_load.py --vs-label-studio`, `import_speed.py` and `export_speed.py`;
run those, not this. Label Studio lives in its own virtual environment (`--ls-venv`,
default /work/lsvenv), created here when missing with
`python -m venv` + `pip install label-studio==1.23.2 uwsgi psycopg2-binary`; its data
folder is a temporary directory. Nothing of it is inside the repository.

How it is served, as its Docker image does (deploy/uwsgi.ini of Label Studio): uwsgi's
HTTP router in front of `core.wsgi:application`, master, `processes = 2 x cores` (4 here),
1 thread each, lazy apps, thunder lock, request logging off; two changes: the router keeps
connections alive (for the keep-alive runs), and harakiri and the router's timeout are 30
minutes, not 2 and 5, so that a long export finishes. DEBUG off; PostgreSQL
(DJANGO_DB=default with the POSTGRE_* variables) in a database of its own. Its settings keep
CONN_MAX_AGE at Django's 0 (a new database connection per request) and Redis off (imports
and counters run in the request, as the Community edition does without Redis).

What a Label Studio annotator does here is what its labeling stream does in the browser:
`GET /api/projects/{id}/next/` for the task, then `POST /api/tasks/{id}/annotations/
?project={id}` with the result, each with the user's API token.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg

sys.path.insert(0, os.path.dirname(__file__))
from annotators import download
from lean_http import LeanClient

VERSION = "1.23.2"
DEFAULT_VENV = Path("/work/lsvenv")
PASSWORD = "bench-pass-ls-1"
# A two-answer A/B choice, as a pairwise labeling template: prompt, two answers, one choice.
LABEL_CONFIG = """<View>
  <Header value="Which answer is better?"/>
  <Text name="prompt" value="$prompt"/>
  <Text name="answer_a" value="$answer_a"/>
  <Text name="answer_b" value="$answer_b"/>
  <Choices name="choice" toName="prompt" choice="single" required="true">
    <Choice value="A"/>
    <Choice value="B"/>
    <Choice value="tie"/>
  </Choices>
</View>"""

MIGRATE = """
import django
django.setup()
from django.core.management import call_command
call_command("migrate", interactive=False, verbosity=0)
"""
# Runs inside Label Studio's environment: one admin, its organisation (legacy API tokens
# on, so `Authorization: Token` works), annotators in it; prints the tokens.
BOOTSTRAP = """
import json, sys
import django
django.setup()
from organizations.models import Organization
from rest_framework.authtoken.models import Token
from users.models import User

password, annotators = sys.argv[1], int(sys.argv[2])
admin = User.objects.create_user(email="admin@bench.local", password=password)
admin.is_staff = admin.is_superuser = True
admin.save()
org = Organization.create_organization(
    created_by=admin, title="Benchmark", legacy_api_tokens_enabled=True
)
users = [admin]
for i in range(annotators):
    user = User.objects.create_user(email=f"annotator{i}@bench.local", password=password)
    org.add_user(user)
    users.append(user)
for user in users:
    user.active_organization = org
    user.save(update_fields=["active_organization"])
print(json.dumps([Token.objects.get_or_create(user=u)[0].key for u in users]))
"""


def ensure_venv(venv: Path = DEFAULT_VENV) -> Path:
    """Label Studio's own environment; created (minutes) when missing."""
    if (venv / "bin" / "uwsgi").exists() and (venv / "bin" / "label-studio").exists():
        return venv
    print(f"installing Label Studio {VERSION} into {venv} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [
            str(venv / "bin" / "pip"), "install", "-q",
            f"label-studio=={VERSION}", "uwsgi", "psycopg2-binary",
        ],
        check=True,
    )  # fmt: skip
    return venv


@dataclass
class LabelStudio:
    """One Label Studio server on 127.0.0.1:`port` over `database` of the cluster at
    `pg_port`; `bootstrap` first, then `start` / `stop`."""

    venv: Path
    pg_port: int
    database: str
    port: int = 8108
    processes: int = 4
    threads: int = 1
    data_dir: Path | None = None
    process: subprocess.Popen | None = None
    tokens: list[str] | None = None  # admin first, then each annotator's

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def _app_dir(self) -> Path:
        python = self.venv / "bin" / "python"
        out = subprocess.run(
            [str(python), "-c", "import label_studio as m, os; print(os.path.dirname(m.__file__))"],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        return Path(out.stdout.strip())

    def _env(self) -> dict[str, str]:
        if self.data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix="ls-bench-data-"))
        return {
            **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO", "DATABASE"))},
            "DJANGO_SETTINGS_MODULE": "core.settings.label_studio",
            "DJANGO_DB": "default",
            "POSTGRE_NAME": self.database,
            "POSTGRE_USER": "postgres",
            "POSTGRE_PASSWORD": "",
            "POSTGRE_HOST": "127.0.0.1",
            "POSTGRE_PORT": str(self.pg_port),
            "DEBUG": "false",
            "LOG_LEVEL": "WARNING",
            "LABEL_STUDIO_BASE_DATA_DIR": str(self.data_dir),
            "LATEST_VERSION_CHECK": "false",
            "COLLECT_ANALYTICS": "false",
            "SENTRY_DSN": "",
            "FRONTEND_SENTRY_DSN": "",
            "APP_WEBSERVER": "uwsgi",
            "PYTHONPATH": str(self._app_dir()),
        }

    def _python(self, code: str, *args: str, database: str | None = None) -> str:
        env = self._env()
        if database is not None:
            env["POSTGRE_NAME"] = database
        out = subprocess.run(
            [str(self.venv / "bin" / "python"), "-c", code, *args],
            env=env, cwd=self._app_dir(), check=True, capture_output=True, text=True,
        )  # fmt: skip
        return out.stdout

    def bootstrap(self, annotators: int) -> list[str]:
        """A fresh database copied from a migrated template (Label Studio's migrations take
        minutes here, so the cluster keeps the template between runs), then the users;
        returns their tokens, the admin's first."""
        template = f"ls_template_{VERSION.replace('.', '_')}"
        server = f"postgres://postgres@127.0.0.1:{self.pg_port}"
        with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [template])
            if exists.fetchone() is None:
                print(f"migrating a Label Studio {VERSION} template database ...", flush=True)
                conn.execute(f'DROP DATABASE IF EXISTS "{template}_part"')
                conn.execute(f'CREATE DATABASE "{template}_part"')
                self._python(MIGRATE, database=f"{template}_part")
                conn.execute(f'ALTER DATABASE "{template}_part" RENAME TO "{template}"')
            conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{self.database}" TEMPLATE "{template}"')
        out = self._python(BOOTSTRAP, PASSWORD, str(annotators))
        self.tokens = json.loads(out.strip().splitlines()[-1])
        return self.tokens

    def start(self, log: Path | None = None) -> None:
        app = self._app_dir()
        self.process = subprocess.Popen(
            [
                str(self.venv / "bin" / "uwsgi"),
                "--http", f"127.0.0.1:{self.port}", "--http-keepalive",
                "--module", "core.wsgi:application", "--chdir", str(app),
                "--master", "--single-interpreter", "--enable-threads", "--thunder-lock",
                "--lazy-apps", "--need-app", "--die-on-term", "--vacuum",
                "--processes", str(self.processes), "--threads", str(self.threads),
                "--buffer-size", "65535", "--post-buffering", "4096", "--http-timeout", "1800",
                "--harakiri", "1800", "--disable-logging", "--log-5xx",
                "--ignore-sigpipe", "--ignore-write-errors", "--disable-write-exception",
            ],
            env=self._env(), cwd=app, start_new_session=True,
            stdout=log.open("ab") if log else subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )  # fmt: skip
        for _ in range(600):
            if self.process.poll() is not None:
                raise SystemExit(f"uwsgi exited with {self.process.returncode}")
            try:
                if httpx.get(f"{self.base}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise SystemExit("Label Studio did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def client(self, token: str, timeout: float = 600) -> httpx.Client:
        """An API client as `token`, for setting up and downloading (the annotators use
        lean_http)."""
        return httpx.Client(
            base_url=self.base, headers={"Authorization": f"Token {token}"}, timeout=timeout
        )


# --- Data in Label Studio's task format -------------------------------------------------


def task_rows(items: list[dict], annotations: list[list[tuple[int, str]]] | None = None) -> list:
    """Label Studio tasks from pairwise items ({prompt, answer_a, answer_b}); with
    `annotations`, each task carries its finished annotations as (user id, choice)."""
    tasks = []
    for index, item in enumerate(items):
        task: dict = {"data": item}
        if annotations is not None:
            task["annotations"] = [
                {"completed_by": user, "result": result_for(choice)}
                for user, choice in annotations[index]
            ]
        tasks.append(task)
    return tasks


def result_for(choice: str) -> list[dict]:
    """The result the labeling interface submits for one A/B/tie choice."""
    return [
        {
            "from_name": "choice",
            "to_name": "prompt",
            "type": "choices",
            "value": {"choices": [choice]},
        }
    ]


def create_project(api: httpx.Client, overlap: int, title: str = "Benchmark") -> int:
    """A pairwise project where each task takes `overlap` annotators."""
    reply = api.post(
        "/api/projects/",
        json={
            "title": title,
            "label_config": LABEL_CONFIG,
            "maximum_annotations": overlap,
            "overlap_cohort_percentage": 100,
            "show_skip_button": False,
        },
    )
    reply.raise_for_status()
    return reply.json()["id"]


def import_tasks(api: httpx.Client, project_id: int, tasks: list[dict]) -> dict:
    """All tasks in one request (the Community edition imports in the request)."""
    reply = api.post(f"/api/projects/{project_id}/import", json=tasks)
    reply.raise_for_status()
    return reply.json()


def user_ids(api: httpx.Client) -> dict[str, int]:
    """email -> user id of the organisation's users."""
    reply = api.get("/api/users/")
    reply.raise_for_status()
    return {u["email"]: u["id"] for u in reply.json()}


def next_task(api: LeanClient, project_id: int) -> dict | None:
    """The labeling stream's next task for the caller; None when it has none left."""
    reply = api.get(f"/api/projects/{project_id}/next/")
    if reply.status_code == 404:
        return None
    if reply.status_code != 200:
        raise RuntimeError(f"next task: {reply.status_code} {reply.text[:200]}")
    return reply.json()


def submit(api: LeanClient, project_id: int, task_id: int, choice: str, lead_time: float) -> int:
    """Submit one choice as the labeling interface does; returns the status code."""
    reply = api.post_json(
        f"/api/tasks/{task_id}/annotations/?project={project_id}",
        {
            "result": result_for(choice),
            "lead_time": lead_time,
            "project": project_id,
            "task": task_id,
        },
    )
    return reply.status_code


def export_json(api: httpx.Client, project_id: int, out) -> int:
    """Download the project's JSON export (its default format) into the file `out`, as a
    browser saves it; returns the bytes. Rows: `count_annotations` of the file."""
    return download(api, f"/api/projects/{project_id}/export", {"exportType": "JSON"}, out)


def count_annotations(path: Path) -> int:
    with path.open("rb") as f:
        return sum(len(task["annotations"]) for task in json.load(f))
