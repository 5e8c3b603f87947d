"""Builds the model-family matrix: one small model per common tabular family, exported for inferd.

    python tools/make_matrix.py [--out tests/data/matrix] [--only NAME ...] [--skip-torch] [--list]

Each case fits a scikit-learn `Pipeline` (preprocessing in front: StandardScaler, and SimpleImputer /
OneHotEncoder where the data has missing values or a category) on a dataset bundled with scikit-learn (no
download), and exports it with `export(...)` from tools/export.py into `<out>/<case>/1/` with `N_FIXTURES`
fixture rows: the export proves onnxruntime equal to scikit-learn, and `inferd check <out>/<case>/1` then
proves inferd (tract) equal to onnxruntime on those rows. The `pytorch_mlp` case trains a small torch MLP,
exports it with `torch.onnx.export` (dynamic batch axis) and packages it with tools/export_onnx.py, the path
documented for models from other frameworks; `--skip-torch` leaves it out (CI does not install torch: the
committed copy is what `cargo test` and `inferd check` use).

Datasets (every one has at least N_FIXTURES rows, so the fixture rows are distinct rows):
  breast_cancer          569 rows, 30 features, binary ("malignant" / "benign")
  breast_cancer_missing  the same, ~6% of 4 columns blanked (seeded): SimpleImputer in the pipeline
  digits16               1,797 rows, the 16 highest-variance pixels of the 8x8 digits, classes "0".."9"
  iris_jitter            iris (150 rows) plus one seeded jittered copy of each row (noise 5% of the column's
                         std, rounded to 2 decimals, same class): 300 rows, since iris alone has fewer than 200
  diabetes               442 rows, raw (unscaled) clinical features, regression
  diabetes_mixed         the same with `sex` as a category ("female" / "male") and ~6% of bmi, bp and sex
                         blanked: impute + scale / impute + one-hot in a ColumnTransformer
  synthetic              make_regression(400 rows, 8 features, noise 5, random_state=0)

XGBoost wants classes 0..K-1, so its breast_cancer case is fitted on the integer codes of the sorted labels
(0 = benign, 1 = malignant; served labels "0" / "1").

Deterministic: every dataset tweak, split and estimator is seeded, training runs on one thread
(OMP_NUM_THREADS=1, n_jobs=1), the cards' `trained_at` comes from SOURCE_DATE_EPOCH (set here to a fixed date
unless given) and the script re-executes itself with PYTHONHASHSEED=0 (skl2onnx orders opset_import by set
iteration), so a rerun with the same library versions writes the same bytes. The whole matrix takes about
10-20 s on two cores (`--skip-torch`); `--out DIR` writes it elsewhere (CI: a temporary directory, then
`inferd check DIR/*/1`).
"""
from __future__ import annotations

import os
import sys

FIXED_EPOCH = "1767225600"  # 2026-01-01: the cards' trained_at (SOURCE_DATE_EPOCH, read by export.py)

if __name__ == "__main__":
    # one thread everywhere (reproducible, and CI's machine has two cores shared with other work); set before
    # numpy / scikit-learn load their thread pools
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")
    os.environ.setdefault("SOURCE_DATE_EPOCH", FIXED_EPOCH)
    if os.environ.get("PYTHONHASHSEED") != "0":
        # skl2onnx lists opset_import in set order (string hashes) and export.py keeps that order, so the bytes
        # of some model.onnx files (SVC, SVR, GradientBoosting) would change from run to run: fix the hash seed.
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable] + sys.argv)

import argparse  # noqa: E402
import pathlib  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

TOOLS = pathlib.Path(__file__).resolve().parent
ROOT = TOOLS.parent
sys.path.insert(0, str(TOOLS))
from export import ExportRefused, export  # noqa: E402
from make_samples import blank  # noqa: E402

SEED = 0
N_FIXTURES = 200
DEFAULT_OUT = ROOT / "tests/data/matrix"


# ---------------------------------------------------------------------------------------------------------
# datasets: (frame with the feature columns and a "target" column, feature names)
# ---------------------------------------------------------------------------------------------------------
def breast_cancer():
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer(as_frame=True)
    frame = d.data.copy()
    frame["target"] = np.asarray(d.target_names)[d.target]
    return frame, list(d.data.columns)


def breast_cancer_missing():
    frame, names = breast_cancer()
    return blank(frame, ["mean radius", "mean texture", "worst area", "worst smoothness"], 0.06, SEED + 1), names


def digits16():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = d.data
    var = x.var(axis=0)
    keep = sorted(np.argsort(-var, kind="stable")[:16].tolist())
    names = [f"px_{i // 8}_{i % 8}" for i in keep]
    frame = pd.DataFrame(x[:, keep], columns=names)
    frame["target"] = d.target  # integer classes: labels "0".."9"
    return frame, names


def iris_jitter():
    from sklearn.datasets import load_iris

    d = load_iris(as_frame=True)
    x = d.data
    rng = np.random.default_rng(SEED)
    noise = rng.normal(0.0, 1.0, size=x.shape) * (0.05 * x.std(axis=0).to_numpy())
    jittered = (x + noise).round(2).clip(lower=0.1)
    frame = pd.concat([x, jittered], ignore_index=True)
    frame["target"] = np.concatenate([np.asarray(d.target_names)[d.target]] * 2)
    return frame, list(x.columns)


def diabetes():
    from sklearn.datasets import load_diabetes

    d = load_diabetes(as_frame=True, scaled=False)
    frame = d.data.copy()
    frame["target"] = d.target
    return frame, list(d.data.columns)


def diabetes_mixed():
    frame, names = diabetes()
    frame["sex"] = pd.Series(np.where(frame["sex"] == 1, "female", "male"), index=frame.index, dtype=object)
    return blank(frame, ["bmi", "bp", "sex"], 0.06, SEED + 2), names


def synthetic():
    from sklearn.datasets import make_regression

    x, y = make_regression(n_samples=400, n_features=8, n_informative=6, noise=5.0, random_state=SEED)
    names = [f"x{i}" for i in range(x.shape[1])]
    frame = pd.DataFrame(x, columns=names)
    frame["target"] = y
    return frame, names


DATASETS = {f.__name__: f for f in (breast_cancer, breast_cancer_missing, digits16, iris_jitter, diabetes,
                                    diabetes_mixed, synthetic)}
SOURCES = {
    "breast_cancer": "scikit-learn load_breast_cancer, all 569 rows",
    "breast_cancer_missing": "scikit-learn load_breast_cancer, all 569 rows, ~6% of mean radius / mean texture / "
                             "worst area / worst smoothness blanked (seed 1)",
    "digits16": "scikit-learn load_digits, all 1797 rows, the 16 highest-variance pixels",
    "iris_jitter": "scikit-learn load_iris (150 rows) plus one jittered copy of each row (seed 0, noise 5% of "
                   "each column's std, rounded to 2 decimals): 300 rows",
    "diabetes": "scikit-learn load_diabetes(scaled=False), all 442 rows",
    "diabetes_mixed": "scikit-learn load_diabetes(scaled=False), all 442 rows, sex as a category, ~6% of "
                      "bmi / bp / sex blanked (seed 2)",
    "synthetic": "scikit-learn make_regression(n_samples=400, n_features=8, n_informative=6, noise=5, "
                 "random_state=0)",
}


# ---------------------------------------------------------------------------------------------------------
# preprocessing in front of the estimator
# ---------------------------------------------------------------------------------------------------------
def scaled(model):
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    return Pipeline([("scale", StandardScaler()), ("model", model)])


def imputed_scaled(model):
    """Median impute + scale (for the *_missing datasets)."""
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    return Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler()), ("model", model)])


def mixed(model):
    """diabetes_mixed: numbers imputed and scaled, `sex` imputed and one-hot encoded (unknown → zeros)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = ["age", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
    pre = ColumnTransformer([
        ("num", Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]), numeric),
        ("sex", Pipeline([("impute", SimpleImputer(strategy="most_frequent")),
                          ("onehot", OneHotEncoder(handle_unknown="ignore"))]), ["sex"]),
    ])
    return Pipeline([("pre", pre), ("model", model)])


# ---------------------------------------------------------------------------------------------------------
# the cases: name → (dataset, pipeline factory); estimators small (few, shallow trees; small hidden layers)
# ---------------------------------------------------------------------------------------------------------
def _sk():
    from sklearn import calibration, ensemble, linear_model, neural_network, svm, tree

    return calibration, ensemble, linear_model, neural_network, svm, tree


def sklearn_cases() -> dict:
    calibration, ensemble, lm, nn, svm, tree = _sk()
    return {
        # linear
        "logreg_binary": ("breast_cancer", lambda: scaled(lm.LogisticRegression(max_iter=5000))),
        "logreg_multiclass": ("iris_jitter", lambda: scaled(lm.LogisticRegression(max_iter=5000))),
        "linear_regression": ("diabetes_mixed", lambda: mixed(lm.LinearRegression())),
        "ridge": ("synthetic", lambda: scaled(lm.Ridge(alpha=1.0))),
        "lasso": ("diabetes", lambda: scaled(lm.Lasso(alpha=0.1, max_iter=10000))),
        "linear_svc_calibrated": ("breast_cancer", lambda: scaled(calibration.CalibratedClassifierCV(
            svm.LinearSVC(C=0.1, random_state=SEED), method="sigmoid", ensemble=False))),
        "linear_svc_calibrated_multiclass": ("digits16", lambda: scaled(calibration.CalibratedClassifierCV(
            svm.LinearSVC(C=0.1, random_state=SEED), method="sigmoid", ensemble=False))),
        "linear_svr": ("synthetic", lambda: scaled(svm.LinearSVR(C=1.0, epsilon=0.0, max_iter=20000,
                                                                  random_state=SEED))),
        # trees and forests
        "decision_tree_classifier": ("digits16", lambda: scaled(tree.DecisionTreeClassifier(
            max_depth=6, random_state=SEED))),
        "decision_tree_regressor": ("diabetes_mixed", lambda: mixed(tree.DecisionTreeRegressor(
            max_depth=5, random_state=SEED))),
        "random_forest_classifier": ("breast_cancer_missing", lambda: imputed_scaled(ensemble.RandomForestClassifier(
            n_estimators=10, max_depth=5, random_state=SEED, n_jobs=1))),
        "random_forest_regressor": ("diabetes_mixed", lambda: mixed(ensemble.RandomForestRegressor(
            n_estimators=10, max_depth=5, random_state=SEED, n_jobs=1))),
        "extra_trees_classifier": ("iris_jitter", lambda: scaled(ensemble.ExtraTreesClassifier(
            n_estimators=10, max_depth=5, random_state=SEED, n_jobs=1))),
        "extra_trees_regressor": ("synthetic", lambda: scaled(ensemble.ExtraTreesRegressor(
            n_estimators=10, max_depth=6, random_state=SEED, n_jobs=1))),
        # scikit-learn gradient boosting
        "gradient_boosting_binary": ("breast_cancer", lambda: scaled(ensemble.GradientBoostingClassifier(
            n_estimators=20, max_depth=3, random_state=SEED))),
        "gradient_boosting_multiclass": ("digits16", lambda: scaled(ensemble.GradientBoostingClassifier(
            n_estimators=15, max_depth=3, random_state=SEED))),
        "gradient_boosting_regressor": ("diabetes_mixed", lambda: mixed(ensemble.GradientBoostingRegressor(
            n_estimators=30, max_depth=3, random_state=SEED))),
        "hist_gradient_boosting_binary": ("breast_cancer_missing", lambda: imputed_scaled(
            ensemble.HistGradientBoostingClassifier(max_iter=20, max_leaf_nodes=8, random_state=SEED))),
        "hist_gradient_boosting_multiclass": ("digits16", lambda: scaled(ensemble.HistGradientBoostingClassifier(
            max_iter=15, max_leaf_nodes=8, random_state=SEED))),
        "hist_gradient_boosting_regressor": ("synthetic", lambda: scaled(ensemble.HistGradientBoostingRegressor(
            max_iter=30, max_leaf_nodes=8, random_state=SEED))),
        # XGBoost / LightGBM (scikit-learn wrappers)
        "xgboost_binary": ("breast_cancer", lambda: scaled(_xgb("XGBClassifier"))),
        "xgboost_multiclass": ("digits16", lambda: scaled(_xgb("XGBClassifier", n_estimators=10))),
        "xgboost_regressor": ("diabetes_mixed", lambda: mixed(_xgb("XGBRegressor"))),
        "lightgbm_binary": ("breast_cancer_missing", lambda: imputed_scaled(_lgbm("LGBMClassifier"))),
        "lightgbm_multiclass": ("iris_jitter", lambda: scaled(_lgbm("LGBMClassifier"))),
        "lightgbm_regressor": ("synthetic", lambda: scaled(_lgbm("LGBMRegressor"))),
        # kernel machines
        "svc_rbf": ("breast_cancer", lambda: scaled(svm.SVC(kernel="rbf", probability=True, random_state=SEED))),
        "svc_rbf_multiclass": ("iris_jitter", lambda: scaled(svm.SVC(kernel="rbf", probability=True,
                                                                     random_state=SEED))),
        "svc_calibrated": ("breast_cancer", lambda: scaled(calibration.CalibratedClassifierCV(
            svm.SVC(kernel="rbf"), method="sigmoid", ensemble=False))),
        "svr_rbf": ("diabetes_mixed", lambda: mixed(svm.SVR(kernel="rbf", C=50.0, epsilon=1.0))),
        # neural networks
        "mlp_classifier": ("breast_cancer", lambda: scaled(nn.MLPClassifier(
            hidden_layer_sizes=(16,), max_iter=500, random_state=SEED))),
        "mlp_classifier_multiclass": ("digits16", lambda: scaled(nn.MLPClassifier(
            hidden_layer_sizes=(32,), max_iter=300, random_state=SEED))),
        "mlp_regressor": ("synthetic", lambda: scaled(nn.MLPRegressor(
            hidden_layer_sizes=(16,), learning_rate_init=0.01, max_iter=1000, random_state=SEED))),
    }


def _xgb(cls: str, **kw):
    import xgboost

    params = dict(n_estimators=20, max_depth=3, learning_rate=0.3, n_jobs=1, random_state=SEED,
                  tree_method="hist")
    params.update(kw)
    return getattr(xgboost, cls)(**params)


def _lgbm(cls: str, **kw):
    import lightgbm

    params = dict(n_estimators=20, num_leaves=8, learning_rate=0.1, n_jobs=1, random_state=SEED,
                  deterministic=True, force_row_wise=True, verbose=-1)
    params.update(kw)
    return getattr(lightgbm, cls)(**params)


BOOSTING = ("xgboost_", "lightgbm_")
TORCH_CASES = ("pytorch_mlp",)


def run_sklearn_case(name: str, dataset: str, make, out: pathlib.Path) -> dict:
    frame, names = DATASETS[dataset]()
    if name.startswith("xgboost_") and not pd.api.types.is_numeric_dtype(frame["target"]):
        # XGBoost's own rule: classes 0..K-1 (the labels served become "0", "1", ...; sorted class order)
        classes = sorted(frame["target"].unique())
        frame["target"] = frame["target"].map({c: i for i, c in enumerate(classes)})
    pipe = make()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning; SVC(probability=True)'s FutureWarnings (1.9)
        pipe.fit(frame[names], frame["target"])
        manifest = export(pipe, frame, out / name / "1", target="target", n_fixtures=N_FIXTURES,
                          description=f"inferd model-family matrix: {type(pipe[-1]).__name__} on {dataset}",
                          source=SOURCES[dataset])
    return manifest


# ---------------------------------------------------------------------------------------------------------
# PyTorch: trained here, exported with torch.onnx.export, packaged with tools/export_onnx.py
# ---------------------------------------------------------------------------------------------------------
def run_pytorch_mlp(name: str, out: pathlib.Path) -> dict:
    import io

    import onnx
    import torch
    from sklearn.preprocessing import StandardScaler

    from export_onnx import export_onnx

    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    frame, names = breast_cancer()
    labels = ["malignant", "benign"]
    scaler = StandardScaler().fit(frame[names])
    x = torch.tensor(scaler.transform(frame[names]), dtype=torch.float32)
    y = torch.tensor([labels.index(v) for v in frame["target"]], dtype=torch.long)

    net = torch.nn.Sequential(torch.nn.Linear(len(names), 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    loss_fn = torch.nn.CrossEntropyLoss()
    for _ in range(200):  # full batch, a second or so
        opt.zero_grad()
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
    model = torch.nn.Sequential(net, torch.nn.Softmax(dim=1)).eval()

    buf = io.BytesIO()
    kwargs = dict(input_names=["input"], output_names=["probabilities"], opset_version=17,
                  dynamic_axes={"input": {0: "N"}, "probabilities": {0: "N"}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(model, torch.zeros(1, len(names)), buf, dynamo=False, **kwargs)
        except TypeError:  # torch < 2.5 has no `dynamo` argument (and exports with TorchScript anyway)
            torch.onnx.export(model, torch.zeros(1, len(names)), buf, **kwargs)
    onx = onnx.load_from_string(buf.getvalue())

    spec = {
        "model": {"task": "classification",
                  "description": f"inferd model-family matrix: PyTorch MLP (torch {torch.__version__}) on "
                                 "breast_cancer, exported with torch.onnx.export",
                  "card": {"estimator": f"torch Sequential(Linear({len(names)},16), ReLU, Linear(16,2), Softmax); "
                                        "Adam lr 0.01, 200 full-batch epochs, seed 0"}},
        "features": [{"name": n, "type": "number"} for n in names],
        "preprocess": [{"op": "standard_scale", "features": names, "mean": scaler.mean_.tolist(),
                        "scale": scaler.scale_.tolist()}],
        "outputs": {"labels": labels, "probabilities": "probabilities"},
    }
    return export_onnx(onx, spec, frame, out / name / "1", target="target", n_fixtures=N_FIXTURES,
                       source=SOURCES["breast_cancer"])


# ---------------------------------------------------------------------------------------------------------
def all_case_names() -> list:
    return list(sklearn_cases()) + list(TORCH_CASES)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="make_matrix", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="where <case>/1/ go (default: tests/data/matrix)")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="just these cases")
    ap.add_argument("--skip-torch", action="store_true", help="leave out the PyTorch case (torch not needed)")
    ap.add_argument("--list", action="store_true", help="print the case names and exit")
    args = ap.parse_args(argv)
    os.environ.setdefault("SOURCE_DATE_EPOCH", FIXED_EPOCH)

    cases = sklearn_cases()
    names = all_case_names()
    if args.list:
        print("\n".join(names))
        return 0
    if args.only:
        unknown = [n for n in args.only if n not in names]
        if unknown:
            print(f"make_matrix: unknown cases {unknown} (--list shows them)", file=sys.stderr)
            return 2
        names = [n for n in names if n in args.only]
    if args.skip_torch:
        names = [n for n in names if n not in TORCH_CASES]
    if any(n in TORCH_CASES for n in names):
        try:
            import torch  # noqa: F401
        except ImportError:
            print("make_matrix: the PyTorch case needs torch (pip install torch), or pass --skip-torch",
                  file=sys.stderr)
            return 2
    if any(n.startswith(BOOSTING) for n in names):
        try:
            import lightgbm  # noqa: F401
            import xgboost  # noqa: F401
        except ImportError:
            print("make_matrix: the XGBoost / LightGBM cases need pip install -r tools/requirements-boosting.txt",
                  file=sys.stderr)
            return 2

    out = pathlib.Path(args.out)
    failed = []
    start = time.perf_counter()
    for name in names:
        t0 = time.perf_counter()
        try:
            if name in TORCH_CASES:
                manifest = run_pytorch_mlp(name, out)
                family = "PyTorch MLP"
            else:
                dataset, make = cases[name]
                manifest = run_sklearn_case(name, dataset, make, out)
                family = manifest["model"]["card"]["estimator"].split("(")[0]
        except ExportRefused as e:
            print(f"{name:36s} REFUSED: {e}", flush=True)
            failed.append(name)
            continue
        size = (out / name / "1" / "model.onnx").stat().st_size
        print(f"{name:36s} {family:32s} model.onnx {size / 1024:7.1f} KiB  {time.perf_counter() - t0:5.1f} s",
              flush=True)
    print(f"make_matrix: {len(names) - len(failed)}/{len(names)} cases written to {out} "
          f"in {time.perf_counter() - start:.1f} s")
    if failed:
        print(f"make_matrix: refused: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
