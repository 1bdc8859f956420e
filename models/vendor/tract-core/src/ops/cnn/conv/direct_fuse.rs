//! Fusing a ResNet's pointwise tail into [`DirectConvF32`] (edgeclr's patch, issue 17):
//! `conv → max(·, 0)` and `conv → add(shortcut) → max(·, 0)` become one op that adds the
//! shortcut and clamps in registers (or in one pass over a compacted output), instead of one
//! more op and one more pass over memory each. In a `QLinearConv` graph the same tail is
//! `DequantizeLinear → add(DequantizeLinear(shortcut)) → max(·, 0) → QuantizeLinear`, five
//! ops and three f32 tensors; [`DirectConvU8`] takes it as one pass over its u8 output
//! ([`U8Tail`]).
//!
//! The successor may still be a decluttered `TypedBinOp`, a codegen'd `OptBinUnicast` /
//! `OptBinByScalar`, or an `OptBinChain` they were collapsed into; each is read as a list of
//! steps `(operation, operand)` applied to our output, and fused only when every step is one
//! the op can take, in that order: at most one add of a tensor of the output's shape, then at
//! most one `max` with a constant zero.

use super::{DirectConvF32, DirectConvU8, U8Tail};
use crate::internal::*;
use crate::ops::binary::{BinMiniOp, OptBinByScalar, OptBinChain, OptBinUnicast, TypedBinOp};
use crate::ops::element_wise::ElementWiseOp;
use crate::ops::math::{Add, Max};
use crate::ops::quant::{DequantizeLinearF32, QuantizeLinearU8};

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
    let shape = op.geometry.output_shape();
    let like_output = |outlet: OutletId| has_shape(model, outlet, f32::datum_type(), &shape);
    rule_if_some!(succ = sole_successor(model, node)?);
    // The fused op's output replaces the successor's: same type and shape (a constant of
    // higher rank would broadcast it).
    rule_if!(succ.outputs.len() == 1 && like_output(succ.id.into())?);
    rule_if_some!(steps = steps_of(succ, node.outputs[0].successors[0].slot));
    let mut fused = op.clone();
    let mut residual = None;
    for step in steps {
        match step {
            Step::Add(other) if !fused.residual && !fused.relu && like_output(other)? => {
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

/// The patch replacing this integer convolution and its tail — `DequantizeLinear`, then
/// elementwise steps (at most one add of a dequantised u8 shortcut of the output's shape, then
/// at most one `max` with zero), then `QuantizeLinear` to u8 — with one op, or None.
pub(super) fn fuse_u8_tail(
    op: &DirectConvU8,
    model: &TypedModel,
    node: &TypedNode,
) -> TractResult<Option<TypedModelPatch>> {
    rule_if!(op.tail.is_none());
    let shape = op.geometry.output_shape();
    rule_if_some!(dq = sole_successor(model, node)?);
    rule_if_some!(conv = dq.op_as::<DequantizeLinearF32>());
    let (mut current, mut steps) = (dq, tvec!());
    let (quant, quantize) = loop {
        rule_if!(has_shape(model, current.id.into(), f32::datum_type(), &shape)?);
        rule_if_some!(succ = sole_successor(model, current)?);
        if let Some(q) = quantize_u8(succ) {
            break (succ, q);
        }
        let slot = current.outputs[0].successors[0].slot;
        rule_if_some!(more = steps_of(succ, slot));
        steps.extend(more);
        current = succ;
    };
    let mut tail = U8Tail {
        conv: (conv.scale, conv.zero_point),
        residual: None,
        relu: false,
        quantize: (quantize.scale, i32::from(quantize.zero_point)),
    };
    let mut shortcut = None;
    for step in steps {
        match step {
            Step::Add(other) if tail.residual.is_none() && !tail.relu => {
                let producer = model.node(other.node);
                rule_if_some!(d = producer.op_as::<DequantizeLinearF32>());
                let input = producer.inputs[0];
                rule_if!(has_shape(model, input, u8::datum_type(), &shape)?);
                tail.residual = Some((d.scale, d.zero_point));
                shortcut = Some(input);
            }
            Step::Max(other) if !tail.relu && is_zero(model, other)? => tail.relu = true,
            _ => return Ok(None),
        }
    }
    let mut fused = op.clone();
    fused.output_dt = model.outlet_fact(quant.id.into())?.datum_type;
    fused.tail = Some(tail);
    let mut patch = TypedModelPatch::new(format!("fuse {}'s tail into {}", quant.name, node.name));
    let mut inputs = patch.taps(model, &node.inputs)?;
    if let Some(s) = shortcut {
        inputs.push(patch.tap_model(model, s)?);
    }
    let wire = patch.wire_node(&node.name, fused, &inputs)?[0];
    patch.shunt_outside(model, quant.id.into(), wire)?;
    Ok(Some(patch))
}

/// The one node reading `node`'s one output, when that output is not a model output.
fn sole_successor<'m>(
    model: &'m TypedModel,
    node: &TypedNode,
) -> TractResult<Option<&'m TypedNode>> {
    if node.outputs.len() != 1
        || node.outputs[0].successors.len() != 1
        || model.output_outlets()?.contains(&node.id.into())
    {
        return Ok(None);
    }
    Ok(Some(model.node(node.outputs[0].successors[0].node)))
}

/// The `QuantizeLinear` to u8 that `node` is, if it is one.
fn quantize_u8(node: &TypedNode) -> Option<&QuantizeLinearU8> {
    node.op_as::<ElementWiseOp>().and_then(|e| e.0.downcast_ref::<QuantizeLinearU8>())
}

/// A tensor of `dt` (quantised or not) and exactly `shape`.
fn has_shape(
    model: &TypedModel,
    outlet: OutletId,
    dt: DatumType,
    shape: &[usize],
) -> TractResult<bool> {
    let fact = model.outlet_fact(outlet)?;
    Ok(fact.datum_type.unquantized() == dt
        && !fact.is_exotic()
        && fact.shape.as_concrete().is_some_and(|s| s == shape))
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
        // The chain's accumulator is input 0; step i's operand is input i + 1. Our output may
        // be the first step's operand instead when that step commutes (an add, a max).
        if succ.inputs.len() != chain.steps.len() + 1 || slot > 1 || chain.steps.is_empty() {
            return None;
        }
        let mut steps: TVec<Step> = chain
            .steps
            .iter()
            .zip(&succ.inputs[1..])
            .map(|(s, other)| step(s.binop.as_ref(), *other))
            .collect::<Option<_>>()?;
        if slot == 1 {
            steps[0] = match steps[0] {
                Step::Add(_) => Step::Add(succ.inputs[0]),
                Step::Max(_) => Step::Max(succ.inputs[0]),
            };
        }
        return Some(steps);
    } else {
        return None;
    };
    // Both operations commute: our output may be either operand.
    if succ.inputs.len() != 2 || slot > 1 {
        return None;
    }
    step(binop, succ.inputs[1 - slot]).map(|s| tvec!(s))
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
