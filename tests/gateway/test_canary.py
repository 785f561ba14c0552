"""Canary: an issued key's secret and submitted feature values appear in no log line and no
database column."""

from __future__ import annotations

import logging

from flask.testing import FlaskClient
from sqlalchemy import inspect, text

from tests.conftest import World, bearer

CANARY_FEATURE = 271828.182845


def test_secrets_and_values_never_stored_or_logged(
    client: FlaskClient, world: World, session, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = world.acme_key[21:]
    body = {"area": CANARY_FEATURE, "rooms": 2, "bathrooms": 1, "location": 1}
    assert client.post("/v1/predict", json=body, headers=bearer(world.acme_key)).status_code == 200
    client.post("/v1/predict", json={**body, "pool": 1}, headers=bearer(world.acme_key))
    client.post("/v1/predict", json=body, headers=bearer(world.acme_key[:-1] + "x"))

    assert secret not in caplog.text
    assert world.acme_key not in caplog.text
    assert str(CANARY_FEATURE) not in caplog.text

    bind = session.get_bind()
    for table in inspect(bind).get_table_names():
        for row in session.execute(text(f'SELECT * FROM "{table}"')):
            dumped = " ".join(str(value) for value in row)
            assert secret not in dumped, table
            assert str(CANARY_FEATURE) not in dumped, table
