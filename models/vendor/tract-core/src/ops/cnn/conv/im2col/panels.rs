//! edgeclr patch (issue 17): 2-D im2col written one packed panel at a time.
//!
//! Upstream's 2-D patchers walk the unfolded matrix one K row at a time across all N output
//! positions, so every K row touches every panel once: for a 3×3 convolution over 32
//! channels at 96×96 (K = 288, N = 9,216, f32 panels of 12 lanes) that is 288 passes over a
//! 10.6 MB buffer, each writing 48 bytes per 13.8 KB panel — a partial cache line per panel
//! per pass, the buffer far larger than L2. This writes each panel (r output positions, all
//! K) completely before the next, so the writes stay in one L1-resident panel; the values
//! and their packed positions are exactly upstream's.

use super::ConcreteGeometry;
use crate::internal::*;
use num_integer::Integer;

/// Where element (k, lane) of one packed panel lives, for the two packings tract's
/// convolution kernels take.
#[derive(Clone, Copy, Debug)]
pub(super) enum PanelLayout {
    /// `PackedFormat`: K-major, `r` lanes per K row.
    KOuter { r: usize, panel_len: usize },
    /// `PackedI8K4`: groups of four consecutive K per lane, `4·r` items per group.
    K4 { r: usize, panel_len: usize },
}

impl PanelLayout {
    fn r(self) -> usize {
        match self {
            Self::KOuter { r, .. } | Self::K4 { r, .. } => r,
        }
    }

    fn panel_len(self) -> usize {
        match self {
            Self::KOuter { panel_len, .. } | Self::K4 { panel_len, .. } => panel_len,
        }
    }
}

/// The widest `K4` panel handled (tract's int8 kernels use 8 and 16 lanes).
const MAX_K4_LANES: usize = 64;

/// Marks a lane whose input position lies in the padding.
const PAD: isize = isize::MIN;

/// The output positions of one panel and, for every kernel tap, where each lane reads.
struct Lanes {
    r: usize,
    origin: Vec<(isize, isize, isize)>,
    /// `source[tap·r + lane]`: storage offset of the lane's input for that tap, or [`PAD`].
    source: Vec<isize>,
    /// Per tap: no lane is in the padding.
    inside: Vec<bool>,
    /// Per tap, when the lanes lie on one output row with unit x stride: the lanes
    /// `lo..hi` that read input (one contiguous run); the others read padding.
    span: Vec<Option<(usize, usize)>>,
}

impl Lanes {
    fn new(r: usize, taps: usize) -> Lanes {
        Lanes {
            r,
            origin: vec![(0, 0, 0); r],
            source: vec![PAD; r * taps],
            inside: vec![false; taps],
            span: vec![None; taps],
        }
    }

    /// Aims the lanes `0..width` at output positions `first..first + width`, for every tap.
    fn aim(&mut self, geo: &Geo, patch: &crate::ops::cnn::Patch, first: usize, width: usize) {
        for (lane, o) in self.origin[..width].iter_mut().enumerate() {
            let (yo, xo) = (first + lane).div_rem(&geo.output_width);
            let (y, x) = (yo as isize * geo.y_stride, xo as isize * geo.x_stride);
            *o = (y, x, yo as isize * geo.y_stride_ptr + xo as isize * geo.x_stride_ptr);
        }
        let one_row = first / geo.output_width == (first + width - 1) / geo.output_width;
        for tap in 0..self.inside.len() {
            let (dy, dx) = (patch.data_field[(tap, 0)], patch.data_field[(tap, 1)]);
            let offset = patch.standard_layout_data_field[tap];
            let sources = &mut self.source[tap * self.r..][..width];
            let mut all_inside = true;
            for (s, &(y, x, off)) in sources.iter_mut().zip(&self.origin[..width]) {
                let (y, x) = (y + dy, x + dx);
                let inside = y >= 0 && y < geo.input_height && x >= 0 && x < geo.input_width;
                *s = if inside { off + offset } else { PAD };
                all_inside &= inside;
            }
            self.inside[tap] = all_inside;
            self.span[tap] = (one_row && geo.x_stride_ptr == 1).then(|| {
                let lo = sources.iter().position(|&s| s != PAD).unwrap_or(width);
                let hi = sources.iter().rposition(|&s| s != PAD).map_or(lo, |i| i + 1);
                (lo, hi)
            });
        }
    }

    /// Whether all `r` lanes read one contiguous run of input for `tap` (a full panel on one
    /// output row, unit x stride, no padding).
    fn run(&self, tap: usize) -> bool {
        self.span[tap] == Some((0, self.r))
    }

    fn sources(&self, tap: usize, width: usize) -> &[isize] {
        &self.source[tap * self.r..][..width]
    }
}

/// The scalar geometry the panel loop needs.
struct Geo {
    y_stride: isize,
    x_stride: isize,
    y_stride_ptr: isize,
    x_stride_ptr: isize,
    c_stride_ptr: isize,
    input_height: isize,
    input_width: isize,
    output_width: usize,
}

impl Geo {
    fn of(geometry: &ConcreteGeometry) -> Geo {
        let shape = &geometry.input_shape_with_n;
        let spec = &geometry.pool.patch.spec;
        let (y_stride, x_stride) = (spec.strides[0] as isize, spec.strides[1] as isize);
        Geo {
            y_stride,
            x_stride,
            y_stride_ptr: y_stride * *shape.h_stride() as isize,
            x_stride_ptr: x_stride * *shape.w_stride() as isize,
            c_stride_ptr: *shape.c_stride() as isize,
            input_height: shape.hw_dims()[0] as isize,
            input_width: shape.hw_dims()[1] as isize,
            output_width: geometry.pool.patch.output_shape[1],
        }
    }
}

/// Unfolds group `g` of a 2-D (valid or padded) convolution input into `dst`, packed as
/// `layout`, one panel at a time. Positions in the padding get `pad`. Lanes past `n` in the
/// last panel and K-padding items are left as the caller initialised them.
///
/// # Safety
/// `input` must match `geometry` (rank-2 spatial, with N) and `dst` must hold
/// `ceil(n / r)` panels of `layout.panel_len()` items of `T`.
pub(super) unsafe fn patch_2d<T: Copy + Datum>(
    geometry: &ConcreteGeometry,
    input: &TensorView,
    g: usize,
    pad: T,
    layout: PanelLayout,
    dst: *mut T,
) {
    let geo = Geo::of(geometry);
    let patch = &geometry.pool.patch;
    let taps = patch.standard_layout_data_field.len();
    let c_offset = g * geometry.ci_per_group * geometry.input_shape_with_n.c_stride();
    let base = unsafe { input.as_ptr_unchecked::<T>().add(c_offset) };
    let (r, n) = (layout.r(), geometry.n);
    let mut lanes = Lanes::new(r, taps);
    // Which channel plane and tap each K row reads, computed once (a division per K row
    // per panel was a visible share of the time).
    let rows = (0..geometry.k)
        .map(|k| ((k / taps) as isize * geo.c_stride_ptr, k % taps))
        .collect();
    let unfold = Unfold { base, rows, pad };
    for p in 0..n.div_ceil(r) {
        let width = r.min(n - p * r);
        lanes.aim(&geo, patch, p * r, width);
        let panel = unsafe { dst.add(p * layout.panel_len()) };
        match layout {
            PanelLayout::KOuter { .. } => unsafe { unfold.k_outer(&lanes, width, panel) },
            PanelLayout::K4 { .. } => unsafe { unfold.k4(&lanes, width, panel) },
        }
    }
}

/// One group's input and what each K row reads: channel `k / taps`, tap `k % taps`.
struct Unfold<T> {
    base: *const T,
    /// Per K row: offset of its channel plane from `base`, and its tap.
    rows: Vec<(isize, usize)>,
    pad: T,
}

impl<T: Copy> Unfold<T> {
    /// The channel plane K row `k` reads, and its tap.
    #[inline(always)]
    fn row(&self, k: usize) -> (*const T, usize) {
        let (plane, tap) = self.rows[k];
        (unsafe { self.base.offset(plane) }, tap)
    }

    /// One `KOuter` panel: K row `k` is `r` consecutive items at `k·r`.
    unsafe fn k_outer(&self, lanes: &Lanes, width: usize, panel: *mut T) {
        let r = lanes.r;
        for k in 0..self.rows.len() {
            let (src, tap) = self.row(k);
            let sources = lanes.sources(tap, width);
            let to = unsafe { panel.add(k * r) };
            unsafe {
                if lanes.run(tap) {
                    copy_row(r, src.offset(sources[0]), to);
                } else {
                    self.gather(sources, lanes.inside[tap], src, to, 1);
                }
            }
        }
    }

    /// One `K4` panel: K rows `4j..4j+4` interleaved, four items per lane, at `4j·r`; K
    /// padding (past `k`) written as 0, which the int8 kernels accumulate. Rows that are one
    /// contiguous input run are read in place; rows that are a run plus padding (the edges of
    /// an output row) or scattered (stride 2) are staged in a scratch row first, so every
    /// group is written by the same interleave.
    unsafe fn k4(&self, lanes: &Lanes, width: usize, panel: *mut T) {
        let r = lanes.r;
        let zero: T = unsafe { std::mem::zeroed() };
        let mut scratch = [[zero; MAX_K4_LANES]; 4];
        assert!(r <= MAX_K4_LANES, "K4 panels wider than {MAX_K4_LANES} lanes");
        let k_rows = self.rows.len();
        for group in 0..k_rows.div_ceil(4) {
            let mut rows = [std::ptr::null::<T>(); 4];
            for q in 0..4 {
                let (k, tmp) = (4 * group + q, &mut scratch[q]);
                rows[q] = if k >= k_rows {
                    tmp[..r].fill(zero);
                    tmp.as_ptr()
                } else {
                    let (src, tap) = self.row(k);
                    let sources = lanes.sources(tap, width);
                    if lanes.run(tap) {
                        unsafe { src.offset(sources[0]) }
                    } else if let Some((lo, hi)) = lanes.span[tap] {
                        tmp[..width].fill(self.pad);
                        tmp[width..r].fill(zero);
                        if hi > lo {
                            let from = unsafe { src.offset(sources[lo]) };
                            unsafe { std::ptr::copy_nonoverlapping(from, tmp.as_mut_ptr().add(lo), hi - lo) };
                        }
                        tmp.as_ptr()
                    } else {
                        unsafe { self.gather(sources, lanes.inside[tap], src, tmp.as_mut_ptr(), 1) };
                        tmp[width..r].fill(zero);
                        tmp.as_ptr()
                    }
                };
            }
            unsafe { interleave4(r, rows, panel.add(group * 4 * r)) };
        }
    }

    /// Writes lane `i` of one K row to `to[i·step]` from `src[sources[i]]`, or the padding
    /// value where the source is [`PAD`].
    unsafe fn gather(&self, sources: &[isize], inside: bool, src: *const T, to: *mut T, step: usize) {
        for (lane, &s) in sources.iter().enumerate() {
            let v = if inside || s != PAD { unsafe { *src.offset(s) } } else { self.pad };
            unsafe { *to.add(lane * step) = v };
        }
    }
}

/// Copies one K row of a `KOuter` panel: `r` contiguous input values. Fixed-size for the
/// panel widths tract's kernels use, so it is a few vector moves, not a `memcpy` call.
///
/// # Safety
/// `from` must hold `r` values and `to` room for them.
#[inline(always)]
unsafe fn copy_row<T: Copy>(r: usize, from: *const T, to: *mut T) {
    macro_rules! fixed {
        ($($w:literal)*) => {
            match r {
                $($w => unsafe {
                    (to as *mut [T; $w]).write_unaligned((from as *const [T; $w]).read_unaligned())
                },)*
                _ => unsafe { std::ptr::copy_nonoverlapping(from, to, r) },
            }
        };
    }
    fixed!(4 8 12 16 24 32 48)
}

/// Writes four K rows of `r` input values each, interleaved four items per lane
/// (`to[4·lane + q] = rows[q][lane]`): one K group of a `K4` panel. One-byte items (the int8
/// kernels' only case) in 16-lane panels go through [`interleave4_bytes16`]'s unpacks.
///
/// # Safety
/// Each of `rows` must hold `r` values and `to` room for `4·r`.
#[inline(always)]
unsafe fn interleave4<T: Copy>(r: usize, rows: [*const T; 4], to: *mut T) {
    if std::mem::size_of::<T>() == 1 {
        let rows8 = [rows[0] as *const u8, rows[1] as *const u8, rows[2] as *const u8, rows[3] as *const u8];
        let to8 = to as *mut u8;
        unsafe {
            match r {
                16 => return interleave4_bytes16(rows8, to8),
                32 => {
                    interleave4_bytes16(rows8, to8);
                    return interleave4_bytes16(rows8.map(|p| p.add(16)), to8.add(64));
                }
                _ => {}
            }
        }
    }
    for lane in 0..r {
        for (q, row) in rows.iter().enumerate() {
            unsafe { *to.add(4 * lane + q) = *row.add(lane) };
        }
    }
}

/// Interleaves four rows of 16 bytes into 64 (`to[4·i + q] = rows[q][i]`) with SSE2 byte
/// and word unpacks (x86_64's baseline; the portable loop above compiles to scalar shifts).
///
/// # Safety
/// Each row must hold 16 bytes and `to` room for 64.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn interleave4_bytes16(rows: [*const u8; 4], to: *mut u8) {
    use std::arch::x86_64::*;
    unsafe {
        let [a, b, c, d] = rows.map(|p| _mm_loadu_si128(p as *const __m128i));
        let (ab_lo, ab_hi) = (_mm_unpacklo_epi8(a, b), _mm_unpackhi_epi8(a, b));
        let (cd_lo, cd_hi) = (_mm_unpacklo_epi8(c, d), _mm_unpackhi_epi8(c, d));
        let out = to as *mut __m128i;
        _mm_storeu_si128(out, _mm_unpacklo_epi16(ab_lo, cd_lo));
        _mm_storeu_si128(out.add(1), _mm_unpackhi_epi16(ab_lo, cd_lo));
        _mm_storeu_si128(out.add(2), _mm_unpacklo_epi16(ab_hi, cd_hi));
        _mm_storeu_si128(out.add(3), _mm_unpackhi_epi16(ab_hi, cd_hi));
    }
}

/// As above with one NEON `st4` (aarch64's baseline): it stores four registers interleaved.
///
/// # Safety
/// Each row must hold 16 bytes and `to` room for 64.
#[cfg(target_arch = "aarch64")]
#[inline(always)]
unsafe fn interleave4_bytes16(rows: [*const u8; 4], to: *mut u8) {
    use std::arch::aarch64::*;
    unsafe {
        let v = uint8x16x4_t(vld1q_u8(rows[0]), vld1q_u8(rows[1]), vld1q_u8(rows[2]), vld1q_u8(rows[3]));
        vst4q_u8(to, v);
    }
}

/// Elsewhere: the portable loop.
///
/// # Safety
/// Each row must hold 16 bytes and `to` room for 64.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
#[inline(always)]
unsafe fn interleave4_bytes16(rows: [*const u8; 4], to: *mut u8) {
    for lane in 0..16 {
        for (q, row) in rows.iter().enumerate() {
            unsafe { *to.add(4 * lane + q) = *row.add(lane) };
        }
    }
}
