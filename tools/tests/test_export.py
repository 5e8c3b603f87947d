"""Tests of tools/export.py and of the committed sample models it made.  Run: pytest -q tools/tests"""
from __future__ import annotations

import json
import pathlib
import re
import subprocess
import sys
import tomllib

import joblib
import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris, load_wine
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import Lasso, LinearRegression, LogisticRegression, Ridge
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (FunctionTransformer, MinMaxScaler, OneHotEncoder, OrdinalEncoder,
                                   PolynomialFeatures, RobustScaler, StandardScaler)
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier

TOOLS = pathlib.Path(__file__).resolve().parent.parent
ROOT = TOOLS.parent
sys.path.insert(0, str(TOOLS))
from export import ExportRefused, export, is_missing, preprocess_record  # noqa: E402


# --- data ---------------------------------------------------------------------------------------------------
def iris():
    d = load_iris(as_frame=True)
    return d.data, pd.Series(np.asarray(d.target_names)[d.target])


def breast_cancer():
    d = load_breast_cancer(as_frame=True)
    return d.data, pd.Series(np.asarray(d.target_names)[d.target])


def diabetes():
    d = load_diabetes(as_frame=True, scaled=False)
    return d.data, d.target


def wine_with_category_and_missing():
    d = load_wine(as_frame=True)
    x = d.data.copy()
    x["hue"] = pd.Series(np.where(x["hue"] < 0.8, "low", np.where(x["hue"] < 1.1, "medium", "high")), dtype=object)
    rng = np.random.default_rng(1)
    for col in ("magnesium", "hue"):
        x.loc[rng.random(len(x)) < 0.1, col] = np.nan
    return x, pd.Series(d.target)  # integer classes → labels "0", "1", "2"


def wine_pipeline(model=None):
    numeric = [c for c in load_wine().feature_names if c != "hue"]
    pre = ColumnTransformer([
        ("num", Pipeline([("imp", SimpleImputer(strategy="median")), ("sc", StandardScaler())]), numeric),
        ("cat", Pipeline([("imp", SimpleImputer(strategy="most_frequent")),
                          ("oh", OneHotEncoder(handle_unknown="ignore"))]), ["hue"]),
    ])
    return Pipeline([("pre", pre), ("model", LogisticRegression(max_iter=5000) if model is None else model)])


def scaled(model):
    return Pipeline([("sc", StandardScaler()), ("model", model)])


# --- helpers ------------------------------------------------------------------------------------------------
def session(path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def load_version(folder: pathlib.Path):
    manifest = tomllib.loads((folder / "inferd.toml").read_text())
    reference = json.loads((folder / "reference.json").read_text())
    fixtures = json.loads((folder / "fixtures.json").read_text())
    return manifest, reference, fixtures


def replay_fixtures(folder: pathlib.Path):
    """Recomputes every fixture from the written files alone (manifest steps → model.onnx)."""
    manifest, _, fixtures = load_version(folder)
    sess = session(folder / "model.onnx")
    input_name = sess.get_inputs()[0].name  # "input" from export.py; export_onnx.py keeps the file's own
    tol = fixtures["tolerance"]
    for case in fixtures["cases"]:
        row = preprocess_record(manifest, case["input"]).astype(np.float32)[None, :]
        if manifest["model"]["task"] == "classification":
            probs = sess.run([manifest["outputs"]["probabilities"]], {input_name: row})[0][0]
            labels = manifest["outputs"]["labels"]
            assert case["output"]["label"] == labels[int(np.argmax(probs))]
            assert list(case["output"]["probabilities"]) == labels
            np.testing.assert_allclose(list(case["output"]["probabilities"].values()), probs, atol=tol, rtol=0)
        else:
            value = float(np.ravel(sess.run([manifest["outputs"]["value"]], {input_name: row})[0])[0])
            assert abs(case["output"]["value"] - value) <= tol * max(1.0, abs(value))


def assert_fixtures_match_pipeline(folder: pathlib.Path, pipeline, labels_from_predict=True):
    """Fixture outputs against the pipeline itself; the label against `predict`, or (labels_from_predict=False,
    for SVC(probability=True), whose `predict` votes) against the argmax of `predict_proba`."""
    manifest, _, fixtures = load_version(folder)
    names = [f["name"] for f in manifest["features"]]
    frame = pd.DataFrame([{k: (np.nan if v is None else v) for k, v in c["input"].items()} for c in fixtures["cases"]],
                         columns=names)
    for f in manifest["features"]:
        if f["type"] == "category":
            frame[f["name"]] = frame[f["name"]].astype(object)
    if manifest["model"]["task"] == "classification":
        expected = pipeline.predict_proba(frame)
        got = np.array([list(c["output"]["probabilities"].values()) for c in fixtures["cases"]])
        np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
        want = (pipeline.predict(frame) if labels_from_predict
                else np.asarray(pipeline[-1].classes_)[np.argmax(expected, axis=1)])
        assert [c["output"]["label"] for c in fixtures["cases"]] == [str(v) for v in want]
    else:
        expected = pipeline.predict(frame)
        got = np.array([c["output"]["value"] for c in fixtures["cases"]])
        assert np.all(np.abs(got - expected) <= 1e-5 * np.maximum(1.0, np.abs(expected)))


def assert_reference_rules(reference: dict, manifest: dict, frame: pd.DataFrame):
    rows = len(frame)
    assert reference["rows"] == rows
    assert list(reference["features"]) == [f["name"] for f in manifest["features"]]
    profiles = list(reference["features"].items()) + [("_prediction", reference["prediction"])]
    for name, prof in profiles:
        assert abs(sum(prof["ratios"]) + prof["missing"] - 1.0) < 1e-9, name
        if prof["kind"] == "number":
            edges = np.asarray(prof["edges"])
            assert len(prof["ratios"]) == len(edges) + 1
            assert np.all(np.diff(edges) > 0), name
            if name == "_prediction":
                continue
            x = frame[name].dropna().to_numpy(dtype=np.float64)
            assert not np.isin(edges, x).any(), f"{name}: a training value sits on an edge"
            counts = np.bincount(np.searchsorted(edges, x, side="left"), minlength=len(edges) + 1)
            np.testing.assert_allclose(prof["ratios"], counts / rows, rtol=0, atol=1e-12)
            # moving the deciles to midpoints leaves the binning of the training data unchanged
            deciles = np.unique(np.quantile(x, [i / 10 for i in range(1, 10)]))
            kept = deciles[deciles < x.max()]
            assert np.array_equal(np.searchsorted(edges, x), np.searchsorted(kept, x, side="left"))
            assert prof["missing"] == pytest.approx(frame[name].isna().mean())
        else:
            assert len(prof["ratios"]) == len(prof["categories"]) + 1


# --- each supported estimator family ------------------------------------------------------------------------
FAMILIES = {
    "logreg_binary": (breast_cancer, lambda: scaled(LogisticRegression(max_iter=5000))),
    "logreg_multiclass": (iris, lambda: scaled(LogisticRegression(max_iter=5000))),
    "logreg_category_missing": (wine_with_category_and_missing, wine_pipeline),
    "linear_regression": (diabetes, lambda: scaled(LinearRegression())),
    "ridge": (diabetes, lambda: scaled(Ridge(alpha=0.5))),
    "lasso": (diabetes, lambda: scaled(Lasso(alpha=0.1))),
    "decision_tree": (iris, lambda: Pipeline([("model", DecisionTreeClassifier(max_depth=4, random_state=0))])),
    "random_forest": (wine_with_category_and_missing,
                      lambda: wine_pipeline(RandomForestClassifier(n_estimators=15, max_depth=5, random_state=0))),
    "mlp_regressor": (diabetes, lambda: scaled(MLPRegressor(hidden_layer_sizes=(16,), max_iter=300,
                                                            learning_rate_init=0.01, random_state=0))),
    "mlp_classifier": (iris, lambda: scaled(MLPClassifier(hidden_layer_sizes=(16,), max_iter=500, random_state=0))),
}


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("family", list(FAMILIES))
def test_export_family(family, tmp_path):
    load, make = FAMILIES[family]
    assert_exports(load, make, tmp_path)


def assert_exports(load, make, tmp_path, labels_from_predict=True):
    """Fits `make()` on `load()`, exports it (the proof must pass) and checks every written file: manifest,
    reference rules, fixtures replayed in onnxruntime from the files alone and against the pipeline itself."""
    x, y = load()
    pipe = make().fit(x, y)
    frame = x.assign(target=y)
    manifest = export(pipe, frame, tmp_path, target="target", n_fixtures=25)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fixtures.json", "inferd.toml", "model.onnx",
                                                           "reference.json"]
    parsed, reference, fixtures = load_version(tmp_path)
    assert parsed == manifest
    assert [f["name"] for f in parsed["features"]] == list(x.columns)
    assert len(fixtures["cases"]) == 25
    if x.isna().any().any():
        assert any(None in c["input"].values() for c in fixtures["cases"]), "no fixture with a missing value"
    card = parsed["model"]["card"]
    assert set(card["baseline"]) == ({"accuracy", "f1"} if parsed["model"]["task"] == "classification" else {"mae"})
    replay_fixtures(tmp_path)
    assert_fixtures_match_pipeline(tmp_path, pipe, labels_from_predict)
    assert_reference_rules(reference, parsed, x)
    if parsed["model"]["task"] == "classification":
        assert parsed["outputs"]["labels"] == [str(c) for c in pipe[-1].classes_]
        assert reference["prediction"]["categories"] == parsed["outputs"]["labels"]
    return pipe, parsed


def test_manifest_reproduces_sklearn_transform_for_every_step(tmp_path):
    """Every step type, with missing values and unseen categories, against sklearn's own transform."""
    x, y = diabetes()
    x = x.copy()
    x["sex"] = np.where(x["sex"] == 1, "f", "m").astype(object)
    x["band"] = pd.Series(np.where(x["age"] < 45, "a", "b"), dtype=object)
    rng = np.random.default_rng(3)
    for col in ("bmi", "sex", "band"):
        x.loc[rng.random(len(x)) < 0.1, col] = np.nan
    pre = ColumnTransformer([
        ("imp", Pipeline([("i", SimpleImputer(strategy="mean")), ("s", StandardScaler(with_mean=False))]), ["bmi"]),
        ("mm", MinMaxScaler(feature_range=(-1, 2), clip=True), ["s1"]),
        ("rb", RobustScaler(with_centering=False), ["s2"]),
        ("clip", FunctionTransformer(np.clip, kw_args={"a_min": [3.0], "a_max": [5.0]}), ["s4"]),
        ("log", FunctionTransformer(np.log1p), ["s5"]),
        ("oh", Pipeline([("i", SimpleImputer(strategy="constant", fill_value="m")),
                         ("e", OneHotEncoder(handle_unknown="ignore", sparse_output=False))]), ["sex"]),
        ("ord", Pipeline([("i", SimpleImputer(strategy="most_frequent")),
                          ("e", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-2))]), ["band"]),
    ], remainder="passthrough")
    pipe = Pipeline([("pre", pre), ("model", Ridge())]).fit(x, y)
    manifest = export(pipe, x, tmp_path, n_fixtures=10)
    ops = [s["op"] for s in manifest["preprocess"]]
    for op in ("impute", "standard_scale", "min_max_scale", "clip", "robust_scale", "log1p", "one_hot", "ordinal",
               "passthrough"):
        assert op in ops
    assert manifest["model"]["input_order"] == ["bmi", "s1", "s2", "s4", "s5", "sex", "band", "age", "bp", "s3", "s6"]
    probe = x.iloc[:5].copy()
    probe["sex"] = ["unseen", np.nan, "f", "m", "m"]
    probe["band"] = ["unseen", np.nan, "a", "b", "b"]
    probe["s1"] = [0.0, 1000.0, 150.0, 200.0, 250.0]
    want = pipe[:-1].transform(probe)
    for i, rec in enumerate(probe.to_dict("records")):
        rec = {k: (None if is_missing(v) else v) for k, v in rec.items()}
        np.testing.assert_allclose(preprocess_record(manifest, rec), want[i], rtol=1e-12, atol=1e-12)


def test_reference_edges_on_low_cardinality_feature(tmp_path):
    rng = np.random.default_rng(0)
    x = pd.DataFrame({"k": rng.integers(0, 4, 300).astype(float), "v": rng.normal(size=300)})
    y = (x["v"] + x["k"] > 1.5).astype(int)
    pipe = scaled(LogisticRegression()).fit(x, y)
    export(pipe, x, tmp_path, n_fixtures=5)
    manifest, reference, _ = load_version(tmp_path)
    edges = reference["features"]["k"]["edges"]
    assert edges and all(e not in (0.0, 1.0, 2.0, 3.0) for e in edges)
    assert set(edges) <= {0.5, 1.5, 2.5}
    assert manifest["outputs"]["labels"] == ["0", "1"]
    assert_reference_rules(reference, manifest, x)


# --- refusals -----------------------------------------------------------------------------------------------
def _refusal_cases():
    x, y = iris()
    xc = x.assign(color=pd.Series(np.where(x.iloc[:, 0] > 5.8, "red", "blue"), dtype=object))
    xi = x.assign(code=np.where(x.iloc[:, 0] > 5.8, 1, 2))
    other = xc.assign(color=xc["color"].replace({"red": "__other__"}))
    missing = x.copy()
    missing.iloc[::10, 0] = np.nan
    cols = list(x.columns)
    return {
        "svc_without_probability": (x, y, lambda: scaled(SVC()), "SVC(probability=False) has no predict_proba"),
        "two_branches": (x, y, lambda: Pipeline([("ct", ColumnTransformer([
            ("a", StandardScaler(), cols[:2]), ("b", MinMaxScaler(), cols[1:3])])),
            ("m", LogisticRegression(max_iter=2000))]), "used in two ColumnTransformer branches"),
        "non_string_categories": (xi, y, lambda: Pipeline([("ct", ColumnTransformer([
            ("n", StandardScaler(), cols), ("c", OneHotEncoder(), ["code"])])),
            ("m", LogisticRegression(max_iter=2000))]), "non-string category"),
        "add_indicator": (missing, y, lambda: Pipeline([("i", SimpleImputer(add_indicator=True)),
                                                        ("m", LogisticRegression(max_iter=2000))]), "add_indicator"),
        "reserved_category": (other, y, lambda: Pipeline([("ct", ColumnTransformer([
            ("n", StandardScaler(), cols), ("c", OneHotEncoder(), ["color"])])),
            ("m", LogisticRegression(max_iter=2000))]), "__other__"),
        "missing_without_imputer": (missing, y, lambda: Pipeline([("m", DecisionTreeClassifier(random_state=0))]),
                                    "no impute step covers it"),
        "unknown_transformer": (x, y, lambda: Pipeline([("p", PolynomialFeatures()), ("m", LogisticRegression(max_iter=2000))]),
                                "unsupported transformer PolynomialFeatures"),
        "one_hot_drop": (xc, y, lambda: Pipeline([("ct", ColumnTransformer([
            ("n", StandardScaler(), cols), ("c", OneHotEncoder(drop="first"), ["color"])])),
            ("m", LogisticRegression(max_iter=2000))]), "drop"),
        "ordinal_nan_unknown": (xc, y, lambda: Pipeline([("ct", ColumnTransformer([
            ("n", StandardScaler(), cols),
            ("c", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan), ["color"])])),
            ("m", LogisticRegression(max_iter=2000))]), "finite number"),
        "other_function": (x, y, lambda: Pipeline([("f", FunctionTransformer(np.exp)), ("m", LogisticRegression(max_iter=2000))]),
                           "unsupported FunctionTransformer"),
        "scale_after_one_hot": (xc, y, lambda: Pipeline([("ct", ColumnTransformer([
            ("n", StandardScaler(), cols),
            ("c", Pipeline([("e", OneHotEncoder(sparse_output=False)), ("s", StandardScaler())]), ["color"])])),
            ("m", LogisticRegression(max_iter=2000))]), "after it was encoded"),
    }


REFUSALS = _refusal_cases()


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refusal(case, tmp_path):
    x, y, make, reason = REFUSALS[case]
    pipe = make().fit(x, y)
    with pytest.raises(ExportRefused, match=re.escape(reason)) as err:
        export(pipe, x, tmp_path / "out")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists(), "nothing may be written on refusal"


def test_refusal_unseen_category_in_reference_with_handle_unknown_error(tmp_path):
    x, y = iris()
    x = x.assign(color=pd.Series(np.where(x.iloc[:, 0] > 5.8, "red", "blue"), dtype=object))
    pipe = Pipeline([("ct", ColumnTransformer([("n", StandardScaler(), list(x.columns[:4])),
                                               ("c", OneHotEncoder(handle_unknown="error"), ["color"])])),
                     ("m", LogisticRegression(max_iter=2000))]).fit(x, y)
    x.loc[0, "color"] = "green"
    with pytest.raises(ExportRefused, match="unknown category 'green'"):
        export(pipe, x, tmp_path)


def test_refusal_without_column_names(tmp_path):
    x, y = iris()
    pipe = scaled(LogisticRegression()).fit(x.to_numpy(), y)
    with pytest.raises(ExportRefused, match="without column names"):
        export(pipe, x, tmp_path)


# --- command line -------------------------------------------------------------------------------------------
def run_cli(*args):
    return subprocess.run([sys.executable, str(TOOLS / "export.py"), *map(str, args)], capture_output=True,
                          text=True, timeout=120)


def test_cli_end_to_end(tmp_path):
    x, y = wine_with_category_and_missing()
    # categories spelled like numbers must stay strings through the CSV
    x["hue"] = x["hue"].map({"low": "1", "medium": "2", "high": "3"})
    pipe = wine_pipeline().fit(x, y)
    joblib.dump(pipe, tmp_path / "fitted.joblib")
    x.assign(cultivar=y).to_csv(tmp_path / "train.csv", index=False)
    out = tmp_path / "models" / "wine" / "7"
    res = run_cli("--pipeline", tmp_path / "fitted.joblib", "--reference", tmp_path / "train.csv", "--out", out,
                  "--description", "wine via CLI", "--target", "cultivar", "--baseline", "accuracy=0.9",
                  "--fixtures", "12")
    assert res.returncode == 0, res.stderr
    manifest, reference, fixtures = load_version(out)
    assert manifest["model"]["description"] == "wine via CLI"
    assert manifest["model"]["card"]["baseline"]["accuracy"] == 0.9
    assert 0.0 < manifest["model"]["card"]["baseline"]["f1"] <= 1.0
    assert "train.csv" in manifest["model"]["card"]["training_data"]
    hue = next(f for f in manifest["features"] if f["name"] == "hue")
    assert hue == {"name": "hue", "type": "category", "categories": ["1", "2", "3"], "required": False}
    assert "cultivar" not in reference["features"]
    assert len(fixtures["cases"]) == 12
    replay_fixtures(out)
    assert_fixtures_match_pipeline(out, pipe)


def test_cli_refusal_is_one_line_exit_2(tmp_path):
    x, y = iris()
    joblib.dump(scaled(SVC()).fit(x, y), tmp_path / "svc.joblib")
    x.to_csv(tmp_path / "train.csv", index=False)
    res = run_cli("--pipeline", tmp_path / "svc.joblib", "--reference", tmp_path / "train.csv", "--out",
                  tmp_path / "out")
    assert res.returncode == 2
    assert res.stderr.startswith("export: refused: SVC(probability=False) has no predict_proba")
    assert res.stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_cli_bad_baseline(tmp_path):
    x, y = diabetes()
    joblib.dump(scaled(Ridge()).fit(x, y), tmp_path / "r.joblib")
    x.to_csv(tmp_path / "train.csv", index=False)
    res = run_cli("--pipeline", tmp_path / "r.joblib", "--reference", tmp_path / "train.csv", "--out",
                  tmp_path / "out", "--baseline", "accuracy=0.9")
    assert res.returncode == 2 and "does not apply to regression" in res.stderr


# --- the committed sample models ----------------------------------------------------------------------------
SAMPLES = [ROOT / "models/breast_cancer/1", ROOT / "models/wine/1", ROOT / "models/diabetes/1",
           ROOT / "tests/data/models/all_steps/1"]


@pytest.mark.parametrize("folder", SAMPLES, ids=lambda p: p.parent.name)
def test_committed_sample(folder):
    manifest, reference, fixtures = load_version(folder)
    names = [f["name"] for f in manifest["features"]]
    assert manifest["model"]["task"] in ("classification", "regression")
    assert set(manifest["model"]["input_order"]) <= set(names)
    assert manifest["model"]["card"]["baseline"]
    assert list(reference["features"]) == names
    assert fixtures["cases"]
    for case in fixtures["cases"]:
        assert list(case["input"]) == names
    model = onnx.load(folder / "model.onnx")
    assert len(model.graph.input) == 1
    inp = model.graph.input[0]
    assert inp.name == "input" and inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param == "N"
    width = sum(len(next(s for s in manifest["preprocess"] if s["op"] == "one_hot" and s["features"] == [n])
                    ["categories"]) if any(s["op"] == "one_hot" and s["features"] == [n] for s in manifest["preprocess"])
                else 1 for n in manifest["model"]["input_order"])
    assert dims[1].dim_value == width
    assert all(o.type.tensor_type.shape.dim[0].dim_param == "N" for o in model.graph.output)
    replay_fixtures(folder)


def test_preprocess_cases_match_manifests():
    cases = json.loads((ROOT / "tests/data/preprocess_cases.json").read_text())
    assert set(cases) == {"breast_cancer", "wine", "diabetes", "all_steps"}
    for name, entry in cases.items():
        manifest = tomllib.loads((ROOT / entry["manifest"]).read_text())
        assert len(entry["cases"]) >= 30
        if name in ("wine", "all_steps"):
            assert any(None in c["input"].values() for c in entry["cases"])
            assert any("unseen" in c["input"].values() for c in entry["cases"])
        for case in entry["cases"]:
            np.testing.assert_allclose(preprocess_record(manifest, case["input"]), case["row"], rtol=1e-12, atol=1e-12)
