"""GET /openapi.json, GET /docs and the page's assets: the OpenAPI 3.1 document and a page that
renders it with Swagger UI served by predgate itself (gateway.api.swagger_ui)."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue
from spectree import Response

from gateway.api.swagger_ui import asset_response, page_response
from gateway.context import RequestContext
from gateway.openapi import openapi_document, partner_document
from gateway.pipeline import endpoint
from models.features import feature_schema

bp = Blueprint("docs", __name__)
TAGS = ["docs"]
OK = Response("HTTP_200")


@bp.get("/openapi.json")
@endpoint("docs.read", scope=None, responses=OK, tags=TAGS)
def openapi(ctx: RequestContext) -> ResponseReturnValue:
    """The OpenAPI 3.1 document, generated from the route declarations and their models."""
    return jsonify(openapi_document())


@bp.get("/v1/openapi.json")
@endpoint("docs.read", scope="model:read", limited=True, responses=OK, tags=TAGS)
def partner_openapi(ctx: RequestContext) -> ResponseReturnValue:
    """The partner API's OpenAPI document, its predict request described by the feature schema
    of the model the caller's tenant is served."""
    runtime = ctx.runtime
    model_name, model_version = runtime.directory.tenant(ctx.tenant_id()).assignment()
    meta = runtime.catalog.version(model_name, model_version)
    record = feature_schema(meta.specs).request_schema()
    model = {"name": meta.name, "version": meta.version}
    return jsonify(partner_document(model, record, runtime.settings.max_batch))


@bp.get("/docs")
@endpoint("docs.read", scope=None, responses=OK, tags=TAGS)
def docs_page(ctx: RequestContext) -> ResponseReturnValue:
    """The interactive API documentation (HTML); it loads nothing from another origin."""
    return page_response()


@bp.get("/docs/assets/<name>")
@endpoint("docs.read", scope=None, responses=OK, tags=TAGS)
def docs_asset(ctx: RequestContext, name: str) -> ResponseReturnValue:
    """A script, stylesheet or icon of the docs page."""
    return asset_response(name)
