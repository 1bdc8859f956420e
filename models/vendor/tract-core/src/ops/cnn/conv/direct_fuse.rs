//! Fusing a ResNet's pointwise tail into [`DirectConvF32`] (edgeclr's patch, issue 17):
//! `conv → max(·, 0)` and `conv → add(shortcut) → max(·, 0)` become one op that adds the
//! shortcut and clamps in registers (or in one pass over a compacted output), instead of one
//! more op and one more pass over memory each.
//!
//! The successor may still be a decluttered `TypedBinOp`, a codegen'd `OptBinUnicast` /
//! `OptBinByScalar`, or an `OptBinChain` they were collapsed into; each is read as a list of
//! steps `(operation, operand)` applied to our output, and fused only when every step is one
//! the op can take, in that order: at most one add of a tensor of the output's shape, then at
//! most one `max` with a constant zero.

use super::DirectConvF32;
use crate::internal::*;
use crate::ops::binary::{BinMiniOp, OptBinByScalar, OptBinChain, OptBinUnicast, TypedBinOp};
use crate::ops::math::{Add, Max};

/// A pointwise step applied to our output.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Step {
    Add(OutletId),
    Max(OutletId),
}

/// The patch replacing this convolution and its successor with one op, or None.
pub(super) fn fuse_epilogue(
    op: &DirectConvF32,
    model: &TypedModel,
    node: &TypedNode,
) -> TractResult<Option<TypedModelPatch>> {
    rule_if!(node.outputs.len() == 1 && node.outputs[0].successors.len() == 1);
    rule_if!(!model.output_outlets()?.contains(&node.id.into()));
    let inlet = node.outputs[0].successors[0];
    let succ = model.node(inlet.node);
    // The fused op's output replaces the successor's: same type and shape (a constant of
    // higher rank would broadcast it).
    rule_if!(succ.outputs.len() == 1 && is_like_output(op, model, succ.id.into())?);
    rule_if_some!(steps = steps_of(succ, inlet.slot));
    let mut fused = op.clone();
    let mut residual = None;
    for step in steps {
        match step {
            Step::Add(other) if !fused.residual && !fused.relu && is_like_output(op, model, other)? => {
                fused.residual = true;
                residual = Some(other);
            }
            Step::Max(other) if !fused.relu && is_zero(model, other)? => fused.relu = true,
            _ => return Ok(None),
        }
    }
    let mut patch = TypedModelPatch::new(format!("fuse {} into {}", succ.name, node.name));
    let mut inputs = patch.taps(model, &node.inputs)?;
    if let Some(other) = residual {
        inputs.push(patch.tap_model(model, other)?);
    }
    let wire = patch.wire_node(&node.name, fused, &inputs)?[0];
    patch.shunt_outside(model, succ.id.into(), wire)?;
    Ok(Some(patch))
}

/// The steps `succ` applies to its input `slot`, when it is an elementwise add or max.
fn steps_of(succ: &TypedNode, slot: usize) -> Option<TVec<Step>> {
    let step = |binop: &dyn BinMiniOp, other: OutletId| {
        if binop.is::<Add>() {
            Some(Step::Add(other))
        } else if binop.is::<Max>() {
            Some(Step::Max(other))
        } else {
            None
        }
    };
    let binop: &dyn BinMiniOp = if let Some(op) = succ.op_as::<TypedBinOp>() {
        op.0.as_ref()
    } else if let Some(op) = succ.op_as::<OptBinUnicast>() {
        op.binop.as_ref()
    } else if let Some(op) = succ.op_as::<OptBinByScalar>() {
        op.binop.as_ref()
    } else if let Some(chain) = succ.op_as::<OptBinChain>() {
        // The chain's accumulator is input 0; step i's operand is input i + 1.
        if slot != 0 || succ.inputs.len() != chain.steps.len() + 1 {
            return None;
        }
        return chain
            .steps
            .iter()
            .zip(&succ.inputs[1..])
            .map(|(s, other)| step(s.binop.as_ref(), *other))
            .collect();
    } else {
        return None;
    };
    // Both operations commute: our output may be either operand.
    if succ.inputs.len() != 2 || slot > 1 {
        return None;
    }
    step(binop, succ.inputs[1 - slot]).map(|s| tvec!(s))
}

/// An f32 tensor of exactly the convolution's output shape.
fn is_like_output(op: &DirectConvF32, model: &TypedModel, outlet: OutletId) -> TractResult<bool> {
    let fact = model.outlet_fact(outlet)?;
    let g = &op.geometry;
    let shape = [1, g.output_channels, g.output_hw[0], g.output_hw[1]];
    Ok(fact.datum_type == f32::datum_type()
        && !fact.is_exotic()
        && fact.shape.as_concrete().is_some_and(|s| s == shape))
}

/// A constant f32 zero (any shape that broadcasts, all elements zero).
fn is_zero(model: &TypedModel, outlet: OutletId) -> TractResult<bool> {
    let fact = model.outlet_fact(outlet)?;
    let Some(k) = fact.konst.as_ref() else { return Ok(false) };
    if k.datum_type() != f32::datum_type() || k.len() != 1 {
        return Ok(false);
    }
    Ok(k.try_as_plain_ram()?.as_slice::<f32>()?[0] == 0.0)
}
