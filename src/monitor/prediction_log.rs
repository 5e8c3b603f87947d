//! The prediction log (DESIGN §7): one JSON line per answered prediction — id, time, model, version, raw
//! input, output, latency — sampled at `sample_rate`, rotated by size, written by one dedicated thread.
//!
//! The request path samples rows and copies the sampled records' raw values and output rows into a bounded
//! channel: no I/O, no formatting, no waiting; the writer renders each line (features by name, in manifest
//! order). When the channel is full the request's records are dropped and counted, never blocking an answer.
//! On shutdown [`PredictionLog::close`] queues a close mark behind every accepted request and waits for the
//! writer to reach it, flush and sync: nothing accepted before the close is lost.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};
use prometheus::IntCounter;

use crate::answer::Answer;
use crate::config::PredictionLogSettings;
use crate::preprocess::{RawValue, RecordBatch};
use crate::repository::manifest::FeatureSpec;
use crate::repository::ModelVersion;
use crate::runtime::ModelOutput;

/// One answered request, as the handler holds it.
pub struct Answered<'a> {
    pub model: &'a Arc<ModelVersion>,
    pub ids: Vec<Arc<str>>,
    pub batch: &'a RecordBatch,
    pub output: &'a ModelOutput,
    /// Whether low-confidence labels were replaced by the fallback label.
    pub fallback: bool,
    /// A shadow version's answers (never returned to the client): marked `"shadow": true` in the log.
    pub shadow: bool,
    /// The id of the API key the request presented (never the key).
    pub key_id: Option<Arc<str>>,
    pub time: SystemTime,
    pub latency_us: u64,
}

/// The sampled predictions of one request, reduced on the request thread to what their lines need (the raw
/// values and output rows of the sampled records, copied): the request's own buffers are freed by the thread
/// that allocated them, and the writer does the formatting.
struct LoggedRequest {
    model: Arc<ModelVersion>,
    ids: Vec<Arc<str>>,
    /// The sampled records' raw values, `features` per record.
    inputs: Vec<RawValue>,
    features: usize,
    /// The model's output rows of the sampled records, `width` per record.
    outputs: Vec<f32>,
    width: usize,
    fallback: bool,
    shadow: bool,
    key_id: Option<Arc<str>>,
    time: SystemTime,
    latency_us: u64,
}

impl LoggedRequest {
    /// `rows`: the sampled records (`None`: every record).
    fn new(answered: Answered<'_>, rows: Option<Vec<u32>>) -> LoggedRequest {
        let Answered { model, ids, batch, output, fallback, shadow, key_id, time, latency_us } = answered;
        let (ids, inputs, outputs) = match rows {
            None => (ids, batch.values.clone(), output.values[..batch.len() * output.width].to_vec()),
            Some(rows) => {
                let mut inputs = Vec::with_capacity(rows.len() * batch.width);
                let mut outputs = Vec::with_capacity(rows.len() * output.width);
                for &r in &rows {
                    inputs.extend_from_slice(batch.record(r as usize));
                    outputs.extend_from_slice(output.row(r as usize));
                }
                (rows.iter().map(|&r| ids[r as usize].clone()).collect(), inputs, outputs)
            }
        };
        LoggedRequest {
            model: model.clone(),
            ids,
            inputs,
            features: batch.width,
            outputs,
            width: output.width,
            fallback,
            shadow,
            key_id,
            time,
            latency_us,
        }
    }

    fn input(&self, k: usize) -> &[RawValue] {
        &self.inputs[k * self.features..(k + 1) * self.features]
    }
}

enum Message {
    Request(LoggedRequest),
    /// Flush, sync and acknowledge; the writer stops after it.
    Close(Sender<()>),
}

/// Counts of log records, by what became of them.
#[derive(Clone)]
pub struct LogCounters {
    pub written: IntCounter,
    pub dropped: IntCounter,
}

pub struct PredictionLog {
    sample_rate: f64,
    sender: Sender<Message>,
    writer: Mutex<Option<JoinHandle<()>>>,
    counters: LogCounters,
    drops: AtomicU64,
}

impl PredictionLog {
    /// Opens (appending to) the log file and starts its writer thread. `None` when no path is configured or
    /// nothing is sampled.
    pub fn start(settings: &PredictionLogSettings, counters: LogCounters) -> anyhow::Result<Option<PredictionLog>> {
        let Some(path) = settings.path.clone() else { return Ok(None) };
        if settings.sample_rate <= 0.0 {
            return Ok(None);
        }
        let file = RotatingFile::open(path, settings.max_bytes, settings.max_files)?;
        let (sender, receiver) = crossbeam_channel::bounded(settings.queue_capacity);
        let thread_counters = counters.clone();
        let writer = std::thread::Builder::new()
            .name("inferd-prediction-log".into())
            .spawn(move || write_loop(receiver, file, thread_counters))?;
        Ok(Some(PredictionLog {
            sample_rate: settings.sample_rate,
            sender,
            writer: Mutex::new(Some(writer)),
            counters,
            drops: AtomicU64::new(0),
        }))
    }

    /// Queues a request's predictions; drops (and counts) them when the writer is that far behind.
    /// Rows are sampled before any work, so a request none of whose rows is kept costs nothing more.
    pub fn submit(&self, answered: Answered<'_>) {
        let sampled = match self.sample_rate >= 1.0 {
            true => None,
            false => Some((0..answered.ids.len() as u32).filter(|_| sample(self.sample_rate)).collect::<Vec<_>>()),
        };
        if sampled.as_ref().is_some_and(Vec::is_empty) {
            return;
        }
        let request = LoggedRequest::new(answered, sampled);
        let rows = request.ids.len() as u64;
        match self.sender.try_send(Message::Request(request)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.counters.dropped.inc_by(rows);
                // Warn on the first drop and then every 1,000th, not once per request.
                if self.drops.fetch_add(1, Ordering::Relaxed) % 1000 == 0 {
                    tracing::warn!(rows, "prediction log queue full (or closed): records dropped");
                }
            }
        }
    }

    /// Writes everything queued so far, flushes and syncs the file, and stops the writer. Blocking: call it
    /// off the async executor.
    pub fn close(&self) {
        let Some(writer) = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take() else { return };
        let (ack, acked) = crossbeam_channel::bounded(1);
        if self.sender.send(Message::Close(ack)).is_ok() {
            let _ = acked.recv();
        }
        let _ = writer.join();
    }
}

/// How long the writer sleeps when the queue is empty. It polls rather than blocks so that request threads
/// never pay for waking it (a futex call per request); a record waits at most this long to be written.
const IDLE_POLL: Duration = Duration::from_millis(10);

fn write_loop(receiver: Receiver<Message>, mut file: RotatingFile, counters: LogCounters) {
    let mut line = Vec::with_capacity(1024);
    let mut failing = false;
    let mut dirty = false;
    loop {
        let message = match receiver.try_recv() {
            Ok(message) => message,
            Err(TryRecvError::Empty) => {
                if dirty {
                    if let Err(error) = file.flush() {
                        tracing::error!(path = %file.path.display(), %error, "prediction log: flush failed");
                    }
                    dirty = false;
                }
                std::thread::sleep(IDLE_POLL);
                continue;
            }
            Err(TryRecvError::Disconnected) => break,
        };
        match message {
            Message::Request(request) => {
                let (written, dropped) = write_request(&request, &mut file, &mut line);
                counters.written.inc_by(written);
                counters.dropped.inc_by(dropped);
                if dropped > 0 && !failing {
                    tracing::error!(path = %file.path.display(), "prediction log: write failed; records dropped");
                }
                failing = dropped > 0;
                dirty = true;
            }
            Message::Close(ack) => {
                if let Err(error) = file.sync() {
                    tracing::error!(path = %file.path.display(), %error, "prediction log: final flush failed");
                }
                let _ = ack.send(());
                return;
            }
        }
    }
    let _ = file.sync();
}

/// The constant parts of one model version's log lines, JSON-escaped once: the model and version, and each
/// feature's key. A line is then mostly number formatting, so the writer keeps up with a busy server.
#[derive(Debug)]
pub struct LineTemplate {
    /// `,"model":…,"version":…,"input":{`
    head: Vec<u8>,
    /// `"feature":` per feature, with the separating comma before all but the first.
    keys: Vec<Vec<u8>>,
}

impl LineTemplate {
    pub fn new(model: &str, version: &str, features: &[FeatureSpec]) -> LineTemplate {
        let json = |text: &str| serde_json::to_vec(text).expect("a string serialises");
        let mut head = b",\"model\":".to_vec();
        head.extend(json(model));
        head.extend(b",\"version\":");
        head.extend(json(version));
        head.extend(b",\"input\":{");
        let keys = features
            .iter()
            .enumerate()
            .map(|(i, feature)| {
                let mut key = if i == 0 { Vec::new() } else { b",".to_vec() };
                key.extend(json(&feature.name));
                key.push(b':');
                key
            })
            .collect();
        LineTemplate { head, keys }
    }
}

/// Writes the records of one request; answers (written, dropped).
fn write_request(request: &LoggedRequest, file: &mut RotatingFile, line: &mut Vec<u8>) -> (u64, u64) {
    let time = humantime::format_rfc3339_micros(request.time).to_string();
    let (mut written, mut dropped) = (0, 0);
    for (k, id) in request.ids.iter().enumerate() {
        line.clear();
        let ok = render_line(line, id, &time, request, k).is_ok() && file.write_line(line).is_ok();
        if ok {
            written += 1;
        } else {
            dropped += 1;
        }
    }
    (written, dropped)
}

/// `{"id","time","model","version","input":{…},"output":{…},"key_id","latency_us"}` and a newline.
fn render_line(line: &mut Vec<u8>, id: &str, time: &str, request: &LoggedRequest, k: usize) -> serde_json::Result<()> {
    let monitor = &request.model.monitor;
    line.extend(b"{\"id\":");
    serde_json::to_writer(&mut *line, id)?;
    line.extend(b",\"time\":\"");
    line.extend(time.as_bytes());
    line.push(b'"');
    line.extend(&monitor.log_template.head);
    render_record(line, &monitor.log_template, request.input(k));
    line.push(b'}');
    line.extend(b",\"output\":");
    let row = &request.outputs[k * request.width..(k + 1) * request.width];
    serde_json::to_writer(&mut *line, &Answer { id: None, monitor, row, fallback: request.fallback })?;
    if request.shadow {
        line.extend(b",\"shadow\":true");
    }
    line.extend(b",\"key_id\":");
    serde_json::to_writer(&mut *line, &request.key_id)?;
    line.extend(b",\"latency_us\":");
    line.extend(request.latency_us.to_string().as_bytes());
    line.extend(b"}\n");
    Ok(())
}

/// `"feature":value,…` of one record, in `[[features]]` order (missing values as null).
fn render_record(line: &mut Vec<u8>, template: &LineTemplate, record: &[RawValue]) {
    let mut numbers = zmij::Buffer::new();
    for (key, value) in template.keys.iter().zip(record) {
        line.extend(key);
        match value {
            RawValue::Missing => line.extend(b"null"),
            // Values passed request validation: always finite. zmij is serde_json's own float writer.
            RawValue::Number(x) => line.extend(numbers.format_finite(*x).as_bytes()),
            RawValue::Category(c) => {
                serde_json::to_writer(&mut *line, c.as_ref()).expect("writing a string into memory cannot fail")
            }
        }
    }
}

thread_local! {
    /// Per-thread xorshift state for sampling (sampling needs no cryptography, and no shared state).
    static SAMPLER: std::cell::Cell<u64> = std::cell::Cell::new({
        let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0x9e37_79b9, |d| d.as_nanos() as u64);
        // Distinct per thread even when threads start in the same nanosecond.
        (nanos ^ (&nanos as *const u64 as u64).rotate_left(32)) | 1
    });
}

/// True with probability `rate`.
pub fn sample(rate: f64) -> bool {
    SAMPLER.with(|state| {
        let mut x = state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        ((x >> 11) as f64 / (1u64 << 53) as f64) < rate
    })
}

/// An append-only file rotated before it would pass `max_bytes`: `path` → `path.1` → … → `path.{max_files}`.
struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    max_files: usize,
    file: BufWriter<File>,
    size: u64,
}

impl RotatingFile {
    fn open(path: PathBuf, max_bytes: u64, max_files: usize) -> anyhow::Result<RotatingFile> {
        use anyhow::Context;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).with_context(|| format!("{}: cannot create", parent.display()))?;
        }
        let file = append(&path).with_context(|| format!("{}: cannot open the prediction log", path.display()))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(RotatingFile { path, max_bytes, max_files, file: BufWriter::with_capacity(64 * 1024, file), size })
    }

    fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        if self.size > 0 && self.size + line.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(line)?;
        self.size += line.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.file.flush()?;
        let numbered = |i: usize| PathBuf::from(format!("{}.{i}", self.path.display()));
        if self.max_files == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            let _ = std::fs::remove_file(numbered(self.max_files));
            for i in (1..self.max_files).rev() {
                if numbered(i).exists() {
                    std::fs::rename(numbered(i), numbered(i + 1))?;
                }
            }
            std::fs::rename(&self.path, numbered(1))?;
        }
        self.file = BufWriter::with_capacity(64 * 1024, append(&self.path)?);
        self.size = 0;
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }

    fn sync(&mut self) -> std::io::Result<()> {
        self.file.flush()?;
        self.file.get_ref().sync_data()
    }
}

fn append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_rotate_before_passing_max_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.jsonl");
        let mut file = RotatingFile::open(path.clone(), 25, 2).unwrap();
        for i in 0..7 {
            file.write_line(format!("line {i} ........\n").as_bytes()).unwrap();
        }
        file.sync().unwrap();
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        assert_eq!(read(&path), "line 6 ........\n");
        assert_eq!(read(&dir.path().join("p.jsonl.1")), "line 5 ........\n");
        assert_eq!(read(&dir.path().join("p.jsonl.2")), "line 4 ........\n");
        assert!(!dir.path().join("p.jsonl.3").exists());
    }

    #[test]
    fn sampling_keeps_about_the_rate() {
        let kept = (0..100_000).filter(|_| sample(0.25)).count();
        assert!((23_000..27_000).contains(&kept), "{kept}");
        assert!((0..1000).all(|_| sample(1.0)));
        assert!((0..1000).all(|_| !sample(0.0)));
    }
}
