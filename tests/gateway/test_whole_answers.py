"""A buffered answer reaches the server in one piece (a one-item list, which granian writes as
status line, headers and body together), so a replica killed mid-answer cannot leave nginx a
status line without its body; the buffering front sends it with one call. Exports stream."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from flask import Flask
from sqlalchemy.orm import Session
from werkzeug.test import EnvironBuilder

from gateway.front import BufferingFront
from tests.conftest import HOUSE, World, bearer
from tests.oauth_support import token_headers


def _call(app: Flask, path: str, **request: Any) -> tuple[str, dict[str, str], Any]:
    """(status, headers, what the app returned) for one request through its WSGI callable."""
    environ = EnvironBuilder(path=path, **request).get_environ()
    started: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], _exc: Any = None) -> Any:
        started.update(status=status, headers=dict(headers))
        return lambda _data: None

    result = app(environ, start_response)
    return started["status"], started["headers"], result


def test_a_prediction_and_a_refusal_are_handed_over_whole(app: Flask, world: World) -> None:
    status, headers, result = _call(
        app, "/v1/predict", method="POST", json=HOUSE, headers=bearer(world.acme_key)
    )
    assert status.startswith("200 ")
    assert isinstance(result, list)
    assert len(result) == 1
    assert int(headers["Content-Length"]) == len(result[0])
    assert json.loads(result[0])["request_id"] == headers["X-Request-ID"]

    status, headers, result = _call(app, "/v1/predict", method="POST", json=HOUSE)
    assert status.startswith("401 ")
    assert isinstance(result, list)
    assert len(result) == 1
    assert json.loads(result[0])["code"] == "missing_credentials"


def test_an_export_still_streams(app: Flask, world: World, session: Session, settings: Any) -> None:
    auditor = token_headers(app.test_client(), session, settings, role="compliance")
    status, headers, result = _call(
        app,
        "/audit/v1/records",
        query_string={"since": "2000-01-01", "until": "2100-01-01"},
        headers={**auditor, "Accept": "text/csv"},
    )
    assert status.startswith("200 ")
    assert "Content-Length" not in headers
    assert not isinstance(result, list)
    try:
        exported = b"".join(result).decode()
    finally:
        result.close()
    assert headers["X-Request-ID"] in exported  # its own record, committed before it streamed


@dataclass
class _Scope:
    method: str
    path: str
    headers: dict[str, str]
    proto: str = "http"
    query_string: str = ""
    server: str = "127.0.0.1:8000"
    client: str = "127.0.0.1:50000"
    http_version: str = "1.1"
    scheme: str = "http"


@dataclass
class _Protocol:
    """What granian's RSGI protocol is asked to do."""

    body: bytes
    sent: list[tuple[str, int]] = field(default_factory=list)

    async def __call__(self) -> bytes:
        return self.body

    def response_bytes(self, status: int, _headers: list[tuple[str, str]], body: bytes) -> None:
        self.sent.append(("bytes", status))
        self.answer = body

    def response_stream(self, status: int, _headers: list[tuple[str, str]]) -> Any:
        self.sent.append(("stream", status))
        raise AssertionError("a buffered answer was streamed")


def test_the_buffering_front_sends_a_prediction_in_one_call(app: Flask, world: World) -> None:
    body = json.dumps(HOUSE).encode()
    scope = _Scope(
        "POST",
        "/v1/predict",
        {
            "content-type": "application/json",
            "content-length": str(len(body)),
            **{k.lower(): v for k, v in bearer(world.acme_key).items()},
        },
    )
    front = BufferingFront(app, threads=1, body_limit=lambda _m, _p: 1 << 20, body_seconds=5.0)
    protocol = _Protocol(body)
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(front.__rsgi__(scope, protocol))  # type: ignore[arg-type]
    finally:
        front.__rsgi_del__(loop)
        loop.close()
    assert protocol.sent == [("bytes", 200)]
    assert json.loads(protocol.answer)["model"]["name"] == "house-price"
