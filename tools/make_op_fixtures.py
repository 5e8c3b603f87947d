"""Writes the ONNX-ML op fixtures under tests/data/ops/<case>/ (model.onnx + expected.json).

    python tools/make_op_fixtures.py [--out tests/data/ops] [--only CASE ...]

Each case trains a small model on a dataset bundled with scikit-learn (no download), exports the bare estimator
(skl2onnx, or onnxmltools for XGBoost / LightGBM; zipmap off, float32 input "input", batch dims named "N"),
sometimes edits the exported node to reach a code path no exporter emits (AVERAGE / MAX aggregation,
BRANCH_GTE), and records what onnxruntime (one thread) answers on ~50 rows. tests/ops.rs holds inferd to those
answers. expected.json: {"output": "probabilities" | "variable", "rows": [[...]], "expected": [[...]]}; a
missing value (NaN) is written as null.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import warnings

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from export import name_batch_dimension, one_opset_per_domain  # noqa: E402

N_ROWS = 50
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
MLTOOLS_OPSET = 15  # onnxmltools 1.16 converters stop there

warnings.filterwarnings("ignore")


def _patch_skl2onnx():
    """skl2onnx 1.20 passes numpy booleans into integer-list attributes (HistGradientBoosting's missing-value
    tracks under scikit-learn 1.9); cast them to int when the node is added."""
    import skl2onnx.common._container as container

    if getattr(container.ModelComponentContainer.add_node, "_inferd_patched", False):
        return
    original = container.ModelComponentContainer.add_node

    def add_node(self, op_type, inputs, outputs, op_domain="", op_version=None, name=None, **attrs):
        for key, value in list(attrs.items()):
            if isinstance(value, (list, tuple, np.ndarray)) and len(value) and any(
                    isinstance(x, (bool, np.bool_)) for x in value):
                attrs[key] = [int(x) for x in value]
        return original(self, op_type, inputs, outputs, op_domain=op_domain, op_version=op_version, name=name,
                        **attrs)

    add_node._inferd_patched = True
    container.ModelComponentContainer.add_node = add_node


# ---------------------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------------------
def dataset(name: str, scale=False, nan_fraction=0.0, labels=None):
    from sklearn import datasets
    from sklearn.preprocessing import StandardScaler

    x, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    x = np.asarray(x, dtype=np.float64)
    if scale:
        x = StandardScaler().fit_transform(x)
    if nan_fraction:
        rng = np.random.default_rng(1)
        x = x.copy()
        x[rng.random(x.shape) < nan_fraction] = np.nan
    if labels is not None:
        y = np.asarray(labels)[y]
    x = x.astype(np.float32)
    return x, y


def test_rows(x: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(0)
    idx = np.sort(rng.choice(len(x), min(N_ROWS, len(x)), replace=False))
    return x[idx]


# ---------------------------------------------------------------------------------------------------------
# export
# ---------------------------------------------------------------------------------------------------------
def finish(onx, name: str):
    """Batch dims named "N", one opset entry per domain, checked."""
    import onnx

    onx.graph.name = name
    name_batch_dimension(onx)
    one_opset_per_domain(onx)
    onnx.checker.check_model(onx, full_check=True)
    return onx


def skl(est, n_columns: int, classifier: bool):
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    _patch_skl2onnx()
    options = {id(est): {"zipmap": False}} if classifier else None
    return convert_sklearn(est, initial_types=[("input", FloatTensorType([None, n_columns]))], options=options,
                           target_opset=TARGET_OPSET)


def mltools(est, n_columns: int, kind: str):
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    types = [("input", FloatTensorType([None, n_columns]))]
    if kind == "xgboost":
        return onnxmltools.convert_xgboost(est, initial_types=types, target_opset=MLTOOLS_OPSET)
    return onnxmltools.convert_lightgbm(est, initial_types=types, target_opset=MLTOOLS_OPSET, zipmap=False)


def run_ort(onx, rows: np.ndarray, output: str) -> np.ndarray:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(onx.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    out = np.asarray(sess.run([output], {"input": rows.astype(np.float32)})[0], dtype=np.float32)
    return out.reshape(len(rows), -1)


def node_of(onx, op_type: str):
    nodes = [n for n in onx.graph.node if n.op_type == op_type]
    assert len(nodes) == 1, f"expected one {op_type}, found {len(nodes)}"
    return nodes[0]


def set_attr(node, name: str, value):
    from onnx import helper

    for i, a in enumerate(node.attribute):
        if a.name == name:
            del node.attribute[i]
            break
    node.attribute.append(helper.make_attribute(name, value))


def get_attr(node, name: str):
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return None


# ---------------------------------------------------------------------------------------------------------
# edits reaching paths no exporter takes
# ---------------------------------------------------------------------------------------------------------
def as_average(onx):
    """RandomForestRegressor's SUM of pre-divided weights -> AVERAGE of whole weights (same function)."""
    node = node_of(onx, "TreeEnsembleRegressor")
    n_trees = len(set(get_attr(node, "nodes_treeids")))
    set_attr(node, "target_weights", [float(w) * n_trees for w in get_attr(node, "target_weights")])
    set_attr(node, "aggregate_function", "AVERAGE")
    set_attr(node, "base_values", [25.0])
    return onx


def as_extremum(onx, which: str):
    node = node_of(onx, "TreeEnsembleRegressor")
    set_attr(node, "aggregate_function", which)
    # centred weights so the extremum crosses zero (tract's engine starts at 0, which must not leak in)
    weights = np.asarray(get_attr(node, "target_weights"), dtype=np.float64)
    set_attr(node, "target_weights", [float(w) for w in (weights - np.median(weights))])
    set_attr(node, "base_values", [-3.5])
    return onx


def lt_as_gte(onx, op_type: str):
    """x < v ? T : F  ==  x >= v ? F : T, and NaN's direction flips with the children."""
    node = node_of(onx, op_type)
    modes = [m.decode() if isinstance(m, bytes) else m for m in get_attr(node, "nodes_modes")]
    assert "BRANCH_LT" in modes, modes
    t, f = list(get_attr(node, "nodes_truenodeids")), list(get_attr(node, "nodes_falsenodeids"))
    n = len(modes)
    tracks = list(get_attr(node, "nodes_missing_value_tracks_true") or [0] * n)
    for i, m in enumerate(modes):
        if m == "BRANCH_LT":
            modes[i] = "BRANCH_GTE"
            t[i], f[i] = f[i], t[i]
            tracks[i] = 0 if tracks[i] else 1
    set_attr(node, "nodes_modes", modes)
    set_attr(node, "nodes_truenodeids", t)
    set_attr(node, "nodes_falsenodeids", f)
    set_attr(node, "nodes_missing_value_tracks_true", tracks)
    return onx


# ---------------------------------------------------------------------------------------------------------
# cases: name -> () -> (onnx model, output name, test rows, reference prediction for a sanity check or None)
# ---------------------------------------------------------------------------------------------------------
def _tree_clf(est, data, lib="skl"):
    x, y = data
    est.fit(x, y)
    onx = skl(est, x.shape[1], True) if lib == "skl" else mltools(est, x.shape[1], lib)
    rows = test_rows(x)
    return onx, "probabilities", rows, est.predict_proba(rows)


def _tree_reg(est, data, lib="skl"):
    x, y = data
    est.fit(x, y)
    onx = skl(est, x.shape[1], False) if lib == "skl" else mltools(est, x.shape[1], lib)
    rows = test_rows(x)
    return onx, "variable", rows, est.predict(rows)


def cases():
    import lightgbm
    import xgboost
    from sklearn import ensemble as E
    from sklearn import tree as T
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.svm import SVC, SVR

    bc = lambda **k: dataset("breast_cancer", **k)  # noqa: E731  binary, 30 features
    iris = lambda **k: dataset("iris", **k)  # noqa: E731  3 classes
    wine = lambda **k: dataset("wine", **k)  # noqa: E731  3 classes, 13 features
    dia = lambda **k: dataset("diabetes", **k)  # noqa: E731  regression, 10 features
    lgb = dict(n_estimators=4, num_leaves=6, min_child_samples=5, verbose=-1, random_state=0)
    xgb = dict(n_estimators=4, max_depth=3, random_state=0)

    def svc(est, data):
        x, y = data
        est.fit(x, y)
        rows = test_rows(x)
        return skl(est, x.shape[1], True), "probabilities", rows, est.predict_proba(rows)

    def svr(est, data):
        x, y = data
        est.fit(x, y)
        rows = test_rows(x)
        return skl(est, x.shape[1], False), "variable", rows, est.predict(rows)

    def edited(make, edit):
        def build():
            onx, output, rows, _ = make()
            return edit(onx), output, rows, None
        return build

    return {
        # TreeEnsembleRegressor
        "rf_regressor": lambda: _tree_reg(E.RandomForestRegressor(4, max_depth=4, random_state=0), dia()),
        "gb_regressor": lambda: _tree_reg(E.GradientBoostingRegressor(n_estimators=6, max_depth=3, random_state=0), dia()),
        "dt_regressor": lambda: _tree_reg(T.DecisionTreeRegressor(max_depth=5, random_state=0), dia()),
        "et_regressor": lambda: _tree_reg(E.ExtraTreesRegressor(4, max_depth=4, random_state=0), dia()),
        "hgb_regressor_nan": lambda: _tree_reg(E.HistGradientBoostingRegressor(max_iter=5, max_depth=3, random_state=0), dia(nan_fraction=0.1)),
        "xgb_regressor": lambda: _tree_reg(xgboost.XGBRegressor(**xgb), dia(), "xgboost"),
        "lgbm_regressor_nan": lambda: _tree_reg(lightgbm.LGBMRegressor(**lgb), dia(nan_fraction=0.1), "lightgbm"),
        "rf_regressor_average": edited(
            lambda: _tree_reg(E.RandomForestRegressor(4, max_depth=4, random_state=0), dia()), as_average),
        "rf_regressor_max": edited(
            lambda: _tree_reg(E.RandomForestRegressor(4, max_depth=4, random_state=0), dia()),
            lambda o: as_extremum(o, "MAX")),
        "rf_regressor_min": edited(
            lambda: _tree_reg(E.RandomForestRegressor(4, max_depth=4, random_state=0), dia()),
            lambda o: as_extremum(o, "MIN")),
        "xgb_regressor_gte_nan": edited(
            lambda: _tree_reg(xgboost.XGBRegressor(**xgb), dia(nan_fraction=0.1), "xgboost"),
            lambda o: lt_as_gte(o, "TreeEnsembleRegressor")),
        # TreeEnsembleClassifier
        "gb_binary": lambda: _tree_clf(E.GradientBoostingClassifier(n_estimators=5, max_depth=2, random_state=0), bc()),
        "gb_multiclass": lambda: _tree_clf(E.GradientBoostingClassifier(n_estimators=4, max_depth=2, random_state=0), wine()),
        "rf_binary": lambda: _tree_clf(E.RandomForestClassifier(4, max_depth=4, random_state=0), bc()),
        "rf_multiclass": lambda: _tree_clf(E.RandomForestClassifier(4, max_depth=4, random_state=0), iris()),
        "rf_multiclass_strings": lambda: _tree_clf(E.RandomForestClassifier(3, max_depth=3, random_state=0),
                                                   iris(labels=["setosa", "versicolor", "virginica"])),
        "et_binary": lambda: _tree_clf(E.ExtraTreesClassifier(4, max_depth=4, random_state=0), bc()),
        "et_multiclass": lambda: _tree_clf(E.ExtraTreesClassifier(4, max_depth=4, random_state=0), wine()),
        "dt_binary": lambda: _tree_clf(T.DecisionTreeClassifier(max_depth=4, random_state=0), bc()),
        "dt_multiclass": lambda: _tree_clf(T.DecisionTreeClassifier(max_depth=4, random_state=0), iris()),
        "hgb_binary_nan": lambda: _tree_clf(E.HistGradientBoostingClassifier(max_iter=5, max_depth=3, random_state=0), bc(nan_fraction=0.1)),
        "hgb_multiclass_nan": lambda: _tree_clf(E.HistGradientBoostingClassifier(max_iter=4, max_depth=3, random_state=0), wine(nan_fraction=0.1)),
        "xgb_binary": lambda: _tree_clf(xgboost.XGBClassifier(**xgb), bc(), "xgboost"),
        "xgb_multiclass": lambda: _tree_clf(xgboost.XGBClassifier(**xgb), iris(), "xgboost"),
        "xgb_binary_gte_nan": edited(
            lambda: _tree_clf(xgboost.XGBClassifier(**xgb), bc(nan_fraction=0.1), "xgboost"),
            lambda o: lt_as_gte(o, "TreeEnsembleClassifier")),
        "lgbm_binary_nan": lambda: _tree_clf(lightgbm.LGBMClassifier(**lgb), bc(nan_fraction=0.1), "lightgbm"),
        "lgbm_multiclass": lambda: _tree_clf(lightgbm.LGBMClassifier(**lgb), wine(), "lightgbm"),
        # SVMClassifier / SVMRegressor (scaled data)
        "svc_rbf_iris": lambda: svc(SVC(probability=True, random_state=0), iris(scale=True)),
        "svc_linear_wine": lambda: svc(SVC(kernel="linear", probability=True, random_state=0), wine(scale=True)),
        "svc_poly_breast_cancer": lambda: svc(SVC(kernel="poly", probability=True, random_state=0), bc(scale=True)),
        "svc_sigmoid_iris": lambda: svc(SVC(kernel="sigmoid", probability=True, random_state=0), iris(scale=True)),
        "svc_rbf_breast_cancer": lambda: svc(SVC(probability=True, random_state=0), bc(scale=True)),
        "svc_calibrated_wine": lambda: svc(CalibratedClassifierCV(SVC(), ensemble=False), wine(scale=True)),
        "svc_calibrated_breast_cancer": lambda: svc(CalibratedClassifierCV(SVC(), ensemble=False), bc(scale=True)),
        "svr_rbf_diabetes": lambda: svr(SVR(C=50.0), dia(scale=True)),
        "svr_linear_diabetes": lambda: svr(SVR(kernel="linear", C=10.0), dia(scale=True)),
        "svr_poly_diabetes": lambda: svr(SVR(kernel="poly", C=10.0), dia(scale=True)),
        "svr_sigmoid_diabetes": lambda: svr(SVR(kernel="sigmoid", C=1.0), dia(scale=True)),
    }


def write_case(out_dir: pathlib.Path, name: str, build) -> str:
    onx, output, rows, reference = build()
    onx = finish(onx, name)
    expected = run_ort(onx, rows, output)
    note = ""
    if reference is not None:
        ref = np.asarray(reference, dtype=np.float64).reshape(len(rows), -1)
        note = f"ort vs estimator {np.max(np.abs(expected - ref)):.2g}"
    case = out_dir / name
    case.mkdir(parents=True, exist_ok=True)
    data = onx.SerializeToString()
    (case / "model.onnx").write_bytes(data)
    doc = {
        "output": output,
        "rows": [[None if np.isnan(v) else float(v) for v in r] for r in rows],
        "expected": [[float(v) for v in r] for r in expected],
    }
    (case / "expected.json").write_text(json.dumps(doc, allow_nan=False) + "\n")
    ops = sorted({n.op_type for n in onx.graph.node})
    return f"{name}: {len(data) / 1024:.0f} KiB, {expected.shape}, ops {ops} {note}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(pathlib.Path(__file__).resolve().parent.parent / "tests/data/ops"))
    ap.add_argument("--only", nargs="*", help="case names")
    args = ap.parse_args(argv)
    out = pathlib.Path(args.out)
    all_cases = cases()
    names = args.only or list(all_cases)
    unknown = [n for n in names if n not in all_cases]
    if unknown:
        print(f"unknown cases {unknown}", file=sys.stderr)
        return 2
    for name in names:
        print(write_case(out, name, all_cases[name]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
