//! edgeclr patch (see `PATCH.md`): what the patched kernels (`conv2d_gemm`, `batch_norm`)
//! share: building their result tensors, and half precision computed through f32 (the kernels
//! are written for f32 and f64).

use alloc::vec::Vec;
use burn_backend::ops::FloatTensorOps;
use burn_backend::{DType, Element};
use burn_std::{Bytes, FloatDType, Shape};

use crate::{Flex, FlexTensor, Layout};

/// A contiguous tensor of `shape` holding `data`.
pub(crate) fn tensor<T: bytemuck::Pod + Element>(data: Vec<T>, shape: Shape) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(data),
        Layout::contiguous(shape),
        T::dtype(),
    )
}

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
