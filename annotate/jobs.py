"""Admin pages for background jobs (generate candidates, run a judge) and judge quality."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from feedback.endpoints import inference_endpoints
from feedback.jobs import KIND_LAYOUT, job_cancel, job_retry, job_start
from feedback.judges import judge_quality, judges_of_project, people_position_wins
from feedback.loop import round_table
from feedback.models import Job, Judge, JudgeOutput, Project
from feedback.selectors import member_role
from feedback.services import FeedbackError
from feedback.views import HtmxHttpRequest, admin_project, login_required_htmx, report_project


class StartKeyField(forms.UUIDField):
    """A key made when the form is rendered: a double-clicked Start sends it twice."""

    def __init__(self) -> None:
        super().__init__(widget=forms.HiddenInput, required=False, initial=uuid.uuid4)


class GenerateForm(forms.Form):
    start_key = StartKeyField()
    models = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="One model per line: a hub name, a directory or .gguf file under an allowed "
        "model directory, or a served model name. Write 'label = location' to record "
        "another name.",
    )
    backend = forms.ChoiceField(choices=Judge.Backend.choices)
    endpoint = forms.ChoiceField(
        required=False, help_text="For the openai backend: a server the operator registered."
    )
    n = forms.IntegerField(min_value=1, max_value=64, initial=4, label="Answers per prompt")
    temperature = forms.FloatField(min_value=0, max_value=5, initial=0.7)
    top_p = forms.FloatField(min_value=0.01, max_value=1, initial=1.0)
    max_new_tokens = forms.IntegerField(min_value=1, max_value=32768, initial=256)
    seed = forms.IntegerField(initial=0)
    batch_size = forms.IntegerField(min_value=1, max_value=1024, initial=16)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        names = sorted(inference_endpoints())
        field = self.fields["endpoint"]
        field.choices = [("", "---------"), *((name, name) for name in names)]
        allowed = ", ".join(names) or "none registered"
        field.error_messages["invalid_choice"] = f"Unknown endpoint %(value)s. Allowed: {allowed}."

    def params(self) -> dict[str, Any]:
        data = self.cleaned_data
        models = []
        for line in data["models"].splitlines():
            label, _, location = line.partition("=")
            label, location = label.strip(), location.strip()
            if not label:
                continue
            model = {"name": label, "path": location, "backend": data["backend"]}
            if data["backend"] == Judge.Backend.OPENAI:
                model["endpoint"] = data["endpoint"]
            models.append(model)
        keys = ["n", "temperature", "top_p", "max_new_tokens", "seed", "batch_size"]
        return {"models": models, **{key: data[key] for key in keys}}


class JudgeForm(forms.Form):
    start_key = StartKeyField()
    judge = forms.ModelChoiceField(queryset=Judge.objects.all())
    kinds = forms.MultipleChoiceField(widget=forms.CheckboxSelectMultiple, choices=())

    def __init__(self, *args: Any, project: Project, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["kinds"].choices = [
            (kind.value, kind.label) for kind in project.feedback_kinds if kind in KIND_LAYOUT
        ]
        self.fields["kinds"].initial = [value for value, _ in self.fields["kinds"].choices]

    def params(self) -> dict[str, Any]:
        return {"judge_id": self.cleaned_data["judge"].pk, "kinds": self.cleaned_data["kinds"]}


def start_from_form(request: HttpRequest, project: Project, kind: str, form: forms.Form) -> bool:
    if not form.is_valid():
        return False
    try:
        job_start(
            project=project,
            kind=kind,
            params=form.params(),
            created_by=request.user,
            start_key=form.cleaned_data["start_key"],
        )
    except FeedbackError as exc:
        form.add_error(None, exc.message)
        for path, messages in exc.errors.items():
            # "models.0.endpoint" belongs under the form's endpoint field.
            field = path.rsplit(".", 1)[-1]
            if field in form.fields:
                form.add_error(field, messages)
            else:
                form.add_error(None, f"{path}: {' '.join(messages)}")
        return False
    return True


def _jobs_page(
    request: HttpRequest, project: Project, generate: GenerateForm, judge: JudgeForm
) -> HttpResponse:
    jobs = Job.objects.filter(project=project).order_by("-created_at")[:50]
    context = {
        **round_table(project),
        "jobs": jobs,
        "generate_form": generate,
        "judge_form": judge,
    }
    return render(request, "annotate/jobs.html", context)


@login_required
def project_jobs(request: HttpRequest, project_id: int) -> HttpResponse:
    project = admin_project(request, project_id)
    return _jobs_page(request, project, GenerateForm(), JudgeForm(project=project))


@login_required
@require_POST
def job_generate(request: HttpRequest, project_id: int) -> HttpResponse:
    project = admin_project(request, project_id)
    form = GenerateForm(request.POST)
    if start_from_form(request, project, Job.Kind.GENERATE, form):
        return redirect("annotate:project-jobs", project_id=project.pk)
    return _jobs_page(request, project, form, JudgeForm(project=project))


@login_required
@require_POST
def job_judge(request: HttpRequest, project_id: int) -> HttpResponse:
    project = admin_project(request, project_id)
    form = JudgeForm(request.POST, project=project)
    if start_from_form(request, project, Job.Kind.JUDGE, form):
        return redirect("annotate:project-jobs", project_id=project.pk)
    return _jobs_page(request, project, GenerateForm(), form)


def _job_context(job: Job) -> dict[str, Any]:
    failures = JudgeOutput.objects.filter(job=job).exclude(parse_error="")
    return {
        "job": job,
        "parse_error_count": failures.count(),
        "parse_errors": failures.order_by("id")[:5],
    }


@login_required_htmx
def job_progress(request: HtmxHttpRequest, job_id: int) -> HttpResponse:
    """The job's progress bar; htmx polls it while the job is queued or running."""
    job = get_object_or_404(Job, pk=job_id)
    admin_project(request, job.project_id)
    return render(request, "annotate/jobs.html#job-progress", _job_context(job))


@login_required_htmx
@require_POST
def job_stop(request: HtmxHttpRequest, job_id: int) -> HttpResponse:
    return _job_change(request, job_id, job_cancel)


@login_required_htmx
@require_POST
def job_restart(request: HtmxHttpRequest, job_id: int) -> HttpResponse:
    """Retry a failed or stalled job in place; it resumes where the last attempt stopped."""
    return _job_change(request, job_id, job_retry)


def _job_change(request: HtmxHttpRequest, job_id: int, change: Callable[..., bool]) -> HttpResponse:
    """Apply a project admin's `change` to the job; show its row again (htmx) or the page."""
    job = get_object_or_404(Job, pk=job_id)
    admin_project(request, job.project_id)
    change(job=job)
    job.refresh_from_db()
    if request.htmx:
        return render(request, "annotate/jobs.html#job-progress", _job_context(job))
    return redirect("annotate:project-jobs", project_id=job.project_id)


@login_required
def judge_quality_page(request: HttpRequest, project_id: int) -> HttpResponse:
    project = report_project(request, project_id)
    reports = [judge_quality(project=project, judge=j) for j in judges_of_project(project)]
    people = people_position_wins(project=project)
    return render(
        request,
        "annotate/judge_quality.html",
        {
            "project": project,
            "role": member_role(request.user, project),
            "reports": reports,
            "people": people,
        },
    )
