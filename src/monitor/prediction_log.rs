//! The prediction log (DESIGN §7): one JSON line per answered prediction — id, time, model, version, raw
//! input, output, latency — sampled at `sample_rate`, rotated by size, written by one dedicated thread.
//!
//! The request path only moves its (already owned) records into a bounded channel: no formatting, no I/O,
//! no waiting. When the channel is full the request's records are dropped and counted, never blocking an
//! answer. On shutdown [`PredictionLog::close`] queues a close mark behind every accepted request and waits
//! for the writer to reach it, flush and sync: nothing accepted before the close is lost.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::SystemTime;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use prometheus::IntCounter;
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use crate::answer::Answer;
use crate::config::PredictionLogSettings;
use crate::preprocess::{RawValue, RecordBatch};
use crate::repository::ModelVersion;
use crate::runtime::ModelOutput;

/// One answered request's predictions, handed over whole.
pub struct LoggedRequest {
    pub model: Arc<ModelVersion>,
    pub ids: Vec<String>,
    pub batch: RecordBatch,
    pub output: ModelOutput,
    /// Whether low-confidence labels were replaced by the fallback label.
    pub fallback: bool,
    pub time: SystemTime,
    pub latency_us: u64,
}

enum Message {
    Request(Box<LoggedRequest>),
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
        let sample_rate = settings.sample_rate;
        let thread_counters = counters.clone();
        let writer = std::thread::Builder::new()
            .name("inferd-prediction-log".into())
            .spawn(move || write_loop(receiver, file, sample_rate, thread_counters))?;
        Ok(Some(PredictionLog { sender, writer: Mutex::new(Some(writer)), counters, drops: AtomicU64::new(0) }))
    }

    /// Queues a request's predictions; drops (and counts) them when the writer is that far behind.
    pub fn submit(&self, request: LoggedRequest) {
        let rows = request.ids.len() as u64;
        match self.sender.try_send(Message::Request(Box::new(request))) {
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

fn write_loop(receiver: Receiver<Message>, mut file: RotatingFile, sample_rate: f64, counters: LogCounters) {
    let mut sampler = Sampler::new(sample_rate);
    let mut line = Vec::with_capacity(1024);
    let mut failing = false;
    while let Ok(message) = receiver.recv() {
        match message {
            Message::Request(request) => {
                let (written, dropped) = write_request(&request, &mut file, &mut sampler, &mut line);
                counters.written.inc_by(written);
                counters.dropped.inc_by(dropped);
                if dropped > 0 && !failing {
                    tracing::error!(path = %file.path.display(), "prediction log: write failed; records dropped");
                }
                failing = dropped > 0;
                if receiver.is_empty() {
                    if let Err(error) = file.flush() {
                        tracing::error!(path = %file.path.display(), %error, "prediction log: flush failed");
                    }
                }
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

/// Writes the sampled records of one request; answers (written, dropped).
fn write_request(
    request: &LoggedRequest,
    file: &mut RotatingFile,
    sampler: &mut Sampler,
    line: &mut Vec<u8>,
) -> (u64, u64) {
    let time = humantime::format_rfc3339_micros(request.time).to_string();
    let (mut written, mut dropped) = (0, 0);
    for (r, id) in request.ids.iter().enumerate() {
        if !sampler.keep() {
            continue;
        }
        line.clear();
        let record = LogLine {
            id,
            time: &time,
            request,
            answer: Answer {
                id: None,
                monitor: &request.model.monitor,
                row: request.output.row(r),
                fallback: request.fallback,
            },
            record: request.batch.record(r),
        };
        let ok = serde_json::to_writer(&mut *line, &record).is_ok() && {
            line.push(b'\n');
            file.write_line(line).is_ok()
        };
        if ok {
            written += 1;
        } else {
            dropped += 1;
        }
    }
    (written, dropped)
}

struct LogLine<'a> {
    id: &'a str,
    time: &'a str,
    request: &'a LoggedRequest,
    answer: Answer<'a>,
    record: &'a [RawValue],
}

impl Serialize for LogLine<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let model = &self.request.model;
        let mut map = serializer.serialize_map(Some(7))?;
        map.serialize_entry("id", self.id)?;
        map.serialize_entry("time", self.time)?;
        map.serialize_entry("model", &model.name)?;
        map.serialize_entry("version", &model.version_label)?;
        map.serialize_entry("input", &Input { model, record: self.record })?;
        map.serialize_entry("output", &self.answer)?;
        map.serialize_entry("latency_us", &self.request.latency_us)?;
        map.end()
    }
}

/// The raw record by feature name, as the client sent it (missing as null).
struct Input<'a> {
    model: &'a ModelVersion,
    record: &'a [RawValue],
}

impl Serialize for Input<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let features = self.model.pipeline.features();
        let mut map = serializer.serialize_map(Some(features.len()))?;
        for (feature, value) in features.iter().zip(self.record) {
            match value {
                RawValue::Missing => map.serialize_entry(&feature.name, &())?,
                RawValue::Number(x) => map.serialize_entry(&feature.name, x)?,
                RawValue::Category(c) => map.serialize_entry(&feature.name, c.as_ref())?,
            }
        }
        map.end()
    }
}

/// Keeps each record with probability `rate` (a xorshift generator: sampling needs no cryptography).
struct Sampler {
    rate: f64,
    state: u64,
}

impl Sampler {
    fn new(rate: f64) -> Sampler {
        let seed =
            SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0x9e37_79b9, |d| d.as_nanos() as u64);
        Sampler { rate, state: seed | 1 }
    }

    fn keep(&mut self) -> bool {
        if self.rate >= 1.0 {
            return true;
        }
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        ((self.state >> 11) as f64 / (1u64 << 53) as f64) < self.rate
    }
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
        let mut sampler = Sampler::new(0.25);
        let kept = (0..100_000).filter(|_| sampler.keep()).count();
        assert!((23_000..27_000).contains(&kept), "{kept}");
        let mut all = Sampler::new(1.0);
        assert!((0..1000).all(|_| all.keep()));
    }
}
