//! [`super::DirectConvF32`]'s register blocks on x86_64: one kernel per instruction set, the
//! same loop over taps written once (`block_kernel!`) and instantiated with each set's
//! intrinsics and block shape.

use super::direct_f32::{Block, F32Isa};
use crate::internal::*;

/// One register block of `vectors` (1 to 3) vectors on `isa`.
///
/// # Safety
/// `isa` is available on this host; every `input + offset + lanes·vectors` and every `output +
/// o·channel_stride + lanes·vectors` (and `residual + …` when not null) lies inside its
/// allocation, for every offset and every channel `o` of the block.
#[cfg(target_arch = "x86_64")]
pub(super) unsafe fn block(isa: F32Isa, vectors: usize, b: &Block) -> TractResult<()> {
    unsafe {
        match (isa, vectors) {
            (F32Isa::Avx512, 1) => avx512::<1>(b),
            (F32Isa::Avx512, 2) => avx512::<2>(b),
            (F32Isa::Avx512, 3) => avx512::<3>(b),
            (F32Isa::Avx2Fma, 1) => avx2::<1>(b),
            (F32Isa::Avx2Fma, 2) => avx2::<2>(b),
            (F32Isa::Avx2Fma, 3) => avx2::<3>(b),
            _ => bail!("direct convolution: a block of {vectors} vectors"),
        }
    }
    Ok(())
}

#[cfg(not(target_arch = "x86_64"))]
pub(super) unsafe fn block(isa: F32Isa, vectors: usize, _b: &Block) -> TractResult<()> {
    bail!("the direct convolution runs on x86_64 only ({isa:?}, {vectors} vectors)")
}

/// `OC` channels × `V` vectors of `LANES` points (the block shape `$isa` reports): bias, every tap as `V` loads, `OC`
/// broadcast weights and `OC·V` fused multiply-adds, then the epilogue and the stores.
#[cfg(target_arch = "x86_64")]
macro_rules! block_kernel {
    ($name:ident, $features:literal, $isa:expr,
     $zero:ident, $set1:ident, $load:ident, $fmadd:ident, $add:ident, $max:ident, $store:ident) => {
        /// # Safety
        /// As [`block`], for this kernel's instruction set.
        #[target_feature(enable = $features)]
        unsafe fn $name<const V: usize>(b: &Block) {
            use std::arch::x86_64::*;
            const OC: usize = $isa.oc_block();
            const LANES: usize = $isa.lanes();
            unsafe {
                let mut acc = [[$zero(); V]; OC];
                for (o, row) in acc.iter_mut().enumerate() {
                    let bias = $set1(*b.bias.add(o));
                    row.iter_mut().for_each(|a| *a = bias);
                }
                for (t, &offset) in b.offsets.iter().enumerate() {
                    let src = b.input.add(offset);
                    let mut x = [$zero(); V];
                    for (v, xv) in x.iter_mut().enumerate() {
                        *xv = $load(src.add(v * LANES));
                    }
                    let w = b.weights.add(t * OC);
                    for (o, row) in acc.iter_mut().enumerate() {
                        let w = $set1(*w.add(o));
                        for (a, xv) in row.iter_mut().zip(&x) {
                            *a = $fmadd(*xv, w, *a);
                        }
                    }
                }
                for (o, row) in acc.iter().enumerate() {
                    let at = o * b.channel_stride;
                    for (v, &a) in row.iter().enumerate() {
                        let mut a = a;
                        if !b.residual.is_null() {
                            a = $add(a, $load(b.residual.add(at + v * LANES)));
                        }
                        if b.relu {
                            a = $max(a, $zero());
                        }
                        $store(b.output.add(at + v * LANES), a);
                    }
                }
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
block_kernel!(
    avx512, "avx512f", F32Isa::Avx512, _mm512_setzero_ps, _mm512_set1_ps, _mm512_loadu_ps,
    _mm512_fmadd_ps, _mm512_add_ps, _mm512_max_ps, _mm512_storeu_ps
);
#[cfg(target_arch = "x86_64")]
block_kernel!(
    avx2, "avx2,fma", F32Isa::Avx2Fma, _mm256_setzero_ps, _mm256_set1_ps, _mm256_loadu_ps,
    _mm256_fmadd_ps, _mm256_add_ps, _mm256_max_ps, _mm256_storeu_ps
);
