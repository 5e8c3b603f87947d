//! Row reductions that give each row the same bits wherever it lies in a batch.
//!
//! tract's `Softmax` and `Reduce<Sum>` over the last axis run SIMD kernels over each row's slice, and how a
//! slice meets the vector lanes depends on its address: a 3-class row at batch position 5 starts 60 bytes
//! into the buffer, at position 0 it starts aligned, and the lanes' partial sums are added in another order.
//! The same row then gets probabilities one ulp apart depending on what it was batched with (measured on
//! the multiclass logistic regressions, MLPs and calibrated SVCs of the test matrix). Dynamic batching
//! promises answers equal to unbatched ones, so [`make_batch_invariant`] swaps those nodes for [`RowSoftmax`]
//! and [`RowSum`], which reduce each row in index order. Rows are short (one value per class), so the scalar
//! loop costs nothing measurable.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::nn::{Reduce, Reducer, Softmax, SoftmaxKind};
use tract_onnx::tract_hir::internal::*;

/// Replaces every f32 `Softmax` and `Reduce<Sum>` over the last axis of `model` by its row-ordered twin.
/// Answers how many nodes were replaced.
pub fn make_batch_invariant(model: &mut TypedModel) -> TractResult<usize> {
    let mut replaced = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        if node.inputs.len() != 1 {
            continue;
        }
        let fact = model.outlet_fact(node.inputs[0])?;
        let last = fact.rank().checked_sub(1);
        if fact.datum_type != f32::datum_type() || last.is_none() {
            continue;
        }
        let over_last = |axes: &[usize]| axes.len() == 1 && Some(axes[0]) == last;
        let op: Box<dyn TypedOp> = if let Some(softmax) = node.op_as::<Softmax>() {
            if !over_last(&softmax.axes) || softmax.quant_output_dt.is_some() {
                continue;
            }
            Box::new(RowSoftmax { log: softmax.kind == SoftmaxKind::LogSoftmax })
        } else if let Some(reduce) = node.op_as::<Reduce>() {
            if !over_last(&reduce.axes) || reduce.reducer != Reducer::Sum {
                continue;
            }
            Box::new(RowSum)
        } else {
            continue;
        };
        let inputs = node.inputs.clone();
        let patch = TypedModelPatch::replace_single_op(model, node, &inputs, op)?;
        patch.apply(model)?;
        replaced += 1;
    }
    Ok(replaced)
}

/// The rows of a tensor along its last axis (an empty tensor has none).
fn rows_of(input: &Tensor) -> TractResult<(Vec<f32>, usize)> {
    let width = *input.shape().last().context("a row op needs a rank of at least 1")?;
    let view = input.to_plain_array_view::<f32>()?;
    Ok((view.iter().copied().collect(), width))
}

/// Softmax (or log-softmax) over the last axis, one row at a time: max, then the exponentials summed in
/// index order, then each value divided by the sum.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RowSoftmax {
    log: bool,
}

impl RowSoftmax {
    fn row(&self, row: &mut [f32]) {
        let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let mut sum = 0f32;
        for x in row.iter() {
            sum += (x - max).exp();
        }
        if self.log {
            let log_sum = sum.ln();
            row.iter_mut().for_each(|x| *x = *x - max - log_sum);
        } else {
            row.iter_mut().for_each(|x| *x = (*x - max).exp() / sum);
        }
    }
}

impl Op for RowSoftmax {
    fn name(&self) -> StaticName {
        if self.log { "RowLogSoftmax" } else { "RowSoftmax" }.into()
    }

    op_as_typed_op!();
}

impl EvalOp for RowSoftmax {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let (mut values, width) = rows_of(&input)?;
        if width > 0 {
            values.chunks_exact_mut(width).for_each(|row| self.row(row));
        }
        Ok(tvec!(Tensor::from_shape(input.shape(), &values)?.into_tvalue()))
    }
}

impl TypedOp for RowSoftmax {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(f32::fact(inputs[0].shape.clone())))
    }

    as_op!();
}

/// Sum over the last axis, kept with size 1 (as `Reduce` keeps it), each row added in index order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RowSum;

impl Op for RowSum {
    fn name(&self) -> StaticName {
        "RowSum".into()
    }

    op_as_typed_op!();
}

impl EvalOp for RowSum {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let (values, width) = rows_of(&input)?;
        let mut shape: TVec<usize> = input.shape().into();
        let rows: usize = shape[..shape.len() - 1].iter().product();
        let sums: Vec<f32> = if width == 0 {
            vec![0.0; rows]
        } else {
            values.chunks_exact(width).map(|row| row.iter().fold(0f32, |s, &v| s + v)).collect()
        };
        *shape.last_mut().expect("rank checked") = 1;
        Ok(tvec!(Tensor::from_shape(&shape, &sums)?.into_tvalue()))
    }
}

impl TypedOp for RowSum {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let mut shape = inputs[0].shape.to_tvec();
        *shape.last_mut().context("a row op needs a rank of at least 1")? = 1.to_dim();
        Ok(tvec!(f32::fact(shape)))
    }

    as_op!();
}
