//! The batching ceiling of `bench/compare.py`: one model version's tract plan run in process, in batches
//! of a fixed size, on `threads` threads at once, for `seconds`. Prints one JSON line with rows per second.
//! No HTTP, no parsing, no queue: what dynamic batching can at best approach.
//!
//!     cargo run --release --example tract_ceiling -- models/NAME/VERSION [batch=64] [seconds=3] [threads=1]

use std::time::{Duration, Instant};

use inferd::monitor::DriftSettings;
use inferd::repository::ModelVersion;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = std::path::PathBuf::from(args.first().map_or("models/breast_cancer/1", String::as_str));
    let batch: usize = args.get(1).map_or(Ok(64), |a| a.parse())?;
    let seconds: f64 = args.get(2).map_or(Ok(3.0), |a| a.parse())?;
    let threads: usize = args.get(3).map_or(Ok(1), |a| a.parse())?;
    let name = dir.parent().and_then(|p| p.file_name()).and_then(|n| n.to_str()).unwrap_or("model").to_string();
    let version = ModelVersion::load_unchecked(&name, 1, &dir, DriftSettings::default())?;
    // Rows of standardised-looking values: the plan's speed does not depend on them.
    let input: Vec<f32> =
        (0..batch * version.plan.columns()).map(|i| ((i * 7919) % 200) as f32 / 100.0 - 1.0).collect();
    let plan = version.plan.clone();
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let rows: usize = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut rows = 0;
                    while Instant::now() < until {
                        std::hint::black_box(plan.run(&input, batch).expect("the plan runs"));
                        rows += batch;
                    }
                    rows
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("worker")).sum()
    });
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({"model": name, "batch": batch, "threads": threads, "rows_per_s": rows as f64 / elapsed})
    );
    Ok(())
}
