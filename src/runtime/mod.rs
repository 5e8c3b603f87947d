//! Model execution: one optimised tract plan per model version ([`ModelPlan`]), and dynamic batching: a
//! bounded queue per version ([`Batcher`]) whose batches run inline when cheap and otherwise on dedicated
//! inference threads ([`InferencePool`]).

mod ops;
mod plan;
mod pool;

pub use plan::{ModelOutput, ModelPlan, OutputKind};
pub use pool::{Batcher, InferencePool, InferenceTiming};

/// Errors of the runtime layer.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{path}: cannot load the model: {message}")]
    Load { path: String, message: String },
    #[error("inference failed: {0}")]
    Inference(String),
    #[error("the inference queue is full")]
    QueueFull,
    #[error("the inference workers have stopped")]
    Stopped,
}
