"""Forms of the project pages: a project's settings, its aspects and labels (formsets),
and its members. They check what a browser sends and name the field at fault; the
services in `feedback.services` decide and write."""

from __future__ import annotations

import re
from typing import Any

from django import forms

from feedback.models import (
    FeedbackKind,
    FreeTextFeedback,
    Project,
    ProjectMember,
    RatingAspect,
    SpanLabel,
)
from feedback.services import AspectInput, FeedbackError, SpanLabelInput

# The Project flag behind each kind of feedback and each free-text mode.
KIND_FIELDS = {
    FeedbackKind.PAIRWISE: "collects_pairwise",
    FeedbackKind.RATING: "collects_rating",
    FeedbackKind.RANKING: "collects_ranking",
    FeedbackKind.SPAN: "collects_spans",
    FeedbackKind.FREE_TEXT: "collects_free_text",
}
MODE_FIELDS = {
    FreeTextFeedback.Mode.CRITIQUE: "asks_critique",
    FreeTextFeedback.Mode.REWRITE: "asks_rewrite",
    FreeTextFeedback.Mode.RATIONALE: "asks_rationale",
}


class ProjectForm(forms.ModelForm):
    """A project's settings; the kinds and free-text modes are one checkbox list each."""

    kinds = forms.MultipleChoiceField(
        label="Kinds of feedback",
        choices=FeedbackKind.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
    )
    free_text_modes = forms.MultipleChoiceField(
        label="Free text asks for",
        choices=FreeTextFeedback.Mode.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="A rationale comes with each pairwise choice; critiques and rewrites are "
        "written per response.",
    )
    ranking_size = forms.IntegerField(
        min_value=2, max_value=20, initial=4, help_text="Most candidates shown in one ranking."
    )
    annotators_per_task = forms.IntegerField(
        min_value=1,
        max_value=50,
        initial=1,
        help_text="How many different annotators answer each task; agreement needs two.",
    )
    lease_minutes = forms.IntegerField(
        min_value=1,
        max_value=24 * 60,
        initial=30,
        help_text="A task opened and not answered returns to the queue after this.",
    )

    class Meta:
        model = Project
        fields = [
            "name",
            "kinds",
            "free_text_modes",
            "ranking_size",
            "annotators_per_task",
            "lease_minutes",
            "show_judge_suggestions",
            "guidelines",
        ]
        widgets = {"guidelines": forms.Textarea(attrs={"rows": 14})}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        project = self.instance
        if project.pk:
            self.initial["kinds"] = [kind.value for kind in project.feedback_kinds]
            self.initial["free_text_modes"] = [
                mode.value for mode, name in MODE_FIELDS.items() if getattr(project, name)
            ]
        else:
            self.initial["kinds"] = [FeedbackKind.PAIRWISE.value]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        kinds = data.get("kinds") or []
        if "kinds" in data and not kinds:
            self.add_error("kinds", "Pick at least one kind of feedback to collect.")
        if FeedbackKind.FREE_TEXT in kinds and not data.get("free_text_modes"):
            self.add_error(
                "free_text_modes", "Free text needs a critique, a rewrite or a rationale."
            )
        return data

    def project_fields(self) -> dict[str, Any]:
        """The Project fields the form sets, flags included, for the services."""
        data = self.cleaned_data
        fields = {
            name: data[name]
            for name in self._meta.fields
            if name not in {"kinds", "free_text_modes"}
        }
        fields |= {name: kind in data["kinds"] for kind, name in KIND_FIELDS.items()}
        modes = data["free_text_modes"] if FeedbackKind.FREE_TEXT in data["kinds"] else []
        fields |= {name: mode in modes for mode, name in MODE_FIELDS.items()}
        return fields


class AspectForm(forms.ModelForm):
    class Meta:
        model = RatingAspect
        fields = ["name", "rubric", "scale_min", "scale_max"]
        widgets = {"rubric": forms.Textarea(attrs={"rows": 1})}

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        low, high = data.get("scale_min"), data.get("scale_max")
        if low is not None and high is not None and low >= high:
            self.add_error("scale_max", f"The maximum must be above the minimum ({low}).")
        return data

    def item(self) -> AspectInput:
        data = self.cleaned_data
        return AspectInput(
            id=self.instance.pk,
            name=data.get("name", ""),
            rubric=data.get("rubric", ""),
            scale_min=data.get("scale_min", 1),
            scale_max=data.get("scale_max", 5),
            delete=bool(data.get("DELETE")),
        )


class SpanLabelForm(forms.ModelForm):
    class Meta:
        model = SpanLabel
        fields = ["name", "description", "color", "default_severity"]
        widgets = {
            "color": forms.TextInput(attrs={"type": "color"}),
            "description": forms.Textarea(attrs={"rows": 1}),
        }

    def clean_color(self) -> str:
        color = self.cleaned_data["color"]
        if not re.fullmatch(r"#[0-9a-fA-F]{6}", color):
            raise forms.ValidationError(f"Colour must be #rrggbb, not {color!r}.")
        return color

    def item(self) -> SpanLabelInput:
        data = self.cleaned_data
        return SpanLabelInput(
            id=self.instance.pk,
            name=data.get("name", ""),
            description=data.get("description", ""),
            color=data.get("color", "#f59e0b"),
            default_severity=data.get("default_severity", "minor"),
            delete=bool(data.get("DELETE")),
        )


# One blank row each: fill it to add one; a saved page shows a new blank row.
AspectFormSet = forms.modelformset_factory(RatingAspect, form=AspectForm, extra=1, can_delete=True)
SpanLabelFormSet = forms.modelformset_factory(
    SpanLabel, form=SpanLabelForm, extra=1, can_delete=True
)


def formset_items(formset: forms.BaseModelFormSet) -> list[tuple[forms.ModelForm, Any]]:
    """(form, input) for each row to save or remove; blank new rows are left out."""
    return [
        (form, form.item())
        for form in formset.forms
        if form.instance.pk is not None
        or (form.has_changed() and not form.cleaned_data.get("DELETE"))
    ]


def errors_to_forms(
    error: FeedbackError,
    form: forms.Form,
    rows: dict[str, list[tuple[forms.Form, Any]]],
) -> None:
    """Put a service's errors (`name`, `aspects[2].scale_max`) on the fields they name."""
    for path, messages in error.errors.items():
        prefix, _, rest = path.partition("[")
        if prefix in rows and rest:
            index, _, field = rest.partition("].")
            target = rows[prefix][int(index.rstrip("]"))][0]
        else:
            target, field = form, path
        target.add_error(field if field in target.fields else None, messages)
    if not error.errors:
        form.add_error(None, error.message)


class MemberAddForm(forms.Form):
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(
        choices=ProjectMember.Role.choices, initial=ProjectMember.Role.ANNOTATOR
    )


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField(choices=ProjectMember.Role.choices)


class GuidelinesPreviewForm(forms.Form):
    guidelines = forms.CharField(required=False, strip=False)
