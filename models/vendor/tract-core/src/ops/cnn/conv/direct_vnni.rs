//! A direct integer convolution with AVX-512 VNNI (edgeclr's patch, issue 17): the
//! `QLinearConv` form edgeclr exports — u8 activations with a per-tensor zero point, i8 weights
//! with zero point 0 (per-tensor or per-channel scale), an i32 bias, a u8 output.
//!
//! The same plan as [`super::DirectConvAvx512`]: the input is copied into its stride phases,
//! padded with the input zero point, with four channels interleaved at every point, so sixteen
//! output points of one tap group (four channels at one kernel position) are 64 contiguous
//! bytes; `vpdpbusd` multiplies them by the four weights of each of eight output channels and
//! adds the four products into 32-bit accumulators. The block then requantises in registers,
//! `y = sat_u8(round_half_even((acc − x₀·Σw + bias) · s_x·s_w/s_y) + y₀)`, and stores bytes.

use super::direct_avx512::{DirectGeometry, OC_BLOCK, Scratch, Tiling};
use crate::internal::*;

/// Input channels interleaved at every point (one `vpdpbusd` lane).
const QUAD: usize = 4;

thread_local! {
    static SCRATCH: Scratch<u8> = const { Scratch::new() };
}

/// Whether this host runs the VNNI kernel.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The requantisation constants of one convolution, per output channel.
struct Requant<'a> {
    /// `bias − x₀·Σw`.
    offset: &'a [i32],
    /// `s_x·s_w / s_y`.
    multiplier: &'a [f32],
}

/// The `[O, C·KH·KW]` i8 kernel as `[O/8, tap groups, 8, 4]` (tap groups in `C/4, KH, KW`
/// order, channels past `C` zero), and `Σw` per output channel.
pub fn pack_kernel(kernel: &[i8], g: &DirectGeometry) -> (Vec<i8>, Vec<i32>) {
    let (c, o) = (g.input_channels, g.output_channels);
    let khw = g.kernel_hw[0] * g.kernel_hw[1];
    let groups = c.div_ceil(QUAD) * khw;
    let mut packed = vec![0i8; o * groups * QUAD];
    let mut sums = vec![0i32; o];
    for oc in 0..o {
        for ic in 0..c {
            for k in 0..khw {
                let w = kernel[(oc * c + ic) * khw + k];
                sums[oc] += i32::from(w);
                let group = (ic / QUAD) * khw + k;
                let at = (((oc / OC_BLOCK) * groups + group) * OC_BLOCK + oc % OC_BLOCK) * QUAD;
                packed[at + ic % QUAD] = w;
            }
        }
    }
    (packed, sums)
}

/// The convolution as one op: inputs are the NCHW u8 image, the packed kernel (i8, as
/// [`pack_kernel`] lays it out), the requantisation offset (i32 `[O]`) and multiplier (f32 `[O]`).
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub struct DirectConvVnni {
    pub geometry: DirectGeometry,
    /// Input zero point (the padding value).
    pub x_zero: u8,
    /// Output zero point.
    pub y_zero: i32,
    /// The output's datum type (u8, or u8 with its quantisation).
    pub output_dt: DatumType,
}

impl Op for DirectConvVnni {
    fn name(&self) -> StaticName {
        "DirectConvVnni".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let g = &self.geometry;
        Ok(vec![format!(
            "{}→{} channels, {:?} → {:?}, kernel {:?}, strides {:?}, x₀ {}, y₀ {}",
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

impl EvalOp for DirectConvVnni {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (img, kernel, offset, multiplier) = args_4!(inputs);
        let g = &self.geometry;
        let [ho, wo] = g.output_hw;
        let groups = g.input_channels.div_ceil(QUAD);
        let khw = g.kernel_hw[0] * g.kernel_hw[1];
        ensure!(
            img.datum_type().unquantized() == u8::datum_type()
                && img.len() == g.input_channels * g.input_hw[0] * g.input_hw[1]
                && kernel.len() == g.output_channels * groups * khw * QUAD
                && offset.len() == g.output_channels
                && multiplier.len() == g.output_channels,
            "DirectConvVnni: inputs do not match {g:?}"
        );
        ensure!(available(), "DirectConvVnni needs AVX-512 VNNI");
        let img = unsafe { img.as_slice_unchecked::<u8>() };
        let kernel = unsafe { kernel.as_slice_unchecked::<i8>() };
        let requant = Requant {
            offset: offset.try_as_plain_ram()?.as_slice::<i32>()?,
            multiplier: multiplier.try_as_plain_ram()?.as_slice::<f32>()?,
        };
        let mut output =
            unsafe { Tensor::uninitialized_dt(self.output_dt, &[1, g.output_channels, ho, wo])? };
        let out = unsafe { output.as_slice_mut_unchecked::<u8>() };
        g.convolve(&SCRATCH, img, QUAD, self.x_zero, out, |buffer, planes, tiling| {
            self.run(buffer, kernel, &requant, planes, tiling)
        })?;
        Ok(tvec!(output.into_tvalue()))
    }
}

impl DirectConvVnni {
    /// Every register block of `tiling`, for every channel block, into `output` planes.
    fn run(
        &self,
        buffer: &[u8],
        kernel: &[i8],
        requant: &Requant,
        output: &mut [u8],
        tiling: &Tiling,
    ) -> TractResult<()> {
        let g = &self.geometry;
        let offsets = g.tap_offsets(g.input_channels.div_ceil(QUAD));
        let groups = offsets.len();
        let stride = tiling.stride;
        ensure!(output.len() >= g.output_channels * stride);
        tiling.check(offsets.iter().max().copied().unwrap_or(0), buffer.len() / QUAD)?;
        for &(start, out, n) in &tiling.blocks {
            for ob in (0..g.output_channels).step_by(OC_BLOCK) {
                let block = QBlock {
                    input: buffer[start * QUAD..].as_ptr(),
                    offsets: &offsets,
                    weights: kernel[ob * groups * QUAD..][..OC_BLOCK * groups * QUAD].as_ptr(),
                    offset: &requant.offset[ob..][..OC_BLOCK],
                    multiplier: &requant.multiplier[ob..][..OC_BLOCK],
                    y_zero: self.y_zero,
                    output: output[ob * stride + out..].as_mut_ptr(),
                    channel_stride: stride,
                };
                // SAFETY: `available()` was checked by the caller; every read is inside
                // `buffer` and every write inside the block's eight output planes
                // (`tiling.check`).
                #[cfg(target_arch = "x86_64")]
                unsafe {
                    match n {
                        1 => kernel::block::<1>(&block),
                        2 => kernel::block::<2>(&block),
                        _ => kernel::block::<3>(&block),
                    }
                }
                #[cfg(not(target_arch = "x86_64"))]
                bail!("the direct convolution runs on x86_64 only ({} vectors of block {:p})", n, &block);
            }
        }
        Ok(())
    }
}

impl TypedOp for DirectConvVnni {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 4);
        let g = &self.geometry;
        let shape = [1, g.output_channels, g.output_hw[0], g.output_hw[1]];
        Ok(tvec!(TypedFact::dt_shape(self.output_dt, shape)))
    }

    fn cost(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let g = &self.geometry;
        let taps = g.input_channels * g.kernel_hw[0] * g.kernel_hw[1];
        let fma = g.output_channels * taps * g.output_hw[0] * g.output_hw[1];
        Ok(tvec!((Cost::FMA(i32::datum_type()), fma.into())))
    }

    as_op!();
}

/// One register block's pointers (read by the x86_64 kernel).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
struct QBlock<'a> {
    /// The phase buffer at the block's first output point (four bytes a point).
    input: *const u8,
    /// Tap-group offsets in points.
    offsets: &'a [usize],
    /// `[tap groups, OC_BLOCK, 4]` weights of the block's channels.
    weights: *const i8,
    offset: &'a [i32],
    multiplier: &'a [f32],
    y_zero: i32,
    /// The output at the block's first channel and point.
    output: *mut u8,
    channel_stride: usize,
}

#[cfg(target_arch = "x86_64")]
mod kernel {
    use super::super::direct_avx512::LANES;
    use super::{OC_BLOCK, QBlock, QUAD};
    use std::arch::x86_64::*;

    /// Eight channels × `V` vectors of sixteen output points.
    ///
    /// # Safety
    /// AVX-512F/BW/VNNI are present; every `input + 4·(offset + 16·V)` and every
    /// `output + o·channel_stride + 16·V` lies inside its allocation.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn block<const V: usize>(b: &QBlock) {
        unsafe {
            let mut acc = [[_mm512_setzero_si512(); V]; OC_BLOCK];
            for (t, &offset) in b.offsets.iter().enumerate() {
                let src = b.input.add(offset * QUAD);
                let mut x = [_mm512_setzero_si512(); V];
                for (v, xv) in x.iter_mut().enumerate() {
                    *xv = _mm512_loadu_si512(src.add(v * LANES * QUAD).cast());
                }
                let w = b.weights.add(t * OC_BLOCK * QUAD).cast::<i32>();
                for (o, row) in acc.iter_mut().enumerate() {
                    let w = _mm512_set1_epi32(w.add(o).read_unaligned());
                    for (a, xv) in row.iter_mut().zip(&x) {
                        *a = _mm512_dpbusd_epi32(*a, *xv, w);
                    }
                }
            }
            let (y_zero, zero) = (_mm512_set1_epi32(b.y_zero), _mm512_setzero_si512());
            let (low, high) = (_mm512_set1_ps(-512.0), _mm512_set1_ps(512.0));
            for (o, row) in acc.iter().enumerate() {
                let offset = _mm512_set1_epi32(b.offset[o]);
                let m = _mm512_set1_ps(b.multiplier[o]);
                let dst = b.output.add(o * b.channel_stride);
                for (v, a) in row.iter().enumerate() {
                    let scaled = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(*a, offset)), m);
                    // Out of u8 range either way once y₀ (0..=255) is added: clamp first, so
                    // that neither the conversion nor the addition can overflow.
                    let scaled = _mm512_min_ps(_mm512_max_ps(scaled, low), high);
                    // Round half to even (the default rounding mode), then saturate to u8.
                    let q = _mm512_add_epi32(_mm512_cvtps_epi32(scaled), y_zero);
                    let bytes = _mm512_cvtusepi32_epi8(_mm512_max_epi32(q, zero));
                    _mm_storeu_si128(dst.add(v * LANES).cast(), bytes);
                }
            }
        }
    }
}
