//! ReLU's backward pass on the training engine (burn-autodiff with edgeclr's patch,
//! models/vendor/burn-autodiff): the patched op keeps ReLU's *output* for the backward pass
//! instead of its input. The gradient must stay the step function of the input,
//! `∂L/∂x = r · [x > 0]` for `L = Σ relu(x) ⊙ r` (0 at x = 0, as in PyTorch), including when
//! later operations consume the output: the kept output is shared with them, so one that
//! wrote into it in place would corrupt the mask.

use burn::tensor::activation::relu;
use burn::tensor::{Tensor, TensorData};

use crate::test_device;

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec().expect("f32")
}

/// `x` (a leaf that takes gradients) with a zero, a negative zero and values either side, and
/// `r`, distinct per entry.
fn inputs() -> (Tensor<1>, Tensor<1>) {
    let device = test_device();
    let x = vec![-2.0f32, -0.5, 0.0, -0.0, 0.25, 3.0, -1e-30, 1e-30];
    let r = vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
    (
        Tensor::<1>::from_data(TensorData::new(x, [8]), &device).require_grad(),
        Tensor::<1>::from_data(TensorData::new(r, [8]), &device),
    )
}

#[test]
fn the_gradient_is_the_step_function_of_the_input() {
    let (xt, rt) = inputs();
    let grads = (relu(xt.clone()) * rt).sum().backward();
    // By hand: r where x > 0 (0.25, 3, 1e-30), else 0.
    let want = [0.0, 0.0, 0.0, 0.0, 5.0, 6.0, 0.0, 8.0];
    assert_eq!(values(xt.grad(&grads).expect("x")), want);
}

#[test]
fn later_operations_on_the_output_leave_the_kept_output_intact() {
    let (xt, rt) = inputs();
    // `y · 3 + 1` turns every zero of y into 1; had it run in place on the kept output, the
    // backward mask would let the gradient through everywhere. L = Σ (3y + 1) ⊙ r, so
    // ∂L/∂x = 3 r [x > 0].
    let y = relu(xt.clone());
    let grads = ((y * 3.0 + 1.0) * rt).sum().backward();
    let want = [0.0, 0.0, 0.0, 0.0, 15.0, 18.0, 0.0, 24.0];
    assert_eq!(values(xt.grad(&grads).expect("x")), want);
}

#[test]
fn a_residual_sum_gets_the_gradient_on_both_branches() {
    // The blocks end in relu(y + identity): both operands get r · [y + identity > 0].
    let device = test_device();
    let a = Tensor::<2>::from_data(
        TensorData::new(vec![1.0f32, -2.0, 0.5, -0.5], [2, 2]),
        &device,
    )
    .require_grad();
    let b = Tensor::<2>::from_data(
        TensorData::new(vec![-3.0f32, 1.0, 0.5, 0.5], [2, 2]),
        &device,
    )
    .require_grad();
    let r = Tensor::<2>::from_data(
        TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0], [2, 2]),
        &device,
    );
    let grads = (relu(a.clone() + b.clone()) * r).sum().backward();
    // a + b = [-2, -1, 1, 0]: only the third entry is positive.
    let want = [0.0, 0.0, 3.0, 0.0];
    assert_eq!(values(a.grad(&grads).expect("a")), want);
    assert_eq!(values(b.grad(&grads).expect("b")), want);
}
