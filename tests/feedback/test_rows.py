import uuid

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from feedback.models import FreeTextFeedback, PairwiseFeedback, Submission, Task
from feedback.rows import instance_insert
from feedback.selectors import annotator_place
from tests.factories import MemberFactory, ProjectFactory, UserFactory, task_with_responses

pytestmark = pytest.mark.django_db

prepared_on_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="prepared on PostgreSQL only"
)


@prepared_on_postgresql
def test_a_hot_statement_is_prepared_once_and_planned_once():
    """Each card reads the annotator's place through a prepared statement: ids of any size
    share one statement (bigint parameters), and it runs on its generic plan instead of
    being planned again with each card's values."""
    project = ProjectFactory()
    annotators = [UserFactory(username=f"place-{n}") for n in range(2)]
    for annotator in annotators:
        MemberFactory(project=project, user=annotator)
    with connection.cursor() as cursor:
        cursor.execute("SELECT setval(pg_get_serial_sequence('auth_user', 'id'), 70000)")
    annotators.append(UserFactory(username="place-large-id"))  # past smallint's range
    MemberFactory(project=project, user=annotators[-1])
    for _ in range(4):
        for annotator in annotators:
            annotator_place(project=project, annotator=annotator)

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT parameter_types::text[], generic_plans, custom_plans"
            " FROM pg_prepared_statements WHERE statement LIKE '%%feedback_taskresponse%%'"
        )
        prepared = cursor.fetchall()
    assert len(prepared) == 1
    types, generic_plans, custom_plans = prepared[0]
    assert set(types) == {"bigint"}
    assert (generic_plans, custom_plans) == (12, 0)


def test_an_inserted_row_holds_what_save_would_store():
    """The answer's rows skip the ORM's save: each column still gets the instance's value,
    its default or its insert time, and a record made against the unsaved submission
    points at the submission's new id."""
    task = task_with_responses(ProjectFactory(), Task.Layout.PAIR, 2)
    annotator = UserFactory()
    key = uuid.uuid4()
    before = timezone.now()
    submission = Submission(task=task, annotator=annotator, duration_ms=4321, submit_key=key)
    pairwise = PairwiseFeedback(submission=submission, choice="B", strength=3)
    hostile = "<script>alert(1)</script> <b>É</b> İstanbul ✓ \u202eright-to-left 日本語"
    rationale = FreeTextFeedback(submission=submission, mode="rationale", text=hostile)

    assert instance_insert(submission) is submission
    instance_insert(pairwise)
    instance_insert(rationale)

    stored = Submission.objects.get()
    assert stored.pk == submission.pk and not submission._state.adding
    assert (stored.task_id, stored.annotator_id, stored.judge_id, stored.job_id) == (
        task.pk,
        annotator.pk,
        None,
        None,
    )
    assert (stored.duration_ms, stored.submit_key, stored.is_current) == (4321, key, True)
    assert (stored.spans_checked, stored.supersedes_id) == (False, None)
    assert before <= stored.created_at == submission.created_at <= timezone.now()
    assert PairwiseFeedback.objects.values_list(
        "pk", "submission_id", "choice", "strength"
    ).get() == (
        pairwise.pk,
        submission.pk,
        "B",
        3,
    )
    assert FreeTextFeedback.objects.values_list("submission_id", "text").get() == (
        submission.pk,
        hostile,
    )


def test_an_unsaved_related_object_is_refused_as_save_refuses_it():
    task = task_with_responses(ProjectFactory(), Task.Layout.PAIR, 2)
    unsaved = Submission(task=task, annotator=UserFactory())

    with pytest.raises(ValueError, match="unsaved related object 'submission'"):
        instance_insert(PairwiseFeedback(submission=unsaved, choice="A", strength=1))
    assert not PairwiseFeedback.objects.exists()


def test_an_insert_that_breaks_a_constraint_raises_and_stores_nothing():
    task = task_with_responses(ProjectFactory(), Task.Layout.PAIR, 2)
    annotator = UserFactory()
    instance_insert(Submission(task=task, annotator=annotator))

    broken = pytest.raises(IntegrityError, match="submission_one_current_per_annotator")
    with broken, transaction.atomic():
        instance_insert(Submission(task=task, annotator=annotator))
    assert Submission.objects.count() == 1
