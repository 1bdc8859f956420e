//! The CPU engine's batch normalisation (burn-flex with edgeclr's patch, models/vendor/burn-flex)
//! against the definition in f64: training-mode output, batch mean and biased variance, the
//! three gradients of `L = Σ y ⊙ r`, and inference with given statistics, on the shapes the
//! encoders and heads use (`[n, c, h, w]` and `[n, c]`).
//!
//! Reference, per channel over its `m` values (numpy: `x.mean((0, 2, 3))`, `x.var((0, 2, 3))`):
//! `x̂ = (x − μ)/√(σ² + ε)`, `y = γ x̂ + β`, and (Ioffe & Szegedy 2015, eq. in §3)
//! `∂L/∂β = Σ r`, `∂L/∂γ = Σ r x̂`, `∂L/∂x = γ/√(σ²+ε) · (r − mean(r) − x̂ · mean(r x̂))`.
//! The input gradient is also checked against central finite differences.

use burn::tensor::module::{batch_norm, batch_norm_train};
use burn::tensor::{Tensor, TensorData};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::test_device;

const EPS: f64 = 1e-5;

/// Per-channel values of `v` (shape `[n, c, inner]` flattened).
fn channel(v: &[f32], [n, c, inner]: [usize; 3], ch: usize) -> Vec<f64> {
    (0..n)
        .flat_map(|i| {
            v[(i * c + ch) * inner..][..inner]
                .iter()
                .map(|&x| f64::from(x))
        })
        .collect()
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

struct Reference {
    y: Vec<f64>,
    mean: Vec<f64>,
    var: Vec<f64>,
    dx: Vec<f64>,
    dgamma: Vec<f64>,
    dbeta: Vec<f64>,
}

fn reference(x: &[f32], gamma: &[f32], beta: &[f32], r: &[f32], d: [usize; 3]) -> Reference {
    let [_, c, inner] = d;
    let mut out = Reference {
        y: vec![0.0; x.len()],
        mean: vec![],
        var: vec![],
        dx: vec![0.0; x.len()],
        dgamma: vec![],
        dbeta: vec![],
    };
    for ch in 0..c {
        let (xc, rc) = (channel(x, d, ch), channel(r, d, ch));
        let mu = mean(&xc);
        let var = mean(&xc.iter().map(|v| (v - mu).powi(2)).collect::<Vec<_>>());
        let s = 1.0 / (var + EPS).sqrt();
        let xhat: Vec<f64> = xc.iter().map(|v| (v - mu) * s).collect();
        let rx: Vec<f64> = rc.iter().zip(&xhat).map(|(r, h)| r * h).collect();
        let (mr, mrx) = (mean(&rc), mean(&rx));
        let g = f64::from(gamma[ch]);
        for (j, h) in xhat.iter().enumerate() {
            let at = ((j / inner) * c + ch) * inner + j % inner;
            out.y[at] = g * h + f64::from(beta[ch]);
            out.dx[at] = g * s * (rc[j] - mr - h * mrx);
        }
        out.mean.push(mu);
        out.var.push(var);
        out.dgamma.push(rx.iter().sum());
        out.dbeta.push(rc.iter().sum());
    }
    out
}

fn random(len: usize, lo: f32, hi: f32, rng: &mut ChaCha8Rng) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(lo..hi)).collect()
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec().expect("f32")
}

fn assert_close(what: &str, got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what} length");
    let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let err = (f64::from(*g) - w).abs() / scale;
        assert!(err < tol, "{what}[{i}]: {g} vs {w} (rel {err:e})");
    }
}

/// Training mode on `[n, c, inner…]` given as `shape` (rank 2 or 4), checked in full.
fn check<const D: usize>(shape: [usize; D], seed: u64) {
    let device = test_device();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (n, c) = (shape[0], shape[1]);
    let d = [n, c, shape[2..].iter().product()];
    let len = shape.iter().product();
    // An offset mean and a spread unlike 1, so the statistics matter.
    let x = random(len, -1.5, 3.5, &mut rng);
    let (gamma, beta) = (
        random(c, 0.5, 1.5, &mut rng),
        random(c, -0.5, 0.5, &mut rng),
    );
    let r = random(len, -1.0, 1.0, &mut rng);
    let want = reference(&x, &gamma, &beta, &r, d);

    let xt = Tensor::<D>::from_data(TensorData::new(x.clone(), shape), &device).require_grad();
    let gt = Tensor::<1>::from_data(TensorData::new(gamma.clone(), [c]), &device).require_grad();
    let bt = Tensor::<1>::from_data(TensorData::new(beta.clone(), [c]), &device).require_grad();
    let rt = Tensor::<D>::from_data(TensorData::new(r, shape), &device);
    let out = batch_norm_train(xt.clone(), gt.clone(), bt.clone(), EPS);
    let grads = (out.output.clone() * rt).sum().backward();
    assert_close("y", &values(out.output.inner()), &want.y, 1e-5);
    assert_close("mean", &values(out.mean.clone()), &want.mean, 1e-6);
    assert_close("var", &values(out.variance.clone()), &want.var, 1e-5);
    assert_close("dx", &values(xt.grad(&grads).expect("x")), &want.dx, 1e-4);
    assert_close(
        "dgamma",
        &values(gt.grad(&grads).expect("gamma")),
        &want.dgamma,
        1e-5,
    );
    assert_close(
        "dbeta",
        &values(bt.grad(&grads).expect("beta")),
        &want.dbeta,
        1e-5,
    );

    // Inference with the batch's own statistics reproduces the training output.
    let inner = device.clone().inner();
    let y = batch_norm(
        Tensor::<D>::from_data(TensorData::new(x, shape), &inner),
        Tensor::from_data(TensorData::new(gamma, [c]), &inner),
        Tensor::from_data(TensorData::new(beta, [c]), &inner),
        Tensor::from_data(TensorData::new(values(out.mean.inner()), [c]), &inner),
        out.variance.inner(),
        EPS,
    );
    assert_close("inference y", &values(y), &want.y, 1e-5);
}

#[test]
fn training_and_inference_match_the_definition() {
    check([6, 5, 7, 3], 1); // convolution features
    check([2, 3, 1, 1], 2); // one value per image and channel
    check([9, 4], 3); // the head's BatchNorm1d
}

#[test]
fn the_input_gradient_matches_finite_differences() {
    let device = test_device();
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let shape = [3, 2, 2, 2];
    let x = random(24, -1.0, 2.0, &mut rng);
    let r = random(24, -1.0, 1.0, &mut rng);
    let (gamma, beta) = (vec![1.3f32, 0.7], vec![0.1f32, -0.2]);
    let loss = |x: Vec<f32>, device: &burn::tensor::Device| {
        let y = batch_norm_train(
            Tensor::<4>::from_data(TensorData::new(x, shape), device),
            Tensor::from_data(TensorData::new(gamma.clone(), [2]), device),
            Tensor::from_data(TensorData::new(beta.clone(), [2]), device),
            EPS,
        );
        (y.output * Tensor::<4>::from_data(TensorData::new(r.clone(), shape), device)).sum()
    };
    let xt = Tensor::<4>::from_data(TensorData::new(x.clone(), shape), &device).require_grad();
    let y = batch_norm_train(
        xt.clone(),
        Tensor::from_data(TensorData::new(gamma.clone(), [2]), &device),
        Tensor::from_data(TensorData::new(beta.clone(), [2]), &device),
        EPS,
    );
    let rt = Tensor::<4>::from_data(TensorData::new(r.clone(), shape), &device);
    let grads = (y.output * rt).sum().backward();
    let analytic = values(xt.grad(&grads).expect("x"));
    let inner = device.clone().inner();
    let h = 1e-2f32;
    for i in 0..x.len() {
        let (mut plus, mut minus) = (x.clone(), x.clone());
        plus[i] += h;
        minus[i] -= h;
        let f = |v: Vec<f32>| f64::from(loss(v, &inner).into_scalar::<f32>());
        let numeric = (f(plus) - f(minus)) / (2.0 * f64::from(h));
        assert!(
            (numeric - f64::from(analytic[i])).abs() < 5e-3,
            "dL/dx[{i}]: numeric {numeric} vs autodiff {}",
            analytic[i]
        );
    }
}
