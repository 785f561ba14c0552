"""LightGBM (through its scikit-learn API) to ONNX in float64.

onnxmltools, the converter on the package index, writes LightGBM's thresholds and leaf values as
float32 attributes of the legacy tree operators, whose output is float32: its answers differ from
LightGBM's by up to 1e-4 relative, which the parity tolerance refuses. This converter reads the
booster's own dump and writes one ai.onnx.ml TreeEnsemble in double, with LightGBM's link
functions, so the answers are LightGBM's to what float64 allows.

Covered: numeric splits with LightGBM's missing-value rules (NaN follows `default_left` where the
tree learnt missing values, and reads as 0.0 where it did not); regression objectives with the
identity or log link; binary (sigmoid) and multiclass (softmax) classification. Refused, so the
version is served by LightGBM itself: categorical splits, zero-as-missing, random-forest mode.

XGBoost is not converted: its own predict computes in float32, and no converter reproduces that
arithmetic to within the parity tolerance (see models.compilation.NOT_COMPILED).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx import TensorProto

from models.onnx_converters import (
    BRANCH_LEQ,
    Ensemble,
    classifier_output,
    emit_ensemble,
    node_adder,
    require_double,
    variable_name,
)

_IDENTITY = ("regression", "regression_l1", "huber", "fair", "quantile", "mape")
_LOG_LINK = ("poisson", "gamma", "tweedie")


def _lightgbm_ensemble(dump: dict[str, Any]) -> Ensemble:
    n_targets = int(dump["num_tree_per_iteration"])
    ensemble = Ensemble(n_targets=n_targets)
    for t, tree in enumerate(dump["tree_info"]):
        target = t % n_targets
        nodes: list[dict[str, Any]] = []
        left: list[int] = []
        right: list[int] = []
        pending = [tree["tree_structure"]]
        # Number the nodes depth-first; children are filled in once they have numbers.
        index: dict[int, int] = {}
        while pending:
            node = pending.pop()
            index[id(node)] = len(nodes)
            nodes.append(node)
            left.append(-1)
            right.append(-1)
            if "leaf_value" not in node:
                pending.extend([node["right_child"], node["left_child"]])
        for i, node in enumerate(nodes):
            if "leaf_value" not in node:
                left[i] = index[id(node["left_child"])]
                right[i] = index[id(node["right_child"])]
        is_leaf = np.array([n.get("leaf_value") is not None for n in nodes])

        def split(i: int, nodes: list[dict[str, Any]] = nodes) -> tuple[Any, ...]:
            node = nodes[i]
            if node["decision_type"] != "<=":
                raise NotImplementedError("LightGBM's categorical splits are not converted")
            if node["missing_type"] == "Zero":
                raise NotImplementedError("LightGBM's zero_as_missing is not converted")
            threshold = float(node["threshold"])
            # missing_type NaN: a missing value follows default_left; None: LightGBM reads it
            # as 0.0, so it goes left exactly when 0.0 <= threshold.
            go_left = (
                bool(node["default_left"]) if node["missing_type"] == "NaN" else threshold >= 0.0
            )
            return int(node["split_feature"]), BRANCH_LEQ, threshold, None, go_left

        def leaf(
            i: int, nodes: list[dict[str, Any]] = nodes, target: int = target
        ) -> tuple[int, float]:
            return target, float(nodes[i]["leaf_value"])

        ensemble.add_tree(np.array(left), np.array(right), is_leaf, split, leaf)
    return ensemble


def convert_lightgbm(scope: Any, operator: Any, container: Any) -> None:
    """LGBMRegressor or LGBMClassifier as one double TreeEnsemble and its link function."""
    model = operator.raw_operator
    require_double(operator)
    dump = model.booster_.dump_model()
    if dump.get("average_output"):
        raise NotImplementedError("LightGBM's random-forest mode is not converted")
    objective = str(dump["objective"]).split()[0]
    source = str(operator.inputs[0].full_name)
    raw = emit_ensemble(scope, container, _lightgbm_ensemble(dump), source)
    ops = node_adder(scope, container)
    if objective in _IDENTITY or objective in _LOG_LINK:
        out = ops("Exp", [raw]) if objective in _LOG_LINK else raw
        container.add_node("Identity", [out], [operator.outputs[0].full_name])
        return
    if objective == "binary":
        words = str(dump["objective"])
        coefficient = float(words.split("sigmoid:")[1].split()[0]) if "sigmoid:" in words else 1.0
        # LightGBM's own: 1 / (1 + exp(-sigmoid * raw)).
        scaled = ops("Mul", [raw, _constant(scope, container, -coefficient)])
        one = _constant(scope, container, 1.0)
        positive = ops("Div", [one, ops("Add", [one, ops("Exp", [scaled])])])
        probabilities = ops("Concat", [ops("Sub", [one, positive]), positive], axis=1)
    elif objective in ("multiclass", "softmax"):
        probabilities = ops("Softmax", [raw], axis=1)
    else:
        raise NotImplementedError(f"LightGBM's {objective!r} objective is not converted")
    classifier_output(scope, container, operator, model, probabilities)


def _constant(scope: Any, container: Any, value: float) -> str:
    name = variable_name(scope, "constant")
    container.add_initializer(name, TensorProto.DOUBLE, [], [value])
    return name


def register_lightgbm() -> None:
    """Register the converter with skl2onnx for LightGBM's scikit-learn classes."""
    from lightgbm import LGBMClassifier, LGBMRegressor
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )

    from models.onnx_converters import double_probabilities

    update_registered_converter(
        LGBMRegressor,
        "LightGbmLGBMRegressor",
        calculate_linear_regressor_output_shapes,
        convert_lightgbm,
    )
    update_registered_converter(
        LGBMClassifier,
        "LightGbmLGBMClassifier",
        double_probabilities(calculate_linear_classifier_output_shapes),
        convert_lightgbm,
        options={"zipmap": [True, False, "columns"], "nocl": [True, False]},
    )
