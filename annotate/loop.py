"""Admin pages of the active-learning loop: its configuration, a round started by hand, and
the rounds table the Jobs page polls."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from annotate.jobs import StartKeyField
from feedback.loop import (
    LOOP_FIELDS,
    default_reward_options,
    loop_config,
    loop_config_save,
    round_start,
    round_table,
)
from feedback.models import LoopConfig, Project, RewardModel, SelectionRound
from feedback.services import FeedbackError
from feedback.views import HtmxHttpRequest, admin_project, login_required_htmx

# The page edits the reward-model options as its own "retrain" fields.
FORM_FIELDS = [name for name in LOOP_FIELDS if name != "reward_options"]


class LoopForm(forms.Form):
    """The loop's configuration; the reward model's main options as fields (the API takes
    every training option), the others kept as they are stored."""

    retrain = forms.BooleanField(
        required=False, label="Retrain each round", help_text="On the labels so far."
    )
    reward_name = forms.CharField(max_length=180, label="Model name", initial="Loop")
    backbone = forms.CharField(
        max_length=500, help_text="A hub name, or a directory under an allowed model directory."
    )
    backbone_kind = forms.ChoiceField(choices=RewardModel.BackboneKind.choices)
    heads = forms.IntegerField(
        min_value=1, max_value=64, help_text="2 or more for disagreement and Thompson sampling."
    )
    max_epochs = forms.IntegerField(min_value=1, max_value=1000)

    def __init__(self, *args: Any, config: LoopConfig, **kwargs: Any) -> None:
        self.config = config
        stored = config.reward_options or {}
        reward = stored or default_reward_options()
        training = reward.get("training", {})
        initial = {
            **{name: getattr(config, name) for name in FORM_FIELDS},
            "retrain": bool(stored),
            "reward_name": reward["name"],
            "backbone": reward["backbone"],
            "backbone_kind": reward.get("backbone_kind", "embedding"),
            "heads": training.get("heads", 1),
            "max_epochs": training.get("max_epochs", 3),
        }
        super().__init__(*args, initial=initial, **kwargs)
        self.fields.update(forms.fields_for_model(LoopConfig, fields=FORM_FIELDS))
        self.order_fields([*FORM_FIELDS, "retrain"])

    def changes(self) -> dict[str, Any]:
        data = self.cleaned_data
        stored = self.config.reward_options or default_reward_options()
        reward = {
            **stored,
            "name": data["reward_name"],
            "backbone": data["backbone"],
            "backbone_kind": data["backbone_kind"],
            "training": {
                **stored.get("training", {}),
                "heads": data["heads"],
                "max_epochs": data["max_epochs"],
            },
        }
        return {
            **{name: data[name] for name in FORM_FIELDS},
            "reward_options": reward if data["retrain"] else {},
        }


class RoundStartForm(forms.Form):
    start_key = StartKeyField()


REWARD_FIELDS = {
    "reward_options.name": "reward_name",
    "reward_options.backbone": "backbone",
    "reward_options.backbone_kind": "backbone_kind",
    "reward_options.training.heads": "heads",
    "reward_options.training.max_epochs": "max_epochs",
}


def _add_errors(form: forms.Form, error: FeedbackError) -> None:
    """The service's errors under the form's fields, the others above the form."""
    form.add_error(None, error.message)
    for path, messages in error.errors.items():
        field = REWARD_FIELDS.get(path, path)
        if field in form.fields:
            form.add_error(field, messages)
        else:
            form.add_error(None, f"{path}: {' '.join(messages)}")


def _loop_page(
    request: HttpRequest,
    project: Project,
    form: LoopForm,
    start_form: RoundStartForm | None = None,
) -> HttpResponse:
    """The page; forms with errors come back as 200, which htmx's boosted forms swap in."""
    context = {
        **round_table(project),
        "form": form,
        "start_form": start_form or RoundStartForm(),
    }
    return render(request, "annotate/loop.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def loop_page(request: HttpRequest, project_id: int) -> HttpResponse:
    """The loop's configuration; saving it with the loop turned on starts a round."""
    project = admin_project(request, project_id)
    config = loop_config(project)
    if request.method == "GET":
        return _loop_page(request, project, LoopForm(config=config))
    form = LoopForm(request.POST, config=config)
    if form.is_valid():
        try:
            loop_config_save(project=project, changes=form.changes(), user=request.user)
        except FeedbackError as error:
            _add_errors(form, error)
        else:
            return redirect("annotate:loop", project_id=project.pk)
    return _loop_page(request, project, form)


@login_required
@require_POST
def loop_round_start(request: HttpRequest, project_id: int) -> HttpResponse:
    """Start a round now with the loop's configuration (the loop may be off)."""
    project = admin_project(request, project_id)
    form = RoundStartForm(request.POST)
    if form.is_valid():
        try:
            round_start(
                project=project,
                trigger=SelectionRound.Trigger.MANUAL,
                created_by=request.user,
                start_key=form.cleaned_data["start_key"],
            )
        except FeedbackError as error:
            _add_errors(form, error)
        else:
            return redirect("annotate:loop", project_id=project.pk)
    return _loop_page(request, project, LoopForm(config=loop_config(project)), form)


@login_required_htmx
def loop_rounds(request: HtmxHttpRequest, project_id: int) -> HttpResponse:
    """The rounds table; htmx polls it while a round is under way or the loop is on."""
    project = admin_project(request, project_id)
    return render(request, "annotate/jobs.html#round-table", round_table(project))
