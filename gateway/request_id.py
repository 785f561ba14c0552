"""Every request gets an id, returned as X-Request-ID and written into logs and problems."""

from __future__ import annotations

import uuid

from flask import Flask, Response, g, has_request_context

REQUEST_ID_HEADER = "X-Request-ID"


def current_request_id() -> str:
    """The current request's id, created on first use."""
    if not has_request_context():
        return ""
    if "request_id" not in g:
        g.request_id = uuid.uuid4().hex
    request_id = g.request_id
    assert isinstance(request_id, str)
    return request_id


def _set_header(response: Response) -> Response:
    response.headers[REQUEST_ID_HEADER] = current_request_id()
    return response


def init_request_id(app: Flask) -> None:
    """Stamp every response with its request id."""
    app.after_request(_set_header)
