"""Query-string filters of the API lists (django-filter)."""

from datetime import UTC, datetime

import django_filters
from django import forms
from django.core.exceptions import ValidationError
from django_filters.fields import IsoDateTimeField

from feedback.models import FeedbackKind, Prompt, Response, Submission, Task


class UtcIsoDateTimeField(IsoDateTimeField):
    """ISO 8601 moments, moved to UTC: PostgreSQL refuses offsets past about 16 hours."""

    def to_python(self, value) -> datetime | None:
        moment = super().to_python(value)
        if moment is None:
            return None
        try:
            return moment.astimezone(UTC)
        except OverflowError as exc:
            raise ValidationError("The moment is out of range.") from exc


class UtcDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UtcIsoDateTimeField


def _in_project(model):
    """The choices of an id filter: rows of the URL's project only, so that another
    project's id is refused as one that does not exist, not accepted and found empty."""

    def queryset(request):
        if request is None:  # schema generation
            return model.objects.none()
        return model.objects.filter(project_id=request.resolver_match.kwargs["project_id"])

    return queryset


class StrictFilterSet(django_filters.FilterSet):
    """django-filter reads an empty value as no filter, so `?layout=` would quietly list
    everything; an empty choice, id or moment is refused like any bad value. Empty text
    (`?external_id=`) still means no filter."""

    def get_form_class(self):
        class Form(super().get_form_class()):
            def clean(self):
                cleaned = super().clean()
                for name, field in self.fields.items():
                    if self.data.get(name) == "" and not isinstance(field, forms.CharField):
                        self.add_error(name, "This field may not be empty.")
                return cleaned

        return Form


KIND_LOOKUPS = {
    FeedbackKind.PAIRWISE: {"pairwise__isnull": False},
    FeedbackKind.RATING: {"ratings__isnull": False},
    FeedbackKind.RANKING: {"ranking__isnull": False},
    FeedbackKind.SPAN: {"spans__isnull": False},
    FeedbackKind.FREE_TEXT: {"texts__isnull": False},
}


class PromptFilter(StrictFilterSet):
    created_after = UtcDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UtcDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Prompt
        fields = ["external_id"]


class ResponseFilter(StrictFilterSet):
    prompt = django_filters.ModelChoiceFilter(queryset=_in_project(Prompt))

    class Meta:
        model = Response
        fields = ["prompt", "model_name"]


class TaskFilter(StrictFilterSet):
    prompt = django_filters.ModelChoiceFilter(queryset=_in_project(Prompt))

    class Meta:
        model = Task
        fields = ["prompt", "layout"]


class FeedbackFilter(StrictFilterSet):
    kind = django_filters.ChoiceFilter(choices=FeedbackKind.choices, method="filter_kind")
    task = django_filters.ModelChoiceFilter(queryset=_in_project(Task))
    annotator = django_filters.CharFilter(field_name="annotator__username")
    judge = django_filters.CharFilter(field_name="judge__name")
    created_after = UtcDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UtcDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Submission
        fields = ["task", "is_current"]

    def filter_kind(self, queryset, name: str, value: str):
        return queryset.filter(**KIND_LOOKUPS[FeedbackKind(value)]).distinct()
