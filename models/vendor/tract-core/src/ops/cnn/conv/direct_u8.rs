//! A direct integer convolution (edgeclr's patch, issue 17) for the `QLinearConv` form edgeclr
//! exports — u8 activations with a per-tensor zero point, i8 weights with zero point 0
//! (per-tensor or per-channel scale), an i32 bias, a u8 output — on the plan of
//! [`super::direct`], with a kernel per instruction set:
//!
//! - AVX-512 VNNI: the phase buffer holds u8 with four channels interleaved at every point,
//!   padded with the input zero point, so sixteen output points of one tap group (four
//!   channels at one kernel position) are 64 contiguous bytes; `vpdpbusd` multiplies them by
//!   the four weights of each of eight output channels and adds the four products into 32-bit
//!   accumulators; `x₀·Σw` is taken off afterwards.
//! - AVX2 with byte pairs ([`U8Isa::Avx2Bytes`]), where every two weights `vpmaddubsw` adds
//!   fit (see [`pairs_fit`]): the VNNI buffer and weights, eight points a vector; `vpmaddubsw`
//!   multiplies u8 by i8 and adds pairs into 16 bits, `vpmaddwd` by ones adds those pairs into
//!   32-bit accumulators — exact, as 255·(sum of a pair's positive weights) ≤ 32 767 and
//!   likewise for the negative ones. edgeclr's export sizes its weight scales for that.
//! - AVX2 otherwise: the buffer holds `x − x₀` as i16 with two channels interleaved (padding is
//!   then 0), and `vpmaddwd` multiplies eight points × two channels by two i16 weights of each
//!   of four output channels, adding pairs into 32-bit accumulators — exact for any weights,
//!   at half the products per instruction.
//!
//! Either block then requantises in registers,
//! `y = sat_u8(round_half_even((acc + offset) · s_x·s_w/s_y) + y₀)`, and stores bytes.

use super::direct::{DirectGeometry, Layout, MAX_VECTORS, Scratch, Shape, Tiling};
use crate::internal::*;

/// The instruction set a [`DirectConvU8`] runs, with its buffer and block shapes.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum U8Isa {
    /// AVX-512F/BW/VNNI: u8 quads, blocks of 8 channels × up to 3 vectors of 16 points.
    Vnni,
    /// AVX2 on u8 quads by `vpmaddubsw` (weights that fit [`pairs_fit`]): blocks of 4 channels
    /// × up to 2 vectors of 8 points.
    Avx2Bytes,
    /// AVX2 on i16 pairs by `vpmaddwd` (any weights): blocks of 4 channels × up to 2 vectors
    /// of 8 points.
    Avx2,
}

/// Whether `vpmaddubsw` adds every pair of weights (input channels `2k`, `2k + 1` at one kernel
/// position) times any u8 without saturating: per pair, the positive weights sum to at most
/// 128 and the negative ones to at least −128 (255 · 128 = 32 640 ≤ 32 767). `kernel` is
/// `[O, C, KH·KW]`.
pub fn pairs_fit(kernel: &[i8], g: &DirectGeometry) -> bool {
    let (c, khw) = (g.input_channels, g.kernel_hw[0] * g.kernel_hw[1]);
    kernel.chunks_exact(c * khw).all(|row| {
        (0..c).step_by(2).all(|ic| {
            (0..khw).all(|k| {
                let a = i32::from(row[ic * khw + k]);
                let b = if ic + 1 < c { i32::from(row[(ic + 1) * khw + k]) } else { 0 };
                a.max(0) + b.max(0) <= 128 && a.min(0) + b.min(0) >= -128
            })
        })
    })
}

impl U8Isa {
    /// The kernel to run `kernel` (`[O, C, KH·KW]`) with on a host that runs `self`
    /// ([`Self::detect`]): AVX2 takes byte pairs where [`pairs_fit`].
    pub fn for_kernel(self, kernel: &[i8], g: &DirectGeometry) -> U8Isa {
        match self {
            U8Isa::Avx2 if pairs_fit(kernel, g) => U8Isa::Avx2Bytes,
            isa => isa,
        }
    }

    /// The best this host runs for any weights: VNNI, else AVX2 on i16 pairs (the knob
    /// `TRACT_DIRECT_CONV_NO_AVX512` skips VNNI, to test and compare the AVX2 kernels there).
    pub fn detect() -> Option<U8Isa> {
        [U8Isa::Vnni, U8Isa::Avx2]
            .into_iter()
            .filter(|isa| *isa != U8Isa::Vnni || !super::conv::TRACT_DIRECT_CONV_NO_AVX512.get())
            .find(|isa| isa.available())
    }

    /// Whether this host has the instructions.
    pub fn available(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            match self {
                U8Isa::Vnni => {
                    std::is_x86_feature_detected!("avx512f")
                        && std::is_x86_feature_detected!("avx512bw")
                        && std::is_x86_feature_detected!("avx512vnni")
                }
                U8Isa::Avx2 | U8Isa::Avx2Bytes => std::is_x86_feature_detected!("avx2"),
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
            U8Isa::Vnni => 8,
            U8Isa::Avx2 | U8Isa::Avx2Bytes => 4,
        }
    }

    /// Input channels interleaved at every point of the phase buffer (one tap group).
    pub const fn group(self) -> usize {
        match self {
            U8Isa::Vnni | U8Isa::Avx2Bytes => 4,
            U8Isa::Avx2 => 2,
        }
    }

    /// How the kernel takes the plan.
    fn shape(self) -> Shape {
        match self {
            U8Isa::Vnni => {
                Shape { lane: 4, lanes: 16, min_vectors: 2, max_vectors: 3, rows: false }
            }
            // 4 × 2 accumulators, 2 inputs, a weight and a product: 12 of 16 registers.
            U8Isa::Avx2 => Shape { lane: 2, lanes: 8, min_vectors: 2, max_vectors: 2, rows: false },
            // 4 × 2 accumulators, 2 inputs, a weight, the ones and a product: 13 of 16.
            U8Isa::Avx2Bytes => {
                Shape { lane: 4, lanes: 8, min_vectors: 2, max_vectors: 2, rows: false }
            }
        }
    }

    /// The `[O, C·KH·KW]` i8 kernel as `[O/oc, tap groups, oc, group]` (tap groups in
    /// `C/group, KH, KW` order, channels past `C` zero): i8, or i16 for AVX2 on i16 pairs.
    pub fn pack_kernel(self, kernel: &[i8], g: &DirectGeometry) -> TractResult<Tensor> {
        let (c, o, oc, q) = (g.input_channels, g.output_channels, self.oc_block(), self.group());
        let khw = g.kernel_hw[0] * g.kernel_hw[1];
        let groups = c.div_ceil(q) * khw;
        let mut packed = vec![0i8; o * groups * q];
        for out in 0..o {
            for ic in 0..c {
                for k in 0..khw {
                    let group = (ic / q) * khw + k;
                    let at = (((out / oc) * groups + group) * oc + out % oc) * q + ic % q;
                    packed[at] = kernel[(out * c + ic) * khw + k];
                }
            }
        }
        match self {
            U8Isa::Vnni | U8Isa::Avx2Bytes => Tensor::from_shape(&[packed.len()], &packed),
            U8Isa::Avx2 => {
                let wide: Vec<i16> = packed.iter().map(|&w| i16::from(w)).collect();
                Tensor::from_shape(&[wide.len()], &wide)
            }
        }
    }

    /// What the kernel adds to an output channel's accumulator before scaling: the bias, less
    /// `x₀·Σw` where the buffer holds `x` itself (VNNI, AVX2 bytes) rather than `x − x₀`
    /// (AVX2 on i16).
    pub fn offset(self, bias: i32, x_zero: u8, weight_sum: i32) -> i32 {
        match self {
            U8Isa::Vnni | U8Isa::Avx2Bytes => bias - i32::from(x_zero) * weight_sum,
            U8Isa::Avx2 => bias,
        }
    }
}

thread_local! {
    static BYTE_SCRATCH: Scratch<u8, u8> = const { Scratch::new() };
    static AVX2_SCRATCH: Scratch<i16, u8> = const { Scratch::new() };
}

/// The requantisation constants of one convolution, per output channel.
pub(super) struct Requant<'a> {
    /// [`U8Isa::offset`].
    pub offset: &'a [i32],
    /// `s_x·s_w / s_y`.
    pub multiplier: &'a [f32],
}

/// The convolution as one op: inputs are the NCHW u8 image, the packed kernel
/// ([`U8Isa::pack_kernel`]), the requantisation offset (i32 `[O]`, [`U8Isa::offset`]) and
/// multiplier (f32 `[O]`).
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub struct DirectConvU8 {
    pub geometry: DirectGeometry,
    pub isa: U8Isa,
    /// Input zero point (the padding value).
    pub x_zero: u8,
    /// Output zero point.
    pub y_zero: i32,
    /// The output's datum type (u8, or u8 with its quantisation).
    pub output_dt: DatumType,
    /// The graph's pointwise tail after the convolution, fused (`fuse`): None when the op's
    /// output is the convolution's.
    pub tail: Option<U8Tail>,
}

/// A ResNet block's tail in a `QLinearConv` graph, `QuantizeLinear(max(DequantizeLinear(conv) +
/// DequantizeLinear(shortcut), 0))`, as one pass over the convolution's u8 output while it is
/// in cache: the same f32 operations in the same order as tract's own ops (bit-identical), with
/// the shortcut (a u8 tensor of the output's shape) as the op's fifth input.
#[derive(Debug, Clone, PartialEq)]
pub struct U8Tail {
    /// `DequantizeLinear` of the convolution's output: `(q − zero) · scale`.
    pub conv: (f32, i32),
    /// `DequantizeLinear` of the shortcut added, if any.
    pub residual: Option<(f32, i32)>,
    /// `max(·, 0)` last.
    pub relu: bool,
    /// `QuantizeLinear`: `round_ties_even(x · inverse scale) + zero`, saturated to u8.
    pub quantize: (f32, i32),
}

impl Eq for U8Tail {}

impl std::hash::Hash for U8Tail {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let bits = |(s, z): (f32, i32)| (s.to_bits(), z);
        (bits(self.conv), self.residual.map(bits), self.relu, bits(self.quantize)).hash(state)
    }
}

impl U8Tail {
    /// The tail over the whole output, in place (`residual` indexed like it): eight values at
    /// a time with AVX2 where the host has it, the rest as tract's ops compute it.
    pub(super) fn apply(&self, out: &mut [u8], residual: Option<&[u8]>) -> TractResult<()> {
        ensure!(
            residual.is_some() == self.residual.is_some()
                && residual.is_none_or(|r| r.len() == out.len()),
            "U8Tail: the shortcut does not match the output"
        );
        #[cfg(target_arch = "x86_64")]
        let done = if std::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is present, and `residual` is as long as `out` (checked above).
            unsafe { super::direct_u8_x86::apply_tail_avx2(self, out, residual) }
        } else {
            0
        };
        #[cfg(not(target_arch = "x86_64"))]
        let done = 0;
        let dequantize =
            |(scale, zero): (f32, i32)| move |q: u8| (i32::from(q) - zero) as f32 * scale;
        let conv = dequantize(self.conv);
        let finish = |mut x: f32| {
            if self.relu {
                x = x.max(0.0);
            }
            crate::ops::quant::quantize_linear_f32_u8(x, self.quantize.0, self.quantize.1)
        };
        let out = &mut out[done..];
        match residual.zip(self.residual) {
            Some((r, params)) => {
                let shortcut = dequantize(params);
                let r = &r[done..];
                out.iter_mut().zip(r).for_each(|(o, &r)| *o = finish(conv(*o) + shortcut(r)));
            }
            None => out.iter_mut().for_each(|o| *o = finish(conv(*o))),
        }
        Ok(())
    }
}

impl Op for DirectConvU8 {
    fn name(&self) -> StaticName {
        "DirectConvU8".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let g = &self.geometry;
        let tail = match &self.tail {
            Some(t) => format!(
                ", then{} {}requantised",
                if t.residual.is_some() { " + shortcut," } else { "" },
                if t.relu { "ReLU, " } else { "" }
            ),
            None => String::new(),
        };
        Ok(vec![format!(
            "{:?}: {}→{} channels, {:?} → {:?}, kernel {:?}, strides {:?}, x₀ {}, y₀ {}{tail}",
            self.isa,
            g.input_channels,
            g.output_channels,
            g.input_hw,
            g.output_hw,
            g.kernel_hw,
            g.strides,
            self.x_zero,
            self.y_zero
        )])
    }

    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    op_as_typed_op!();
}

impl EvalOp for DirectConvU8 {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let residual_input = self.tail.as_ref().is_some_and(|t| t.residual.is_some());
        ensure!(inputs.len() == 4 + usize::from(residual_input));
        let residual = residual_input.then(|| inputs[4].clone());
        let (img, kernel, offset, multiplier) = (&inputs[0], &inputs[1], &inputs[2], &inputs[3]);
        let g = &self.geometry;
        let q = self.isa.group();
        let khw = g.kernel_hw[0] * g.kernel_hw[1];
        let kernel_dt = match self.isa {
            U8Isa::Vnni | U8Isa::Avx2Bytes => i8::datum_type(),
            U8Isa::Avx2 => i16::datum_type(),
        };
        ensure!(
            img.datum_type().unquantized() == u8::datum_type()
                && img.len() == g.input_channels * g.input_hw[0] * g.input_hw[1]
                && kernel.datum_type() == kernel_dt
                && kernel.len() == g.output_channels * g.input_channels.div_ceil(q) * khw * q
                && offset.len() == g.output_channels
                && multiplier.len() == g.output_channels
                && g.output_channels.is_multiple_of(self.isa.oc_block()),
            "DirectConvU8: inputs do not match {g:?}"
        );
        ensure!(self.isa.available(), "DirectConvU8 needs {:?}", self.isa);
        let img = unsafe { img.as_slice_unchecked::<u8>() };
        let requant = Requant {
            offset: offset.try_as_plain_ram()?.as_slice::<i32>()?,
            multiplier: multiplier.try_as_plain_ram()?.as_slice::<f32>()?,
        };
        let mut output = unsafe { Tensor::uninitialized_dt(self.output_dt, &g.output_shape())? };
        let out = unsafe { output.as_slice_mut_unchecked::<u8>() };
        let shape = self.isa.shape();
        match self.isa {
            U8Isa::Vnni | U8Isa::Avx2Bytes => {
                let kernel = unsafe { kernel.as_slice_unchecked::<i8>() };
                g.convolve(
                    &BYTE_SCRATCH,
                    img,
                    shape,
                    self.x_zero,
                    |x| x,
                    out,
                    |b, planes, t| self.run(b, kernel, &requant, planes, t),
                )?
            }
            U8Isa::Avx2 => {
                let kernel = unsafe { kernel.as_slice_unchecked::<i16>() };
                let x0 = i16::from(self.x_zero);
                let centre = move |x: u8| i16::from(x) - x0;
                g.convolve(&AVX2_SCRATCH, img, shape, 0, centre, out, |b, planes, t| {
                    self.run(b, kernel, &requant, planes, t)
                })?
            }
        }
        if let Some(tail) = &self.tail {
            let residual = match &residual {
                Some(r) => {
                    ensure!(r.datum_type().unquantized() == u8::datum_type());
                    Some(unsafe { r.as_slice_unchecked::<u8>() })
                }
                None => None,
            };
            tail.apply(out, residual)?;
        }
        Ok(tvec!(output.into_tvalue()))
    }
}

impl DirectConvU8 {
    /// Every register block of `tiling`, for every channel block, into `output` planes
    /// (`buffer` holds `T` with [`U8Isa::group`] channels a point, `kernel` its packed
    /// weights `W`).
    fn run<T, W>(
        &self,
        buffer: &[T],
        kernel: &[W],
        requant: &Requant,
        output: &mut [u8],
        tiling: &Tiling,
    ) -> TractResult<()> {
        let g = &self.geometry;
        let (q, oc) = (self.isa.group(), self.isa.oc_block());
        let offsets = g.tap_offsets(g.input_channels.div_ceil(q), Layout::Planar);
        let groups = offsets.len();
        let stride = tiling.stride;
        ensure!(
            output.len() >= g.output_channels * stride && tiling.lanes == self.isa.shape().lanes
        );
        tiling.check(offsets.iter().max().copied().unwrap_or(0), buffer.len() / q)?;
        // One pointer into the output, offset per vector (checked by `tiling.check`): taking
        // a `&mut` sub-slice per vector would invalidate the ones taken before it.
        let output = output.as_mut_ptr();
        for vb in &tiling.blocks {
            let inputs = vb.at.map(|(start, _)| buffer[start * q..].as_ptr().cast());
            for ob in (0..g.output_channels).step_by(oc) {
                let base = ob * stride;
                let block = QBlock {
                    inputs,
                    offsets: &offsets,
                    weights: kernel[ob * groups * q..][..oc * groups * q].as_ptr().cast(),
                    offset: &requant.offset[ob..][..oc],
                    multiplier: &requant.multiplier[ob..][..oc],
                    y_zero: self.y_zero,
                    outputs: vb.at.map(|(_, out)| output.wrapping_add(base + out)),
                    channel_stride: stride,
                };
                // SAFETY: the caller checked `isa.available()`; every read is inside `buffer`
                // and every write inside the block's output planes (`tiling.check`).
                unsafe { super::direct_u8_x86::block(self.isa, vb.n, &block)? };
            }
        }
        Ok(())
    }
}

impl TypedOp for DirectConvU8 {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let residual = self.tail.as_ref().is_some_and(|t| t.residual.is_some());
        ensure!(inputs.len() == 4 + usize::from(residual));
        Ok(tvec!(TypedFact::dt_shape(self.output_dt, self.geometry.output_shape())))
    }

    fn cost(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let g = &self.geometry;
        let fma = g.output_channels * g.taps() * g.output_hw[0] * g.output_hw[1];
        Ok(tvec!((Cost::FMA(i32::datum_type()), fma.into())))
    }

    fn fuse(&self, model: &TypedModel, node: &TypedNode) -> TractResult<Option<TypedModelPatch>> {
        super::direct_fuse::fuse_u8_tail(self, model, node)
    }

    as_op!();
}

/// One register block's pointers (read by the kernels): each of its vectors' first point in
/// the phase buffer and in the output plane of the block's first channel.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(super) struct QBlock<'a> {
    /// [`U8Isa::group`] channels a point: u8, or i16 for AVX2 on i16 pairs.
    pub inputs: [*const u8; MAX_VECTORS],
    /// Tap-group offsets in points.
    pub offsets: &'a [usize],
    /// `[tap groups, oc, group]` weights of the block's channels (i8, or i16 for AVX2 on i16
    /// pairs).
    pub weights: *const u8,
    pub offset: &'a [i32],
    pub multiplier: &'a [f32],
    pub y_zero: i32,
    pub outputs: [*mut u8; MAX_VECTORS],
    pub channel_stride: usize,
}
