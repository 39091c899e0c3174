"""Production settings: what an unset environment means, and `check --deploy` on it."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECRET = "x7Gq-production-test-key-0123456789-abcdefghijklmnopqrstuvwxyz-ÄÖÜ"


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    """manage.py in a fresh process with only PATH and the given variables set."""
    base = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "HOME": "/tmp"}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_with_only_a_secret_key_and_allowed_hosts():
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_SECRET_KEY=SECRET,
        DJANGO_ALLOWED_HOSTS="prefhub.example.org",
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "System check identified no issues" in output


def test_without_a_secret_key_production_refuses_to_start():
    result = manage("check", DJANGO_ALLOWED_HOSTS="prefhub.example.org")
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_an_empty_secret_key_counts_as_none():
    result = manage("check", DJANGO_SECRET_KEY="", DJANGO_DEBUG="")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_unset_debug_is_off_and_the_security_settings_are_on():
    script = (
        "import django; from django.conf import settings as s; django.setup(); "
        "print(s.DEBUG, s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, "
        "s.SECURE_HSTS_SECONDS > 0, s.SECURE_PROXY_SSL_HEADER, s.X_FRAME_OPTIONS)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={
            "PATH": os.environ["PATH"],
            "PYTHONPATH": str(ROOT),
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DJANGO_SECRET_KEY": SECRET,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "False",
        "True",
        "True",
        "True",
        "True",
        "('HTTP_X_FORWARDED_PROTO',",
        "'https')",
        "DENY",
    ]


def test_the_demo_command_refuses_to_run_with_debug_off(tmp_path):
    """`demo` creates users with the password "demo": never on a production database."""
    result = manage(
        "demo",
        "--no-serve",
        DJANGO_SECRET_KEY=SECRET,
        DATABASE_URL=f"sqlite:///{tmp_path / 'demo.sqlite3'}",
    )
    assert result.returncode != 0
    assert "DJANGO_DEBUG" in result.stderr
    assert not (tmp_path / "demo.sqlite3").exists()


def test_the_demo_command_sets_up_with_debug_on(tmp_path):
    result = manage(
        "demo",
        "--no-serve",
        "--no-jobs",  # the model jobs: tests/test_demo_command.py, with a tiny model
        DJANGO_DEBUG="1",
        DATABASE_URL=f"sqlite:///{tmp_path / 'demo.sqlite3'}",
    )
    assert result.returncode == 0, result.stderr
    assert "annotator / demo" in result.stdout


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")
def test_compose_refuses_to_start_without_a_secret_key():
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SECRET_KEY"}
    command = ["docker-compose", "-f", "docker-compose.yml", "config", "-q"]
    refused = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    assert refused.returncode != 0
    assert "set DJANGO_SECRET_KEY" in refused.stderr
    given = subprocess.run(command, cwd=ROOT, env={**env, "DJANGO_SECRET_KEY": SECRET})
    assert given.returncode == 0


def test_the_image_runs_as_a_non_root_user():
    users = re.findall(r"^USER\s+(\S+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert users and users[-1] not in {"root", "0"}
