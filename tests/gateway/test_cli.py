"""The `predgate` command line, run as an operator would (through click's runner)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient
from sqlalchemy import text

from gateway.cli import cli
from tests.conftest import HOUSE, bearer


def test_operator_workflow(predgate, client: FlaskClient, model_files, session) -> None:
    predgate("tenants", "create", "acme")
    registered = json.loads(
        predgate(
            "models", "register", "house-price", str(model_files["house-price"]), "--json"
        ).output
    )
    assert registered["version"] == 1
    assert registered["runtime"] == "onnx"
    assert registered["features"] == ["area", "rooms", "bathrooms", "location"]
    predgate("tenants", "assign", "acme", "house-price@1")
    issued = json.loads(
        predgate("keys", "issue", "--tenant", "acme", "--label", "ci", "--json").stdout
    )
    assert issued["api_key"].startswith(f"pgk_{issued['key_id']}_")

    response = client.post("/v1/predict", json=HOUSE, headers=bearer(issued["api_key"]))
    assert response.status_code == 200

    listed = predgate("keys", "list", "--tenant", "acme").output
    assert issued["key_id"] in listed
    assert issued["api_key"] not in listed
    predgate("keys", "revoke", issued["key_id"], "--reason", "test")
    assert (
        client.post("/v1/predict", json=HOUSE, headers=bearer(issued["api_key"])).status_code == 401
    )

    stored = session.execute(text("SELECT secret_hmac FROM api_keys")).scalar_one()
    assert len(stored) == 64
    assert stored not in issued["api_key"]


def test_keys_rotate_prints_new_key(predgate, client: FlaskClient, model_files) -> None:
    predgate("tenants", "create", "acme")
    predgate("models", "register", "house-price", str(model_files["house-price"]))
    predgate("tenants", "assign", "acme", "house-price")
    old = json.loads(predgate("keys", "issue", "--tenant", "acme", "--json").stdout)
    new = json.loads(predgate("keys", "rotate", old["key_id"], "--grace", "1h", "--json").stdout)
    assert new["key_id"] != old["key_id"]
    for key in (old["api_key"], new["api_key"]):
        assert client.post("/v1/predict", json=HOUSE, headers=bearer(key)).status_code == 200


def test_suspend_and_resume(predgate) -> None:
    predgate("tenants", "create", "acme")
    predgate("tenants", "suspend", "acme")
    assert "suspended" in predgate("tenants", "list").output
    predgate("tenants", "resume", "acme")
    assert "active" in predgate("tenants", "list").output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("tenants", "create", "Bad Name!"), "tenant name"),
        (("tenants", "assign", "nobody", "house-price"), "nobody"),
        (("keys", "issue", "--tenant", "nobody"), "nobody"),
        (("keys", "revoke", "0000000000000000"), "no API key"),
        (("keys", "issue", "--tenant", "acme", "--expires-in", "soon"), "duration"),
    ],
)
def test_errors_are_clean_messages(predgate, args, message: str) -> None:
    predgate("tenants", "create", "acme")
    result = predgate(*args, ok=False)
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output


def test_register_refuses_non_estimator(predgate, tmp_path: Path) -> None:
    import joblib

    path = tmp_path / "not-a-model.joblib"
    joblib.dump({"weights": [1, 2, 3]}, path)
    result = predgate("models", "register", "bogus", str(path), ok=False)
    assert result.exit_code == 1
    assert "Traceback" not in result.output


def test_commands_refuse_unmigrated_database(tmp_path: Path) -> None:
    env = {
        "PREDGATE_DATA_DIR": str(tmp_path),
        "PREDGATE_DATABASE_URL": f"sqlite:///{tmp_path}/x.db",
        # An instance (its secret given) whose database was never migrated.
        "PREDGATE_SECRET_KEY": "0123456789abcdef" * 4,
    }
    result = CliRunner().invoke(cli, ["tenants", "list"], env=env)
    assert result.exit_code == 1
    assert "predgate db upgrade" in result.output
    result = CliRunner().invoke(cli, ["serve"], env=env)
    assert result.exit_code == 1
    assert "predgate db upgrade" in result.output


def test_demo_is_idempotent_and_issues_fresh_keys(predgate, session) -> None:
    first = json.loads(predgate("demo", "--json").stdout)
    second = json.loads(predgate("demo", "--json").stdout)
    assert [t["tenant"] for t in first["tenants"]] == ["acme", "globex"]
    assert [t["model"] for t in first["tenants"]] == ["house-price", "iris"]
    assert first["tenants"][0]["api_key"] != second["tenants"][0]["api_key"]
    assert session.execute(text("SELECT count(*) FROM tenants")).scalar_one() == 2
    assert session.execute(text("SELECT count(*) FROM model_versions")).scalar_one() == 2
    assert session.execute(text("SELECT count(*) FROM api_keys")).scalar_one() == 4
