//! `POST /v2/models/{name}[/versions/{v}]/infer`: an inference request's tensors become raw records (one
//! input per feature, or one `[N, F]` tensor of numbers in `[[features]]` order), run through the model's
//! pipeline like any `/predict` body, and the answers go back as the tensors `label`, `probabilities`,
//! `confidence` (classification) or `value` (regression) — and `id`, the record ids `/feedback` takes, when
//! asked for by name. JSON or binary both ways.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::tensor::{self, DataType, Elements};
use crate::answer::answered_label;
use crate::api::error::ApiError;
use crate::api::serve::Served;
use crate::monitor::version::Predicted;
use crate::preprocess::{RawValue, RecordBatch};
use crate::repository::manifest::{FeatureType, Task};
use crate::repository::ModelVersion;

/// The header that announces binary tensor data: the length of the JSON part that precedes it.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferRequest {
    pub id: Option<String>,
    #[serde(default)]
    pub parameters: Map<String, Value>,
    pub inputs: Vec<InputTensor>,
    pub outputs: Option<Vec<RequestedOutput>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputTensor {
    pub name: String,
    pub shape: Vec<i64>,
    pub datatype: String,
    #[serde(default)]
    pub parameters: Map<String, Value>,
    pub data: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestedOutput {
    pub name: String,
    #[serde(default)]
    pub parameters: Map<String, Value>,
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_request", message)
}

/// A decoded input tensor.
pub struct Input {
    shape: Vec<i64>,
    elements: Elements,
}

/// Splits a request body into its JSON header and binary part (`header_length`: the value of
/// `Inference-Header-Content-Length`, when sent) and decodes every input tensor.
pub fn parse(body: &[u8], header_length: Option<&str>) -> Result<(InferRequest, Vec<(String, Input)>), ApiError> {
    let (json, mut binary) = match header_length {
        None => (body, &[][..]),
        Some(text) => {
            let length: usize = text
                .trim()
                .parse()
                .map_err(|_| bad(format!("Inference-Header-Content-Length must be a byte count, got '{text}'")))?;
            if length > body.len() {
                return Err(bad(format!(
                    "Inference-Header-Content-Length is {length} but the body has only {} bytes",
                    body.len()
                )));
            }
            body.split_at(length)
        }
    };
    let json = nan_as_null(json);
    let request: InferRequest =
        serde_json::from_slice(&json).map_err(|e| bad(format!("the inference request is not valid: {e}")))?;
    let mut inputs = Vec::with_capacity(request.inputs.len());
    for input in &request.inputs {
        let name = &input.name;
        let datatype = DataType::parse(&input.datatype)
            .ok_or_else(|| bad(format!("input '{name}': unsupported datatype '{}'", input.datatype)))?;
        let count = tensor::element_count(&input.shape).map_err(|e| bad(format!("input '{name}': {e}")))?;
        let binary_size = match input.parameters.get("binary_data_size") {
            None => None,
            Some(size) => Some(
                size.as_u64()
                    .ok_or_else(|| bad(format!("input '{name}': parameter binary_data_size must be a byte count")))?
                    as usize,
            ),
        };
        let elements = match (binary_size, &input.data) {
            (Some(_), Some(_)) => return Err(bad(format!("input '{name}': both data and binary_data_size given"))),
            (Some(size), None) => {
                if size > binary.len() {
                    return Err(bad(format!(
                        "input '{name}': binary_data_size {size} exceeds the {} bytes of binary data left",
                        binary.len()
                    )));
                }
                let (mine, rest) = binary.split_at(size);
                binary = rest;
                tensor::from_binary(mine, datatype, count)
            }
            (None, Some(data)) => tensor::from_json(data, datatype),
            (None, None) => return Err(bad(format!("input '{name}': no data and no binary_data_size"))),
        }
        .map_err(|e| bad(format!("input '{name}': {e}")))?;
        if elements.len() != count {
            return Err(bad(format!(
                "input '{name}': shape {:?} holds {count} elements but {} were given",
                input.shape,
                elements.len()
            )));
        }
        inputs.push((name.clone(), Input { shape: input.shape.clone(), elements }));
    }
    if !binary.is_empty() {
        return Err(bad(format!("{} bytes of binary data belong to no input", binary.len())));
    }
    Ok((request, inputs))
}

/// JSON has no NaN, but Triton's clients write `NaN` for a missing number (and Triton reads it): each bare
/// `NaN` token outside strings becomes `null`, which numeric data reads as missing.
fn nan_as_null(json: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if memchr::memmem::find(json, b"NaN").is_none() {
        return std::borrow::Cow::Borrowed(json);
    }
    let mut out = Vec::with_capacity(json.len() + 16);
    let (mut in_string, mut escaped) = (false, false);
    let mut i = 0;
    while i < json.len() {
        let byte = json[i];
        if in_string {
            in_string = escaped || byte != b'"';
            escaped = !escaped && byte == b'\\';
        } else if byte == b'"' {
            in_string = true;
        } else if json[i..].starts_with(b"NaN") {
            out.extend_from_slice(b"null");
            i += 3;
            continue;
        }
        out.push(byte);
        i += 1;
    }
    std::borrow::Cow::Owned(out)
}

/// The raw records the inputs hold: one input per feature (shape `[N]` or `[N, 1]`), or a single `[N, F]`
/// numeric tensor of every feature in `[[features]]` order.
pub fn records(
    model: &ModelVersion,
    inputs: Vec<(String, Input)>,
    max_instances: usize,
) -> Result<RecordBatch, ApiError> {
    let pipeline = &model.pipeline;
    let features = pipeline.features();
    let mut batch = RecordBatch::new(features.len());
    if let [(name, input)] = &inputs[..] {
        if pipeline.feature_index(name).is_none() && input.shape.len() == 2 && features.len() > 1 {
            let rows = matrix_rows(model, name, input)?;
            check_rows(rows, max_instances)?;
            batch.values = match &input.elements {
                Elements::Numbers(values) => numbers(name, values)?,
                _ => unreachable!("matrix_rows accepts numbers only"),
            };
            check_required(model, &batch, rows)?;
            return Ok(batch);
        }
    }
    let mut by_feature: Vec<Option<Input>> = (0..features.len()).map(|_| None).collect();
    for (name, input) in inputs {
        let i = pipeline.feature_index(&name).ok_or_else(|| {
            bad(format!(
                "unknown input '{name}': model '{}' takes one input per feature ({}) or a single [N, {}] tensor",
                model.name,
                features.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", "),
                features.len()
            ))
        })?;
        if by_feature[i].replace(input).is_some() {
            return Err(bad(format!("input '{name}' given twice")));
        }
    }
    let mut rows = None;
    for (feature, input) in features.iter().zip(&by_feature) {
        let Some(input) = input else { continue };
        let name = &feature.name;
        let n = match input.shape[..] {
            [n] | [n, 1] => n as usize,
            _ => return Err(bad(format!("input '{name}': shape {:?}, expected [N] or [N, 1]", input.shape))),
        };
        if *rows.get_or_insert(n) != n {
            return Err(bad(format!("input '{name}' has {n} rows, other inputs {}", rows.unwrap_or(0))));
        }
    }
    let Some(rows) = rows else { return Err(bad("the request has no inputs")) };
    check_rows(rows, max_instances)?;
    let columns: Vec<Vec<RawValue>> = features
        .iter()
        .zip(by_feature)
        .map(|(feature, input)| match input {
            None => Ok(vec![RawValue::Missing; rows]),
            Some(input) => column(&feature.name, feature.kind, input.elements),
        })
        .collect::<Result<_, _>>()?;
    batch.values.reserve(rows * features.len());
    for r in 0..rows {
        batch.values.extend(columns.iter().map(|column| column[r].clone()));
    }
    check_required(model, &batch, rows)?;
    Ok(batch)
}

/// Checks a `[N, F]` tensor of all features and answers N.
fn matrix_rows(model: &ModelVersion, name: &str, input: &Input) -> Result<usize, ApiError> {
    let features = model.pipeline.features();
    let [n, f] = input.shape[..] else { unreachable!("a two-dimensional shape") };
    if f as usize != features.len() {
        return Err(bad(format!(
            "input '{name}': shape {:?}, expected [N, {}] (the features of model '{}' in order)",
            input.shape,
            features.len(),
            model.name
        )));
    }
    if !matches!(input.elements, Elements::Numbers(_)) {
        return Err(bad(format!("input '{name}': an [N, F] tensor must be numeric (FP32 or FP64)")));
    }
    if let Some(category) = features.iter().find(|f| f.kind == FeatureType::Category) {
        return Err(bad(format!(
            "input '{name}': model '{}' has category feature '{}'; send one input per feature",
            model.name, category.name
        )));
    }
    Ok(n as usize)
}

/// A request holds at least one row and at most `max_instances`.
fn check_rows(rows: usize, max_instances: usize) -> Result<(), ApiError> {
    if rows == 0 {
        return Err(bad("the inputs hold no rows"));
    }
    if rows > max_instances {
        return Err(ApiError::too_many("too_many_instances", "rows", rows, max_instances));
    }
    Ok(())
}

/// A number as a raw value: NaN is a missing value (a binary tensor's way to say so).
fn number(x: f64) -> RawValue {
    if x.is_nan() {
        RawValue::Missing
    } else {
        RawValue::Number(x)
    }
}

/// The raw values of input `name`'s numbers: NaN is missing, an infinity is refused (JSON has none, so only
/// binary tensors can send one), whether the input is one feature's column or the whole `[N, F]` matrix.
fn numbers(name: &str, values: &[f64]) -> Result<Vec<RawValue>, ApiError> {
    if let Some(x) = values.iter().find(|x| x.is_infinite()) {
        return Err(bad(format!("input '{name}': {x} is not a finite number")));
    }
    Ok(values.iter().copied().map(number).collect())
}

fn column(name: &str, kind: FeatureType, elements: Elements) -> Result<Vec<RawValue>, ApiError> {
    match (kind, elements) {
        (FeatureType::Number, Elements::Numbers(values)) => numbers(name, &values),
        (FeatureType::Category, Elements::Bytes(values)) => values
            .into_iter()
            .map(|bytes| match String::from_utf8(bytes) {
                // BYTES has no NaN: an empty element is a missing category.
                Ok(text) if text.is_empty() => Ok(RawValue::Missing),
                Ok(text) => Ok(RawValue::Category(Arc::from(text))),
                Err(_) => Err(bad(format!("input '{name}': a category is not valid UTF-8"))),
            })
            .collect(),
        (FeatureType::Number, _) => {
            Err(bad(format!("input '{name}': feature '{name}' is a number: send FP64 or FP32 (or an integer type)")))
        }
        (FeatureType::Category, _) => {
            Err(bad(format!("input '{name}': feature '{name}' is a category: send BYTES (strings)")))
        }
    }
}

fn check_required(model: &ModelVersion, batch: &RecordBatch, rows: usize) -> Result<(), ApiError> {
    let features = model.pipeline.features();
    if let Some((r, i)) = (0..rows)
        .flat_map(|r| (0..features.len()).map(move |i| (r, i)))
        .find(|&(r, i)| features[i].required && batch.record(r)[i] == RawValue::Missing)
    {
        return Err(ApiError::bad_request(
            "missing_feature",
            format!(
                "input '{}': row {r}: the feature is required (missing: NaN for numbers, \"\" for categories)",
                features[i].name
            ),
        ));
    }
    Ok(())
}

/// The outputs a model answers, in metadata order.
pub fn output_names(task: Task) -> &'static [&'static str] {
    match task {
        Task::Classification => &["label", "probabilities", "confidence"],
        Task::Regression => &["value"],
    }
}

/// The response: JSON, or a JSON header followed by the binary outputs (answered with its length).
pub struct InferAnswer {
    pub body: Vec<u8>,
    pub header_length: Option<usize>,
}

#[derive(Serialize)]
struct InferResponse<'a> {
    model_name: &'a str,
    model_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    outputs: Vec<OutputTensor>,
}

#[derive(Serialize)]
struct OutputTensor {
    name: &'static str,
    datatype: &'static str,
    shape: Vec<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<OutputData>,
}

/// Output elements: FP32 numbers (serialised as the `f32` they are, not their `f64` expansion) or BYTES.
#[derive(Serialize)]
#[serde(untagged)]
enum OutputData {
    F32(Vec<f32>),
    Strings(Vec<String>),
}

impl OutputData {
    fn datatype(&self) -> DataType {
        match self {
            OutputData::F32(_) => DataType::F32,
            OutputData::Strings(_) => DataType::Bytes,
        }
    }

    /// Little-endian FP32, or length-prefixed BYTES.
    fn write_binary(&self, out: &mut Vec<u8>) {
        match self {
            OutputData::F32(values) => values.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            OutputData::Strings(values) => values.iter().for_each(|s| tensor::push_bytes_element(out, s.as_bytes())),
        }
    }
}

/// Renders the answers as the requested outputs (all by default; `id` only when asked for).
pub fn respond(model: &ModelVersion, request: &InferRequest, served: &Served) -> Result<InferAnswer, ApiError> {
    let task = model.task();
    let default_binary = request.parameters.get("binary_data_output").and_then(Value::as_bool).unwrap_or(false);
    let answers = output_names(task).iter().chain(&["id"]);
    let requested: Vec<(&'static str, bool)> = match &request.outputs {
        None => output_names(task).iter().map(|name| (*name, default_binary)).collect(),
        Some(outputs) => outputs
            .iter()
            .map(|output| {
                let binary = output.parameters.get("binary_data").and_then(Value::as_bool).unwrap_or(default_binary);
                match answers.clone().find(|name| **name == output.name) {
                    Some(name) => Ok((*name, binary)),
                    None => Err(bad(format!(
                        "unknown output '{}': model '{}' answers {}, and id",
                        output.name,
                        model.name,
                        output_names(task).join(", ")
                    ))),
                }
            })
            .collect::<Result<_, _>>()?,
    };
    let output = &served.output;
    let rows = output.rows;
    let monitor = &model.monitor;
    let answered = &served.predicted;
    let mut binary = Vec::new();
    let mut tensors = Vec::with_capacity(requested.len());
    for (name, as_binary) in requested {
        let (shape, data) = match name {
            "label" => {
                let labels = answered.iter().map(|a| answered_label(monitor, *a, served.fallback).unwrap_or_default());
                (vec![rows], OutputData::Strings(labels.map(str::to_string).collect()))
            }
            "probabilities" => (vec![rows, output.width], OutputData::F32(output.values.clone())),
            "confidence" | "value" => {
                let values = answered.iter().map(|a| match a {
                    Predicted::Class { confidence, .. } => *confidence,
                    Predicted::Value(value) => *value,
                });
                (vec![rows], OutputData::F32(values.collect()))
            }
            _ => (vec![rows], OutputData::Strings(served.ids.iter().map(|id| id.to_string()).collect())),
        };
        let mut tensor = OutputTensor { name, datatype: data.datatype().name(), shape, parameters: None, data: None };
        if as_binary {
            let start = binary.len();
            data.write_binary(&mut binary);
            tensor.parameters = Some(serde_json::json!({"binary_data_size": binary.len() - start}));
        } else {
            tensor.data = Some(data);
        }
        tensors.push(tensor);
    }
    let response = InferResponse {
        model_name: &model.name,
        model_version: &model.version_label,
        id: request.id.as_deref(),
        outputs: tensors,
    };
    let mut body = serde_json::to_vec(&response).map_err(ApiError::internal)?;
    let header_length = (!binary.is_empty()).then_some(body.len());
    body.extend_from_slice(&binary);
    Ok(InferAnswer { body, header_length })
}
