from django.apps import AppConfig
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import connections
from django.db.backends.signals import connection_created
from django.db.models.signals import post_delete, post_migrate, post_save


class FeedbackConfig(AppConfig):
    name = "feedback"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from feedback import lookups  # noqa: F401  (registers the `any` lookup)
        from feedback.auth import user_changed
        from feedback.models import LoopConfig, Project, ProjectMember, RewardModel
        from feedback.rewards import remove_artifacts_after_delete

        connection_created.connect(planner_settings)
        post_migrate.connect(progress_triggers_on_sqlite, sender=self)
        post_delete.connect(remove_artifacts_after_delete, sender=RewardModel)
        for signal in (post_save, post_delete):
            signal.connect(user_changed, sender=get_user_model())
            signal.connect(project_changed, sender=Project)
            signal.connect(member_changed, sender=ProjectMember)
            signal.connect(loop_config_changed, sender=LoopConfig)


# Receivers that drop cached rows the annotator's requests read (feedback.auth, selectors,
# loop) when the rows change.


def project_changed(sender, instance, **kwargs) -> None:
    from feedback.selectors import annotator_project_key

    # Members, and superusers, who may annotate any project.
    users = [
        *instance.members.values_list("user_id", flat=True),
        *get_user_model().objects.filter(is_superuser=True).values_list("pk", flat=True),
    ]
    cache.delete_many([annotator_project_key(user_id, instance.pk) for user_id in users])


def member_changed(sender, instance, **kwargs) -> None:
    from feedback.selectors import annotator_project_key

    cache.delete(annotator_project_key(instance.user_id, instance.project_id))


def loop_config_changed(sender, instance, **kwargs) -> None:
    from feedback.loop import loop_off_key

    cache.delete(loop_off_key(instance.project_id))


def progress_triggers_on_sqlite(sender, using: str, **kwargs) -> None:
    """The demo's progress counts: see feedback.sqlite (PostgreSQL's are migration 0017's)."""
    from feedback.sqlite import progress_triggers_ensure

    if connections[using].vendor == "sqlite":
        progress_triggers_ensure(connections[using])


def planner_settings(sender, connection, **kwargs) -> None:
    """Two planner settings for each new connection, set by a statement rather than a
    connection option, which poolers such as PgBouncer refuse.

    - Server-side cursors (`.iterator()`) serve exports and agreement, which read every row:
      plan them for all rows, not for a fast first tenth (PostgreSQL's default), which
      walked the whole feedback table by primary key when other projects were large.
    - The prepared statements of the annotator's loop (feedback.rows.prepared_cursor) run
      on their generic plan, made once per connection: planned afresh for each card, with
      that annotator's values and statistics that lagged behind ("a new annotator has one
      answer"), the place statement sorted all of an annotator's answers, and planning
      cost as much as running. Nothing else binds values server-side: the ORM puts them in
      the text, and so does the leaderboard's binary query (selectors._integer_rows).
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT set_config('cursor_tuple_fraction', '1', false),"
                " set_config('plan_cache_mode', 'force_generic_plan', false)"
            )
