"""Compile a scikit-learn estimator to ONNX, prove parity on sample rows, and run ONNX sessions."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
import skl2onnx
from numpy.typing import NDArray
from skl2onnx import to_onnx
from skl2onnx.common.data_types import DoubleTensorType, StringTensorType
from sklearn.compose import ColumnTransformer
from sklearn.neighbors._base import KNeighborsMixin
from sklearn.pipeline import Pipeline

from models.estimators import EstimatorInfo, Label, Sample
from models.features import FeatureSpec, ModelInput
from models.onnx_converters import MISSING_STRING, TARGET_OPSET, finish_model, register_converters

# onnxruntime is not fork-safe (a child forked after importing it hangs at exit), so
# it is imported where a session is created: never in the process that forks the workers.
if TYPE_CHECKING:
    import onnxruntime

INPUT_NAME = "input"
# Estimators whose ONNX answers can differ from scikit-learn's in ways a parity check on sample
# rows would not catch, with the reason in words.
NOT_COMPILED: dict[type, str] = {
    KNeighborsMixin: "which neighbours are nearest on tied distances depends on how distances are "
    "computed and searched, so ONNX can pick other neighbours than scikit-learn on inputs a "
    "sample does not contain (probabilities would then differ by 1/k)",
}
# Served answers must be scikit-learn's own to what float64 allows, so the graphs compute in
# double and parity is checked on sample rows that are not exact in float32 (a float32 cast
# anywhere shows as an error near 1e-7 and fails):
# - regression: |onnx - sklearn| <= REGRESSION_REL_TOL * max(|sklearn|, mean |sklearn|);
# - classification: identical labels, and |onnx - sklearn| <= PROBABILITY_ABS_TOL per
#   probability (probabilities lie in [0, 1]).
REGRESSION_REL_TOL = 1e-9
PROBABILITY_ABS_TOL = 1e-9
_NOTE_LIMIT = 400
_LINE_LIMIT = 160


@dataclass(frozen=True)
class Compiled:
    """ONNX bytes when conversion and parity succeeded (else None), and the reason either way."""

    onnx: bytes | None
    note: str
    max_abs_error: float | None
    max_rel_error: float | None = None


def compile_onnx(estimator: Any, info: EstimatorInfo, sample: Sample) -> Compiled:
    """Convert with skl2onnx and compare against scikit-learn's answers on the sample rows."""
    if info.task == "classification" and sample.probabilities is None:
        # skl2onnx would emit decision scores where probabilities are expected.
        return Compiled(None, "classifier has no predict_proba; served with scikit-learn", None)
    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    reason = not_compiled_reason(final)
    if reason is not None:
        return Compiled(
            None, f"{type(final).__name__}: {reason}; served with its own predict", None
        )
    register_converters()
    options = {id(final): {"zipmap": False}} if info.task == "classification" else None
    try:
        with warnings.catch_warnings():
            # Deprecation notices scikit-learn raises while skl2onnx reads an estimator's
            # attributes are not conversion failures.
            warnings.simplefilter("ignore")
            model = to_onnx(
                estimator,
                initial_types=input_types(estimator, info.specs),
                options=options,
                target_opset=TARGET_OPSET,
            )
        data: bytes = finish_model(model).SerializeToString()
    except NotImplementedError as exc:
        # predgate's own converters (models.onnx_converters) say what they do not cover.
        return Compiled(
            None,
            f"{type(final).__name__} is not converted to ONNX: {exc}; served with scikit-learn",
            None,
        )
    except Exception as exc:
        # Said in words first (which estimator, which converter versions), the converter's own
        # first line after it for whoever digs further.
        return Compiled(
            None,
            f"skl2onnx cannot convert {type(estimator).__name__}: the installed skl2onnx "
            f"{skl2onnx.__version__} with onnx {onnx.__version__} does not support "
            f"{type(final).__name__}; served with scikit-learn (converter said: {_brief(exc)})",
            None,
        )
    try:
        session = open_session(data)
        first, second = run_session(session, sample.rows)
    except Exception as exc:
        return Compiled(
            None,
            f"onnxruntime {_ort_version()} cannot run the converted {type(final).__name__} in "
            f"double precision; served with scikit-learn (onnxruntime said: {_brief(exc)})",
            None,
        )
    if info.classes is None:
        return _regression_parity(data, sample, first)
    return _classification_parity(data, info.classes, sample, first, second)


def open_session(data: bytes) -> onnxruntime.InferenceSession:
    """An ONNX Runtime session on one CPU thread; run() is safe to call from many threads."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    # One thread per request: the gateway's concurrency comes from its workers, and
    # oversubscribing cores would slow every request down.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    return onnxruntime.InferenceSession(
        data, sess_options=options, providers=["CPUExecutionProvider"]
    )


def not_compiled_reason(final: Any) -> str | None:
    """Why this final estimator is served by its own predict without trying ONNX, or None."""
    for kind, reason in NOT_COMPILED.items():
        if isinstance(final, kind):
            return reason
    if type(final).__module__.split(".")[0] == "xgboost":
        return (
            "XGBoost predicts in float32 and sums its trees in its own order; no ONNX converter "
            "reproduces those answers within the parity tolerance"
        )
    return None


def input_types(estimator: Any, specs: tuple[FeatureSpec, ...]) -> list[tuple[str, Any]]:
    """The ONNX inputs for a model: one float64 matrix, or one [N, 1] input per feature (text
    as strings) when the model reads columns by name or takes text."""
    if not per_column(estimator, specs):
        return [(INPUT_NAME, DoubleTensorType([None, len(specs)]))]
    return [
        (
            spec.name,
            StringTensorType([None, 1]) if spec.type == "string" else DoubleTensorType([None, 1]),
        )
        for spec in specs
    ]


def per_column(estimator: Any, specs: tuple[FeatureSpec, ...]) -> bool:
    """Whether the converted model takes one input per feature (see input_types)."""
    first = estimator.steps[0][1] if isinstance(estimator, Pipeline) else estimator
    return isinstance(first, ColumnTransformer) or any(s.type == "string" for s in specs)


def run_session(
    session: onnxruntime.InferenceSession, rows: ModelInput, inputs: list[str] | None = None
) -> tuple[NDArray[Any], NDArray[Any] | None]:
    """Run rows through a converted model: (labels or values, probabilities or None).
    `inputs`: the session's input names, when the caller keeps them (a loaded model does)."""
    names = inputs if inputs is not None else [i.name for i in session.get_inputs()]
    if len(names) == 1 and not rows.texts:
        feeds: dict[str, Any] = {names[0]: rows.numbers}
    else:
        feeds = {}
        for j, name in enumerate(names):
            texts = rows.texts.get(j)
            if texts is None:
                feeds[name] = rows.numbers[:, j : j + 1]
            else:
                column = [MISSING_STRING if v is None else v for v in texts]
                feeds[name] = np.array(column, dtype=object).reshape(-1, 1)
    outputs = session.run(None, feeds)
    first = np.asarray(outputs[0])
    second = np.asarray(outputs[1]) if len(outputs) > 1 else None
    return first, second


def label_lookup(classes: tuple[Label, ...]) -> dict[Label, Label]:
    """Map the labels ONNX returns (int64 or str) back to the registry's labels."""
    # Float labels with integral values come back from skl2onnx as int64; 1 == 1.0 and both
    # hash alike, so one dict serves ints, integral floats and strings.
    return {label: label for label in classes}


def map_labels(raw: NDArray[Any], lookup: dict[Label, Label]) -> list[Label]:
    """ONNX label output as registry labels; RuntimeError on a label the registry lacks."""
    labels: list[Label] = []
    for value in raw.reshape(-1).tolist():
        key = value if isinstance(value, (int, float, str)) else str(value)
        try:
            labels.append(lookup[key])
        except KeyError:
            raise RuntimeError("ONNX returned a label outside the registered classes") from None
    return labels


def _regression_parity(data: bytes, sample: Sample, values: NDArray[Any]) -> Compiled:
    got = values.astype(np.float64).reshape(-1)
    expected = np.asarray(sample.predictions, dtype=np.float64)
    if got.shape != expected.shape:
        return Compiled(None, f"ONNX returned shape {list(values.shape)}", None)
    error = np.abs(got - expected)
    # Relative to each answer, with the typical answer's size as the floor near zero.
    scale = np.maximum(np.abs(expected), float(np.mean(np.abs(expected))) or 1.0)
    worst = float(np.max(error)) if error.size else 0.0
    worst_rel = float(np.max(error / scale)) if error.size else 0.0
    n = len(expected)
    if not np.all(np.isfinite(got)) or not worst_rel <= REGRESSION_REL_TOL:
        return Compiled(
            None,
            f"ONNX parity failed on {n} sample rows: largest relative difference "
            f"{worst_rel:.3g} exceeds {REGRESSION_REL_TOL:g}; served with scikit-learn",
            worst if np.isfinite(worst) else None,
            worst_rel if np.isfinite(worst_rel) else None,
        )
    return Compiled(
        data,
        f"ONNX parity ok on {n} sample rows: largest relative difference {worst_rel:.3g} "
        f"(tolerance {REGRESSION_REL_TOL:g} for regression)",
        worst,
        worst_rel,
    )


def _classification_parity(
    data: bytes,
    classes: tuple[Label, ...],
    sample: Sample,
    labels: NDArray[Any],
    probabilities: NDArray[Any] | None,
) -> Compiled:
    assert sample.probabilities is not None
    n = len(sample.predictions)
    if probabilities is None or probabilities.shape != sample.probabilities.shape:
        return Compiled(None, "ONNX did not return one probability per class", None)
    try:
        got = map_labels(labels, label_lookup(classes))
    except RuntimeError as exc:
        return Compiled(None, f"ONNX parity failed: {exc}", None)
    error = np.abs(probabilities.astype(np.float64) - sample.probabilities)
    worst = float(np.max(error)) if error.size else 0.0
    mismatched = sum(1 for a, b in zip(got, sample.predictions, strict=True) if str(a) != str(b))
    if mismatched or not np.isfinite(worst) or worst > PROBABILITY_ABS_TOL:
        return Compiled(
            None,
            f"ONNX parity failed on {n} sample rows: {mismatched} labels differ, largest "
            f"probability difference {worst:.3g} (tolerance {PROBABILITY_ABS_TOL:g}); served "
            "with scikit-learn",
            worst if np.isfinite(worst) else None,
            worst if np.isfinite(worst) else None,
        )
    return Compiled(
        data,
        f"ONNX parity ok on {n} sample rows: labels identical, largest probability difference "
        f"{worst:.3g} (tolerance {PROBABILITY_ABS_TOL:g} for classification)",
        worst,
        worst,
    )


def _ort_version() -> str:
    import onnxruntime

    return str(onnxruntime.__version__)


def _brief(exc: BaseException) -> str:
    # skl2onnx messages run to paragraphs (some dump every node attribute); the first line
    # names the unsupported part, and the direct cause often says why.
    text = _first_line(exc)
    cause = exc.__cause__ or exc.__context__
    if cause is not None:
        text += f" (caused by {_first_line(cause)})"
    return text if len(text) <= _NOTE_LIMIT else text[: _NOTE_LIMIT - 3] + "..."


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    text = lines[0].split(". ")[0].strip() if lines else ""
    if len(text) > _LINE_LIMIT:
        text = text[: _LINE_LIMIT - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
