"""Writes the monitoring fixtures: the bundled models' exact data splits as CSV, and live-monitoring cases
(feedback metrics, a drift window, a one-feature shift) whose expectations are computed offline with
onnxruntime, scikit-learn and numpy / scipy, never by inferd.

    python tools/make_monitor_fixtures.py

Writes, relative to the repository root:
  tests/data/train/{breast_cancer,wine,diabetes}.csv   the training frame each committed model was exported from
  tests/data/test/{breast_cancer,wine,diabetes}.csv    its held-out test split
      feature columns in the manifest's [[features]] order, then the target ("diagnosis" / "cultivar" /
      "target"); numbers as Python's shortest round-trip repr, missing as an empty cell, categories as strings
  tests/data/monitor_cases.json
      feedback_classification  breast_cancer test rows, truth / ORT-predicted labels, accuracy and macro-F1
      feedback_regression      diabetes test rows, truth / ORT-predicted values, MAE
      drift_window             300 wine records (magnesium shifted, some missing, unseen hue_band categories):
                               shares / PSI / JS of every feature and of the predicted labels (DESIGN §6)
      shift                    1000 breast_cancer training rows (cycled) with "mean radius" shifted by half a
                               training standard deviation: PSI of every feature, level per the manifest

Nothing here retrains or re-exports: the splits come from tools/make_samples.py's *_data() functions, and the
script refuses (exit 1) unless the CSVs read back reproduce each committed reference.json exactly.
"""
from __future__ import annotations

import csv
import json
import math
import pathlib
import sys
import tomllib

import numpy as np
import onnx
import pandas as pd
from scipy.spatial.distance import jensenshannon
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from export import _run_onnx, category_profile, is_missing, number_profile, preprocess_frame, records  # noqa: E402
from make_samples import breast_cancer_data, diabetes_data, wine_data  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
DATA = ROOT / "tests/data"
CASES = DATA / "monitor_cases.json"
FLOOR = 1e-4
# model name -> (split function, target column)
MODELS = {
    "breast_cancer": (breast_cancer_data, "diagnosis"),
    "wine": (wine_data, "cultivar"),
    "diabetes": (diabetes_data, "target"),
}
DRIFT_ROWS = 300
DRIFT_SEED = 11
SHIFT_ROWS = 1000
SHIFT_FEATURE = "mean radius"
SHIFT_STDS = 0.5


class FixtureError(Exception):
    pass


def check(ok: bool, message: str):
    if not ok:
        raise FixtureError(message)


# --- models ---------------------------------------------------------------------------------------------------
def load_model(name: str):
    folder = ROOT / "models" / name / "1"
    manifest = tomllib.loads((folder / "inferd.toml").read_text())
    reference = json.loads((folder / "reference.json").read_text())
    return manifest, reference, onnx.load(str(folder / "model.onnx"))


def predict(manifest: dict, model, instances: list):
    """What inferd serves for raw records: labels (argmax of the ORT probabilities, first on ties) and the
    probabilities, or the float32 values widened to Python floats."""
    rows = preprocess_frame(manifest, instances)
    if manifest["model"]["task"] == "classification":
        probs = _run_onnx(model, rows, manifest["outputs"]["probabilities"])
        labels = manifest["outputs"]["labels"]
        return [labels[int(i)] for i in np.argmax(probs, axis=1)], probs
    values = np.ravel(_run_onnx(model, rows, manifest["outputs"]["value"]))
    return [float(v) for v in values], values


# --- CSV ------------------------------------------------------------------------------------------------------
def cell(value, kind: str) -> str:
    if is_missing(value) or (isinstance(value, float) and math.isnan(value)):
        return ""
    if kind == "category":
        return str(value)
    return repr(float(value))  # shortest repr: parses back to the same float64


def write_csv(path: pathlib.Path, x: pd.DataFrame, y: pd.Series, features: list, target: str, target_kind: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        out = csv.writer(fh, lineterminator="\n")
        out.writerow([f["name"] for f in features] + [target])
        cols = [x[f["name"]].tolist() for f in features]
        for i, label in enumerate(y.tolist()):
            out.writerow([cell(col[i], f["type"]) for col, f in zip(cols, features)] + [cell(label, target_kind)])


def read_csv(path: pathlib.Path, features: list, target: str | None = None, target_kind: str = "number"):
    """A fixture CSV as written: category columns (and a label target) as str, numbers as float64 parsed
    exactly, only an empty cell missing."""
    strings = {f["name"]: str for f in features if f["type"] == "category"}
    if target is not None and target_kind == "category":
        strings[target] = str
    exact = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}  # pandas 3: default
    return pd.read_csv(path, dtype=strings, keep_default_na=False, na_values=[""], **exact)


def same_column(a: pd.Series, b: pd.Series) -> bool:
    """Same values in the same places: missing where the other is missing, equal strings, equal floats."""
    a, b = a.tolist(), b.tolist()
    if len(a) != len(b):
        return False
    for u, v in zip(a, b):
        if is_missing(u) or is_missing(v):
            if not (is_missing(u) and is_missing(v)):
                return False
        elif isinstance(u, str) or isinstance(v, str):
            if not (isinstance(u, str) and isinstance(v, str) and u == v):
                return False
        elif float(u) != float(v):
            return False
    return True


def frame_profiles(frame: pd.DataFrame, features: list) -> dict:
    """export.py's reference profiles of `frame`'s feature columns (as export computes them)."""
    rows = len(frame)
    out = {}
    for f in features:
        col = frame[f["name"]].tolist()
        out[f["name"]] = (category_profile(col, f["categories"], rows) if f["type"] == "category"
                          else number_profile(col, rows))
    return out


def write_splits(name: str) -> dict:
    """Writes the train / test CSVs of `name` and proves them: read back, the training CSV reproduces the
    committed reference.json (features, rows and the prediction profile through model.onnx) exactly."""
    split, target = MODELS[name]
    manifest, reference, model = load_model(name)
    features = manifest["features"]
    labels = manifest["outputs"].get("labels")
    target_kind = "category" if labels else "number"
    x_train, x_test, y_train, y_test = split()
    out = {}
    for part, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        path = DATA / part / f"{name}.csv"
        write_csv(path, x, y, features, target, target_kind)
        back = read_csv(path, features, target, target_kind)
        check(list(back.columns) == [f["name"] for f in features] + [target], f"{path}: columns {list(back.columns)}")
        check(len(back) == len(x), f"{path}: {len(back)} rows read back, {len(x)} written")
        for f in features:
            want = x[f["name"]]
            if f["type"] == "number":
                want = want.astype(np.float64)
            check(same_column(back[f["name"]], want), f"{path}: column {f['name']!r} does not read back exactly")
        check(same_column(back[target], y if labels else y.astype(np.float64)),
              f"{path}: target {target!r} does not read back exactly")
        out[part] = back
    train = out["train"]
    rows = len(train)
    check(reference["rows"] == rows, f"{name}: reference.json has rows={reference['rows']}, the CSV {rows}")
    got = frame_profiles(train, features)
    for f in features:
        check(got[f["name"]] == reference["features"][f["name"]],
              f"{name}: profile of {f['name']!r} from tests/data/train/{name}.csv differs from reference.json")
    check(list(got) == list(reference["features"]), f"{name}: feature order differs from reference.json")
    predicted, _ = predict(manifest, model, records(train, features))
    profile = category_profile(predicted, labels, rows) if labels else number_profile(predicted, rows)
    check(profile == reference["prediction"], f"{name}: prediction profile of the training CSV through "
                                              "model.onnx differs from reference.json")
    # the test split is the one the card's baseline was measured on
    test = out["test"]
    pred, _ = predict(manifest, model, records(test, features))
    base = manifest["model"]["card"].get("baseline", {})
    if labels:
        truth = test[target].tolist()
        check(math.isclose(accuracy_score(truth, pred), base["accuracy"], abs_tol=1e-12),
              f"{name}: test accuracy differs from the card's baseline")
        check(math.isclose(f1_score(truth, pred, average="macro"), base["f1"], rel_tol=1e-9),
              f"{name}: test macro-F1 differs from the card's baseline")
    else:
        mae = mean_absolute_error(test[target].to_numpy(np.float64), np.asarray(pred))
        check(math.isclose(mae, base["mae"], rel_tol=1e-5), f"{name}: test MAE {mae} vs card baseline {base['mae']}")
    return out


# --- drift (DESIGN §6; tools/make_drift_fixture.py uses these too) -----------------------------------
def bins(profile: dict, values: list) -> list:
    """Bin index per value: searchsorted left for numbers, category index / other for categories, missing last."""
    if profile["kind"] == "number":
        edges = np.asarray(profile["edges"])
        missing = len(edges) + 1
        return [missing if v is None else int(np.searchsorted(edges, v, side="left")) for v in values]
    cats = profile["categories"]
    missing = len(cats) + 1
    return [missing if v is None else (cats.index(v) if v in cats else len(cats)) for v in values]


def drift(profile: dict, values: list) -> dict:
    """Shares of the window over the profile's bins (missing last), PSI (shares floored at 1e-4), JS (natural log)."""
    b = bins(profile, values)
    actual = np.bincount(b, minlength=len(profile["ratios"]) + 1) / len(values)
    expected = np.asarray(profile["ratios"] + [profile["missing"]])
    a, e = np.maximum(actual, FLOOR), np.maximum(expected, FLOOR)
    psi = float(np.sum((a - e) * np.log(a / e)))
    js = float(jensenshannon(actual, expected))
    return {"shares": actual.tolist(), "psi": psi, "js": js}


def level(psi: float, monitoring: dict) -> int:
    return 2 if psi >= monitoring["psi_critical"] else 1 if psi >= monitoring["psi_warning"] else 0


# --- cases ----------------------------------------------------------------------------------------------------
def feedback_case(name: str, test: pd.DataFrame, prefix: str) -> dict:
    target = MODELS[name][1]
    manifest, _, model = load_model(name)
    features = manifest["features"]
    instances = records(test, features)
    predicted, _ = predict(manifest, model, instances)
    case = {"model": name, "version": "1", "ids": [f"{prefix}-{i}" for i in range(len(test))],
            "instances": instances}
    if manifest["model"]["task"] == "classification":
        truth = [str(v) for v in test[target].tolist()]
        case.update(truth=truth, predicted=predicted, accuracy=float(accuracy_score(truth, predicted)),
                    f1_macro=float(f1_score(truth, predicted, average="macro")))
    else:
        truth = [float(v) for v in test[target].tolist()]
        case.update(truth=truth, predicted=predicted, mae=float(mean_absolute_error(truth, predicted)))
    return case


def drift_window_case(train: pd.DataFrame, test: pd.DataFrame) -> dict:
    manifest, reference, model = load_model("wine")
    features = manifest["features"]
    names = [f["name"] for f in features]
    pool = pd.concat([train, test], ignore_index=True)[names]
    complete = pool[~pool.isna().any(axis=1)].reset_index(drop=True)
    rng = np.random.default_rng(DRIFT_SEED)
    frame = complete.iloc[rng.choice(len(complete), DRIFT_ROWS, replace=True)].reset_index(drop=True)
    shift = 0.5 * float(np.nanstd(pool["magnesium"].to_numpy(np.float64)))
    frame["magnesium"] = frame["magnesium"] + shift
    instances = records(frame, features)
    optional = [f["name"] for f in features if f.get("required", True) is False]
    for rec in instances:
        for n in optional:
            if rng.random() < 0.04:
                rec[n] = None
    present = [i for i, rec in enumerate(instances) if rec["hue_band"] is not None]
    for k, i in enumerate(rng.choice(present, 6, replace=False)):
        instances[int(i)]["hue_band"] = ("violet", "amber")[k % 2]  # one_hot handle_unknown = "ignore"
    hue = next(s for s in manifest["preprocess"] if s["op"] == "one_hot" and s["features"] == ["hue_band"])
    check(hue["handle_unknown"] == "ignore", "wine: hue_band's one_hot must ignore unknown categories")
    check(all(rec[n] is not None for rec in instances for n in names if n not in optional),
          "wine: a required feature is missing in the drift window")
    predicted, _ = predict(manifest, model, instances)
    expected = {n: drift(reference["features"][n], [rec[n] for rec in instances]) for n in names}
    return {"model": "wine", "version": "1", "seed": DRIFT_SEED, "magnesium_shift": shift,
            "instances": instances, "expected": expected, "predicted": predicted,
            "prediction": drift(reference["prediction"], predicted)}


def shift_case(train: pd.DataFrame) -> dict:
    manifest, reference, model = load_model("breast_cancer")
    features = manifest["features"]
    mon = manifest["monitoring"]
    cycled = train.iloc[np.arange(SHIFT_ROWS) % len(train)].reset_index(drop=True)
    delta = SHIFT_STDS * float(np.std(train[SHIFT_FEATURE].to_numpy(np.float64)))
    shifted = cycled.copy()
    shifted[SHIFT_FEATURE] = shifted[SHIFT_FEATURE] + delta
    instances = records(shifted, features)
    predicted, _ = predict(manifest, model, instances)
    expected = {}
    for f in features:
        d = drift(reference["features"][f["name"]], [rec[f["name"]] for rec in instances])
        expected[f["name"]] = {"psi": d["psi"], "js": d["js"], "level": level(d["psi"], mon)}
    pred = drift(reference["prediction"], predicted)
    # the same rows unshifted: what the chain test's in-distribution phase sends
    plain = records(cycled, features)
    plain_pred, _ = predict(manifest, model, plain)
    unshifted = {f["name"]: drift(reference["features"][f["name"]], [r[f["name"]] for r in plain])["psi"]
                 for f in features}
    unshifted["_prediction"] = drift(reference["prediction"], plain_pred)["psi"]

    warn = mon["psi_warning"]
    check(expected[SHIFT_FEATURE]["psi"] >= warn,
          f"shift: PSI of {SHIFT_FEATURE!r} is {expected[SHIFT_FEATURE]['psi']:.4f} < psi_warning {warn}")
    others = {n: e["psi"] for n, e in expected.items() if n != SHIFT_FEATURE}
    worst = max(others, key=others.get)
    check(others[worst] < warn, f"shift: PSI of unshifted feature {worst!r} is {others[worst]:.4f} >= {warn}")
    worst_plain = max(unshifted, key=unshifted.get)
    check(unshifted[worst_plain] < warn,
          f"shift: the unshifted cycled training rows reach PSI {unshifted[worst_plain]:.4f} on {worst_plain!r}")
    return {"model": "breast_cancer", "version": "1", "rows": SHIFT_ROWS, "shifted_feature": SHIFT_FEATURE,
            "shift": delta, "shift_stds": SHIFT_STDS, "psi_warning": warn, "psi_critical": mon["psi_critical"],
            "instances": instances, "expected": expected, "predicted": predicted, "prediction": pred,
            "unshifted_psi": unshifted}


def dumps(obj, depth: int = 0, flat_at: int = 3) -> str:
    """JSON, indented (1 space) down to `flat_at` levels, compact below: one record or list per line."""
    if depth >= flat_at or not isinstance(obj, (dict, list)) or not obj:
        return json.dumps(obj, separators=(",", ":"), allow_nan=False)
    pad = " " * (depth + 1)
    if isinstance(obj, dict):
        items = [f"{pad}{json.dumps(k)}: {dumps(v, depth + 1, flat_at)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * depth + "}"
    if all(not isinstance(v, (dict, list)) for v in obj):
        return json.dumps(obj, separators=(",", ":"), allow_nan=False)
    items = [f"{pad}{dumps(v, depth + 1, flat_at)}" for v in obj]
    return "[\n" + ",\n".join(items) + "\n" + " " * depth + "]"


def show(path: pathlib.Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def main() -> int:
    try:
        frames = {}
        for name in MODELS:
            frames[name] = write_splits(name)
            print(f"{show(DATA)}/{{train,test}}/{name}.csv: {len(frames[name]['train'])} + "
                  f"{len(frames[name]['test'])} rows, training profile == models/{name}/1/reference.json")
        cases = {
            "feedback_classification": feedback_case("breast_cancer", frames["breast_cancer"]["test"], "bc-test"),
            "feedback_regression": feedback_case("diabetes", frames["diabetes"]["test"], "db-test"),
            "drift_window": drift_window_case(frames["wine"]["train"], frames["wine"]["test"]),
            "shift": shift_case(frames["breast_cancer"]["train"]),
        }
    except FixtureError as e:
        print(f"make_monitor_fixtures: FAILED: {e}", file=sys.stderr)
        return 1
    CASES.write_text(dumps(cases) + "\n")
    fc, fr, dw, sh = (cases[k] for k in ("feedback_classification", "feedback_regression", "drift_window", "shift"))
    others = max(e["psi"] for n, e in sh["expected"].items() if n != SHIFT_FEATURE)
    print(f"{show(CASES)}: breast_cancer feedback accuracy {fc['accuracy']:.4f} F1 {fc['f1_macro']:.4f}"
          f" ({len(fc['ids'])} rows); diabetes MAE {fr['mae']:.4f} ({len(fr['ids'])} rows); wine window magnesium "
          f"PSI {dw['expected']['magnesium']['psi']:.4f}; shift {SHIFT_FEATURE!r} PSI "
          f"{sh['expected'][SHIFT_FEATURE]['psi']:.4f}, others max {others:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
