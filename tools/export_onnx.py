"""Package an existing ONNX model (PyTorch, Keras via tf2onnx, hand-built, …) as an inferd model version directory.

    python tools/export_onnx.py --onnx model.onnx --reference train.csv --out models/NAME/VERSION \
        (--spec spec.toml | --task classification|regression --features a,b,c [--labels l1,l2,...]) \
        [--probabilities OUTPUT | --value OUTPUT] [--description TEXT] [--target COLUMN] \
        [--baseline accuracy=0.95] [--fixtures N]

`spec.toml` is an `inferd.toml` without what this tool computes (DESIGN.md §3): `[model]` (task, description,
optional input_order and card), `[[features]]`, optional `[[preprocess]]` steps, `[outputs]` (labels and
probabilities, or value) and optional `[monitoring]`. Without a spec, `--features` names number features fed
to the model as they are, in that order.

What it writes is what tools/export.py writes: `model.onnx` (the same graph, batch dimension renamed "N"),
`inferd.toml`, `reference.json` (drift profile of the CSV and of the model's own predictions on it) and
`fixtures.json`, whose outputs come from onnxruntime on the written `model.onnx`, fed by the manifest's steps.
There is no training framework to compare against here, so the checks are on the contract instead: one float32
input `[N, C]` whose width is what the features and steps yield; a batch of every reference row runs
(a file exported with a fixed batch of 1 is refused: export it with a dynamic batch axis); class probabilities
are in [0, 1] and sum to 1 per row (a model ending in logits is refused: append a Softmax); one value per row
for regression; nothing is written unless every check passes (`export_onnx: refused: …`, exit status 2).

A PyTorch model, for instance, is exported first with a dynamic batch axis (docs/models.md has the recipe):

    torch.onnx.export(model.eval(), torch.zeros(1, n_features), "model.onnx", input_names=["input"],
                      output_names=["probabilities"], dynamic_axes={"input": {0: "N"}, "probabilities": {0: "N"}})
"""
from __future__ import annotations

import argparse
import copy
import pathlib
import sys

import numpy as np
import pandas as pd

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from export import (DEFAULT_FIXTURES, MONITORING_DEFAULTS, RESERVED_CATEGORIES, ExportRefused,  # noqa: E402
                    _first_line, _trained_at, add_card_arguments, finish, name_batch_dimension, parse_baseline,
                    preprocess_frame, records, refuse, write_version)

PREPROCESS_OPS = ("impute", "standard_scale", "min_max_scale", "robust_scale", "clip", "log1p", "one_hot",
                  "ordinal", "passthrough")
STEP_PARAMS = {"impute": ("values",), "standard_scale": ("mean", "scale"), "min_max_scale": ("min", "scale"),
               "robust_scale": ("center", "scale"), "clip": ("lower", "upper")}
PROBABILITY_SUM_TOLERANCE = 1e-4


def spec_from_flags(task: str, features: list, labels=None, probabilities=None, value=None,
                    description=None) -> dict:
    """The spec for the simple case: number features fed to the model as they are, no preprocessing."""
    if task not in ("classification", "regression"):
        refuse(f"--task must be classification or regression, got {task!r}")
    if not features:
        refuse("--features needs at least one feature name (or give --spec)")
    outputs = {}
    if task == "classification":
        if not labels:
            refuse("--labels is required for classification (class index → label, in the model's column order)")
        outputs = {"labels": list(labels), "probabilities": probabilities or "probabilities"}
    else:
        outputs = {"value": value or "variable"}
    model = {"task": task}
    if description:
        model["description"] = description
    return {"model": model, "features": [{"name": f, "type": "number"} for f in features], "outputs": outputs}


def check_spec(spec: dict) -> dict:
    """Validates a spec and returns the manifest without its computed parts (card fields are added later)."""
    spec = copy.deepcopy(spec)
    model = dict(spec.get("model") or {})
    task = model.get("task")
    if task not in ("classification", "regression"):
        refuse(f"[model] task must be classification or regression, got {task!r}")
    features = spec.get("features") or []
    if not features:
        refuse("the spec has no [[features]]")
    names = []
    for f in features:
        name = f.get("name")
        if not isinstance(name, str) or not name:
            refuse(f"a feature has no name: {f}")
        if name in names:
            refuse(f"feature {name!r} is listed twice")
        names.append(name)
        if f.get("type") not in ("number", "category"):
            refuse(f"feature {name!r}: type must be number or category, got {f.get('type')!r}")
        if f["type"] == "category":
            cats = f.get("categories")
            if not cats or not all(isinstance(c, str) for c in cats):
                refuse(f"category feature {name!r} needs categories, a list of strings")
            for c in cats:
                if c in RESERVED_CATEGORIES:
                    refuse(f"feature {name!r} has a category spelled {c!r}, which inferd reserves for drift bins")
    steps = spec.get("preprocess") or []
    imputed = set()
    for step in steps:
        op = step.get("op")
        if op not in PREPROCESS_OPS:
            refuse(f"unknown preprocess op {op!r} (ops: {', '.join(PREPROCESS_OPS)})")
        touched = step.get("features") or []
        unknown = [n for n in touched if n not in names]
        if not touched or unknown:
            refuse(f"preprocess step {op!r} names no feature or unknown features {unknown}")
        for key in STEP_PARAMS.get(op, ()):
            if len(step.get(key) or []) != len(touched):
                refuse(f"preprocess step {op!r}: {key} needs one value per feature ({len(touched)})")
        if op in ("one_hot", "ordinal") and len(touched) != 1:
            refuse(f"preprocess step {op!r} names one feature")
        if op == "impute":
            imputed.update(touched)
            kinds = {f["name"]: f["type"] for f in features}
            for name, v in zip(touched, step["values"]):
                if (kinds[name] == "category") != isinstance(v, str):
                    refuse(f"impute value {v!r} for {kinds[name]} feature {name!r} has the wrong type")
    for f in features:
        required = f.get("required", True)
        if required is False and f["name"] not in imputed:
            refuse(f"feature {f['name']!r} is required = false but no impute step covers it")
        if f["name"] in imputed:
            f["required"] = False
    order = model.get("input_order") or names
    unknown = [n for n in order if n not in names]
    if unknown:
        refuse(f"input_order names unknown features {unknown}")
    outputs = dict(spec.get("outputs") or {})
    if task == "classification":
        labels = outputs.get("labels")
        if not labels or len({str(v) for v in labels}) != len(labels):
            refuse("[outputs] labels must list the classes, distinct, in the probabilities' column order")
        outputs = {"labels": [str(v) for v in labels], "probabilities": outputs.get("probabilities", "probabilities")}
    else:
        outputs = {"value": outputs.get("value", "variable")}
    model.setdefault("description", "ONNX model packaged by inferd tools/export_onnx.py")
    model["card"] = dict(model.get("card") or {})
    monitoring = dict(MONITORING_DEFAULTS)
    monitoring.update(spec.get("monitoring") or {})
    return {"model": model, "features": features, "preprocess": steps, "outputs": outputs,
            "monitoring": monitoring}


def model_width(manifest: dict) -> int:
    """Columns of the model row: one per fed feature, `len(categories)` for a one-hot one (DESIGN.md §3)."""
    widths = {s["features"][0]: len(s["categories"]) for s in manifest["preprocess"] if s["op"] == "one_hot"}
    order = manifest["model"].get("input_order") or [f["name"] for f in manifest["features"]]
    return sum(widths.get(n, 1) for n in order)


def typed_frame(frame: pd.DataFrame, features: list) -> pd.DataFrame:
    """The reference columns in their features' types: numbers as float64, categories as strings, NaN missing."""
    absent = [f["name"] for f in features if f["name"] not in frame.columns]
    if absent:
        refuse(f"the reference data lacks the feature columns {absent}")
    out = frame.copy()
    for f in features:
        col = frame[f["name"]]
        if f["type"] == "number":
            try:
                out[f["name"]] = col.astype(np.float64)
            except (TypeError, ValueError):
                refuse(f"feature {f['name']!r} is a number but its reference values are not numeric")
        else:
            out[f["name"]] = pd.Series([v if isinstance(v, str) else np.nan for v in col.tolist()],
                                       index=frame.index, dtype=object)
            if (col.notna() & out[f["name"]].isna()).any():
                refuse(f"category feature {f['name']!r} holds non-string values")
        if f.get("required", True) and out[f["name"]].isna().any():
            refuse(f"feature {f['name']!r} has missing values in the reference data but no impute step covers it")
    return out


def _session(onx):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(onx.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def check_model(onx, manifest: dict):
    """The model's interface against the manifest: one float32 `[N, C]` input, the named output present."""
    import onnx

    try:
        onnx.checker.check_model(onx)
    except Exception as e:
        refuse(f"not a valid ONNX model: {_first_line(e)}")
    initializers = {i.name for i in onx.graph.initializer}
    inputs = [i for i in onx.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        refuse(f"the model has {len(inputs)} inputs ({[i.name for i in inputs]}); inferd feeds one [N, C] tensor")
    tensor = inputs[0].type.tensor_type
    if tensor.elem_type != onnx.TensorProto.FLOAT:
        refuse(f"input {inputs[0].name!r} is {onnx.TensorProto.DataType.Name(tensor.elem_type)}, not FLOAT")
    dims = tensor.shape.dim
    width = model_width(manifest)
    if len(dims) != 2:
        refuse(f"input {inputs[0].name!r} has rank {len(dims)}; inferd feeds [N, C]")
    if dims[1].HasField("dim_value") and dims[1].dim_value != width:
        refuse(f"input {inputs[0].name!r} has {dims[1].dim_value} columns; the features and steps yield {width}")
    if dims[0].HasField("dim_value") and dims[0].dim_value != 1:
        refuse(f"input {inputs[0].name!r} has a fixed batch of {dims[0].dim_value}; export it with a dynamic batch")
    names = [o.name for o in onx.graph.output]
    wanted = manifest["outputs"].get("probabilities") or manifest["outputs"].get("value")
    if wanted not in names:
        refuse(f"the model has no output {wanted!r} (outputs: {names})")
    return inputs[0].name, wanted


def model_outputs(onx, input_name: str, output: str, rows: np.ndarray, manifest: dict) -> np.ndarray:
    """Runs every reference row as one batch and checks the output's shape and, for classification, that it
    holds probabilities."""
    try:
        out = np.asarray(_session(onx).run([output], {input_name: rows.astype(np.float32)})[0], dtype=np.float64)
    except Exception as e:
        refuse(f"onnxruntime cannot run a batch of {len(rows)} rows (export with a dynamic batch axis): "
               f"{_first_line(e)}")
    n = len(rows)
    if manifest["model"]["task"] == "classification":
        k = len(manifest["outputs"]["labels"])
        if out.shape != (n, k):
            refuse(f"output {output!r} has shape {out.shape} for {n} rows, expected {(n, k)} ({k} labels)")
        if not np.all(np.isfinite(out)) or out.min() < -1e-6 or out.max() > 1 + 1e-6 or \
                np.max(np.abs(out.sum(axis=1) - 1)) > PROBABILITY_SUM_TOLERANCE:
            refuse(f"output {output!r} does not hold probabilities (rows in [0, 1] summing to 1): a model ending "
                   "in logits needs a Softmax (or Sigmoid for one column) before export")
    else:
        if out.ndim == 2 and out.shape[1] == 1:
            out = out[:, 0]
        if out.shape != (n,):
            refuse(f"output {output!r} has shape {out.shape} for {n} rows, expected one value per row")
        if not np.all(np.isfinite(out)):
            refuse(f"output {output!r} has non-finite values on the reference data")
    return out


def build_onnx(onx, spec: dict, frame: pd.DataFrame, target=None, baseline=None, n_fixtures=DEFAULT_FIXTURES,
               source=None):
    """Everything `export_onnx` writes, in memory: (onnx model, manifest, reference, fixtures)."""
    onx = copy.deepcopy(onx)
    manifest = check_spec(spec)
    input_name, output = check_model(onx, manifest)
    name_batch_dimension(onx)
    card = manifest["model"]["card"]
    card.setdefault("trained_at", _trained_at())
    card.setdefault("training_data", f"{len(frame)} rows" + (f", {source}" if source else ""))
    card.setdefault("producer", f"{onx.producer_name} {onx.producer_version}".strip() or "unknown")
    frame = typed_frame(frame, manifest["features"])
    rows_json = records(frame, manifest["features"])
    try:
        rows = preprocess_frame(manifest, rows_json)
    except (ValueError, KeyError, IndexError, TypeError) as e:
        refuse(f"the manifest steps cannot process the reference data: {_first_line(e)}")
    outputs = model_outputs(onx, input_name, output, rows, manifest)
    reference, fixtures = finish(manifest, frame, rows_json, outputs, target, baseline, n_fixtures)
    return onx, manifest, reference, fixtures


def export_onnx(onx, spec: dict, frame: pd.DataFrame, out_dir, target=None, baseline=None,
                n_fixtures=DEFAULT_FIXTURES, source=None) -> dict:
    """Packages `onx` (an onnx.ModelProto) with `spec` and `frame` (reference data) into `out_dir`; returns the
    manifest. Raises ExportRefused with a one-line reason; nothing is written then."""
    onx, manifest, reference, fixtures = build_onnx(onx, spec, frame, target, baseline, n_fixtures, source)
    write_version(out_dir, onx, manifest, reference, fixtures)
    return manifest


def _split(text):
    return [s.strip() for s in text.split(",") if s.strip()] if text else []


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="export_onnx", description=__doc__.split("\n\n")[0])
    ap.add_argument("--onnx", required=True, help="the ONNX model: one float32 input [N, C]")
    ap.add_argument("--reference", required=True, help="training data as CSV with column names")
    ap.add_argument("--out", required=True, help="model version directory, e.g. models/NAME/VERSION")
    ap.add_argument("--spec", help="TOML: an inferd.toml without reference-derived parts")
    ap.add_argument("--task", choices=("classification", "regression"), help="without --spec")
    ap.add_argument("--features", help="without --spec: comma-separated number features, in model column order")
    ap.add_argument("--labels", help="without --spec: comma-separated class labels, in probability column order")
    ap.add_argument("--probabilities", help="name of the probabilities output (default: probabilities)")
    ap.add_argument("--value", help="name of the regression output (default: variable)")
    add_card_arguments(ap)
    args = ap.parse_args(argv)
    try:
        import onnx
        import tomllib

        if args.fixtures < 0:
            refuse("--fixtures must be >= 0")
        if args.spec:
            if args.task or args.features or args.labels:
                refuse("give either --spec or --task/--features/--labels, not both")
            try:
                spec = tomllib.loads(pathlib.Path(args.spec).read_text())
            except Exception as e:
                refuse(f"cannot read {args.spec}: {_first_line(e)}")
            outputs = spec.setdefault("outputs", {})
            if args.probabilities:
                outputs["probabilities"] = args.probabilities
            if args.value:
                outputs["value"] = args.value
            if args.description:
                spec.setdefault("model", {})["description"] = args.description
        else:
            if not args.task:
                refuse("give --spec, or --task and --features")
            spec = spec_from_flags(args.task, _split(args.features), _split(args.labels), args.probabilities,
                                   args.value, args.description)
        try:
            onx = onnx.load(args.onnx)
        except Exception as e:
            refuse(f"cannot load {args.onnx}: {_first_line(e)}")
        categories = [f.get("name") for f in spec.get("features") or [] if f.get("type") == "category"]
        try:
            frame = pd.read_csv(args.reference, dtype={c: str for c in categories})
        except Exception as e:
            refuse(f"cannot read {args.reference}: {_first_line(e)}")
        manifest = export_onnx(onx, spec, frame, args.out, target=args.target,
                               baseline=parse_baseline(args.baseline), n_fixtures=args.fixtures,
                               source=pathlib.Path(args.reference).name)
    except ExportRefused as e:
        print(f"export_onnx: refused: {e}", file=sys.stderr)
        return 2
    print(f"export_onnx: wrote {args.out} ({manifest['model']['task']}, {len(manifest['features'])} features)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
