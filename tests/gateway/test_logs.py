"""Logs: one JSON object per line (or text), the access line's fields, exceptions as a field, and
canaries (key secrets, tokens, client secrets, feature values, query strings, admin bodies)
that reach no line in either format."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from config import Settings
from config.settings import SettingsError
from gateway.logs import configure_logging
from tests.conftest import World, bearer
from tests.oauth_support import issue_client, request_token

ACCESS_FIELDS = {
    "timestamp",
    "level",
    "logger",
    "event",
    "request_id",
    "method",
    "route",
    "status",
    "duration_ms",
    "tenant",
    "principal",
    "model",
    "model_version",
    "client",
}
CANARY_FEATURE = 314159.265358
CANARY_TEXT = "canary-7f3e9a1c"  # a string feature, a label, a query value, a tenant name


@pytest.fixture(params=["json", "text"])
def log_output(
    request: pytest.FixtureRequest, client: FlaskClient, settings: Settings
) -> Iterator[tuple[str, io.StringIO]]:
    """Everything logged while the test runs (after the app is built), in one format."""
    output = io.StringIO()
    configure_logging("DEBUG", request.param, stream=output)
    yield request.param, output
    configure_logging(settings.log_level, settings.log_format)


def json_lines(text: str) -> list[dict[str, object]]:
    lines = text.splitlines()
    assert lines
    return [json.loads(line) for line in lines]


def test_no_canary_reaches_the_log(
    client: FlaskClient,
    session: Session,
    settings: Settings,
    world: World,
    log_output: tuple[str, io.StringIO],
) -> None:
    log_format, output = log_output
    admin_client = issue_client(session, settings, role="admin")
    admin_token = str(request_token(client, admin_client)["access_token"])
    admin = bearer(admin_token)
    issued = client.post(
        "/admin/v1/keys", json={"tenant": "acme", "label": CANARY_TEXT}, headers=admin
    )
    assert issued.status_code == 201
    key = issued.get_json()["api_key"]
    partner = issue_client(session, settings, role="partner", tenant="acme")
    partner_token = str(request_token(client, partner)["access_token"])
    body = {"area": CANARY_FEATURE, "rooms": 2, "bathrooms": 1, "location": 1}

    assert client.post("/v1/predict", json=body, headers=bearer(key)).status_code == 200
    assert client.post("/v1/predict", json=body, headers={"X-API-Key": key}).status_code == 200
    assert client.post("/v1/predict", json=body, headers=bearer(partner_token)).status_code == 200
    refused = [
        client.post("/v1/predict", json={**body, "area": CANARY_TEXT}, headers=bearer(key)),
        client.post("/v1/predict", json={**body, CANARY_TEXT: 1}, headers=bearer(key)),
        client.post("/v1/predict", json=body, headers=bearer(key[:-4] + "zzzz")),
        client.post("/v1/predict", json=body, headers=bearer(partner_token[:-4] + "zzzz")),
        client.get(f"/v1/model?api_key={key}", headers=bearer(key)),
        client.post("/admin/v1/tenants", json={"name": CANARY_TEXT.upper()}, headers=admin),
        client.post("/admin/v1/keys", json={"tenant": CANARY_TEXT, "label": "x"}, headers=admin),
        client.post(
            "/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": partner.client.client_id,
                "client_secret": partner.client_secret[:-4] + "zzzz",
            },
        ),
    ]
    assert all(response.status_code >= 400 for response in refused)
    assert client.get(f"/v1/model?note={CANARY_TEXT}", headers=bearer(key)).status_code == 200
    assert client.get("/admin/v1/tenants/acme", headers=admin).status_code == 200

    text = output.getvalue()
    canaries = [
        key,
        key[21:],
        admin_token,
        partner_token,
        partner_token[-20:],
        admin_client.client_secret,
        partner.client_secret,
        partner.client_secret[:-4],
        str(CANARY_FEATURE),
        CANARY_TEXT,
        CANARY_TEXT.upper(),
    ]
    for canary in canaries:
        assert canary not in text
    tokens, issue, predictions, reads = 2, 1, 3, 2
    requests = tokens + issue + predictions + len(refused) + reads
    if log_format == "text":
        assert text.count("[predgate.access] request_id=") == requests
        return
    access = [line for line in json_lines(text) if line["logger"] == "predgate.access"]
    assert len(access) == requests
    assert all(line.keys() >= ACCESS_FIELDS for line in access)
    served = [line for line in access if line["route"] == "/v1/predict" and line["status"] == 200]
    assert len(served) == 3
    for line in served:
        assert line["method"] == "POST"
        assert line["tenant"] == "acme"
        assert line["model"] == world.house_price.name
        assert line["model_version"] == world.house_price.version
        assert line["client"] == "127.0.0.1"
        assert isinstance(line["duration_ms"], float)
    key_id = issued.get_json()["key_id"]
    assert [line["principal"] for line in served] == [key_id, key_id, partner.client.client_id]
    assert any(line["route"] == "/admin/v1/tenants/<name>" for line in access)


def test_an_exception_is_one_json_line_without_locals() -> None:
    output = io.StringIO()
    configure_logging("INFO", "json", stream=output)
    secret = CANARY_TEXT  # a local the traceback must not show
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("predgate.errors").exception("unhandled error")
    logging.getLogger("some.library").warning("from a library\nover two lines")
    configure_logging("INFO", "json")

    assert secret not in output.getvalue()
    error, warning = json_lines(output.getvalue())
    assert error["level"] == "error"
    assert error["event"] == "unhandled error"
    exception = error["exception"]
    assert isinstance(exception, list)
    assert exception[0]["exc_type"] == "RuntimeError"
    assert (
        exception[0]["frames"][-1]["name"]
        == test_an_exception_is_one_json_line_without_locals.__name__
    )
    assert warning == {
        "timestamp": warning["timestamp"],
        "level": "warning",
        "logger": "some.library",
        "event": "from a library\nover two lines",
    }


def test_the_log_format_is_json_unless_text_is_asked_for(tmp_path: Path) -> None:
    environ = {"PREDGATE_DATA_DIR": str(tmp_path)}
    assert Settings.from_env(environ).log_format == "json"
    assert Settings.from_env({**environ, "PREDGATE_LOG_FORMAT": "TEXT"}).log_format == "text"
    for value in ("xml", "jsonl"):
        with pytest.raises(SettingsError, match="PREDGATE_LOG_FORMAT"):
            Settings.from_env({**environ, "PREDGATE_LOG_FORMAT": value})
