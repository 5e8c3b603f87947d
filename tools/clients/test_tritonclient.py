"""Triton's own HTTP client (tritonclient) against a real inferd: health, metadata, readiness, and inference
in JSON and in binary mode (its default), batched, pinned to a version, as one [N, F] tensor — every answer
equal to the model's fixtures, which onnxruntime computed when the model was exported. And the errors a
client meets, raised by tritonclient from inferd's V2 error bodies."""
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from conftest import fixtures, manifest_features

MODELS = ["breast_cancer", "wine", "diabetes"]


@pytest.fixture(scope="module")
def client(server):
    return triton.InferenceServerClient(url=server)


def inputs_for(model: str, cases: list, binary: bool) -> list:
    """One input per feature, as the model metadata lists them: numbers FP64 (NaN for missing), categories BYTES."""
    inputs = []
    for name, kind in manifest_features(model):
        values = [case["input"].get(name) for case in cases]
        if kind == "number":
            array = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
            tensor = triton.InferInput(name, [len(cases)], "FP64")
        else:
            array = np.array([("" if v is None else v).encode() for v in values], dtype=np.object_)
            tensor = triton.InferInput(name, [len(cases)], "BYTES")
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    return inputs


def check(model: str, result, cases: list, tolerance: float):
    if "value" in cases[0]["output"]:
        values = result.as_numpy("value")
        assert values.dtype == np.float32 and values.shape == (len(cases),)
        want = np.array([c["output"]["value"] for c in cases])
        np.testing.assert_allclose(values, want, rtol=tolerance, atol=tolerance)
        return
    labels = [label.decode() if isinstance(label, bytes) else label for label in result.as_numpy("label")]
    assert labels == [c["output"]["label"] for c in cases]
    probabilities = result.as_numpy("probabilities")
    classes = list(cases[0]["output"]["probabilities"])
    want = np.array([[c["output"]["probabilities"][k] for k in classes] for c in cases])
    assert probabilities.dtype == np.float32 and probabilities.shape == want.shape
    np.testing.assert_allclose(probabilities, want, rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(result.as_numpy("confidence"), want.max(axis=1), rtol=tolerance, atol=tolerance)


def test_server_health_and_metadata(client):
    assert client.is_server_live()
    assert client.is_server_ready()
    metadata = client.get_server_metadata()
    assert metadata["name"] == "inferd"
    assert "binary_tensor_data" in metadata["extensions"]


@pytest.mark.parametrize("model", MODELS)
def test_model_metadata_and_readiness(client, model):
    assert client.is_model_ready(model)
    assert client.is_model_ready(model, model_version="1")
    assert not client.is_model_ready("no_such_model")
    metadata = client.get_model_metadata(model)
    assert metadata["name"] == model and "1" in metadata["versions"]
    features = manifest_features(model)
    assert [i["name"] for i in metadata["inputs"]] == [name for name, _ in features]
    assert [i["datatype"] for i in metadata["inputs"]] == ["FP64" if k == "number" else "BYTES" for _, k in features]
    assert all(i["shape"] == [-1] for i in metadata["inputs"])
    card = metadata["parameters"]["card"]
    assert "training_data" in card and "baseline" in card
    pinned = client.get_model_metadata(model, model_version="1")
    assert pinned["versions"] == ["1"]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("mode", ["json", "binary", "binary in, json out"])
def test_inference_equals_the_fixtures(client, model, mode):
    data = fixtures(model)
    cases = data["cases"]
    inputs = inputs_for(model, cases, binary=mode != "json")
    names = ["value"] if "value" in cases[0]["output"] else ["label", "probabilities", "confidence"]
    outputs = [triton.InferRequestedOutput(n, binary_data=mode == "binary") for n in names]
    result = client.infer(model, inputs, outputs=outputs, request_id="batch-1")
    assert result.get_response()["id"] == "batch-1"
    assert result.get_response()["model_name"] == model
    check(model, result, cases, data["tolerance"])


@pytest.mark.parametrize("model", MODELS)
def test_default_outputs_in_binary_pinned_version_one_row(client, model):
    data = fixtures(model)
    case = data["cases"][3:4]
    result = client.infer(model, inputs_for(model, case, binary=True), model_version="1")
    assert result.get_response()["model_version"] == "1"
    check(model, result, case, data["tolerance"])


def test_one_fp32_matrix_of_all_features(client):
    data = fixtures("breast_cancer")
    cases = data["cases"][:8]
    names = [name for name, _ in manifest_features("breast_cancer")]
    matrix = np.array([[case["input"][n] for n in names] for case in cases], dtype=np.float32)
    tensor = triton.InferInput("features", list(matrix.shape), "FP32")
    tensor.set_data_from_numpy(matrix)
    result = client.infer("breast_cancer", [tensor])
    # FP32 inputs are rounded before preprocessing, so compare labels and allow for the rounding.
    check_labels = [label.decode() for label in result.as_numpy("label")]
    assert check_labels == [c["output"]["label"] for c in cases]
    classes = list(cases[0]["output"]["probabilities"])
    want = np.array([[c["output"]["probabilities"][k] for k in classes] for c in cases])
    np.testing.assert_allclose(result.as_numpy("probabilities"), want, atol=1e-3)


def error_of(call) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as raised:
        call()
    return raised.value


def test_errors_reach_the_client_with_their_reason(client):
    data = fixtures("breast_cancer")
    good = inputs_for("breast_cancer", data["cases"][:2], binary=True)
    assert "no model named 'nope'" in error_of(lambda: client.infer("nope", good)).message()
    assert "no loaded version '9'" in error_of(lambda: client.infer("breast_cancer", good, model_version="9")).message()
    missing = error_of(lambda: client.infer("breast_cancer", good[1:])).message()
    assert "mean radius" in missing and "required" in missing
    wrong = triton.InferInput("mean radius", [2], "BYTES")
    wrong.set_data_from_numpy(np.array([b"a", b"b"], dtype=np.object_))
    assert "is a number" in error_of(lambda: client.infer("breast_cancer", [wrong] + good[1:])).message()
    short = triton.InferInput("mean texture", [1], "FP64")
    short.set_data_from_numpy(np.array([1.0]))
    assert "rows" in error_of(lambda: client.infer("breast_cancer", [good[0], short] + good[2:])).message()
    unknown = triton.InferRequestedOutput("logits")
    assert "unknown output 'logits'" in error_of(lambda: client.infer("breast_cancer", good, outputs=[unknown])).message()
