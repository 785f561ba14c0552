"""Hostile model files: each would run code, or read past a buffer, if the registry loaded it the
unsafe way. Every payload creates a marker file, so a test proves that no code ran."""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from skops.io import dumps


class ExecOnLoad:
    """Unpickling this calls exec(): a stand-in for any payload a pickle can carry."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        code = f"import pathlib; pathlib.Path({str(self.marker)!r}).write_text('code ran')"
        return (exec, (code,))


class Trap:
    """A type outside the allow-list: building it from a skops file writes the marker."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __setstate__(self, state: dict[str, Any]) -> None:
        Path(state["marker"]).write_text("code ran")


def pickle_bytes(marker: Path, protocol: int) -> bytes:
    """A plain pickle whose loading writes the marker."""
    return pickle.dumps(ExecOnLoad(marker), protocol=protocol)


def joblib_bytes(marker: Path, folder: Path, compress: Any = 0) -> bytes:
    """A joblib file (a payload beside a numpy array, as a model has) that writes the marker."""
    path = folder / f"hostile-{compress!s}.joblib"
    joblib.dump({"weights": np.arange(64.0), "model": ExecOnLoad(marker)}, path, compress=compress)
    return path.read_bytes()


def skops_with(estimator: Any, **attributes: Any) -> bytes:
    """A skops file of the estimator with extra attributes smuggled in."""
    for name, value in attributes.items():
        setattr(estimator, name, value)
    try:
        return dumps(estimator)
    finally:
        for name in attributes:
            delattr(estimator, name)


def with_tree_state(data: bytes, change: Callable[[dict[str, Any], np.ndarray], None]) -> bytes:
    """A skops file with the first decision tree's state and node array changed."""
    source = zipfile.ZipFile(io.BytesIO(data))
    schema = json.loads(source.read("schema.json"))
    tree = _first_tree(schema)
    state = tree["content"]["content"]
    nodes_file = state["nodes"]["file"]
    nodes = np.load(io.BytesIO(source.read(nodes_file)), allow_pickle=False)
    change(state, nodes)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as target:
        for name in source.namelist():
            if name == "schema.json":
                target.writestr(name, json.dumps(schema))
            elif name == nodes_file:
                array = io.BytesIO()
                np.save(array, nodes, allow_pickle=False)
                target.writestr(name, array.getvalue())
            else:
                target.writestr(name, source.read(name))
    return buffer.getvalue()


def set_json(node: dict[str, Any], value: Any) -> None:
    """Overwrite a skops JSON node's value."""
    node["content"] = json.dumps(value)
    # skops reuses an earlier node with the same id (equal small ints share one): drop it.
    node.pop("__id__", None)


def _first_tree(schema: Any) -> dict[str, Any]:
    pending = [schema]
    while pending:
        item = pending.pop(0)
        if isinstance(item, dict):
            if item.get("__loader__") == "TreeNode":
                return item
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    raise AssertionError("no decision tree in the file")
