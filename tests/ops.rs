//! The ONNX-ML ops inferd adds to tract (src/runtime/ops) against onnxruntime: every `tests/data/ops/<case>/`
//! (written by tools/make_op_fixtures.py) is loaded through `ModelPlan` and must reproduce onnxruntime's
//! answers within 1e-5 (relative to the value beyond 1).

use std::path::{Path, PathBuf};

use inferd::runtime::{ModelPlan, OutputKind};

const TOLERANCE: f64 = 1e-5;

#[derive(serde::Deserialize)]
struct Case {
    output: String,
    rows: Vec<Vec<Option<f64>>>,
    expected: Vec<Vec<f64>>,
}

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ops");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("model.onnx").is_file())
        .collect();
    dirs.sort();
    dirs
}

/// (max abs difference, max difference relative to max(1, |expected|)), or what is beyond tolerance.
fn check(dir: &Path) -> Result<(f64, f64), String> {
    let text = std::fs::read_to_string(dir.join("expected.json")).map_err(|e| e.to_string())?;
    let case: Case = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let columns = case.rows[0].len();
    let width = case.expected[0].len();
    let kind =
        if case.output == "probabilities" { OutputKind::Probabilities { classes: width } } else { OutputKind::Value };
    let plan = ModelPlan::load(&dir.join("model.onnx"), columns, &case.output, kind).map_err(|e| e.to_string())?;
    let input: Vec<f32> = case.rows.iter().flatten().map(|v| v.map_or(f32::NAN, |v| v as f32)).collect();
    let out = plan.run(&input, case.rows.len()).map_err(|e| e.to_string())?;
    if out.rows != case.rows.len() || out.width != width {
        return Err(format!("output is {}x{}, expected {}x{width}", out.rows, out.width, case.rows.len()));
    }
    let (mut max, mut max_relative) = (0f64, 0f64);
    let mut worst = None;
    for (r, expected) in case.expected.iter().enumerate() {
        for (c, &e) in expected.iter().enumerate() {
            let got = out.row(r)[c] as f64;
            let diff = (got - e).abs();
            max = max.max(diff);
            max_relative = max_relative.max(diff / e.abs().max(1.0));
            if (diff.is_nan() || diff > TOLERANCE * e.abs().max(1.0)) && worst.is_none() {
                worst = Some(format!("row {r} column {c}: {got} vs onnxruntime {e}"));
            }
        }
    }
    match worst {
        Some(w) => Err(format!("max diff {max:.3e}; first beyond tolerance: {w}")),
        None => Ok((max, max_relative)),
    }
}

#[test]
fn every_op_fixture_matches_onnxruntime() {
    let dirs = cases();
    assert!(!dirs.is_empty(), "no fixtures under tests/data/ops");
    let mut failures = vec![];
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        match check(dir) {
            Ok((max, relative)) => println!("{name:30} max abs diff {max:.3e}, relative {relative:.3e}"),
            Err(e) => {
                println!("{name:32} FAILED: {e}");
                failures.push(format!("{name}: {e}"));
            }
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), dirs.len(), failures.join("\n"));
}
