"""The short load-and-fault run: 50 annotators, a judge job, a SIGKILLed worker, PostgreSQL
and Redis restarted; nothing acknowledged is lost or stored twice.

It starts its own PostgreSQL cluster and redis-server (never the shared ones), so it needs
root (PostgreSQL runs as the postgres user), initdb and redis-server.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from glob import glob
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.geteuid() != 0
        or not shutil.which("redis-server")
        or not glob("/usr/lib/postgresql/*/bin/initdb"),
        reason="needs root, redis-server and PostgreSQL's server binaries",
    ),
]


def test_answers_survive_a_killed_worker_and_restarted_postgres_and_redis():
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE",)}
    run = subprocess.run(
        [sys.executable, "benchmarks/load_fault.py", "--duration", "30", "--annotators", "50"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    output = run.stdout + run.stderr[-3000:]
    assert run.returncode == 0, output
    for line in ("  duplicated: 0", "  lost: 0", "  tasks with more than 3 annotators: 0"):
        assert line in run.stdout, output
    assert "job succeeded" in run.stdout, output
