"""The edge as `predgate serve` meets it over real sockets: a chunked body past the limit is 413
(never cut and answered), and an over-long token reaches the application, which answers 401
`token_too_large` with its request id and an audit record (the server's own header limit is
far above it)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from sqlalchemy.orm import Session

from config import Settings
from gateway.server import BODY_SECONDS
from tests.conftest import HOUSE, bearer
from tests.gateway.admin_support import record_for
from tests.serving_support import start_serving


@pytest.fixture(params=["buffered", "behind-proxy"])
def served(
    request: pytest.FixtureRequest, settings: Settings, predgate: Callable[..., Any]
) -> Iterator[tuple[str, str]]:
    """(base URL, acme's API key) of a running `predgate serve` with the demo set up, reading
    requests whole itself (the default) or leaving that to a proxy (`--behind-proxy`)."""
    key = json.loads(predgate("demo", "--json").stdout)["tenants"][0]["api_key"]
    server, base = start_serving(
        settings,
        *(["--behind-proxy"] if request.param == "behind-proxy" else []),
        env={"PREDGATE_MAX_BODY_BYTES": str(settings.max_body_bytes)},
    )
    try:
        yield base, key
    finally:
        server.terminate()
        server.wait(timeout=30)


def _chunked_post(base: str, key: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
    """POST /v1/predict with Transfer-Encoding: chunked, written by hand (64 KiB chunks)."""
    host, port = base.removeprefix("http://").split(":")
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(body[i : i + 65536]), body[i : i + 65536])
        for i in range(0, len(body), 65536)
    )
    head = (
        f"POST /v1/predict HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(head + chunks + b"0\r\n\r\n")
        answer = b""
        while data := connection.recv(65536):
            answer += data
    header_block, _, payload = answer.partition(b"\r\n\r\n")
    status_line, *lines = header_block.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, payload


@pytest.mark.slow
def test_served_chunked_bodies_are_judged_whole_and_long_tokens_answered_by_the_app(
    served: tuple[str, str], settings: Settings, session: Session
) -> None:
    base, key = served
    body = json.dumps({"instances": [HOUSE]}).encode()
    limit = settings.max_body_bytes
    at_limit = body + b" " * (limit - len(body))
    status, _headers, payload = _chunked_post(base, key, at_limit)
    assert status == 200, payload
    status, headers, payload = _chunked_post(base, key, at_limit + b" " * 100_000)
    assert status == 413
    assert json.loads(payload)["code"] == "payload_too_large"
    assert headers["content-type"] == "application/problem+json"
    assert record_for(session, _Answer(headers))["http_status"] == 413

    long_token = "eyJ" + "A" * 20_000
    refused = requests.post(
        f"{base}/v1/predict", json=HOUSE, headers=bearer(long_token), timeout=10
    )
    assert refused.status_code == 401
    assert refused.json()["code"] == "token_too_large"
    assert refused.headers["WWW-Authenticate"] == 'Bearer realm="predgate", error="invalid_token"'
    record = record_for(session, refused)
    assert (record["http_status"], record["reason_code"]) == (401, "token_too_large")


class _Answer:
    """Enough of a response for record_for: its X-Request-ID."""

    def __init__(self, headers: dict[str, str]) -> None:
        self.headers = {"X-Request-ID": headers["x-request-id"]}


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)  # the database plays no part
# Behind a proxy, the proxy in front is what reads bodies (tests/deploy): no server is started
# for that case only to be left unused.
@pytest.mark.parametrize("served", ["buffered"], indirect=True)
@pytest.mark.slow
def test_a_stalled_body_is_answered_408_without_holding_a_thread(
    served: tuple[str, str], session: Session
) -> None:
    base, key = served
    host, port = base.removeprefix("http://").split(":")
    head = (
        f"POST /v1/predict HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
        "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=BODY_SECONDS + 10) as connection:
        connection.sendall(head + b'{"area": 1')  # and then nothing more
        started = time.monotonic()
        answer = connection.recv(65536)
        waited = time.monotonic() - started
        header_block, _, payload = answer.partition(b"\r\n\r\n")
        headers = {
            name.lower(): value
            for name, _, value in (
                line.partition(": ") for line in header_block.decode().split("\r\n")[1:]
            )
        }
        while len(payload) < int(headers["content-length"]):
            payload += connection.recv(65536)
    assert header_block.startswith(b"HTTP/1.1 408"), answer[:200]
    assert BODY_SECONDS - 1 <= waited <= BODY_SECONDS + 5
    assert json.loads(payload)["code"] == "request_timeout"
    assert (
        record_for(session, _Answer({"x-request-id": headers["x-request-id"]}))["http_status"]
        == 408
    )
