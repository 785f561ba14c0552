"""The OpenAPI document: spectree's, generated once per app from the route declarations and
completed with what spectree cannot say from them; GET /openapi.json serves it as it is."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app
from pydantic import BaseModel, ConfigDict

from auth.principal import PARTNER_SCOPES
from gateway.context import Endpoint
from gateway.errors import PROBLEM_CONTENT_TYPE
from gateway.extensions import spec
from gateway.schemas import Problem

EXTENSION_KEY = "predgate.openapi"
SCHEMAS = "#/components/schemas/"
# Werkzeug's <converter(args):name> -> OpenAPI's {name}.
_RULE_VARIABLE = re.compile(r"<(?:[^<>]*:)?(\w+)>")


class FieldProblem(BaseModel):
    field: str
    reason: str


class ProblemDetails(Problem):
    """RFC 9457 problem details as gateway.errors builds them; a 422 also names the fields."""

    model_config = ConfigDict(title="Problem")

    errors: list[FieldProblem] | None = None


@dataclass(frozen=True)
class Operation:
    """One method of one route, as the URL map and its `endpoint` declaration describe it."""

    path: str  # as OpenAPI writes it: /admin/v1/keys/{key_id}
    method: str  # lower case
    declared: Endpoint | None


def init_openapi(app: Flask) -> None:
    """Generate the app's document once, after its blueprints are registered."""
    with app.app_context():  # spectree reads the URL map of current_app
        app.extensions[EXTENSION_KEY] = complete_document(spec.spec, declared_operations(app))


def openapi_document() -> dict[str, Any]:
    """The current app's OpenAPI document."""
    document = current_app.extensions[EXTENSION_KEY]
    assert isinstance(document, dict)
    return document


def partner_document(
    model: dict[str, Any], record: dict[str, Any], max_batch: int
) -> dict[str, Any]:
    """The partner routes of the document, with the predict request described by the feature
    schema of the model the caller's tenant is served (`record`: one record's JSON Schema)."""
    document = copy.deepcopy(openapi_document())
    document["paths"] = {
        path: item for path, item in document["paths"].items() if path.startswith("/v1/")
    }
    model_ref = f"{model['name']}@{model['version']}"
    document["info"]["description"] = (
        f"The partner API as the caller's tenant sees it: POST /v1/predict takes the features of "
        f"{model_ref}, with the types, categories and missing values that model accepts."
    )
    document["x-model"] = model  # which model the request schema describes
    probabilities = {
        "type": "boolean",
        "default": False,
        "description": "Also return class probabilities (classifiers only).",
    }
    single = copy.deepcopy(record)
    single["properties"]["return_probabilities"] = probabilities
    batch = {
        "type": "object",
        "properties": {
            "instances": {"type": "array", "items": record, "minItems": 1, "maxItems": max_batch},
            "return_probabilities": probabilities,
        },
        "required": ["instances"],
        "additionalProperties": False,
    }
    body = document["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["application/json"]
    body["schema"] = {"oneOf": [single, batch]}
    return document


def declared_operations(app: Flask) -> list[Operation]:
    """Every route and method of the app, with the route's `endpoint` declaration."""
    operations = []
    for rule in app.url_map.iter_rules():
        declared = getattr(app.view_functions[rule.endpoint], "endpoint", None)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            operations.append(
                Operation(
                    path=_RULE_VARIABLE.sub(r"{\1}", rule.rule),
                    method=method.lower(),
                    declared=declared if isinstance(declared, Endpoint) else None,
                )
            )
    return operations


def complete_document(generated: dict[str, Any], operations: list[Operation]) -> dict[str, Any]:
    """spectree's document plus what it cannot express: problem answers as
    application/problem+json with one Problem schema; no answer in spectree's own
    validation-error shape (the gateway never sends it); forms other than uploads URL-encoded;
    and each operation's security, from its declaration."""
    document = copy.deepcopy(generated)
    schemas: dict[str, Any] = document["components"]["schemas"]
    problem = spec.naming_strategy(Problem)
    unused = spec.naming_strategy(spec.model_adapter.validation_error)
    for name in [n for n in schemas if n in (problem, unused) or n.startswith(unused + ".")]:
        del schemas[name]
    schemas.update(_problem_schemas())
    for operation in operations:
        described = document["paths"].get(operation.path, {}).get(operation.method)
        if described is None or operation.declared is None:
            continue  # left as spectree wrote it; the OpenAPI tests name such a route
        described["responses"] = _answers(described["responses"], problem, unused)
        body = described.get("requestBody", {}).get("content", {})
        if "multipart/form-data" in body and not operation.declared.upload:
            body["application/x-www-form-urlencoded"] = body.pop("multipart/form-data")
        described["security"] = _security(operation.declared)
    return document


def _answers(responses: dict[str, Any], problem: str, unused: str) -> dict[str, Any]:
    answers = {}
    for status, answer in responses.items():
        schema = answer.get("content", {}).get("application/json", {}).get("schema", {})
        if schema.get("$ref") == SCHEMAS + unused:
            continue
        if schema.get("$ref") == SCHEMAS + problem:
            answer["content"] = {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": SCHEMAS + "Problem"}}}
        answers[status] = answer
    return answers


def _security(declared: Endpoint) -> list[dict[str, list[str]]]:
    # Alternatives: any one of them authorises the request.
    if declared.scope is None:
        # Token and revocation: the OAuth client's id and secret, in HTTP Basic or in the form
        # (client_secret_post, which no security scheme describes: hence the empty one).
        return [{"ClientSecretBasic": []}, {}] if declared.client_auth else []
    oauth = {"OAuth2": [declared.scope]}
    if declared.scope in PARTNER_SCOPES:  # API keys are partner credentials
        return [{"ApiKeyBearer": []}, {"ApiKeyHeader": []}, oauth]
    return [oauth]


def _problem_schemas() -> dict[str, Any]:
    schema = ProblemDetails.model_json_schema(ref_template=SCHEMAS + "{model}")
    return {**schema.pop("$defs", {}), "Problem": schema}
