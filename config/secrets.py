"""The server secret: generated once into the data directory, or given by the operator."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

SECRET_FILE_NAME = "server_secret"  # noqa: S105 (a file name, not a secret)
SECRET_BYTES = 32
# Values that operators paste from examples; refusing them keeps a placeholder out of production.
PLACEHOLDER_SECRETS = frozenset(
    {"changeme", "change-me", "secret", "dev", "development", "test", "password", "example"}
)
MIN_SECRET_LENGTH = 32


class SecretError(ValueError):
    """The configured or stored secret cannot be used."""


def load_or_create_secret(data_dir: Path) -> bytes:
    """Return the server secret kept in the data directory, generating it on first use."""
    path = data_dir / SECRET_FILE_NAME
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL makes concurrent first starts agree on one secret: the loser reads the winner's.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_secret_file(path)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(SECRET_BYTES))
    return _read_secret_file(path)


def _read_secret_file(path: Path) -> bytes:
    text = path.read_text().strip()
    if len(text) < 2 * SECRET_BYTES:
        raise SecretError(f"{path} does not hold a valid server secret; remove it to regenerate")
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)
    return text.encode()


def parse_secret(value: str, *, variable: str) -> bytes:
    """Validate an operator-supplied secret; refuse short or placeholder values."""
    stripped = value.strip()
    if stripped.lower() in PLACEHOLDER_SECRETS or len(stripped) < MIN_SECRET_LENGTH:
        raise SecretError(
            f"{variable} must be a random value of at least {MIN_SECRET_LENGTH} characters "
            "(for example `python -c 'import secrets; print(secrets.token_hex(32))'`)"
        )
    return stripped.encode()
