"""Registering is not deploying: a pinned tenant keeps its version when a new one is registered,
a tenant on NAME@latest gets it; assigning says what changes, over HTTP and on the command line,
and a dry run changes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from audit.query import AuditFilter, query_records
from auth.api_keys import issue_key
from auth.assignments import NO_CHANGE, UNCHANGED
from auth.tenants import LATEST, assign_model, create_tenant
from config import Settings
from models.artifacts import ArtifactStore
from tests.conftest import HOUSE, World, bearer
from tests.fixtures_models import register_house_price_v2
from tests.gateway.admin_support import record_for
from tests.oauth_support import token_headers

IRIS_CHANGES = [
    "task: regression -> classification",
    "features added: sepal_length, sepal_width, petal_length, petal_width",
    "features removed: area, rooms, bathrooms, location",
    "classes: none -> setosa, versicolor, virginica",
]


@pytest.fixture
def admin(client: FlaskClient, session: Session, settings: Settings) -> dict[str, str]:
    return token_headers(client, session, settings, role="admin")


def stored_version(session: Session, tenant: str) -> int | None:
    session.rollback()  # see what the app committed
    return session.execute(
        text("SELECT model_version FROM tenants WHERE name = :n"), {"n": tenant}
    ).scalar_one()


def test_registering_a_version_serves_it_only_to_tenants_on_latest(
    client: FlaskClient,
    world: World,
    session: Session,
    settings: Settings,
    artifacts: ArtifactStore,
    model_files: dict[str, Path],
) -> None:
    # acme was assigned a bare `house-price` by the fixture: pinned to version 1.
    create_tenant(session, name="initech")
    assign_model(session, "initech", model_name="house-price", version=LATEST)
    follower = issue_key(session, settings.secret_key, tenant_name="initech", created_by="t")
    session.commit()
    register_house_price_v2(session, artifacts, model_files)

    pinned = client.post("/v1/predict", json=HOUSE, headers=bearer(world.acme_key))
    assert pinned.status_code == 200, pinned.json
    assert pinned.json["model"] == {"name": "house-price", "version": 1}
    record = record_for(session, pinned)
    assert (record["model_name"], record["model_version"]) == ("house-price", 1)
    assert record["model_sha256"] == world.house_price.artifact_sha256
    assert client.get("/v1/model", headers=bearer(world.acme_key)).json["version"] == 1

    following = client.post("/v1/predict", json=HOUSE, headers=bearer(follower.api_key))
    assert following.json["model"] == {"name": "house-price", "version": 2}
    assert record_for(session, following)["model_version"] == 2


def test_assigning_over_http_says_what_changes(
    client: FlaskClient, admin: dict[str, str], world: World, session: Session
) -> None:
    response = client.put("/admin/v1/tenants/acme/model", json={"model": "iris"}, headers=admin)
    assert response.status_code == 200, response.json
    assert response.json["model"] == "iris@1"  # pinned: the latest version at assignment
    assert response.json["previous"] == "house-price@1"
    assert response.json["changes"] == IRIS_CHANGES
    assert response.json["dry_run"] is False
    details = record_for(session, response)["details"]
    assert details == {
        "tenant": "acme",
        "model": "iris",
        "previous": "house-price@1",
        "assigned": "iris@1",
    }

    again = client.put("/admin/v1/tenants/acme/model", json={"model": "iris@1"}, headers=admin)
    assert (again.json["previous"], again.json["changes"]) == ("iris@1", [UNCHANGED])

    following = client.put(
        "/admin/v1/tenants/acme/model", json={"model": "iris@latest"}, headers=admin
    )
    assert following.json["model"] == "iris@latest"
    assert following.json["changes"] == [
        "follows iris@latest: each version registered from now on is served without another "
        "assignment (now version 1)"
    ]
    assert stored_version(session, "acme") is None
    listed = client.get("/admin/v1/tenants", headers=admin).json["tenants"]
    assert [t["model"] for t in listed] == ["iris@latest", "iris@1"]


def test_a_dry_run_over_http_changes_nothing(
    client: FlaskClient,
    admin: dict[str, str],
    world: World,
    session: Session,
    artifacts: ArtifactStore,
    model_files: dict[str, Path],
) -> None:
    register_house_price_v2(session, artifacts, model_files)
    response = client.put(
        "/admin/v1/tenants/acme/model",
        json={"model": "house-price", "dry_run": True},
        headers=admin,
    )
    assert response.status_code == 200, response.json
    assert response.json["model"] == "house-price@2"  # what it would be
    assert response.json["previous"] == "house-price@1"
    assert response.json["changes"] == [NO_CHANGE]
    assert response.json["dry_run"] is True
    record = record_for(session, response)
    assert record["outcome"] == "success"
    assert record["details"]["dry_run"] is True
    assert record["details"]["assigned"] == "house-price@2"

    assert stored_version(session, "acme") == 1
    served = client.post("/v1/predict", json=HOUSE, headers=bearer(world.acme_key))
    assert served.json["model"] == {"name": "house-price", "version": 1}


@pytest.mark.parametrize(
    "body",
    [{"model": "iris@1@latest"}, {"model": "Iris@latest"}, {"model": "iris", "dry_run": "yes"}],
)
def test_bad_assignments_change_nothing(
    client: FlaskClient, admin: dict[str, str], world: World, session: Session, body
) -> None:
    response = client.put("/admin/v1/tenants/acme/model", json=body, headers=admin)
    assert response.status_code == 422
    assert stored_version(session, "acme") == 1


def test_cli_assign_prints_the_changes_and_dry_run_changes_nothing(
    predgate, world: World, session: Session
) -> None:
    previewed = predgate("tenants", "assign", "acme", "iris", "--dry-run").output
    assert previewed.splitlines() == [
        "tenant acme: house-price@1 -> iris@1",
        *(f"  {line}" for line in IRIS_CHANGES),
        "dry run: nothing changed",
    ]
    assert stored_version(session, "acme") == 1

    assigned = predgate("tenants", "assign", "acme", "house-price@latest").output
    assert assigned.splitlines() == [
        "tenant acme: house-price@1 -> house-price@latest",
        "  follows house-price@latest: each version registered from now on is served without "
        "another assignment (now version 1)",
    ]
    assert stored_version(session, "acme") is None
    pinned = predgate("tenants", "assign", "acme", "house-price").output.splitlines()
    assert pinned[0] == "tenant acme: house-price@latest -> house-price@1"
    assert pinned[1].startswith("  pinned to version 1: ")
    assert predgate("tenants", "assign", "acme", "house-price@1").output.splitlines() == [
        "tenant acme: house-price@1 -> house-price@1",
        f"  {UNCHANGED}",
    ]

    tenants = json.loads(predgate("tenants", "list", "--json").output)
    assert [t["model"] for t in tenants] == ["house-price@1", "iris@1"]
    session.rollback()
    assigns = [
        json.loads(r["details"])
        for r in query_records(session, AuditFilter(event_type="tenant.assign"))
    ]
    assert [(d["previous"], d["assigned"], d.get("dry_run")) for d in assigns] == [
        ("house-price@1", "iris@1", True),
        ("house-price@1", "house-price@latest", None),
        ("house-price@latest", "house-price@1", None),
        ("house-price@1", "house-price@1", None),
    ]
