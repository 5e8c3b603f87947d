use serde_json::json;

use crate::helpers::{sample_input, spawn_app};

#[tokio::test]
async fn predictions_are_counted_timed_and_labelled() {
    let app = spawn_app().await;
    let input = sample_input("breast_cancer");
    assert_eq!(app.post_json("/predict", &json!({"instances": [input.clone(), input]})).await.status(), 200);
    assert_eq!(app.post_json("/models/nope/predict", &json!({"instances": []})).await.status(), 404);
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = response.text().await.unwrap();
    for expected in [
        r#"inferd_requests_total{code="200",endpoint="/predict",model="breast_cancer",version="1"} 1"#,
        r#"inferd_requests_total{code="404",endpoint="/models/{name}/predict",model="",version=""} 1"#,
        r#"inferd_request_duration_seconds_count{endpoint="/predict",model="breast_cancer",version="1"} 1"#,
        r#"inferd_inference_duration_seconds_count{model="breast_cancer",version="1"} 1"#,
        r#"inferd_queue_duration_seconds_count{model="breast_cancer",version="1"} 1"#,
        r#"inferd_batch_size_sum{model="breast_cancer",version="1"} 2"#,
        r#"inferd_prediction_confidence_count{model="breast_cancer",version="1"} 2"#,
        r#"inferd_model_info{model="breast_cancer",state="ready",version="1"} 1"#,
        r#"inferd_model_info{model="wine",state="ready",version="1"} 1"#,
        r#"inferd_model_info{model="diabetes",state="ready",version="1"} 1"#,
    ] {
        assert!(text.contains(expected), "missing {expected}\n{text}");
    }
    let label_total: u64 = text
        .lines()
        .filter(|l| l.starts_with("inferd_predictions_total{") && l.contains("model=\"breast_cancer\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(label_total, 2);
}
