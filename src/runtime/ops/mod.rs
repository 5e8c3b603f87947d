//! ONNX-ML operators tract 0.23.9 lacks or gets wrong, registered on top of `tract_onnx::onnx()`.
//!
//! Every op here reproduces onnxruntime's CPU kernels (the reference the export tool checks against), quirks
//! included, rather than the ONNX specification's prose where the two differ:
//!
//! - `TreeEnsembleRegressor` ([`tree`]): tract's tree engine plus an onnxruntime-style finalisation
//!   (`aggregate_function` SUM / AVERAGE / MIN / MAX, `base_values`).
//! - `TreeEnsembleClassifier` ([`tree`]): replaces tract's builder (binary models with one base value,
//!   `BRANCH_GTE`, onnxruntime's binary score layout).
//! - `SVMClassifier` and `SVMRegressor` ([`svm`]): kernels, one-vs-one decisions, Platt scaling and libsvm's
//!   pairwise coupling.
//! - `ArrayFeatureExtractor` ([`array`]): onnxruntime's output shape for a scalar index (skl2onnx's calibrated
//!   classifiers rely on it).
//!
//! And after parsing, [`make_batch_invariant`] ([`rows`]) swaps tract's row reductions for ones whose result
//! does not depend on a row's place in a batch.

mod array;
mod rows;
mod svm;
mod tree;

pub use rows::make_batch_invariant;

use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::*;

/// `tract_onnx::onnx()` with this module's builders registered (replacing tract's own where it has one).
pub fn onnx() -> tract_onnx::Onnx {
    let mut onnx = tract_onnx::onnx();
    onnx.op_register.insert("TreeEnsembleRegressor", tree::tree_regressor);
    onnx.op_register.insert("TreeEnsembleClassifier", tree::tree_classifier);
    onnx.op_register.insert("SVMClassifier", svm::svm_classifier);
    onnx.op_register.insert("SVMRegressor", svm::svm_regressor);
    onnx.op_register.insert("ArrayFeatureExtractor", array::array_feature_extractor);
    onnx
}

/// onnxruntime's `POST_EVAL_TRANSFORM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum PostTransform {
    None,
    Logistic,
    Softmax,
    SoftmaxZero,
    Probit,
}

fn post_transform(node: &NodeProto) -> TractResult<PostTransform> {
    Ok(match node.get_attr_opt::<&str>("post_transform")?.unwrap_or("NONE") {
        "NONE" => PostTransform::None,
        "LOGISTIC" => PostTransform::Logistic,
        "SOFTMAX" => PostTransform::Softmax,
        "SOFTMAX_ZERO" => PostTransform::SoftmaxZero,
        "PROBIT" => PostTransform::Probit,
        other => bail!("{}: unknown post_transform {other:?}", node.name),
    })
}

/// onnxruntime's `ComputeLogistic`.
fn logistic(x: f32) -> f32 {
    let v = 1.0 / (1.0 + (-x.abs()).exp());
    if x < 0.0 {
        1.0 - v
    } else {
        v
    }
}

/// onnxruntime's `write_scores` for two or more scores (in place). PROBIT is refused when the op is built.
fn transform_scores(scores: &mut [f32], post: PostTransform) {
    match post {
        PostTransform::None | PostTransform::Probit => {}
        PostTransform::Logistic => scores.iter_mut().for_each(|s| *s = logistic(*s)),
        PostTransform::Softmax => {
            let max = scores.iter().fold(-f32::MAX, |m, &v| if v > m { v } else { m });
            let mut sum = 0f32;
            for s in scores.iter_mut() {
                *s = (*s - max).exp();
                sum += *s;
            }
            scores.iter_mut().for_each(|s| *s /= sum);
        }
        PostTransform::SoftmaxZero => {
            let max = scores.iter().fold(-f32::MAX, |m, &v| if v > m { v } else { m });
            let exp_neg_max = (-max).exp();
            let mut sum = 0f32;
            for s in scores.iter_mut() {
                if *s > 0.0000001 || *s < -0.0000001 {
                    *s = (*s - max).exp();
                    sum += *s;
                } else {
                    *s *= exp_neg_max;
                }
            }
            scores.iter_mut().for_each(|s| *s /= sum);
        }
    }
}

/// A classifier's class labels (inferd rewrites string labels to their indices before parsing, see plan.rs,
/// but the ops accept both).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Labels {
    Ints(Vec<i64>),
    Strings(Vec<String>),
}

impl Labels {
    /// From `<ints_name>` or `classlabels_strings`.
    fn parse(node: &NodeProto, ints_name: &str) -> TractResult<Labels> {
        let ints = node.get_attr_opt_vec::<i64>(ints_name)?;
        let strings = node.get_attr_opt_vec::<String>("classlabels_strings")?;
        match (ints, strings) {
            (Some(ints), None) if !ints.is_empty() => Ok(Labels::Ints(ints)),
            (None, Some(strings)) if !strings.is_empty() => Ok(Labels::Strings(strings)),
            (Some(_), Some(_)) => bail!("{}: both '{ints_name}' and 'classlabels_strings' are set", node.name),
            _ => bail!("{}: no class labels ('{ints_name}' or 'classlabels_strings')", node.name),
        }
    }

    fn len(&self) -> usize {
        match self {
            Labels::Ints(v) => v.len(),
            Labels::Strings(v) => v.len(),
        }
    }

    fn datum_type(&self) -> DatumType {
        match self {
            Labels::Ints(_) => i64::datum_type(),
            Labels::Strings(_) => String::datum_type(),
        }
    }

    /// `[labels[index[0]], labels[index[1]], …]` as a rank-1 tensor.
    fn gather(&self, index: &[usize]) -> Tensor {
        match self {
            Labels::Ints(v) => tensor1(&index.iter().map(|&i| v[i]).collect::<Vec<_>>()),
            Labels::Strings(v) => tensor1(&index.iter().map(|&i| v[i].clone()).collect::<Vec<_>>()),
        }
    }
}

/// f32 parameters with bitwise equality and hashing (tract ops must be `Eq`).
#[derive(Debug, Clone, Default)]
struct Floats(Vec<f32>);

impl PartialEq for Floats {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len() && self.0.iter().zip(&other.0).all(|(a, b)| a.to_bits() == b.to_bits())
    }
}

impl Eq for Floats {}

impl std::hash::Hash for Floats {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.iter().for_each(|v| v.to_bits().hash(state));
    }
}

impl std::ops::Deref for Floats {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.0
    }
}

/// The op's input as a contiguous `[rows, columns]` f32 matrix.
fn input_matrix(input: &TValue) -> TractResult<(usize, usize, Vec<f32>)> {
    let input = input.cast_to::<f32>()?;
    let shape = input.shape();
    if shape.len() != 2 {
        bail!("expected a rank-2 input, got shape {shape:?}");
    }
    let view = input.to_plain_array_view::<f32>()?;
    Ok((shape[0], shape[1], view.iter().copied().collect()))
}

/// The inference rules of the classifier and regressor ops: one `[N, n_features]` input (`n_features` checked
/// when given); for a classifier (`label_type` given) a rank-1 label output of that type first; last an
/// `[N, n_columns]` f32 output (the classifier's scores, the regressor's targets).
fn ml_rules<'r, 'p: 'r>(
    s: &mut Solver<'r>,
    inputs: &'p [TensorProxy],
    outputs: &'p [TensorProxy],
    n_features: Option<usize>,
    label_type: Option<DatumType>,
    n_columns: usize,
) -> InferenceResult {
    check_input_arity(inputs, 1)?;
    check_output_arity(outputs, if label_type.is_some() { 2 } else { 1 })?;
    s.equals(&inputs[0].rank, 2)?;
    if let Some(n_features) = n_features {
        s.equals(&inputs[0].shape[1], n_features.to_dim())?;
    }
    if let Some(label_type) = label_type {
        s.equals(&outputs[0].datum_type, label_type)?;
        s.equals(&outputs[0].rank, 1)?;
        s.equals(&outputs[0].shape[0], &inputs[0].shape[0])?;
    }
    let columns = &outputs[outputs.len() - 1];
    s.equals(&columns.datum_type, f32::datum_type())?;
    s.equals(&columns.rank, 2)?;
    s.equals(&columns.shape[0], &inputs[0].shape[0])?;
    s.equals(&columns.shape[1], n_columns.to_dim())?;
    Ok(())
}

#[cfg(test)]
mod tests;
