import pytest
from django.db import connection

from feedback.selectors import annotator_place
from tests.factories import MemberFactory, ProjectFactory, UserFactory

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="prepared on PostgreSQL only"),
]


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
