//! What inferd's input surfaces promise for *any* input, written once: the fuzz targets (`fuzz_targets/`) check
//! it under libFuzzer, and `tests/properties.rs` (which includes this file as a module) under proptest.
//!
//! - A body posted to `/models/{name}/predict` or `/v2/models/{name}/infer` is answered 2xx or 4xx, never 5xx
//!   ([`Server`]): the real router, parsers, pipeline and model, in-process.
//! - `v2::infer::parse` answers `Ok` or a 4xx error for any bytes and any header ([`check_v2_parse`]).
//! - Manifest text parses, validates and compiles to `Ok` or an error ([`check_manifest`]).
//! - A pipeline turns every record inferd's parsers accept into finite rows, or refuses it ([`check_rows`]).
//!
//! Each check answers `Err(what broke)`; a panic inside inferd is left to unwind (proptest reports it) or
//! abort (libFuzzer does).

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, StatusCode};
use inferd::api::v2::infer::{self, HEADER_LENGTH};
use inferd::app::Application;
use inferd::config::Settings;
use inferd::monitor::version::VersionMonitor;
use inferd::monitor::DriftSettings;
use inferd::preprocess::{Pipeline, RecordBatch};
use inferd::repository::manifest::{FeatureSpec, FeatureType, Manifest};
use serde_json::{Map, Value};
use tower::ServiceExt;

/// Model repositories whose manifests the checks use: the bundled samples and the test models.
const REPOSITORIES: [&str; 2] = ["models", "tests/data/models"];

/// The repository root (this file is compiled both in the fuzz crate, `fuzz/`, and in inferd's own tests).
pub fn repository_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    match manifest_dir.join("models").is_dir() {
        true => manifest_dir.to_path_buf(),
        false => manifest_dir.join(".."),
    }
}

/// Panics with what broke: how the fuzz targets, and the replay of their corpora in tests, report a broken
/// invariant.
pub fn assert_holds(check: Result<(), String>) {
    if let Err(broken) = check {
        panic!("invariant broken: {broken}");
    }
}

/// 2xx or 4xx: a request is answered or refused, never failed by the server.
pub fn client_status(status: StatusCode, what: impl FnOnce() -> String) -> Result<(), String> {
    match status.is_success() || status.is_client_error() {
        true => Ok(()),
        false => Err(format!("{} answered {status}", what())),
    }
}

/// The bundled sample models (`ROOT/models`) served with the default settings, in-process: requests go through
/// the real router, with no socket.
pub struct Server {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
    /// The served models, by name.
    pub models: Vec<String>,
}

impl Server {
    pub fn start(root: &Path) -> Server {
        // One worker: concurrent callers of `block_on` (parallel tests) each drive their own request.
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("a runtime");
        let mut settings = Settings::default();
        settings.server.port = 0;
        settings.models.repository = root.join("models");
        let app = runtime.block_on(Application::build(settings)).expect("the bundled models load");
        let state = app.state();
        let models = state.models.load().models.keys().cloned().collect();
        Server { router: inferd::api::router(state), runtime, models }
    }

    fn post(&self, request: Request<Body>) -> StatusCode {
        let router = self.router.clone();
        self.runtime.block_on(async move {
            match router.oneshot(request).await {
                Ok(response) => response.status(),
                Err(never) => match never {},
            }
        })
    }

    /// `POST /models/{model}/predict` with a JSON body.
    pub fn predict(&self, model: &str, body: &[u8]) -> StatusCode {
        let request = Request::post(format!("/models/{model}/predict"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_vec()))
            .expect("a valid request");
        self.post(request)
    }

    /// `POST /v2/models/{model}/infer`, with `Inference-Header-Content-Length` when given.
    pub fn infer(&self, model: &str, header_length: Option<HeaderValue>, body: &[u8]) -> StatusCode {
        let mut request = Request::post(format!("/v2/models/{model}/infer"));
        if let Some(length) = header_length {
            request = request.header(HEADER_LENGTH, length);
        }
        self.post(request.body(Body::from(body.to_vec())).expect("a valid request"))
    }

    /// `model` answers `body` on `/predict` with 2xx or 4xx.
    pub fn check_predict(&self, model: &str, body: &[u8]) -> Result<(), String> {
        client_status(self.predict(model, body), || format!("/models/{model}/predict"))
    }

    /// Every model answers `body` on `/predict` with 2xx or 4xx.
    pub fn check_predict_all(&self, body: &[u8]) -> Result<(), String> {
        self.models.iter().try_for_each(|model| self.check_predict(model, body))
    }

    /// `model` answers a V2 request (`header_length`: the header's raw bytes) with 2xx or 4xx.
    pub fn check_infer(&self, model: &str, header_length: Option<&[u8]>, body: &[u8]) -> Result<(), String> {
        let header = match header_length.map(HeaderValue::from_bytes) {
            // Bytes no HTTP client could send as a header value.
            Some(Err(_)) => return Ok(()),
            Some(Ok(value)) => Some(value),
            None => None,
        };
        client_status(self.infer(model, header, body), || format!("/v2/models/{model}/infer"))
    }

    /// Every model answers a V2 request with 2xx or 4xx.
    pub fn check_infer_all(&self, header_length: Option<&[u8]>, body: &[u8]) -> Result<(), String> {
        self.models.iter().try_for_each(|model| self.check_infer(model, header_length, body))
    }
}

/// The fuzz corpus's V2 input: a body starting with `{` (or holding no newline) is JSON alone; otherwise the
/// bytes before the first newline are the `Inference-Header-Content-Length` header and the rest the body.
pub fn split_v2_input(data: &[u8]) -> (Option<&[u8]>, &[u8]) {
    if data.first() == Some(&b'{') {
        return (None, data);
    }
    match data.iter().position(|b| *b == b'\n') {
        Some(newline) => (Some(&data[..newline]), &data[newline + 1..]),
        None => (None, data),
    }
}

/// `v2::infer::parse` of any body under any header: `Ok`, or a 4xx error.
pub fn check_v2_parse(body: &[u8], header_length: Option<&str>) -> Result<(), String> {
    match infer::parse(body, header_length) {
        Ok(_) => Ok(()),
        Err(error) => client_status(error.status, || format!("v2::infer::parse ({})", error.message)),
    }
}

/// `(name, manifest text, pipeline)` of every model version in [`REPOSITORIES`] under `root`.
pub fn bundled_pipelines(root: &Path) -> Vec<(String, String, Pipeline)> {
    let mut found = Vec::new();
    for repository in REPOSITORIES {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join(repository))
            .expect("a model repository")
            .map(|entry| entry.expect("a directory entry").path())
            .collect();
        dirs.sort();
        for dir in dirs {
            let Ok(text) = std::fs::read_to_string(dir.join("1/inferd.toml")) else { continue };
            let manifest = Manifest::from_toml(&text).expect("a bundled manifest parses");
            let pipeline = Pipeline::compile(&manifest).expect("a bundled manifest compiles");
            let name = dir.file_name().expect("a model directory").to_string_lossy().into_owned();
            found.push((name, text, pipeline));
        }
    }
    found
}

/// Manifest text, as the loader reads it: parse, validate the monitoring keys, compile the pipeline, set up the
/// monitor; a pipeline that compiles then gets [`probe_records`]. Errors are fine; broken invariants are not.
pub fn check_manifest(text: &str) -> Result<(), String> {
    let Ok(manifest) = Manifest::from_toml(text) else { return Ok(()) };
    let _ = manifest.card_json();
    let _ = manifest.input_order();
    let drift = DriftSettings::default();
    if manifest.monitoring.validate(manifest.model.task, drift).is_err() {
        return Ok(());
    }
    let _ = VersionMonitor::new("fuzz", "1", &manifest, None, drift);
    match Pipeline::compile(&manifest) {
        Ok(pipeline) => probe_records(&pipeline),
        Err(_) => Ok(()),
    }
}

/// Runs records of awkward values (zero, ±1, the ends of `f64`, the tiniest subnormal, a first category, an
/// unknown one, nulls) through a freshly compiled pipeline: see [`check_rows`].
pub fn probe_records(pipeline: &Pipeline) -> Result<(), String> {
    const NUMBERS: [f64; 9] = [0.0, 1.0, -1.0, f64::MAX, f64::MIN, 5e-324, -0.999_999, 1e10, -1e10];
    let features = pipeline.features();
    let mut batch = RecordBatch::new(features.len());
    for k in 0..=NUMBERS.len() {
        let fields: Vec<Field> = features
            .iter()
            .enumerate()
            .map(|(i, feature)| match (feature.kind, (k + i) % (NUMBERS.len() + 1)) {
                (_, 0) if !feature.required => Field::Null,
                (FeatureType::Number, j) => Field::Number(NUMBERS[j.saturating_sub(1)]),
                (FeatureType::Category, 1) => Field::Text("\u{0}unseen".into()),
                (FeatureType::Category, j) => Field::Category(j as u8),
            })
            .collect();
        let _ = add_record(pipeline, &fields, Form::Object, &mut batch);
    }
    check_rows(pipeline, &batch)
}

/// One value of a generated record, before it is written as JSON or CSV text.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    /// The key is left out (a CSV column is empty).
    Absent,
    Null,
    /// Non-finite numbers become `null` in JSON (which has none) and their text (`inf`, `NaN`) in CSV.
    Number(f64),
    Text(String),
    /// The feature's category at this index (modulo their count); text for a feature without categories.
    Category(u8),
    Bool(bool),
}

impl Field {
    fn json(&self, feature: &FeatureSpec) -> Option<Value> {
        Some(match self {
            Field::Absent => return None,
            Field::Null => Value::Null,
            Field::Number(x) => Value::from(*x),
            Field::Text(text) => Value::from(text.as_str()),
            Field::Category(k) => Value::from(category(feature, *k)),
            Field::Bool(b) => Value::from(*b),
        })
    }

    fn text(&self, feature: &FeatureSpec) -> Option<String> {
        match self {
            Field::Absent => None,
            Field::Null => Some(String::new()),
            Field::Number(x) => Some(x.to_string()),
            Field::Text(text) => Some(text.clone()),
            Field::Category(k) => Some(category(feature, *k)),
            Field::Bool(b) => Some(b.to_string()),
        }
    }
}

fn category(feature: &FeatureSpec, k: u8) -> String {
    match feature.categories.len() {
        0 => format!("category {k}"),
        n => feature.categories[usize::from(k) % n].clone(),
    }
}

/// How a generated record reaches the pipeline: the three ways inferd reads records.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Form {
    /// A JSON object by feature name (`/predict`).
    Object,
    /// A JSON array in `[[features]]` order (`/predict`, positional).
    Array,
    /// CSV text fields (`inferd score`).
    Text,
}

/// `fields` (the i-th for the i-th feature) as a JSON instance: an object by feature name, or (`array`) an array
/// in `[[features]]` order, which ends at the first absent field.
pub fn record_json(features: &[FeatureSpec], fields: &[Field], array: bool) -> Value {
    let field = |i: usize| fields.get(i).unwrap_or(&Field::Absent);
    match array {
        false => {
            let pairs = features.iter().enumerate().filter_map(|(i, f)| Some((f.name.clone(), field(i).json(f)?)));
            Value::Object(pairs.collect::<Map<_, _>>())
        }
        true => Value::Array(features.iter().enumerate().map_while(|(i, f)| field(i).json(f)).collect()),
    }
}

/// Writes `fields` in `form` and parses it into `batch` the way inferd does. `Err`: the parser refused it (and
/// the batch is unchanged).
pub fn add_record(pipeline: &Pipeline, fields: &[Field], form: Form, batch: &mut RecordBatch) -> Result<(), String> {
    let features = pipeline.features();
    let instance = match form {
        Form::Object => record_json(features, fields, false),
        Form::Array => record_json(features, fields, true),
        Form::Text => {
            let texts = features.iter().enumerate().map(|(i, f)| fields.get(i).and_then(|field| field.text(f)));
            let texts: Vec<Option<String>> = texts.collect();
            let texts: Vec<Option<&str>> = texts.iter().map(Option::as_deref).collect();
            let name = |i: usize| features[i].name.clone();
            return pipeline.parse_text_record(&texts, name, batch).map_err(|error| error.to_string());
        }
    };
    let path = || "instances[0]".to_string();
    pipeline.parse_instance_json(&instance.to_string(), &path, batch).map_err(|error| format!("{error:?}"))
}

/// What `pipeline` makes of `batch` (records inferd's parsers accepted): each record, alone, becomes a finite row
/// or is refused; the batch's rows are its records' rows, or the batch is refused for its first refused record,
/// with the same error.
pub fn check_rows(pipeline: &Pipeline, batch: &RecordBatch) -> Result<(), String> {
    let width = pipeline.row_width();
    let rows = pipeline.transform(batch);
    let first_refused = match &rows {
        Ok(rows) => check_finite(pipeline, batch, rows).map(|()| batch.len())?,
        Err(error) if error.record < batch.len() => error.record,
        Err(error) => return Err(format!("record {} refused in a batch of {}", error.record, batch.len())),
    };
    for r in 0..batch.len() {
        let alone = RecordBatch { width: batch.width, values: batch.record(r).to_vec() };
        let row = pipeline.transform(&alone);
        if let Ok(row) = &row {
            check_finite(pipeline, &alone, row).map_err(|broken| format!("record {r} alone: {broken}"))?;
        }
        let agrees = match (&rows, &row) {
            (Ok(rows), Ok(row)) => rows[r * width..(r + 1) * width] == row[..],
            (Err(_), row) if r < first_refused => row.is_ok(),
            (Err(error), Err(alone)) if r == first_refused => {
                (&alone.feature, &alone.kind) == (&error.feature, &error.kind)
            }
            // Past the batch's first refusal, the batch says nothing of a record.
            (Err(_), _) => r > first_refused,
            (Ok(_), Err(_)) => false,
        };
        if !agrees {
            let in_batch = rows.as_ref().map(|rows| &rows[r * width..(r + 1) * width]);
            return Err(format!("record {r}: {row:?} alone, {in_batch:?} in its batch"));
        }
    }
    Ok(())
}

/// `rows` of `batch` are finite, as many as the batch needs, and the `f64` rows cast to `f32`.
fn check_finite(pipeline: &Pipeline, batch: &RecordBatch, rows: &[f32]) -> Result<(), String> {
    let width = pipeline.row_width();
    if rows.len() != batch.len() * width {
        return Err(format!("{} values for {} records of {width} columns", rows.len(), batch.len()));
    }
    if let Some(i) = rows.iter().position(|x| !x.is_finite()) {
        return Err(format!("record {}: column {} is {}", i / width, i % width, rows[i]));
    }
    let rows_f64 = pipeline.transform_f64(batch).map_err(|error| format!("refused in f64 only: {error}"))?;
    match rows.iter().zip(&rows_f64).position(|(x, y)| *x != *y as f32) {
        Some(i) => Err(format!("column {i}: {} in f32, {} in f64", rows[i], rows_f64[i])),
        None => Ok(()),
    }
}
