//! `inferd score` as a user runs it, against the server's own answers for the same rows.

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use crate::helpers::{fixtures, spawn_app};

/// Writes a model's fixture inputs as CSV (missing values as empty fields), with an extra `row_id` column
/// first, repeated `copies` times.
fn fixtures_csv(model: &str, path: &Path, copies: usize) -> Vec<Value> {
    let cases = fixtures(model)["cases"].as_array().unwrap().clone();
    let names: Vec<String> = cases[0]["input"].as_object().unwrap().keys().cloned().collect();
    let mut writer = csv::Writer::from_path(path).unwrap();
    let mut header = vec!["row_id".to_string()];
    header.extend(names.iter().cloned());
    writer.write_record(&header).unwrap();
    for i in 0..copies * cases.len() {
        let input = &cases[i % cases.len()]["input"];
        let mut row = vec![format!("r{i}")];
        row.extend(names.iter().map(|n| match &input[n] {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }));
        writer.write_record(&row).unwrap();
    }
    writer.flush().unwrap();
    cases
}

fn score(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_inferd")).arg("score").args(args).output().unwrap()
}

fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let header = reader.headers().unwrap().iter().map(str::to_string).collect();
    let rows = reader.records().map(|r| r.unwrap().iter().map(str::to_string).collect()).collect();
    (header, rows)
}

#[tokio::test]
async fn scoring_a_csv_equals_the_servers_answers() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    for model in ["wine", "breast_cancer", "diabetes"] {
        let (input, output) = (dir.path().join(format!("{model}.csv")), dir.path().join(format!("{model}.out.csv")));
        let cases = fixtures_csv(model, &input, 1);
        let run = score(&["--model", model, "--input", input.to_str().unwrap(), "--output", output.to_str().unwrap()]);
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
        let (header, rows) = read_csv(&output);
        assert_eq!(rows.len(), cases.len());
        assert_eq!(header[0], "row_id", "input columns are carried through");

        let instances: Vec<Value> = cases.iter().map(|c| c["input"].clone()).collect();
        let answer: Value = app
            .post_json(&format!("/models/{model}/predict"), &json!({"instances": instances}))
            .await
            .json()
            .await
            .unwrap();
        let column = |name: &str| header.iter().position(|h| h == name).unwrap();
        // The same f32 on both sides (JSON re-formats it as f64 here, so compare values, not text).
        let same = |text: &str, json: &Value| text.parse::<f32>().unwrap() == json.as_f64().unwrap() as f32;
        for (i, (row, prediction)) in rows.iter().zip(answer["predictions"].as_array().unwrap()).enumerate() {
            assert_eq!(row[0], format!("r{i}"));
            match prediction.get("value") {
                Some(value) => assert!(same(&row[column("prediction")], value), "{model} row {i}"),
                None => {
                    assert_eq!(row[column("prediction")], prediction["label"].as_str().unwrap(), "{model} row {i}");
                    assert!(same(&row[column("confidence")], &prediction["confidence"]));
                    for (label, p) in prediction["probabilities"].as_object().unwrap() {
                        assert!(same(&row[column(&format!("probability_{label}"))], p), "{model} row {i} {label}");
                    }
                }
            }
        }
    }
}

#[test]
fn a_100k_row_file_is_streamed_through() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("big.csv"), dir.path().join("big.out.csv"));
    let cases = fixtures_csv("breast_cancer", &input, 100_000usize.div_ceil(40));
    let total = 100_000usize.div_ceil(cases.len()) * cases.len();
    assert!(total >= 100_000);
    let run =
        score(&["--model", "breast_cancer", "--input", input.to_str().unwrap(), "--output", output.to_str().unwrap()]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let mut reader = csv::Reader::from_path(&output).unwrap();
    let header = reader.headers().unwrap().clone();
    let label = header.iter().position(|h| h == "prediction").unwrap();
    let mut rows = 0;
    for (i, record) in reader.records().enumerate() {
        let record = record.unwrap();
        assert_eq!(&record[label], cases[i % cases.len()]["output"]["label"].as_str().unwrap(), "row {i}");
        rows += 1;
    }
    assert_eq!(rows, total);
    assert!(String::from_utf8_lossy(&run.stderr).contains(&format!("{total} rows scored, 0 bad rows")));
}

#[test]
fn bad_rows_are_reported_by_line_and_skipped_or_stop_a_strict_run() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("wine.csv"), dir.path().join("wine.out.csv"));
    let cases = fixtures_csv("wine", &input, 1);
    let mut text = std::fs::read_to_string(&input).unwrap();
    let good = text.lines().nth(1).unwrap().to_string();
    // Line numbers count the header as line 1: the fixtures are lines 2..=41. Column 1 is `alcohol`.
    let mut fields: Vec<&str> = good.split(',').collect();
    fields[1] = "abc";
    let not_a_number = fields.join(",");
    let wrong_width = "r-short,1.0,2.0";
    text.push_str(&format!("{not_a_number}\n{wrong_width}\n{good}\n"));
    std::fs::write(&input, text).unwrap();

    let args = ["--model", "wine", "--input", input.to_str().unwrap(), "--output", output.to_str().unwrap()];
    let run = score(&args);
    assert!(run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    let bad_line = cases.len() + 2;
    assert!(stderr.contains(&format!("wine.csv:{bad_line}: skipped: column 'alcohol'")), "{stderr}");
    assert!(stderr.contains(&format!("wine.csv:{}: skipped", bad_line + 1)), "{stderr}");
    assert!(stderr.contains(&format!("{} rows scored, 2 bad rows skipped", cases.len() + 1)), "{stderr}");
    assert_eq!(read_csv(&output).1.len(), cases.len() + 1);

    let mut strict = args.to_vec();
    strict.push("--strict");
    let run = score(&strict);
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains(&format!("wine.csv:{bad_line}: column 'alcohol'")));
}
