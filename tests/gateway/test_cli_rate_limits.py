"""`predgate keys issue --rate-limit`, `keys set-limit`, `tenants set-limit`, `keys usage`:
run as an operator would, effective on the gateway's next request."""

from __future__ import annotations

import json

import pytest
from flask.testing import FlaskClient

from tests.conftest import HOUSE, bearer
from tests.gateway.test_rate_limits import remaining


def test_limits_set_from_the_command_line_apply_on_the_next_request(
    predgate, client: FlaskClient, model_files
) -> None:
    predgate("tenants", "create", "acme")
    predgate("models", "register", "house-price", str(model_files["house-price"]))
    predgate("tenants", "assign", "acme", "house-price")
    issued = json.loads(
        predgate("keys", "issue", "--tenant", "acme", "--rate-limit", "3/minute", "--json").stdout
    )
    assert issued["rate_limit"] == "3/minute"
    key = issued["api_key"]
    assert remaining(client.post("/v1/predict", json=HOUSE, headers=bearer(key))) == {
        "key-minute": 2
    }

    assert (
        "5/minute;1000/day"
        in predgate("keys", "set-limit", issued["key_id"], "1000/day;5/minute").output
    )
    assert remaining(client.post("/v1/predict", json=HOUSE, headers=bearer(key))) == {
        "key-minute": 4,
        "key-day": 999,
    }
    assert "5/minute;1000/day" in predgate("keys", "list").output

    assert "inherited" in predgate("keys", "set-limit", issued["key_id"], "default").output
    predgate("tenants", "set-limit", "acme", "10/hour")
    assert "10/hour" in predgate("tenants", "list").output
    assert remaining(client.post("/v1/predict", json=HOUSE, headers=bearer(key))) == {
        "tenant-hour": 9
    }
    predgate("tenants", "set-limit", "acme", "default")
    assert json.loads(predgate("tenants", "list", "--json").stdout)[0]["rate_limit"] is None


@pytest.mark.parametrize(
    "args",
    [
        ("keys", "issue", "--tenant", "acme", "--rate-limit", "5/fortnight"),
        ("keys", "set-limit", "0000000000000000", "5/minute"),
        ("tenants", "set-limit", "acme", "0/minute"),
        ("tenants", "set-limit", "nobody", "5/minute"),
    ],
)
def test_bad_limits_are_clean_errors(predgate, args: tuple[str, ...]) -> None:
    predgate("tenants", "create", "acme")
    result = predgate(*args, ok=False)
    assert result.exit_code == 1
    assert result.output.startswith("Error: ")
    assert "Traceback" not in result.output


def test_usage_windows_need_a_shared_store(predgate) -> None:
    predgate("tenants", "create", "acme")
    key_id = json.loads(predgate("keys", "issue", "--tenant", "acme", "--json").stdout)["key_id"]
    result = predgate("keys", "usage", key_id)  # the audit counts, and where the windows are
    assert "PREDGATE_REDIS_URL" in result.output
    assert "total" in result.output
