"""Django admin: admins create and configure projects fully here, and import files.

Model permissions say which kinds of rows a staff user may touch; project roles say which
rows. Outside superusers, every list, form and choice below is limited to the projects where
the user is a project admin, so a staff user cannot reach another project or grant
themselves a place in it.
"""

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
from feedback.selectors import projects_administered
from feedback.services import FeedbackError, project_update

# How each model reaches its project, for scoping querysets and foreign-key choices.
PROJECT_PATH = {
    Project: "pk",
    Prompt: "project",
    Response: "prompt__project",
    Task: "project",
    Job: "project",
    Submission: "task__project",
    JudgeOutput: "task__project",
}


def in_own_projects(request, queryset):
    """The queryset limited to projects the user administers (superusers: unchanged)."""
    if request.user.is_superuser:
        return queryset
    path = PROJECT_PATH[queryset.model]
    return queryset.filter(**{f"{path}__in": projects_administered(request.user)})


class ProjectScopedAdmin(admin.ModelAdmin):
    """Rows, and the rows a form may point at, of the user's own projects only.

    Project filters in lists use RelatedOnlyFieldListFilter, so other projects' names do
    not show there either.
    """

    def get_queryset(self, request):
        return in_own_projects(request, super().get_queryset(request))

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.related_model in PROJECT_PATH:
            kwargs["queryset"] = in_own_projects(
                request, db_field.related_model._default_manager.all()
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


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
class ProjectAdmin(ProjectScopedAdmin):
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
        if change:
            project_update(project=obj)  # the form set the fields; the service recounts
        else:
            super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        if not change and not request.user.is_superuser:
            # The creator administers the new project, as through the API, so it stays in
            # their lists (superusers see every project anyway).
            ProjectMember.objects.update_or_create(
                project=form.instance,
                user=request.user,
                defaults={"role": ProjectMember.Role.ADMIN},
            )

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
        project = get_object_or_404(self.get_queryset(request), pk=project_id)
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
class PromptAdmin(ProjectScopedAdmin):
    list_display = ["id", "project", "external_id", "created_at"]
    list_filter = [("project", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["external_id", "text"]


@admin.register(Response)
class ResponseAdmin(ProjectScopedAdmin):
    list_display = ["id", "prompt", "model_name", "author", "created_at"]
    list_filter = ["model_name"]
    raw_id_fields = ["prompt", "author", "job"]


@admin.register(Task)
class TaskAdmin(ProjectScopedAdmin):
    list_display = ["id", "project", "layout", "priority", "created_at"]
    list_filter = [("project", admin.RelatedOnlyFieldListFilter), "layout"]
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
class JudgeOutputAdmin(ProjectScopedAdmin):
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
class JobAdmin(ProjectScopedAdmin):
    list_display = ["id", "project", "kind", "status", "done", "total", "created_at"]
    list_filter = ["kind", "status"]


@admin.register(Submission)
class SubmissionAdmin(ProjectScopedAdmin):
    """Answers change through `submission_create` only: it keeps the history and the
    leaderboard's counts (PairwiseTally) in step, which an edit or a delete here would
    not."""

    list_display = ["id", "task", "annotator", "judge", "is_current", "duration_ms", "created_at"]
    list_filter = ["is_current", "judge"]
    raw_id_fields = ["job"]
    readonly_fields = ["task", "annotator", "judge", "is_current", "supersedes"]

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
