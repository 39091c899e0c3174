# Fewer indexes for an import to write (issue 14): each of these was written by every
# imported task or response and read by no query another index does not serve.
# - task (project, -priority, id): nothing reads a project's tasks in priority order but
#   the queue, whose partial index task_open_queue stays; project_id's index serves the rest.
# - taskresponse task_id: both unique constraints lead with task_id.
# - response job_id: response_one_per_job_sample leads with job_id (where it is not NULL).
# - response author_id: only a few responses have an author; the plain index held every
#   NULL, the partial one holds only the values a lookup by author can ask for.
# The foreign keys stay as they are: only the indexes are dropped, so the tables' foreign
# keys are not checked again row by row as AlterField's drop and re-add would.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('feedback', '0013_response_edit'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name='task',
            name='feedback_ta_project_52117d_idx',
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='response',
                    name='author',
                    field=models.ForeignKey(blank=True, db_index=False, help_text='The person who wrote it, when a person did.', null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='written_responses', to=settings.AUTH_USER_MODEL),
                ),
                migrations.AlterField(
                    model_name='response',
                    name='job',
                    field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='responses', to='feedback.job'),
                ),
                migrations.AlterField(
                    model_name='taskresponse',
                    name='task',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='links', to='feedback.task'),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    'DROP INDEX IF EXISTS "feedback_response_author_id_677e0b9a"',
                    'CREATE INDEX "feedback_response_author_id_677e0b9a" ON "feedback_response" ("author_id")',
                ),
                migrations.RunSQL(
                    'DROP INDEX IF EXISTS "feedback_response_job_id_b410daa8"',
                    'CREATE INDEX "feedback_response_job_id_b410daa8" ON "feedback_response" ("job_id")',
                ),
                migrations.RunSQL(
                    'DROP INDEX IF EXISTS "feedback_taskresponse_task_id_37cfaba3"',
                    'CREATE INDEX "feedback_taskresponse_task_id_37cfaba3" ON "feedback_taskresponse" ("task_id")',
                ),
            ],
        ),
        migrations.AddIndex(
            model_name='response',
            index=models.Index(condition=models.Q(('author__isnull', False)), fields=['author'], name='response_author'),
        ),
    ]
