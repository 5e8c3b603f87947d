"""Builds inferd's committed sample models from datasets bundled with scikit-learn (no download).

    python tools/make_samples.py

Writes, relative to the repository root:
  models/breast_cancer/1      StandardScaler + LogisticRegression, binary ("benign" / "malignant")
  models/wine/1               3 cultivars; a categorical `hue_band` and missing values (impute + one-hot)
  models/diabetes/1           StandardScaler + Ridge regression on the raw (unscaled) features
  tests/data/models/all_steps/1   every manifest step type at once (a test model, not a product sample)
  tests/data/preprocess_cases.json   raw records with scikit-learn's own transformed rows, for the Rust
                                     preprocessing to match to 1e-9

Deterministic: every split, model and injected blank is seeded.
"""
from __future__ import annotations

import json
import pathlib
import sys

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (FunctionTransformer, MinMaxScaler, OneHotEncoder, OrdinalEncoder,
                                   RobustScaler, StandardScaler)

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from export import export, records  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
SEED = 0
PREPROCESS_CASES = 30


def blank(frame: pd.DataFrame, columns: list, share: float, seed: int) -> pd.DataFrame:
    """Sets about `share` of each column's values to NaN (seeded): what pandas reads for a blank CSV cell, and
    what SimpleImputer's default missing_values matches (None in an object column would be a category)."""
    rng = np.random.default_rng(seed)
    frame = frame.copy()
    for col in columns:
        rows = rng.choice(len(frame), round(share * len(frame)), replace=False)
        frame.loc[frame.index[rows], col] = np.nan
    return frame


def classification_baseline(pipeline, x_test, y_test) -> dict:
    pred = pipeline.predict(x_test)
    return {"accuracy": float(accuracy_score(y_test, pred)), "f1": float(f1_score(y_test, pred, average="macro"))}


def preprocess_cases(name: str, pipeline, manifest: dict, frame: pd.DataFrame, extra: pd.DataFrame | None = None) -> dict:
    """~30 rows of `frame` (those with missing values first) plus `extra`, with sklearn's transformed rows."""
    features = [f["name"] for f in manifest["features"]]
    rng = np.random.default_rng(SEED)
    has_missing = frame[features].isna().any(axis=1).to_numpy()
    miss = np.flatnonzero(has_missing)
    full = np.flatnonzero(~has_missing)
    k = min(len(miss), PREPROCESS_CASES // 3)
    picked = sorted(list(rng.choice(miss, k, replace=False)) + list(rng.choice(full, PREPROCESS_CASES - k, replace=False)))
    rows = frame.iloc[picked][features]
    if extra is not None:
        rows = pd.concat([rows, extra[features]], ignore_index=True)
    out = pipeline[:-1].transform(rows)
    out = np.asarray(out.toarray() if hasattr(out, "toarray") else out, dtype=np.float64)
    cases = [{"input": rec, "row": [float(v) for v in row]} for rec, row in zip(records(rows, manifest["features"]), out)]
    return {"manifest": f"{'tests/data/' if name == 'all_steps' else ''}models/{name}/1/inferd.toml", "cases": cases}


def breast_cancer_data():
    """(x_train, x_test, y_train, y_test) of the breast_cancer sample; y is the "diagnosis" label string."""
    data = load_breast_cancer(as_frame=True)
    x = data.data
    y = pd.Series(np.asarray(data.target_names)[data.target], name="diagnosis")
    return train_test_split(x, y, test_size=0.25, random_state=SEED, stratify=y)


def breast_cancer():
    x_train, x_test, y_train, y_test = breast_cancer_data()
    pipe = Pipeline([("scale", StandardScaler()), ("model", LogisticRegression(max_iter=5000))]).fit(x_train, y_train)
    baseline = classification_baseline(pipe, x_test, y_test)
    manifest = export(pipe, x_train, ROOT / "models/breast_cancer/1", owner=SAMPLE_OWNER, baseline=baseline,
           description="Breast cancer diagnosis (Wisconsin) from 30 cell-nucleus measurements",
           source="scikit-learn load_breast_cancer, 75% stratified train split (random_state=0)")
    return "breast_cancer", pipe, manifest, x_train, None, len(x_train), f"test accuracy {baseline['accuracy']:.3f}"


def wine_data():
    """(x_train, x_test, y_train, y_test) of the wine sample: hue banded by training terciles, ~8% of
    magnesium/ash/hue_band blanked (NaN); y is the "cultivar" label string."""
    data = load_wine(as_frame=True)
    frame = data.data.copy()
    y = pd.Series(np.asarray(data.target_names)[data.target], name="cultivar")
    idx_train, idx_test = train_test_split(np.arange(len(frame)), test_size=0.25, random_state=SEED, stratify=y)
    lo, hi = np.quantile(frame["hue"].iloc[idx_train], [1 / 3, 2 / 3])
    band = np.where(frame["hue"] <= lo, "low", np.where(frame["hue"] <= hi, "medium", "high"))
    pos = frame.columns.get_loc("hue")
    frame = frame.drop(columns="hue")
    frame.insert(pos, "hue_band", pd.Series(band, index=frame.index, dtype=object))
    frame = blank(frame, ["magnesium", "ash", "hue_band"], 0.08, SEED)
    return frame.iloc[idx_train], frame.iloc[idx_test], y.iloc[idx_train], y.iloc[idx_test]


def wine():
    x_train, x_test, y_train, y_test = wine_data()
    numeric = [c for c in x_train.columns if c != "hue_band"]
    pre = ColumnTransformer([
        ("num", Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]), numeric),
        ("hue", Pipeline([("impute", SimpleImputer(strategy="most_frequent")),
                          ("onehot", OneHotEncoder(handle_unknown="ignore"))]), ["hue_band"]),
    ])
    pipe = Pipeline([("pre", pre), ("model", LogisticRegression(max_iter=5000))])
    pipe.fit(x_train, y_train)
    baseline = classification_baseline(pipe, x_test, y_test)
    manifest = export(pipe, x_train, ROOT / "models/wine/1", owner=SAMPLE_OWNER, baseline=baseline,
           description="Wine cultivar from chemical analysis; hue as a band, some values missing",
           source="scikit-learn load_wine (hue banded by training terciles, ~8% of magnesium/ash/hue_band "
                  "blanked), 75% stratified train split (random_state=0)")
    extra = x_train.iloc[:3].copy()
    extra["hue_band"] = ["unseen", np.nan, "medium"]
    extra.iloc[1, extra.columns.get_loc("ash")] = np.nan
    return "wine", pipe, manifest, x_train, extra, len(x_train), f"test accuracy {baseline['accuracy']:.3f}"


def diabetes_data():
    """(x_train, x_test, y_train, y_test) of the diabetes sample (raw, unscaled features; y is "target")."""
    data = load_diabetes(as_frame=True, scaled=False)
    x, y = data.data, data.target
    return train_test_split(x, y, test_size=0.25, random_state=SEED)


def diabetes():
    x_train, x_test, y_train, y_test = diabetes_data()
    pipe = Pipeline([("scale", StandardScaler()), ("model", Ridge(alpha=1.0))]).fit(x_train, y_train)
    mae = float(mean_absolute_error(y_test, pipe.predict(x_test)))
    manifest = export(pipe, x_train, ROOT / "models/diabetes/1", owner=SAMPLE_OWNER, baseline={"mae": mae},
           description="Diabetes disease progression one year after baseline (raw clinical features)",
           source="scikit-learn load_diabetes(scaled=False), 75% train split (random_state=0)")
    return "diabetes", pipe, manifest, x_train, None, len(x_train), f"test MAE {mae:.1f}"


def all_steps_frame() -> pd.DataFrame:
    data = load_diabetes(as_frame=True, scaled=False)
    frame = data.data.copy()
    frame["sex"] = np.where(frame["sex"] == 1, "female", "male").astype(object)
    frame["age_band"] = pd.Series(np.where(frame["age"] < 40, "young", np.where(frame["age"] < 60, "middle", "senior")),
                                  index=frame.index, dtype=object)
    frame["target"] = data.target
    return blank(frame, ["bmi", "bp", "sex", "age_band"], 0.08, SEED + 1)


def all_steps():
    frame = all_steps_frame()
    x, y = frame.drop(columns="target"), frame["target"]
    pre = ColumnTransformer([
        ("bmi", Pipeline([("impute", SimpleImputer(strategy="mean")), ("scale", StandardScaler())]), ["bmi"]),
        ("bp", Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", RobustScaler())]), ["bp"]),
        ("minmax", MinMaxScaler(clip=True), ["s1", "s2"]),
        ("clip", Pipeline([("clip", FunctionTransformer(np.clip, kw_args={"a_min": 3.0, "a_max": 6.0})),
                           ("scale", StandardScaler())]), ["s4"]),
        ("log", Pipeline([("log", FunctionTransformer(np.log1p)), ("scale", StandardScaler())]), ["s5", "s3"]),
        ("sex", Pipeline([("impute", SimpleImputer(strategy="most_frequent")),
                          ("onehot", OneHotEncoder(handle_unknown="ignore"))]), ["sex"]),
        ("age_band", Pipeline([("impute", SimpleImputer(strategy="constant", fill_value="middle")),
                               ("ordinal", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1))]),
         ["age_band"]),
        ("pass", "passthrough", ["s6"]),
    ], remainder="drop")  # `age` is dropped: validated and monitored, not fed
    pipe = Pipeline([("pre", pre), ("model", Ridge(alpha=1.0))]).fit(x, y)
    mae = float(mean_absolute_error(y, pipe.predict(x)))
    manifest = export(pipe, frame, ROOT / "tests/data/models/all_steps/1", target="target",
           description="Test model: every manifest step type (impute, scalers, clip, log1p, one_hot, ordinal, "
                       "passthrough, a dropped column)",
           source="scikit-learn load_diabetes(scaled=False) with sex and age_band as categories, ~8% of "
                  "bmi/bp/sex/age_band blanked")
    # rows outside the training range (clip bites), unseen categories, missing values everywhere allowed
    extra = x.iloc[:4].copy()
    extra["s1"] = [10.0, 400.0, 150.0, 97.0]
    extra["s4"] = [1.5, 9.5, 3.0, 6.0]
    extra["sex"] = ["unseen", np.nan, "female", "male"]
    extra["age_band"] = ["unseen", np.nan, "young", "senior"]
    extra["bmi"] = [np.nan, 50.0, 18.0, np.nan]
    extra["bp"] = [np.nan, np.nan, 140.0, 60.0]
    return "all_steps", pipe, manifest, x, extra, len(x), f"train MAE {mae:.1f}"


SAMPLE_OWNER = "inferd maintainers (sample model)"


def main():
    cases = {}
    for make in (breast_cancer, wine, diabetes, all_steps):
        name, pipe, manifest, frame, extra, rows, metric = make()
        cases[name] = preprocess_cases(name, pipe, manifest, frame, extra)
        print(f"{name:14s} {type(pipe[-1]).__name__:20s} {rows:4d} training rows  {metric}")
    path = ROOT / "tests/data/preprocess_cases.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cases, indent=1, allow_nan=False) + "\n")
    print(f"wrote {path.relative_to(ROOT)} ({sum(len(c['cases']) for c in cases.values())} cases)")


if __name__ == "__main__":
    main()
