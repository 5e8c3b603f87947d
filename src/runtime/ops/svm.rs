//! `SVMClassifier` and `SVMRegressor`, evaluated as onnxruntime's CPU kernels do (`svmclassifier.cc`,
//! `svmregressor.cc`, `ml_common.h`).
//!
//! Classifier (libsvm "SVC" mode, support vectors present):
//! - kernel value of the row with every support vector (RBF `exp(-γ‖x−v‖²)`, linear `x·v`, poly
//!   `(γ x·v + c₀)^d`, sigmoid `tanh(γ x·v + c₀)`);
//! - one-vs-one decision for each class pair `(i, j)`, `i < j`: class i's vectors weighted by coefficient row
//!   `j − 1`, class j's by row `i`, plus `rho`; a positive decision is a vote for `i`, else for `j`;
//! - with `prob_a` / `prob_b`: Platt scaling `1 − logistic(d·A + B)` clipped to `[1e-7, 1 − 1e-7]`, then
//!   libsvm's pairwise coupling (`multiclass_probability`, also for two classes, as onnxruntime does);
//!   without them, the raw decisions (two classes: `[-d, d]`).
//! - label: the class with the most votes (first on ties).
//!
//! Regressor: `Σ coefficient · kernel + rho`, or a linear model when `n_supports` is 0; `one_class` gives ±1.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::*;

use super::{input_matrix, ml_rules, post_transform, transform_scores, Floats, Labels, PostTransform};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum KernelType {
    Linear,
    Poly,
    Rbf,
    Sigmoid,
}

/// A kernel and its parameters (`kernel_params` = [gamma, coef0, degree]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Kernel {
    kind: KernelType,
    params: Floats,
}

impl Kernel {
    fn parse(node: &NodeProto) -> TractResult<Kernel> {
        let kind = match node.get_attr_opt::<&str>("kernel_type")?.unwrap_or("LINEAR") {
            "LINEAR" => KernelType::Linear,
            "POLY" => KernelType::Poly,
            "RBF" => KernelType::Rbf,
            "SIGMOID" => KernelType::Sigmoid,
            other => bail!("{}: unknown kernel_type {other:?}", node.name),
        };
        let mut params = node.get_attr_opt_vec::<f32>("kernel_params")?.unwrap_or_default();
        if !params.is_empty() && params.len() < 3 {
            bail!("{}: kernel_params needs [gamma, coef0, degree]", node.name);
        }
        params.resize(3, 0.0);
        Ok(Kernel { kind, params: Floats(params) })
    }

    fn eval(&self, x: &[f32], v: &[f32]) -> f32 {
        let (gamma, coef0, degree) = (self.params[0], self.params[1], self.params[2]);
        if self.kind == KernelType::Rbf {
            let mut sum = 0f32;
            for (a, b) in x.iter().zip(v) {
                let d = a - b;
                sum += d * d;
            }
            return (-gamma * sum).exp();
        }
        let mut dot = 0f32;
        for (a, b) in x.iter().zip(v) {
            dot += a * b;
        }
        match self.kind {
            KernelType::Linear | KernelType::Rbf => dot,
            KernelType::Poly => {
                let base = gamma * dot + coef0;
                if degree == 2.0 {
                    base * base
                } else if degree == 3.0 {
                    base * base * base
                } else {
                    base.powf(degree)
                }
            }
            KernelType::Sigmoid => (gamma * dot + coef0).tanh(),
        }
    }
}

// ------------------------------------------------------------------------------------------------------------
// Classifier
// ------------------------------------------------------------------------------------------------------------

pub(super) fn svm_classifier(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    Ok((expand(SvmClassifier::parse(node)?), vec![]))
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct SvmClassifier {
    labels: Labels,
    kernel: Kernel,
    /// Support vectors, row-major `[n_vectors, n_features]`.
    vectors: Floats,
    n_features: usize,
    /// First support vector of each class, and how many it has.
    starts: Vec<usize>,
    counts: Vec<usize>,
    /// `[n_classes − 1, n_vectors]`.
    coefficients: Floats,
    rho: Floats,
    prob_a: Floats,
    prob_b: Floats,
    post: PostTransform,
}

impl SvmClassifier {
    pub(super) fn parse(node: &NodeProto) -> TractResult<SvmClassifier> {
        let labels = Labels::parse(node, "classlabels_ints")?;
        let k = labels.len();
        let kernel = Kernel::parse(node)?;
        let counts: Vec<usize> = node
            .get_attr_opt_vec::<i64>("vectors_per_class")?
            .unwrap_or_default()
            .into_iter()
            .map(|c| usize::try_from(c).map_err(|_| format_err!("{}: negative vectors_per_class", node.name)))
            .collect::<TractResult<_>>()?;
        let n_vectors: usize = counts.iter().sum();
        if n_vectors == 0 {
            bail!("{}: linear (liblinear) SVMClassifier without support vectors is not supported", node.name);
        }
        if counts.len() != k {
            bail!("{}: vectors_per_class has {} entries for {k} classes", node.name, counts.len());
        }
        let starts = counts
            .iter()
            .scan(0, |acc, &c| {
                let s = *acc;
                *acc += c;
                Some(s)
            })
            .collect();
        let vectors = node.get_attr_opt_vec::<f32>("support_vectors")?.unwrap_or_default();
        if vectors.len() % n_vectors != 0 {
            bail!("{}: {} support vector values for {n_vectors} vectors", node.name, vectors.len());
        }
        let n_features = vectors.len() / n_vectors;
        let coefficients = node.get_attr_vec::<f32>("coefficients")?;
        if coefficients.len() < (k - 1) * n_vectors {
            bail!("{}: {} coefficients, expected {}", node.name, coefficients.len(), (k - 1) * n_vectors);
        }
        let pairs = k * (k - 1) / 2;
        let rho = node.get_attr_vec::<f32>("rho")?;
        if rho.len() < pairs {
            bail!("{}: {} rho values for {pairs} class pairs", node.name, rho.len());
        }
        let prob_a = node.get_attr_opt_vec::<f32>("prob_a")?.unwrap_or_default();
        let prob_b = node.get_attr_opt_vec::<f32>("prob_b")?.unwrap_or_default();
        if prob_a.len() != prob_b.len() || (!prob_a.is_empty() && prob_a.len() < pairs) {
            bail!("{}: prob_a / prob_b need one value per class pair", node.name);
        }
        let post = post_transform(node)?;
        if post == PostTransform::Probit {
            bail!("{}: post_transform PROBIT is not supported", node.name);
        }
        Ok(SvmClassifier {
            labels,
            kernel,
            vectors: Floats(vectors),
            n_features,
            starts,
            counts,
            coefficients: Floats(coefficients),
            rho: Floats(rho),
            prob_a: Floats(prob_a),
            prob_b: Floats(prob_b),
            post,
        })
    }

    fn n_classes(&self) -> usize {
        self.labels.len()
    }

    /// Width of the scores output: classes with probabilities, else one decision per pair (two for a binary
    /// model).
    fn n_scores(&self) -> usize {
        let k = self.n_classes();
        if !self.prob_a.is_empty() || k == 2 {
            k
        } else {
            k * (k - 1) / 2
        }
    }

    /// One row: writes its scores to `out` and returns the winning class index.
    fn eval_row(&self, x: &[f32], kernels: &mut [f32], decisions: &mut [f32], out: &mut [f32]) -> usize {
        let k = self.n_classes();
        let n_vectors = kernels.len();
        for (kv, v) in kernels.iter_mut().zip(self.vectors.chunks_exact(self.n_features)) {
            *kv = self.kernel.eval(x, v);
        }
        let mut votes = vec![0usize; k];
        let mut pair = 0;
        for i in 0..k - 1 {
            for j in i + 1..k {
                let mut sum = 0f64;
                let row_j = &self.coefficients[(j - 1) * n_vectors..];
                for m in self.starts[i]..self.starts[i] + self.counts[i] {
                    sum += (row_j[m] * kernels[m]) as f64;
                }
                let row_i = &self.coefficients[i * n_vectors..];
                for m in self.starts[j]..self.starts[j] + self.counts[j] {
                    sum += (row_i[m] * kernels[m]) as f64;
                }
                sum += self.rho[pair] as f64;
                decisions[pair] = sum as f32;
                votes[if sum > 0.0 { i } else { j }] += 1;
                pair += 1;
            }
        }
        if !self.prob_a.is_empty() {
            let mut r = vec![0f32; k * k];
            let mut index = 0;
            for i in 0..k - 1 {
                for j in i + 1..k {
                    let p = sigmoid_probability(decisions[index], self.prob_a[index], self.prob_b[index]);
                    let p = p.clamp(1.0e-7, 1.0 - 1.0e-7);
                    r[i * k + j] = p;
                    r[j * k + i] = 1.0 - p;
                    index += 1;
                }
            }
            multiclass_probability(k, &r, out);
            transform_scores(out, self.post);
        } else if k == 2 {
            let d = decisions[0];
            if self.post == PostTransform::None {
                out.copy_from_slice(&[-d, d]);
            } else {
                out.copy_from_slice(&[1.0 - d, d]);
            }
        } else {
            out.copy_from_slice(decisions);
            transform_scores(out, self.post);
        }
        // std::max_element: the first of the largest
        let mut best = 0;
        for c in 1..k {
            if votes[c] > votes[best] {
                best = c;
            }
        }
        best
    }
}

/// onnxruntime's `sigmoid_probability`.
fn sigmoid_probability(score: f32, a: f32, b: f32) -> f32 {
    1.0 - super::logistic(score * a + b)
}

/// libsvm's `multiclass_probability` as onnxruntime writes it (f32, same operation order): pairwise
/// probabilities `r` (`k × k`, `r[i][j]` = P(i | i or j)) to class probabilities `p`.
fn multiclass_probability(k: usize, r: &[f32], p: &mut [f32]) {
    let mut q = vec![0f32; k * k];
    let mut qp = vec![0f32; k];
    let eps = 0.005f32 / k as f32;
    for i in 0..k {
        p[i] = 1.0 / k as f32;
        for j in 0..i {
            q[i * k + i] += r[j * k + i] * r[j * k + i];
            q[i * k + j] = q[j * k + i];
        }
        for j in i + 1..k {
            q[i * k + i] += r[j * k + i] * r[j * k + i];
            q[i * k + j] = -r[j * k + i] * r[i * k + j];
        }
    }
    for _ in 0..100 {
        let mut pqp = 0f32;
        for i in 0..k {
            qp[i] = 0.0;
            for j in 0..k {
                qp[i] += q[i * k + j] * p[j];
            }
            pqp += p[i] * qp[i];
        }
        let mut max_error = 0f32;
        for &v in qp.iter() {
            let error = (v - pqp).abs();
            if error > max_error {
                max_error = error;
            }
        }
        if max_error < eps {
            break;
        }
        for i in 0..k {
            let diff = (-qp[i] + pqp) / q[i * k + i];
            p[i] += diff;
            pqp = (pqp + diff * (diff * q[i * k + i] + 2.0 * qp[i])) / (1.0 + diff) / (1.0 + diff);
            for j in 0..k {
                qp[j] = (qp[j] + diff * q[i * k + j]) / (1.0 + diff);
                p[j] /= 1.0 + diff;
            }
        }
    }
}

impl Expansion for SvmClassifier {
    fn name(&self) -> StaticName {
        "SVMClassifier".into()
    }

    fn nboutputs(&self) -> TractResult<usize> {
        Ok(2)
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        ml_rules(s, inputs, outputs, Some(self.n_features), Some(self.labels.datum_type()), self.n_scores())
    }

    fn wire(&self, prefix: &str, model: &mut TypedModel, inputs: &[OutletId]) -> TractResult<TVec<OutletId>> {
        model.wire_node(prefix, SvmClassifierOp(Arc::new(self.clone())), inputs)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct SvmClassifierOp(Arc<SvmClassifier>);

impl Op for SvmClassifierOp {
    fn name(&self) -> StaticName {
        "SVMClassifier".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let m = &self.0;
        Ok(vec![format!(
            "{:?} kernel, {} classes, {} support vectors, probabilities: {}",
            m.kernel.kind,
            m.n_classes(),
            m.counts.iter().sum::<usize>(),
            !m.prob_a.is_empty()
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for SvmClassifierOp {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let m = &self.0;
        let (rows, width, x) = input_matrix(&inputs[0])?;
        if width != m.n_features {
            bail!("SVMClassifier expects {} features, got {width}", m.n_features);
        }
        let k = m.n_classes();
        let n_scores = m.n_scores();
        let mut kernels = vec![0f32; m.counts.iter().sum()];
        let mut decisions = vec![0f32; k * (k - 1) / 2];
        let mut scores = vec![0f32; rows * n_scores];
        let mut winners = Vec::with_capacity(rows);
        for r in 0..rows {
            let x = &x[r * width..(r + 1) * width];
            let out = &mut scores[r * n_scores..(r + 1) * n_scores];
            winners.push(m.eval_row(x, &mut kernels, &mut decisions, out));
        }
        Ok(tvec!(
            m.labels.gather(&winners).into_tvalue(),
            Tensor::from_shape(&[rows, n_scores], &scores)?.into_tvalue()
        ))
    }
}

impl TypedOp for SvmClassifierOp {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let n = inputs[0].shape[0].clone();
        Ok(tvec!(self.0.labels.datum_type().fact([n.clone()]), f32::fact([n, self.0.n_scores().to_dim()])))
    }

    as_op!();
}

// ------------------------------------------------------------------------------------------------------------
// Regressor
// ------------------------------------------------------------------------------------------------------------

pub(super) fn svm_regressor(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    Ok((expand(SvmRegressor::parse(node)?), vec![]))
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct SvmRegressor {
    kernel: Kernel,
    /// `[n_vectors, n_features]`; empty for a linear model.
    vectors: Floats,
    n_features: usize,
    coefficients: Floats,
    /// `[rho]`.
    rho: Floats,
    one_class: bool,
}

impl SvmRegressor {
    pub(super) fn parse(node: &NodeProto) -> TractResult<SvmRegressor> {
        let mut kernel = Kernel::parse(node)?;
        let n_vectors = node.get_attr_opt::<i64>("n_supports")?.unwrap_or(0);
        let n_vectors = usize::try_from(n_vectors).map_err(|_| format_err!("{}: negative n_supports", node.name))?;
        let coefficients = node.get_attr_vec::<f32>("coefficients")?;
        let rho = node.get_attr_vec::<f32>("rho")?;
        let rho = *rho.first().ok_or_else(|| format_err!("{}: empty rho", node.name))?;
        let vectors = node.get_attr_opt_vec::<f32>("support_vectors")?.unwrap_or_default();
        let n_features = if n_vectors > 0 {
            if vectors.len() % n_vectors != 0 || coefficients.len() < n_vectors {
                bail!("{}: support vectors / coefficients do not match n_supports {n_vectors}", node.name);
            }
            vectors.len() / n_vectors
        } else {
            kernel.kind = KernelType::Linear;
            coefficients.len()
        };
        let one_class = node.get_attr_opt::<i64>("one_class")?.unwrap_or(0) != 0;
        Ok(SvmRegressor {
            kernel,
            vectors: Floats(vectors),
            n_features,
            coefficients: Floats(coefficients),
            rho: Floats(vec![rho]),
            one_class,
        })
    }

    fn eval_row(&self, x: &[f32]) -> f32 {
        let y = if self.vectors.is_empty() {
            let mut dot = 0f32;
            for (a, b) in x.iter().zip(self.coefficients.iter()) {
                dot += a * b;
            }
            dot + self.rho[0]
        } else {
            let mut sum = 0f32;
            for (v, c) in self.vectors.chunks_exact(self.n_features).zip(self.coefficients.iter()) {
                sum += self.kernel.eval(x, v) * c;
            }
            sum + self.rho[0]
        };
        if self.one_class {
            if y > 0.0 {
                1.0
            } else {
                -1.0
            }
        } else {
            y
        }
    }
}

impl Expansion for SvmRegressor {
    fn name(&self) -> StaticName {
        "SVMRegressor".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        ml_rules(s, inputs, outputs, Some(self.n_features), None, 1)
    }

    fn wire(&self, prefix: &str, model: &mut TypedModel, inputs: &[OutletId]) -> TractResult<TVec<OutletId>> {
        model.wire_node(prefix, SvmRegressorOp(Arc::new(self.clone())), inputs)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct SvmRegressorOp(Arc<SvmRegressor>);

impl Op for SvmRegressorOp {
    fn name(&self) -> StaticName {
        "SVMRegressor".into()
    }

    op_as_typed_op!();
}

impl EvalOp for SvmRegressorOp {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (rows, width, x) = input_matrix(&inputs[0])?;
        if width != self.0.n_features {
            bail!("SVMRegressor expects {} features, got {width}", self.0.n_features);
        }
        let y: Vec<f32> = (0..rows).map(|r| self.0.eval_row(&x[r * width..(r + 1) * width])).collect();
        Ok(tvec!(Tensor::from_shape(&[rows, 1], &y)?.into_tvalue()))
    }
}

impl TypedOp for SvmRegressorOp {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(f32::fact([inputs[0].shape[0].clone(), 1.to_dim()])))
    }

    as_op!();
}
