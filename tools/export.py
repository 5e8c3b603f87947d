"""Export a fitted scikit-learn Pipeline as an inferd model version directory.

    python tools/export.py --pipeline fitted.joblib --reference train.csv --out models/NAME/VERSION \
        [--description TEXT] [--target COLUMN] [--baseline accuracy=0.95] [--fixtures N]

The estimator alone goes to `model.onnx` (skl2onnx, zipmap off, batch dimension named "N"); every step before
it is translated into the manifest's `[[preprocess]]` steps (DESIGN.md §3), because tract does not run the
ONNX-ML transformer ops and the raw named values are what drift monitoring needs. The translation is proved
before anything is written: our own numpy implementation of the manifest steps must reproduce
`pipeline[:-1].transform` on the whole training frame, and onnxruntime on `model.onnx` fed with those rows must
reproduce `predict_proba` / `predict`, and the label inferd serves (argmax of the probabilities) must be the
pipeline's `predict`. Whatever cannot be exported faithfully is refused with a one-line reason
(`export: refused: …`, exit status 2). docs/models.md lists the supported families (linear, trees and forests,
scikit-learn / XGBoost / LightGBM gradient boosting, SVMs, calibrated classifiers, MLPs), the ONNX ops each
becomes and the converter quirks worked around here; tools/export_onnx.py packages an ONNX file from elsewhere.

Importable: `export(pipeline, frame, out_dir, ...)` does the same without a joblib / CSV round trip.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import json
import math
import os
import pathlib
import re
import sys
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

RESERVED_CATEGORIES = ("__other__", "__missing__")
DEFAULT_FIXTURES = 40
FIXTURE_TOLERANCE = 1e-5
# How closely our numpy steps must reproduce scikit-learn's own transform (the Rust side is held to 1e-9).
PREPROCESS_TOLERANCE = 1e-9
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
MONITORING_DEFAULTS = {"window": 1000, "psi_warning": 0.1, "psi_critical": 0.25, "min_confidence": 0.0}


class ExportRefused(Exception):
    """The pipeline (or its data) cannot be exported faithfully; the message is the one-line reason."""


def refuse(reason: str):
    raise ExportRefused(reason)


# ---------------------------------------------------------------------------------------------------------
# Estimators: one entry per supported final estimator class (docs/models.md lists the ONNX ops each emits).
# To add a family, add its class name here with its task, make sure a converter is registered with skl2onnx
# (`_boosting_converters` shows how for another library), and add what it cannot do to `check_estimator`.
# ---------------------------------------------------------------------------------------------------------
ESTIMATORS = {
    # linear
    "LogisticRegression": "classification",
    "LinearRegression": "regression",
    "Ridge": "regression",
    "Lasso": "regression",
    "LinearSVR": "regression",
    # trees and tree ensembles (scikit-learn)
    "DecisionTreeClassifier": "classification",
    "DecisionTreeRegressor": "regression",
    "RandomForestClassifier": "classification",
    "RandomForestRegressor": "regression",
    "ExtraTreesClassifier": "classification",
    "ExtraTreesRegressor": "regression",
    "GradientBoostingClassifier": "classification",
    "GradientBoostingRegressor": "regression",
    "HistGradientBoostingClassifier": "classification",
    "HistGradientBoostingRegressor": "regression",
    # gradient boosting libraries, through their scikit-learn wrappers (onnxmltools converters)
    "XGBClassifier": "classification",
    "XGBRegressor": "regression",
    "LGBMClassifier": "classification",
    "LGBMRegressor": "regression",
    # kernel machines
    "SVC": "classification",  # probability=True only (check_estimator)
    "SVR": "regression",
    "CalibratedClassifierCV": "classification",  # method="sigmoid" around a supported classifier or LinearSVC
    # neural networks
    "MLPClassifier": "classification",
    "MLPRegressor": "regression",
}
# Classifiers without probabilities: inferd serves class probabilities (and confidence, and their drift), so
# a margin is never passed off as one. CalibratedClassifierCV turns either into a probabilistic model.
NO_PROBABILITIES = {
    "LinearSVC": "LinearSVC has no predict_proba and inferd serves class probabilities; wrap it: "
                 "CalibratedClassifierCV(LinearSVC(), ensemble=False)",
    "SVC": "SVC(probability=False) has no predict_proba and inferd serves class probabilities; use "
           "CalibratedClassifierCV(SVC(), ensemble=False) (or SVC(probability=True), deprecated in scikit-learn 1.9)",
}
SVM_KERNELS = ("linear", "poly", "rbf", "sigmoid")  # what skl2onnx's SVMClassifier / SVMRegressor express
BOOSTING_LIBRARIES = ("xgboost", "lightgbm")


def estimator_task(est) -> str:
    name = type(est).__name__
    if name not in ESTIMATORS:
        if name in NO_PROBABILITIES:
            refuse(NO_PROBABILITIES[name])
        refuse(f"unsupported estimator {name} (supported: {', '.join(sorted(ESTIMATORS))})")
    task = ESTIMATORS[name]
    if task == "regression" and np.ndim(getattr(est, "coef_", np.zeros(1))) > 1 and np.shape(est.coef_)[0] > 1:
        refuse(f"{name} has several regression targets; inferd serves one value per row")
    if task == "regression" and getattr(est, "n_outputs_", 1) != 1:
        refuse(f"{name} has several regression targets; inferd serves one value per row")
    check_estimator(est)
    return task


def check_estimator(est):
    """Family rules beyond the class name: what the converters cannot express faithfully, refused up front with
    the reason (the numeric proof in `build` would refuse most of it too, with a less helpful message)."""
    name = type(est).__name__
    if name in ("SVC", "SVR"):
        if name == "SVC" and not _has_probabilities(est):
            refuse(NO_PROBABILITIES["SVC"])
        _check_kernel(est)
    if name == "CalibratedClassifierCV":
        if est.method != "sigmoid":
            # skl2onnx 1.20: isotonic becomes a step function (IsotonicRegression interpolates linearly, ~0.01
            # off on iris), temperature scaling fails to convert at all
            refuse(f"CalibratedClassifierCV(method={est.method!r}) is not supported (method='sigmoid' only)")
        for inner in {id(c.estimator): c.estimator for c in est.calibrated_classifiers_}.values():
            inner_name = type(inner).__name__
            if inner_name == "SVC":  # calibrated, it needs no probability=True
                _check_kernel(inner)
            elif inner_name == "LinearSVC":
                pass
            elif ESTIMATORS.get(inner_name) != "classification" or inner_name == "CalibratedClassifierCV":
                refuse(f"CalibratedClassifierCV around {inner_name} is not supported")
            else:
                check_estimator(inner)


def _check_kernel(svm):
    if not isinstance(svm.kernel, str) or svm.kernel not in SVM_KERNELS:
        refuse(f"{type(svm).__name__}(kernel={svm.kernel!r}) is not supported (kernels: {', '.join(SVM_KERNELS)})")


def inner_estimators(est) -> list:
    """`est` and, for a CalibratedClassifierCV, the fitted classifiers it calibrates."""
    out = [est]
    for c in getattr(est, "calibrated_classifiers_", None) or []:
        out.append(c.estimator)
    return out


def predict_follows_probabilities(est) -> bool:
    """Whether the estimator's own `predict` is the argmax of its `predict_proba` (then the served label must
    equal `predict`). SVC(probability=True) predicts by one-vs-one votes, which libsvm's Platt-scaled
    probabilities contradict on a few rows: scikit-learn documents the inconsistency."""
    return not (type(est).__name__ == "SVC" and _has_probabilities(est))


def _has_probabilities(est) -> bool:
    # not `est.probability`: scikit-learn 1.9's default for it is the truthy string "deprecated" (meaning False)
    return hasattr(est, "predict_proba")


# ---------------------------------------------------------------------------------------------------------
# Tracing the preprocessing: each transformer is translated into manifest steps while we follow which raw
# feature every column of the intermediate matrix came from.
# ---------------------------------------------------------------------------------------------------------
@dataclass
class Slot:
    """One raw feature's place in an intermediate matrix: `width` columns, `kind` how it is encoded so far."""
    feature: str
    kind: str = "value"  # "value" (element-wise steps only) | "one_hot" | "ordinal"
    width: int = 1


@dataclass
class Trace:
    steps: list = field(default_factory=list)  # manifest [[preprocess]] entries, in order
    encoded: dict = field(default_factory=dict)  # feature -> categories (strings) of its encoder
    imputed: dict = field(default_factory=dict)  # feature -> raw impute value
    numeric: set = field(default_factory=set)  # features that went through a numeric element-wise step

    def add(self, op: str, slots: list, **params):
        if slots:
            self.steps.append({"op": op, "features": [s.feature for s in slots], **params})


def _floats(values) -> list:
    return [float(v) for v in np.asarray(values, dtype=np.float64).ravel()]


def _broadcast(value, n: int, what: str) -> list:
    arr = np.asarray(value, dtype=np.float64).ravel()
    if arr.size == 1:
        arr = np.repeat(arr, n)
    if arr.size != n:
        refuse(f"{what}: {arr.size} values for {n} columns")
    if not np.all(np.isfinite(arr)):
        refuse(f"{what}: bounds must be finite numbers")
    return _floats(arr)


def _elementwise(slots: list, what: str):
    for s in slots:
        if s.kind != "value":
            refuse(f"{what} is applied to feature {s.feature!r} after it was encoded ({s.kind}); "
                   "the manifest applies element-wise steps to raw values only")


def _check_categories(cats, feature: str) -> list:
    cats = list(cats)
    for c in cats:
        if not isinstance(c, str):
            refuse(f"feature {feature!r} has non-string category {c!r} ({type(c).__name__}); "
                   "categories must be strings")
        if c in RESERVED_CATEGORIES:
            refuse(f"feature {feature!r} has a category spelled {c!r}, which inferd reserves for drift bins")
    return cats


def _shift_scale(t: "Trace", slots: list, name: str, op: str, shift_key: str, shift, scale) -> list:
    """A `(x - shift) / scale` step (StandardScaler, RobustScaler); a disabled part is 0 or 1."""
    _elementwise(slots, name)
    n = len(slots)
    params = {shift_key: _floats(shift) if shift is not None else [0.0] * n,
              "scale": _floats(scale) if scale is not None else [1.0] * n}
    t.numeric.update(s.feature for s in slots)
    t.add(op, slots, **params)
    return slots


def trace_transformer(tr, slots: list, t: Trace) -> list:
    """Translates fitted transformer `tr` applied to the columns `slots`; returns the output columns' slots."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import (FunctionTransformer, MinMaxScaler, OneHotEncoder, OrdinalEncoder,
                                       RobustScaler, StandardScaler)

    name = type(tr).__name__
    if tr is None or (isinstance(tr, str) and tr == "passthrough"):
        t.add("passthrough", slots)
        return slots
    if isinstance(tr, str):
        refuse(f"unsupported pipeline step {tr!r}")
    if type(tr) is Pipeline:
        for _, step in tr.steps:
            slots = trace_transformer(step, slots, t)
        return slots
    if type(tr) is ColumnTransformer:
        return _trace_column_transformer(tr, slots, t)

    n_in = getattr(tr, "n_features_in_", None)
    if n_in is not None and n_in != sum(s.width for s in slots):
        refuse(f"{name} was fitted on {n_in} columns but receives {sum(s.width for s in slots)} here")

    if type(tr) is SimpleImputer:
        if tr.add_indicator:
            refuse("SimpleImputer(add_indicator=True) is not supported (the manifest has no indicator step)")
        if tr.strategy not in ("mean", "median", "most_frequent", "constant"):
            refuse(f"SimpleImputer(strategy={tr.strategy!r}) is not supported")
        mv = tr.missing_values
        if not (mv is None or mv is pd.NA or (isinstance(mv, float) and math.isnan(mv))):
            refuse(f"SimpleImputer(missing_values={mv!r}): only NaN/None (JSON null) can mean missing")
        _elementwise(slots, "SimpleImputer")
        stats = list(tr.statistics_)
        for s, v in zip(slots, stats):
            if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
                refuse(f"SimpleImputer has no value for feature {s.feature!r} (no non-missing training value)")
            if s.feature in t.imputed:
                refuse(f"feature {s.feature!r} is imputed twice")
            t.imputed[s.feature] = v.item() if isinstance(v, np.generic) else v
        t.add("impute", slots, values=[t.imputed[s.feature] for s in slots])
        return slots
    if type(tr) is StandardScaler:
        return _shift_scale(t, slots, name, "standard_scale", "mean", tr.mean_ if tr.with_mean else None,
                            tr.scale_ if tr.with_std else None)
    if type(tr) is MinMaxScaler:
        _elementwise(slots, name)
        t.numeric.update(s.feature for s in slots)
        t.add("min_max_scale", slots, min=_floats(tr.min_), scale=_floats(tr.scale_))
        if tr.clip:
            lo, hi = tr.feature_range
            t.add("clip", slots, lower=[float(lo)] * len(slots), upper=[float(hi)] * len(slots))
        return slots
    if type(tr) is RobustScaler:
        return _shift_scale(t, slots, name, "robust_scale", "center", tr.center_ if tr.with_centering else None,
                            tr.scale_ if tr.with_scaling else None)
    if type(tr) is FunctionTransformer:
        return _trace_function(tr, slots, t)
    if type(tr) is OneHotEncoder:
        if tr.drop is not None:
            refuse(f"OneHotEncoder(drop={tr.drop!r}) is not supported (drop=None only)")
        if tr.min_frequency is not None or tr.max_categories is not None:
            refuse("OneHotEncoder with min_frequency/max_categories (infrequent categories) is not supported")
        handle = tr.handle_unknown
        if handle == "infrequent_if_exist":  # without infrequent categories it behaves exactly as "ignore"
            handle = "ignore"
        if handle not in ("ignore", "error"):
            refuse(f"OneHotEncoder(handle_unknown={tr.handle_unknown!r}) is not supported")
        _elementwise(slots, name)
        out = []
        for s, cats in zip(slots, tr.categories_):
            cats = _check_categories(cats, s.feature)
            t.encoded[s.feature] = cats
            t.add("one_hot", [s], categories=cats, handle_unknown=handle)
            out.append(Slot(s.feature, "one_hot", len(cats)))
        return out
    if type(tr) is OrdinalEncoder:
        if getattr(tr, "min_frequency", None) is not None or getattr(tr, "max_categories", None) is not None:
            refuse("OrdinalEncoder with min_frequency/max_categories (infrequent categories) is not supported")
        params = {}
        if tr.handle_unknown == "use_encoded_value":
            uv = tr.unknown_value
            if uv is None or not isinstance(uv, (int, float, np.number)) or not math.isfinite(float(uv)):
                refuse(f"OrdinalEncoder(unknown_value={uv!r}): a finite number is required")
            params["unknown_value"] = float(uv)
        elif tr.handle_unknown != "error":
            refuse(f"OrdinalEncoder(handle_unknown={tr.handle_unknown!r}) is not supported")
        _elementwise(slots, name)
        out = []
        for s, cats in zip(slots, tr.categories_):
            cats = _check_categories(cats, s.feature)
            t.encoded[s.feature] = cats
            t.add("ordinal", [s], categories=cats, **params)
            out.append(Slot(s.feature, "ordinal", 1))
        return out
    refuse(f"unsupported transformer {name}")


def _trace_function(tr, slots: list, t: Trace) -> list:
    kw = dict(tr.kw_args or {})
    func = tr.func
    if func is None and not kw:
        t.add("passthrough", slots)
        return slots
    _elementwise(slots, "FunctionTransformer")
    if func is np.log1p and not kw:
        t.numeric.update(s.feature for s in slots)
        t.add("log1p", slots)
        return slots
    if func is np.clip:
        keys = set(kw)
        if keys == {"a_min", "a_max"}:
            lo, hi = kw["a_min"], kw["a_max"]
        elif keys == {"min", "max"}:
            lo, hi = kw["min"], kw["max"]
        else:
            refuse(f"FunctionTransformer(np.clip) needs kw_args a_min and a_max, got {sorted(keys)}")
        if lo is None or hi is None:
            refuse("FunctionTransformer(np.clip) needs both bounds (a_min and a_max)")
        n = len(slots)
        lower = _broadcast(lo, n, "np.clip a_min")
        upper = _broadcast(hi, n, "np.clip a_max")
        t.numeric.update(s.feature for s in slots)
        t.add("clip", slots, lower=lower, upper=upper)
        return slots
    fname = getattr(func, "__name__", repr(func))
    refuse(f"unsupported FunctionTransformer({fname}, kw_args={kw}) (np.log1p and np.clip only)")


def _trace_column_transformer(ct, slots: list, t: Trace) -> list:
    for s in slots:
        if s.kind != "value":
            refuse(f"ColumnTransformer receives feature {s.feature!r} already encoded; put it first")
    if getattr(ct, "transformer_weights", None):
        refuse("ColumnTransformer(transformer_weights=...) is not supported")
    indices = getattr(ct, "_transformer_to_input_indices", None)
    if indices is None:
        refuse("this scikit-learn's ColumnTransformer does not expose its column indices")
    used: dict = {}
    out = []
    for name, tr, _cols in ct.transformers_:
        idx = list(indices.get(name, []))
        if not idx or (isinstance(tr, str) and tr == "drop"):
            continue
        for i in idx:
            if i in used:
                refuse(f"column {slots[i].feature!r} is used in two ColumnTransformer branches "
                       f"({used[i]!r} and {name!r})")
            used[i] = name
        out += trace_transformer(tr, [slots[i] for i in idx], t)
    return out


def trace_pipeline(pipeline, names: list):
    """Translates every step before the estimator; returns the trace and the model row's slots."""
    trace = Trace()
    slots = [Slot(n) for n in names]
    for _, step in pipeline.steps[:-1]:
        slots = trace_transformer(step, slots, trace)
    return trace, slots


# ---------------------------------------------------------------------------------------------------------
# The manifest steps, implemented in numpy (float64): the reference the Rust side and our fixtures follow.
# ---------------------------------------------------------------------------------------------------------
def is_missing(v) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def preprocess_record(manifest: dict, record: dict) -> np.ndarray:
    """One raw record {feature: value | None} → the model's float64 input row, per the manifest's steps."""
    values = {}
    for f in manifest["features"]:
        v = record.get(f["name"])
        values[f["name"]] = None if is_missing(v) else (str(v) if f["type"] == "category" else float(v))
    for step in manifest.get("preprocess", []):
        op = step["op"]
        for k, name in enumerate(step["features"]):
            v = values[name]
            if op == "impute":
                values[name] = step["values"][k] if v is None else v
                continue
            if op == "passthrough":
                continue
            if v is None:
                raise ValueError(f"feature {name!r} is missing and no impute step covers it")
            if op == "standard_scale":
                v = (v - step["mean"][k]) / step["scale"][k]
            elif op == "min_max_scale":
                v = v * step["scale"][k] + step["min"][k]
            elif op == "robust_scale":
                v = (v - step["center"][k]) / step["scale"][k]
            elif op == "clip":
                v = min(max(v, step["lower"][k]), step["upper"][k])
            elif op == "log1p":
                v = float(np.log1p(v))
            elif op == "one_hot":
                cats = step["categories"]
                vec = np.zeros(len(cats))
                if v in cats:
                    vec[cats.index(v)] = 1.0
                elif step["handle_unknown"] == "error":
                    raise ValueError(f"feature {name!r}: unknown category {v!r}")
                v = vec
            elif op == "ordinal":
                cats = step["categories"]
                if v in cats:
                    v = float(cats.index(v))
                elif "unknown_value" in step:
                    v = float(step["unknown_value"])
                else:
                    raise ValueError(f"feature {name!r}: unknown category {v!r}")
            else:
                raise ValueError(f"unknown op {op!r}")
            values[name] = v
    order = manifest["model"].get("input_order") or [f["name"] for f in manifest["features"]]
    return np.concatenate([np.atleast_1d(np.asarray(values[name], dtype=np.float64)) for name in order])


def preprocess_frame(manifest: dict, recs: list) -> np.ndarray:
    return np.vstack([preprocess_record(manifest, r) for r in recs])


# ---------------------------------------------------------------------------------------------------------
# Reference profile (DESIGN.md §6)
# ---------------------------------------------------------------------------------------------------------
def number_edges(x: np.ndarray) -> list:
    """Deciles of x, deduplicated, each moved halfway to the next larger distinct value (dropped if none)."""
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return []
    distinct = np.unique(x)
    edges = []
    for q in np.unique(np.quantile(x, [i / 10 for i in range(1, 10)])):
        j = np.searchsorted(distinct, q, side="right")
        if j == len(distinct):
            continue
        mid = (q + distinct[j]) / 2
        if edges and mid <= edges[-1]:
            continue
        edges.append(float(mid))
    return edges


def number_profile(values, rows: int) -> dict:
    x = np.asarray([float(v) for v in values if not is_missing(v)], dtype=np.float64)
    edges = number_edges(x)
    counts = np.bincount(np.searchsorted(edges, x, side="left"), minlength=len(edges) + 1)
    return {"kind": "number", "edges": edges, "ratios": [float(c) / rows for c in counts],
            "missing": (rows - x.size) / rows}


def category_profile(values, categories: list, rows: int) -> dict:
    counts = [0] * (len(categories) + 1)
    index = {c: i for i, c in enumerate(categories)}
    missing = 0
    for v in values:
        if is_missing(v):
            missing += 1
        else:
            counts[index.get(str(v), len(categories))] += 1
    return {"kind": "category", "categories": list(categories), "ratios": [c / rows for c in counts],
            "missing": missing / rows}


# ---------------------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------------------
def records(frame: pd.DataFrame, features: list) -> list:
    """Frame rows as JSON-ready records: numbers as Python floats, categories as strings, missing as None."""
    out = []
    cols = {f["name"]: frame[f["name"]].tolist() for f in features}
    for i in range(len(frame)):
        rec = {}
        for f in features:
            v = cols[f["name"]][i]
            rec[f["name"]] = None if is_missing(v) else (str(v) if f["type"] == "category" else float(v))
        out.append(rec)
    return out


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _estimator_summary(est) -> str:
    text = re.sub(r"\s+", "", repr(est))
    return text if len(text) <= 200 else text[:197] + "..."


def _boosting_converters(est):
    """Registers with skl2onnx the onnxmltools converters of the XGBoost / LightGBM scikit-learn wrappers that
    `est` uses (the documented skl2onnx recipe). The shape calculators are skl2onnx's own: onnxmltools' classifier
    calculators check for onnxmltools' tensor types and reject the skl2onnx ones a pipeline conversion passes."""
    libraries = {type(e).__module__.split(".")[0] for e in inner_estimators(est)} & set(BOOSTING_LIBRARIES)
    if not libraries:
        return
    try:
        from skl2onnx import update_registered_converter
        from skl2onnx.common.shape_calculator import (calculate_linear_classifier_output_shapes,
                                                      calculate_linear_regressor_output_shapes)
    except ImportError as e:
        refuse(f"skl2onnx is incomplete: {_first_line(e)}")
    classifier_options = {"nocl": [True, False], "zipmap": [True, False, "columns"]}
    for library in sorted(libraries):
        try:
            if library == "xgboost":
                from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost as convert
                from xgboost import XGBClassifier as Classifier, XGBRegressor as Regressor
                prefix = "XGBoostXGB"
            else:
                from lightgbm import LGBMClassifier as Classifier, LGBMRegressor as Regressor
                from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm as convert
                prefix = "LightGbmLGBM"
        except ImportError as e:
            refuse(f"{type(est).__name__} needs onnxmltools and {library} "
                   f"(pip install -r tools/requirements-boosting.txt): {_first_line(e)}")
        update_registered_converter(Classifier, prefix + "Classifier", calculate_linear_classifier_output_shapes,
                                    convert, options=classifier_options)
        update_registered_converter(Regressor, prefix + "Regressor", calculate_linear_regressor_output_shapes,
                                    convert)


def _xgboost_positional_names(est):
    """onnxmltools reads XGBoost splits by feature name and understands only the positional "f0", "f1", … that a
    booster fitted on a numpy array has; fitted on a DataFrame (an XGB estimator first in the pipeline), it
    fails with "Unable to interpret 'mean radius'". The ONNX input is positional anyway, so a copy of `est` whose
    boosters forget their feature names is converted; the user's estimator is left as it is."""
    xgb_inside = [e for e in inner_estimators(est) if type(e).__module__.split(".")[0] == "xgboost"]
    if not any(e.get_booster().feature_names for e in xgb_inside):
        return est
    est = copy.deepcopy(est)
    for e in inner_estimators(est):
        if type(e).__module__.split(".")[0] == "xgboost":
            e.get_booster().feature_names = None
    return est


@contextlib.contextmanager
def _missing_tracks_as_ints():
    """skl2onnx 1.20 under scikit-learn 1.9 builds the TreeEnsemble nodes of HistGradientBoosting* with Python /
    numpy booleans among the integers of `nodes_missing_value_tracks_true`, which onnx's make_node rejects
    ("Expected an int, got a boolean"). While those two converters run, their container casts the items of that
    one attribute to int as the node is added (False → 0, True → 1: the values ONNX defines). Nothing else is
    touched, and the registered converters are restored afterwards."""
    from skl2onnx.common._registration import _converter_pool

    def with_int_tracks(convert):
        def run(scope, operator, container):
            add_node = container.add_node

            def add_node_int_tracks(op_type, *args, **attrs):
                if op_type in ("TreeEnsembleClassifier", "TreeEnsembleRegressor"):
                    for key in attrs:
                        if key.endswith("missing_value_tracks_true") and isinstance(attrs[key], (list, tuple)):
                            attrs[key] = [int(v) for v in attrs[key]]
                return add_node(op_type, *args, **attrs)

            container.add_node = add_node_int_tracks
            try:
                return convert(scope, operator, container)
            finally:
                del container.add_node  # back to the class's method
        return run

    aliases = ("SklearnHistGradientBoostingClassifier", "SklearnHistGradientBoostingRegressor")
    saved = {a: _converter_pool[a] for a in aliases if a in _converter_pool}
    try:
        for alias, registered in saved.items():
            _converter_pool[alias] = type(registered)(with_int_tracks(registered), registered.get_allowed_options())
        yield
    finally:
        _converter_pool.update(saved)


def _convert(est, n_columns: int, task: str):
    import onnx
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    _boosting_converters(est)
    est = _xgboost_positional_names(est)
    options = {id(est): {"zipmap": False}} if task == "classification" else None
    try:
        with _missing_tracks_as_ints():
            onx = convert_sklearn(est, initial_types=[("input", FloatTensorType([None, n_columns]))],
                                  options=options, target_opset=TARGET_OPSET)
    except ExportRefused:
        raise
    except Exception as e:  # skl2onnx raises many types; the user needs its message on one line
        refuse(f"skl2onnx cannot convert {type(est).__name__}: {_first_line(e)}")
    onx.graph.name = type(est).__name__  # skl2onnx names the graph with a random uuid; keep exports reproducible
    name_batch_dimension(onx)
    # skl2onnx may list a domain twice in opset_import (seen: "" 17 twice); keep one entry per domain
    one_opset_per_domain(onx)
    try:
        onnx.checker.check_model(onx, full_check=True)
    except Exception as e:
        refuse(f"the converted {type(est).__name__} is not a valid ONNX model: {_first_line(e)}")
    return onx


def name_batch_dimension(onx):
    """Names the first dimension of every graph input and output "N" (skl2onnx leaves it unnamed; tract then
    needs an input fact, and a fixed batch of 1 would serve one row at a time)."""
    for value in list(onx.graph.input) + list(onx.graph.output):
        dims = value.type.tensor_type.shape.dim
        if len(dims) > 0:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = "N"


def one_opset_per_domain(onx):
    """Keeps one opset_import entry per domain, the highest version, in first-seen order."""
    versions = {}
    for op in onx.opset_import:
        versions[op.domain] = max(versions.get(op.domain, 0), op.version)
    del onx.opset_import[:]
    for domain, version in versions.items():
        onx.opset_import.add(domain=domain, version=version)


def _run_onnx(onx, rows: np.ndarray, output: str) -> np.ndarray:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(onx.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return np.asarray(sess.run([output], {"input": rows.astype(np.float32)})[0])


def _close(a, b) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.abs(a - b) <= FIXTURE_TOLERANCE * np.maximum(1.0, np.abs(b))


def _fixture_indices(frame: pd.DataFrame, features: list, n: int) -> list:
    rng = np.random.default_rng(0)
    names = [f["name"] for f in features]
    has_missing = frame[names].isna().any(axis=1).to_numpy()
    with_missing = np.flatnonzero(has_missing)
    complete = np.flatnonzero(~has_missing)
    n = min(n, len(frame))
    k_missing = min(len(with_missing), max(n // 4, 1) if len(with_missing) else 0)
    k_complete = min(len(complete), n - k_missing)
    k_missing = min(len(with_missing), n - k_complete)
    chosen = list(rng.choice(with_missing, k_missing, replace=False)) + list(rng.choice(complete, k_complete, replace=False))
    return sorted(int(i) for i in chosen)


def _baseline(task, target, frame, y_pred, explicit) -> dict:
    from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error

    baseline = {}
    if target is not None:
        if target not in frame.columns:
            refuse(f"--target column {target!r} is not in the reference data")
        y = frame[target]
        keep = ~y.isna().to_numpy()
        if not keep.any():
            refuse(f"--target column {target!r} has no values")
        if task == "classification":
            truth = [str(v) for v in y[keep].tolist()]
            pred = [str(v) for v in np.asarray(y_pred, dtype=object)[keep].tolist()]
            baseline["accuracy"] = float(accuracy_score(truth, pred))
            baseline["f1"] = float(f1_score(truth, pred, average="macro"))
        else:
            try:
                truth = y[keep].astype(np.float64).to_numpy()
            except (TypeError, ValueError):
                refuse(f"--target column {target!r} is not numeric")
            baseline["mae"] = float(mean_absolute_error(truth, np.asarray(y_pred, dtype=np.float64)[keep]))
    allowed = ("accuracy", "f1") if task == "classification" else ("mae",)
    for key, value in (explicit or {}).items():
        if key not in allowed:
            refuse(f"baseline metric {key!r} does not apply to {task} (use {', '.join(allowed)})")
        value = float(value)
        if not math.isfinite(value):
            refuse(f"baseline {key} must be a finite number")
        baseline[key] = value
    return baseline


def _trained_at() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")  # reproducible builds convention
    if epoch:
        return datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc).date().isoformat()
    return datetime.date.today().isoformat()


def derive_features(frame: pd.DataFrame, names: list, trace: Trace, input_order: list):
    """The [[features]] entries, and the frame with each column in its feature's type (category columns as
    object with NaN for missing: what SimpleImputer's default missing_values matches). A feature's type comes
    from the steps (an encoded feature is a category), else from the data (a dropped column)."""
    frame = frame.copy()
    features = []
    for n in names:
        col = frame[n]
        if n in trace.encoded:
            if n in trace.numeric:
                refuse(f"feature {n!r} is both scaled as a number and encoded as a category")
            feat = {"name": n, "type": "category", "categories": trace.encoded[n]}
            frame[n] = pd.Series([np.nan if is_missing(v) else v for v in col.tolist()], index=frame.index,
                                 dtype=object)
            bad = [v for v in frame[n].tolist() if not is_missing(v) and not isinstance(v, str)]
            if bad:
                refuse(f"category feature {n!r} holds non-string values such as {bad[0]!r}")
        elif n in input_order or pd.api.types.is_numeric_dtype(col) or col.isna().all():
            try:
                frame[n] = col.astype(np.float64)
            except (TypeError, ValueError):
                refuse(f"feature {n!r} feeds the model as a number but its values are not numeric")
            feat = {"name": n, "type": "number"}
        else:  # a dropped text column: validated and monitored as a category of what training saw
            values = [v for v in col.tolist() if not is_missing(v)]
            if any(not isinstance(v, str) for v in values):
                refuse(f"dropped column {n!r} holds non-string, non-numeric values")
            feat = {"name": n, "type": "category", "categories": _check_categories(sorted(set(values)), n)}
        if n in trace.imputed:
            v = trace.imputed[n]
            if feat["type"] == "category" and not isinstance(v, str):
                refuse(f"impute value {v!r} for category feature {n!r} is not a string")
            if feat["type"] == "number":
                if isinstance(v, str):
                    refuse(f"impute value {v!r} for number feature {n!r} is not a number")
                if not math.isfinite(float(v)):
                    refuse(f"impute value for feature {n!r} is not finite")
            feat["required"] = False
        elif frame[n].isna().any():
            refuse(f"feature {n!r} has missing values in the reference data but no impute step covers it")
        features.append(feat)
    return features, frame


def build(pipeline, frame: pd.DataFrame, description=None, target=None, baseline=None,
          n_fixtures=DEFAULT_FIXTURES, source=None):
    """Everything `export` writes, computed and checked in memory: (onnx model, manifest, reference, fixtures)."""
    import sklearn
    from sklearn.pipeline import Pipeline

    if not isinstance(pipeline, Pipeline):
        refuse(f"expected a fitted sklearn Pipeline, got {type(pipeline).__name__}")
    est = pipeline.steps[-1][1]
    task = estimator_task(est)
    names = getattr(pipeline, "feature_names_in_", None)
    if names is None:
        refuse("the pipeline was fitted without column names (fit it on a pandas DataFrame)")
    names = [str(n) for n in names]
    if target is not None and target in names:
        refuse(f"--target column {target!r} is an input of the pipeline")
    absent = [n for n in names if n not in frame.columns]
    if absent and type(pipeline.steps[0][1]).__module__.split(".")[0] == "lightgbm":
        refuse(f"LightGBM reports the pipeline's input columns renamed (e.g. {absent[0]!r}: spaces and special "
               "characters replaced), so they cannot be matched to the data: fit it on columns named without them, "
               "or put a preprocessing step (e.g. a ColumnTransformer) before it")
    if absent:
        refuse(f"the reference data lacks the pipeline's input columns {absent}")

    trace, slots = trace_pipeline(pipeline, names)
    for s in slots:
        if s.kind == "value" and s.feature in trace.encoded:
            refuse(f"feature {s.feature!r} reaches the model both encoded and raw")
    seen = set()
    for s in slots:
        if s.feature in seen:
            refuse(f"feature {s.feature!r} feeds the model twice")
        seen.add(s.feature)
    input_order = [s.feature for s in slots]
    n_columns = sum(s.width for s in slots)
    expected = getattr(est, "n_features_in_", n_columns)
    if expected != n_columns:
        refuse(f"{type(est).__name__} expects {expected} columns, the preprocessing yields {n_columns}")

    features, frame = derive_features(frame, names, trace, input_order)
    types = {f["name"]: f["type"] for f in features}
    for step in trace.steps:
        if step["op"] == "impute":
            step["values"] = [str(v) if types[n] == "category" else float(v)
                              for n, v in zip(step["features"], step["values"])]

    manifest = {
        "model": {
            "task": task,
            "description": description or f"{type(est).__name__} exported by inferd tools/export.py",
            "input_order": input_order,
            "card": {
                "trained_at": _trained_at(),
                "training_data": f"{len(frame)} rows" + (f", {source}" if source else ""),
                "estimator": _estimator_summary(est),
                "sklearn_version": sklearn.__version__,
            },
        },
        "features": features,
        "preprocess": trace.steps,
        "outputs": {},
        "monitoring": dict(MONITORING_DEFAULTS),
    }

    # 1. our numpy steps must reproduce scikit-learn's own preprocessing on the whole training frame
    rows_json = records(frame, features)
    try:
        rows = preprocess_frame(manifest, rows_json)
    except ValueError as e:
        refuse(f"the manifest steps cannot process the reference data: {e}")
    x = frame[names]
    if len(pipeline.steps) > 1:
        try:
            sk_rows = pipeline[:-1].transform(x)
        except Exception as e:  # e.g. a category the encoder never saw, with handle_unknown="error"
            refuse(f"the pipeline cannot transform the reference data: {_first_line(e)}")
        sk_rows = sk_rows.toarray() if hasattr(sk_rows, "toarray") else np.asarray(sk_rows)
        sk_rows = np.asarray(sk_rows, dtype=np.float64)
    else:
        sk_rows = x.to_numpy(dtype=np.float64)
    if sk_rows.shape != rows.shape:
        refuse(f"manifest steps yield {rows.shape[1]} columns, scikit-learn {sk_rows.shape[1]}")
    diff = np.abs(rows - sk_rows)
    if not np.all(diff <= PREPROCESS_TOLERANCE * np.maximum(1.0, np.abs(sk_rows))):
        r, c = np.unravel_index(np.argmax(diff), diff.shape)
        refuse(f"manifest steps disagree with scikit-learn's transform (row {r}, column {c}: "
               f"{rows[r, c]!r} vs {sk_rows[r, c]!r})")

    # 2. the estimator alone, converted, must reproduce the pipeline's own predictions
    onx = _convert(est, n_columns, task)
    out_names = [o.name for o in onx.graph.output]
    if task == "classification":
        prob_name = "probabilities" if "probabilities" in out_names else None
        if prob_name is None:
            refuse(f"converted model has no 'probabilities' output (outputs: {out_names})")
        labels = [str(c) for c in est.classes_]
        if len(set(labels)) != len(labels):
            refuse(f"class labels are not distinct as strings: {labels}")
        probs = _run_onnx(onx, rows, prob_name).astype(np.float64)
        if probs.shape != (len(frame), len(labels)):
            refuse(f"probabilities output has shape {probs.shape}, expected {(len(frame), len(labels))}")
        expected = pipeline.predict_proba(x)
        ok = _close(probs, expected)
        if not ok.all():
            r = int(np.flatnonzero(~ok.all(axis=1))[0])
            refuse(f"onnxruntime probabilities disagree with predict_proba on row {r}: "
                   f"{probs[r].tolist()} vs {np.asarray(expected[r]).tolist()}")
        predicted = [labels[i] for i in np.argmax(probs, axis=1)]
        _check_labels(est, pipeline, x, predicted, expected, labels, manifest)
        manifest["outputs"] = {"labels": labels, "probabilities": prob_name}
    else:
        value_name = "variable" if "variable" in out_names else None
        if value_name is None:
            refuse(f"converted model has no 'variable' output (outputs: {out_names})")
        values = _run_onnx(onx, rows, value_name).astype(np.float64)
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
        if values.shape != (len(frame),):
            refuse(f"value output has shape {values.shape}, expected one value per row")
        expected = np.asarray(pipeline.predict(x), dtype=np.float64).reshape(-1)
        ok = _close(values, expected)
        if not ok.all():
            r = int(np.flatnonzero(~ok)[0])
            refuse(f"onnxruntime value disagrees with predict on row {r}: {values[r]!r} vs {expected[r]!r}")
        manifest["outputs"] = {"value": value_name}

    reference, fixtures = finish(manifest, frame, rows_json, probs if task == "classification" else values,
                                 target, baseline, n_fixtures)
    return onx, manifest, reference, fixtures


def _near_tie(probabilities: np.ndarray) -> np.ndarray:
    """Rows whose two highest probabilities are so close that float32 inference may order them either way."""
    top = np.sort(np.asarray(probabilities, dtype=np.float64), axis=1)[:, -2:]
    return top[:, 1] - top[:, 0] <= 2 * FIXTURE_TOLERANCE * np.maximum(1.0, top[:, 1])


def _check_labels(est, pipeline, x, served: list, expected_probs, labels: list, manifest: dict):
    """The label inferd serves (argmax of the exported probabilities, first on ties) must be the pipeline's own
    `predict` on every reference row, but for near-ties. For SVC(probability=True), whose `predict` votes
    instead, it must be the argmax of `predict_proba`; the rows where `predict` says otherwise are counted in
    the card (`label_rule`) and `export` prints them as a note."""
    served = np.asarray(served, dtype=object)
    tie = _near_tie(expected_probs)
    own = np.asarray([str(v) for v in pipeline.predict(x)], dtype=object)
    by_proba = np.asarray(labels, dtype=object)[np.argmax(expected_probs, axis=1)]
    reference = own if predict_follows_probabilities(est) else by_proba
    bad = np.flatnonzero((served != reference) & ~tie)
    if bad.size:
        r = int(bad[0])
        refuse(f"served label (argmax of the onnxruntime probabilities) disagrees with predict on {bad.size} "
               f"reference rows, first row {r}: {served[r]!r} vs {reference[r]!r}")
    if not predict_follows_probabilities(est):
        votes = int(np.sum((own != by_proba) & ~tie))
        manifest["model"]["card"]["label_rule"] = (
            f"argmax of predict_proba; {type(est).__name__}.predict (one-vs-one votes) differs on {votes} of "
            f"{len(own)} reference rows")


def finish(manifest: dict, frame: pd.DataFrame, rows_json: list, outputs: np.ndarray, target=None, baseline=None,
           n_fixtures=DEFAULT_FIXTURES):
    """The card's baseline (into `manifest`), the reference profile and the fixtures, from the model's outputs
    on every reference row: `[N, K]` probabilities in `labels` order (classification) or `[N]` values."""
    features = manifest["features"]
    task = manifest["model"]["task"]
    rows = len(frame)
    if task == "classification":
        labels = manifest["outputs"]["labels"]
        predicted = [labels[i] for i in np.argmax(outputs, axis=1)]
        prediction_profile = category_profile(predicted, labels, rows)
    else:
        predicted = np.asarray(outputs, dtype=np.float64)
        prediction_profile = number_profile(predicted, rows)
    card_baseline = _baseline(task, target, frame, predicted, baseline)
    if card_baseline:
        manifest["model"]["card"]["baseline"] = card_baseline

    reference = {"rows": rows, "features": {}, "prediction": prediction_profile}
    for f in features:
        col = [r[f["name"]] for r in rows_json]
        reference["features"][f["name"]] = (category_profile(col, f["categories"], rows)
                                            if f["type"] == "category" else number_profile(col, rows))

    cases = []
    for i in _fixture_indices(frame, features, n_fixtures):
        if task == "classification":
            p = outputs[i]
            cases.append({"input": rows_json[i], "output": {
                "label": labels[int(np.argmax(p))],
                "probabilities": {label: float(v) for label, v in zip(labels, p)}}})
        else:
            cases.append({"input": rows_json[i], "output": {"value": float(predicted[i])}})
    return reference, {"tolerance": FIXTURE_TOLERANCE, "cases": cases}


def write_manifest(manifest: dict) -> str:
    """The manifest as TOML, `[[features]]` / `[[preprocess]]` always as arrays of tables (tomli-w alone would
    write short ones as inline tables, which reads worse and hides the shape DESIGN.md shows)."""
    import tomli_w

    # no step at all: say so explicitly (an empty array of tables has no [[...]] spelling)
    parts = [] if manifest["preprocess"] else ["preprocess = []\n"]
    parts.append(tomli_w.dumps({"model": manifest["model"]}))
    for key in ("features", "preprocess"):  # entries hold only scalars and arrays
        parts += [f"[[{key}]]\n" + tomli_w.dumps(entry) for entry in manifest[key]]
    parts += [tomli_w.dumps({key: manifest[key]}) for key in ("outputs", "monitoring")]
    return "\n".join(parts)


def write_version(out_dir, onx, manifest: dict, reference: dict, fixtures: dict):
    """Writes a model version directory: model.onnx, inferd.toml, reference.json and fixtures.json."""
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "model.onnx").write_bytes(onx.SerializeToString())
    (out / "inferd.toml").write_text(write_manifest(manifest))
    (out / "reference.json").write_text(json.dumps(reference, indent=1, allow_nan=False) + "\n")
    (out / "fixtures.json").write_text(json.dumps(fixtures, indent=1, allow_nan=False) + "\n")


def export(pipeline, frame: pd.DataFrame, out_dir, description=None, target=None, baseline=None,
           n_fixtures=DEFAULT_FIXTURES, source=None, owner=None) -> dict:
    """Exports `pipeline` (fitted) with `frame` (its training data) into `out_dir`; returns the manifest.

    Raises ExportRefused with a one-line reason when the pipeline cannot be exported faithfully; nothing is
    written then."""
    onx, manifest, reference, fixtures = build(pipeline, frame, description, target, baseline, n_fixtures, source)
    if owner:
        manifest["model"]["card"]["owner"] = owner
    write_version(out_dir, onx, manifest, reference, fixtures)
    return manifest


def _category_columns(pipeline) -> list:
    """Names of the raw columns that reach an encoder, so the CSV reads them as strings ("1" stays "1")."""
    try:
        return list(trace_pipeline(pipeline, [str(n) for n in pipeline.feature_names_in_])[0].encoded)
    except (ExportRefused, AttributeError):
        return []  # build() refuses with the reason


def parse_baseline(items) -> dict:
    out = {}
    for item in items or []:
        for part in item.split(","):
            key, sep, value = part.partition("=")
            try:
                if not sep:
                    raise ValueError
                out[key.strip()] = float(value)
            except ValueError:
                refuse(f"--baseline expects metric=number (e.g. accuracy=0.95), got {part!r}")
    return out


def add_card_arguments(ap: argparse.ArgumentParser):
    """The options both exporters take after their input ones: the card's description and baseline, fixtures."""
    ap.add_argument("--description")
    ap.add_argument("--owner", help="who answers for the model (the card's owner)")
    ap.add_argument("--target", help="label column of the CSV: the card's baseline is computed on it")
    ap.add_argument("--baseline", action="append", help="explicit baseline, e.g. accuracy=0.95 (repeatable)")
    ap.add_argument("--fixtures", type=int, default=DEFAULT_FIXTURES, help="number of fixture cases")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="export", description=__doc__.split("\n\n")[0])
    ap.add_argument("--pipeline", required=True, help="fitted scikit-learn Pipeline saved with joblib")
    ap.add_argument("--reference", required=True, help="training data as CSV with column names")
    ap.add_argument("--out", required=True, help="model version directory, e.g. models/NAME/VERSION")
    add_card_arguments(ap)
    args = ap.parse_args(argv)
    try:
        import joblib

        try:
            pipeline = joblib.load(args.pipeline)
        except Exception as e:
            refuse(f"cannot load {args.pipeline}: {_first_line(e)}")
        if args.fixtures < 0:
            refuse("--fixtures must be >= 0")
        cats = _category_columns(pipeline)
        try:
            frame = pd.read_csv(args.reference, dtype={c: str for c in cats})
        except Exception as e:
            refuse(f"cannot read {args.reference}: {_first_line(e)}")
        manifest = export(pipeline, frame, args.out, description=args.description, target=args.target,
                          baseline=parse_baseline(args.baseline), n_fixtures=args.fixtures,
                          source=pathlib.Path(args.reference).name, owner=args.owner)
    except ExportRefused as e:
        print(f"export: refused: {e}", file=sys.stderr)
        return 2
    if "label_rule" in manifest["model"]["card"]:
        print(f"export: note: served label = {manifest['model']['card']['label_rule']}", file=sys.stderr)
    print(f"export: wrote {args.out} ({manifest['model']['task']}, {len(manifest['features'])} features)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
