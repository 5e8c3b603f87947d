"""Tests of the committed monitoring fixtures (tools/make_monitor_fixtures.py): tests/data/{train,test}/*.csv and
tests/data/monitor_cases.json are the true data splits and offline expectations.  Run: pytest -q tools/tests"""
from __future__ import annotations

import json
import pathlib
import sys
import tomllib

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
from scipy.spatial.distance import jensenshannon
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error

TOOLS = pathlib.Path(__file__).resolve().parent.parent
ROOT = TOOLS.parent
sys.path.insert(0, str(TOOLS))
import make_monitor_fixtures as mmf  # noqa: E402
from export import category_profile, number_profile, preprocess_frame, records  # noqa: E402

MODELS = {"breast_cancer": "diagnosis", "wine": "cultivar", "diabetes": "target"}


@pytest.fixture(scope="module")
def cases():
    return json.loads((ROOT / "tests/data/monitor_cases.json").read_text())


def load_version(name: str):
    folder = ROOT / "models" / name / "1"
    manifest = tomllib.loads((folder / "inferd.toml").read_text())
    reference = json.loads((folder / "reference.json").read_text())
    return manifest, reference, folder


def read_split(name: str, part: str, manifest: dict) -> pd.DataFrame:
    """The CSV as a user would read it for export.py: category columns (and a label target) as str."""
    strings = {f["name"]: str for f in manifest["features"] if f["type"] == "category"}
    if "labels" in manifest["outputs"]:
        strings[MODELS[name]] = str
    return pd.read_csv(ROOT / "tests/data" / part / f"{name}.csv", dtype=strings)


def ort_outputs(folder: pathlib.Path, manifest: dict, instances: list) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(folder / "model.onnx"), opts, providers=["CPUExecutionProvider"])
    rows = preprocess_frame(manifest, instances).astype(np.float32)
    out = manifest["outputs"].get("probabilities") or manifest["outputs"]["value"]
    return np.asarray(sess.run([out], {"input": rows})[0])


def served(folder, manifest, instances) -> list:
    """Labels (argmax, first on ties) or values (float32 widened), as inferd serves them."""
    out = ort_outputs(folder, manifest, instances)
    if manifest["model"]["task"] == "classification":
        return [manifest["outputs"]["labels"][int(i)] for i in np.argmax(out, axis=1)]
    return [float(v) for v in np.ravel(out)]


def shares_psi_js(profile: dict, values: list):
    """DESIGN §6, written out again independently of make_monitor_fixtures.bins."""
    if profile["kind"] == "number":
        edges = profile["edges"]
        idx = [len(edges) + 1 if v is None else sum(e < v for e in edges) for v in values]
    else:
        cats = profile["categories"]
        idx = [len(cats) + 1 if v is None else (cats.index(v) if v in cats else len(cats)) for v in values]
    n_bins = len(profile["ratios"]) + 1
    actual = np.bincount(idx, minlength=n_bins) / len(values)
    expected = np.asarray(profile["ratios"] + [profile["missing"]])
    a, e = np.maximum(actual, 1e-4), np.maximum(expected, 1e-4)
    return actual, float(np.sum((a - e) * np.log(a / e))), float(jensenshannon(actual, expected))


# --- the CSVs are the models' true data ---------------------------------------------------------------------
@pytest.mark.parametrize("name", list(MODELS))
def test_training_csv_reproduces_reference_json(name):
    manifest, reference, folder = load_version(name)
    features = manifest["features"]
    frame = read_split(name, "train", manifest)
    assert list(frame.columns) == [f["name"] for f in features] + [MODELS[name]]
    rows = len(frame)
    assert reference["rows"] == rows
    for f in features:
        col = frame[f["name"]].tolist()
        got = category_profile(col, f["categories"], rows) if f["type"] == "category" else number_profile(col, rows)
        assert got == reference["features"][f["name"]], f["name"]
    predicted = served(folder, manifest, records(frame, features))
    labels = manifest["outputs"].get("labels")
    profile = category_profile(predicted, labels, rows) if labels else number_profile(predicted, rows)
    assert profile == reference["prediction"]


@pytest.mark.parametrize("name", list(MODELS))
def test_csvs_equal_make_samples_splits(name):
    """Cell for cell what tools/make_samples.py trained on (and tested against), target included."""
    manifest, _, _ = load_version(name)
    split = {"breast_cancer": mmf.breast_cancer_data, "wine": mmf.wine_data, "diabetes": mmf.diabetes_data}[name]
    x_train, x_test, y_train, y_test = split()
    for part, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        frame = mmf.read_csv(ROOT / "tests/data" / part / f"{name}.csv", manifest["features"], MODELS[name],
                             "category" if "labels" in manifest["outputs"] else "number")
        for f in manifest["features"]:
            assert mmf.same_column(frame[f["name"]], x[f["name"]]), (part, f["name"])
        assert mmf.same_column(frame[MODELS[name]], y), (part, MODELS[name])


@pytest.mark.parametrize("name", list(MODELS))
def test_test_csv_gives_the_card_baseline(name):
    manifest, _, folder = load_version(name)
    frame = read_split(name, "test", manifest)
    predicted = served(folder, manifest, records(frame, manifest["features"]))
    truth = frame[MODELS[name]].tolist()
    baseline = manifest["model"]["card"]["baseline"]
    if manifest["model"]["task"] == "classification":
        assert accuracy_score(truth, predicted) == pytest.approx(baseline["accuracy"], abs=1e-12)
        assert f1_score(truth, predicted, average="macro") == pytest.approx(baseline["f1"], abs=1e-12)
    else:
        assert mean_absolute_error(truth, predicted) == pytest.approx(baseline["mae"], rel=1e-5)


def test_generator_reproduces_committed_files(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(mmf, "DATA", tmp_path)
    monkeypatch.setattr(mmf, "CASES", tmp_path / "monitor_cases.json")
    assert mmf.main() == 0
    for rel in ["monitor_cases.json"] + [f"{p}/{n}.csv" for p in ("train", "test") for n in MODELS]:
        assert (tmp_path / rel).read_bytes() == (ROOT / "tests/data" / rel).read_bytes(), rel


# --- monitor_cases.json -------------------------------------------------------------------------------------
def test_feedback_classification(cases):
    case = cases["feedback_classification"]
    manifest, _, folder = load_version(case["model"])
    frame = read_split(case["model"], "test", manifest)
    n = len(frame)
    assert case["ids"] == [f"bc-test-{i}" for i in range(n)]
    assert case["instances"] == records(frame, manifest["features"])
    assert case["truth"] == frame["diagnosis"].tolist()
    assert case["predicted"] == served(folder, manifest, case["instances"])
    assert set(case["truth"]) <= set(manifest["outputs"]["labels"])
    assert case["accuracy"] == accuracy_score(case["truth"], case["predicted"])
    assert case["f1_macro"] == f1_score(case["truth"], case["predicted"], average="macro")
    assert 0.9 < case["accuracy"] < 1.0, "some misclassified rows make the live metrics worth testing"


def test_feedback_regression(cases):
    case = cases["feedback_regression"]
    manifest, _, folder = load_version(case["model"])
    frame = read_split(case["model"], "test", manifest)
    assert case["ids"] == [f"db-test-{i}" for i in range(len(frame))]
    assert case["instances"] == records(frame, manifest["features"])
    assert case["truth"] == frame["target"].astype(float).tolist()
    assert case["predicted"] == served(folder, manifest, case["instances"])
    assert all(float(np.float32(v)) == v for v in case["predicted"]), "float32 values widened"
    assert case["mae"] == mean_absolute_error(case["truth"], case["predicted"])


def test_drift_window(cases):
    case = cases["drift_window"]
    manifest, reference, folder = load_version(case["model"])
    features = {f["name"]: f for f in manifest["features"]}
    instances = case["instances"]
    assert len(instances) == 300
    assert all(list(rec) == list(features) for rec in instances)
    missing = {n: sum(rec[n] is None for rec in instances) for n in features}
    assert all(missing[n] == 0 for n, f in features.items() if f.get("required", True)), "required feature missing"
    assert sum(missing.values()) > 0
    hue = [rec["hue_band"] for rec in instances if rec["hue_band"] is not None]
    unseen = [v for v in hue if v not in features["hue_band"]["categories"]]
    assert 0 < len(unseen) < 10
    # magnesium was shifted up by half a standard deviation of the wine data
    assert case["magnesium_shift"] > 0
    wine = pd.concat([read_split("wine", p, manifest) for p in ("train", "test")])
    mg = [rec["magnesium"] for rec in instances if rec["magnesium"] is not None]
    assert np.mean(mg) > np.nanmean(wine["magnesium"]) + 0.25 * np.nanstd(wine["magnesium"])
    assert set(case["expected"]) == set(features)
    for name, want in case["expected"].items():
        shares, psi, js = shares_psi_js(reference["features"][name], [rec[name] for rec in instances])
        np.testing.assert_allclose(want["shares"], shares, rtol=0, atol=1e-15)
        assert want["psi"] == pytest.approx(psi, rel=1e-12, abs=1e-15), name
        assert want["js"] == pytest.approx(js, rel=1e-12, abs=1e-15), name
    assert case["expected"]["magnesium"]["psi"] >= manifest["monitoring"]["psi_warning"]
    assert case["predicted"] == served(folder, manifest, instances)
    shares, psi, js = shares_psi_js(reference["prediction"], case["predicted"])
    np.testing.assert_allclose(case["prediction"]["shares"], shares, rtol=0, atol=1e-15)
    assert case["prediction"]["psi"] == pytest.approx(psi, rel=1e-12)
    assert case["prediction"]["js"] == pytest.approx(js, rel=1e-12)


def test_shift(cases):
    case = cases["shift"]
    manifest, reference, folder = load_version(case["model"])
    feature = case["shifted_feature"]
    train = read_split(case["model"], "train", manifest)
    instances = case["instances"]
    assert len(instances) == case["rows"] == 1000
    cycled = records(train, manifest["features"])
    assert case["shift"] == pytest.approx(0.5 * np.std(train[feature].to_numpy(float)), rel=1e-15)
    for i, rec in enumerate(instances):
        want = dict(cycled[i % len(cycled)])
        want[feature] += case["shift"]
        assert rec == want, i
    warning, critical = manifest["monitoring"]["psi_warning"], manifest["monitoring"]["psi_critical"]
    assert (case["psi_warning"], case["psi_critical"]) == (warning, critical)
    for name, want in case["expected"].items():
        _, psi, js = shares_psi_js(reference["features"][name], [rec[name] for rec in instances])
        assert want["psi"] == pytest.approx(psi, rel=1e-12, abs=1e-15), name
        assert want["js"] == pytest.approx(js, rel=1e-12, abs=1e-15), name
        assert want["level"] == (2 if psi >= critical else 1 if psi >= warning else 0)
        if name == feature:
            assert psi >= warning
        else:
            assert psi < warning, name
    assert case["predicted"] == served(folder, manifest, instances)
    # what the chain test's in-distribution phase sends (the same rows unshifted) stays below every threshold
    assert max(case["unshifted_psi"].values()) < warning
    _, psi, _ = shares_psi_js(reference["features"][feature], [cycled[i % len(cycled)][feature] for i in range(1000)])
    assert case["unshifted_psi"][feature] == pytest.approx(psi, rel=1e-12)
