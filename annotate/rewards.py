"""Admin pages for reward models: train, activate, score, evaluate, and best-of-N."""

from __future__ import annotations

import typing
from typing import Any, Literal

from django import forms
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST
from pydantic import BaseModel

from annotate.jobs import StartKeyField, start_from_form
from feedback import plots
from feedback.jobs import RewardData, RewardTraining
from feedback.models import Job, Project, RewardModel
from feedback.rewards import (
    LENGTH_POINTS,
    active_reward_model,
    project_reward_models,
    prompt_candidates_ranked,
    reward_length_bins,
    reward_length_points,
    reward_model_activate,
    reward_model_delete,
)
from feedback.selectors import projects_administered
from feedback.views import admin_project

REWARD_JOB_KINDS = [Job.Kind.TRAIN_REWARD, Job.Kind.SCORE, Job.Kind.EVALUATE_REWARD]


def form_fields(model: type[BaseModel]) -> dict[str, forms.Field]:
    """Form fields for a parameters model: its types, bounds, defaults and descriptions,
    stated once there. Bounds a form field cannot hold (above, not at, a number) are
    left to the model, whose refusal `start_from_form` shows on the field."""
    fields: dict[str, forms.Field] = {}
    for name, info in model.model_fields.items():
        common = {"initial": info.default, "help_text": info.description or ""}
        bounds = {
            key: value
            for item in info.metadata
            for key, value in (
                ("min_value", getattr(item, "ge", None)),
                ("max_value", getattr(item, "le", None)),
                ("max_length", getattr(item, "max_length", None)),
            )
            if value is not None
        }
        if typing.get_origin(info.annotation) is Literal:
            choices = [(value, value) for value in typing.get_args(info.annotation)]
            fields[name] = forms.ChoiceField(choices=choices, **common)
        elif info.annotation is bool:
            fields[name] = forms.BooleanField(required=False, **common)
        elif info.annotation is int:
            fields[name] = forms.IntegerField(**common, **bounds)
        elif info.annotation is float:
            fields[name] = forms.FloatField(**common, **bounds)
        else:
            fields[name] = forms.CharField(required=False, **common, **bounds)
    return fields


class RewardTrainForm(forms.Form):
    """A training job: a backbone, the data (`RewardData`) and settings (`RewardTraining`)."""

    start_key = StartKeyField()
    name = forms.CharField(max_length=200)
    backbone = forms.CharField(
        max_length=500,
        initial=lambda: settings.REWARD_DEFAULT_BACKBONE,
        help_text="A hub name, or a directory under an allowed model directory.",
    )
    backbone_kind = forms.ChoiceField(
        choices=RewardModel.BackboneKind.choices, initial=RewardModel.BackboneKind.EMBEDDING
    )

    def __init__(self, *args: Any, project: Project, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields |= form_fields(RewardData) | form_fields(RewardTraining)
        aspects = [(name, name) for name in project.aspects.values_list("name", flat=True)]
        self.fields["aspect"] = forms.ChoiceField(
            choices=[("", "All, each scaled to 0-1"), *aspects],
            required=False,
            help_text=RewardData.model_fields["aspect"].description,
        )

    def data_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in RewardData.model_fields]

    def training_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in RewardTraining.model_fields]

    def params(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "name": data["name"],
            "backbone": data["backbone"],
            "backbone_kind": data["backbone_kind"],
            "data": {name: data[name] for name in RewardData.model_fields},
            "training": {name: data[name] for name in RewardTraining.model_fields},
        }


class RewardEvaluateForm(forms.Form):
    start_key = StartKeyField()
    project = forms.ModelChoiceField(queryset=Project.objects.none(), label="On the feedback of")

    def __init__(self, *args: Any, reward_model: RewardModel, user: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reward_model = reward_model
        self.fields["project"].queryset = projects_administered(user).order_by("name")

    def params(self) -> dict[str, Any]:
        return {"reward_model_id": self.reward_model.pk}


class RewardScoreForm(forms.Form):
    start_key = StartKeyField()

    def __init__(self, *args: Any, reward_model: RewardModel, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reward_model = reward_model

    def params(self) -> dict[str, Any]:
        return {"reward_model_id": self.reward_model.pk, "only_missing": True}


def _reward_models_page(
    request: HttpRequest, project: Project, form: RewardTrainForm
) -> HttpResponse:
    context = {
        "project": project,
        "models": RewardModel.objects.filter(project=project),
        "jobs": Job.objects.filter(project=project, kind__in=REWARD_JOB_KINDS)[:20],
        "form": form,
    }
    return render(request, "annotate/reward_models.html", context)


@login_required
def reward_models(request: HttpRequest, project_id: int) -> HttpResponse:
    project = admin_project(request, project_id)
    return _reward_models_page(request, project, RewardTrainForm(project=project))


@login_required
@require_POST
def reward_model_train(request: HttpRequest, project_id: int) -> HttpResponse:
    project = admin_project(request, project_id)
    form = RewardTrainForm(request.POST, project=project)
    if start_from_form(request, project, Job.Kind.TRAIN_REWARD, form):
        return redirect("annotate:reward-models", project_id=project.pk)
    return _reward_models_page(request, project, form)


def _project_model(request: HttpRequest, project_id: int, reward_model_id: int) -> RewardModel:
    project = admin_project(request, project_id)
    models = project_reward_models(project, request.user)
    return get_object_or_404(models, pk=reward_model_id)


def _metric_charts(metrics: dict[str, Any], title: str) -> dict[str, Any]:
    """A metrics dict with its reliability diagram."""
    points = [(b["mean_predicted"], b["observed"]) for b in metrics.get("reliability", [])]
    chart = (
        plots.line_chart(
            {"model": points},
            title=f"Reliability: {title}",
            x_label="predicted P(chosen)",
            y_label="observed share chosen",
            diagonal=True,
            y_limits=(0, 1),
        )
        if points
        else None
    )
    return {"title": title, "metrics": metrics, "reliability_chart": chart}


CURVE_SERIES = ("train_loss", "held_out_loss", "held_out_accuracy")


def _curve_chart(curve: list[dict[str, Any]]) -> str | None:
    """Losses and held-out accuracy against the optimiser step."""
    if not curve:
        return None
    series = {name: [(point["step"], point.get(name)) for point in curve] for name in CURVE_SERIES}
    return plots.line_chart(series, title="Learning curve", x_label="step", y_label="value")


def _reward_model_page(
    request: HttpRequest, model: RewardModel, evaluate_form: RewardEvaluateForm
) -> HttpResponse:
    curve_chart = _curve_chart(model.curve)
    points = reward_length_points(reward_model=model)
    length_chart = (
        plots.scatter_chart(
            points, title="Reward against response length", x_label="characters", y_label="reward"
        )
        if points
        else None
    )
    evaluations = [
        _metric_charts(evaluation.metrics, f"on {evaluation.project.name}")
        | {"evaluation": evaluation}
        for evaluation in model.evaluations.all()
    ]
    jobs = Job.objects.filter(
        kind=Job.Kind.EVALUATE_REWARD,
        params__reward_model_id=model.pk,
        project__in=projects_administered(request.user),
    )[:10]
    context = {
        "project": model.project,
        "model": model,
        "held_out": _metric_charts(model.metrics.get("held_out") or {}, "held-out split"),
        "curve_chart": curve_chart,
        "length_chart": length_chart,
        "length_bins": reward_length_bins(points),
        "length_points_max": LENGTH_POINTS,
        "evaluations": evaluations,
        "evaluate_form": evaluate_form,
        "score_form": RewardScoreForm(reward_model=model),
        "jobs": jobs,
    }
    return render(request, "annotate/reward_model.html", context)


@login_required
def reward_model_page(request: HttpRequest, project_id: int, reward_model_id: int) -> HttpResponse:
    model = _project_model(request, project_id, reward_model_id)
    form = RewardEvaluateForm(
        reward_model=model, user=request.user, initial={"project": model.project}
    )
    return _reward_model_page(request, model, form)


@login_required
@require_POST
def reward_model_activation(
    request: HttpRequest, project_id: int, reward_model_id: int
) -> HttpResponse:
    reward_model_activate(reward_model=_project_model(request, project_id, reward_model_id))
    return redirect("annotate:reward-models", project_id=project_id)


@login_required
@require_POST
def reward_model_removal(
    request: HttpRequest, project_id: int, reward_model_id: int
) -> HttpResponse:
    reward_model_delete(reward_model=_project_model(request, project_id, reward_model_id))
    return redirect("annotate:reward-models", project_id=project_id)


@login_required
@require_POST
def reward_model_score(request: HttpRequest, project_id: int, reward_model_id: int) -> HttpResponse:
    """Score the responses the model has not scored yet."""
    model = _project_model(request, project_id, reward_model_id)
    start_from_form(
        request, model.project, Job.Kind.SCORE, RewardScoreForm(request.POST, reward_model=model)
    )
    return redirect("annotate:reward-models", project_id=project_id)


@login_required
@require_POST
def reward_model_evaluate(
    request: HttpRequest, project_id: int, reward_model_id: int
) -> HttpResponse:
    """Evaluate the model on a project the user administers (the job is that project's)."""
    model = _project_model(request, project_id, reward_model_id)
    form = RewardEvaluateForm(request.POST, reward_model=model, user=request.user)
    if form.is_valid() and start_from_form(
        request, form.cleaned_data["project"], Job.Kind.EVALUATE_REWARD, form
    ):
        return redirect("annotate:reward-model", project_id=project_id, reward_model_id=model.pk)
    return _reward_model_page(request, model, form)


BEST_OF_N_PAGE = 10


@login_required
def best_of_n(request: HttpRequest, project_id: int) -> HttpResponse:
    """Each prompt's candidates, best first by the active reward model."""
    project = admin_project(request, project_id)
    model = active_reward_model(project)
    prompts = Paginator(project.prompts.order_by("id"), BEST_OF_N_PAGE).get_page(
        request.GET.get("page")
    )
    model_id = model.pk if model is not None else None
    ranked = [
        (prompt, prompt_candidates_ranked(prompt=prompt, reward_model_id=model_id))
        for prompt in prompts
    ]
    context = {"project": project, "model": model, "page": prompts, "ranked": ranked}
    return render(request, "annotate/best_of_n.html", context)
