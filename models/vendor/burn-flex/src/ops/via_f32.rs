//! edgeclr patch (see `PATCH.md`): half-precision tensors computed through f32 by the patched
//! kernels (`conv2d_gemm`, `batch_norm`), which are written for f32 and f64.

use alloc::vec::Vec;
use burn_backend::DType;
use burn_backend::ops::FloatTensorOps;
use burn_std::FloatDType;

use crate::{Flex, FlexTensor};

/// The half-precision float type `dtype` is; `None` for anything else.
pub(crate) fn half(dtype: DType) -> Option<FloatDType> {
    match dtype {
        DType::F16 => Some(FloatDType::F16),
        DType::BF16 => Some(FloatDType::BF16),
        _ => None,
    }
}

/// f32 copies of `tensors`.
pub(crate) fn up(tensors: Vec<FlexTensor>) -> Vec<FlexTensor> {
    tensors
        .into_iter()
        .map(|t| Flex::float_cast(t, FloatDType::F32))
        .collect()
}

/// `tensor` cast back to `dtype`.
pub(crate) fn down(tensor: FlexTensor, dtype: FloatDType) -> FlexTensor {
    Flex::float_cast(tensor, dtype)
}
