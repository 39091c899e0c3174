# Each annotator's number of submitted tasks per project, kept by triggers on the leases
# (feedback_assignment) so that the card reads one row instead of counting every answer of
# the annotator (1 ms a card at 3,000 answers, growing with them). Issue 14.
#
# A lease counts while its status is 'submitted': it is counted when inserted or updated
# into that status, and uncounted when updated out of it or deleted.
#
# PostgreSQL, here: per statement, over its transition tables, the count of each annotator
# whose count moved is updated (rows locked in key order, so that two bulk statements do
# not deadlock), or inserted (a first answer; ON CONFLICT: two at once). A count whose row
# is gone is dropped: its project or annotator is being deleted. Per row, a bulk write (a
# COPY of past answers, a cascade delete) updated one count again and again in one
# transaction, each update walking the versions before it: 260,000 seeded answers took
# five minutes. A TRUNCATE of the leases empties the counts.
#
# SQLite (the demo): row triggers, made after every migrate (feedback.apps), as SQLite
# drops a table's triggers whenever Django rebuilds the table.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

COUNTED = (
    "SELECT project_id, annotator_id, 1 AS change FROM counted_new WHERE status = 'submitted'"
)
UNCOUNTED = (
    "SELECT project_id, annotator_id, -1 AS change FROM counted_old WHERE status = 'submitted'"
)
CHANGES = {
    "insert": ("NEW TABLE AS counted_new", COUNTED),
    "update": (
        "OLD TABLE AS counted_old NEW TABLE AS counted_new",
        f"{COUNTED} UNION ALL {UNCOUNTED}",
    ),
    "delete": ("OLD TABLE AS counted_old", UNCOUNTED),
}
TRIGGERS = [
    statement
    for operation, (tables, moved) in CHANGES.items()
    for statement in (
        f"""
        CREATE FUNCTION feedback_assignment_progress_{operation}() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            WITH moved AS (
                SELECT project_id, annotator_id, sum(change) AS change FROM ({moved}) m
                GROUP BY project_id, annotator_id HAVING sum(change) <> 0
            ), locked AS (
                SELECT p.id, moved.change FROM feedback_annotatorprogress p
                JOIN moved USING (project_id, annotator_id)
                ORDER BY p.project_id, p.annotator_id
                FOR UPDATE OF p
            ), updated AS (
                UPDATE feedback_annotatorprogress p SET submitted = p.submitted + locked.change
                FROM locked WHERE p.id = locked.id
                RETURNING p.project_id, p.annotator_id
            )
            INSERT INTO feedback_annotatorprogress AS p (project_id, annotator_id, submitted)
            SELECT project_id, annotator_id, change FROM moved
            WHERE change > 0 AND NOT EXISTS (
                SELECT FROM updated
                WHERE updated.project_id = moved.project_id
                    AND updated.annotator_id = moved.annotator_id
            )
            ON CONFLICT (project_id, annotator_id)
            DO UPDATE SET submitted = p.submitted + EXCLUDED.submitted;
            RETURN NULL;
        END
        $$
        """,
        f"CREATE TRIGGER assignment_progress_{operation}"
        f" AFTER {operation.upper()} ON feedback_assignment REFERENCING {tables}"
        f" FOR EACH STATEMENT EXECUTE FUNCTION feedback_assignment_progress_{operation}()",
    )
] + [
    """
    CREATE FUNCTION feedback_assignment_progress_truncate() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM feedback_annotatorprogress;
        RETURN NULL;
    END
    $$
    """,
    "CREATE TRIGGER assignment_progress_truncate AFTER TRUNCATE ON feedback_assignment"
    " FOR EACH STATEMENT EXECUTE FUNCTION feedback_assignment_progress_truncate()",
    "INSERT INTO feedback_annotatorprogress (project_id, annotator_id, submitted)"
    " SELECT project_id, annotator_id, count(*) FROM feedback_assignment"
    " WHERE status = 'submitted' GROUP BY project_id, annotator_id",
]
UNDO = [
    statement
    for operation in [*CHANGES, "truncate"]
    for statement in (
        f"DROP TRIGGER assignment_progress_{operation} ON feedback_assignment",
        f"DROP FUNCTION feedback_assignment_progress_{operation}()",
    )
]


def run_on_postgresql(statements: list[str]):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            for statement in statements:
                schema_editor.execute(statement)

    return run


class Migration(migrations.Migration):
    dependencies = [
        ("feedback", "0016_annotator_order_index"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="AnnotatorProgress",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("submitted", models.PositiveIntegerField(default=0)),
                (
                    "annotator",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "project",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="feedback.project",
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("project", "annotator"), name="annotator_progress_once"
                    )
                ],
            },
        ),
        migrations.RunPython(run_on_postgresql(TRIGGERS), run_on_postgresql(UNDO)),
    ]
