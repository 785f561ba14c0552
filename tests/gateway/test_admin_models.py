"""POST /admin/v1/models: a skops upload registers and serves; a pickle, a joblib file or a skops
file naming a type outside the allow-list is refused without running any of its code, with
nothing registered and one audit record saying why."""

from __future__ import annotations

import hashlib
import io
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from flask.testing import FlaskClient
from sklearn.linear_model import Ridge, RidgeClassifier
from sklearn.svm import SVR
from skops.io import dumps
from sqlalchemy import text
from sqlalchemy.orm import Session

from config import Settings
from models.training import make_iris_data
from tests import fixtures_models
from tests.conftest import HOUSE, IRIS, World, bearer
from tests.gateway.admin_support import assert_client_record, record_for
from tests.models import hostile
from tests.oauth_support import token_headers


@pytest.fixture
def admin(client: FlaskClient, session: Session, settings: Settings) -> dict[str, str]:
    return token_headers(client, session, settings, role="admin")


@pytest.fixture(scope="module")
def estimators() -> dict[str, Any]:
    return fixtures_models.build_estimators()


@pytest.fixture(scope="module")
def skops_files(estimators: dict[str, Any]) -> dict[str, bytes]:
    return {name: dumps(estimator) for name, estimator in estimators.items()}


def part(data: bytes, filename: str = "m.skops") -> tuple[io.BytesIO, str]:
    """A file part of a multipart body."""
    return io.BytesIO(data), filename


def upload(client: FlaskClient, headers: dict[str, str], **fields: Any) -> Any:
    return client.post(
        "/admin/v1/models", data=fields, headers=headers, content_type="multipart/form-data"
    )


def registered_versions(session: Session) -> int:
    session.rollback()
    return int(session.execute(text("SELECT count(*) FROM model_versions")).scalar_one())


def assert_refused(session: Session, response: Any, status: int, code: str) -> dict[str, Any]:
    """Refused with this problem, nothing registered, and one failure record with the reason."""
    assert response.status_code == status, response.json
    assert response.json["code"] == code
    record = record_for(session, response)
    assert (record["event_type"], record["outcome"]) == ("model.register", "failure")
    assert (record["http_status"], record["reason_code"]) == (status, code)
    assert registered_versions(session) == 2  # the world's two
    return record


def test_skops_upload_registers_and_serves(
    client: FlaskClient,
    admin: dict[str, str],
    session: Session,
    world: World,
    estimators: dict[str, Any],
    skops_files: dict[str, bytes],
) -> None:
    data = skops_files["house-price"]
    # Bigger than PREDGATE_MAX_BODY_BYTES (64 KB here), within the upload limit.
    assert len(data) > 64 * 1024
    registered = upload(client, admin, name="house-price", file=part(data))
    assert registered.status_code == 201, registered.json
    assert registered.json["version"] == 2
    assert registered.json["runtime"] == "onnx"
    assert registered.json["artifact_sha256"] == hashlib.sha256(data).hexdigest()
    record = record_for(session, registered)
    assert_client_record(record, "model.register", 201)
    assert record["details"]["format"] == "skops"
    assert record["details"]["sha256"] == registered.json["artifact_sha256"]
    assert record["details"]["version"] == 2
    assert record["request_digest"] is None  # the upload is not read again for a digest

    assigned = client.put(
        "/admin/v1/tenants/acme/model", json={"model": "house-price@2"}, headers=admin
    )
    assert assigned.json["model"] == "house-price@2"
    served = client.post("/v1/predict", json=HOUSE, headers=bearer(world.acme_key))
    assert served.status_code == 200, served.json
    assert served.json["model"] == {"name": "house-price", "version": 2}
    expected = estimators["house-price"].predict(pd.DataFrame([HOUSE]))[0]
    assert served.json["predictions"] == pytest.approx([expected], rel=1e-4)


def test_skops_upload_served_by_scikit_learn_is_never_unpickled(
    client: FlaskClient, admin: dict[str, str], session: Session, world: World
) -> None:
    # No predict_proba, so no ONNX: served by scikit-learn, built from the skops file again.
    iris = make_iris_data()
    model = RidgeClassifier().fit(iris.drop(columns=["species"]), iris["species"])
    registered = upload(client, admin, name="ridge", file=part(dumps(model)))
    assert registered.status_code == 201, registered.json
    assert registered.json["runtime"] == "sklearn"
    client.put("/admin/v1/tenants/globex/model", json={"model": "ridge"}, headers=admin)
    served = client.post("/v1/predict", json=IRIS, headers=bearer(world.globex_key))
    assert served.status_code == 200, served.json
    assert served.json["model"] == {"name": "ridge", "version": 1}
    assert served.json["predictions"] == list(model.predict(pd.DataFrame([IRIS])))


@pytest.mark.parametrize(
    ("kind", "build"),
    [
        ("pickle", lambda marker, _folder: hostile.pickle_bytes(marker, protocol=0)),
        ("pickle", lambda marker, _folder: hostile.pickle_bytes(marker, protocol=2)),
        ("pickle", lambda marker, _folder: hostile.pickle_bytes(marker, protocol=5)),
        ("joblib", lambda marker, folder: hostile.joblib_bytes(marker, folder)),
        ("joblib", lambda marker, folder: hostile.joblib_bytes(marker, folder, compress=3)),
        ("joblib", lambda marker, folder: hostile.joblib_bytes(marker, folder, ("gzip", 3))),
    ],
    ids=["pickle-0", "pickle-2", "pickle-5", "joblib", "joblib-zlib", "joblib-gzip"],
)
def test_pickle_upload_runs_no_code(
    client: FlaskClient,
    admin: dict[str, str],
    session: Session,
    world: World,
    tmp_path: Path,
    kind: str,
    build: Any,
) -> None:
    marker = tmp_path / "marker"
    data = build(marker, tmp_path)
    response = upload(client, admin, name="evil", file=part(data, "model.joblib"))
    assert not marker.exists()
    record = assert_refused(session, response, 415, "unsupported_model_format")
    detail = response.json["detail"]
    assert "skops" in detail
    assert kind in detail
    # The record says why, in the same words.
    assert record["details"] == {"model": "evil", "format": kind, "refusal": detail}


@pytest.mark.parametrize(
    "extra",
    [
        {"trap_": "TRAP"},  # a custom class whose construction writes the marker
        {"hook_": eval},  # a reference to a builtin function
        {"steps_": [SVR()]},  # a scikit-learn type that skops trusts but the allow-list does not
    ],
    ids=["custom-class", "builtin-function", "unlisted-estimator"],
)
def test_untrusted_skops_upload_runs_no_code(
    client: FlaskClient,
    admin: dict[str, str],
    session: Session,
    world: World,
    tmp_path: Path,
    estimators: dict[str, Any],
    extra: dict[str, Any],
) -> None:
    marker = tmp_path / "marker"
    attributes = {k: hostile.Trap(marker) if v == "TRAP" else v for k, v in extra.items()}
    data = hostile.skops_with(estimators["iris"], **attributes)
    response = upload(client, admin, name="evil", file=part(data))
    assert not marker.exists()
    record = assert_refused(session, response, 422, "untrusted_model_type")
    detail = response.json["detail"]
    assert "outside the allow-list" in detail
    # Type names come from the file: counted, never echoed.
    assert not any(name in detail for name in ("Trap", "eval", "SVR", "hostile"))
    assert record["details"] == {"model": "evil", "format": "skops", "refusal": detail}


def test_an_unusable_model_is_refused_with_its_reason(
    client: FlaskClient, admin: dict[str, str], session: Session, world: World
) -> None:
    response = upload(client, admin, name="unfitted", file=part(dumps(Ridge())))
    record = assert_refused(session, response, 422, "invalid_artifact")
    assert response.json["detail"] == "Ridge is not fitted"
    assert record["details"]["refusal"] == "Ridge is not fitted"


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"name": "m", "file": "SOURCE"}, 415, "unsupported_model_format"),
        ({"name": "m"}, 422, "validation_error"),
        ({"file": "MODEL"}, 422, "validation_error"),
        ({"name": "m", "file": "MODEL", "registered_by": "x"}, 422, "validation_error"),
        ({"name": "Bad Name", "file": "MODEL"}, 422, "invalid_model_ref"),
    ],
)
def test_bad_uploads(
    client: FlaskClient,
    admin: dict[str, str],
    session: Session,
    world: World,
    skops_files: dict[str, bytes],
    fields: dict[str, Any],
    status: int,
    code: str,
) -> None:
    parts = dict(fields)
    if parts.get("file") == "MODEL":
        parts["file"] = part(skops_files["iris"])
    elif parts.get("file") == "SOURCE":
        parts["file"] = part(Path(__file__).read_bytes())
    assert_refused(session, upload(client, admin, **parts), status, code)


def test_upload_must_be_multipart(client: FlaskClient, admin: dict[str, str], world) -> None:
    response = client.post("/admin/v1/models", json={"name": "m"}, headers=admin)
    assert response.status_code == 415
    assert response.json["code"] == "unsupported_media_type"


def test_oversized_upload_is_413(
    settings: Settings, make_app, session: Session, world: World, skops_files
) -> None:
    client = make_app(replace(settings, max_model_upload_bytes=4096)).test_client()
    admin = token_headers(client, session, settings, role="admin")
    response = upload(client, admin, name="big", file=part(skops_files["house-price"]))
    assert response.status_code == 413
    assert response.json["code"] == "payload_too_large"
    assert record_for(session, response)["http_status"] == 413
    # Every other route keeps the general body limit.
    big = client.post("/admin/v1/tenants", json={"name": "x" * 70_000}, headers=admin)
    assert big.status_code == 413


def test_the_same_upload_twice_is_refused_the_second_time(
    client: FlaskClient,
    admin: dict[str, str],
    session: Session,
    world: World,
    skops_files: dict[str, bytes],
) -> None:
    first = upload(client, admin, name="iris", file=part(skops_files["iris"]))
    assert first.status_code == 201, first.get_data(as_text=True)
    again = upload(client, admin, name="iris", file=part(skops_files["iris"]))
    assert again.status_code == 409
    assert again.json["code"] == "artifact_already_registered"
    assert registered_versions(session) == 3  # the world's two and the first upload
    record = record_for(session, again)
    assert (record["outcome"], record["reason_code"]) == ("failure", "artifact_already_registered")
    version = first.json["version"]
    assert again.json["detail"].startswith(f"this file is already registered as iris@{version}")
    assert record["details"]["refusal"] == again.json["detail"]
