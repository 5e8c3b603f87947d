//! The compiled pipeline equals scikit-learn's fitted transformers on real bundled data: for every sample
//! model (and a test model using every step type), `tools/make_samples.py` stored raw records, including
//! missing values and unseen categories, with the rows `pipeline[:-1].transform` gave for them.

use std::path::Path;

use inferd::preprocess::{Pipeline, RecordBatch};
use inferd::repository::manifest::Manifest;
use serde_json::Value;

#[test]
fn pipelines_equal_scikit_learn_transform() {
    let cases: Value =
        serde_json::from_str(&std::fs::read_to_string("tests/data/preprocess_cases.json").unwrap()).unwrap();
    let mut checked = 0;
    for (model, entry) in cases.as_object().unwrap() {
        let manifest = Manifest::from_path(Path::new(entry["manifest"].as_str().unwrap())).unwrap();
        let pipeline = Pipeline::compile(&manifest).unwrap();
        for (i, case) in entry["cases"].as_array().unwrap().iter().enumerate() {
            let mut batch = RecordBatch::new(pipeline.features().len());
            pipeline.parse_instance(&case["input"], "input", &mut batch).unwrap();
            let row = pipeline.transform_f64(&batch).unwrap();
            let row32 = pipeline.transform(&batch).unwrap();
            let expected: Vec<f64> = case["row"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            assert_eq!(row.len(), expected.len(), "{model} case {i}: row width");
            for (c, (got, want)) in row.iter().zip(&expected).enumerate() {
                let tolerance = 1e-12 * want.abs().max(1.0);
                assert!((got - want).abs() <= tolerance, "{model} case {i} column {c}: got {got}, scikit-learn {want}");
                assert_eq!(row32[c], *got as f32, "{model} case {i} column {c}: the model row is the f32 cast");
            }
            checked += 1;
        }
    }
    assert!(checked >= 100, "only {checked} cases checked");
}

#[test]
fn cases_cover_missing_values_and_unseen_categories() {
    let text = std::fs::read_to_string("tests/data/preprocess_cases.json").unwrap();
    assert!(text.contains("null"), "no missing value among the cases");
    assert!(text.contains("\"unseen\""), "no unseen category among the cases");
}
