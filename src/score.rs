//! `inferd score`: batch scoring of a CSV file with the same pipeline and tract plan the server uses.
//!
//! The file is streamed in chunks of `batch_rows` records, so a file larger than memory works. Each output
//! row is the input row, unchanged, followed by the prediction columns: `prediction` (the label or the value)
//! and, for classifiers, `confidence` and one `probability_<label>` per class. Numbers are written exactly as
//! `/predict` writes them (shortest round-trip `f32`). A bad row is reported with its line number and skipped;
//! with `strict` the first bad row stops the run.

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::preprocess::{RecordBatch, RecordErrorKind};
use crate::repository::manifest::{FeatureSpec, Task};
use crate::repository::{argmax, ModelVersion};

pub struct ScoreOptions {
    pub batch_rows: usize,
    pub strict: bool,
    /// Show a progress line (on a terminal).
    pub progress: bool,
}

/// What a run did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ScoreSummary {
    pub scored: u64,
    pub bad: u64,
}

pub fn score(
    model: &ModelVersion,
    input: &Path,
    output: &Path,
    options: &ScoreOptions,
) -> anyhow::Result<ScoreSummary> {
    let (mut reader, header, columns) = open_records(model, input, |feature| feature.required)?;
    let features = model.pipeline.features();
    let mut out_header: Vec<String> = header.iter().map(str::to_string).collect();
    let added = prediction_columns(model);
    if let Some(clash) = added.iter().find(|c| out_header.contains(c)) {
        bail!("{}: the input already has a column named '{clash}', which the output adds", input.display());
    }
    out_header.extend(added);

    let file = File::create(output).with_context(|| format!("{}: cannot create", output.display()))?;
    let mut writer = csv::Writer::from_writer(BufWriter::with_capacity(1 << 20, file));
    writer.write_record(&out_header)?;

    let mut summary = ScoreSummary::default();
    let mut progress = Progress::new(options.progress);
    // CSV rows waiting for their chunk to be scored.
    let mut chunk: Vec<csv::ByteRecord> = Vec::with_capacity(options.batch_rows);
    let mut batch = RecordBatch::new(features.len());
    let mut record = csv::ByteRecord::new();
    loop {
        let more = match reader.read_byte_record(&mut record) {
            Ok(more) => more,
            Err(error) => {
                let line = error.position().map_or(0, |p| p.line());
                report_bad(input, line, &format!("unreadable row: {error}"), options.strict, &mut summary)?;
                if matches!(error.kind(), csv::ErrorKind::Io(_)) {
                    return Err(error.into());
                }
                continue;
            }
        };
        if more {
            let line = record.position().map_or(0, |p| p.line());
            let fields: Vec<Option<&str>> = columns
                .iter()
                .map(|c| c.and_then(|c| record.get(c)).and_then(|b| std::str::from_utf8(b).ok()))
                .collect();
            let parsed = model.pipeline.parse_text_record(&fields, |i| features[i].name.clone(), &mut batch);
            match parsed {
                Ok(()) => chunk.push(record.clone()),
                Err(error) => {
                    let text = columns
                        .iter()
                        .zip(features)
                        .find(|(_, f)| f.name == error.field)
                        .and_then(|(c, _)| c.and_then(|c| record.get(c)))
                        .map(|b| String::from_utf8_lossy(b).into_owned())
                        .unwrap_or_default();
                    let message = match error.kind {
                        RecordErrorKind::Missing => format!("column '{}': a value is required", error.field),
                        _ => format!("column '{}': expected a number, got {text:?}", error.field),
                    };
                    report_bad(input, line, &message, options.strict, &mut summary)?;
                }
            }
        }
        if chunk.len() >= options.batch_rows || (!more && !chunk.is_empty()) {
            score_chunk(model, input, &mut chunk, &mut batch, &mut writer, options.strict, &mut summary)?;
            progress.update(summary.scored);
        }
        if !more {
            break;
        }
    }
    writer.flush()?;
    progress.finish(summary.scored);
    Ok(summary)
}

/// Opens a CSV of records for `model`: the reader, its header, and the column of each feature (`None` where
/// the file has none). A file without the column of a feature `needed` says is refused.
pub(crate) fn open_records(
    model: &ModelVersion,
    input: &Path,
    needed: impl Fn(&FeatureSpec) -> bool,
) -> anyhow::Result<(csv::Reader<File>, csv::StringRecord, Vec<Option<usize>>)> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(false)
        .from_path(input)
        .with_context(|| format!("{}: cannot open", input.display()))?;
    let header = reader.headers().with_context(|| format!("{}: cannot read the header", input.display()))?.clone();
    let features = model.pipeline.features();
    let columns: Vec<Option<usize>> = features.iter().map(|f| header.iter().position(|h| h == f.name)).collect();
    if let Some((feature, _)) = features.iter().zip(&columns).find(|(f, c)| c.is_none() && needed(f)) {
        bail!("{}: no column for the feature '{}'", input.display(), feature.name);
    }
    Ok((reader, header, columns))
}

fn prediction_columns(model: &ModelVersion) -> Vec<String> {
    match model.task() {
        Task::Regression => vec!["prediction".to_string()],
        Task::Classification => ["prediction".to_string(), "confidence".to_string()]
            .into_iter()
            .chain(model.labels().iter().map(|l| format!("probability_{l}")))
            .collect(),
    }
}

fn report_bad(input: &Path, line: u64, message: &str, strict: bool, summary: &mut ScoreSummary) -> anyhow::Result<()> {
    summary.bad += 1;
    if strict {
        bail!("{}:{line}: {message}", input.display());
    }
    eprintln!("{}:{line}: skipped: {message}", input.display());
    Ok(())
}

/// Preprocesses and runs one chunk, writing each row with its prediction. A row preprocessing refuses (an
/// unseen category where the manifest says "error", a value outside a step's domain) is reported and skipped.
fn score_chunk<W: Write>(
    model: &ModelVersion,
    input: &Path,
    chunk: &mut Vec<csv::ByteRecord>,
    batch: &mut RecordBatch,
    writer: &mut csv::Writer<W>,
    strict: bool,
    summary: &mut ScoreSummary,
) -> anyhow::Result<()> {
    loop {
        match model.pipeline.transform(batch) {
            Ok(rows) => {
                let output = model.plan.run(&rows, batch.len())?;
                let mut text = ryu::Buffer::new();
                for (r, record) in chunk.iter().enumerate() {
                    // The input fields as read, then the prediction's: written field by field, no row copy.
                    for field in record {
                        writer.write_field(field)?;
                    }
                    let row = output.row(r);
                    match model.task() {
                        Task::Regression => writer.write_field(number(&mut text, row[0]))?,
                        Task::Classification => {
                            let best = argmax(row);
                            writer.write_field(&model.labels()[best])?;
                            writer.write_field(number(&mut text, row[best]))?;
                            for p in row {
                                writer.write_field(number(&mut text, *p))?;
                            }
                        }
                    }
                    writer.write_record(None::<&[u8]>)?;
                }
                summary.scored += chunk.len() as u64;
                chunk.clear();
                batch.values.clear();
                return Ok(());
            }
            Err(error) => {
                // Drop the refused record and retry the rest of the chunk.
                let bad = chunk.remove(error.record);
                let width = batch.width;
                batch.values.drain(error.record * width..(error.record + 1) * width);
                let line = bad.position().map_or(0, |p| p.line());
                let message = error.to_string();
                let message = message.split_once(": ").map_or(message.as_str(), |(_, rest)| rest);
                report_bad(input, line, message, strict, summary)?;
            }
        }
    }
}

/// An `f32` as `/predict` writes it (serde_json's shortest round-trip form); NaN as an empty field.
fn number(buffer: &mut ryu::Buffer, x: f32) -> &str {
    if x.is_finite() {
        buffer.format_finite(x)
    } else {
        ""
    }
}

/// A progress line on stderr, at most four times a second, only on a terminal.
struct Progress {
    enabled: bool,
    started: Instant,
    last: Instant,
}

impl Progress {
    fn new(enabled: bool) -> Progress {
        let enabled = enabled && std::io::stderr().is_terminal();
        Progress { enabled, started: Instant::now(), last: Instant::now() }
    }

    fn update(&mut self, rows: u64) {
        if self.enabled && self.last.elapsed() >= Duration::from_millis(250) {
            self.last = Instant::now();
            eprint!("\rscored {rows} rows ({:.0} rows/s)", rows as f64 / self.started.elapsed().as_secs_f64());
        }
    }

    fn finish(&self, rows: u64) {
        if self.enabled {
            eprintln!("\rscored {rows} rows in {:.1} s", self.started.elapsed().as_secs_f64());
        }
    }
}
