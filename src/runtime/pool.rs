//! Dynamic batching: each model version has a [`Batcher`] (its queue), and requests for that version are
//! gathered into batches of up to `max_batch_size` rows, each run as one tract call; every caller gets its
//! own rows back.
//!
//! Who runs a batch: a request that finds no batch running for its version runs one itself (its own rows
//! and whatever is queued), inline on its executor thread when the version's measured cost says the batch is
//! cheap, which spares an idle server two thread hand-offs per request. Whatever queues while a batch runs
//! is handed to an inference thread ([`InferencePool`]), which takes batches until the queue is empty, one
//! per turn, versions taking turns: under load the queue fills while a batch runs, so batches grow by
//! themselves, with no timer. With
//! `max_delay_us` above zero every batch goes to an inference thread, which waits up to that long (from the
//! oldest request's arrival) for the batch to fill.
//!
//! At most `workers` batches of one version run at once. Backpressure is immediate: a request that would
//! push its version's queue past `queue_capacity` rows is refused with [`RuntimeError::QueueFull`] (503)
//! instead of waiting. A queued request whose caller has gone (timeout, client disconnect) is dropped from
//! the queue, never computed.
//!
//! Batching changes no answer: plans are built so a row's result does not depend on its place in a batch
//! (see `ops::rows`), and the `batching` integration tests compare batched answers with unbatched ones bit
//! for bit.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::{ModelOutput, ModelPlan, RuntimeError};
use crate::config::BatchingSettings;

/// Where a request's time went, and the batch it ran in.
#[derive(Debug, Clone, Copy, Default)]
pub struct InferenceTiming {
    /// From queueing to the start of its batch.
    pub queue: Duration,
    /// The batch's tract call.
    pub inference: Duration,
    /// Rows in the batch.
    pub batch_rows: usize,
    /// Set on exactly one request of each batch: the one that reports the batch's own metrics.
    pub reports_batch: bool,
}

type Reply = Result<(ModelOutput, InferenceTiming), RuntimeError>;

struct Job {
    input: Vec<f32>,
    rows: usize,
    enqueued: Instant,
    reply: oneshot::Sender<Reply>,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// Rows in `jobs`.
    rows: usize,
    /// Batches of this version running or about to (each runner takes batches until the queue is empty).
    runners: usize,
    /// Whether an inference thread waits on `filled` for this queue to fill.
    waiting: bool,
}

/// One model version's queue; it lives as long as the version.
pub struct Batcher {
    plan: Arc<ModelPlan>,
    queue: Mutex<Queue>,
    filled: Condvar,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").field("queued_rows", &self.queued_rows()).finish()
    }
}

/// The rows one runner took from the queue.
struct Batch {
    jobs: Vec<Job>,
    rows: usize,
}

/// A batch whose estimated cost is at most this runs inline on the executor thread that took it: about what
/// the two thread hand-offs to an inference thread and back cost. Above it, the hand-off pays for itself:
/// the executor threads go on reading requests, which queue and are then run as one batch (the digits MLP of
/// `bench/compare.py` costs 8 µs a row alone, 1.6 µs a row at batch 64), and no executor thread stalls the
/// connections it serves. Below it (a linear model: 2.4 µs for one row, 4 µs for 32), the hand-offs would
/// cost more than the model. Costs are measured when the version loads (best of 5 warm runs), not during
/// serving, where a preempted run would skew them.
const INLINE_BUDGET_NS: f64 = 5_000.0;

impl Batcher {
    pub fn new(plan: Arc<ModelPlan>) -> Batcher {
        Batcher { plan, queue: Mutex::new(Queue::default()), filled: Condvar::new() }
    }

    pub fn plan(&self) -> &Arc<ModelPlan> {
        &self.plan
    }

    /// Rows waiting now.
    pub fn queued_rows(&self) -> usize {
        self.lock().rows
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes queued jobs, oldest first, up to `max_rows` rows (always at least one job, whatever its size),
    /// skipping those whose caller has gone. With nothing left it gives up its runner slot and answers None.
    fn take(&self, queue: &mut Queue, max_rows: usize) -> Option<Batch> {
        let mut batch = Batch { jobs: Vec::new(), rows: 0 };
        // A plan whose rows' answers depend on their place in a batch runs each request alone.
        let max_rows = if self.plan.batch_invariant() { max_rows } else { 0 };
        while let Some(job) = queue.jobs.front() {
            if !batch.jobs.is_empty() && batch.rows + job.rows > max_rows {
                break;
            }
            let job = queue.jobs.pop_front().expect("front exists");
            queue.rows -= job.rows;
            if job.reply.is_closed() {
                continue; // the caller gave up: do not spend a core on an answer nobody reads
            }
            batch.rows += job.rows;
            batch.jobs.push(job);
        }
        if batch.jobs.is_empty() {
            queue.runners -= 1;
            return None;
        }
        Some(batch)
    }

    /// Like [`Batcher::take`], after waiting (up to `max_delay` from the oldest job's arrival) for
    /// `max_rows` rows to queue.
    fn take_waiting(&self, max_rows: usize, max_delay: Duration) -> Option<Batch> {
        let mut queue = self.lock();
        if let Some(oldest) = queue.jobs.front().map(|j| j.enqueued) {
            let deadline = oldest + max_delay;
            while queue.rows < max_rows {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                queue.waiting = true;
                queue = self.filled.wait_timeout(queue, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
                queue.waiting = false;
            }
        }
        self.take(&mut queue, max_rows)
    }

    /// After a batch: whether more jobs are queued, to be run on this runner's next turn; if none, the runner
    /// slot is given up.
    fn keep_turn(&self) -> bool {
        let mut queue = self.lock();
        if queue.jobs.is_empty() {
            queue.runners -= 1;
            return false;
        }
        true
    }

    /// Whether a batch of `rows` is expected (from the costs measured at load) to take at most
    /// [`INLINE_BUDGET_NS`].
    fn cheap(&self, rows: usize) -> bool {
        self.plan.estimated_ns(rows) <= INLINE_BUDGET_NS
    }

    /// Runs one batch as one tract call and answers each of its callers with its own rows.
    fn run(&self, batch: Batch) {
        let started = Instant::now();
        let Batch { mut jobs, rows } = batch;
        let result = catch_unwind(AssertUnwindSafe(|| {
            if let [job] = jobs.as_mut_slice() {
                self.plan.run(&job.input, rows)
            } else {
                let mut input = Vec::with_capacity(rows * self.plan.columns());
                jobs.iter().for_each(|job| input.extend_from_slice(&job.input));
                self.plan.run(&input, rows)
            }
        }))
        .unwrap_or_else(|_| Err(RuntimeError::Inference("the model panicked".to_string())));
        let inference = started.elapsed();

        let timing = |job: &Job, first: bool| InferenceTiming {
            queue: started.saturating_duration_since(job.enqueued),
            inference,
            batch_rows: rows,
            reports_batch: first,
        };
        match result {
            Ok(output) if jobs.len() == 1 => {
                let job = jobs.pop().expect("one job");
                let timing = timing(&job, true);
                let _ = job.reply.send(Ok((output, timing)));
            }
            Ok(output) => {
                let width = output.width;
                let mut offset = 0;
                for (i, job) in jobs.into_iter().enumerate() {
                    let values = output.values[offset * width..(offset + job.rows) * width].to_vec();
                    offset += job.rows;
                    let timing = timing(&job, i == 0);
                    let _ = job.reply.send(Ok((ModelOutput { rows: job.rows, width, values }, timing)));
                }
            }
            Err(error) => {
                let message = error.to_string();
                for job in jobs {
                    let _ = job.reply.send(Err(RuntimeError::Inference(message.clone())));
                }
            }
        }
    }
}

/// Work for an inference thread: run one of `batcher`'s batches (`first`, or the next one queued), then, if
/// more are queued, go to the back of the line as a new `Drain` (sent on `again`). Versions take turns, so
/// one busy model cannot starve another of inference threads.
struct Drain {
    batcher: Arc<Batcher>,
    first: Option<Batch>,
    /// The work channel itself. Only messages in flight hold it, so the channel still closes (and the threads
    /// stop) once every clone of the pool is dropped and nothing is queued.
    again: crossbeam_channel::Sender<Drain>,
}

/// The inference threads and the batching settings. Cheap to clone: every clone feeds the same threads.
#[derive(Clone)]
pub struct InferencePool {
    sender: crossbeam_channel::Sender<Drain>,
    settings: Arc<PoolSettings>,
}

struct PoolSettings {
    max_batch_rows: usize,
    max_delay: Duration,
    capacity_rows: usize,
    /// Batches of one version that may run at once.
    runners: usize,
}

impl InferencePool {
    /// Starts the inference threads. They stop once every clone of the pool is dropped and the queue is empty.
    pub fn start(settings: &BatchingSettings) -> InferencePool {
        let workers = settings.worker_threads().max(1);
        let settings = Arc::new(PoolSettings {
            max_batch_rows: settings.max_batch_size.max(1),
            max_delay: Duration::from_micros(settings.max_delay_us),
            capacity_rows: settings.queue_capacity,
            runners: workers,
        });
        let (sender, receiver) = crossbeam_channel::unbounded::<Drain>();
        for i in 0..workers {
            let receiver = receiver.clone();
            let settings = settings.clone();
            std::thread::Builder::new()
                .name(format!("inferd-infer-{i}"))
                .spawn(move || {
                    for Drain { batcher, first, again } in receiver {
                        let batch = match first {
                            Some(batch) => Some(batch),
                            None => batcher.take_waiting(settings.max_batch_rows, settings.max_delay),
                        };
                        let Some(batch) = batch else { continue }; // the queue was empty: the turn is given up
                        batcher.run(batch);
                        if batcher.keep_turn() {
                            let next = Drain { batcher, first: None, again: again.clone() };
                            let _ = again.send(next); // cannot fail: this thread holds a receiver
                        }
                    }
                })
                .expect("cannot spawn inference threads at startup");
        }
        InferencePool { sender, settings }
    }

    /// Queues `rows` model rows (row-major) for `batcher`'s version and waits for them to be answered.
    pub async fn infer(&self, batcher: &Arc<Batcher>, input: Vec<f32>, rows: usize) -> Reply {
        let settings = &*self.settings;
        let (reply, answer) = oneshot::channel();
        let lead = {
            let mut queue = batcher.lock();
            // An empty queue takes any request, so no request size is refused forever.
            if queue.rows > 0 && queue.rows + rows > settings.capacity_rows {
                return Err(RuntimeError::QueueFull);
            }
            queue.jobs.push_back(Job { input, rows, enqueued: Instant::now(), reply });
            queue.rows += rows;
            if queue.waiting && queue.rows >= settings.max_batch_rows {
                batcher.filled.notify_one();
            }
            let lead = queue.runners < settings.runners;
            queue.runners += usize::from(lead);
            lead
        };
        if lead {
            self.lead(batcher);
        }
        answer.await.map_err(|_| RuntimeError::Stopped)?
    }

    /// This request found a free runner slot: it runs the first batch here when that is cheap (and no delay
    /// is configured), and leaves the rest to an inference thread.
    fn lead(&self, batcher: &Arc<Batcher>) {
        let settings = &*self.settings;
        let mut first = None;
        if settings.max_delay.is_zero() {
            let taken = batcher.take(&mut batcher.lock(), settings.max_batch_rows);
            match taken {
                None => return,
                Some(batch) if batcher.cheap(batch.rows) => {
                    batcher.run(batch);
                    if !batcher.keep_turn() {
                        return;
                    }
                }
                Some(batch) => first = Some(batch),
            }
        }
        let drain = Drain { batcher: batcher.clone(), first, again: self.sender.clone() };
        if let Err(crossbeam_channel::SendError(drain)) = self.sender.send(drain) {
            // No inference thread left (shutting down): answer what was taken, let the queue's callers time out.
            if let Some(batch) = drain.first {
                batcher.run(batch);
            }
        }
    }
}
