//! Every model family's plan gives a row the same bits wherever the row lies in a batch, so dynamic
//! batching can never change an answer: each fixture row run alone, in batches of 2, 7 and 32, and in one
//! batch of all rows, gives identical outputs. (Before `ops::rows`, tract's softmax and row sums failed this
//! on the multiclass logistic regressions, MLPs and calibrated SVCs.)

use inferd::monitor::DriftSettings;
use inferd::preprocess::RecordBatch;
use inferd::repository::ModelVersion;

#[test]
fn every_family_answers_a_row_the_same_in_any_batch() {
    let mut checked = 0;
    for root in ["tests/data/matrix", "models"] {
        for entry in std::fs::read_dir(root).unwrap() {
            let dir = entry.unwrap().path();
            let name = dir.file_name().unwrap().to_str().unwrap().to_string();
            let version = ModelVersion::load_unchecked(&name, 1, &dir.join("1"), DriftSettings::default()).unwrap();
            assert!(
                version.plan.batch_invariant(),
                "{name}: the load-time probe found answers that move with batching"
            );
            let text = std::fs::read_to_string(dir.join("1/fixtures.json")).unwrap();
            let fixtures: serde_json::Value = serde_json::from_str(&text).unwrap();
            let mut batch = RecordBatch::new(version.pipeline.features().len());
            for case in fixtures["cases"].as_array().unwrap() {
                version.pipeline.parse_instance_json(&case["input"].to_string(), &String::new, &mut batch).unwrap();
            }
            let input = version.pipeline.transform(&batch).unwrap();
            let (width, rows) = (version.plan.columns(), batch.len());
            let all = version.plan.run(&input, rows).unwrap();
            for size in [1, 2, 7, 32] {
                for start in (0..rows).step_by(size) {
                    let n = size.min(rows - start);
                    let part = version.plan.run(&input[start * width..(start + n) * width], n).unwrap();
                    for r in 0..n {
                        let (a, b) = (part.row(r), all.row(start + r));
                        assert!(
                            a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()),
                            "{name}: row {} in a batch of {n}: {a:?}, in the batch of {rows}: {b:?}",
                            start + r
                        );
                    }
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 37, "only {checked} models checked");
}
