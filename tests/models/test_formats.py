"""Model formats: a file is told by its bytes, an upload is a skops file built only from the
allow-list, and neither registering nor serving an upload ever unpickles anything."""

from __future__ import annotations

import importlib
import io
import json
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator
from sklearn.linear_model import RidgeClassifier
from sklearn.svm import SVR
from sklearn.tree import DecisionTreeRegressor
from skops.io import dumps
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models import formats
from models.artifacts import ArtifactStore
from models.errors import (
    ArtifactIntegrityError,
    InvalidArtifact,
    UnsupportedModelFormat,
    UntrustedModelType,
)
from models.formats import TRUSTED_NODES, load_skops, sniff_format
from models.inference import load_model
from models.registry import ModelVersion, register_model, register_upload
from models.tables import ModelVersionRow
from tests.models import hostile
from tests.models.conftest import HOUSE_FEATURES, IRIS_FEATURES

Upload = Callable[..., ModelVersion]


@pytest.fixture
def upload(session: Session, store: ArtifactStore) -> Upload:
    """Register bytes as an HTTP upload would."""

    def run(data: bytes, name: str = "m", **kwargs: Any) -> ModelVersion:
        return register_upload(
            session, store, name=name, data=data, registered_by="http:test", **kwargs
        )

    return run


@pytest.fixture
def no_unpickling(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any unpickling from here on fails the test."""

    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("something was unpickled")

    for module, name in ((joblib, "load"), (pickle, "load"), (pickle, "loads")):
        monkeypatch.setattr(module, name, refuse)


def versions(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(ModelVersionRow)) or 0)


def small_tree(house: pd.DataFrame) -> DecisionTreeRegressor:
    model = DecisionTreeRegressor(max_depth=3, random_state=0)
    return model.fit(house[list(HOUSE_FEATURES)], house["price"])


def plain_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("readme.txt", "not a model")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (lambda m, _f: hostile.pickle_bytes(m, protocol=0), "pickle"),
        (lambda m, _f: hostile.pickle_bytes(m, protocol=1), "pickle"),
        (lambda m, _f: hostile.pickle_bytes(m, protocol=2), "pickle"),
        (lambda m, _f: hostile.pickle_bytes(m, protocol=5), "pickle"),
        (lambda m, f: hostile.joblib_bytes(m, f), "joblib"),
        (lambda m, f: hostile.joblib_bytes(m, f, compress=3), "joblib"),
        (lambda m, f: hostile.joblib_bytes(m, f, ("gzip", 3)), "joblib"),
        (lambda m, f: hostile.joblib_bytes(m, f, ("bz2", 3)), "joblib"),
        (lambda m, f: hostile.joblib_bytes(m, f, ("xz", 3)), "joblib"),
        (lambda m, f: hostile.joblib_bytes(m, f, ("lzma", 3)), "joblib"),
        (lambda _m, _f: dumps({"a": 1}), "skops"),
        (lambda _m, _f: plain_zip(), "zip"),
        (lambda _m, _f: b'"""a Python file"""\n', "unknown"),
        (lambda _m, _f: b"", "unknown"),
    ],
)
def test_sniff_format_reads_no_object(
    tmp_path: Path, no_unpickling: None, build: Any, expected: str
) -> None:
    marker = tmp_path / "marker"
    data = build(marker, tmp_path)
    assert sniff_format(data) == expected
    assert not marker.exists()


@pytest.mark.parametrize(
    "build",
    [
        lambda m, _f: hostile.pickle_bytes(m, protocol=0),
        lambda m, _f: hostile.pickle_bytes(m, protocol=5),
        lambda m, f: hostile.joblib_bytes(m, f),
        lambda m, f: hostile.joblib_bytes(m, f, compress=3),
        lambda m, _f: plain_zip(),
    ],
    ids=["pickle-0", "pickle-5", "joblib", "joblib-zlib", "zip"],
)
def test_upload_refuses_every_format_but_skops(
    upload: Upload, session: Session, tmp_path: Path, no_unpickling: None, build: Any
) -> None:
    marker = tmp_path / "marker"
    with pytest.raises(UnsupportedModelFormat, match="predgate models register"):
        upload(build(marker, tmp_path))
    assert not marker.exists()
    assert versions(session) == 0


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"trap_": "TRAP"}, "tests.models.hostile.Trap"),
        ({"hook_": eval}, "builtins.eval"),
        ({"steps_": [SVR()]}, "sklearn.svm._classes.SVR"),
    ],
    ids=["custom-class", "builtin-function", "unlisted-estimator"],
)
def test_skops_type_outside_the_allow_list_is_never_built(
    upload: Upload,
    session: Session,
    tmp_path: Path,
    iris_pipeline: Any,
    extra: dict[str, Any],
    named: str,
) -> None:
    marker = tmp_path / "marker"
    attributes = {k: hostile.Trap(marker) if v == "TRAP" else v for k, v in extra.items()}
    data = hostile.skops_with(iris_pipeline, **attributes)
    with pytest.raises(UntrustedModelType, match=named):
        upload(data)
    assert not marker.exists()
    assert versions(session) == 0


def test_skops_node_with_an_unknown_loader_is_refused(iris_pipeline: Any) -> None:
    # A function node, as skops writes for a callable: refused whatever it names.
    data = hostile.skops_with(iris_pipeline, hook_=len)
    source = zipfile.ZipFile(io.BytesIO(data))
    schema = json.loads(source.read("schema.json"))
    hook = schema["content"]["content"]["hook_"]
    hook.update(__loader__="FunctionNode", content={"module_path": "os", "function": "system"})
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as target:
        for name in source.namelist():
            content = json.dumps(schema) if name == "schema.json" else source.read(name)
            target.writestr(name, content)
    with pytest.raises(UntrustedModelType, match="FunctionNode"):
        load_skops(buffer.getvalue())


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda _state, nodes: nodes["left_child"].__setitem__(0, 10**6), "out of range"),
        (lambda _state, nodes: nodes["right_child"].__setitem__(0, 0), "out of range"),
        (lambda _state, nodes: nodes["feature"].__setitem__(0, 99), "out of range"),
        (lambda _state, nodes: nodes["feature"].__setitem__(0, -5), "out of range"),
        (lambda state, nodes: hostile.set_json(state["node_count"], len(nodes) - 2), "count"),
        (lambda state, _nodes: hostile.set_json(state["max_depth"], 1), "max_depth"),
    ],
    ids=["child", "cycle", "feature-high", "feature-negative", "node-count", "max-depth"],
)
def test_tampered_tree_is_refused_before_it_predicts(
    upload: Upload, session: Session, house: pd.DataFrame, tamper: Any, message: str
) -> None:
    data = hostile.with_tree_state(dumps(small_tree(house)), tamper)
    with pytest.raises(InvalidArtifact, match=message):
        upload(data)
    assert versions(session) == 0


def test_tree_reading_other_columns_is_refused(upload: Upload, house: pd.DataFrame) -> None:
    wide = small_tree(house)
    narrow = DecisionTreeRegressor(max_depth=2).fit(house[["area"]], house["price"])
    wide.tree_ = narrow.tree_
    with pytest.raises(InvalidArtifact, match="reads 1 features"):
        upload(dumps(wide))


def test_oversized_unpacking_is_refused(
    upload: Upload, iris_pipeline: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = dumps(iris_pipeline)
    monkeypatch.setattr(formats, "MAX_UNPACKED_BYTES", 1000)
    with pytest.raises(InvalidArtifact, match="at most 1000 bytes"):
        upload(data)


@pytest.mark.parametrize(
    ("fixture", "features", "runtime"),
    [
        ("forest_regressor", HOUSE_FEATURES, "onnx"),
        ("iris_pipeline", IRIS_FEATURES, "onnx"),
        ("int_forest_classifier", IRIS_FEATURES, "onnx"),
        ("ridge_classifier", IRIS_FEATURES, "sklearn"),
    ],
)
def test_skops_upload_registers_and_serves_without_unpickling(
    request: pytest.FixtureRequest,
    upload: Upload,
    store: ArtifactStore,
    iris: pd.DataFrame,
    house: pd.DataFrame,
    no_unpickling: None,
    fixture: str,
    features: tuple[str, ...],
    runtime: str,
) -> None:
    if fixture == "ridge_classifier":
        model: Any = RidgeClassifier().fit(iris[list(IRIS_FEATURES)], iris["species"])
    else:
        model = request.getfixturevalue(fixture)
    data = dumps(model)
    needs_names = fixture == "int_forest_classifier"
    meta = upload(data, features=list(features) if needs_names else None)
    assert (meta.features, meta.runtime) == (features, runtime)
    assert store.path_for(meta.artifact_sha256, "skops").read_bytes() == data
    assert not store.holds(meta.artifact_sha256, "joblib")
    frame = (house if features == HOUSE_FEATURES else iris)[list(features)].iloc[:20]
    rows = frame.to_numpy(dtype=np.float64)
    served = load_model(store, meta).predict(rows, probabilities=False)
    expected = model.predict(frame.to_numpy() if needs_names else frame)
    if meta.task == "regression":
        assert served.predictions == pytest.approx(list(expected), rel=1e-4)
    else:
        assert served.predictions == list(expected)


def test_tampered_skops_artifact_is_refused(
    upload: Upload, store: ArtifactStore, iris: pd.DataFrame, no_unpickling: None
) -> None:
    meta = upload(dumps(RidgeClassifier().fit(iris[list(IRIS_FEATURES)], iris["species"])))
    assert meta.runtime == "sklearn"
    path = store.path_for(meta.artifact_sha256, "skops")
    path.write_bytes(path.read_bytes() + b"\x00")
    with pytest.raises(ArtifactIntegrityError, match="altered"):
        load_model(store, meta)


def test_operator_may_register_skops_or_joblib(
    session: Session,
    store: ArtifactStore,
    tmp_path: Path,
    dump: Callable[[Any], Path],
    forest_regressor: Any,
) -> None:
    skops_path = tmp_path / "house.skops"
    skops_path.write_bytes(dumps(forest_regressor))
    for path, suffix in ((skops_path, "skops"), (dump(forest_regressor), "joblib")):
        meta = register_model(
            session, store, name="house", artifact_path=path, registered_by="operator"
        )
        assert store.path_for(meta.artifact_sha256, suffix).is_file()
    assert versions(session) == 2


def test_allow_list_names_real_types() -> None:
    # A scikit-learn release that moves a class must fail here, not refuse uploads in production.
    for loader, names in TRUSTED_NODES.items():
        for name in names:
            module, _, attribute = name.rpartition(".")
            found = getattr(importlib.import_module(module), attribute)
            assert isinstance(found, type), name
            assert loader != "ObjectNode" or issubclass(found, BaseEstimator), name


def _business_forest(house: pd.DataFrame) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame = house[list(HOUSE_FEATURES)].copy()
    frame["city"] = pd.Series(np.where(frame["location"] > 2, "Lyon", "Nice"), dtype=object)
    frame.loc[frame.index[::6], "city"] = np.nan
    columns = ColumnTransformer(
        [
            ("numbers", "passthrough", list(HOUSE_FEATURES)),
            (
                "city",
                make_pipeline(
                    SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")
                ),
                ["city"],
            ),
        ]
    )
    model = make_pipeline(columns, RandomForestRegressor(n_estimators=3, random_state=0))
    return model.fit(frame, house["price"]), frame


def test_an_uploaded_pipeline_with_encoders_serves_raw_values_on_onnx(
    upload: Upload, store: ArtifactStore, house: pd.DataFrame, no_unpickling: None
) -> None:
    model, frame = _business_forest(house)
    meta = upload(dumps(model))
    assert meta.runtime == "onnx", meta.onnx_note
    city = next(spec for spec in meta.specs if spec.name == "city")
    assert (city.type, city.nullable, city.categories) == ("string", True, ("Lyon", "Nice"))
    rows = frame.iloc[:12]
    records = [
        {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
        for r in rows.to_dict(orient="records")
    ]
    from models.features import feature_schema

    served = load_model(store, meta).predict(
        feature_schema(meta.specs).to_input(records, max_batch=20, batched=True),
        probabilities=False,
    )
    np.testing.assert_allclose(served.predictions, model.predict(rows), rtol=1e-12)


def test_a_tampered_tree_behind_encoders_is_refused(
    upload: Upload, session: Session, house: pd.DataFrame
) -> None:
    model, _ = _business_forest(house)
    # Trees behind the encoders read the encoded width (4 numbers + 2 one-hot columns): a tree
    # claiming more is refused before it predicts.
    wide = DecisionTreeRegressor(max_depth=2).fit(np.zeros((4, 9)), np.arange(4.0))
    model.steps[-1][1].estimators_[0].tree_ = wide.tree_
    with pytest.raises(InvalidArtifact, match="reads 9 features, not 6"):
        upload(dumps(model))
    assert versions(session) == 0


def test_a_function_transformer_calling_a_function_is_refused(
    upload: Upload, session: Session, house: pd.DataFrame
) -> None:
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    model = make_pipeline(FunctionTransformer(np.log1p), DecisionTreeRegressor(max_depth=2))
    model.fit(house[list(HOUSE_FEATURES)], house["price"])
    with pytest.raises(UntrustedModelType, match="outside the allow-list"):
        upload(dumps(model))
    assert versions(session) == 0
