"""ONNX converters that compute in float64 where skl2onnx's own cannot.

skl2onnx emits tree ensembles as ai.onnx.ml TreeEnsembleRegressor/Classifier v3, whose outputs
are float32 in every runtime, and its SimpleImputer as the ml Imputer, which onnxruntime runs on
float32 only; HistGradientBoosting it cannot convert at all with the onnx release it installs
with (its node attributes mix booleans and integers), and never with categorical splits. Every
one of those would answer with float32 rounding or not be served by ONNX at all. The converters
here replace them, for the same scikit-learn classes, with graphs in double precision:

- trees, forests and boosting (scikit-learn's DecisionTree*, RandomForest*, ExtraTrees*,
  GradientBoosting*, HistGradientBoosting*) as one ai.onnx.ml TreeEnsemble (v5, double), with
  HistGradientBoosting's categorical splits as set-membership nodes and its missing-value
  directions kept;
- SimpleImputer as IsNaN/Where on numbers, and Equal/Where on strings (a missing string reaches
  the graph as MISSING_STRING, see models.features).

Each reproduces scikit-learn's own arithmetic: DecisionTree-based models compare the input cast
to float32 against float64 thresholds, as scikit-learn does; HistGradientBoosting compares in
float64. Registration happens once, in `register_converters`, before the first conversion.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from onnx import ModelProto, TensorProto, numpy_helper
from skl2onnx.common._registration import (
    _converter_pool,
    _shape_calculator_pool,
    register_converter,
    register_shape_calculator,
)
from skl2onnx.common.data_types import DoubleTensorType, Int64TensorType, StringTensorType
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.svm import SVR
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

# What a missing categorical value is fed to an ONNX graph as (a string tensor holds no NaN).
# The request schema refuses control characters in categorical values, so no real value is this.
MISSING_STRING = "\x1f"  # unit separator; not NUL, which ONNX Runtime cuts strings at
ML_DOMAIN = "ai.onnx.ml"
# TreeEnsemble (double) needs ai.onnx.ml opset 5, LabelEncoder with tensor keys opset 4, but
# skl2onnx refuses to write a model above the ml opset it was tested with (3). The nodes here are
# therefore declared at 3 to skl2onnx, and `finish_model` raises the model's ml opset import to 5
# (every other ml operator skl2onnx emits is unchanged between 3 and 5).
ML_OPSET = 5
_DECLARED_ML_OPSET = 3
TARGET_OPSET = {"": 21, ML_DOMAIN: _DECLARED_ML_OPSET}
BRANCH_LEQ, BRANCH_MEMBER = 0, 6
_registered = False
_lock = threading.Lock()


@dataclass
class Ensemble:
    """Trees in TreeEnsemble v5 form: interior nodes and leaves in separate arrays."""

    n_targets: int
    feature: list[int] = field(default_factory=list)
    split: list[float] = field(default_factory=list)
    mode: list[int] = field(default_factory=list)
    true_id: list[int] = field(default_factory=list)
    true_leaf: list[int] = field(default_factory=list)
    false_id: list[int] = field(default_factory=list)
    false_leaf: list[int] = field(default_factory=list)
    missing_true: list[int] = field(default_factory=list)
    members: list[float] = field(default_factory=list)
    roots: list[int] = field(default_factory=list)
    leaf_target: list[int] = field(default_factory=list)
    leaf_weight: list[float] = field(default_factory=list)

    def add_tree(
        self,
        left: np.ndarray,
        right: np.ndarray,
        is_leaf: np.ndarray,
        describe_split: Any,
        leaf_value: Any,
    ) -> None:
        """Append one tree given as child arrays; `describe_split(i)` -> (feature, mode, split,
        member set or None, missing goes left); `leaf_value(i)` -> (target, weight): a
        TreeEnsemble leaf feeds one target, so a classifier's tree is added once per class."""
        leaf_index: dict[int, int] = {}
        for i in np.flatnonzero(is_leaf).tolist():
            target, weight = leaf_value(i)
            leaf_index[i] = len(self.leaf_target)
            self.leaf_target.append(int(target))
            self.leaf_weight.append(float(weight))
        interior = np.flatnonzero(~is_leaf).tolist()
        if not interior:
            # A tree that is one leaf: one node whose both branches reach that leaf.
            only = leaf_index[0]
            self.roots.append(len(self.feature))
            self._node(0, BRANCH_LEQ, 0.0, None, (only, 1), (only, 1), False)
            return
        base = len(self.feature)
        node_index = {i: base + position for position, i in enumerate(interior)}

        def ref(i: int) -> tuple[int, int]:
            return (leaf_index[i], 1) if is_leaf[i] else (node_index[i], 0)

        self.roots.append(node_index[0])
        for i in interior:
            feature, mode, split, members, missing_left = describe_split(i)
            self._node(feature, mode, split, members, ref(left[i]), ref(right[i]), missing_left)

    def _node(
        self,
        feature: int,
        mode: int,
        split: float,
        members: list[float] | None,
        true: tuple[int, int],
        false: tuple[int, int],
        missing_true: bool,
    ) -> None:
        self.feature.append(int(feature))
        self.mode.append(mode)
        self.split.append(float(split))
        self.true_id.append(true[0])
        self.true_leaf.append(true[1])
        self.false_id.append(false[0])
        self.false_leaf.append(false[1])
        self.missing_true.append(int(missing_true))
        if members is not None:
            self.members.extend(members)
            self.members.append(float("nan"))


def variable_name(scope: Any, hint: str) -> str:
    return str(scope.get_unique_variable_name(hint))


def node_adder(scope: Any, container: Any) -> Any:
    """`add(op_type, inputs, **attributes)` -> the name of the node's one new output."""

    def add(op_type: str, inputs: list[str], **attributes: Any) -> str:
        output = variable_name(scope, op_type.lower())
        container.add_node(op_type, inputs, [output], **attributes)
        return output

    return add


def emit_ensemble(scope: Any, container: Any, ensemble: Ensemble, source: str) -> str:
    """Add the TreeEnsemble node; returns the name of its [N, n_targets] double output."""
    output = variable_name(scope, "tree_scores")
    attrs: dict[str, Any] = {
        "n_targets": ensemble.n_targets,
        "aggregate_function": 1,  # SUM: averages are folded into the leaf weights
        "post_transform": 0,
        "tree_roots": ensemble.roots,
        "nodes_featureids": ensemble.feature,
        "nodes_modes": numpy_helper.from_array(np.array(ensemble.mode, dtype=np.uint8)),
        "nodes_splits": numpy_helper.from_array(np.array(ensemble.split, dtype=np.float64)),
        "nodes_truenodeids": ensemble.true_id,
        "nodes_trueleafs": ensemble.true_leaf,
        "nodes_falsenodeids": ensemble.false_id,
        "nodes_falseleafs": ensemble.false_leaf,
        "nodes_missing_value_tracks_true": ensemble.missing_true,
        "leaf_targetids": ensemble.leaf_target,
        "leaf_weights": numpy_helper.from_array(np.array(ensemble.leaf_weight, dtype=np.float64)),
    }
    if ensemble.members:
        attrs["membership_values"] = numpy_helper.from_array(
            np.array(ensemble.members, dtype=np.float64)
        )
    container.add_node(
        "TreeEnsemble",
        [source],
        [output],
        op_domain=ML_DOMAIN,
        op_version=_DECLARED_ML_OPSET,
        name=scope.get_unique_operator_name("TreeEnsemble"),
        **attrs,
    )
    return output


def _double_input(scope: Any, container: Any, operator: Any, *, as_float32: bool) -> str:
    """The operator's input as one [N, F] double tensor (cast through float32 when asked)."""
    source = str(operator.inputs[0].full_name)
    if len(operator.inputs) > 1:
        raise NotImplementedError("tree models take one numeric input matrix here")
    if not as_float32:
        return source
    as_float = variable_name(scope, "as_float32")
    container.add_node("Cast", [source], [as_float], to=TensorProto.FLOAT)
    back = variable_name(scope, "as_float64")
    container.add_node("Cast", [as_float], [back], to=TensorProto.DOUBLE)
    return back


# ----- scikit-learn trees (DecisionTree, RandomForest, ExtraTrees, GradientBoosting) -----


def _sklearn_tree(
    tree: Any, *, target: int, column: int, scale: float, normalise: bool
) -> tuple[Any, ...]:
    """One scikit-learn tree_ as add_tree's arguments, its leaves feeding `target` with
    `scale` times value[:, column] (of the leaf's class fractions when `normalise`)."""
    left = np.asarray(tree.children_left)
    right = np.asarray(tree.children_right)
    is_leaf = left == -1
    feature = np.asarray(tree.feature)
    threshold = np.asarray(tree.threshold, dtype=np.float64)
    missing = getattr(tree, "missing_go_to_left", None)
    values = np.asarray(tree.value, dtype=np.float64)[:, 0, :]
    if normalise:
        totals = values.sum(axis=1, keepdims=True)
        values = values / np.where(totals == 0, 1.0, totals)

    def split(i: int) -> tuple[int, int, float, None, bool]:
        go_left = bool(missing[i]) if missing is not None else False
        return int(feature[i]), BRANCH_LEQ, float(threshold[i]), None, go_left

    def leaf(i: int) -> tuple[int, float]:
        return target, float(values[i, column]) * scale

    return left, right, is_leaf, split, leaf


def _forest_ensemble(op: Any, n_targets: int, *, classifier: bool) -> Ensemble:
    # scikit-learn averages the trees' answers (each tree's class fractions, for classifiers);
    # TreeEnsemble sums, so each leaf carries its value divided by the number of trees.
    members = list(op.estimators_) if hasattr(op, "estimators_") else [op]
    ensemble = Ensemble(n_targets=n_targets)
    for member in members:
        for k in range(n_targets):
            ensemble.add_tree(
                *_sklearn_tree(
                    member.tree_, target=k, column=k, scale=1.0 / len(members), normalise=classifier
                )
            )
    return ensemble


def _boosting_ensemble(op: Any) -> tuple[Ensemble, np.ndarray]:
    stages = np.asarray(op.estimators_)  # shape (n_stages, K): one regression tree per class
    n_targets = stages.shape[1]
    ensemble = Ensemble(n_targets=n_targets)
    for stage in stages:
        for k, tree in enumerate(stage):
            ensemble.add_tree(
                *_sklearn_tree(
                    tree.tree_, target=k, column=0, scale=op.learning_rate, normalise=False
                )
            )
    n_features = int(op.n_features_in_)
    baseline = np.asarray(op._raw_predict_init(np.zeros((1, n_features))), dtype=np.float64)
    return ensemble, baseline.reshape(1, n_targets)


# ----- HistGradientBoosting -----


def _hist_ensemble(op: Any) -> tuple[Ensemble, np.ndarray]:
    remap = _hist_feature_order(op)
    n_targets = int(op.n_trees_per_iteration_)
    ensemble = Ensemble(n_targets=n_targets)
    for iteration in op._predictors:
        for k, predictor in enumerate(iteration):
            nodes = predictor.nodes
            bitsets = predictor.raw_left_cat_bitsets

            def split(
                i: int, nodes: Any = nodes, bitsets: Any = bitsets
            ) -> tuple[int, int, float, list[float] | None, bool]:
                node = nodes[i]
                feature = remap[int(node["feature_idx"])]
                go_left = bool(node["missing_go_to_left"])
                if node["is_categorical"]:
                    left_set = _bitset_members(bitsets[int(node["bitset_idx"])])
                    return feature, BRANCH_MEMBER, 0.0, left_set, go_left
                return feature, BRANCH_LEQ, float(node["num_threshold"]), None, go_left

            def leaf(i: int, nodes: Any = nodes, k: int = k) -> tuple[int, float]:
                return k, float(nodes[i]["value"])

            ensemble.add_tree(
                np.asarray(nodes["left"], dtype=np.int64),
                np.asarray(nodes["right"], dtype=np.int64),
                np.asarray(nodes["is_leaf"], dtype=bool),
                split,
                leaf,
            )
    baseline = np.asarray(op._baseline_prediction, dtype=np.float64).reshape(1, n_targets)
    return ensemble, baseline


def _hist_feature_order(op: Any) -> list[int]:
    # With categorical features, HistGradientBoosting's preprocessor puts the categorical
    # columns first; its trees index that order. Map each back to the input column.
    n = int(op.n_features_in_)
    pre = getattr(op, "_preprocessor", None)
    if pre is None:
        return list(range(n))
    order: list[int] = []
    for name in ("encoder", "numerical"):
        order.extend(np.flatnonzero(_transformer_mask(pre, name, n)).tolist())
    return order


def _transformer_mask(pre: Any, name: str, n: int) -> np.ndarray:
    for transformer_name, _, columns in pre.transformers_:
        if transformer_name == name:
            mask = np.zeros(n, dtype=bool)
            mask[np.asarray(columns)] = True
            return mask
    return np.zeros(n, dtype=bool)


def _bitset_members(bitset: np.ndarray) -> list[float]:
    members: list[float] = []
    for word_index, word in enumerate(np.asarray(bitset, dtype=np.uint32).tolist()):
        for bit in range(32):
            if word >> bit & 1:
                members.append(float(word_index * 32 + bit))
    return members


def _hist_categorical_codes(scope: Any, container: Any, operator: Any, op: Any) -> str:
    """The input as one double matrix with each categorical column replaced by its category
    index (unknown or missing: NaN), as HistGradientBoosting's own OrdinalEncoder does."""
    pre = getattr(op, "_preprocessor", None)
    n = int(op.n_features_in_)
    inputs = operator.inputs
    if pre is None:
        return _double_input(scope, container, operator, as_float32=False)
    encoder = pre.named_transformers_["encoder"]
    categorical = np.flatnonzero(_transformer_mask(pre, "encoder", n)).tolist()
    categories = dict(zip(categorical, encoder.categories_, strict=True))
    columns: list[str] = []
    for j in range(n):
        column = _column(scope, container, inputs, j)
        if j in categories:
            column = _encode_categories(scope, container, column, categories[j], inputs, j)
        columns.append(column)
    matrix = variable_name(scope, "hist_input")
    container.add_node("Concat", columns, [matrix], axis=1)
    return matrix


def _column(scope: Any, container: Any, inputs: list[Any], j: int) -> str:
    if len(inputs) > 1:
        return str(inputs[j].full_name)
    index = variable_name(scope, "column_index")
    container.add_initializer(index, TensorProto.INT64, [1], [j])
    out = variable_name(scope, "column")
    container.add_node("Gather", [inputs[0].full_name, index], [out], axis=1)
    return out


def _encode_categories(
    scope: Any, container: Any, column: str, categories: np.ndarray, inputs: list[Any], j: int
) -> str:
    known = [c for c in categories.tolist() if not _is_nan(c)]
    string_input = len(inputs) > 1 and isinstance(inputs[j].type, StringTensorType)
    codes = np.arange(len(known), dtype=np.float64)
    out = variable_name(scope, "category_code")
    if string_input:
        if not all(isinstance(c, str) for c in known):
            raise NotImplementedError("categories of a text column must all be text")
        keys = numpy_helper.from_array(np.array(known, dtype=object))
    else:
        if not all(isinstance(c, (int, float)) for c in known):
            raise NotImplementedError("text categories need the column sent as text")
        keys = numpy_helper.from_array(np.array(known, dtype=np.float64))
    container.add_node(
        "LabelEncoder",
        [column],
        [out],
        op_domain=ML_DOMAIN,
        op_version=_DECLARED_ML_OPSET,
        keys_tensor=keys,
        values_tensor=numpy_helper.from_array(codes),
        default_tensor=numpy_helper.from_array(np.array([np.nan], dtype=np.float64)),
        name=scope.get_unique_operator_name("LabelEncoder"),
    )
    return out


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and value != value


# ----- outputs -----


def _add_baseline(scope: Any, container: Any, scores: str, baseline: np.ndarray) -> str:
    name = variable_name(scope, "baseline")
    container.add_initializer(
        name, TensorProto.DOUBLE, list(baseline.shape), baseline.ravel().tolist()
    )
    out = variable_name(scope, "raw_scores")
    container.add_node("Add", [scores, name], [out])
    return out


def _regression_output(
    scope: Any, container: Any, operator: Any, scores: str, *, link: str = "identity"
) -> None:
    if link == "log":
        exp = variable_name(scope, "exp")
        container.add_node("Exp", [scores], [exp])
        scores = exp
    container.add_node("Identity", [scores], [operator.outputs[0].full_name])


def classifier_output(
    scope: Any, container: Any, operator: Any, op: Any, probabilities: str
) -> None:
    classes = np.asarray(op.classes_)
    label_out, proba_out = operator.outputs[0].full_name, operator.outputs[1].full_name
    container.add_node("Identity", [probabilities], [proba_out])
    index = variable_name(scope, "argmax")
    container.add_node("ArgMax", [probabilities], [index], axis=1, keepdims=0)
    name = variable_name(scope, "classes")
    if classes.dtype.kind in "iub" or (
        classes.dtype.kind == "f" and np.all(classes == np.round(classes))
    ):
        container.add_initializer(
            name, TensorProto.INT64, [len(classes)], classes.astype(np.int64).tolist()
        )
    elif all(isinstance(c, str) for c in classes.tolist()):
        container.add_initializer(
            name, TensorProto.STRING, [len(classes)], [c.encode() for c in classes.tolist()]
        )
    else:
        raise NotImplementedError("class labels must be integers or text")
    container.add_node("Gather", [name, index], [label_out], axis=0)


def _link_probabilities(scope: Any, container: Any, raw: str, kind: str) -> str:
    if kind == "multinomial":
        out = variable_name(scope, "softmax")
        container.add_node("Softmax", [raw], [out], axis=1)
        return out
    scaled = raw
    if kind == "exponential":
        two = variable_name(scope, "two")
        container.add_initializer(two, TensorProto.DOUBLE, [], [2.0])
        scaled = variable_name(scope, "twice")
        container.add_node("Mul", [raw, two], [scaled])
    positive = variable_name(scope, "p_positive")
    container.add_node("Sigmoid", [scaled], [positive])
    one = variable_name(scope, "one")
    container.add_initializer(one, TensorProto.DOUBLE, [], [1.0])
    negative = variable_name(scope, "p_negative")
    container.add_node("Sub", [one, positive], [negative])
    out = variable_name(scope, "binary_proba")
    container.add_node("Concat", [negative, positive], [out], axis=1)
    return out


def _loss_kind(op: Any) -> str:
    loss = type(getattr(op, "_loss", None)).__name__
    kinds = {
        "HalfSquaredError": "identity",
        "AbsoluteError": "identity",
        "PinballLoss": "identity",
        "HuberLoss": "identity",
        "HalfPoissonLoss": "log",
        "HalfGammaLoss": "log",
        "HalfBinomialLoss": "binomial",
        "HalfMultinomialLoss": "multinomial",
        "ExponentialLoss": "exponential",
    }
    if loss not in kinds:
        raise NotImplementedError(f"the {loss} loss has no double-precision converter here")
    return kinds[loss]


# ----- converters -----


def require_double(operator: Any) -> None:
    # Text columns reach only HistGradientBoosting's own category encoding (per-column inputs).
    for variable in operator.inputs:
        if variable.type.__class__.__name__ not in ("DoubleTensorType", "StringTensorType"):
            raise NotImplementedError("predgate converts tree models with float64 inputs only")


def convert_forest_regressor(scope: Any, operator: Any, container: Any) -> None:
    op = operator.raw_operator
    require_double(operator)
    source = _double_input(scope, container, operator, as_float32=True)
    scores = emit_ensemble(scope, container, _forest_ensemble(op, 1, classifier=False), source)
    _regression_output(scope, container, operator, scores)


def convert_forest_classifier(scope: Any, operator: Any, container: Any) -> None:
    op = operator.raw_operator
    require_double(operator)
    if getattr(op, "n_outputs_", 1) != 1:
        raise NotImplementedError("multi-output trees are not converted")
    source = _double_input(scope, container, operator, as_float32=True)
    n_classes = len(op.classes_)
    ensemble = _forest_ensemble(op, n_classes, classifier=True)
    probabilities = emit_ensemble(scope, container, ensemble, source)
    classifier_output(scope, container, operator, op, probabilities)


def convert_boosting_regressor(scope: Any, operator: Any, container: Any) -> None:
    op = operator.raw_operator
    require_double(operator)
    source = _double_input(scope, container, operator, as_float32=True)
    ensemble, baseline = _boosting_ensemble(op)
    scores = emit_ensemble(scope, container, ensemble, source)
    _regression_output(
        scope, container, operator, _add_baseline(scope, container, scores, baseline)
    )


def convert_boosting_classifier(scope: Any, operator: Any, container: Any) -> None:
    op = operator.raw_operator
    require_double(operator)
    source = _double_input(scope, container, operator, as_float32=True)
    ensemble, baseline = _boosting_ensemble(op)
    raw = _add_baseline(
        scope, container, emit_ensemble(scope, container, ensemble, source), baseline
    )
    kind = _loss_kind(op)
    probabilities = _link_probabilities(scope, container, raw, kind)
    classifier_output(scope, container, operator, op, probabilities)


def convert_hist_regressor(scope: Any, operator: Any, container: Any) -> None:
    op = operator.raw_operator
    require_double(operator)
    kind = _loss_kind(op)
    source = _hist_categorical_codes(scope, container, operator, op)
    ensemble, baseline = _hist_ensemble(op)
    scores = emit_ensemble(scope, container, ensemble, source)
    raw = _add_baseline(scope, container, scores, baseline)
    _regression_output(scope, container, operator, raw, link=kind)


def convert_hist_classifier(scope: Any, operator: Any, container: Any) -> None:
    op = operator.raw_operator
    require_double(operator)
    kind = _loss_kind(op)
    source = _hist_categorical_codes(scope, container, operator, op)
    ensemble, baseline = _hist_ensemble(op)
    raw = _add_baseline(
        scope, container, emit_ensemble(scope, container, ensemble, source), baseline
    )
    probabilities = _link_probabilities(scope, container, raw, kind)
    classifier_output(scope, container, operator, op, probabilities)


def convert_simple_imputer(scope: Any, operator: Any, container: Any) -> None:
    """Missing numbers (NaN) or missing text (MISSING_STRING) replaced by the fitted statistics."""
    op = operator.raw_operator
    if getattr(op, "add_indicator", False):
        raise NotImplementedError("SimpleImputer(add_indicator=True) is not converted")
    statistics = np.asarray(op.statistics_)
    if len(operator.inputs) != 1:
        raise NotImplementedError("SimpleImputer takes one input here")
    source = operator.inputs[0]
    fill = variable_name(scope, "fill")
    missing = variable_name(scope, "missing")
    if isinstance(source.type, StringTensorType):
        values = [str(v) for v in statistics.tolist()]
        container.add_initializer(
            fill, TensorProto.STRING, [1, len(values)], [v.encode() for v in values]
        )
        marker = variable_name(scope, "missing_marker")
        container.add_initializer(marker, TensorProto.STRING, [], [MISSING_STRING.encode()])
        container.add_node("Equal", [source.full_name, marker], [missing])
    else:
        numbers = statistics.astype(np.float64)
        if not np.all(np.isfinite(numbers)):
            raise NotImplementedError("a column with no value at fit time has nothing to impute")
        if not (isinstance(op.missing_values, float) and op.missing_values != op.missing_values):
            raise NotImplementedError("only NaN is converted as a missing number")
        kind = (
            TensorProto.DOUBLE
            if source.type.__class__.__name__ == "DoubleTensorType"
            else TensorProto.FLOAT
        )
        container.add_initializer(fill, kind, [1, len(numbers)], numbers.tolist())
        container.add_node("IsNaN", [source.full_name], [missing])
    container.add_node("Where", [missing, fill, source.full_name], [operator.outputs[0].full_name])


def convert_svr(scope: Any, operator: Any, container: Any) -> None:
    """SVR (and NuSVR, which skl2onnx converts under the same alias): the dual coefficients
    times the kernel against each support vector, plus the intercept, in double (onnxruntime's
    SVMRegressor runs in float32 only)."""
    op = operator.raw_operator
    require_double(operator)
    if getattr(op, "_sparse", False) or op.kernel not in ("linear", "poly", "rbf", "sigmoid"):
        raise NotImplementedError(f"an SVR with a {op.kernel!r} kernel is not converted")
    add = node_adder(scope, container)
    source = str(operator.inputs[0].full_name)
    vectors = np.asarray(op.support_vectors_, dtype=np.float64)

    def constant(values: Any) -> str:
        array = np.asarray(values, dtype=np.float64)
        name = variable_name(scope, "svr_constant")
        container.add_initializer(
            name, TensorProto.DOUBLE, list(array.shape), array.ravel().tolist()
        )
        return name

    gamma = constant(float(op._gamma))
    if op.kernel == "rbf":
        # |x - v|^2 for every row and support vector, as libsvm computes it (a difference, not
        # the expansion |x|^2 + |v|^2 - 2 x.v, which loses digits).
        axis = variable_name(scope, "axis")
        container.add_initializer(axis, TensorProto.INT64, [1], [1])
        rows = add("Unsqueeze", [source, axis])  # [N, 1, F]
        squared = add("Mul", [add("Sub", [rows, constant(vectors[None, :, :])])] * 2)
        reduce_axis = variable_name(scope, "reduce_axis")
        container.add_initializer(reduce_axis, TensorProto.INT64, [1], [2])
        distance = add("ReduceSum", [squared, reduce_axis], keepdims=0)  # [N, S]
        kernel = add("Exp", [add("Mul", [distance, constant(-float(op._gamma))])])
    else:
        dot = add("MatMul", [source, constant(vectors.T)])  # [N, S]
        if op.kernel == "linear":
            kernel = dot
        else:
            scaled = add("Add", [add("Mul", [dot, gamma]), constant(float(op.coef0))])
            if op.kernel == "sigmoid":
                kernel = add("Tanh", [scaled])
            else:
                kernel = add("Pow", [scaled, constant(float(op.degree))])
    dual = np.asarray(op.dual_coef_, dtype=np.float64).T  # [S, 1]
    decision = add("Add", [add("MatMul", [kernel, constant(dual)]), constant(op.intercept_)])
    container.add_node("Identity", [decision], [operator.outputs[0].full_name])


_CONVERTERS: dict[type, Any] = {
    SVR: convert_svr,  # skl2onnx converts NuSVR under the same alias
    SimpleImputer: convert_simple_imputer,
    DecisionTreeRegressor: convert_forest_regressor,
    RandomForestRegressor: convert_forest_regressor,
    ExtraTreesRegressor: convert_forest_regressor,
    DecisionTreeClassifier: convert_forest_classifier,
    RandomForestClassifier: convert_forest_classifier,
    ExtraTreesClassifier: convert_forest_classifier,
    GradientBoostingRegressor: convert_boosting_regressor,
    GradientBoostingClassifier: convert_boosting_classifier,
    HistGradientBoostingRegressor: convert_hist_regressor,
    HistGradientBoostingClassifier: convert_hist_classifier,
}


def finish_model(model: ModelProto) -> ModelProto:
    """The converted model with its ai.onnx.ml opset import at ML_OPSET (see above)."""
    for opset in model.opset_import:
        if opset.domain == ML_DOMAIN:
            opset.version = max(opset.version, ML_OPSET)
    return model


def register_converters() -> None:
    """Put the converters above in place of skl2onnx's for the same classes (once)."""
    global _registered
    with _lock:
        if _registered:
            return
        for cls, converter in _CONVERTERS.items():
            alias = f"Sklearn{cls.__name__}"
            options = _converter_pool[alias].get_allowed_options()
            register_converter(alias, converter, overwrite=True, options=options)
        # skl2onnx's parser declares RandomForestClassifier's probabilities float32 whatever the
        # input; the converter above answers in the input's precision.
        alias = "SklearnRandomForestClassifier"
        register_shape_calculator(
            alias, double_probabilities(_shape_calculator_pool[alias]), overwrite=True
        )
        # LightGBM, through its scikit-learn API (a dependency of predgate, imported only here).
        from models.onnx_boosting import register_lightgbm

        register_lightgbm()
        # HistGradientBoosting fitted on a DataFrame with categorical columns takes one input
        # per column (text ones as strings); skl2onnx's shape calculators allow one input.
        for cls in (HistGradientBoostingRegressor, HistGradientBoostingClassifier):
            alias = f"Sklearn{cls.__name__}"
            register_shape_calculator(
                alias, _per_column_inputs(_shape_calculator_pool[alias]), overwrite=True
            )
        _registered = True


def _per_column_inputs(calculate: Any) -> Any:
    def calculate_for_columns(operator: Any) -> None:
        if len(operator.inputs) == 1:
            calculate(operator)
            return
        n = operator.inputs[0].get_first_dimension()
        op = operator.raw_operator
        if not hasattr(op, "classes_"):
            operator.outputs[0].type = DoubleTensorType([n, 1])
            return
        labels = np.asarray(op.classes_)
        label_type = StringTensorType if labels.dtype.kind in "OUS" else Int64TensorType
        operator.outputs[0].type = label_type([n])
        operator.outputs[1].type = DoubleTensorType([n, len(labels)])

    return calculate_for_columns


def double_probabilities(calculate: Any) -> Any:
    def calculate_in_input_precision(operator: Any) -> None:
        calculate(operator)
        if isinstance(operator.inputs[0].type, DoubleTensorType):
            probabilities = operator.outputs[1]
            probabilities.type = DoubleTensorType(probabilities.type.shape)

    return calculate_in_input_precision
