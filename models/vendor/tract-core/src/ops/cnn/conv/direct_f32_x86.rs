//! [`super::DirectConvF32`]'s register blocks on x86_64: one kernel per instruction set, the
//! same loop over taps written once (`block_kernels!`) and instantiated with each set's
//! intrinsics and block shape; AVX2's three-vector block runs its tap loop in assembly.

use super::direct_f32::{Block, F32Isa};
use crate::internal::*;

/// One register block of `vectors` (1 to 3) vectors on `isa`.
///
/// # Safety
/// `isa` is available on this host; for each of the first `vectors` vectors `v`, every
/// `inputs[v] + offset + lanes` and every `outputs[v] + o·channel_stride + lanes` (and
/// `residuals[v] + …`) lies inside its allocation, for every offset and every channel `o` of the
/// block.
#[cfg(target_arch = "x86_64")]
pub(super) unsafe fn block(isa: F32Isa, vectors: usize, b: &Block) -> TractResult<()> {
    unsafe {
        match (isa, vectors) {
            (F32Isa::Avx512, 1) => avx512::block::<1>(b),
            (F32Isa::Avx512, 2) => avx512::block::<2>(b),
            (F32Isa::Avx512, 3) => avx512::block::<3>(b),
            (F32Isa::Avx2Fma, 1) => avx2::block::<1>(b),
            (F32Isa::Avx2Fma, 2) => avx2::block::<2>(b),
            (F32Isa::Avx2Fma, 3) => avx2_3(b),
            _ => bail!("direct convolution: a block of {vectors} vectors"),
        }
    }
    Ok(())
}

#[cfg(not(target_arch = "x86_64"))]
pub(super) unsafe fn block(isa: F32Isa, vectors: usize, _b: &Block) -> TractResult<()> {
    bail!("the direct convolution runs on x86_64 only ({isa:?}, {vectors} vectors)")
}

/// A module of kernels for one instruction set: `OC` channels × `V` vectors, each at its own
/// input and output pointer (the block shape `$isa` reports). `block` is the bias (`init`),
/// every tap as `V` loads, `OC` broadcast weights and `OC·V` fused multiply-adds (`taps`), then
/// the epilogue and the stores (`store`).
#[cfg(target_arch = "x86_64")]
macro_rules! block_kernels {
    ($name:ident, $features:literal, $isa:expr, $vector:ident,
     $zero:ident, $set1:ident, $load:ident, $fmadd:ident, $add:ident, $max:ident, $store:ident) => {
        mod $name {
            use super::*;
            use std::arch::x86_64::*;
            pub(super) const OC: usize = $isa.oc_block();

            /// # Safety
            /// As [`block`](super::block), for this kernel's instruction set.
            #[target_feature(enable = $features)]
            pub(super) unsafe fn block<const V: usize>(b: &Block) {
                unsafe {
                    let mut acc = init::<V>(b);
                    taps(b, &mut acc);
                    store(b, &acc);
                }
            }

            /// The accumulators, each holding its channel's bias.
            #[target_feature(enable = $features)]
            #[inline]
            pub(super) unsafe fn init<const V: usize>(b: &Block) -> [[$vector; V]; OC] {
                let mut acc = [[$zero(); V]; OC];
                for (o, row) in acc.iter_mut().enumerate() {
                    *row = [unsafe { $set1(*b.bias.add(o)) }; V];
                }
                acc
            }

            #[target_feature(enable = $features)]
            #[inline]
            unsafe fn taps<const V: usize>(b: &Block, acc: &mut [[$vector; V]; OC]) {
                unsafe {
                    for (t, &offset) in b.offsets.iter().enumerate() {
                        let mut x = [$zero(); V];
                        for (v, xv) in x.iter_mut().enumerate() {
                            *xv = $load(b.inputs[v].add(offset));
                        }
                        let w = b.weights.add(t * OC);
                        for (o, row) in acc.iter_mut().enumerate() {
                            let w = $set1(*w.add(o));
                            for (a, xv) in row.iter_mut().zip(&x) {
                                *a = $fmadd(*xv, w, *a);
                            }
                        }
                    }
                }
            }

            /// The epilogue (residual, ReLU) and the stores.
            #[target_feature(enable = $features)]
            #[inline]
            pub(super) unsafe fn store<const V: usize>(b: &Block, acc: &[[$vector; V]; OC]) {
                unsafe {
                    for (o, row) in acc.iter().enumerate() {
                        let at = o * b.channel_stride;
                        for (v, &a) in row.iter().enumerate() {
                            let mut a = a;
                            if let Some(r) = &b.residuals {
                                a = $add(a, $load(r[v].add(at)));
                            }
                            if b.relu {
                                a = $max(a, $zero());
                            }
                            $store(b.outputs[v].add(at), a);
                        }
                    }
                }
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
block_kernels!(
    avx512,
    "avx512f",
    F32Isa::Avx512,
    __m512,
    _mm512_setzero_ps,
    _mm512_set1_ps,
    _mm512_loadu_ps,
    _mm512_fmadd_ps,
    _mm512_add_ps,
    _mm512_max_ps,
    _mm512_storeu_ps
);
#[cfg(target_arch = "x86_64")]
block_kernels!(
    avx2,
    "avx2,fma",
    F32Isa::Avx2Fma,
    __m256,
    _mm256_setzero_ps,
    _mm256_set1_ps,
    _mm256_loadu_ps,
    _mm256_fmadd_ps,
    _mm256_add_ps,
    _mm256_max_ps,
    _mm256_storeu_ps
);

/// AVX2's block of four channels × three vectors, its tap loop in assembly: the 12
/// accumulators, 3 input vectors and a broadcast weight take all 16 registers, and the
/// compiler, given the same loop as intrinsics, shuffled accumulators between registers and
/// spilled one to the stack on every tap (measured on an AMD EPYC: 18 G multiply-adds/s).
///
/// # Safety
/// As [`block`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_3(b: &Block) {
    use std::arch::asm;
    unsafe {
        let [[a0, a1, a2], [a3, a4, a5], [a6, a7, a8], [a9, a10, a11]] = avx2::init::<3>(b);
        let (mut a0, mut a1, mut a2, mut a3) = (a0, a1, a2, a3);
        let (mut a4, mut a5, mut a6, mut a7) = (a4, a5, a6, a7);
        let (mut a8, mut a9, mut a10, mut a11) = (a8, a9, a10, a11);
        if !b.offsets.is_empty() {
            asm!(
                "2:",
                "mov {off}, qword ptr [{offsets} + 8*{t}]",
                "vmovups ymm12, ymmword ptr [{in0} + 4*{off}]",
                "vmovups ymm13, ymmword ptr [{in1} + 4*{off}]",
                "vmovups ymm14, ymmword ptr [{in2} + 4*{off}]",
                "vbroadcastss ymm15, dword ptr [{w}]",
                "vfmadd231ps ymm0, ymm12, ymm15",
                "vfmadd231ps ymm1, ymm13, ymm15",
                "vfmadd231ps ymm2, ymm14, ymm15",
                "vbroadcastss ymm15, dword ptr [{w} + 4]",
                "vfmadd231ps ymm3, ymm12, ymm15",
                "vfmadd231ps ymm4, ymm13, ymm15",
                "vfmadd231ps ymm5, ymm14, ymm15",
                "vbroadcastss ymm15, dword ptr [{w} + 8]",
                "vfmadd231ps ymm6, ymm12, ymm15",
                "vfmadd231ps ymm7, ymm13, ymm15",
                "vfmadd231ps ymm8, ymm14, ymm15",
                "vbroadcastss ymm15, dword ptr [{w} + 12]",
                "vfmadd231ps ymm9, ymm12, ymm15",
                "vfmadd231ps ymm10, ymm13, ymm15",
                "vfmadd231ps ymm11, ymm14, ymm15",
                "add {w}, 16",
                "add {t}, 1",
                "cmp {t}, {n}",
                "jne 2b",
                offsets = in(reg) b.offsets.as_ptr(),
                in0 = in(reg) b.inputs[0],
                in1 = in(reg) b.inputs[1],
                in2 = in(reg) b.inputs[2],
                n = in(reg) b.offsets.len(),
                w = inout(reg) b.weights => _,
                t = inout(reg) 0usize => _,
                off = out(reg) _,
                inout("ymm0") a0, inout("ymm1") a1, inout("ymm2") a2, inout("ymm3") a3,
                inout("ymm4") a4, inout("ymm5") a5, inout("ymm6") a6, inout("ymm7") a7,
                inout("ymm8") a8, inout("ymm9") a9, inout("ymm10") a10, inout("ymm11") a11,
                out("ymm12") _, out("ymm13") _, out("ymm14") _, out("ymm15") _,
                options(nostack, readonly),
            );
        }
        let acc = [[a0, a1, a2], [a3, a4, a5], [a6, a7, a8], [a9, a10, a11]];
        avx2::store::<3>(b, &acc);
    }
}
