//! `inferd profile`: builds a version's drift reference profile (`reference.json`, DESIGN §6) from a CSV of
//! training data — the same profile `tools/export.py` writes from the training frame.
//!
//! - **Numbers**: the deciles of the non-missing values by numpy's default (`linear`) method, deduplicated,
//!   each moved halfway to the next larger distinct value (dropped when there is none), so no training value
//!   sits on an edge; one share per bin, plus the share of missing values.
//! - **Categories**: one share per manifest category, one for any other value, and the missing share.
//! - **Predictions**: the model's own answers on the same rows, through the same pipeline and plan as the
//!   server: label shares (classification) or value deciles (regression).
//!
//! The floating-point steps follow numpy's operation for operation, so both tools write the same numbers.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context};
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::monitor::reference::ReferenceProfile;
use crate::preprocess::{RawValue, RecordBatch};
use crate::repository::manifest::{FeatureType, Task};
use crate::repository::{argmax, ModelVersion};
use crate::score::open_records;

/// Rows per model run while profiling.
const CHUNK_ROWS: usize = 4096;

/// One variable's observations.
enum Column {
    Numbers { values: Vec<f64> },
    Categories { categories: Vec<String>, counts: Vec<u64> },
}

impl Column {
    fn new(kind: FeatureType, categories: &[String]) -> Column {
        match kind {
            FeatureType::Number => Column::Numbers { values: Vec::new() },
            FeatureType::Category => {
                Column::Categories { categories: categories.to_vec(), counts: vec![0; categories.len() + 1] }
            }
        }
    }

    fn add(&mut self, value: &RawValue) {
        match (self, value) {
            (_, RawValue::Missing) => {}
            (Column::Numbers { values }, RawValue::Number(x)) => values.push(*x),
            (Column::Categories { categories, counts }, RawValue::Category(c)) => {
                let i = categories.iter().position(|k| k.as_str() == c.as_ref()).unwrap_or(categories.len());
                counts[i] += 1;
            }
            // The pipeline parsed each value by its feature's type: no other pairing occurs.
            _ => {}
        }
    }

    /// One observation of the category at `index` (the predicted class), without looking its name up.
    fn add_category_index(&mut self, index: usize) {
        if let Column::Categories { counts, .. } = self {
            counts[index] += 1;
        }
    }

    /// The profile over `rows` rows; values not added were missing.
    fn profile(self, rows: u64) -> Value {
        let share = |count: u64| count as f64 / rows as f64;
        match self {
            Column::Numbers { mut values } => {
                values.sort_by(f64::total_cmp);
                let edges = number_edges(&values);
                let mut counts = vec![0u64; edges.len() + 1];
                for x in &values {
                    counts[edges.partition_point(|e| e < x)] += 1;
                }
                let missing = share(rows - values.len() as u64);
                json!({"kind": "number", "edges": edges, "ratios": counts.into_iter().map(share).collect::<Vec<_>>(), "missing": missing})
            }
            Column::Categories { categories, counts } => {
                let seen: u64 = counts.iter().sum();
                json!({
                    "kind": "category",
                    "categories": categories,
                    "ratios": counts.into_iter().map(share).collect::<Vec<_>>(),
                    "missing": share(rows - seen),
                })
            }
        }
    }
}

/// numpy's `quantile(x, q)` with the default `linear` method, `x` sorted: virtual index `(n − 1)·q`, and
/// numpy's `_lerp`, which interpolates from the upper neighbour when the weight is at least one half.
fn quantile_sorted(x: &[f64], q: f64) -> f64 {
    let n = x.len();
    let virtual_index = (n - 1) as f64 * q;
    let previous = virtual_index.floor();
    let (below, above) =
        if virtual_index >= (n - 1) as f64 { (n - 1, n - 1) } else { (previous as usize, previous as usize + 1) };
    let gamma = virtual_index - previous;
    let (a, b) = (x[below], x[above]);
    let diff = b - a;
    if gamma >= 0.5 {
        b - diff * (1.0 - gamma)
    } else {
        a + diff * gamma
    }
}

/// Interior bin edges of sorted values (DESIGN §6).
fn number_edges(sorted: &[f64]) -> Vec<f64> {
    if sorted.is_empty() {
        return Vec::new();
    }
    let mut distinct = sorted.to_vec();
    distinct.dedup();
    let mut deciles: Vec<f64> = (1..10).map(|i| quantile_sorted(sorted, i as f64 / 10.0)).collect();
    deciles.sort_by(f64::total_cmp);
    deciles.dedup();
    let mut edges: Vec<f64> = Vec::new();
    for q in deciles {
        // The next larger distinct training value: numpy's searchsorted(distinct, q, side="right").
        let next = distinct.partition_point(|v| *v <= q);
        let Some(upper) = distinct.get(next) else { continue };
        let mid = (q + upper) / 2.0;
        if edges.last().is_some_and(|last| mid <= *last) {
            continue;
        }
        edges.push(mid);
    }
    edges
}

/// Profiles the CSV at `input` for `model`: every row must be valid (a reference is built from clean data).
pub fn profile(model: &ModelVersion, input: &Path) -> anyhow::Result<Value> {
    // Every feature is profiled, so every feature needs its column.
    let (mut reader, _, columns) = open_records(model, input, |_| true)?;
    let features = model.pipeline.features();
    let mut observed: Vec<Column> = features.iter().map(|f| Column::new(f.kind, &f.categories)).collect();
    let mut prediction = match model.task() {
        Task::Classification => Column::new(FeatureType::Category, model.labels()),
        Task::Regression => Column::new(FeatureType::Number, &[]),
    };
    let mut rows = 0u64;
    let mut batch = RecordBatch::new(features.len());
    let mut record = csv::StringRecord::new();
    loop {
        let more = reader.read_record(&mut record).with_context(|| format!("{}: unreadable row", input.display()))?;
        if more {
            let line = record.position().map_or(0, |p| p.line());
            let fields: Vec<Option<&str>> = columns.iter().map(|c| c.and_then(|c| record.get(c))).collect();
            model
                .pipeline
                .parse_text_record(&fields, |i| features[i].name.clone(), &mut batch)
                .map_err(|e| anyhow::anyhow!("{}:{line}: {e}", input.display()))?;
        }
        if batch.len() >= CHUNK_ROWS || (!more && !batch.is_empty()) {
            let model_rows = model
                .pipeline
                .transform(&batch)
                .map_err(|e| anyhow::anyhow!("{}: rows {}..: {e}", input.display(), rows + 1))?;
            let output = model.plan.run(&model_rows, batch.len())?;
            for r in 0..batch.len() {
                for (column, value) in observed.iter_mut().zip(batch.record(r)) {
                    column.add(value);
                }
                let row = output.row(r);
                match model.task() {
                    Task::Classification => prediction.add_category_index(argmax(row)),
                    Task::Regression => prediction.add(&RawValue::Number(row[0] as f64)),
                }
            }
            rows += batch.len() as u64;
            batch.values.clear();
        }
        if !more {
            break;
        }
    }
    if rows == 0 {
        bail!("{}: no data rows", input.display());
    }
    let mut by_feature = Map::new();
    for (feature, column) in features.iter().zip(observed) {
        by_feature.insert(feature.name.clone(), column.profile(rows));
    }
    Ok(json!({"rows": rows, "features": by_feature, "prediction": prediction.profile(rows)}))
}

/// Writes `profile` as JSON to `output` ("-" for stdout), replacing a file atomically, after checking that
/// it reads back as a valid profile of `model`.
pub fn write(profile: &Value, output: &Path, model: &ModelVersion) -> anyhow::Result<()> {
    let mut text = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b" ");
    profile.serialize(&mut serde_json::Serializer::with_formatter(&mut text, formatter))?;
    text.push(b'\n');
    let parsed: ReferenceProfile = serde_json::from_slice(&text)?;
    parsed.check(&model.manifest).map_err(|e| anyhow::anyhow!("the profile does not fit the manifest: {e}"))?;
    if output == Path::new("-") {
        std::io::stdout().write_all(&text)?;
        return Ok(());
    }
    let staging = output.with_extension("json.tmp");
    std::fs::write(&staging, &text).with_context(|| format!("{}: cannot write", staging.display()))?;
    std::fs::rename(&staging, output).with_context(|| format!("{}: cannot write", output.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_follow_numpy_linear() {
        // numpy.quantile([1, 2, 3, 4], [0.1, 0.5, 0.9]) == [1.3, 2.5, 3.7]
        let x = [1.0, 2.0, 3.0, 4.0];
        assert!((quantile_sorted(&x, 0.1) - 1.3).abs() < 1e-15);
        assert_eq!(quantile_sorted(&x, 0.5), 2.5);
        assert!((quantile_sorted(&x, 0.9) - 3.7).abs() < 1e-15);
        assert_eq!(quantile_sorted(&[5.0], 0.3), 5.0);
    }

    #[test]
    fn edges_sit_between_training_values() {
        // Six 0s and four 1s: deciles 0 (×5), 0.4 (interpolated) and 1 (×3). The 0 edge moves to 0.5, 0.4 to
        // 0.7 (halfway to 1), and 1 has no larger value. tools/export.py's number_edges gives the same list.
        let x: Vec<f64> = [0.0; 6].into_iter().chain([1.0; 4]).collect();
        assert_eq!(number_edges(&x), [0.5, 0.6999999999999997]);
        assert!(number_edges(&[]).is_empty());
    }
}
