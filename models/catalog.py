"""The model catalog: registered versions as the serving path reads them, held in each worker and
dropped when the change generation moves (db.changes), so a prediction reads no database row.
Registering a version moves the generation, so "latest" follows it at every worker's next poll."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from db.changes import ChangeCache, ChangeWatcher
from models.errors import ModelNotFound
from models.registry import ModelVersion, get_model


class ModelCatalog:
    """Cached `get_model`: NAME@VERSION, or NAME's latest version."""

    def __init__(self, sessions: sessionmaker[Session], watcher: ChangeWatcher) -> None:
        self._sessions = sessions
        self._versions: ChangeCache[tuple[str, int | None], ModelVersion] = ChangeCache(
            watcher, name="model_versions"
        )

    def version(self, name: str, version: int | None = None) -> ModelVersion:
        """The given version of a model, or its latest when version is None; ModelNotFound."""
        found = self._versions.get((name, version), lambda: self._load(name, version))
        if found is None:
            which = name if version is None else f"{name}@{version}"
            raise ModelNotFound(f"no registered model {which!r}")
        return found

    def _load(self, name: str, version: int | None) -> ModelVersion | None:
        with self._sessions() as session:
            try:
                return get_model(session, name, version)
            except ModelNotFound:
                return None
