"""The annotators' progress counts (AnnotatorProgress) on SQLite, the demo's database: row
triggers on the leases, as migration 0017 makes on PostgreSQL.

SQLite drops a table's triggers whenever Django rebuilds the table (most migrations that
change it do), so they are made after every migrate where missing (feedback.apps), and the
counts are then taken again.
"""

from django.db import transaction
from django.db.backends.base.base import BaseDatabaseWrapper

_COUNT = (
    "INSERT INTO feedback_annotatorprogress (project_id, annotator_id, submitted)"
    " VALUES (NEW.project_id, NEW.annotator_id, 1)"
    " ON CONFLICT (project_id, annotator_id) DO UPDATE SET submitted = submitted + 1;"
)
_UNCOUNT = (
    "UPDATE feedback_annotatorprogress SET submitted = submitted - 1"
    " WHERE project_id = OLD.project_id AND annotator_id = OLD.annotator_id;"
)
_MOVED = (
    "(OLD.status <> NEW.status OR OLD.project_id <> NEW.project_id"
    " OR OLD.annotator_id <> NEW.annotator_id)"
)
_UPDATE = "AFTER UPDATE OF status, project_id, annotator_id ON feedback_assignment"
TRIGGERS = {
    "assignment_progress_insert": "AFTER INSERT ON feedback_assignment"
    f" WHEN NEW.status = 'submitted' BEGIN {_COUNT} END",
    "assignment_progress_update_old": f"{_UPDATE}"
    f" WHEN OLD.status = 'submitted' AND {_MOVED} BEGIN {_UNCOUNT} END",
    "assignment_progress_update_new": f"{_UPDATE}"
    f" WHEN NEW.status = 'submitted' AND {_MOVED} BEGIN {_COUNT} END",
    "assignment_progress_delete": "AFTER DELETE ON feedback_assignment"
    f" WHEN OLD.status = 'submitted' BEGIN {_UNCOUNT} END",
}
_RECOUNT = (
    "INSERT INTO feedback_annotatorprogress (project_id, annotator_id, submitted)"
    " SELECT project_id, annotator_id, count(*) FROM feedback_assignment"
    " WHERE status = 'submitted' GROUP BY project_id, annotator_id"
)


def progress_triggers_ensure(connection: BaseDatabaseWrapper) -> None:
    """Make the triggers that are missing and count again; nothing when all are there, or
    before migration 0017 made the counts' table."""
    if "feedback_annotatorprogress" not in connection.introspection.table_names():
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        present = {name for (name,) in cursor.fetchall()}
    missing = {name: sql for name, sql in TRIGGERS.items() if name not in present}
    if not missing:
        return
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        for name, sql in missing.items():
            cursor.execute(f"CREATE TRIGGER {name} {sql}")
        cursor.execute("DELETE FROM feedback_annotatorprogress")
        cursor.execute(_RECOUNT)
