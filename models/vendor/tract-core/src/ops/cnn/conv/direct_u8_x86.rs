//! [`super::DirectConvU8`]'s register blocks on x86_64: AVX-512 VNNI, and AVX2 on u8 quads or
//! i16 pairs.

use super::direct_u8::{QBlock, U8Isa};
use crate::internal::*;

/// One register block of `vectors` vectors on `isa`.
///
/// # Safety
/// `isa` is available on this host; for each of the first `vectors` vectors `v`, every
/// `inputs[v] + group·(offset + lanes)` element and every `outputs[v] + o·channel_stride +
/// lanes` lies inside its allocation, for every offset and every channel `o` of the block.
#[cfg(target_arch = "x86_64")]
pub(super) unsafe fn block(isa: U8Isa, vectors: usize, b: &QBlock) -> TractResult<()> {
    unsafe {
        match (isa, vectors) {
            (U8Isa::Vnni, 1) => vnni::<1>(b),
            (U8Isa::Vnni, 2) => vnni::<2>(b),
            (U8Isa::Vnni, 3) => vnni::<3>(b),
            (U8Isa::Avx2, 1) => avx2::<1>(b),
            (U8Isa::Avx2, 2) => avx2::<2>(b),
            (U8Isa::Avx2Bytes, 1) => avx2_bytes::<1>(b),
            (U8Isa::Avx2Bytes, 2) => avx2_bytes::<2>(b),
            _ => bail!("direct integer convolution: a block of {vectors} vectors on {isa:?}"),
        }
    }
    Ok(())
}

#[cfg(not(target_arch = "x86_64"))]
pub(super) unsafe fn block(isa: U8Isa, vectors: usize, _b: &QBlock) -> TractResult<()> {
    bail!("the direct integer convolution runs on x86_64 only ({isa:?}, {vectors} vectors)")
}

/// Eight channels × `V` vectors of sixteen output points, u8 quads × i8 quads.
///
/// # Safety
/// As [`block`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn vnni<const V: usize>(b: &QBlock) {
    use std::arch::x86_64::*;
    const OC: usize = U8Isa::Vnni.oc_block();
    const QUAD: usize = U8Isa::Vnni.group();
    unsafe {
        let mut acc = [[_mm512_setzero_si512(); V]; OC];
        for (t, &offset) in b.offsets.iter().enumerate() {
            let mut x = [_mm512_setzero_si512(); V];
            for (v, xv) in x.iter_mut().enumerate() {
                *xv = _mm512_loadu_si512(b.inputs[v].add(offset * QUAD).cast());
            }
            let w = b.weights.add(t * OC * QUAD).cast::<i32>();
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
            let at = o * b.channel_stride;
            for (v, a) in row.iter().enumerate() {
                let scaled = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(*a, offset)), m);
                // Out of u8 range either way once y₀ (0..=255) is added: clamp first, so
                // that neither the conversion nor the addition can overflow.
                let scaled = _mm512_min_ps(_mm512_max_ps(scaled, low), high);
                // Round half to even (the default rounding mode), then saturate to u8.
                let q = _mm512_add_epi32(_mm512_cvtps_epi32(scaled), y_zero);
                let bytes = _mm512_cvtusepi32_epi8(_mm512_max_epi32(q, zero));
                _mm_storeu_si128(b.outputs[v].add(at).cast(), bytes);
            }
        }
    }
}

/// Four channels × `V` vectors of eight output points, i16 pairs (`x − x₀`) × i16 pairs.
///
/// # Safety
/// As [`block`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn avx2<const V: usize>(b: &QBlock) {
    use std::arch::x86_64::*;
    const OC: usize = U8Isa::Avx2.oc_block();
    const PAIR: usize = U8Isa::Avx2.group();
    unsafe {
        let weights = b.weights.cast::<i16>();
        let mut acc = [[_mm256_setzero_si256(); V]; OC];
        for (t, &offset) in b.offsets.iter().enumerate() {
            let mut x = [_mm256_setzero_si256(); V];
            for (v, xv) in x.iter_mut().enumerate() {
                *xv = _mm256_loadu_si256(b.inputs[v].cast::<i16>().add(offset * PAIR).cast());
            }
            let w = weights.add(t * OC * PAIR).cast::<i32>();
            for (o, row) in acc.iter_mut().enumerate() {
                let w = _mm256_set1_epi32(w.add(o).read_unaligned());
                for (a, xv) in row.iter_mut().zip(&x) {
                    *a = _mm256_add_epi32(*a, _mm256_madd_epi16(*xv, w));
                }
            }
        }
        requantise_avx2(b, &acc);
    }
}

/// Four channels × `V` vectors of eight output points, u8 quads × i8 quads as `vpmaddubsw`
/// (pairs into i16, exact for weights that fit [`super::direct_u8::pairs_fit`]) then
/// `vpmaddwd` by ones (pairs of pairs into i32).
///
/// # Safety
/// As [`block`], with weights that fit.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn avx2_bytes<const V: usize>(b: &QBlock) {
    use std::arch::x86_64::*;
    const OC: usize = U8Isa::Avx2Bytes.oc_block();
    const QUAD: usize = U8Isa::Avx2Bytes.group();
    unsafe {
        let ones = _mm256_set1_epi16(1);
        let mut acc = [[_mm256_setzero_si256(); V]; OC];
        for (t, &offset) in b.offsets.iter().enumerate() {
            let mut x = [_mm256_setzero_si256(); V];
            for (v, xv) in x.iter_mut().enumerate() {
                *xv = _mm256_loadu_si256(b.inputs[v].add(offset * QUAD).cast());
            }
            let w = b.weights.add(t * OC * QUAD).cast::<i32>();
            for (o, row) in acc.iter_mut().enumerate() {
                let w = _mm256_set1_epi32(w.add(o).read_unaligned());
                for (a, xv) in row.iter_mut().zip(&x) {
                    let pairs = _mm256_maddubs_epi16(*xv, w);
                    *a = _mm256_add_epi32(*a, _mm256_madd_epi16(pairs, ones));
                }
            }
        }
        requantise_avx2(b, &acc);
    }
}

/// The AVX2 blocks' epilogue: as VNNI's, clamp, round half to even, add y₀, saturate to u8
/// and store ([`round_to_u8x8`]).
///
/// # Safety
/// As [`block`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn requantise_avx2<const V: usize>(b: &QBlock, acc: &[[std::arch::x86_64::__m256i; V]]) {
    use std::arch::x86_64::*;
    unsafe {
        let y_zero = _mm256_set1_epi32(b.y_zero);
        for (o, row) in acc.iter().enumerate() {
            let offset = _mm256_set1_epi32(b.offset[o]);
            let m = _mm256_set1_ps(b.multiplier[o]);
            let at = o * b.channel_stride;
            for (v, a) in row.iter().enumerate() {
                let scaled = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(*a, offset)), m);
                round_to_u8x8(scaled, y_zero, b.outputs[v].add(at));
            }
        }
    }
}

/// `sat_u8(round_half_even(x) + zero)` of eight values, stored at `dst`: clamped to ±512 first
/// (out of u8 range either way) so the conversion cannot overflow, rounded in the default
/// rounding mode, then two saturating packs, which work within 128-bit halves (bytes 0–3 of
/// each half are the eight).
///
/// # Safety
/// AVX2 is available; `dst` has room for eight bytes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn round_to_u8x8(
    x: std::arch::x86_64::__m256,
    zero: std::arch::x86_64::__m256i,
    dst: *mut u8,
) {
    use std::arch::x86_64::*;
    let (low, high) = (_mm256_set1_ps(-512.0), _mm256_set1_ps(512.0));
    let q = _mm256_add_epi32(_mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(x, low), high)), zero);
    let words = _mm256_packs_epi32(q, q);
    let bytes = _mm256_packus_epi16(words, words);
    let eight =
        _mm_unpacklo_epi32(_mm256_castsi256_si128(bytes), _mm256_extracti128_si256::<1>(bytes));
    unsafe { _mm_storel_epi64(dst.cast(), eight) };
}

/// [`super::direct_u8::U8Tail::apply`] on the first multiple of eight values, in the same f32
/// operations (the product by the inverse scale rounded half to even, as `QuantizeLinear`
/// does); returns how many values it did.
///
/// # Safety
/// AVX2 is available; `residual`, when given, is at least as long as `out`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn apply_tail_avx2(
    tail: &super::direct_u8::U8Tail,
    out: &mut [u8],
    residual: Option<&[u8]>,
) -> usize {
    use std::arch::x86_64::*;
    let n = out.len() / 8 * 8;
    unsafe {
        let params = |(scale, zero): (f32, i32)| (_mm256_set1_ps(scale), _mm256_set1_epi32(zero));
        let dequantize = |at: *const u8, (scale, zero): (__m256, __m256i)| {
            let q = _mm256_cvtepu8_epi32(_mm_loadl_epi64(at.cast()));
            _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(q, zero)), scale)
        };
        let conv = params(tail.conv);
        let shortcut = residual.zip(tail.residual).map(|(r, p)| (r, params(p)));
        let (inverse, zero) = params(tail.quantize);
        for i in (0..n).step_by(8) {
            let at = out.as_mut_ptr().add(i);
            let mut x = dequantize(at, conv);
            if let Some((r, p)) = shortcut {
                x = _mm256_add_ps(x, dequantize(r.as_ptr().add(i), p));
            }
            if tail.relu {
                x = _mm256_max_ps(x, _mm256_setzero_ps());
            }
            round_to_u8x8(_mm256_mul_ps(x, inverse), zero, at);
        }
    }
    n
}
