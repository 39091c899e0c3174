"""bin/backup and bin/restore: a restored database exports the same files, byte for byte."""

import os
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.db import connection
from django.urls import reverse
from rest_framework.test import APIClient

from feedback.models import ProjectMember
from tests.factories import JudgeFactory, MemberFactory, UserFactory, feedback_fill

ROOT = Path(__file__).resolve().parents[2]


def database_url(name: str) -> str:
    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db["PASSWORD"] else ""
    return f"postgres://{db['USER']}{password}@{db['HOST']}:{db['PORT'] or 5432}/{name}"


def run(command: list[str], url: str) -> bytes:
    env = {**os.environ, "DATABASE_URL": url}
    return subprocess.run(command, env=env, cwd=ROOT, check=True, capture_output=True).stdout


@contextmanager
def django_on(name: str):
    """Point Django's connection at another database of the same server for a while."""
    original = connection.settings_dict["NAME"]
    connection.close()
    connection.settings_dict["NAME"] = name
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict["NAME"] = original


def export(user, project_id: int, shape: str) -> bytes:
    client = APIClient()
    client.force_authenticate(user)
    response = client.get(reverse("api:project-export", args=[project_id]), {"shape": shape})
    assert response.status_code == 200
    return b"".join(response.streaming_content)


@pytest.fixture
def restored_name(transactional_db):
    """A fresh database's name, dropped afterwards."""
    name = f"{connection.settings_dict['NAME']}_restored"
    with connection.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
        cursor.execute(f'CREATE DATABASE "{name}"')
    yield name
    with connection.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.slow
def test_a_restored_database_exports_the_same_files(project, annotator, restored_name, tmp_path):
    viewer = UserFactory(username="viewer")
    MemberFactory(project=project, user=viewer, role=ProjectMember.Role.VIEWER)
    other = UserFactory(username="ann2")
    MemberFactory(project=project, user=other, role=ProjectMember.Role.ANNOTATOR)
    feedback_fill(project, [annotator, other], judge=JudgeFactory())
    before = {shape: export(viewer, project.pk, shape) for shape in ("pairs", "raw")}
    assert all(before.values()) and "İstanbul".encode() in before["raw"]

    dump = tmp_path / "prefhub.dump"
    run(["bin/backup", str(dump)], database_url(connection.settings_dict["NAME"]))
    run(["bin/restore", str(dump)], database_url(restored_name))
    with django_on(restored_name):
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_database()")
            assert cursor.fetchone() == (restored_name,)
        after = {shape: export(viewer, project.pk, shape) for shape in before}

    assert after == before


@pytest.mark.slow
def test_restore_refuses_a_database_that_has_tables(transactional_db, tmp_path):
    url = database_url(connection.settings_dict["NAME"])
    run(["bin/backup", str(tmp_path / "prefhub.dump")], url)
    with pytest.raises(subprocess.CalledProcessError) as refused:
        run(["bin/restore", str(tmp_path / "prefhub.dump")], url)
    assert b"restore into a new, empty one" in refused.value.stderr


def test_the_dump_tool_is_at_least_the_server_version(db):
    url = database_url(connection.settings_dict["NAME"])
    tool = run(["bin/pg-tool", "pg_dump"], url).decode().strip()
    version = subprocess.run([tool, "--version"], capture_output=True, text=True).stdout
    major = int(version.split()[2].split(".")[0])
    assert major >= connection.pg_version // 10000
