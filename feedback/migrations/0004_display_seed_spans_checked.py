from django.db import migrations, models
from django.db.models import Exists, OuterRef, Q


def spans_checked_backfill(apps, schema_editor):
    """Mark old submissions that looked for spans: those with span records, and people's
    answers to single-response tasks of projects that collect spans (the span tool was on
    their card)."""
    Submission = apps.get_model("feedback", "Submission")
    SpanFeedback = apps.get_model("feedback", "SpanFeedback")
    has_spans = Exists(SpanFeedback.objects.filter(submission=OuterRef("pk")))
    shown_tool = Q(
        annotator__isnull=False, task__layout="single", task__project__collects_spans=True
    )
    Submission.objects.filter(has_spans | shown_tool).update(spans_checked=True)


class Migration(migrations.Migration):
    dependencies = [
        ("feedback", "0003_judge_output"),
    ]

    operations = [
        migrations.AddField(
            model_name="submission",
            name="spans_checked",
            field=models.BooleanField(
                default=False,
                help_text="The source looked for spans: no span records then means none were found.",
            ),
        ),
        migrations.AddField(
            model_name="task",
            name="display_seed",
            field=models.PositiveIntegerField(
                blank=True,
                help_text="Seed that shuffled the display order; null: id order.",
                null=True,
            ),
        ),
        migrations.RunPython(spans_checked_backfill, migrations.RunPython.noop),
    ]
