import django.db.models.deletion
from django.db import migrations, models

# After any UPDATE of responses (the admin, SQL), each project they belong to (before or
# after) gets a new number; statement-level, so a bulk update costs one upsert.
TRIGGER = """
CREATE SEQUENCE feedback_responseedit_version;
CREATE FUNCTION feedback_response_edited() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO feedback_responseedit (project_id, version)
    SELECT project_id, nextval('feedback_responseedit_version')
    FROM (
        SELECT DISTINCT p.project_id FROM feedback_prompt p
        WHERE p.id IN (SELECT prompt_id FROM edited_old UNION SELECT prompt_id FROM edited_new)
    ) edited
    ON CONFLICT (project_id) DO UPDATE SET version = EXCLUDED.version;
    RETURN NULL;
END
$$;
CREATE TRIGGER feedback_response_edited AFTER UPDATE ON feedback_response
REFERENCING OLD TABLE AS edited_old NEW TABLE AS edited_new
FOR EACH STATEMENT EXECUTE FUNCTION feedback_response_edited();
"""
UNDO = """
DROP TRIGGER feedback_response_edited ON feedback_response;
DROP FUNCTION feedback_response_edited();
DROP SEQUENCE feedback_responseedit_version;
"""


def run_on_postgresql(sql: str):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):

    dependencies = [
        ('feedback', '0012_pairwise_tally'),
    ]

    operations = [
        migrations.CreateModel(
            name='ResponseEdit',
            fields=[
                ('project', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, primary_key=True, related_name='+', serialize=False, to='feedback.project')),
                ('version', models.BigIntegerField()),
            ],
        ),
        migrations.RunPython(run_on_postgresql(TRIGGER), run_on_postgresql(UNDO)),
    ]
