"""tools/export_onnx.py: packaging an existing ONNX file (what torch.onnx.export writes: MatMul/Add/Relu/Softmax
with a dynamic batch axis). The models are built here with onnx.helper, so no deep-learning framework is needed;
expected outputs come from a numpy forward pass of the same weights, not from the tool."""
from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import onnx
import pandas as pd
import pytest
import tomli_w
from onnx import TensorProto, helper, numpy_helper

from test_export import (TOOLS, diabetes, iris, load_version, replay_fixtures,  # noqa: E402
                         wine_with_category_and_missing)

sys.path.insert(0, str(TOOLS))
from export import ExportRefused, preprocess_record  # noqa: E402
from export_onnx import export_onnx  # noqa: E402


def mlp(n_in: int, n_out: int, softmax: bool, out_name: str, batch="batch", seed=0, reshape_batch_1=False):
    """A one-hidden-layer MLP as torch.onnx.export writes it (opset 17), with its weights for a numpy check."""
    rng = np.random.default_rng(seed)
    w1, b1 = rng.normal(size=(n_in, 8)).astype(np.float32), rng.normal(size=8).astype(np.float32)
    w2, b2 = rng.normal(size=(8, n_out)).astype(np.float32), rng.normal(size=n_out).astype(np.float32)
    inits = [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"))]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h0"]), helper.make_node("Add", ["h0", "b1"], ["h1"]),
             helper.make_node("Relu", ["h1"], ["h2"]), helper.make_node("MatMul", ["h2", "w2"], ["o0"])]
    last = "o1"
    nodes.append(helper.make_node("Add", ["o0", "b2"], [last]))
    if reshape_batch_1:  # what a trace without dynamic axes bakes in
        inits.append(numpy_helper.from_array(np.array([1, n_out], dtype=np.int64), "fixed"))
        nodes.append(helper.make_node("Reshape", [last, "fixed"], ["o2"]))
        last = "o2"
    if softmax:
        nodes.append(helper.make_node("Softmax", [last], [out_name], axis=1))
    else:
        nodes.append(helper.make_node("Identity", [last], [out_name]))
    graph = helper.make_graph(nodes, "torch_jit",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, n_in])],
                              [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, [batch, n_out])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="pytorch",
                              producer_version="2.5.0")
    model.ir_version = 8
    onnx.checker.check_model(model)

    def forward(rows):
        h = np.maximum(rows.astype(np.float32) @ w1 + b1, 0) @ w2 + b2
        if softmax:
            e = np.exp(h - h.max(axis=1, keepdims=True))
            return e / e.sum(axis=1, keepdims=True)
        return h
    return model, forward


def iris_spec(x: pd.DataFrame) -> dict:
    """Standard scaling computed from the data, as a user's training script would have done it."""
    return {
        "model": {"task": "classification", "description": "iris MLP from PyTorch", "card": {"owner": "ml-team"}},
        "features": [{"name": c, "type": "number"} for c in x.columns],
        "preprocess": [{"op": "standard_scale", "features": list(x.columns), "mean": x.mean().tolist(),
                        "scale": x.std(ddof=0).tolist()}],
        "outputs": {"labels": ["setosa", "versicolor", "virginica"], "probabilities": "probs"},
    }


def test_classifier_with_preprocessing_spec(tmp_path):
    x, y = iris()
    onx, forward = mlp(4, 3, softmax=True, out_name="probs")
    spec = iris_spec(x)
    manifest = export_onnx(onx, spec, x.assign(species=y), tmp_path, target="species", n_fixtures=20)
    parsed, reference, fixtures = load_version(tmp_path)
    assert parsed == manifest
    assert parsed["outputs"] == {"labels": ["setosa", "versicolor", "virginica"], "probabilities": "probs"}
    assert parsed["model"]["card"]["owner"] == "ml-team"
    assert parsed["model"]["card"]["producer"] == "pytorch 2.5.0"
    assert set(parsed["model"]["card"]["baseline"]) == {"accuracy", "f1"}
    assert list(reference["features"]) == list(x.columns)
    assert reference["prediction"]["categories"] == parsed["outputs"]["labels"]
    written = onnx.load(tmp_path / "model.onnx")
    assert written.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    assert all(o.type.tensor_type.shape.dim[0].dim_param == "N" for o in written.graph.output)
    assert len(fixtures["cases"]) == 20
    replay_fixtures(tmp_path)
    for case in fixtures["cases"]:  # against the weights themselves
        row = preprocess_record(parsed, case["input"])
        want = forward(row[None, :])[0]
        np.testing.assert_allclose(list(case["output"]["probabilities"].values()), want, atol=1e-5, rtol=0)
        assert case["output"]["label"] == parsed["outputs"]["labels"][int(np.argmax(want))]


def test_categories_missing_values_and_input_order(tmp_path):
    """Impute + one-hot from the spec; the model row follows input_order (one-hot columns in place)."""
    x, y = wine_with_category_and_missing()
    numeric = ["alcohol", "magnesium", "proline"]
    spec = {
        "model": {"task": "classification", "input_order": ["hue", *numeric]},
        "features": [{"name": c, "type": "number"} for c in numeric] + [
            {"name": "hue", "type": "category", "categories": ["high", "low", "medium"]}],
        "preprocess": [
            {"op": "impute", "features": ["magnesium", "hue"], "values": [98.0, "medium"]},
            {"op": "standard_scale", "features": numeric, "mean": x[numeric].mean().tolist(),
             "scale": x[numeric].std(ddof=0).tolist()},
            {"op": "one_hot", "features": ["hue"], "categories": ["high", "low", "medium"],
             "handle_unknown": "ignore"}],
        "outputs": {"labels": ["0", "1", "2"]},
    }
    onx, forward = mlp(6, 3, softmax=True, out_name="probabilities", seed=1)
    manifest = export_onnx(onx, spec, x[numeric + ["hue"]], tmp_path, n_fixtures=30)
    assert [f.get("required", True) for f in manifest["features"]] == [True, False, True, False]
    _, _, fixtures = load_version(tmp_path)
    assert any(None in c["input"].values() for c in fixtures["cases"])
    replay_fixtures(tmp_path)
    case = next(c for c in fixtures["cases"] if c["input"]["hue"] == "low")
    row = preprocess_record(manifest, case["input"])
    np.testing.assert_array_equal(row[:3], [0.0, 1.0, 0.0])  # hue first, as input_order says


def test_regressor_from_cli_flags(tmp_path):
    x, y = diabetes()
    onx, forward = mlp(10, 1, softmax=False, out_name="value", seed=2)
    onnx.save(onx, tmp_path / "net.onnx")
    x.assign(progression=y).to_csv(tmp_path / "train.csv", index=False)
    out = tmp_path / "models" / "diabetes_net" / "3"
    res = subprocess.run([sys.executable, str(TOOLS / "export_onnx.py"), "--onnx", tmp_path / "net.onnx",
                          "--reference", tmp_path / "train.csv", "--out", out, "--task", "regression",
                          "--features", ",".join(x.columns), "--value", "value", "--target", "progression",
                          "--fixtures", "10"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    manifest, reference, fixtures = load_version(out)
    assert manifest["outputs"] == {"value": "value"}
    assert manifest["preprocess"] == []
    assert set(manifest["model"]["card"]["baseline"]) == {"mae"}
    assert reference["prediction"]["kind"] == "number"
    replay_fixtures(out)
    for case in fixtures["cases"]:
        want = float(forward(preprocess_record(manifest, case["input"])[None, :])[0, 0])
        assert abs(case["output"]["value"] - want) <= 1e-5 * max(1.0, abs(want))


def test_cli_spec_file_and_refusal_exit_2(tmp_path):
    x, y = iris()
    onx, _ = mlp(4, 3, softmax=False, out_name="probs")  # logits: refused
    onnx.save(onx, tmp_path / "logits.onnx")
    (tmp_path / "spec.toml").write_text(tomli_w.dumps(iris_spec(x)))
    x.to_csv(tmp_path / "train.csv", index=False)
    args = [sys.executable, str(TOOLS / "export_onnx.py"), "--onnx", tmp_path / "logits.onnx", "--reference",
            tmp_path / "train.csv", "--spec", tmp_path / "spec.toml", "--out", tmp_path / "out"]
    res = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert res.stderr.startswith("export_onnx: refused: output 'probs' does not hold probabilities")
    assert res.stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()
    onx, _ = mlp(4, 3, softmax=True, out_name="probs")
    onnx.save(onx, tmp_path / "softmax.onnx")
    args[3] = tmp_path / "softmax.onnx"
    res = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    replay_fixtures(tmp_path / "out")


def _refusals():
    x, _ = iris()
    spec = iris_spec(x)
    two_inputs, _ = mlp(4, 3, True, "probs")
    two_inputs.graph.input.append(helper.make_tensor_value_info("extra", TensorProto.FLOAT, ["batch", 1]))
    wrong_labels = iris_spec(x)
    wrong_labels["outputs"]["labels"] = ["a", "b"]
    reserved = iris_spec(x)
    reserved["features"][0] = {"name": x.columns[0], "type": "category", "categories": ["__other__"]}
    unimputed = iris_spec(x)
    unimputed["features"][0]["required"] = False
    bad_op = iris_spec(x)
    bad_op["preprocess"].append({"op": "pca", "features": [x.columns[0]]})
    return {
        "fixed_batch": (mlp(4, 3, True, "probs", reshape_batch_1=True)[0], spec, "cannot run a batch of 150 rows"),
        "fixed_batch_dim": (mlp(4, 3, True, "probs", batch=4)[0], spec, "fixed batch of 4"),
        "width": (mlp(5, 3, True, "probs")[0], spec, "has 5 columns; the features and steps yield 4"),
        "output_name": (mlp(4, 3, True, "out")[0], spec, "no output 'probs'"),
        "label_count": (mlp(4, 3, True, "probs")[0], wrong_labels, "expected (150, 2) (2 labels)"),
        "two_inputs": (two_inputs, spec, "the model has 2 inputs"),
        "reserved_category": (mlp(4, 3, True, "probs")[0], reserved, "reserves for drift bins"),
        "required_false_without_impute": (mlp(4, 3, True, "probs")[0], unimputed, "no impute step covers it"),
        "unknown_op": (mlp(4, 3, True, "probs")[0], bad_op, "unknown preprocess op 'pca'"),
    }


REFUSALS = _refusals()


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refusal(case, tmp_path):
    onx, spec, reason = REFUSALS[case]
    x, _ = iris()
    with pytest.raises(ExportRefused, match=re.escape(reason)) as err:
        export_onnx(onx, spec, x, tmp_path / "out")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()


def test_missing_values_need_an_impute_step(tmp_path):
    x, _ = iris()
    x = x.copy()
    x.iloc[::7, 1] = np.nan
    with pytest.raises(ExportRefused, match="missing values in the reference data but no impute step"):
        export_onnx(mlp(4, 3, True, "probs")[0], iris_spec(x), x, tmp_path / "out")
