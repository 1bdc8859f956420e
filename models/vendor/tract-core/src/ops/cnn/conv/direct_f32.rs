//! A direct f32 convolution (edgeclr's patch, issue 17) on the plan of [`super::direct`], with
//! a register-blocked kernel per instruction set: AVX-512F (eight output channels × three
//! vectors of sixteen points: 24 of its 32 registers) and AVX2 with FMA (four channels × three
//! vectors of eight points: 12 of its 16 registers; AMD Zen and Intel hosts without AVX-512).
//! For each tap (input channel × kernel position) a block loads its input vectors once and
//! multiplies them by its channels' broadcast weights, packed once, when the plan is built, as
//! `[O/oc, taps, oc]` (one block's weights of a tap adjacent).

use super::direct::{DirectGeometry, MAX_VECTORS, Scratch, Shape, Tiling};
use crate::internal::*;

/// The instruction set a [`DirectConvF32`] runs, with its register block's shape.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum F32Isa {
    /// AVX-512F: blocks of 8 channels × vectors of 16 points.
    Avx512,
    /// AVX2 and FMA: blocks of 4 channels × vectors of 8 points.
    Avx2Fma,
}

impl F32Isa {
    /// The widest this host runs: AVX-512F, else AVX2 with FMA (the knob
    /// `TRACT_DIRECT_CONV_NO_AVX512` skips AVX-512, to test and compare the AVX2 kernel there).
    pub fn detect() -> Option<F32Isa> {
        [F32Isa::Avx512, F32Isa::Avx2Fma]
            .into_iter()
            .filter(|isa| *isa != F32Isa::Avx512 || !super::conv::TRACT_DIRECT_CONV_NO_AVX512.get())
            .find(|isa| isa.available())
    }

    /// Whether this host has the instructions.
    pub fn available(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            match self {
                F32Isa::Avx512 => std::is_x86_feature_detected!("avx512f"),
                F32Isa::Avx2Fma => {
                    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// Output channels of one register block.
    pub const fn oc_block(self) -> usize {
        match self {
            F32Isa::Avx512 => 8,
            F32Isa::Avx2Fma => 4,
        }
    }

    /// How the kernel takes the plan: one channel a point, up to three vectors a block, rows
    /// written in place read from a [`super::direct::Layout::Rows`] buffer. Blocks span rows
    /// where rows are narrow, so nearly every block has three vectors; AVX2 needs them (12
    /// accumulators): its two-vector blocks measured 20 G multiply-adds/s on rows of 32 against
    /// 29 G for three-vector ones on an AMD EPYC.
    pub(super) fn shape(self) -> Shape {
        let min_vectors = match self {
            F32Isa::Avx512 => 2,
            F32Isa::Avx2Fma => 3,
        };
        Shape { lane: 1, lanes: self.lanes(), min_vectors, max_vectors: MAX_VECTORS, rows: true }
    }

    /// Output points of one vector.
    pub const fn lanes(self) -> usize {
        match self {
            F32Isa::Avx512 => 16,
            F32Isa::Avx2Fma => 8,
        }
    }
}

/// The `[O, taps]` kernel as `[O/oc, taps, oc]` for blocks of `oc` channels, its taps in
/// the order `g` reads them on `isa` ([`DirectGeometry::tap_order`]): a register block's
/// weights of one tap are adjacent.
pub fn pack_kernel(kernel: &[f32], g: &DirectGeometry, isa: F32Isa) -> Vec<f32> {
    let (oc, taps) = (isa.oc_block(), g.taps());
    let order = g.tap_order(g.input_channels, g.layout(isa.shape()));
    let mut packed = vec![0f32; kernel.len()];
    for (o, row) in kernel.chunks_exact(taps).enumerate() {
        let (block, lane) = (o / oc, o % oc);
        for (t, &from) in order.iter().enumerate() {
            packed[(block * taps + t) * oc + lane] = row[from];
        }
    }
    packed
}

thread_local! {
    static SCRATCH: Scratch<f32, f32> = const { Scratch::new() };
}

/// The convolution as one op: inputs are the NCHW image, the packed kernel ([`pack_kernel`])
/// and the `[O]` bias, then (with `residual`) a tensor of the output's shape added after the
/// bias; with `relu`, `max(·, 0)` last. Both are fused from the successors (`fuse`): a
/// ResNet's `conv → ReLU` and `conv → add shortcut → ReLU` run as one op and one pass over the
/// output.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub struct DirectConvF32 {
    pub geometry: DirectGeometry,
    pub isa: F32Isa,
    pub residual: bool,
    pub relu: bool,
}

impl Op for DirectConvF32 {
    fn name(&self) -> StaticName {
        "DirectConvF32".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let g = &self.geometry;
        Ok(vec![format!(
            "{:?}: {}→{} channels, {:?} → {:?}, kernel {:?}, strides {:?}, pads {:?}/{:?}{}{}",
            self.isa,
            g.input_channels,
            g.output_channels,
            g.input_hw,
            g.output_hw,
            g.kernel_hw,
            g.strides,
            g.pad_before,
            g.pad_after,
            if self.residual { " + residual" } else { "" },
            if self.relu { ", ReLU" } else { "" },
        )])
    }

    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    op_as_typed_op!();
}

impl EvalOp for DirectConvF32 {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let g = &self.geometry;
        let out_len: usize = g.output_shape().iter().product();
        ensure!(inputs.len() == 3 + usize::from(self.residual));
        let (img, kernel, bias) = (&inputs[0], &inputs[1], &inputs[2]);
        let residual = match self.residual {
            true => Some(inputs[3].try_as_plain_ram()?.as_slice::<f32>()?),
            false => None,
        };
        ensure!(
            img.datum_type() == f32::datum_type()
                && img.len() == g.input_channels * g.input_hw[0] * g.input_hw[1]
                && kernel.len() == g.output_channels * g.taps()
                && bias.len() == g.output_channels
                && residual.is_none_or(|r| r.len() == out_len)
                && g.output_channels.is_multiple_of(self.isa.oc_block()),
            "DirectConvF32: inputs do not match {g:?}"
        );
        ensure!(self.isa.available(), "DirectConvF32 needs {:?}", self.isa);
        let mut output = unsafe { Tensor::uninitialized::<f32>(&g.output_shape())? };
        let kernel = kernel.try_as_plain_ram()?.as_slice::<f32>()?;
        let bias = bias.try_as_plain_ram()?.as_slice::<f32>()?;
        let img = img.try_as_plain_ram()?.as_slice::<f32>()?;
        let out = unsafe { output.as_slice_mut_unchecked::<f32>() };
        let epilogue = Epilogue { residual, relu: self.relu };
        // Rows written in place take the epilogue in registers; runs over the phase rows take
        // it in one pass over the compacted output, while it is still in cache.
        let shape = self.isa.shape();
        let in_place = g.writes_in_place(shape);
        g.convolve(
            &SCRATCH,
            img,
            shape,
            0.0,
            |v| v,
            out,
            |buffer, planes, tiling| {
                let epilogue = in_place.then_some(&epilogue);
                run(self.isa, g, buffer, kernel, bias, planes, tiling, epilogue)
            },
        )?;
        if !in_place {
            epilogue.apply(out);
        }
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for DirectConvF32 {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 3 + usize::from(self.residual));
        let g = &self.geometry;
        Ok(tvec!(f32::fact(g.output_shape())))
    }

    fn cost(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let g = &self.geometry;
        let fma = g.output_channels * g.taps() * g.output_hw[0] * g.output_hw[1];
        Ok(tvec!((Cost::FMA(f32::datum_type()), fma.into())))
    }

    fn fuse(&self, model: &TypedModel, node: &TypedNode) -> TractResult<Option<TypedModelPatch>> {
        super::direct_fuse::fuse_epilogue(self, model, node)
    }

    as_op!();
}

/// What a [`DirectConvF32`] does to its output after the bias.
struct Epilogue<'a> {
    residual: Option<&'a [f32]>,
    relu: bool,
}

impl Epilogue<'_> {
    /// The epilogue over a whole NCHW output.
    fn apply(&self, out: &mut [f32]) {
        match (self.residual, self.relu) {
            (Some(r), true) => out.iter_mut().zip(r).for_each(|(o, r)| *o = (*o + r).max(0.0)),
            (Some(r), false) => out.iter_mut().zip(r).for_each(|(o, r)| *o += r),
            (None, true) => out.iter_mut().for_each(|o| *o = o.max(0.0)),
            (None, false) => {}
        }
    }
}

/// Every register block of `tiling`, for every channel block, into `output` planes; with
/// `epilogue` (in-place tilings only: the residual is indexed like the output) applied in
/// registers.
#[allow(clippy::too_many_arguments)]
fn run(
    isa: F32Isa,
    g: &DirectGeometry,
    buffer: &[f32],
    kernel: &[f32],
    bias: &[f32],
    output: &mut [f32],
    tiling: &Tiling,
    epilogue: Option<&Epilogue>,
) -> TractResult<()> {
    let offsets = g.tap_offsets(g.input_channels, g.layout(isa.shape()));
    let (taps, stride, oc) = (offsets.len(), tiling.stride, isa.oc_block());
    ensure!(
        kernel.len() == g.output_channels * taps
            && bias.len() == g.output_channels
            && output.len() >= g.output_channels * stride
            && tiling.lanes == isa.lanes()
    );
    tiling.check(offsets.iter().max().copied().unwrap_or(0), buffer.len())?;
    let residual = epilogue.and_then(|e| e.residual);
    ensure!(
        epilogue.is_none() || tiling.in_place,
        "direct convolution: an epilogue in registers needs in-place rows"
    );
    ensure!(residual.is_none_or(|r| r.len() >= g.output_channels * stride));
    let relu = epilogue.is_some_and(|e| e.relu);
    // Output blocks outside, channel blocks inside: a block's input runs stay in L1 while every
    // channel block reads them (the weights stream from L2 instead). The other order, groups
    // of channel blocks whose weights fit L1, and prefetching the next block's input lines
    // measured the same or worse (Intel Xeon and AMD EPYC, 2026-12-03, interleaved).
    // One pointer into the output, offset per vector (checked by `tiling.check`): taking a
    // `&mut` sub-slice per vector would invalidate the ones taken before it.
    let output = output.as_mut_ptr();
    for vb in &tiling.blocks {
        let inputs = vb.at.map(|(start, _)| buffer[start..].as_ptr());
        for ob in (0..g.output_channels).step_by(oc) {
            let base = ob * stride;
            let block = Block {
                inputs,
                offsets: &offsets,
                weights: kernel[ob * taps..][..oc * taps].as_ptr(),
                bias: bias[ob..][..oc].as_ptr(),
                outputs: vb.at.map(|(_, out)| output.wrapping_add(base + out)),
                residuals: residual.map(|r| vb.at.map(|(_, out)| r[base + out..].as_ptr())),
                relu,
                channel_stride: stride,
            };
            // SAFETY: the caller checked `isa.available()`; every read is inside `buffer` and
            // every write inside the block's output planes (`tiling.check`).
            unsafe { super::direct_f32_x86::block(isa, vb.n, &block)? };
        }
    }
    Ok(())
}

/// One register block's pointers (read by the kernels): each of its vectors' first point in
/// the phase buffer and in the output (and residual) planes of the block's first channel.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(super) struct Block<'a> {
    pub inputs: [*const f32; MAX_VECTORS],
    pub offsets: &'a [usize],
    /// `[taps, oc]` weights of the block's channels.
    pub weights: *const f32,
    pub bias: *const f32,
    pub outputs: [*mut f32; MAX_VECTORS],
    /// Added before `relu` (indexed like `outputs`).
    pub residuals: Option<[*const f32; MAX_VECTORS]>,
    pub relu: bool,
    pub channel_stride: usize,
}
