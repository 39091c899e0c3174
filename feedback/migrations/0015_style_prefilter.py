# The header and bold counts now run their regular expression only on a text holding '#',
# or '**' or '__' (MarkdownCount.as_postgresql): same values, a third of the cost of an
# imported response's style columns. PostgreSQL 15 cannot change a generated column's
# expression, so both columns are dropped and added again (one rewrite of the table each).

import feedback.models
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('feedback', '0014_import_indexes'),
    ]

    operations = [
        migrations.RemoveField(model_name='response', name='markdown_headers'),
        migrations.RemoveField(model_name='response', name='markdown_bold'),
        migrations.AddField(
            model_name='response',
            name='markdown_headers',
            field=models.GeneratedField(db_persist=True, expression=feedback.models.MarkdownCount('text', 'headers'), output_field=models.IntegerField()),
        ),
        migrations.AddField(
            model_name='response',
            name='markdown_bold',
            field=models.GeneratedField(db_persist=True, expression=feedback.models.MarkdownCount('text', 'bold'), output_field=models.IntegerField()),
        ),
    ]
