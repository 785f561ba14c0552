"""GET /openapi.json and GET /docs: the generated OpenAPI 3.1 document and a page to read it."""

from __future__ import annotations

from flask import Blueprint, jsonify, redirect
from flask.typing import ResponseReturnValue

from gateway.context import RequestContext
from gateway.extensions import spec
from gateway.pipeline import endpoint

bp = Blueprint("docs", __name__)


@bp.get("/openapi.json")
@endpoint("docs.read", scope=None, tags=["docs"])
def openapi_document(ctx: RequestContext) -> ResponseReturnValue:
    """The OpenAPI 3.1 document, generated from the request and response models."""
    return jsonify(spec.spec)


@bp.get("/docs")
@endpoint("docs.read", scope=None, tags=["docs"])
def docs_page(ctx: RequestContext) -> ResponseReturnValue:
    """The interactive API documentation."""
    return redirect("/docs/swagger/", code=302)
