"""Admin lists a page at a time: `?limit=` honoured by every list, an opaque `next_cursor` bound
to its list, and the same pages from `predgate ... list --limit/--cursor`."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from auth.api_keys import issue_key
from auth.clients import create_client
from auth.tenants import create_tenant
from config import Settings
from gateway.pages import encode_cursor
from tests.conftest import World
from tests.oauth_support import token_headers


@pytest.fixture
def admin(client: FlaskClient, session: Session, settings: Settings) -> dict[str, str]:
    return token_headers(client, session, settings, role="admin")


@pytest.fixture
def more(session: Session, settings: Settings, world: World) -> None:
    """Five tenants besides acme and globex, three more keys and two more clients."""
    for name in ("t1", "t2", "t3", "t4", "t5"):
        create_tenant(session, name=name)
    for tenant in ("t1", "acme", "t1"):
        issue_key(session, settings.secret_key, tenant_name=tenant, created_by="test")
    for _ in range(2):
        create_client(session, settings.secret_key, role="compliance", created_by="test")
    session.commit()


def walk(client: FlaskClient, admin: dict[str, str], path: str, field: str, limit: int) -> list:
    """Every item of a list, a page of `limit` at a time; asserts each page's size."""
    items: list[Any] = []
    separator = "&" if "?" in path else "?"
    url = f"{path}{separator}limit={limit}"
    while True:
        answer = client.get(url, headers=admin)
        assert answer.status_code == 200, answer.json
        page = answer.json
        assert len(page[field]) <= limit
        items += page[field]
        if page["next_cursor"] is None:
            return items
        assert len(page[field]) == limit
        url = f"{path}{separator}limit={limit}&cursor={page['next_cursor']}"


@pytest.mark.parametrize(
    ("path", "field", "ident"),
    [
        ("/admin/v1/tenants", "tenants", "tenant"),
        ("/admin/v1/keys", "keys", "key_id"),
        ("/admin/v1/keys?tenant=t1", "keys", "key_id"),
        ("/admin/v1/clients", "clients", "client_id"),
        ("/admin/v1/models", "models", "version"),
    ],
)
@pytest.mark.usefixtures("more")
def test_pages_cover_the_list_once_in_order(
    client: FlaskClient, admin: dict[str, str], path: str, field: str, ident: str
) -> None:
    whole = client.get(path, headers=admin).json
    assert whole["next_cursor"] is None
    for limit in (1, 2, 3):
        paged = walk(client, admin, path, field, limit)
        assert [(i.get("name"), i[ident]) for i in paged] == [
            (i.get("name"), i[ident]) for i in whole[field]
        ]
    assert len(whole[field]) >= 2


@pytest.mark.usefixtures("more")
def test_limit_is_honoured_and_the_order_stable(client: FlaskClient, admin: dict[str, str]):
    first = client.get("/admin/v1/tenants?limit=3", headers=admin).json
    assert [t["tenant"] for t in first["tenants"]] == ["acme", "globex", "t1"]
    assert first["next_cursor"]
    second = client.get(
        f"/admin/v1/tenants?limit=3&cursor={first['next_cursor']}", headers=admin
    ).json
    assert [t["tenant"] for t in second["tenants"]] == ["t2", "t3", "t4"]
    keys = client.get("/admin/v1/keys?tenant=t1&limit=1", headers=admin).json
    assert len(keys["keys"]) == 1
    assert keys["keys"][0]["tenant"] == "t1"


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=1001",
        "limit=many",
        "cursor=not-a-cursor",
        f"cursor={encode_cursor('keys', 'k')}",  # another list's cursor
        "limit=1&limit=2",
        "offset=5",
    ],
)
def test_bad_page_queries_are_refused(
    client: FlaskClient, admin: dict[str, str], world: World, query: str
) -> None:
    for path in ("/admin/v1/tenants", "/admin/v1/clients", "/admin/v1/models"):
        answer = client.get(f"{path}?{query}", headers=admin)
        assert answer.status_code == 422, (path, query, answer.json)


def test_a_model_cursor_names_a_version(client: FlaskClient, admin: dict[str, str], world: World):
    bad = encode_cursor("models", "iris")
    assert client.get(f"/admin/v1/models?cursor={bad}", headers=admin).status_code == 422
    after_house = encode_cursor("models", "house-price@1")
    rest = client.get(f"/admin/v1/models?cursor={after_house}", headers=admin).json
    assert [(m["name"], m["version"]) for m in rest["models"]] == [("iris", 1)]


@pytest.mark.usefixtures("more")
def test_cli_lists_page_with_limit_and_cursor(predgate: Callable[..., Any]) -> None:
    first = predgate("tenants", "list", "--limit", "4", "--json")
    assert [t["tenant"] for t in json.loads(first.stdout)] == ["acme", "globex", "t1", "t2"]
    cursor = first.stderr.split("--cursor ")[1].split()[0]
    rest = predgate("tenants", "list", "--limit", "4", "--cursor", cursor, "--json")
    assert [t["tenant"] for t in json.loads(rest.stdout)] == ["t3", "t4", "t5"]
    assert "--cursor" not in rest.stderr

    keys = predgate("keys", "list", "--limit", "2", "--json")
    assert len(json.loads(keys.stdout)) == 2
    key_cursor = keys.stderr.split("--cursor ")[1].split()[0]
    assert len(json.loads(predgate("keys", "list", "--cursor", key_cursor, "--json").stdout)) == 3

    refused = predgate("keys", "list", "--cursor", cursor, ok=False)  # a tenant cursor
    assert refused.exit_code == 2
    assert "not a cursor of the keys list" in refused.output


def test_cli_models_and_clients_lists_page_too(predgate: Callable[..., Any], world: World) -> None:
    models = predgate("models", "list", "--limit", "1", "--json")
    assert [m["name"] for m in json.loads(models.stdout)] == ["house-price"]
    cursor = models.stderr.split("--cursor ")[1].split()[0]
    rest = predgate("models", "list", "--cursor", cursor, "--json")
    assert [m["name"] for m in json.loads(rest.stdout)] == ["iris"]

    for role in ("admin", "compliance"):
        predgate("clients", "create", "--role", role, "--json")
    clients = predgate("clients", "list", "--limit", "1", "--json")
    assert len(json.loads(clients.stdout)) == 1
    after = clients.stderr.split("--cursor ")[1].split()[0]
    second = json.loads(predgate("clients", "list", "--cursor", after, "--json").stdout)
    assert len(second) == 1
    assert second[0]["client_id"] != json.loads(clients.stdout)[0]["client_id"]
