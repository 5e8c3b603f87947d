"""tools/export.py on every estimator family beyond the linear / MLP ones test_export.py covers: tree ensembles,
gradient boosting (scikit-learn, XGBoost, LightGBM), kernel machines, calibrated classifiers; binary and
multiclass wherever classification applies. Small models: the suite runs on 2 shared cores.

XGBoost / LightGBM cases need tools/requirements-boosting.txt; without it they are skipped."""
from __future__ import annotations

import importlib.util
import re
import sys

import numpy as np
import onnx
import pandas as pd
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.datasets import load_digits, make_regression
from sklearn.ensemble import (ExtraTreesClassifier, ExtraTreesRegressor, GradientBoostingClassifier,
                              GradientBoostingRegressor, HistGradientBoostingClassifier,
                              HistGradientBoostingRegressor, RandomForestRegressor)
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.svm import SVC, SVR, LinearSVC, LinearSVR
from sklearn.tree import DecisionTreeRegressor

from test_export import (TOOLS, assert_exports, breast_cancer, diabetes, iris, run_cli, scaled,  # noqa: E402
                         wine_pipeline, wine_with_category_and_missing)

sys.path.insert(0, str(TOOLS))
from export import ExportRefused, export  # noqa: E402


# --- data beyond test_export.py's -----------------------------------------------------------------------------
def breast_cancer_int():
    x, y = breast_cancer()
    return x, (y == "benign").astype(int)  # XGBoost wants classes 0..K-1


def iris_int():
    x, y = iris()
    return x, pd.Series(pd.Categorical(y).codes.astype(int))


def digits_subset():
    """10 classes on 16 of the 64 pixels (the central 4×4 block), 600 rows: multiclass with many labels."""
    d = load_digits(as_frame=True)
    cols = [f"pixel_{r}_{c}" for r in range(2, 6) for c in range(2, 6)]
    return d.data[cols].iloc[:600].reset_index(drop=True), pd.Series(d.target[:600]).reset_index(drop=True)


def regression_synthetic():
    x, y = make_regression(n_samples=300, n_features=8, n_informative=5, noise=5.0, random_state=0)
    return pd.DataFrame(x, columns=[f"x{i}" for i in range(8)]), pd.Series(y + 100.0)


def iris_gram():
    """A precomputed (linear) kernel matrix between the iris rows, with column names."""
    x, y = iris()
    gram = x.to_numpy() @ x.to_numpy().T
    return pd.DataFrame(gram, columns=[f"k{i}" for i in range(len(x))]), y


def bare(model):
    return Pipeline([("model", model)])


def needs(module):
    missing = [m for m in (module, "onnxmltools") if importlib.util.find_spec(m) is None]
    return pytest.mark.skipif(bool(missing), reason=f"{', '.join(missing)} not installed (tools/requirements-boosting.txt)")


def xgb(kind, **kw):
    import xgboost
    return getattr(xgboost, kind)(n_estimators=10, max_depth=3, n_jobs=1, random_state=0, **kw)


def lgbm(kind, **kw):
    import lightgbm
    return getattr(lightgbm, kind)(n_estimators=10, max_depth=3, num_leaves=7, n_jobs=1, random_state=0,
                                   verbose=-1, **kw)


def calibrated(base, **kw):
    return CalibratedClassifierCV(base, ensemble=False, **kw)


SMALL_TREES = {"n_estimators": 8, "max_depth": 4, "random_state": 0}
BOOST = {"n_estimators": 10, "max_depth": 2, "random_state": 0}
HIST = {"max_iter": 10, "max_depth": 3, "random_state": 0}

# family → (data, pipeline factory, the ONNX ops the estimator must be exported as (docs/models.md))
FAMILIES = {
    "linear_svr": (diabetes, lambda: scaled(LinearSVR(C=10.0, max_iter=20000, random_state=0)), {"LinearRegressor"}),
    "calibrated_linear_svc_binary": (breast_cancer, lambda: scaled(calibrated(LinearSVC(random_state=0))),
                                     {"LinearClassifier", "ArrayFeatureExtractor"}),
    "calibrated_linear_svc_multiclass": (wine_with_category_and_missing,
                                         lambda: wine_pipeline(calibrated(LinearSVC(random_state=0))),
                                         {"LinearClassifier", "ArrayFeatureExtractor"}),
    "decision_tree_regressor": (diabetes, lambda: bare(DecisionTreeRegressor(max_depth=5, random_state=0)),
                                {"TreeEnsembleRegressor"}),
    "random_forest_regressor": (regression_synthetic, lambda: bare(RandomForestRegressor(**SMALL_TREES)),
                                {"TreeEnsembleRegressor"}),
    "extra_trees_binary": (breast_cancer, lambda: bare(ExtraTreesClassifier(**SMALL_TREES)),
                           {"TreeEnsembleClassifier"}),
    "extra_trees_multiclass": (digits_subset, lambda: bare(ExtraTreesClassifier(**SMALL_TREES)),
                               {"TreeEnsembleClassifier"}),
    "extra_trees_regressor": (diabetes, lambda: bare(ExtraTreesRegressor(**SMALL_TREES)), {"TreeEnsembleRegressor"}),
    "gradient_boosting_binary": (breast_cancer, lambda: bare(GradientBoostingClassifier(**BOOST)),
                                 {"TreeEnsembleClassifier"}),
    "gradient_boosting_multiclass": (iris, lambda: bare(GradientBoostingClassifier(**BOOST)),
                                     {"TreeEnsembleClassifier"}),
    "gradient_boosting_regressor": (diabetes, lambda: bare(GradientBoostingRegressor(**BOOST)),
                                    {"TreeEnsembleRegressor"}),
    "hist_gradient_boosting_binary": (breast_cancer, lambda: bare(HistGradientBoostingClassifier(**HIST)),
                                      {"TreeEnsembleClassifier"}),
    "hist_gradient_boosting_multiclass": (wine_with_category_and_missing,
                                          lambda: wine_pipeline(HistGradientBoostingClassifier(**HIST)),
                                          {"TreeEnsembleClassifier"}),
    "hist_gradient_boosting_regressor": (diabetes, lambda: bare(HistGradientBoostingRegressor(**HIST)),
                                         {"TreeEnsembleRegressor"}),
    "svc_probability_binary": (breast_cancer, lambda: scaled(SVC(probability=True, random_state=0)),
                               {"SVMClassifier"}),
    "svc_probability_multiclass": (iris, lambda: scaled(SVC(probability=True, random_state=0)), {"SVMClassifier"}),
    "svr_rbf": (diabetes, lambda: scaled(SVR(C=50.0)), {"SVMRegressor"}),
    "calibrated_svc_binary": (breast_cancer, lambda: scaled(calibrated(SVC())),
                              {"SVMClassifier", "ArrayFeatureExtractor"}),
    "calibrated_svc_multiclass": (wine_with_category_and_missing, lambda: wine_pipeline(calibrated(SVC())),
                                  {"SVMClassifier", "ArrayFeatureExtractor"}),
    "calibrated_svc_ensemble_multiclass": (iris, lambda: scaled(CalibratedClassifierCV(SVC(), cv=3)),
                                           {"SVMClassifier", "ArrayFeatureExtractor"}),
}
BOOSTING = {
    "xgboost_binary": ("xgboost", breast_cancer_int, lambda: bare(xgb("XGBClassifier")), {"TreeEnsembleClassifier"}),
    "xgboost_multiclass": ("xgboost", iris_int, lambda: bare(xgb("XGBClassifier")), {"TreeEnsembleClassifier"}),
    "xgboost_regressor": ("xgboost", diabetes, lambda: bare(xgb("XGBRegressor")), {"TreeEnsembleRegressor"}),
    # first in a pipeline, LightGBM renames columns with spaces (refused below): a scaler in front
    "lightgbm_binary": ("lightgbm", breast_cancer, lambda: scaled(lgbm("LGBMClassifier")), {"TreeEnsembleClassifier"}),
    "lightgbm_multiclass": ("lightgbm", digits_subset, lambda: bare(lgbm("LGBMClassifier")),
                            {"TreeEnsembleClassifier"}),
    "lightgbm_category_missing": ("lightgbm", wine_with_category_and_missing,
                                  lambda: wine_pipeline(lgbm("LGBMClassifier")), {"TreeEnsembleClassifier"}),
    "lightgbm_regressor": ("lightgbm", regression_synthetic, lambda: bare(lgbm("LGBMRegressor")),
                           {"TreeEnsembleRegressor"}),
}
CASES = [pytest.param(load, make, ops, id=name) for name, (load, make, ops) in FAMILIES.items()] + [
    pytest.param(load, make, ops, id=name, marks=needs(module)) for name, (module, load, make, ops) in BOOSTING.items()]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.filterwarnings("ignore::FutureWarning")  # SVC(probability=True) is deprecated in scikit-learn 1.9
@pytest.mark.parametrize("load,make,ops", CASES)
def test_export_family(load, make, ops, tmp_path):
    probability_votes = _is_svc_probability(make())
    pipe, manifest = assert_exports(load, make, tmp_path, labels_from_predict=not probability_votes)
    emitted = {node.op_type for node in onnx.load(tmp_path / "model.onnx").graph.node}
    assert ops <= emitted, f"expected {ops} among {emitted}"
    if manifest["model"]["task"] == "classification":
        assert len(manifest["outputs"]["labels"]) == len(pipe[-1].classes_)
    assert ("label_rule" in manifest["model"]["card"]) == probability_votes


def _is_svc_probability(pipe):
    est = pipe[-1]
    return type(est) is SVC and est.probability is True


@pytest.mark.filterwarnings("ignore:Attribute `prob:FutureWarning")  # skl2onnx reads SVC.probA_ / probB_
def test_svc_probability_label_rule_is_explained(tmp_path):
    """SVC(probability=True).predict votes one-vs-one; inferd serves the argmax of its probabilities. On
    breast_cancer they differ on one training row: the export goes through, says so on the card and on stderr."""
    import joblib

    x, y = breast_cancer()
    with pytest.warns(FutureWarning):
        pipe = scaled(SVC(probability=True, random_state=0)).fit(x, y)
    votes = pipe.predict(x)
    by_proba = pipe[-1].classes_[np.argmax(pipe.predict_proba(x), axis=1)]
    manifest = export(pipe, x, tmp_path / "api", n_fixtures=5)
    rule = manifest["model"]["card"]["label_rule"]
    assert rule.startswith("argmax of predict_proba")
    assert f"differs on {int(np.sum(votes != by_proba))} of {len(x)} reference rows" in rule
    joblib.dump(pipe, tmp_path / "svc.joblib")
    x.to_csv(tmp_path / "train.csv", index=False)
    res = run_cli("--pipeline", tmp_path / "svc.joblib", "--reference", tmp_path / "train.csv", "--out",
                  tmp_path / "cli", "--fixtures", "5")
    assert res.returncode == 0, res.stderr
    assert "export: note: served label = argmax of predict_proba" in res.stderr


# --- refusals -------------------------------------------------------------------------------------------------
REFUSALS = {
    "linear_svc": (iris, lambda: scaled(LinearSVC()), "LinearSVC has no predict_proba"),
    "svc_precomputed": (iris_gram, lambda: Pipeline([("model", SVC(kernel="precomputed", probability=True))]),
                        "SVC(kernel='precomputed') is not supported"),
    "svr_callable_kernel": (diabetes, lambda: scaled(SVR(kernel=lambda a, b: a @ b.T)), "is not supported (kernels"),
    "calibrated_isotonic": (iris, lambda: scaled(CalibratedClassifierCV(SVC(), method="isotonic", ensemble=False)),
                            "CalibratedClassifierCV(method='isotonic') is not supported"),
    "calibrated_temperature": (iris, lambda: scaled(CalibratedClassifierCV(SVC(), method="temperature",
                                                                           ensemble=False)),
                               "CalibratedClassifierCV(method='temperature') is not supported"),
    "calibrated_unsupported_base": (iris, lambda: scaled(calibrated(KNeighborsClassifier())),
                                    "CalibratedClassifierCV around KNeighborsClassifier is not supported"),
    "multi_target_forest": (lambda: (diabetes()[0], pd.DataFrame({"a": diabetes()[1], "b": -diabetes()[1]})),
                            lambda: bare(RandomForestRegressor(n_estimators=3, max_depth=3, random_state=0)),
                            "several regression targets"),
}


@needs("lightgbm")
def test_refusal_lightgbm_renamed_columns(tmp_path):
    x, y = breast_cancer()
    pipe = bare(lgbm("LGBMClassifier")).fit(x, y)
    with pytest.raises(ExportRefused, match="LightGBM reports the pipeline's input columns renamed"):
        export(pipe, x, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("case", list(REFUSALS))
def test_refusal(case, tmp_path):
    load, make, reason = REFUSALS[case]
    x, y = load()
    pipe = make().fit(x, y)
    with pytest.raises(ExportRefused, match=re.escape(reason)) as err:
        export(pipe, x, tmp_path / "out")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists(), "nothing may be written on refusal"


# --- the HistGradientBoosting workaround --------------------------------------------------------------------
def test_hist_gradient_boosting_workaround_is_scoped(tmp_path):
    """The converters are wrapped only while export converts (and restored after), and the exported trees
    carry the missing-value tracks as plain 0/1 integers."""
    from skl2onnx.common._registration import _converter_pool

    aliases = ("SklearnHistGradientBoostingClassifier", "SklearnHistGradientBoostingRegressor")
    before = {a: _converter_pool[a] for a in aliases}
    x, y = iris()
    export(bare(HistGradientBoostingClassifier(**HIST)).fit(x, y), x, tmp_path, n_fixtures=3)
    assert {a: _converter_pool[a] for a in aliases} == before
    node = next(n for n in onnx.load(tmp_path / "model.onnx").graph.node if n.op_type == "TreeEnsembleClassifier")
    tracks = next(a for a in node.attribute if a.name == "nodes_missing_value_tracks_true")
    assert set(tracks.ints) <= {0, 1}


@needs("xgboost")
def test_xgboost_feature_names_workaround_leaves_the_model_alone(tmp_path):
    """An XGB estimator first in the pipeline has DataFrame column names in its booster, which onnxmltools cannot
    read: a copy without them is converted, the user's booster keeps its names."""
    x, y = breast_cancer_int()
    pipe = bare(xgb("XGBClassifier")).fit(x, y)
    assert pipe[-1].get_booster().feature_names == list(x.columns)
    export(pipe, x, tmp_path, n_fixtures=3)
    assert pipe[-1].get_booster().feature_names == list(x.columns)
