//! A tract plan for one model version: loaded once, optimised once with a symbolic batch dimension, reused by
//! every request.
//!
//! Only the output the server reads is kept (`select_output_outlets` before optimisation): classifiers are
//! served from their probabilities alone, the label is the argmax taken in Rust. That sidesteps tract's label
//! quirks (inverted binary tree labels, MLP's `TDim` labels; see TRACT-NOTES) and prunes the label branch.

use std::path::Path;
use std::sync::Arc;

use tract_onnx::prelude::*;

use super::RuntimeError;

/// What the kept output holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    /// `[N, K]` class probabilities.
    Probabilities { classes: usize },
    /// `[N]` or `[N, 1]` values.
    Value,
}

/// The model's answer for a batch, row-major: `rows × width` values.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelOutput {
    pub rows: usize,
    pub width: usize,
    pub values: Vec<f32>,
}

impl ModelOutput {
    pub fn row(&self, r: usize) -> &[f32] {
        &self.values[r * self.width..(r + 1) * self.width]
    }
}

pub struct ModelPlan {
    plan: Arc<TypedRunnableModel>,
    /// Run states kept between runs (one per thread running this plan at once), so a run allocates no
    /// state of its own.
    states: std::sync::Mutex<Vec<TypedSimpleState>>,
    columns: usize,
    kind: OutputKind,
    batch_invariant: bool,
    /// Measured at load: the cost of a run, fixed part and per row (nanoseconds).
    cost_ns: (f64, f64),
}

impl std::fmt::Debug for ModelPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelPlan").field("columns", &self.columns).field("kind", &self.kind).finish()
    }
}

impl ModelPlan {
    /// Loads `model.onnx`, fixes its input to `f32 [N, columns]`, keeps only `output`, optimises, and checks
    /// with a one-row warm-up run that the output has the expected shape.
    pub fn load(path: &Path, columns: usize, output: &str, kind: OutputKind) -> Result<ModelPlan, RuntimeError> {
        let fail = |message: String| RuntimeError::Load { path: path.display().to_string(), message };
        let plan = build(path, columns, output).map_err(|e| fail(format!("{e:#}").replace('\n', " ")))?;
        let mut model = ModelPlan {
            plan,
            states: std::sync::Mutex::new(Vec::new()),
            columns,
            kind,
            batch_invariant: false,
            cost_ns: (0.0, 0.0),
        };
        let warm = model.run(&vec![0.0; columns], 1).map_err(|e| fail(format!("warm-up run failed: {e}")))?;
        if let OutputKind::Probabilities { classes } = kind {
            if warm.width != classes {
                return Err(fail(format!(
                    "output '{output}' has {} columns but the manifest lists {classes} labels",
                    warm.width
                )));
            }
        } else if warm.width != 1 {
            return Err(fail(format!("output '{output}' has {} values per row, expected 1", warm.width)));
        }
        model.batch_invariant = model.probe_batch_invariance().map_err(|e| fail(format!("warm-up run failed: {e}")))?;
        model.cost_ns = model.measure_cost().map_err(|e| fail(format!("warm-up run failed: {e}")))?;
        if !model.batch_invariant {
            tracing::warn!(
                path = %path.display(),
                "a row's answer depends on its place in a batch for this model: its requests run one by one"
            );
        }
        Ok(model)
    }

    /// Whether rows get the same answer bit for bit wherever they lie in a batch; when not, requests must
    /// not share batches. Checked at load: 64 pseudo-random rows run alone, then shifted by 1, 2, 3, 4 and 8
    /// rows, so each row meets the vector registers at other alignments.
    fn probe_batch_invariance(&self) -> Result<bool, RuntimeError> {
        const PROBE_ROWS: usize = 64;
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 * 6.0 - 3.0
        };
        let probe: Vec<f32> = (0..PROBE_ROWS * self.columns).map(|_| next()).collect();
        let alone = self.run(&probe, PROBE_ROWS)?;
        for offset in [1, 2, 3, 4, 8] {
            let mut input: Vec<f32> = probe.iter().cycle().take(offset * self.columns).copied().collect();
            input.extend_from_slice(&probe);
            let batched = self.run(&input, offset + PROBE_ROWS)?;
            let same = (0..PROBE_ROWS).all(|r| {
                let (a, b) = (alone.row(r), batched.row(offset + r));
                a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
            });
            if !same {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The cost of a run of 1 row and of 64 rows, each the best of 5 warm runs, as a fixed part and a part
    /// per row: what the batcher needs to tell a model it can run inline from one that pays to batch.
    fn measure_cost(&self) -> Result<(f64, f64), RuntimeError> {
        const ROWS: usize = 64;
        let input = vec![0.0; ROWS * self.columns];
        let best = |rows: usize| -> Result<f64, RuntimeError> {
            let mut best = f64::INFINITY;
            for _ in 0..5 {
                let started = std::time::Instant::now();
                self.run(&input[..rows * self.columns], rows)?;
                best = best.min(started.elapsed().as_nanos() as f64);
            }
            Ok(best)
        };
        let (one, many) = (best(1)?, best(ROWS)?);
        let per_row = ((many - one) / (ROWS - 1) as f64).max(0.0);
        Ok(((one - per_row).max(0.0), per_row))
    }

    /// The expected duration of a run of `rows` rows, from the costs measured at load.
    pub fn estimated_ns(&self, rows: usize) -> f64 {
        self.cost_ns.0 + self.cost_ns.1 * rows as f64
    }

    /// Whether requests may share batches (see [`ModelPlan::load`]).
    pub fn batch_invariant(&self) -> bool {
        self.batch_invariant
    }

    pub fn columns(&self) -> usize {
        self.columns
    }

    pub fn kind(&self) -> OutputKind {
        self.kind
    }

    /// Runs `rows` model rows (row-major, `columns` wide). Blocking: call it from a worker thread.
    pub fn run(&self, input: &[f32], rows: usize) -> Result<ModelOutput, RuntimeError> {
        let fail = |e: anyhow::Error| RuntimeError::Inference(format!("{e:#}"));
        let tensor = Tensor::from_shape(&[rows, self.columns], input).map_err(fail)?;
        let reused = self.states.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut state = match reused {
            Some(state) => state,
            None => self.plan.spawn().map_err(fail)?,
        };
        let outputs = state.run(tvec!(tensor.into())).map_err(fail)?;
        self.states.lock().unwrap_or_else(|e| e.into_inner()).push(state);
        let output = outputs[0].cast_to::<f32>().map_err(fail)?;
        let values = output.try_as_plain_ram().map_err(fail)?.as_slice::<f32>().map_err(fail)?.to_vec();
        let width = values.len().checked_div(rows).unwrap_or(0);
        if width * rows != values.len() {
            return Err(RuntimeError::Inference(format!("output has {} values for {rows} rows", values.len())));
        }
        Ok(ModelOutput { rows, width, values })
    }
}

fn build(path: &Path, columns: usize, output: &str) -> TractResult<Arc<TypedRunnableModel>> {
    let onnx = super::ops::onnx().with_ignore_output_types(true);
    let mut proto = onnx.proto_model_for_path(path)?;
    if let Some(graph) = proto.graph.as_mut() {
        graph.node.iter_mut().for_each(index_class_labels);
    }
    let mut model = onnx.model_for_proto_model(&proto)?;
    if model.inputs.len() != 1 {
        anyhow::bail!("expected one input, found {}", model.inputs.len());
    }
    let batch = model.symbols.sym("N");
    model.set_input_fact(0, f32::fact([batch.to_dim(), columns.to_dim()]).into())?;
    let outlet = model
        .outputs
        .iter()
        .copied()
        .find(|o| model.outlet_label(*o) == Some(output) || model.node(o.node).name == output)
        .ok_or_else(|| {
            let names: Vec<String> = model
                .outputs
                .iter()
                .map(|o| model.outlet_label(*o).unwrap_or(&model.node(o.node).name).to_string())
                .collect();
            anyhow::anyhow!("no output named '{output}' (outputs: {names:?})")
        })?;
    model.select_output_outlets(&[outlet])?;
    // Drop the nodes the kept output does not need (the label branch) before typing: tract cannot type
    // some of them (a LinearClassifier's string labels), and they would cost time on every run.
    let mut typed = model.into_compact()?.into_typed()?.into_decluttered()?;
    super::ops::make_batch_invariant(&mut typed)?;
    typed.into_optimized()?.into_runnable()
}

/// Replaces a classifier node's string class labels by their indices. The label output is never served
/// (the manifest's `[outputs] labels` name the classes), but tract cannot type string labels on some ops
/// (a LinearClassifier fails with "String doesn't implement num_traits::Zero"), and the node must be typed
/// because it also produces the probabilities.
fn index_class_labels(node: &mut tract_onnx::pb::NodeProto) {
    use tract_onnx::pb::attribute_proto::AttributeType;
    let ints_name = match node.op_type.as_str() {
        "LinearClassifier" | "SVMClassifier" => "classlabels_ints",
        "TreeEnsembleClassifier" => "classlabels_int64s",
        _ => return,
    };
    for attribute in &mut node.attribute {
        if attribute.name == "classlabels_strings" {
            attribute.ints = (0..attribute.strings.len() as i64).collect();
            attribute.strings.clear();
            attribute.name = ints_name.to_string();
            attribute.r#type = AttributeType::Ints as i32;
        }
    }
}
