//! How one prediction reads, in `/predict` answers and in the prediction log alike: label, probabilities
//! and confidence (classification) or value (regression), plus the low-confidence flag and fallback.
//!
//! Serialised straight from the model's output row, without building a JSON tree.

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use crate::monitor::version::{Predicted, VersionMonitor};
use crate::repository::argmax;
use crate::repository::manifest::Task;

/// The model's answer for one record, read from its output row.
pub fn predicted(task: Task, row: &[f32]) -> Predicted {
    match task {
        Task::Classification => {
            let best = argmax(row);
            Predicted::Class { index: best as u32, confidence: row[best] }
        }
        Task::Regression => Predicted::Value(row[0]),
    }
}

/// One prediction as answered. `fallback`: the low-confidence policy answers the manifest's
/// `fallback_label` in place of a low-confidence label.
pub struct Answer<'a> {
    /// Written first when given (answers carry it; log lines have it already).
    pub id: Option<&'a str>,
    pub monitor: &'a VersionMonitor,
    pub row: &'a [f32],
    pub fallback: bool,
}

/// The label answered for the model's `answer`: its own, or (`fallback`: under that policy) the fallback
/// label for a low-confidence one. `None` for a regression value.
pub fn answered_label(monitor: &VersionMonitor, answer: Predicted, fallback: bool) -> Option<&str> {
    let Predicted::Class { index, .. } = answer else { return None };
    match &monitor.fallback_label {
        Some(label) if monitor.falls_back(answer, fallback) => Some(label),
        _ => Some(&monitor.labels[index as usize]),
    }
}

impl Serialize for Answer<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        if let Some(id) = self.id {
            map.serialize_entry("id", id)?;
        }
        let answer = predicted(self.monitor.task, self.row);
        match answer {
            Predicted::Class { confidence, .. } => {
                map.serialize_entry("label", &answered_label(self.monitor, answer, self.fallback))?;
                map.serialize_entry(
                    "probabilities",
                    &Probabilities { labels: &self.monitor.labels, values: self.row },
                )?;
                map.serialize_entry("confidence", &confidence)?;
                if self.monitor.is_low_confidence(answer) {
                    map.serialize_entry("low_confidence", &true)?;
                }
                if self.monitor.falls_back(answer, self.fallback) {
                    map.serialize_entry("fallback", &true)?;
                }
            }
            Predicted::Value(value) => map.serialize_entry("value", &value)?,
        }
        map.end()
    }
}

struct Probabilities<'a> {
    labels: &'a [String],
    values: &'a [f32],
}

impl Serialize for Probabilities<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.labels.len()))?;
        for (label, p) in self.labels.iter().zip(self.values) {
            map.serialize_entry(label, p)?;
        }
        map.end()
    }
}
