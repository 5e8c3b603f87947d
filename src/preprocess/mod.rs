//! Shared preprocessing: the manifest's `[[preprocess]]` steps compiled once per model version into a
//! [`Pipeline`] that turns named raw records into the model's `f32` input rows.
//!
//! The formulas are scikit-learn's fitted transformers, operation for operation in `f64` (so results are
//! bit-identical to scikit-learn's own `transform`), cast to `f32` only when written into the model row:
//! `StandardScaler` is `(x - mean) / scale`, `MinMaxScaler` is `x * scale + min`, `RobustScaler` is
//! `(x - center) / scale`, `OneHotEncoder(handle_unknown="ignore")` writes all zeros for an unseen category.
//!
//! The same pipeline serves every endpoint and `inferd check`, and [`Pipeline::parse_instance`] is the one
//! place where a JSON record becomes typed raw values ([`Pipeline::parse_instance_json`] reading its text), so every caller refuses bad input the same way.

mod json;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde_json::Value;

pub(crate) use json::refuse_json_types;
pub use json::{fail, InstanceError, InstanceSeed, KeySeed};

use crate::repository::manifest::{FeatureSpec, FeatureType, HandleUnknown, ImputeValue, Manifest, StepSpec};

/// One raw feature value as the client sent it (before preprocessing). Raw values are what monitoring sees.
#[derive(Debug, Clone, PartialEq)]
pub enum RawValue {
    Missing,
    Number(f64),
    Category(Arc<str>),
}

/// Raw records of one request, row-major: `len() / width` records of `width` features in `[[features]]` order.
#[derive(Debug, Clone, Default)]
pub struct RecordBatch {
    pub width: usize,
    pub values: Vec<RawValue>,
}

impl RecordBatch {
    pub fn new(width: usize) -> RecordBatch {
        RecordBatch { width, values: Vec::new() }
    }

    pub fn len(&self) -> usize {
        self.values.len().checked_div(self.width).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn record(&self, index: usize) -> &[RawValue] {
        &self.values[index * self.width..(index + 1) * self.width]
    }
}

/// Why a JSON record could not become raw values.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordErrorKind {
    /// A value of the wrong JSON type (`expected` says what was wanted).
    WrongType { expected: &'static str, got: &'static str },
    /// A required feature is absent or null.
    Missing,
    /// A named feature the manifest does not declare.
    Unknown,
    /// A positional instance with the wrong number of values.
    WrongLength { expected: usize, got: usize },
    /// An instance that is neither an object nor an array.
    NotAnInstance { got: &'static str },
    /// Text that is not valid JSON.
    Malformed(String),
}

/// A record error, with the JSON path of the offending field (`instances[3].mean radius`).
#[derive(Debug, Clone, PartialEq)]
pub struct RecordError {
    pub field: String,
    pub kind: RecordErrorKind,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            RecordErrorKind::WrongType { expected, got } => {
                write!(f, "{}: expected {expected}, got {got}", self.field)
            }
            RecordErrorKind::Missing => write!(f, "{}: feature is required", self.field),
            RecordErrorKind::Unknown => write!(f, "{}: unknown feature", self.field),
            RecordErrorKind::WrongLength { expected, got } => {
                write!(f, "{}: expected {expected} values in manifest feature order, got {got}", self.field)
            }
            RecordErrorKind::NotAnInstance { got } => {
                write!(f, "{}: expected an object of named features or an array of values, got {got}", self.field)
            }
            RecordErrorKind::Malformed(message) => write!(f, "{}: not valid JSON: {message}", self.field),
        }
    }
}

/// Why preprocessing refused a (well-typed) record.
#[derive(Debug, Clone, PartialEq)]
pub enum PreprocessErrorKind {
    /// A category the encoder does not know, with `handle_unknown = "error"`.
    UnknownCategory { value: String, expected: Vec<String> },
    /// A step produced NaN or infinity (e.g. `log1p` of a value ≤ -1).
    NonFinite { op: &'static str, value: f64 },
    /// A preprocessed value beyond what the model's `f32` input holds (about ±3.4e38).
    BeyondModelRange { value: f64 },
}

#[derive(Debug, Clone, PartialEq)]
pub struct PreprocessError {
    /// Index of the record in its batch.
    pub record: usize,
    pub feature: String,
    pub kind: PreprocessErrorKind,
}

impl fmt::Display for PreprocessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            PreprocessErrorKind::UnknownCategory { value, expected } => write!(
                f,
                "instance {}: feature '{}': unknown category '{value}', expected one of {expected:?}",
                self.record, self.feature
            ),
            PreprocessErrorKind::NonFinite { op, value } => write!(
                f,
                "instance {}: feature '{}': value {value} is outside the domain of the '{op}' step",
                self.record, self.feature
            ),
            PreprocessErrorKind::BeyondModelRange { value } => write!(
                f,
                "instance {}: feature '{}': value {value:e} (after preprocessing) is beyond the range of the model's \
                 float32 input",
                self.record, self.feature
            ),
        }
    }
}

/// A manifest whose steps do not fit its features; the message names the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct CompileError {
    pub field: String,
    pub message: String,
}

fn compile_error(field: impl Into<String>, message: impl Into<String>) -> CompileError {
    CompileError { field: field.into(), message: message.into() }
}

#[derive(Debug, Clone, PartialEq)]
enum NumericOp {
    Standard { mean: f64, scale: f64 },
    MinMax { min: f64, scale: f64 },
    Robust { center: f64, scale: f64 },
    Clip { lower: f64, upper: f64 },
    Log1p,
}

impl NumericOp {
    fn name(&self) -> &'static str {
        match self {
            NumericOp::Standard { .. } => "standard_scale",
            NumericOp::MinMax { .. } => "min_max_scale",
            NumericOp::Robust { .. } => "robust_scale",
            NumericOp::Clip { .. } => "clip",
            NumericOp::Log1p => "log1p",
        }
    }

    /// scikit-learn's arithmetic, in its order of operations.
    fn apply(&self, x: f64) -> f64 {
        match *self {
            NumericOp::Standard { mean, scale } => (x - mean) / scale,
            NumericOp::MinMax { min, scale } => x * scale + min,
            NumericOp::Robust { center, scale } => (x - center) / scale,
            NumericOp::Clip { lower, upper } => x.max(lower).min(upper),
            NumericOp::Log1p => x.ln_1p(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Encoder {
    /// A number written as one column.
    Number,
    OneHot {
        categories: Vec<String>,
        handle_unknown: HandleUnknown,
    },
    Ordinal {
        categories: Vec<String>,
        unknown_value: Option<f64>,
    },
}

impl Encoder {
    fn width(&self) -> usize {
        match self {
            Encoder::OneHot { categories, .. } => categories.len(),
            _ => 1,
        }
    }
}

/// Everything that happens to one feature, in order.
#[derive(Debug, Clone, Default)]
struct FeatureChain {
    impute: Option<ImputeValue>,
    numeric: Vec<NumericOp>,
    encoder: Option<Encoder>,
}

/// One feature's slot in the model row.
#[derive(Debug, Clone)]
struct Column {
    feature: usize,
    offset: usize,
    chain: FeatureChain,
}

/// A manifest's preprocessing, compiled: validates raw records and writes model rows.
#[derive(Debug, Clone)]
pub struct Pipeline {
    features: Vec<FeatureSpec>,
    index: HashMap<String, usize, foldhash::fast::RandomState>,
    columns: Vec<Column>,
    width: usize,
}

impl Pipeline {
    /// Checks the manifest's features, steps and input order against each other and compiles them.
    pub fn compile(manifest: &Manifest) -> Result<Pipeline, CompileError> {
        let features = manifest.features.clone();
        if features.is_empty() {
            return Err(compile_error("features", "at least one feature is required"));
        }
        let mut index = HashMap::default();
        for (i, feature) in features.iter().enumerate() {
            if feature.name.is_empty() {
                return Err(compile_error(format!("features[{i}].name"), "must not be empty"));
            }
            if index.insert(feature.name.clone(), i).is_some() {
                return Err(compile_error(
                    format!("features[{i}].name"),
                    format!("duplicate feature '{}'", feature.name),
                ));
            }
            if feature.kind == FeatureType::Number && !feature.categories.is_empty() {
                return Err(compile_error(
                    format!("features[{i}].categories"),
                    "only category features have categories",
                ));
            }
        }

        let mut chains = vec![FeatureChain::default(); features.len()];
        for (s, step) in manifest.preprocess.iter().enumerate() {
            compile_step(s, step, &features, &index, &mut chains)?;
        }

        for (i, feature) in features.iter().enumerate() {
            let imputed = chains[i].impute.is_some();
            if imputed == feature.required {
                let message = if imputed {
                    "an impute step covers this feature, so it must be declared `required = false`"
                } else {
                    "`required = false` needs an impute step that covers this feature"
                };
                return Err(compile_error(format!("features[{i}].required"), message));
            }
        }

        let mut columns = Vec::new();
        let mut offset = 0;
        let mut seen = vec![false; features.len()];
        for (position, name) in manifest.input_order().iter().enumerate() {
            let field = format!("model.input_order[{position}]");
            let &feature = index.get(name).ok_or_else(|| compile_error(&field, format!("unknown feature '{name}'")))?;
            if std::mem::replace(&mut seen[feature], true) {
                return Err(compile_error(&field, format!("feature '{name}' listed twice")));
            }
            let mut chain = chains[feature].clone();
            let encoder = match (&chain.encoder, features[feature].kind) {
                (Some(encoder), _) => encoder.clone(),
                (None, FeatureType::Number) => Encoder::Number,
                (None, FeatureType::Category) => {
                    return Err(compile_error(
                        &field,
                        format!("category feature '{name}' needs a one_hot or ordinal step to enter the model"),
                    ))
                }
            };
            let width = encoder.width();
            chain.encoder = Some(encoder);
            columns.push(Column { feature, offset, chain });
            offset += width;
        }
        if columns.is_empty() {
            return Err(compile_error("model.input_order", "the model needs at least one input column"));
        }

        Ok(Pipeline { features, index, columns, width: offset })
    }

    /// The position of a feature in `[[features]]` order, by name.
    pub fn feature_index(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// The only categories a category feature accepts, where its encoder refuses unseen ones (`None`: any).
    pub fn accepted_categories(&self, feature: usize) -> Option<&[String]> {
        self.columns.iter().filter(|c| c.feature == feature).find_map(|c| match &c.chain.encoder {
            Some(Encoder::OneHot { categories, handle_unknown: HandleUnknown::Error })
            | Some(Encoder::Ordinal { categories, unknown_value: None }) => Some(categories.as_slice()),
            _ => None,
        })
    }

    /// Raw features in `[[features]]` order.
    pub fn features(&self) -> &[FeatureSpec] {
        &self.features
    }

    /// Number of `f32` columns in a model row.
    pub fn row_width(&self) -> usize {
        self.width
    }

    /// Parses one JSON instance (an object by feature name, or an array in `[[features]]` order) and appends
    /// its raw values to `batch`. `path` is the instance's JSON path, used in errors (`instances[3]`).
    pub fn parse_instance(&self, value: &Value, path: &str, batch: &mut RecordBatch) -> Result<(), RecordError> {
        // One parser for every caller: the value goes back to text (a JSON tree always serialises).
        let text = value.to_string();
        self.parse_instance_json(&text, &|| path.to_string(), batch).map_err(|error| match error {
            InstanceError::Record(error) => error,
            InstanceError::Json(error) => {
                RecordError { field: path.to_string(), kind: RecordErrorKind::Malformed(error.to_string()) }
            }
        })
    }

    /// Appends one record given as text fields (a CSV row): `fields[i]` is the text of feature `i`, or `None`
    /// where the input has no column for it. Empty text is missing (as pandas writes NaN); `field` names a
    /// feature's column in errors.
    pub fn parse_text_record(
        &self,
        fields: &[Option<&str>],
        field: impl Fn(usize) -> String,
        batch: &mut RecordBatch,
    ) -> Result<(), RecordError> {
        all_or_nothing(batch, |batch| self.parse_text_values(fields, &field, batch))
    }

    fn parse_text_values(
        &self,
        fields: &[Option<&str>],
        field: &impl Fn(usize) -> String,
        batch: &mut RecordBatch,
    ) -> Result<(), RecordError> {
        let start = batch.values.len();
        for (i, spec) in self.features.iter().enumerate() {
            let text = fields.get(i).copied().flatten().map(str::trim).unwrap_or("");
            let value = match spec.kind {
                _ if text.is_empty() => RawValue::Missing,
                FeatureType::Number => match text.parse::<f64>() {
                    Ok(x) if x.is_finite() => RawValue::Number(x),
                    Ok(x) if x.is_nan() => RawValue::Missing,
                    _ => {
                        return Err(RecordError {
                            field: field(i),
                            kind: RecordErrorKind::WrongType { expected: "a finite number", got: "text" },
                        })
                    }
                },
                FeatureType::Category => RawValue::Category(Arc::from(text)),
            };
            batch.values.push(value);
        }
        self.check_required(&batch.values[start..], field)
    }

    fn check_required(&self, record: &[RawValue], field: impl Fn(usize) -> String) -> Result<(), RecordError> {
        for (i, value) in record.iter().enumerate() {
            if *value == RawValue::Missing && self.features[i].required {
                return Err(RecordError { field: field(i), kind: RecordErrorKind::Missing });
            }
        }
        Ok(())
    }

    /// Writes every record of `batch` as a model row into a new row-major `f32` buffer.
    pub fn transform(&self, batch: &RecordBatch) -> Result<Vec<f32>, PreprocessError> {
        self.transform_as(batch)
    }

    /// The same rows in `f64`, before the cast to the model's `f32` (what scikit-learn's `transform` gives).
    pub fn transform_f64(&self, batch: &RecordBatch) -> Result<Vec<f64>, PreprocessError> {
        self.transform_as(batch)
    }

    fn transform_as<T: RowValue>(&self, batch: &RecordBatch) -> Result<Vec<T>, PreprocessError> {
        let mut rows = vec![T::ZERO; batch.len() * self.width];
        for (r, row) in rows.chunks_exact_mut(self.width.max(1)).enumerate() {
            self.transform_record(batch.record(r), row).map_err(|(feature, kind)| PreprocessError {
                record: r,
                feature,
                kind,
            })?;
        }
        Ok(rows)
    }

    /// Transforms one record (raw values in `[[features]]` order) into `row` (`row_width()` columns).
    fn transform_record<T: RowValue>(
        &self,
        record: &[RawValue],
        row: &mut [T],
    ) -> Result<(), (String, PreprocessErrorKind)> {
        for column in &self.columns {
            let raw = match (&record[column.feature], &column.chain.impute) {
                (RawValue::Missing, Some(ImputeValue::Number(v))) => RawValue::Number(*v),
                (RawValue::Missing, Some(ImputeValue::Category(c))) => RawValue::Category(Arc::from(c.as_str())),
                (value, _) => value.clone(),
            };
            let name = || self.features[column.feature].name.clone();
            let out = &mut row[column.offset..column.offset + column.chain.encoder.as_ref().map_or(1, Encoder::width)];
            match (&raw, column.chain.encoder.as_ref().unwrap_or(&Encoder::Number)) {
                (RawValue::Number(x), Encoder::Number) => {
                    let mut x = *x;
                    for op in &column.chain.numeric {
                        let y = op.apply(x);
                        if !y.is_finite() {
                            return Err((name(), PreprocessErrorKind::NonFinite { op: op.name(), value: x }));
                        }
                        x = y;
                    }
                    if !T::holds(x) {
                        return Err((name(), PreprocessErrorKind::BeyondModelRange { value: x }));
                    }
                    out[0] = T::from_f64(x);
                }
                (RawValue::Category(c), Encoder::OneHot { categories, handle_unknown }) => {
                    out.fill(T::ZERO);
                    match categories.iter().position(|k| **k == **c) {
                        Some(k) => out[k] = T::ONE,
                        None if *handle_unknown == HandleUnknown::Ignore => {}
                        None => return Err((name(), unknown_category(c, categories))),
                    }
                }
                (RawValue::Category(c), Encoder::Ordinal { categories, unknown_value }) => {
                    out[0] = match (categories.iter().position(|k| **k == **c), unknown_value) {
                        (Some(k), _) => T::from_f64(k as f64),
                        (None, Some(code)) => T::from_f64(*code),
                        (None, None) => return Err((name(), unknown_category(c, categories))),
                    };
                }
                // compile() guarantees required/impute coverage and encoders matching feature types, and
                // parse_instance() guarantees value types, so these combinations cannot reach here.
                (raw, encoder) => unreachable!("pipeline invariant broken: {raw:?} into {encoder:?}"),
            }
        }
        Ok(())
    }
}

/// Runs `parse`, which appends one record to `batch`; on error the batch is left as it was, so a refused record
/// never leaves partial values behind.
fn all_or_nothing(
    batch: &mut RecordBatch,
    parse: impl FnOnce(&mut RecordBatch) -> Result<(), RecordError>,
) -> Result<(), RecordError> {
    let start = batch.values.len();
    let result = parse(batch);
    if result.is_err() {
        batch.values.truncate(start);
    }
    result
}

/// A model-row element: `f32` for the model, `f64` to compare with scikit-learn before the cast.
trait RowValue: Copy {
    const ZERO: Self;
    const ONE: Self;
    fn from_f64(value: f64) -> Self;
    /// Whether a finite `value` stays finite in this type.
    fn holds(value: f64) -> bool;
}

impl RowValue for f32 {
    const ZERO: f32 = 0.0;
    const ONE: f32 = 1.0;
    fn from_f64(value: f64) -> f32 {
        value as f32
    }
    fn holds(value: f64) -> bool {
        (value as f32).is_finite()
    }
}

impl RowValue for f64 {
    const ZERO: f64 = 0.0;
    const ONE: f64 = 1.0;
    fn from_f64(value: f64) -> f64 {
        value
    }
    fn holds(_: f64) -> bool {
        true
    }
}

fn unknown_category(value: &str, categories: &[String]) -> PreprocessErrorKind {
    PreprocessErrorKind::UnknownCategory { value: value.to_string(), expected: categories.to_vec() }
}

/// The JSON type of a value, as error messages name it.
pub fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn compile_step(
    s: usize,
    step: &StepSpec,
    features: &[FeatureSpec],
    index: &HashMap<String, usize, foldhash::fast::RandomState>,
    chains: &mut [FeatureChain],
) -> Result<(), CompileError> {
    let op = step.op_name();
    let names = step.features();
    let field = |key: &str| format!("preprocess[{s}].{key}");
    if names.is_empty() {
        return Err(compile_error(field("features"), format!("a {op} step must name at least one feature")));
    }
    let check_len = |key: &str, len: usize| {
        if len == names.len() {
            Ok(())
        } else {
            Err(compile_error(field(key), format!("expected {} values (one per feature), got {len}", names.len())))
        }
    };
    let mut targets = Vec::with_capacity(names.len());
    for name in names {
        let &i =
            index.get(name).ok_or_else(|| compile_error(field("features"), format!("unknown feature '{name}'")))?;
        if targets.contains(&i) {
            return Err(compile_error(field("features"), format!("feature '{name}' listed twice")));
        }
        targets.push(i);
    }
    let numeric_only = |chain: &FeatureChain, i: usize| -> Result<(), CompileError> {
        if features[i].kind != FeatureType::Number {
            return Err(compile_error(
                field("features"),
                format!("{op} applies to numbers, but '{}' is a category", features[i].name),
            ));
        }
        if chain.encoder.is_some() {
            return Err(compile_error(field("op"), format!("{op} after an encoder on '{}'", features[i].name)));
        }
        Ok(())
    };
    let single_encoder = |categories: &[String]| -> Result<usize, CompileError> {
        if targets.len() != 1 {
            return Err(compile_error(field("features"), format!("a {op} step names exactly one feature")));
        }
        let i = targets[0];
        if features[i].kind != FeatureType::Category {
            return Err(compile_error(
                field("features"),
                format!("{op} applies to categories, but '{}' is a number", features[i].name),
            ));
        }
        if chains[i].encoder.is_some() {
            return Err(compile_error(field("op"), format!("'{}' already has an encoder", features[i].name)));
        }
        if categories.is_empty() {
            return Err(compile_error(field("categories"), "at least one category is required"));
        }
        Ok(i)
    };
    let push_numeric = |chains: &mut [FeatureChain], make: &dyn Fn(usize) -> NumericOp| -> Result<(), CompileError> {
        for (k, &i) in targets.iter().enumerate() {
            numeric_only(&chains[i], i)?;
            chains[i].numeric.push(make(k));
        }
        Ok(())
    };
    let finite = |key: &str, values: &[f64], nonzero: bool| -> Result<(), CompileError> {
        check_len(key, values.len())?;
        match values.iter().position(|v| !v.is_finite() || (nonzero && *v == 0.0)) {
            Some(k) => Err(compile_error(
                format!("{}[{k}]", field(key)),
                if nonzero { "must be finite and non-zero" } else { "must be finite" },
            )),
            None => Ok(()),
        }
    };
    match step {
        StepSpec::Impute { values, .. } => {
            check_len("values", values.len())?;
            for (k, &i) in targets.iter().enumerate() {
                let chain = &chains[i];
                if chain.impute.is_some() || !chain.numeric.is_empty() || chain.encoder.is_some() {
                    return Err(compile_error(
                        field("features"),
                        format!("impute must be the first step on '{}', and only one", features[i].name),
                    ));
                }
                let fits =
                    matches!(
                        (&values[k], features[i].kind),
                        (ImputeValue::Number(v), FeatureType::Number) if v.is_finite()
                    ) || matches!((&values[k], features[i].kind), (ImputeValue::Category(_), FeatureType::Category));
                if !fits {
                    return Err(compile_error(
                        format!("{}[{k}]", field("values")),
                        format!(
                            "the value for '{}' must be a finite number for a number feature, a string for a category",
                            features[i].name
                        ),
                    ));
                }
                chains[i].impute = Some(values[k].clone());
            }
        }
        StepSpec::StandardScale { mean, scale, .. } => {
            finite("mean", mean, false)?;
            finite("scale", scale, true)?;
            push_numeric(chains, &|k| NumericOp::Standard { mean: mean[k], scale: scale[k] })?;
        }
        StepSpec::MinMaxScale { min, scale, .. } => {
            finite("min", min, false)?;
            finite("scale", scale, false)?;
            push_numeric(chains, &|k| NumericOp::MinMax { min: min[k], scale: scale[k] })?;
        }
        StepSpec::RobustScale { center, scale, .. } => {
            finite("center", center, false)?;
            finite("scale", scale, true)?;
            push_numeric(chains, &|k| NumericOp::Robust { center: center[k], scale: scale[k] })?;
        }
        StepSpec::Clip { lower, upper, .. } => {
            check_len("lower", lower.len())?;
            check_len("upper", upper.len())?;
            if let Some(k) = (0..lower.len()).find(|&k| lower[k].is_nan() || upper[k].is_nan() || lower[k] > upper[k]) {
                return Err(compile_error(format!("{}[{k}]", field("lower")), "lower must not exceed upper"));
            }
            push_numeric(chains, &|k| NumericOp::Clip { lower: lower[k], upper: upper[k] })?;
        }
        StepSpec::Log1p { .. } => push_numeric(chains, &|_| NumericOp::Log1p)?,
        StepSpec::OneHot { categories, handle_unknown, .. } => {
            let i = single_encoder(categories)?;
            chains[i].encoder =
                Some(Encoder::OneHot { categories: categories.clone(), handle_unknown: *handle_unknown });
        }
        StepSpec::Ordinal { categories, unknown_value, .. } => {
            let i = single_encoder(categories)?;
            if unknown_value.is_some_and(|v| !v.is_finite()) {
                return Err(compile_error(field("unknown_value"), "must be finite"));
            }
            chains[i].encoder =
                Some(Encoder::Ordinal { categories: categories.clone(), unknown_value: *unknown_value });
        }
        StepSpec::Passthrough { .. } => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pipeline(text: &str) -> Pipeline {
        Pipeline::compile(&Manifest::from_toml(text).unwrap()).unwrap()
    }

    const MIXED: &str = r#"
[model]
task = "classification"
input_order = ["x", "color"]
[[features]]
name = "x"
type = "number"
required = false
[[features]]
name = "color"
type = "category"
categories = ["red", "green"]
required = false
[[features]]
name = "note"
type = "category"
[[preprocess]]
op = "impute"
features = ["x", "color"]
values = [2.0, "green"]
[[preprocess]]
op = "standard_scale"
features = ["x"]
mean = [1.0]
scale = [4.0]
[[preprocess]]
op = "one_hot"
features = ["color"]
categories = ["red", "green"]
handle_unknown = "ignore"
[outputs]
labels = ["a", "b"]
probabilities = "probabilities"
"#;

    fn rows(p: &Pipeline, instances: &[Value]) -> Vec<f32> {
        let mut batch = RecordBatch::new(p.features().len());
        for (i, v) in instances.iter().enumerate() {
            p.parse_instance(v, &format!("instances[{i}]"), &mut batch).unwrap();
        }
        p.transform(&batch).unwrap()
    }

    #[test]
    fn imputes_scales_and_encodes() {
        let p = pipeline(MIXED);
        assert_eq!(p.row_width(), 3);
        let out = rows(
            &p,
            &[
                json!({"x": 5.0, "color": "red", "note": "n"}),
                json!({"x": null, "note": "n"}),
                json!([9.0, "blue", "n"]),
            ],
        );
        assert_eq!(out, vec![1.0, 1.0, 0.0, 0.25, 0.0, 1.0, 2.0, 0.0, 0.0]);
    }

    #[test]
    fn names_the_field_of_each_record_error() {
        let p = pipeline(MIXED);
        let mut batch = RecordBatch::new(3);
        let err = |v: Value| p.parse_instance(&v, "instances[2]", &mut RecordBatch::new(3)).unwrap_err();
        assert_eq!(err(json!({"x": 1, "note": "a", "y": 2})).field, "instances[2].y");
        assert_eq!(err(json!({"x": 1})).kind, RecordErrorKind::Missing);
        assert_eq!(err(json!({"x": 1})).field, "instances[2].note");
        assert_eq!(
            err(json!({"x": "1", "note": "a"})).kind,
            RecordErrorKind::WrongType { expected: "a number", got: "a string" }
        );
        assert_eq!(err(json!([1.0, "red"])).kind, RecordErrorKind::WrongLength { expected: 3, got: 2 });
        assert_eq!(err(json!([1.0, 3, "n"])).field, "instances[2][1]");
        assert_eq!(err(json!(7)).kind, RecordErrorKind::NotAnInstance { got: "a number" });
        // A failed record leaves the batch as it was.
        p.parse_instance(&json!({"x": 1, "note": 2}), "i", &mut batch).unwrap_err();
        assert!(batch.is_empty());
    }

    #[test]
    fn refuses_unknown_categories_when_the_step_says_error() {
        let p = pipeline(&MIXED.replace("handle_unknown = \"ignore\"", "handle_unknown = \"error\""));
        let mut batch = RecordBatch::new(3);
        p.parse_instance(&json!({"x": 1, "color": "blue", "note": "n"}), "i", &mut batch).unwrap();
        let err = p.transform(&batch).unwrap_err();
        assert_eq!(err.feature, "color");
        assert!(matches!(err.kind, PreprocessErrorKind::UnknownCategory { .. }));
    }

    #[test]
    fn log1p_outside_its_domain_is_an_error_not_a_nan() {
        let text = MIXED.replace(
            "op = \"standard_scale\"\nfeatures = [\"x\"]\nmean = [1.0]\nscale = [4.0]",
            "op = \"log1p\"\nfeatures = [\"x\"]",
        );
        let p = pipeline(&text);
        let mut batch = RecordBatch::new(3);
        p.parse_instance(&json!({"x": -2.0, "note": "n"}), "i", &mut batch).unwrap();
        assert!(matches!(p.transform(&batch).unwrap_err().kind, PreprocessErrorKind::NonFinite { op: "log1p", .. }));
    }

    #[test]
    fn compile_errors_name_the_field() {
        let compile = |text: String| Pipeline::compile(&Manifest::from_toml(&text).unwrap()).unwrap_err();
        let e = compile(MIXED.replace("scale = [4.0]", "scale = [4.0, 1.0]"));
        assert_eq!(e.field, "preprocess[1].scale");
        let e = compile(MIXED.replace("input_order = [\"x\", \"color\"]", "input_order = [\"x\", \"note\"]"));
        assert_eq!(e.field, "model.input_order[1]");
        let e = compile(MIXED.replacen("required = false\n", "", 1));
        assert_eq!(e.field, "features[0].required");
        let e = compile(MIXED.replace("features = [\"x\"]\nmean", "features = [\"color\"]\nmean"));
        assert_eq!(e.field, "preprocess[1].features");
        let e = compile(MIXED.replace("scale = [4.0]", "scale = [0.0]"));
        assert_eq!(e.field, "preprocess[1].scale[0]");
    }
}
