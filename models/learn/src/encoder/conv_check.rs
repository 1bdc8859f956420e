//! The CPU engine's 2-D convolution (burn-flex with edgeclr's patch, models/vendor/burn-flex)
//! against a direct convolution written out in f64: the forward pass and both gradients of
//! `L = Σ y ⊙ r` (`∂L/∂y = r`), on every geometry the encoders use and the corner cases
//! around them (stride 2, padding, 1×1, dilation, groups, asymmetric padding, one image), with
//! a bias on every case.
//!
//! The reference is the definition, `y[n,o,i,j] = Σ_{c,u,v} x[n, g·C+c, i·s+u·d−p, j·s+v·d−p]
//! · w[o,c,u,v]`, and its two adjoints, `∂L/∂w[o,c,u,v] = Σ r[n,o,i,j] · x[…]` and
//! `∂L/∂x[…] += r[n,o,i,j] · w[o,c,u,v]` (numpy: `np.einsum` over the unfolded input).

use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Tensor, TensorData};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::test_device;

/// One case: `x [n, c, h, w]`, `weight [co, c/groups, kh, kw]`.
#[derive(Debug, Clone, Copy)]
struct Case {
    x: [usize; 4],
    co: usize,
    kernel: [usize; 2],
    stride: [usize; 2],
    /// `(begin, end)` per axis.
    pad: [(usize, usize); 2],
    dilation: [usize; 2],
    groups: usize,
}

impl Case {
    fn conv(x: [usize; 4], co: usize, k: usize, stride: usize, pad: usize) -> Self {
        Self {
            x,
            co,
            kernel: [k, k],
            stride: [stride, stride],
            pad: [(pad, pad), (pad, pad)],
            dilation: [1, 1],
            groups: 1,
        }
    }

    fn out(&self) -> [usize; 2] {
        std::array::from_fn(|a| {
            let span = self.dilation[a] * (self.kernel[a] - 1) + 1;
            (self.x[2 + a] + self.pad[a].0 + self.pad[a].1 - span) / self.stride[a] + 1
        })
    }

    fn weight(&self) -> [usize; 4] {
        [
            self.co,
            self.x[1] / self.groups,
            self.kernel[0],
            self.kernel[1],
        ]
    }

    /// The input position under output `(i, j)` and tap `(u, v)`, if inside the image.
    fn source(&self, i: usize, j: usize, u: usize, v: usize) -> Option<(usize, usize)> {
        let at = |a: usize, o: usize, t: usize| {
            (o * self.stride[a] + t * self.dilation[a]).checked_sub(self.pad[a].0)
        };
        let (y, x) = (at(0, i, u)?, at(1, j, v)?);
        (y < self.x[2] && x < self.x[3]).then_some((y, x))
    }
}

/// `(y, ∂L/∂x, ∂L/∂w, ∂L/∂b)` by the definition, in f64 (`y` includes the bias `b`).
fn reference(case: &Case, x: &[f32], w: &[f32], b: &[f32], r: &[f32]) -> [Vec<f64>; 4] {
    let [n, c, h, wd] = case.x;
    let [co, cg, kh, kw] = case.weight();
    let [oh, ow] = case.out();
    let cog = co / case.groups;
    let mut y = vec![0.0; n * co * oh * ow];
    let (mut dx, mut dw, mut db) = (vec![0.0; x.len()], vec![0.0; w.len()], vec![0.0; co]);
    for (img, o, i, j) in positions(n, co, oh, ow) {
        let yi = ((img * co + o) * oh + i) * ow + j;
        y[yi] += f64::from(b[o]);
        db[o] += f64::from(r[yi]);
        for ci in 0..cg {
            let cin = (o / cog) * cg + ci;
            for u in 0..kh {
                for v in 0..kw {
                    let Some((sy, sx)) = case.source(i, j, u, v) else {
                        continue;
                    };
                    let xi = ((img * c + cin) * h + sy) * wd + sx;
                    let wi = ((o * cg + ci) * kh + u) * kw + v;
                    y[yi] += f64::from(x[xi]) * f64::from(w[wi]);
                    dw[wi] += f64::from(r[yi]) * f64::from(x[xi]);
                    dx[xi] += f64::from(r[yi]) * f64::from(w[wi]);
                }
            }
        }
    }
    [y, dx, dw, db]
}

/// All `(a, b, c, d)` with each below its bound, in row-major order.
fn positions(
    a: usize,
    b: usize,
    c: usize,
    d: usize,
) -> impl Iterator<Item = (usize, usize, usize, usize)> {
    (0..a).flat_map(move |i| {
        (0..b).flat_map(move |j| (0..c).flat_map(move |k| (0..d).map(move |l| (i, j, k, l))))
    })
}

fn random(len: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

fn values(t: Tensor<4>) -> Vec<f32> {
    t.into_data().try_to_vec().expect("f32")
}

fn assert_close(what: &str, case: &Case, got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what} length, {case:?}");
    let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let err = (f64::from(*g) - w).abs() / scale;
        assert!(
            err < 1e-5,
            "{what}[{i}]: {g} vs {w} (rel {err:e}), {case:?}"
        );
    }
}

fn check(case: Case, seed: u64) {
    let device = test_device();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (xs, ws) = (case.x, case.weight());
    let [oh, ow] = case.out();
    let ys = [xs[0], case.co, oh, ow];
    let (x, w, b, r) = (
        random(xs.iter().product(), &mut rng),
        random(ws.iter().product(), &mut rng),
        random(case.co, &mut rng),
        random(ys.iter().product(), &mut rng),
    );
    let xt = Tensor::<4>::from_data(TensorData::new(x.clone(), xs), &device).require_grad();
    let wt = Tensor::<4>::from_data(TensorData::new(w.clone(), ws), &device).require_grad();
    let bt = Tensor::<1>::from_data(TensorData::new(b.clone(), [case.co]), &device).require_grad();
    let rt = Tensor::<4>::from_data(TensorData::new(r.clone(), ys), &device);
    let options = ConvOptions::new_with_padding(case.stride, case.pad, case.dilation, case.groups);
    let y = conv2d(xt.clone(), wt.clone(), Some(bt.clone()), options);
    let grads = (y.clone() * rt).sum().backward();
    let [want_y, want_dx, want_dw, want_db] = reference(&case, &x, &w, &b, &r);
    assert_close("y", &case, &values(y.inner()), &want_y);
    assert_close(
        "dx",
        &case,
        &values(xt.grad(&grads).expect("x grad")),
        &want_dx,
    );
    assert_close(
        "dw",
        &case,
        &values(wt.grad(&grads).expect("w grad")),
        &want_dw,
    );
    let db: Vec<f32> = bt
        .grad(&grads)
        .expect("b grad")
        .into_data()
        .try_to_vec()
        .expect("f32");
    assert_close("db", &case, &db, &want_db);
}

#[test]
fn the_encoders_convolutions_match_the_definition() {
    // resnet8 at 32 px, scaled down in batch and width: stem, 3×3 stride 1 and 2, 1×1
    // shortcut at stride 2, the ImageNet stem's 7×7 stride 2 pad 3.
    check(Case::conv([3, 3, 12, 12], 8, 3, 1, 1), 1);
    check(Case::conv([2, 8, 12, 12], 8, 3, 1, 1), 2);
    check(Case::conv([2, 8, 12, 12], 16, 3, 2, 1), 3);
    check(Case::conv([2, 8, 12, 12], 16, 1, 2, 0), 4);
    check(Case::conv([2, 3, 19, 19], 8, 7, 2, 3), 5);
    // 1×1 stride 1: the input is the GEMM operand itself.
    check(Case::conv([2, 16, 5, 5], 8, 1, 1, 0), 6);
}

#[test]
fn one_thread_accumulates_every_images_weight_gradient() {
    // With one thread, one partial weight gradient holds all images (on many cores each
    // thread may hold a single image, which the cases above would then not exercise).
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a one-thread pool");
    pool.install(|| check(Case::conv([4, 3, 6, 6], 5, 3, 2, 1), 14));
}

#[test]
fn corner_cases_match_the_definition() {
    // One image (the GEMM takes the threads), odd sizes, no padding, padding wider than the
    // kernel's reach, dilation, groups, asymmetric padding, rectangular kernels and strides.
    check(Case::conv([1, 4, 9, 7], 5, 3, 1, 1), 7);
    check(Case::conv([5, 2, 6, 6], 3, 3, 1, 0), 8);
    check(Case::conv([2, 2, 4, 4], 3, 3, 2, 3), 9);
    check(
        Case {
            dilation: [2, 2],
            ..Case::conv([2, 3, 9, 9], 4, 3, 1, 2)
        },
        10,
    );
    check(
        Case {
            groups: 2,
            ..Case::conv([2, 4, 8, 8], 6, 3, 1, 1)
        },
        11,
    );
    check(
        Case {
            pad: [(0, 1), (2, 0)],
            ..Case::conv([2, 3, 7, 6], 4, 3, 2, 0)
        },
        12,
    );
    check(
        Case {
            kernel: [1, 3],
            stride: [2, 1],
            pad: [(0, 0), (1, 1)],
            ..Case::conv([3, 2, 5, 8], 4, 1, 1, 0)
        },
        13,
    );
}
