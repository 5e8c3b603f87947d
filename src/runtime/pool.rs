//! The inference pool: a fixed set of OS threads that run tract plans, fed by one queue whose depth is
//! bounded in rows. The async side enqueues and awaits a oneshot reply, so a slow batch never blocks the
//! executor (and with it `/health/live` or `/metrics`).
//!
//! Backpressure is immediate: a request that would push the queue past its row capacity is refused with
//! [`RuntimeError::QueueFull`] (503) instead of waiting. A job whose caller has gone away (timeout, client
//! disconnect) is skipped by the worker, not computed.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::{ModelOutput, ModelPlan, RuntimeError};

/// Where a request's time went inside the pool.
#[derive(Debug, Clone, Copy, Default)]
pub struct InferenceTiming {
    pub queue: Duration,
    pub inference: Duration,
}

type Reply = Result<(ModelOutput, InferenceTiming), RuntimeError>;

struct Job {
    plan: Arc<ModelPlan>,
    input: Vec<f32>,
    rows: usize,
    enqueued: Instant,
    reply: oneshot::Sender<Reply>,
}

struct Shared {
    queued_rows: AtomicUsize,
    capacity_rows: usize,
}

/// Cheap to clone: every clone feeds the same workers.
#[derive(Clone)]
pub struct InferencePool {
    sender: crossbeam_channel::Sender<Job>,
    shared: Arc<Shared>,
}

impl InferencePool {
    /// Starts `workers` threads. They stop once every clone of the pool is dropped and the queue is empty.
    pub fn start(workers: usize, capacity_rows: usize) -> InferencePool {
        let (sender, receiver) = crossbeam_channel::unbounded::<Job>();
        let shared = Arc::new(Shared { queued_rows: AtomicUsize::new(0), capacity_rows });
        for i in 0..workers.max(1) {
            let receiver = receiver.clone();
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("inferd-infer-{i}"))
                .spawn(move || {
                    for job in receiver {
                        shared.queued_rows.fetch_sub(job.rows, Ordering::AcqRel);
                        run_job(job);
                    }
                })
                .expect("cannot spawn inference threads at startup");
        }
        InferencePool { sender, shared }
    }

    /// Rows waiting in the queue now.
    pub fn queued_rows(&self) -> usize {
        self.shared.queued_rows.load(Ordering::Acquire)
    }

    /// Queues `rows` model rows for `plan` and waits for the answer.
    pub async fn infer(&self, plan: Arc<ModelPlan>, input: Vec<f32>, rows: usize) -> Reply {
        self.reserve(rows)?;
        let (reply, answer) = oneshot::channel();
        let job = Job { plan, input, rows, enqueued: Instant::now(), reply };
        if self.sender.send(job).is_err() {
            self.shared.queued_rows.fetch_sub(rows, Ordering::AcqRel);
            return Err(RuntimeError::Stopped);
        }
        answer.await.map_err(|_| RuntimeError::Stopped)?
    }

    /// Claims queue space for `rows`. An empty queue takes any request, so no request size is refused forever.
    fn reserve(&self, rows: usize) -> Result<(), RuntimeError> {
        let capacity = self.shared.capacity_rows;
        self.shared
            .queued_rows
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                (queued == 0 || queued + rows <= capacity).then_some(queued + rows)
            })
            .map(|_| ())
            .map_err(|_| RuntimeError::QueueFull)
    }
}

fn run_job(job: Job) {
    if job.reply.is_closed() {
        return; // the caller gave up: do not spend a core on an answer nobody reads
    }
    let started = Instant::now();
    let queue = started - job.enqueued;
    let result = catch_unwind(AssertUnwindSafe(|| job.plan.run(&job.input, job.rows)))
        .unwrap_or_else(|_| Err(RuntimeError::Inference("the model panicked".to_string())));
    let timing = InferenceTiming { queue, inference: started.elapsed() };
    let _ = job.reply.send(result.map(|output| (output, timing)));
}
