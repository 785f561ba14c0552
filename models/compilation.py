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
from skl2onnx.common.data_types import FloatTensorType
from sklearn.neighbors._base import KNeighborsMixin

from models.estimators import EstimatorInfo, Label, Sample

# onnxruntime is not fork-safe (a child forked after importing it hangs at exit), so
# it is imported where a session is created: never in the process that forks the workers.
if TYPE_CHECKING:
    import onnxruntime

INPUT_NAME = "input"
# Estimators whose ONNX answers can differ from scikit-learn's in ways a parity check on sample
# rows would not catch, with the reason in words.
NOT_COMPILED: dict[type, str] = {
    KNeighborsMixin: "ONNX computes neighbour distances in float32, so on tied distances it can "
    "pick other neighbours than scikit-learn (probabilities then differ by 1/k)",
}
# ONNX computes in float32 where scikit-learn uses float64: a regression output passes when
# |onnx - sklearn| <= PARITY_ABS_TOL + PARITY_REL_TOL * |sklearn| on every sample row.
# Classifiers must predict identical labels, with probabilities within PARITY_ABS_TOL.
PARITY_ABS_TOL = 1e-3
PARITY_REL_TOL = 1e-4
_NOTE_LIMIT = 400
_LINE_LIMIT = 160


@dataclass(frozen=True)
class Compiled:
    """ONNX bytes when conversion and parity succeeded (else None), and the reason either way."""

    onnx: bytes | None
    note: str
    max_abs_error: float | None


def compile_onnx(estimator: Any, info: EstimatorInfo, sample: Sample) -> Compiled:
    """Convert with skl2onnx and compare against scikit-learn's answers on the sample rows."""
    if info.task == "classification" and sample.probabilities is None:
        # skl2onnx would emit decision scores where probabilities are expected.
        return Compiled(None, "classifier has no predict_proba; served with scikit-learn", None)
    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    for kind, reason in NOT_COMPILED.items():
        if isinstance(final, kind):
            return Compiled(
                None, f"{type(final).__name__}: {reason}; served with scikit-learn", None
            )
    options = {id(estimator): {"zipmap": False}} if info.task == "classification" else None
    try:
        with warnings.catch_warnings():
            # Deprecation notices scikit-learn raises while skl2onnx reads an estimator's
            # attributes are not conversion failures.
            warnings.simplefilter("ignore")
            model = to_onnx(
                estimator,
                initial_types=[(INPUT_NAME, FloatTensorType([None, len(info.features)]))],
                options=options,
            )
        data: bytes = model.SerializeToString()
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
        return Compiled(None, f"onnxruntime cannot run the converted model: {_brief(exc)}", None)
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


def run_session(
    session: onnxruntime.InferenceSession, rows: NDArray[np.float64]
) -> tuple[NDArray[Any], NDArray[Any] | None]:
    """Run rows through a converted model: (labels or values, probabilities or None)."""
    outputs = session.run(None, {INPUT_NAME: rows.astype(np.float32)})
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
    worst = float(np.max(error)) if error.size else 0.0
    allowed = PARITY_ABS_TOL + PARITY_REL_TOL * np.abs(expected)
    if not np.all(np.isfinite(got)) or not np.all(error <= allowed):
        return Compiled(
            None,
            f"ONNX parity failed on {len(expected)} sample rows: max abs error {worst:.3g} "
            f"exceeds abs {PARITY_ABS_TOL} + rel {PARITY_REL_TOL}; served with scikit-learn",
            worst if np.isfinite(worst) else None,
        )
    return Compiled(
        data,
        f"ONNX parity ok on {len(expected)} sample rows: max abs error {worst:.3g} "
        f"(tolerance abs {PARITY_ABS_TOL} + rel {PARITY_REL_TOL})",
        worst,
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
    if mismatched or not np.isfinite(worst) or worst > PARITY_ABS_TOL:
        return Compiled(
            None,
            f"ONNX parity failed on {n} sample rows: {mismatched} labels differ, max probability "
            f"abs error {worst:.3g} (tolerance {PARITY_ABS_TOL}); served with scikit-learn",
            worst if np.isfinite(worst) else None,
        )
    return Compiled(
        data,
        f"ONNX parity ok on {n} sample rows: labels identical, max probability abs error "
        f"{worst:.3g} (tolerance {PARITY_ABS_TOL})",
        worst,
    )


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
