# Each annotator's number of submitted tasks per project, kept by triggers on the leases
# (feedback_assignment) so that the card reads one row instead of counting every answer of
# the annotator (1 ms a card at 3,000 answers, growing with them). Issue 14.
#
# A lease counts while its status is 'submitted': it is counted when inserted or updated
# into that status, and uncounted when updated out of it or deleted. Both databases: the
# demo (SQLite) reads the same counts.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

# PostgreSQL: per statement, over its transition tables, the count of each annotator whose
# count moved is updated, or inserted (a first answer; ON CONFLICT: two at once). A count
# whose row is gone is dropped: its project or annotator is being deleted, rows first. Per row, a bulk write (a COPY of past answers, a project's cascade delete)
# updated one counter row again and again in one transaction, each update walking the
# versions before it: 260,000 seeded answers took five minutes.
COUNTED = "SELECT project_id, annotator_id, 1 AS change FROM counted_new WHERE status = 'submitted'"
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
POSTGRESQL = [
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
            ), updated AS (
                UPDATE feedback_annotatorprogress p SET submitted = p.submitted + moved.change
                FROM moved
                WHERE p.project_id = moved.project_id AND p.annotator_id = moved.annotator_id
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
]
POSTGRESQL_UNDO = [
    statement
    for operation in CHANGES
    for statement in (
        f"DROP TRIGGER assignment_progress_{operation} ON feedback_assignment",
        f"DROP FUNCTION feedback_assignment_progress_{operation}()",
    )
]
# SQLite (the demo) has only row triggers; it updates rows in place.
COUNT = (
    "INSERT INTO feedback_annotatorprogress (project_id, annotator_id, submitted)"
    " VALUES (NEW.project_id, NEW.annotator_id, 1)"
    " ON CONFLICT (project_id, annotator_id) DO UPDATE SET submitted = submitted + 1;"
)
UNCOUNT = (
    "UPDATE feedback_annotatorprogress SET submitted = submitted - 1"
    " WHERE project_id = OLD.project_id AND annotator_id = OLD.annotator_id;"
)
MOVED = (
    "(OLD.status <> NEW.status OR OLD.project_id <> NEW.project_id"
    " OR OLD.annotator_id <> NEW.annotator_id)"
)
SQLITE = [
    "CREATE TRIGGER assignment_progress_insert AFTER INSERT ON feedback_assignment"
    f" WHEN NEW.status = 'submitted' BEGIN {COUNT} END",
    "CREATE TRIGGER assignment_progress_update_old"
    " AFTER UPDATE OF status, project_id, annotator_id ON feedback_assignment"
    f" WHEN OLD.status = 'submitted' AND {MOVED} BEGIN {UNCOUNT} END",
    "CREATE TRIGGER assignment_progress_update_new"
    " AFTER UPDATE OF status, project_id, annotator_id ON feedback_assignment"
    f" WHEN NEW.status = 'submitted' AND {MOVED} BEGIN {COUNT} END",
    "CREATE TRIGGER assignment_progress_delete AFTER DELETE ON feedback_assignment"
    f" WHEN OLD.status = 'submitted' BEGIN {UNCOUNT} END",
]
SQLITE_UNDO = [
    f"DROP TRIGGER {name}"
    for name in (
        "assignment_progress_insert",
        "assignment_progress_update_old",
        "assignment_progress_update_new",
        "assignment_progress_delete",
    )
]
BACKFILL = (
    "INSERT INTO feedback_annotatorprogress (project_id, annotator_id, submitted)"
    " SELECT project_id, annotator_id, count(*) FROM feedback_assignment"
    " WHERE status = 'submitted' GROUP BY project_id, annotator_id"
)


def triggers_create(apps, schema_editor):
    postgresql = schema_editor.connection.vendor == "postgresql"
    for statement in [*(POSTGRESQL if postgresql else SQLITE), BACKFILL]:
        schema_editor.execute(statement)


def triggers_drop(apps, schema_editor):
    postgresql = schema_editor.connection.vendor == "postgresql"
    for statement in POSTGRESQL_UNDO if postgresql else SQLITE_UNDO:
        schema_editor.execute(statement)


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
        migrations.RunPython(triggers_create, triggers_drop),
    ]
