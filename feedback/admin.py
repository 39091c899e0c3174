"""Django admin: admins create and configure projects fully here, and import files."""

from django import forms
from django.contrib import admin, messages
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse

from feedback.endpoints import inference_endpoints
from feedback.io import prompts_import_file
from feedback.models import (
    Job,
    Judge,
    JudgeOutput,
    Project,
    ProjectMember,
    Prompt,
    RatingAspect,
    Response,
    SpanLabel,
    Submission,
    Task,
)
from feedback.queue import task_slots_recount
from feedback.services import FeedbackError


class RatingAspectInline(admin.TabularInline):
    model = RatingAspect
    extra = 0


class SpanLabelInline(admin.TabularInline):
    model = SpanLabel
    extra = 0


class ProjectMemberInline(admin.TabularInline):
    model = ProjectMember
    extra = 0
    autocomplete_fields = ["user"]


class ImportForm(forms.Form):
    file = forms.FileField(help_text="JSONL, CSV or Parquet: prompt (or messages) and responses.")


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "feedback_kind_list", "annotators_per_task", "created_at"]
    search_fields = ["name"]
    inlines = [RatingAspectInline, SpanLabelInline, ProjectMemberInline]
    fieldsets = [
        (None, {"fields": ["name", "guidelines"]}),
        (
            "Feedback kinds",
            {
                "fields": [
                    "collects_pairwise",
                    "collects_rating",
                    "collects_ranking",
                    "collects_spans",
                    "collects_free_text",
                    ("asks_critique", "asks_rewrite", "asks_rationale"),
                    "ranking_size",
                ]
            },
        ),
        ("Queue", {"fields": ["annotators_per_task", "lease_minutes", "show_judge_suggestions"]}),
    ]

    def save_model(self, request, obj: Project, form, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if change and "annotators_per_task" in form.changed_data:
            task_slots_recount(project=obj)

    @admin.display(description="Feedback kinds")
    def feedback_kind_list(self, project: Project) -> str:
        return ", ".join(kind.label for kind in project.feedback_kinds)

    def get_urls(self):
        return [
            path(
                "<int:project_id>/import/",
                self.admin_site.admin_view(self.import_view),
                name="feedback_project_import",
            ),
            *super().get_urls(),
        ]

    def import_view(self, request, project_id: int):
        project = get_object_or_404(Project, pk=project_id)
        if not self.has_change_permission(request, project):
            return redirect("admin:index")
        form = ImportForm(request.POST or None, request.FILES or None)
        errors: list[str] = []
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                result = prompts_import_file(project=project, file=upload, name=upload.name)
            except FeedbackError as exc:
                errors = str(exc).splitlines()
            else:
                messages.success(
                    request,
                    f"Imported {result.prompts} prompts, {result.responses} responses, "
                    f"{result.tasks} tasks.",
                )
                return redirect(reverse("admin:feedback_project_change", args=[project.pk]))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": project,
            "title": f"Import prompts into {project}",
            "form": form,
            "errors": errors,
        }
        return render(request, "admin/feedback/project/import.html", context)


@admin.register(Prompt)
class PromptAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "external_id", "created_at"]
    list_filter = ["project"]
    search_fields = ["external_id", "text"]


@admin.register(Response)
class ResponseAdmin(admin.ModelAdmin):
    list_display = ["id", "prompt", "model_name", "author", "created_at"]
    list_filter = ["model_name"]
    raw_id_fields = ["prompt", "author", "job"]


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "layout", "priority", "created_at"]
    list_filter = ["project", "layout"]
    raw_id_fields = ["prompt"]


class JudgeAdminForm(forms.ModelForm):
    """The endpoint is picked from the operator's registry; Judge.clean() checks the rest."""

    endpoint = forms.ChoiceField(
        required=False, help_text=Judge._meta.get_field("endpoint").help_text
    )

    class Meta:
        model = Judge
        fields = ["name", "backend", "model_name", "endpoint", "prompt_template", "parameters"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["endpoint"].choices = [
            ("", "---------"),
            *((e.name, f"{e.name} ({e.base_url})") for e in inference_endpoints().values()),
        ]


@admin.register(Judge)
class JudgeAdmin(admin.ModelAdmin):
    form = JudgeAdminForm
    list_display = ["name", "backend", "model_name", "endpoint"]


class ParsedFilter(admin.SimpleListFilter):
    title = "parsed"
    parameter_name = "parsed"

    def lookups(self, request, model_admin):
        return [("yes", "Stored as feedback"), ("no", "Could not be parsed")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(parse_error="")
        if self.value() == "no":
            return queryset.exclude(parse_error="")
        return queryset


@admin.register(JudgeOutput)
class JudgeOutputAdmin(admin.ModelAdmin):
    """What judges said, read-only: where to look when a judge's verdicts go missing."""

    list_display = ["id", "judge", "job", "task", "kind", "swapped", "parse_error", "created_at"]
    list_filter = [ParsedFilter, "judge", "kind"]
    search_fields = ["raw_output", "parse_error"]
    list_select_related = ["judge", "job", "task"]
    ordering = ["-id"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # a job reruns the calls whose outputs are gone


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "kind", "status", "done", "total", "created_at"]
    list_filter = ["kind", "status"]


@admin.register(Submission)
class SubmissionAdmin(admin.ModelAdmin):
    list_display = ["id", "task", "annotator", "judge", "is_current", "duration_ms", "created_at"]
    list_filter = ["is_current", "judge"]
    raw_id_fields = ["task", "supersedes", "job"]
