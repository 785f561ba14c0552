"""Content-addressed artifact storage: atomic, idempotent, verified on read."""

from __future__ import annotations

import hashlib

import pytest

from models.artifacts import ArtifactStore
from models.errors import ArtifactIntegrityError


def test_put_stores_content_addressed(store: ArtifactStore) -> None:
    data = b"model bytes"
    sha, size = store.put_bytes(data, "joblib")
    assert sha == hashlib.sha256(data).hexdigest()
    assert size == len(data)
    path = store.path_for(sha, "joblib")
    assert path == store.root / sha[:2] / f"{sha}.joblib"
    assert path.read_bytes() == data
    assert store.read_verified(sha, "joblib") == data


def test_put_is_idempotent_and_leaves_no_temp_files(store: ArtifactStore) -> None:
    first = store.put_bytes(b"same", "onnx")
    assert store.put_bytes(b"same", "onnx") == first
    files = [p.name for p in store.root.rglob("*") if p.is_file()]
    assert files == [f"{first[0]}.onnx"]


def test_put_repairs_a_damaged_file(store: ArtifactStore) -> None:
    sha, _ = store.put_bytes(b"original", "joblib")
    store.path_for(sha, "joblib").write_bytes(b"damaged")
    store.put_bytes(b"original", "joblib")
    assert store.read_verified(sha, "joblib") == b"original"


def test_read_refuses_a_tampered_file(store: ArtifactStore) -> None:
    sha, _ = store.put_bytes(b"original", "onnx")
    store.path_for(sha, "onnx").write_bytes(b"tampered")
    with pytest.raises(ArtifactIntegrityError, match="altered") as caught:
        store.read_verified(sha, "onnx")
    assert f"{sha}.onnx" in str(caught.value)
    assert caught.value.code == "model_unavailable"
    assert caught.value.status == 503


def test_read_refuses_a_missing_file(store: ArtifactStore) -> None:
    with pytest.raises(ArtifactIntegrityError, match="missing"):
        store.read_verified("ab" * 32, "joblib")


@pytest.mark.parametrize("sha", ["../../etc/passwd", "AB" * 32, "ab" * 31, ""])
def test_malformed_digests_never_become_paths(store: ArtifactStore, sha: str) -> None:
    with pytest.raises(ValueError, match="64 lowercase hex"):
        store.path_for(sha, "joblib")
    with pytest.raises(ArtifactIntegrityError, match="malformed"):
        store.read_verified(sha, "joblib")


def test_unknown_suffix_is_refused(store: ArtifactStore) -> None:
    with pytest.raises(ValueError, match="suffix"):
        store.put_bytes(b"x", "pkl")
