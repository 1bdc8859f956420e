//! edgeclr patch (see `PATCH.md`): batch normalisation as three fused passes over NCHW data.
//!
//! burn-backend's default `batch_norm_train` and its backward build the statistics out of
//! tensor ops: each one transposes the input to `[c, n·hw]` (a full copy), then subtracts,
//! squares, divides, multiplies and adds, every op a full pass and a fresh buffer; the backward
//! makes two more transposed copies. Here, for input `[n, c, rest…]` with `m = n·Π rest`
//! values per channel:
//!
//! * statistics: per channel (channels across threads), `Σx` and `Σx²` in f64 over the `n`
//!   contiguous runs of the channel; `mean = Σx/m`, biased `var = Σx²/m − mean²`;
//! * output: per image (images across threads), `y = a[c]·x + b[c]` with
//!   `a = γ/√(var+ε)`, `b = β − a·mean`;
//! * backward: per channel `Σȳ` and `Σȳ·(x−mean)` in f64, then per image
//!   `x̄ = A[c]·ȳ + B[c]·x + C[c]` with `A = γ·s`, `B = −A·s²·Σȳ(x−mean)/m`,
//!   `C = −A·Σȳ/m − B·mean` (`s = 1/√(var+ε)`); `γ̄ = s·Σȳ(x−mean)`, `β̄ = Σȳ`.

use alloc::vec;
use alloc::vec::Vec;
use burn_backend::DType;
use burn_std::Shape;

use crate::FlexTensor;
use crate::ops::kernel_util::{down, half, tensor, up};

/// The float types computed natively.
trait Real: num_traits::Float + bytemuck::Pod + burn_backend::Element + Send + Sync {
    fn wide(self) -> f64;
    fn narrow(v: f64) -> Self;
}

impl Real for f32 {
    fn wide(self) -> f64 {
        f64::from(self)
    }
    fn narrow(v: f64) -> Self {
        v as f32
    }
}

impl Real for f64 {
    fn wide(self) -> f64 {
        self
    }
    fn narrow(v: f64) -> Self {
        v
    }
}

/// `[n, c, rest…]` as `(n, c, inner = Π rest)`.
fn dims(shape: &Shape) -> (usize, usize, usize) {
    let (n, c) = (shape[0], shape[1]);
    (n, c, shape.iter().skip(2).product())
}

/// For every channel, `f` over its `n` runs of `inner` values in `a` (and `b`), summed in f64
/// pairs; channels across threads.
fn per_channel<T: Real>(
    a: &[T],
    b: &[T],
    (n, c, inner): (usize, usize, usize),
    f: impl Fn(T, T) -> (f64, f64) + Sync,
) -> Vec<(f64, f64)> {
    let channel = |ch: usize| {
        let mut acc = (0.0, 0.0);
        for img in 0..n {
            let at = (img * c + ch) * inner;
            for (&x, &y) in a[at..at + inner].iter().zip(&b[at..at + inner]) {
                let (p, q) = f(x, y);
                acc = (acc.0 + p, acc.1 + q);
            }
        }
        acc
    };
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        (0..c).into_par_iter().map(channel).collect()
    }
    #[cfg(not(feature = "rayon"))]
    {
        (0..c).map(channel).collect()
    }
}

/// `out = a[c]·x + b[c]·y + k[c]` elementwise, images across threads.
fn affine<T: Real>(
    x: &[T],
    y: &[T],
    coef: &[(T, T, T)],
    (n, c, inner): (usize, usize, usize),
) -> Vec<T> {
    let mut out = vec![T::zero(); n * c * inner];
    let image = |img: usize, o: &mut [T]| {
        for (ch, (run, &(a, b, k))) in o.chunks_exact_mut(inner).zip(coef).enumerate() {
            let at = (img * c + ch) * inner;
            for ((o, &x), &y) in run
                .iter_mut()
                .zip(&x[at..at + inner])
                .zip(&y[at..at + inner])
            {
                *o = a * x + b * y + k;
            }
        }
    };
    if c * inner == 0 {
        return out;
    }
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        out.par_chunks_mut(c * inner)
            .enumerate()
            .for_each(|(img, o)| image(img, o));
    }
    #[cfg(not(feature = "rayon"))]
    for (img, o) in out.chunks_mut(c * inner).enumerate() {
        image(img, o);
    }
    out
}

fn wide<T: Real>(t: &FlexTensor) -> Vec<f64> {
    t.storage::<T>().iter().map(|v| v.wide()).collect()
}

fn train_typed<T: Real>(
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    epsilon: f64,
) -> [FlexTensor; 3] {
    let shape = x.layout().shape().clone();
    let d = dims(&shape);
    let m = (d.0 * d.2).max(1) as f64;
    let xs = x.storage::<T>();
    let sums = per_channel(xs, xs, d, |v, _| (v.wide(), v.wide() * v.wide()));
    let stats: Vec<(f64, f64)> = sums
        .iter()
        .map(|&(s, q)| (s / m, (q / m - (s / m) * (s / m)).max(0.0)))
        .collect();
    let (g, b) = (wide::<T>(gamma), wide::<T>(beta));
    let coef: Vec<(T, T, T)> = stats
        .iter()
        .zip(g.iter().zip(&b))
        .map(|(&(mean, var), (&g, &b))| {
            let a = g / (var + epsilon).sqrt();
            (T::narrow(a), T::zero(), T::narrow(b - a * mean))
        })
        .collect();
    let c = Shape::new([d.1]);
    [
        tensor(affine(xs, xs, &coef, d), shape),
        tensor(stats.iter().map(|s| T::narrow(s.0)).collect(), c.clone()),
        tensor(stats.iter().map(|s| T::narrow(s.1)).collect(), c),
    ]
}

fn backward_typed<T: Real>(
    x: &FlexTensor,
    gamma: &FlexTensor,
    mean: &FlexTensor,
    variance: &FlexTensor,
    epsilon: f64,
    grad: &FlexTensor,
) -> [FlexTensor; 3] {
    let shape = x.layout().shape().clone();
    let d = dims(&shape);
    let m = (d.0 * d.2).max(1) as f64;
    let (xs, dy) = (x.storage::<T>(), grad.storage::<T>());
    let (g, mu, var) = (wide::<T>(gamma), wide::<T>(mean), wide::<T>(variance));
    let sums = per_channel(dy, xs, d, |dy, x| (dy.wide(), dy.wide() * x.wide()));
    let mut coef = Vec::with_capacity(d.1);
    let (mut dgamma, mut dbeta) = (Vec::with_capacity(d.1), Vec::with_capacity(d.1));
    for (ch, &(sdy, sdyx_raw)) in sums.iter().enumerate() {
        let s = 1.0 / (var[ch] + epsilon).sqrt();
        let sdyx = sdyx_raw - mu[ch] * sdy; // Σȳ(x − mean)
        let a = g[ch] * s;
        let b = -a * s * s * sdyx / m;
        coef.push((
            T::narrow(a),
            T::narrow(b),
            T::narrow(-a * sdy / m - b * mu[ch]),
        ));
        dgamma.push(T::narrow(s * sdyx));
        dbeta.push(T::narrow(sdy));
    }
    let c = Shape::new([d.1]);
    [
        tensor(affine(dy, xs, &coef, d), shape),
        tensor(dgamma, c.clone()),
        tensor(dbeta, c),
    ]
}

fn inference_typed<T: Real>(
    x: &FlexTensor,
    [gamma, beta, mean, variance]: [&FlexTensor; 4],
    epsilon: f64,
) -> FlexTensor {
    let shape = x.layout().shape().clone();
    let d = dims(&shape);
    let xs = x.storage::<T>();
    let [g, b, mu, var] = [gamma, beta, mean, variance].map(wide::<T>);
    let coef: Vec<(T, T, T)> = (0..d.1)
        .map(|ch| {
            let a = g[ch] / (var[ch] + epsilon).sqrt();
            (T::narrow(a), T::zero(), T::narrow(b[ch] - a * mu[ch]))
        })
        .collect();
    tensor(affine(xs, xs, &coef, d), shape)
}

fn contiguous(ts: Vec<FlexTensor>) -> Vec<FlexTensor> {
    ts.into_iter().map(|t| t.to_contiguous()).collect()
}

/// `batch_norm_train`: `(output, mean, biased variance)`.
pub(crate) fn train(
    x: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
    epsilon: f64,
) -> [FlexTensor; 3] {
    let dtype = x.dtype();
    let mut t = contiguous(vec![x, gamma, beta]);
    if let Some(back) = half(dtype) {
        t = up(t);
        return train_typed::<f32>(&t[0], &t[1], &t[2], epsilon).map(|r| down(r, back));
    }
    match dtype {
        DType::F64 => train_typed::<f64>(&t[0], &t[1], &t[2], epsilon),
        _ => train_typed::<f32>(&t[0], &t[1], &t[2], epsilon),
    }
}

/// `batch_norm_train_backward`: `(x̄, γ̄, β̄)`.
pub(crate) fn train_backward(
    x: FlexTensor,
    gamma: FlexTensor,
    mean: FlexTensor,
    variance: FlexTensor,
    epsilon: f64,
    grad: FlexTensor,
) -> [FlexTensor; 3] {
    let dtype = x.dtype();
    let mut t = contiguous(vec![x, gamma, mean, variance, grad]);
    if let Some(back) = half(dtype) {
        t = up(t);
        return backward_typed::<f32>(&t[0], &t[1], &t[2], &t[3], epsilon, &t[4])
            .map(|r| down(r, back));
    }
    match dtype {
        DType::F64 => backward_typed::<f64>(&t[0], &t[1], &t[2], &t[3], epsilon, &t[4]),
        _ => backward_typed::<f32>(&t[0], &t[1], &t[2], &t[3], epsilon, &t[4]),
    }
}

/// `batch_norm` with given statistics.
pub(crate) fn inference(
    x: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
    mean: FlexTensor,
    variance: FlexTensor,
    epsilon: f64,
) -> FlexTensor {
    let dtype = x.dtype();
    let mut t = contiguous(vec![x, gamma, beta, mean, variance]);
    if let Some(back) = half(dtype) {
        t = up(t);
        let y = inference_typed::<f32>(&t[0], [&t[1], &t[2], &t[3], &t[4]], epsilon);
        return down(y, back);
    }
    match dtype {
        DType::F64 => inference_typed::<f64>(&t[0], [&t[1], &t[2], &t[3], &t[4]], epsilon),
        _ => inference_typed::<f32>(&t[0], [&t[1], &t[2], &t[3], &t[4]], epsilon),
    }
}
