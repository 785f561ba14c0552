"""Model file formats: what a file is, told from its bytes, and the one way an untrusted file is
loaded (a skops file, through the allow-list below). Nothing here unpickles.

A pickle or joblib file runs code while it loads, so only an operator's file on the command line
is ever unpickled (models.registry.register_model); an upload over HTTP must be a skops file
(models.registry.register_upload). A pickle is recognised by its protocol header or its opcodes,
a joblib file by its compressed-stream magic or its numpy wrapper's name: never by loading it.
"""

from __future__ import annotations

import io
import json
import pickletools
import zipfile
from collections.abc import Iterator, Mapping
from typing import Any, Literal

import numpy as np
import skops.io
from sklearn.base import BaseEstimator
from sklearn.tree._tree import Tree

from models.errors import InvalidArtifact, UntrustedModelType

Format = Literal["skops", "pickle", "joblib", "zip", "unknown"]

# The allow-list: the only types a skops file may build, by the skops loader that builds them.
# An uploaded file holding any other node is refused before skops constructs anything.
#
# Admitted: estimators whose fitted state scikit-learn reads through bounds-checked numpy code,
# scalers, imputers and encoders (a ColumnTransformer selects and encodes columns with numpy and
# pandas indexing, which checks bounds), and decision trees, whose raw node indices check_trees
# proves in range before anything predicts. Left out on purpose: gradient boosting
# (its Cython predictor indexes its output by the stored estimators' shape), histogram gradient
# boosting (TreePredictor), neighbours (KD/ball trees), SVMs (libsvm structures), transformers
# that change the column count, and every node that names a function, method or module.
ESTIMATOR_TYPES: frozenset[str] = frozenset(
    {
        "sklearn.pipeline.Pipeline",
        "sklearn.compose._column_transformer.ColumnTransformer",
        "sklearn.impute._base.SimpleImputer",
        "sklearn.preprocessing._encoders.OneHotEncoder",
        "sklearn.preprocessing._encoders.OrdinalEncoder",
        # What a fitted ColumnTransformer keeps for "passthrough": the identity. A function
        # for it to call could only come from a FunctionNode, which no allow-list admits.
        "sklearn.preprocessing._function_transformer.FunctionTransformer",
        "sklearn.preprocessing._data.StandardScaler",
        "sklearn.preprocessing._data.MinMaxScaler",
        "sklearn.preprocessing._data.MaxAbsScaler",
        "sklearn.preprocessing._data.RobustScaler",
        "sklearn.preprocessing._label.LabelBinarizer",
        "sklearn.linear_model._base.LinearRegression",
        "sklearn.linear_model._ridge.Ridge",
        "sklearn.linear_model._ridge.RidgeClassifier",
        "sklearn.linear_model._coordinate_descent.Lasso",
        "sklearn.linear_model._coordinate_descent.ElasticNet",
        "sklearn.linear_model._logistic.LogisticRegression",
        "sklearn.tree._classes.DecisionTreeRegressor",
        "sklearn.tree._classes.DecisionTreeClassifier",
        "sklearn.tree._classes.ExtraTreeRegressor",
        "sklearn.tree._classes.ExtraTreeClassifier",
        "sklearn.ensemble._forest.RandomForestRegressor",
        "sklearn.ensemble._forest.RandomForestClassifier",
        "sklearn.ensemble._forest.ExtraTreesRegressor",
        "sklearn.ensemble._forest.ExtraTreesClassifier",
    }
)
TRUSTED_NODES: Mapping[str, frozenset[str]] = {
    "ObjectNode": ESTIMATOR_TYPES,
    "TreeNode": frozenset({"sklearn.tree._tree.Tree"}),
    # Arrays are read with numpy.load(allow_pickle=False); object arrays are lists of nodes.
    "NdArrayNode": frozenset(
        {
            "numpy.ndarray",
            "numpy.float64",
            "numpy.float32",
            "numpy.int64",
            "numpy.int32",
            "numpy.bool",
        }
    ),
    "DictNode": frozenset({"builtins.dict"}),
    "ListNode": frozenset({"builtins.list"}),
    "TupleNode": frozenset({"builtins.tuple"}),
    "JsonNode": frozenset({"builtins.str"}),  # any JSON value; skops names them all str
    # The key types of a dict, and an encoder's output dtype parameter.
    "TypeNode": frozenset(
        {"builtins.str", "builtins.int", "numpy.float64", "numpy.float32", "numpy.int64"}
    ),
    "DTypeNode": frozenset({"numpy.dtype"}),  # a dtype built from its name
    "SliceNode": frozenset({"builtins.slice"}),  # a ColumnTransformer's output column ranges
}
TRUSTED_TYPES: frozenset[str] = frozenset().union(*TRUSTED_NODES.values())
# A CachedNode is a second reference to an object already built from a node checked here.
_REFERENCE_LOADER = "CachedNode"

# A skops file is a zip: bound what it may unpack to, whatever its size on the wire.
MAX_UNPACKED_BYTES = 512 * 1024 * 1024
MAX_MEMBERS = 100_000

_ZIP_MAGIC = b"PK\x03\x04"
# What joblib writes when asked to compress (gzip, bz2, xz, lzma, lz4, its old "ZF" header);
# zlib is told by its header checksum. The stream is never decompressed here.
_COMPRESSED_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"\x5d\x00\x00", b"\x04\x22\x4d\x18")
_JOBLIB_ZFILE = b"ZF0x"
_JOBLIB_WRAPPER = b"joblib.numpy_pickle"


def sniff_format(data: bytes) -> Format:
    """What the bytes are, from their content alone: nothing is unpickled or decompressed."""
    if data.startswith(_ZIP_MAGIC):
        return "skops" if _zip_names(data) & {"schema.json"} else "zip"
    if len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5:
        # Protocol 2+ header; joblib's own pickles name the wrapper of their numpy arrays.
        return "joblib" if _JOBLIB_WRAPPER in data else "pickle"
    if _is_opcode_stream(data):
        return "pickle"  # protocol 0 or 1: no header, but opcodes through to STOP
    if data.startswith(_COMPRESSED_MAGIC) or data.startswith(_JOBLIB_ZFILE) or _is_zlib(data):
        return "joblib"
    return "unknown"


def load_skops(data: bytes) -> Any:
    """The object in a skops file, built only once every node in it is on the allow-list."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            _check_unpacked_size(archive)
            schema = json.loads(archive.read("schema.json"))
    except (zipfile.BadZipFile, KeyError, ValueError, RecursionError):
        raise InvalidArtifact("the file is not a readable skops file") from None
    refused = sorted(_refused_nodes(schema))
    if refused:
        shown = ", ".join(refused[:10]) + (f", ... ({len(refused)} in all)" if refused[10:] else "")
        raise UntrustedModelType(
            f"the skops file holds types outside the allow-list: {shown}",
            # The names come from the file: said to the uploader only as a count.
            public=f"the skops file holds {len(refused)} type(s) outside the allow-list of "
            "supported scikit-learn models (see `predgate models register` for their names)",
        )
    try:
        # An explicit list, never trusted=True: skops audits the tree again before building.
        return skops.io.loads(data, trusted=sorted(TRUSTED_TYPES))
    except Exception as exc:
        raise InvalidArtifact(f"the skops file cannot be loaded ({type(exc).__name__})") from None


def check_trees(model: Any, n_features: int) -> None:
    """InvalidArtifact unless every decision tree in the model is well formed for its inputs
    (`n_features`: the model's input columns)."""
    # scikit-learn walks a tree's node arrays in C without bounds checks: a crafted child or
    # feature index would read outside its buffers at the first predict, so prove them first.
    width = _tree_input_width(model, n_features)
    for tree in _trees(model):
        _check_tree(tree, width)


def _tree_input_width(model: Any, n_features: int) -> int:
    # Scalers and imputers keep the column count; a ColumnTransformer's encoders change it. The
    # final step's n_features_in_ is what scikit-learn checks every input against before the
    # trees see it (a file claiming another width fails that check), so it bounds the indices.
    steps = getattr(model, "steps", None)
    if not steps:
        return n_features
    final = steps[-1][1]
    width = getattr(final, "n_features_in_", n_features)
    if not isinstance(width, (int, np.integer)) or not 0 < int(width) <= 1_000_000:
        raise InvalidArtifact("the model's final step declares an impossible input width")
    return int(width)


def _check_tree(tree: Tree, n_features: int) -> None:
    count = int(tree.node_count)
    # node_count is read from the file; the arrays are only as long as the capacity.
    if count < 1 or count != int(tree.capacity):
        raise InvalidArtifact("a decision tree's node count does not match its node array")
    if int(tree.n_features) != n_features:
        raise InvalidArtifact(
            f"a decision tree reads {int(tree.n_features)} features, not {n_features}"
        )
    left = np.asarray(tree.children_left, dtype=np.int64)
    right = np.asarray(tree.children_right, dtype=np.int64)
    feature = np.asarray(tree.feature, dtype=np.int64)
    index = np.arange(count)
    leaf = left == -1
    inner = ~leaf
    # Children after their parent (so every walk ends), each node but the root a child once.
    children = np.concatenate([left[inner], right[inner]])
    if (
        np.any(right[leaf] != -1)
        or np.any(left[inner] <= index[inner])
        or np.any(right[inner] <= index[inner])
        or not np.array_equal(np.sort(children), np.arange(1, count))
        or np.any((feature[inner] < 0) | (feature[inner] >= n_features))
    ):
        raise InvalidArtifact("a decision tree has node or feature indices out of range")
    # decision_path sizes its buffer by max_depth: the recorded depth must not be too small.
    depth, frontier = 0, np.array([0])
    while True:
        frontier = frontier[inner[frontier]]
        if frontier.size == 0:
            break
        frontier = np.concatenate([left[frontier], right[frontier]])
        depth += 1
    if depth > int(tree.max_depth):
        raise InvalidArtifact("a decision tree is deeper than its recorded max_depth")


def _trees(model: Any) -> Iterator[Tree]:
    seen: set[int] = set()
    pending = [model]
    while pending:
        item = pending.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, Tree):
            yield item
        elif isinstance(item, BaseEstimator):
            pending.extend(vars(item).values())
        elif isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, (list, tuple)):
            pending.extend(item)
        elif isinstance(item, np.ndarray) and item.dtype == object:
            pending.extend(item.ravel().tolist())


def _refused_nodes(schema: Any) -> set[str]:
    # Every node skops would build is a JSON object with a __loader__; walk them all, including
    # those skops would skip as repeats of an id, so nothing escapes the check.
    refused: set[str] = set()
    pending = [schema]
    while pending:
        item = pending.pop()
        if isinstance(item, list):
            pending.extend(item)
            continue
        if not isinstance(item, dict):
            continue
        pending.extend(item.values())
        if "__loader__" not in item:
            continue
        loader = item["__loader__"]
        name = f"{item.get('__module__')}.{item.get('__class__')}"
        allowed = (
            TRUSTED_TYPES
            if loader == _REFERENCE_LOADER
            else TRUSTED_NODES.get(loader, frozenset())
            if isinstance(loader, str)
            else frozenset()
        )
        if name not in allowed:
            refused.add(f"{name} ({str(loader)[:40]})"[:200])
    return refused


def _check_unpacked_size(archive: zipfile.ZipFile) -> None:
    members = archive.infolist()
    # zipfile stops each member at its declared size, so the declared sizes bound the reads.
    if len(members) > MAX_MEMBERS or sum(m.file_size for m in members) > MAX_UNPACKED_BYTES:
        raise InvalidArtifact(f"a skops file may unpack to at most {MAX_UNPACKED_BYTES} bytes")


def _zip_names(data: bytes) -> set[str]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return set(archive.namelist())
    except zipfile.BadZipFile:
        return set()


def _is_zlib(data: bytes) -> bool:
    # RFC 1950: deflate method 8, and the two header bytes are a multiple of 31.
    if len(data) < 2 or data[0] & 0x0F != 8 or data[0] >> 4 > 7:
        return False
    return (data[0] << 8 | data[1]) % 31 == 0


def _is_opcode_stream(data: bytes) -> bool:
    # pickletools only decodes opcodes and their arguments; it builds no object.
    if not data.endswith(b"."):
        return False
    try:
        for _opcode, _arg, _position in pickletools.genops(io.BytesIO(data)):
            pass
    except Exception:
        return False
    return True
