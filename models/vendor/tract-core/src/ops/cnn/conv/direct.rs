//! The plan edgeclr's direct convolutions share (issue 17): the geometry they take, the
//! stride-phase buffer their input is copied into, and how the output is cut into register
//! blocks.
//!
//! For a batch-1 NCHW group-1 convolution with stride 1 or 2 and unit dilation, the input is
//! copied once into a padded buffer split into its `sh × sw` stride phases, so every kernel
//! tap of every output row reads one contiguous run of the buffer. A register block of a
//! kernel then holds a few output channels × up to three vectors of output points (of one
//! row, or of consecutive rows where rows are narrow): for each tap it loads the input vectors
//! once and multiplies them by each channel's broadcast weight, and writes the block straight
//! into the NCHW output rows. Rows whose width is not a
//! multiple of the vector are computed as one run over the buffer's rows instead, so that every
//! vector is full (see [`DirectGeometry::tiling`]). Nothing is unfolded, and the buffers are
//! per-thread scratch reused between runs. [`super::DirectConvF32`] (fp32, AVX-512 or AVX2)
//! and [`super::DirectConvU8`] (int8, AVX-512 VNNI or AVX2) run this plan with their own
//! kernels.

use crate::internal::*;
use crate::ops::cnn::Patch;
use crate::ops::nn::DataShape;

/// Vectors of output points in one register block, at most.
pub(super) const MAX_VECTORS: usize = 3;
/// The widest vector any kernel reads, in points (the buffer's slack is sized for it).
const WIDEST: usize = 16;

/// The geometry a direct convolution runs: all concrete, batch 1.
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

    /// The NCHW output's shape.
    pub(super) fn output_shape(&self) -> [usize; 4] {
        [1, self.output_channels, self.output_hw[0], self.output_hw[1]]
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

    pub(super) fn taps(&self) -> usize {
        self.input_channels * self.kernel_hw[0] * self.kernel_hw[1]
    }

    /// Points (one per channel group, row and column of each phase) in the phase buffer of
    /// `groups` channel groups, plus slack: runs over whole phase rows read up to one row and
    /// one block past the last output point.
    pub(super) fn buffer_points(&self, groups: usize) -> usize {
        let [hs, ws] = self.phase_hw();
        self.strides[0] * self.strides[1] * groups * hs * ws + ws + (MAX_VECTORS + 1) * WIDEST
    }

    /// Copies `input` (C×H×W) into the phase buffer as `map` turns each value into the
    /// buffer's type, `pad` around it: phase (ry, rx) holds the
    /// padded rows ≡ ry and columns ≡ rx modulo the strides, in `layout` — `lane` channels
    /// interleaved at every point. Phases no tap reads (ry ≥ KH or rx ≥ KW,
    /// as in a strided 1×1) are left as they were.
    pub(super) fn fill_phases<S: Copy, T: Copy>(
        &self,
        input: &[S],
        lane: usize,
        layout: Layout,
        pad: T,
        map: impl Fn(S) -> T + Copy,
        buffer: &mut [T],
    ) {
        let [h, w] = self.input_hw;
        let [hs, ws] = self.phase_hw();
        let [sh, sw] = self.strides;
        let [pt, pl] = self.pad_before;
        let groups = self.input_channels.div_ceil(lane);
        let (group_stride, row_stride) = self.point_strides(layout, groups);
        let phase_len = groups * hs * ws * lane;
        // Only the phases a tap reads (a strided 1×1 reads phase (0, 0) alone), and the slack.
        let [kh, kw] = self.kernel_hw;
        for ry in 0..sh.min(kh) {
            for rx in 0..sw.min(kw) {
                buffer[(ry * sw + rx) * phase_len..][..phase_len].fill(pad);
            }
        }
        buffer[sh * sw * phase_len..].fill(pad);
        for c in 0..self.input_channels {
            let channel = (c / lane) * group_stride * lane + c % lane;
            for y in 0..h {
                let (py, src) = (y + pt, &input[(c * h + y) * w..][..w]);
                if py % sh >= kh {
                    continue;
                }
                let row = (py % sh) * sw * phase_len + channel + (py / sh) * row_stride * lane;
                if sw == 1 && lane == 1 {
                    buffer[row + pl..][..w].iter_mut().zip(src).for_each(|(d, s)| *d = map(*s));
                    continue;
                }
                if sw == 2 && lane == 1 && kw >= 2 {
                    // Source column x goes to phase (x + pl) % 2 at (x + pl) / 2.
                    let (first, second) = buffer[row..].split_at_mut(phase_len);
                    let (even, odd) = if pl % 2 == 0 { (first, second) } else { (second, first) };
                    deinterleave(src, &mut even[pl / 2..], &mut odd[pl.div_ceil(2)..], map);
                    continue;
                }
                // Column phase rx holds the padded columns px ≡ rx: source columns x0, x0 + sw, …
                for rx in 0..sw.min(kw) {
                    let x0 = (rx + sw - pl % sw) % sw;
                    let dst = &mut buffer[row + rx * phase_len + (x0 + pl) / sw * lane..];
                    for (d, v) in dst.iter_mut().step_by(lane).zip(src.iter().skip(x0).step_by(sw))
                    {
                        *d = map(*v);
                    }
                }
            }
        }
    }

    /// Points between a phase's channel groups and between its rows, in `layout`.
    fn point_strides(&self, layout: Layout, groups: usize) -> (usize, usize) {
        let [hs, ws] = self.phase_hw();
        match layout {
            Layout::Planar => (hs * ws, ws),
            Layout::Rows => (ws, groups * ws),
        }
    }

    /// The layout a kernel of `shape` takes: [`Layout::Rows`] where it asks for it and the
    /// rows are written in place, else [`Layout::Planar`] (runs over the rows need it).
    pub(super) fn layout(&self, shape: Shape) -> Layout {
        if shape.rows && self.writes_in_place(shape) { Layout::Rows } else { Layout::Planar }
    }

    /// The taps in the order `layout` reads them, as indices into `group, KH, KW` order:
    /// `KH, group, KW` for [`Layout::Rows`] (a sweep through each input row in turn).
    pub(super) fn tap_order(&self, groups: usize, layout: Layout) -> Vec<usize> {
        let [kh, kw] = self.kernel_hw;
        let index = |c: usize, ky: usize, kx: usize| (c * kh + ky) * kw + kx;
        let mut order = Vec::with_capacity(groups * kh * kw);
        match layout {
            Layout::Planar => order.extend(0..groups * kh * kw),
            Layout::Rows => {
                for ky in 0..kh {
                    for c in 0..groups {
                        order.extend((0..kw).map(|kx| index(c, ky, kx)));
                    }
                }
            }
        }
        order
    }

    /// For every tap in [`Self::tap_order`], where output point (0, 0) reads it in the phase
    /// buffer of `groups` channel groups in `layout`, in points; output point (y, x) reads
    /// `offset + y·row stride + x`.
    pub(super) fn tap_offsets(&self, groups: usize, layout: Layout) -> Vec<usize> {
        let [hs, ws] = self.phase_hw();
        let [sh, sw] = self.strides;
        let [kh, kw] = self.kernel_hw;
        let phase_len = groups * hs * ws;
        let (group_stride, row_stride) = self.point_strides(layout, groups);
        let offset = |tap: usize| {
            let (c, ky, kx) = (tap / (kh * kw), tap / kw % kh, tap % kw);
            let phase = (ky % sh) * sw + kx % sw;
            phase * phase_len + c * group_stride + (ky / sh) * row_stride + kx / sw
        };
        self.tap_order(groups, layout).into_iter().map(offset).collect()
    }

    /// Register blocks over the output, for vectors of `lanes` points. Where the rows are a
    /// whole number of vectors wide ([`Self::writes_in_place`]) every vector of every row is
    /// taken in turn and the sequence is dealt into blocks, so a block may span rows (a row of
    /// one or two vectors still fills three-vector blocks), written in place. Other widths
    /// would leave vectors partly empty, so there the output rows are taken as one run over the
    /// phase buffer's rows (`ho · ws` points, the `ws − wo` points past each row's end computed
    /// and dropped): every vector is full, and the rows are copied out of a scratch plane
    /// afterwards ([`Self::compact`]). Either way the vectors are dealt into blocks of at most
    /// `max_vectors` (≤ [`MAX_VECTORS`]) as evenly as that allows (four vectors are two blocks
    /// of two, not three and one: a one-vector block has too few accumulators to hide the
    /// latency of its multiply-adds).
    pub(super) fn tiling(&self, shape: Shape) -> Tiling {
        let Shape { lane, lanes, max_vectors, .. } = shape;
        let [ho, wo] = self.output_hw;
        let ws = self.phase_hw()[1];
        let (vectors, stride, in_place): (Vec<(usize, usize)>, usize, bool) =
            if self.writes_in_place(shape) {
                let groups = self.input_channels.div_ceil(lane);
                let row_stride = self.point_strides(self.layout(shape), groups).1;
                let per_row = wo / lanes;
                let at = |i: usize| {
                    let (y, v) = (i / per_row, i % per_row);
                    (y * row_stride + v * lanes, y * wo + v * lanes)
                };
                ((0..ho * per_row).map(at).collect(), ho * wo, true)
            } else {
                let n = (ho * ws).div_ceil(lanes);
                ((0..n).map(|v| (v * lanes, v * lanes)).collect(), n * lanes, false)
            };
        let blocks = deal(vectors.len(), max_vectors)
            .map(|(first, n)| VectorBlock::of(&vectors[first..][..n]))
            .collect();
        Tiling { blocks, stride, in_place, lanes }
    }

    /// Whether [`Self::tiling`] writes the output rows in place: widths that are a whole number
    /// of vectors, with at least `min_vectors` of them in all (fewer cannot fill a block that
    /// keeps the multiply-adds busy: one run over the phase rows then does better).
    pub(super) fn writes_in_place(&self, shape: Shape) -> bool {
        let [ho, wo] = self.output_hw;
        wo.is_multiple_of(shape.lanes) && ho * wo / shape.lanes >= shape.min_vectors.max(1)
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

/// `vectors` dealt into `⌈vectors / max⌉` blocks whose sizes differ by at most one:
/// `(first vector, vectors)` each.
fn deal(vectors: usize, max: usize) -> impl Iterator<Item = (usize, usize)> {
    let blocks = vectors.div_ceil(max.clamp(1, MAX_VECTORS));
    let (base, extra) = (vectors / blocks.max(1), vectors % blocks.max(1));
    (0..blocks).scan(0, move |first, b| {
        let n = base + usize::from(b < extra);
        let at = *first;
        *first += n;
        Some((at, n))
    })
}

/// `map(src[2i]) → a[i]`, `map(src[2i + 1]) → b[i]` (a straight loop the compiler vectorises).
fn deinterleave<S: Copy, T: Copy>(src: &[S], a: &mut [T], b: &mut [T], map: impl Fn(S) -> T) {
    let pairs = src.chunks_exact(2);
    let last = pairs.remainder().first();
    let n = src.len() / 2;
    for ((pair, x), y) in pairs.zip(&mut a[..n]).zip(&mut b[..n]) {
        *x = map(pair[0]);
        *y = map(pair[1]);
    }
    if let Some(v) = last {
        a[n] = map(*v);
    }
}

/// How a kernel takes the plan: `lane` input channels interleaved at every point of the phase
/// buffer, vectors of `lanes` output points, blocks of up to `max_vectors` vectors, rows
/// written in place only where they hold at least `min_vectors` vectors in all, and whether it
/// reads those rows from a [`Layout::Rows`] buffer.
#[derive(Debug, Clone, Copy)]
pub(super) struct Shape {
    pub lane: usize,
    pub lanes: usize,
    pub min_vectors: usize,
    pub max_vectors: usize,
    pub rows: bool,
}

/// How the phase buffer orders one phase's points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Layout {
    /// `[group, hs, ws, lane]`: each channel group's plane whole, so the rows of a plane are
    /// one run (what runs over the phase rows read).
    Planar,
    /// `[hs, group, ws, lane]`: row y of every group, then row y + 1. A block's taps, taken
    /// `KH, group, KW`, then sweep KH contiguous regions in address order instead of hopping
    /// between planes a channel apart (which the hardware prefetchers do not follow).
    Rows,
}

impl DirectGeometry {
    /// Fills the phase buffer from `input` (`map` turning each value into the buffer's type,
    /// `pad` around it), then runs `blocks(buffer, planes, tiling)` into the output's own
    /// planes, or into scratch planes compacted into `output` afterwards. Both buffers are
    /// `scratch`, kept per thread.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn convolve<S: Copy, T: Copy + Default + 'static, O: Copy + Default + 'static>(
        &self,
        scratch: &'static std::thread::LocalKey<Scratch<T, O>>,
        input: &[S],
        shape: Shape,
        pad: T,
        map: impl Fn(S) -> T + Copy,
        output: &mut [O],
        blocks: impl Fn(&[T], &mut [O], &Tiling) -> TractResult<()>,
    ) -> TractResult<()> {
        scratch.with(|scratch| {
            let mut buffer = scratch.phases.borrow_mut();
            let len = self.buffer_points(self.input_channels.div_ceil(shape.lane)) * shape.lane;
            if buffer.len() < len {
                buffer.resize(len, pad);
            }
            let buffer = &mut buffer[..len];
            self.fill_phases(input, shape.lane, self.layout(shape), pad, map, buffer);
            let tiling = self.tiling(shape);
            if tiling.in_place {
                return blocks(buffer, output, &tiling);
            }
            let mut runs = scratch.runs.borrow_mut();
            let len = self.output_channels * tiling.stride;
            if runs.len() < len {
                runs.resize(len, O::default());
            }
            blocks(buffer, &mut runs, &tiling)?;
            self.compact(&runs, tiling.stride, output);
            Ok(())
        })
    }
}

/// Per-thread buffers, reused by every run: the phase buffer (of `T`), and output planes (of
/// `O`) of whole runs over the phase rows (for widths that are not multiples of a vector).
/// Each grows to the largest convolution the thread runs.
pub(super) struct Scratch<T, O> {
    phases: std::cell::RefCell<Vec<T>>,
    runs: std::cell::RefCell<Vec<O>>,
}

impl<T, O> Scratch<T, O> {
    pub(super) const fn new() -> Self {
        Scratch {
            phases: std::cell::RefCell::new(Vec::new()),
            runs: std::cell::RefCell::new(Vec::new()),
        }
    }
}

/// One register block's vectors: `(buffer start, output start)` of each, in points; the
/// first `n` are used.
#[derive(Debug, Clone, Copy)]
pub(super) struct VectorBlock {
    pub at: [(usize, usize); MAX_VECTORS],
    pub n: usize,
}

impl VectorBlock {
    fn of(vectors: &[(usize, usize)]) -> VectorBlock {
        let mut at = [vectors[0]; MAX_VECTORS];
        at[..vectors.len()].copy_from_slice(vectors);
        VectorBlock { at, n: vectors.len() }
    }

    /// The used vectors.
    pub(super) fn vectors(&self) -> &[(usize, usize)] {
        &self.at[..self.n]
    }
}

/// Where a convolution's register blocks go, with output planes `stride` apart; `in_place`
/// when they are the NCHW output's own planes.
pub(super) struct Tiling {
    pub blocks: Vec<VectorBlock>,
    pub stride: usize,
    pub in_place: bool,
    /// Points of one vector.
    pub lanes: usize,
}

impl Tiling {
    /// Checks that every block reads inside a buffer of `buffer_points` with taps up to
    /// `furthest_tap`, and writes inside its planes.
    pub(super) fn check(&self, furthest_tap: usize, buffer_points: usize) -> TractResult<()> {
        for &(start, out) in self.blocks.iter().flat_map(|b| b.vectors()) {
            ensure!(
                start + furthest_tap + self.lanes <= buffer_points
                    && out + self.lanes <= self.stride,
                "direct convolution: a block leaves its buffers"
            );
        }
        Ok(())
    }
}
