//! `ArrayFeatureExtractor` with onnxruntime's output shape.
//!
//! onnxruntime answers `X[..., C]` gathered with indices `Y` as `[..., Y.size]`: a scalar index keeps the last
//! axis (size 1). tract's own builder is a plain Gather, which drops that axis, so the `Concat(axis=1)` that
//! skl2onnx puts after it (CalibratedClassifierCV, SVC decision functions) fails to type.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::array::Gather;
use tract_onnx::tract_core::ops::change_axes::AxisOp;
use tract_onnx::tract_hir::internal::*;

pub(super) fn array_feature_extractor(
    _ctx: &ParsingContext,
    _node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    Ok((expand(ArrayFeatureExtractor), vec![]))
}

#[derive(Debug, Clone, Default, Hash, PartialEq, Eq)]
pub(super) struct ArrayFeatureExtractor;

impl Expansion for ArrayFeatureExtractor {
    fn name(&self) -> StaticName {
        "ArrayFeatureExtractor".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 2)?;
        check_output_arity(outputs, 1)?;
        s.equals(&inputs[0].datum_type, &outputs[0].datum_type)?;
        s.equals(&inputs[1].datum_type, i64::datum_type())?;
        s.equals(&inputs[0].rank, &outputs[0].rank)?;
        s.given_2(&inputs[0].shape, &inputs[1].shape, move |s, input_shape, indices_shape| {
            let mut shape: TVec<TDim> = input_shape.iter().take(input_shape.len().saturating_sub(1)).cloned().collect();
            shape.push(indices_shape.iter().product());
            s.equals(&outputs[0].shape, shape)
        })
    }

    fn wire(&self, prefix: &str, model: &mut TypedModel, inputs: &[OutletId]) -> TractResult<TVec<OutletId>> {
        let last_axis = model.outlet_fact(inputs[0])?.rank() - 1;
        let indices_rank = model.outlet_fact(inputs[1])?.rank();
        if indices_rank > 1 {
            bail!("ArrayFeatureExtractor with rank-{indices_rank} indices is not supported");
        }
        let gathered = model.wire_node(prefix, Gather { axis: last_axis, output_type: None }, inputs)?;
        if indices_rank == 1 {
            return Ok(gathered);
        }
        model.wire_node(format!("{prefix}.keep_axis"), AxisOp::Add(last_axis), &gathered)
    }
}
