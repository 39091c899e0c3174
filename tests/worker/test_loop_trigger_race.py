"""The loop's trigger under concurrent answers: each answer's commit checks the threshold,
and however many see it passed at once, one round starts (the project row serialises
the starts; the unique round number would refuse a second)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from feedback.models import Job, SelectionRound, Task
from tests.feedback.test_loop_trigger import answer, looping_project


@pytest.mark.django_db(transaction=True)
def test_answers_committed_at_once_past_the_threshold_start_one_round(broker, caplog):
    project, annotators, tasks = looping_project(retrain_every=2, annotators=4)
    answer(tasks[0], annotators[0])  # one label in: each of the next makes two
    start = threading.Barrier(len(annotators))
    errors: list[BaseException] = []

    def submit(task: Task, annotator) -> None:
        try:
            start.wait()
            answer(task, annotator)  # autocommit: the hook runs as the answer commits
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=submit, args=(task, ann))
        for task, ann in zip(tasks[1:], annotators, strict=False)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # No start failed on the unique round number: the second waited and found the first.
    assert errors == [] and not [r for r in caplog.records if r.levelname == "ERROR"]
    assert SelectionRound.objects.filter(project=project).count() == 1
    assert Job.objects.filter(project=project, kind=Job.Kind.SELECT).count() == 1
