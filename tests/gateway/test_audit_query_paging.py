"""Reading the log a page at a time, in the CLI and over `/audit/v1/records`: newest first by
default, an opaque cursor, a limit that says when it cut, tenant names beside ids, and
`details` as an object."""

from __future__ import annotations

import json

import pytest
from flask.testing import FlaskClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from config import Settings
from tests.conftest import World, bearer
from tests.gateway.admin_support import record_for
from tests.oauth_support import token_headers


@pytest.fixture
def auditor(client: FlaskClient, session: Session, settings: Settings) -> dict[str, str]:
    return token_headers(client, session, settings, role="compliance")


@pytest.fixture
def traffic(client: FlaskClient, world: World) -> World:
    """Audited requests of both tenants."""
    for key in (world.acme_key, world.globex_key, world.acme_key, world.globex_key):
        client.get("/v1/model", headers=bearer(key))
    return world


def _max_seq(session: Session) -> int:
    session.rollback()
    return int(session.execute(text("SELECT max(seq) FROM audit_records")).scalar_one())


def _query(predgate, *args: str):
    return predgate("audit", "query", "--json", *args)


def test_cli_newest_first_with_a_cursor_that_says_how_many_more(
    predgate, session: Session, traffic: World
) -> None:
    last = _max_seq(session)
    first_page = _query(predgate, "--limit", "2")
    records = json.loads(first_page.stdout)
    assert [r["seq"] for r in records] == [last, last - 1]
    # The hint is on stderr: stdout is the JSON alone. This query's own record comes after.
    more, _, cursor = first_page.stderr.strip().partition(": use --cursor ")
    assert more == f"{last - 2} more"

    second = _query(predgate, "--limit", "2", "--cursor", cursor)
    assert [r["seq"] for r in json.loads(second.stdout)] == [last - 2, last - 3]

    oldest = _query(predgate, "--order", "oldest", "--limit", "3")
    assert [r["seq"] for r in json.loads(oldest.stdout)] == [1, 2, 3]
    everything = _query(predgate, "--limit", "10000")
    assert everything.stderr == ""  # nothing was cut


def test_cli_cursor_keeps_its_order_and_refuses_the_other(
    predgate, session: Session, traffic: World
) -> None:
    page = _query(predgate, "--order", "oldest", "--limit", "2")
    cursor = page.stderr.strip().rpartition(" ")[2]
    assert [r["seq"] for r in json.loads(_query(predgate, "--cursor", cursor).stdout)][:2] == [3, 4]
    refused = predgate("audit", "query", "--cursor", cursor, "--order", "newest", ok=False)
    assert refused.exit_code == 1
    assert "oldest-first order" in refused.stderr


def test_cli_shows_tenant_names_and_details_as_objects(
    predgate, session: Session, traffic: World
) -> None:
    records = json.loads(_query(predgate, "--tenant", "globex", "--limit", "10").stdout)
    assert records
    globex = session.execute(text("SELECT id FROM tenants WHERE name = 'globex'")).scalar_one()
    assert {(r["tenant"], r["tenant_id"]) for r in records} == {("globex", globex)}
    predgate("tenants", "create", "initech")
    created = json.loads(_query(predgate, "--event-type", "tenant.create").stdout)
    assert isinstance(created[0]["details"], dict)

    table = predgate("audit", "query", "--tenant", "globex").stdout
    assert f"globex ({globex})" in table

    rows = predgate("audit", "query", "--csv", "--event-type", "tenant.create").stdout
    header, row = rows.splitlines()[:2]
    assert "tenant" in header.split(",")
    assert "initech" in row  # details stay JSON text in a CSV cell


def test_http_newest_first_by_default_with_an_opaque_cursor(
    client: FlaskClient, auditor, session: Session, traffic: World
) -> None:
    last = _max_seq(session)
    page = client.get("/audit/v1/records?limit=2", headers=auditor).json
    assert page["order"] == "newest"
    assert [r["seq"] for r in page["records"]] == [last, last - 1]
    assert isinstance(page["next_cursor"], str)
    assert not page["next_cursor"].isdigit()

    seen = [r["seq"] for r in page["records"]]
    cursor = page["next_cursor"]
    while cursor is not None:
        page = client.get(f"/audit/v1/records?limit=3&cursor={cursor}", headers=auditor).json
        assert len(page["records"]) <= 3
        seen += [r["seq"] for r in page["records"]]
        cursor = page["next_cursor"]
    # Every record up to the first page, once, newest first; later reads' records not mixed in.
    assert seen == list(range(last, 0, -1))


def test_http_limit_is_honoured_and_the_last_page_has_no_cursor(
    client: FlaskClient, auditor, session: Session, traffic: World
) -> None:
    total = _max_seq(session)
    exact = client.get(f"/audit/v1/records?limit={total}&order=oldest", headers=auditor).json
    assert len(exact["records"]) == total
    assert exact["next_cursor"] is None  # a full page that holds the rest is the last


def test_http_tenant_names_and_details_objects(
    client: FlaskClient, auditor, session: Session, traffic: World
) -> None:
    response = client.get("/audit/v1/records?limit=1000", headers=auditor)
    records = response.json["records"]
    acme = session.execute(text("SELECT id FROM tenants WHERE name = 'acme'")).scalar_one()
    by_tenant = {r["tenant_id"]: r["tenant"] for r in records}
    assert by_tenant[acme] == "acme"
    read = client.get("/audit/v1/records?event_type=audit.read&limit=1", headers=auditor)
    assert isinstance(read.json["records"][0]["details"], dict)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("cursor=12", "cursor"),
        ("cursor=bm90LWEtY3Vyc29y", "cursor"),
        ("order=sideways", "order"),
        ("since=2026-02-01&until=2026-01-01", "until"),
        ("since=2026-01-01&until=2026-01-01", "until"),
    ],
)
def test_http_bad_cursor_order_or_range_is_422(
    client: FlaskClient, auditor, session: Session, world: World, query: str, field: str
) -> None:
    response = client.get(f"/audit/v1/records?{query}", headers=auditor)
    assert response.status_code == 422
    assert response.json["code"] == "validation_error"
    assert [e["field"] for e in response.json["errors"]] == [field]
    record = record_for(session, response)
    assert (record["outcome"], record["reason_code"]) == ("failure", "validation_error")


def test_http_cursor_of_the_other_order_is_422(
    client: FlaskClient, auditor, traffic: World
) -> None:
    cursor = client.get("/audit/v1/records?limit=1", headers=auditor).json["next_cursor"]
    response = client.get(f"/audit/v1/records?cursor={cursor}&order=oldest", headers=auditor)
    assert response.status_code == 422
    assert "newest-first order" in response.json["detail"]


@pytest.mark.parametrize(
    ("path", "accept"),
    [
        ("/audit/v1/records", "text/csv"),
        ("/audit/v1/records", "application/x-ndjson"),
        ("/audit/v1/verify", "application/json"),
    ],
)
def test_http_since_after_until_is_422_everywhere(
    client: FlaskClient, auditor, world: World, path: str, accept: str
) -> None:
    response = client.get(
        path,
        query_string={"since": "2026-02-01", "until": "2026-01-01"},
        headers={**auditor, "Accept": accept},
    )
    assert response.status_code == 422
    assert "later than since" in response.json["detail"]
