from django.apps import AppConfig
from django.db.backends.signals import connection_created
from django.db.models.signals import post_delete


class FeedbackConfig(AppConfig):
    name = "feedback"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from feedback import lookups  # noqa: F401  (registers the `any` lookup)
        from feedback.models import RewardModel
        from feedback.rewards import remove_artifacts_after_delete

        connection_created.connect(plan_cursors_for_every_row)
        post_delete.connect(remove_artifacts_after_delete, sender=RewardModel)


def plan_cursors_for_every_row(sender, connection, **kwargs) -> None:
    """Server-side cursors (`.iterator()`) serve exports and agreement, which read every row:
    plan them for all rows, not for a fast first tenth (PostgreSQL's default), which walked
    the whole feedback table by primary key when other projects were large. A SET rather
    than a connection option, which poolers such as PgBouncer refuse."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET cursor_tuple_fraction = 1")
