//! A direct f32 convolution with AVX-512 (edgeclr's patch, issue 17).
//!
//! For a batch-1 NCHW group-1 convolution with stride 1 or 2, unit dilation and a multiple of
//! eight output channels, the input is copied once into a zero-padded buffer split into its
//! `sh × sw` stride phases, so every kernel tap of every output row reads one contiguous run of
//! the buffer. A register block then holds eight output channels × up to three vectors of
//! sixteen output points (24 accumulators): for each tap (input channel × kernel position) it
//! loads the three input vectors once and multiplies them by the eight channels' broadcast
//! weights, and writes the block straight into the NCHW output rows. Rows whose width is not a
//! multiple of sixteen are computed as one run over the buffer's rows instead, so that every
//! vector is full (see `run_blocks`). Nothing is unfolded; the weights
//! are packed once, when the plan is built, as `[O/8, taps, 8]` (one block's eight weights of a
//! tap on one cache line), and the phase buffer is a per-thread scratch reused between runs.

use crate::internal::*;
use crate::ops::cnn::Patch;
use crate::ops::nn::DataShape;

/// Output channels of one register block.
pub const OC_BLOCK: usize = 8;
/// Output points of one vector.
pub(super) const LANES: usize = 16;
/// Vectors of output points in one register block.
const MAX_VECTORS: usize = 3;

/// The geometry a [`DirectConvAvx512`] runs: all concrete, batch 1.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub struct DirectGeometry {
    pub input_channels: usize,
    pub output_channels: usize,
    /// Input height and width.
    pub input_hw: [usize; 2],
    /// Output height and width.
    pub output_hw: [usize; 2],
    pub kernel_hw: [usize; 2],
    pub strides: [usize; 2],
    /// Zero padding before (top, left) and after (bottom, right).
    pub pad_before: [usize; 2],
    pub pad_after: [usize; 2],
}

impl DirectGeometry {
    /// The geometry of a convolution this op can run, or None.
    pub fn of(patch: &Patch, input: &DataShape, output: &DataShape) -> Option<DirectGeometry> {
        let spec = &patch.spec;
        if spec.kernel_shape.len() != 2
            || spec.dilations.iter().any(|&d| d != 1)
            || spec.strides.iter().any(|&s| s != 1 && s != 2)
            || input.n().is_some_and(|&n| n != 1)
            || *input.w_stride() != 1
            || *output.w_stride() != 1
        {
            return None;
        }
        let pair = |v: &[usize]| [v[0], v[1]];
        let geo = DirectGeometry {
            input_channels: *input.c(),
            output_channels: *output.c(),
            input_hw: pair(input.hw_dims()),
            output_hw: pair(output.hw_dims()),
            kernel_hw: pair(&spec.kernel_shape),
            strides: pair(&spec.strides),
            pad_before: pair(&patch.pad_before),
            pad_after: pair(&patch.pad_after),
        };
        geo.reads_stay_inside().then_some(geo)
    }

    /// Height and width of one stride phase of the padded input.
    pub(super) fn phase_hw(&self) -> [usize; 2] {
        [0, 1].map(|a| {
            let padded = self.input_hw[a] + self.pad_before[a] + self.pad_after[a];
            padded.div_ceil(self.strides[a])
        })
    }

    /// The last output point's last tap lies inside the padded input (true of every valid
    /// convolution geometry; checked so that no read can leave the buffer).
    fn reads_stay_inside(&self) -> bool {
        [0, 1].iter().all(|&a| {
            let padded = self.input_hw[a] + self.pad_before[a] + self.pad_after[a];
            self.output_hw[a] > 0
                && (self.output_hw[a] - 1) * self.strides[a] + self.kernel_hw[a] <= padded
        })
    }

    fn taps(&self) -> usize {
        self.input_channels * self.kernel_hw[0] * self.kernel_hw[1]
    }

    /// Points (one per channel group, row and column of each phase) in the phase buffer of
    /// `groups` channel groups, plus slack: runs over whole phase rows read up to one row and
    /// one block past the last output point.
    pub(super) fn buffer_points(&self, groups: usize) -> usize {
        let [hs, ws] = self.phase_hw();
        self.strides[0] * self.strides[1] * groups * hs * ws + ws + (MAX_VECTORS + 1) * LANES
    }

    /// Copies `input` (C×H×W) into the phase buffer, `pad` around it: phase (ry, rx) holds the
    /// padded rows ≡ ry and columns ≡ rx modulo the strides, as `[phase, C/lane, hs, ws, lane]`
    /// — `lane` channels interleaved at every point. Phases no tap reads (ry ≥ KH or rx ≥ KW,
    /// as in a strided 1×1) are left as they were.
    pub(super) fn fill_phases<T: Copy>(&self, input: &[T], lane: usize, pad: T, buffer: &mut [T]) {
        let [h, w] = self.input_hw;
        let [hs, ws] = self.phase_hw();
        let [sh, sw] = self.strides;
        let [pt, pl] = self.pad_before;
        let plane = hs * ws * lane;
        let phase_len = self.input_channels.div_ceil(lane) * plane;
        // Only the phases a tap reads (a strided 1×1 reads phase (0, 0) alone), and the slack.
        let [kh, kw] = self.kernel_hw;
        for ry in 0..sh.min(kh) {
            for rx in 0..sw.min(kw) {
                buffer[(ry * sw + rx) * phase_len..][..phase_len].fill(pad);
            }
        }
        buffer[sh * sw * phase_len..].fill(pad);
        for c in 0..self.input_channels {
            let channel = (c / lane) * plane + c % lane;
            for y in 0..h {
                let (py, src) = (y + pt, &input[(c * h + y) * w..][..w]);
                if py % sh >= kh {
                    continue;
                }
                let row = (py % sh) * sw * phase_len + channel + (py / sh) * ws * lane;
                if sw == 1 && lane == 1 {
                    buffer[row + pl..][..w].copy_from_slice(src);
                    continue;
                }
                if sw == 2 && lane == 1 && kw >= 2 {
                    // Source column x goes to phase (x + pl) % 2 at (x + pl) / 2.
                    let (first, second) = buffer[row..].split_at_mut(phase_len);
                    let (even, odd) = if pl % 2 == 0 { (first, second) } else { (second, first) };
                    deinterleave(src, &mut even[pl / 2..], &mut odd[pl.div_ceil(2)..]);
                    continue;
                }
                // Column phase rx holds the padded columns px ≡ rx: source columns x0, x0 + sw, …
                for rx in 0..sw.min(kw) {
                    let x0 = (rx + sw - pl % sw) % sw;
                    let dst = &mut buffer[row + rx * phase_len + (x0 + pl) / sw * lane..];
                    for (d, v) in dst.iter_mut().step_by(lane).zip(src.iter().skip(x0).step_by(sw)) {
                        *d = *v;
                    }
                }
            }
        }
    }

    /// For every tap in `group, KH, KW` order, where output point (0, 0) reads it in the
    /// phase buffer of `groups` channel groups, in points; output point (y, x) reads
    /// `offset + y·ws + x`.
    pub(super) fn tap_offsets(&self, groups: usize) -> Vec<usize> {
        let [hs, ws] = self.phase_hw();
        let [sh, sw] = self.strides;
        let phase_len = groups * hs * ws;
        let mut offsets = Vec::with_capacity(groups * self.kernel_hw[0] * self.kernel_hw[1]);
        for c in 0..groups {
            for ky in 0..self.kernel_hw[0] {
                for kx in 0..self.kernel_hw[1] {
                    let phase = (ky % sh) * sw + kx % sw;
                    offsets.push(phase * phase_len + c * hs * ws + (ky / sh) * ws + kx / sw);
                }
            }
        }
        offsets
    }

    /// Register blocks over the output. Rows that are a multiple of sixteen points wide (at
    /// least 32) are cut into blocks along each row and written in place. Other widths would
    /// leave vectors partly empty, so there the output rows are taken as one run over the
    /// phase buffer's rows (`ho · ws` points, the `ws − wo` points past each row's end computed
    /// and dropped): every vector is full, and the rows are copied out of a scratch plane
    /// afterwards ([`Self::compact`]).
    pub(super) fn tiling(&self) -> Tiling {
        let [ho, wo] = self.output_hw;
        let ws = self.phase_hw()[1];
        let span = MAX_VECTORS * LANES;
        if self.writes_in_place() {
            let mut blocks = vec![];
            for y in 0..ho {
                for x in (0..wo).step_by(span) {
                    blocks.push((y * ws + x, y * wo + x, (wo - x).min(span) / LANES));
                }
            }
            return Tiling { blocks, stride: ho * wo, in_place: true };
        }
        let run_len = ho * ws;
        let blocks = (0..run_len)
            .step_by(span)
            .map(|j| (j, j, (run_len - j).min(span).div_ceil(LANES)))
            .collect();
        Tiling { blocks, stride: run_len.div_ceil(span) * span, in_place: false }
    }

    /// Whether [`Self::tiling`] writes the output rows in place (widths that are a multiple of
    /// sixteen, at least 32) rather than as runs over the phase rows.
    pub(super) fn writes_in_place(&self) -> bool {
        let wo = self.output_hw[1];
        wo.is_multiple_of(LANES) && wo >= 2 * LANES
    }

    /// Copies whole-run planes (`stride` apart, rows `ws` apart) into the NCHW output.
    pub(super) fn compact<T: Copy>(&self, runs: &[T], stride: usize, output: &mut [T]) {
        let [ho, wo] = self.output_hw;
        let ws = self.phase_hw()[1];
        for (o, out) in output.chunks_exact_mut(ho * wo).enumerate() {
            for (y, row) in out.chunks_exact_mut(wo).enumerate() {
                row.copy_from_slice(&runs[o * stride + y * ws..][..wo]);
            }
        }
    }
}

/// `src[2i] → a[i]`, `src[2i + 1] → b[i]` (a straight loop the compiler vectorises).
fn deinterleave<T: Copy>(src: &[T], a: &mut [T], b: &mut [T]) {
    let pairs = src.chunks_exact(2);
    let last = pairs.remainder().first();
    let n = src.len() / 2;
    for ((pair, x), y) in pairs.zip(&mut a[..n]).zip(&mut b[..n]) {
        *x = pair[0];
        *y = pair[1];
    }
    if let Some(v) = last {
        a[n] = *v;
    }
}

impl DirectGeometry {
    /// Fills the phase buffer from `input` (`lane` channels a point, `pad` around it), then
    /// runs `blocks(buffer, planes, tiling)` into the output's own planes, or into scratch
    /// planes compacted into `output` afterwards. Both buffers are `scratch`, kept per thread.
    pub(super) fn convolve<T: Copy + Default + 'static>(
        &self,
        scratch: &'static std::thread::LocalKey<Scratch<T>>,
        input: &[T],
        lane: usize,
        pad: T,
        output: &mut [T],
        blocks: impl Fn(&[T], &mut [T], &Tiling) -> TractResult<()>,
    ) -> TractResult<()> {
        scratch.with(|scratch| {
            let mut buffer = scratch.phases.borrow_mut();
            let len = self.buffer_points(self.input_channels.div_ceil(lane)) * lane;
            if buffer.len() < len {
                buffer.resize(len, pad);
            }
            let buffer = &mut buffer[..len];
            self.fill_phases(input, lane, pad, buffer);
            let tiling = self.tiling();
            if tiling.in_place {
                return blocks(buffer, output, &tiling);
            }
            let mut runs = scratch.runs.borrow_mut();
            let len = self.output_channels * tiling.stride;
            if runs.len() < len {
                runs.resize(len, T::default());
            }
            blocks(buffer, &mut runs, &tiling)?;
            self.compact(&runs, tiling.stride, output);
            Ok(())
        })
    }
}

/// Per-thread buffers of one element type, reused by every run: the phase buffer, and output
/// planes of whole runs over the phase rows (for widths that are not multiples of sixteen).
/// Each grows to the largest convolution the thread runs.
pub(super) struct Scratch<T> {
    phases: std::cell::RefCell<Vec<T>>,
    runs: std::cell::RefCell<Vec<T>>,
}

impl<T> Scratch<T> {
    pub(super) const fn new() -> Self {
        Scratch {
            phases: std::cell::RefCell::new(Vec::new()),
            runs: std::cell::RefCell::new(Vec::new()),
        }
    }
}

/// Where a convolution's register blocks go: `(buffer start, output start, vectors)` each,
/// with output planes `stride` apart; `in_place` when they are the NCHW output's own planes.
pub(super) struct Tiling {
    pub blocks: Vec<(usize, usize, usize)>,
    pub stride: usize,
    pub in_place: bool,
}

impl Tiling {
    /// Checks that every block reads inside a buffer of `buffer_points` with taps up to
    /// `furthest_tap`, and writes inside its planes.
    pub(super) fn check(&self, furthest_tap: usize, buffer_points: usize) -> TractResult<()> {
        for &(start, out, n) in &self.blocks {
            ensure!(
                start + furthest_tap + n * LANES <= buffer_points && out + n * LANES <= self.stride,
                "direct convolution: a block leaves its buffers"
            );
        }
        Ok(())
    }
}

/// The `[O, taps]` kernel as `[O/8, taps, 8]`: a register block's eight weights of one tap are
/// adjacent.
pub fn pack_kernel(kernel: &[f32], output_channels: usize) -> Vec<f32> {
    let taps = kernel.len() / output_channels.max(1);
    let mut packed = vec![0f32; kernel.len()];
    for (o, row) in kernel.chunks_exact(taps).enumerate() {
        let (block, lane) = (o / OC_BLOCK, o % OC_BLOCK);
        for (t, w) in row.iter().enumerate() {
            packed[(block * taps + t) * OC_BLOCK + lane] = *w;
        }
    }
    packed
}

thread_local! {
    static SCRATCH: Scratch<f32> = const { Scratch::new() };
}

/// Whether this host runs the AVX-512 kernel.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The convolution as one op: inputs are the NCHW image, the `[1, O, I·KH·KW]` kernel and the
/// `[O]` bias, then (with `residual`) a tensor of the output's shape added after the bias;
/// with `relu`, `max(·, 0)` last. Both are fused from the successors (`fuse`): a ResNet's
/// `conv → ReLU` and `conv → add shortcut → ReLU` run as one op and one pass over the output.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub struct DirectConvAvx512 {
    pub geometry: DirectGeometry,
    pub residual: bool,
    pub relu: bool,
}

impl Op for DirectConvAvx512 {
    fn name(&self) -> StaticName {
        "DirectConvAvx512".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let g = &self.geometry;
        Ok(vec![format!(
            "{}→{} channels, {:?} → {:?}, kernel {:?}, strides {:?}, pads {:?}/{:?}{}{}",
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

impl EvalOp for DirectConvAvx512 {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let g = &self.geometry;
        let [ho, wo] = g.output_hw;
        let out_len = g.output_channels * ho * wo;
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
                && g.output_channels.is_multiple_of(OC_BLOCK),
            "DirectConvAvx512: inputs do not match {g:?}"
        );
        ensure!(available(), "DirectConvAvx512 needs AVX-512");
        let mut output =
            unsafe { Tensor::uninitialized::<f32>(&[1, g.output_channels, ho, wo])? };
        let kernel = kernel.try_as_plain_ram()?.as_slice::<f32>()?;
        let bias = bias.try_as_plain_ram()?.as_slice::<f32>()?;
        let img = img.try_as_plain_ram()?.as_slice::<f32>()?;
        let out = unsafe { output.as_slice_mut_unchecked::<f32>() };
        let epilogue = Epilogue { residual, relu: self.relu };
        // Rows written in place take the epilogue in registers; runs over the phase rows take
        // it in one pass over the compacted output, while it is still in cache.
        let in_place = g.writes_in_place();
        g.convolve(&SCRATCH, img, 1, 0.0, out, |buffer, planes, tiling| {
            run(g, buffer, kernel, bias, planes, tiling, in_place.then_some(&epilogue))
        })?;
        if !in_place {
            epilogue.apply(out);
        }
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for DirectConvAvx512 {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 3 + usize::from(self.residual));
        let g = &self.geometry;
        Ok(tvec!(f32::fact([1, g.output_channels, g.output_hw[0], g.output_hw[1]])))
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

/// What a [`DirectConvAvx512`] does to its output after the bias.
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
fn run(
    g: &DirectGeometry,
    buffer: &[f32],
    kernel: &[f32],
    bias: &[f32],
    output: &mut [f32],
    tiling: &Tiling,
    epilogue: Option<&Epilogue>,
) -> TractResult<()> {
    let offsets = g.tap_offsets(g.input_channels);
    let taps = offsets.len();
    let stride = tiling.stride;
    ensure!(
        kernel.len() == g.output_channels * taps
            && bias.len() == g.output_channels
            && output.len() >= g.output_channels * stride
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
    // channel block reads them (the weights stream from L2 instead). The other order measured
    // the same (2026-12-03, interleaved, within this machine's noise).
    for &(start, out, n) in &tiling.blocks {
        for ob in (0..g.output_channels).step_by(OC_BLOCK) {
            let block = Block {
                input: buffer[start..].as_ptr(),
                offsets: &offsets,
                weights: kernel[ob * taps..][..OC_BLOCK * taps].as_ptr(),
                bias: bias[ob..][..OC_BLOCK].as_ptr(),
                output: output[ob * stride + out..].as_mut_ptr(),
                residual: residual.map_or(std::ptr::null(), |r| r[ob * stride + out..].as_ptr()),
                relu,
                channel_stride: stride,
            };
            // SAFETY: `available()` was checked by the caller; every read is inside `buffer`
            // and every write inside the block's eight output planes (`tiling.check`).
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

/// One register block's pointers (read by the x86_64 kernel).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
struct Block<'a> {
    /// The phase buffer at the block's first output point.
    input: *const f32,
    offsets: &'a [usize],
    /// `[taps, OC_BLOCK]` weights of the block's channels.
    weights: *const f32,
    bias: *const f32,
    /// The output at the block's first channel and point.
    output: *mut f32,
    /// Added before `relu` (indexed like `output`), or null.
    residual: *const f32,
    relu: bool,
    channel_stride: usize,
}

#[cfg(target_arch = "x86_64")]
mod kernel {
    use super::{Block, LANES, OC_BLOCK};
    use std::arch::x86_64::*;

    /// Eight channels × `V` vectors of sixteen output points.
    ///
    /// # Safety
    /// AVX-512F is present; every `input + offset + 16·V` and every `output + o·channel_stride
    /// + 16·V` (and `residual + …` when not null) lies inside its allocation.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn block<const V: usize>(b: &Block) {
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); V]; OC_BLOCK];
            for (o, row) in acc.iter_mut().enumerate() {
                let bias = _mm512_set1_ps(*b.bias.add(o));
                row.iter_mut().for_each(|a| *a = bias);
            }
            for (t, &offset) in b.offsets.iter().enumerate() {
                let src = b.input.add(offset);
                let mut x = [_mm512_setzero_ps(); V];
                for (v, xv) in x.iter_mut().enumerate() {
                    *xv = _mm512_loadu_ps(src.add(v * LANES));
                }
                let w = b.weights.add(t * OC_BLOCK);
                for (o, row) in acc.iter_mut().enumerate() {
                    let w = _mm512_set1_ps(*w.add(o));
                    for (a, xv) in row.iter_mut().zip(&x) {
                        *a = _mm512_fmadd_ps(*xv, w, *a);
                    }
                }
            }
            for (o, row) in acc.iter().enumerate() {
                let at = o * b.channel_stride;
                for (v, &a) in row.iter().enumerate() {
                    let mut a = a;
                    if !b.residual.is_null() {
                        a = _mm512_add_ps(a, _mm512_loadu_ps(b.residual.add(at + v * LANES)));
                    }
                    if b.relu {
                        a = _mm512_max_ps(a, _mm512_setzero_ps());
                    }
                    _mm512_storeu_ps(b.output.add(at + v * LANES), a);
                }
            }
        }
    }
}
