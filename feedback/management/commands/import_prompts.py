from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from feedback.io import prompts_import_file
from feedback.models import Project
from feedback.services import FeedbackError


class Command(BaseCommand):
    help = "Import prompts and responses from a JSONL, CSV or Parquet file into a project."

    def add_arguments(self, parser) -> None:
        parser.add_argument("project", help="Project name or id.")
        parser.add_argument("file", type=Path)

    def handle(self, *args, project: str, file: Path, **options) -> None:
        lookup = {"pk": int(project)} if project.isdigit() else {"name": project}
        try:
            target = Project.objects.get(**lookup)
        except Project.DoesNotExist as exc:
            raise CommandError(f"No project {project!r}.") from exc
        try:
            with file.open("rb") as handle:
                result = prompts_import_file(project=target, file=handle, name=str(file))
        except FileNotFoundError as exc:
            raise CommandError(f"{file}: no such file.") from exc
        except FeedbackError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"Imported {result.prompts} prompts, {result.responses} responses and "
            f"{result.tasks} tasks into {target}."
        )
