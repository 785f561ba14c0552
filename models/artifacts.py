"""Content-addressed artifact files: written once, atomically, and verified on every read."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from pathlib import Path

from models.errors import ArtifactIntegrityError

SUFFIXES = frozenset({"joblib", "onnx", "skops"})
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ArtifactStore:
    """Files under `root/<sha[:2]>/<sha>.<suffix>`, named by the SHA-256 of their content."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path_for(self, sha: str, suffix: str) -> Path:
        """Where the artifact with this digest and suffix lives (whether or not it exists)."""
        # The digest becomes a path: refuse anything that is not plain hex, so no record can
        # point outside the store.
        if not _SHA256.match(sha):
            raise ValueError("an artifact digest is 64 lowercase hex characters")
        if suffix not in SUFFIXES:
            raise ValueError(f"artifact suffix must be one of {sorted(SUFFIXES)}")
        return self.root / sha[:2] / f"{sha}.{suffix}"

    def holds(self, sha: str, suffix: str) -> bool:
        """Whether a file with this digest and suffix is present (not whether it is intact)."""
        try:
            return self.path_for(sha, suffix).is_file()
        except ValueError:
            return False

    def put_bytes(self, data: bytes, suffix: str) -> tuple[str, int]:
        """Store bytes under their SHA-256; return (sha256 hex, size). Storing twice is a no-op."""
        sha = hashlib.sha256(data).hexdigest()
        path = self.path_for(sha, suffix)
        if path.is_file() and _file_sha256(path) == sha:
            return sha, len(data)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write beside the target and rename: readers see the whole file or none of it, and a
        # damaged file left by an earlier crash is replaced.
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=f".{suffix}")
        try:
            with os.fdopen(fd, "wb") as tmp:
                tmp.write(data)
                tmp.flush()
                os.fsync(tmp.fileno())
            os.replace(tmp_name, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
            raise
        return sha, len(data)

    def read_verified(self, sha: str, suffix: str) -> bytes:
        """The artifact's bytes, or ArtifactIntegrityError if it is missing or altered."""
        try:
            path = self.path_for(sha, suffix)
        except ValueError as exc:
            raise ArtifactIntegrityError(f"artifact record is malformed: {exc}") from None
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ArtifactIntegrityError(f"artifact {path} is missing") from None
        except OSError as exc:
            raise ArtifactIntegrityError(
                f"artifact {path} cannot be read: {exc.strerror or type(exc).__name__}"
            ) from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha:
            raise ArtifactIntegrityError(
                f"artifact {path} has SHA-256 {actual}, expected {sha}: the file was altered"
            )
        return data


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
