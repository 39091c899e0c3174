"""The demo's SQLite keeps the annotators' progress counts with row triggers (feedback.sqlite),
made again after a migrate when a rebuild of the leases' table dropped them."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
from django.core.management import call_command
from django.db import connection

from feedback.models import Assignment
from feedback.queue import task_claim_next, task_submit
from feedback.selectors import annotator_place
from feedback.services import FeedbackInput, PairwiseInput
from tests.factories import MemberFactory, ProjectFactory, UserFactory, task_with_responses

project = ProjectFactory()
annotator = UserFactory(username="ann")
MemberFactory(project=project, user=annotator)
tasks = [task_with_responses(project, "pair", 2) for _ in range(3)]
answer = FeedbackInput(pairwise=PairwiseInput(choice="A", strength=1))

def shown():
    return annotator_place(project=project, annotator=annotator).progress.done

def answer_next():
    task_submit(task=task_claim_next(project=project, annotator=annotator).task,
                annotator=annotator, feedback=answer)

answer_next()
counts = [shown()]
with connection.schema_editor() as editor:  # what an AlterField on SQLite does
    editor._remake_table(Assignment)
answer_next()
counts.append(shown())  # the triggers went with the old table
call_command("migrate", verbosity=0)
counts.append(shown())
answer_next()
counts.append(shown())
Assignment.objects.filter(task=tasks[0]).delete()
counts.append(shown())
print("counts", counts)
"""


@pytest.mark.slow
def test_sqlite_counts_answers_again_after_a_migrate_rebuilt_the_leases(tmp_path):
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DJANGO_DEBUG": "1",
    }
    run = {"cwd": ROOT, "env": env, "capture_output": True, "text": True}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], check=True, **run)
    done = subprocess.run([sys.executable, "manage.py", "shell", "-c", SCRIPT], **run)
    assert done.returncode == 0, done.stderr
    assert "counts [1, 1, 2, 3, 2]" in done.stdout
