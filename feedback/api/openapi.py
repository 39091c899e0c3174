"""OpenAPI shapes of the bulk and job request bodies, generated from the pydantic models
that parse them (feedback.schemas, feedback.jobs), so the schema and the validation cannot
drift."""

from typing import Any

import drf_spectacular.openapi
from django.db import models
from django.db.models import Q
from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.plumbing import ResolvedComponent
from pydantic import BaseModel, ConfigDict, Field

from feedback.jobs import RewardData
from feedback.schemas import CandidateRow, ImportedRow


class PromptImportBody(BaseModel):
    """Rows as in a JSONL import file; all are imported or none."""

    rows: list[ImportedRow] = Field(min_length=1)


class ResponsesCreateBody(BaseModel):
    """Candidate responses for prompts already in the project; all are added or none."""

    responses: list[CandidateRow] = Field(min_length=1)
    create_tasks: bool = Field(
        default=True, description="Create the tasks the project collects on."
    )


class ScoreBody(BaseModel):
    """Score the project's responses with this model."""

    model_config = ConfigDict(extra="forbid")

    only_missing: bool = Field(True, description="Only the responses it has not scored yet.")
    batch_size: int = Field(64, ge=1, le=4096)


class RewardEvaluateBody(BaseModel):
    """Evaluate this model on a project's feedback: its own (default) or another's that the
    caller administers; `data` defaults to what the model was trained on."""

    model_config = ConfigDict(extra="forbid")

    project: int | None = Field(None, ge=1, le=2**63 - 1)
    data: RewardData | None = None


def openapi_30(schema: Any) -> Any:
    """JSON Schema 2020-12 from pydantic as OpenAPI 3.0 (drf-spectacular's version): `null`
    as a type becomes `nullable`, `const` an enum, a numeric exclusive bound a bound with
    a boolean flag, `$defs` references components."""
    if isinstance(schema, list):
        return [openapi_30(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    schema = {key: openapi_30(value) for key, value in schema.items() if key != "title"}
    if isinstance(schema.get("$ref"), str):
        schema["$ref"] = schema["$ref"].replace("#/$defs/", "#/components/schemas/")
    if "const" in schema:
        schema["enum"] = [schema.pop("const")]
    for bound, exclusive in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if isinstance(schema.get(exclusive), int | float) and not isinstance(
            schema[exclusive], bool
        ):
            schema[bound] = schema[exclusive]
            schema[exclusive] = True
    for keyword in ("anyOf", "oneOf"):
        options = schema.get(keyword)
        if options and {"type": "null"} in options:
            options = [option for option in options if option != {"type": "null"}]
            schema["nullable"] = True
            if len(options) == 1:
                del schema[keyword]
                only = options[0]
                schema.update(only if "$ref" not in only else {"allOf": [only]})
            else:
                schema[keyword] = options
    return schema


class BodyModelExtension(OpenApiSerializerExtension):
    """Lets `extend_schema(request=...)` name a pydantic model; its nested models become
    components of their own (ImportedRow, Message, ...)."""

    target_class = BaseModel
    match_subclasses = True
    priority = 1  # over drf-spectacular's contrib extension, which describes serialization

    def get_name(self, auto_schema, direction) -> str:
        return self.target.__name__

    def map_serializer(self, auto_schema, direction) -> dict[str, Any]:
        schema = self.target.model_json_schema(mode="validation")
        for name, definition in schema.pop("$defs", {}).items():
            auto_schema.registry.register_on_missing(
                ResolvedComponent(
                    name=name,
                    type=ResolvedComponent.SCHEMA,
                    object=name,
                    schema=openapi_30(definition),
                )
            )
        return openapi_30(schema)


ERROR_BODY = {
    "type": "object",
    "properties": {
        "detail": {"type": "string"},
        "errors": {"description": "Per field or per row: what is wrong."},
    },
    "additionalProperties": {"description": "A serializer's field errors, by field name."},
}
ERRORS = {
    "400": "The input is refused; the body names each problem.",
    "401": "No valid credentials.",
    "403": "The caller's role does not allow this.",
    "404": "No such project or object for the caller, or an invalid page cursor.",
    "413": "The request body is over the size limit.",
    "415": "The body is not JSON.",
}


class AutoSchema(drf_spectacular.openapi.AutoSchema):
    """drf-spectacular's schema plus the error answers every view can give, so clients and
    conformance checks know them (the exception handler shapes them all alike)."""

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if self.path.startswith(("/api/schema/", "/api/docs/")):
            return responses
        codes = ["400", "401", "403", "404"]
        if self.method in ("POST", "PUT", "PATCH"):
            codes += ["413", "415"]
        for code in codes:
            responses.setdefault(
                code,
                {
                    "description": ERRORS[code],
                    "content": {"application/json": {"schema": ERROR_BODY}},
                },
            )
        return responses


def check_constraint_rules(model: type[models.Model]) -> tuple[list[dict], dict[str, int]]:
    """A model's CheckConstraints as JSON Schema for a create body: each OR of `field=value`
    as an anyOf (an absent field counts as its default), each `field__gte=n` as a minimum."""
    rules: list[dict] = []
    minimums: dict[str, int] = {}
    for constraint in model._meta.constraints:
        condition = getattr(constraint, "condition", None)
        if not isinstance(condition, Q):
            continue
        lookups = [
            child.children[0] if isinstance(child, Q) else child for child in condition.children
        ]
        if condition.connector == Q.OR and all("__" not in name for name, _ in lookups):
            options = []
            for name, value in lookups:
                option: dict[str, Any] = {"properties": {name: {"enum": [value]}}}
                if model._meta.get_field(name).default != value:
                    option["required"] = [name]
                options.append(option)
            rules.append({"anyOf": options, "description": constraint.violation_error_message})
        elif len(lookups) == 1 and lookups[0][0].endswith("__gte"):
            minimums[lookups[0][0].removesuffix("__gte")] = lookups[0][1]
    return rules, minimums


def project_rules_hook(result, generator, request, public):
    """drf-spectacular postprocessing: state Project's constraints on its create body, so
    that a body valid by the schema is one the database accepts."""
    from feedback.models import Project

    body = result["components"]["schemas"].get("ProjectRequest")
    if body is not None:
        rules, minimums = check_constraint_rules(Project)
        body["allOf"] = rules
        for name, minimum in minimums.items():
            body["properties"][name]["minimum"] = minimum
    return result
