//! tract's convolutions — with our patches (models/vendor/tract-core/PATCH.md): how it unfolds
//! 2-D inputs, and direct fp32 convolutions (AVX-512 and AVX2 kernels) — against the definition, in the two
//! forms we export: fp32 `Conv` (in each of the three plans tract can take) and integer
//! `QLinearConv`. Geometries cover what the patch special-cases:
//! padding on every side, stride 2, outputs that do not fill the last packed panel
//! (13×13 = 169 positions), 3 and many input channels (K = 27 … 432), strided 1×1 shortcuts,
//! and for int8 a non-zero input zero point, which is what padding must hold there.

use rand::RngExt;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::FoldedConv;
use super::onnx::{self, Batch, GraphBuilder, INPUT, OUTPUT};
use edgeclr_runtime::TractModel;
use tract_onnx::tract_core::knobs::KnobScope;

/// `y[o, i, j] = b[o] + Σ_{c, u, v} w[o, c, u, v] · x[c, i·s + u − p, j·s + v − p]` (zero outside),
/// in f64; `x` is `[c, h, h]`.
fn conv_reference(conv: &FoldedConv, x: &[f64], h: usize) -> (Vec<f64>, usize) {
    let [co, ci, kh, kw] = conv.shape;
    let (s, p) = (conv.stride[0], conv.padding[0]);
    let oh = (h + conv.padding[0] + conv.padding[2] - kh) / s + 1;
    let mut y = vec![0.0; co * oh * oh];
    for o in 0..co {
        for i in 0..oh {
            for j in 0..oh {
                let mut acc = f64::from(conv.bias[o]);
                for c in 0..ci {
                    for u in 0..kh {
                        for v in 0..kw {
                            let (yy, xx) = (
                                (i * s + u) as isize - p as isize,
                                (j * s + v) as isize - p as isize,
                            );
                            if yy < 0 || xx < 0 || yy >= h as isize || xx >= h as isize {
                                continue;
                            }
                            let w = conv.weight[((o * ci + c) * kh + u) * kw + v];
                            acc += f64::from(w) * x[(c * h + yy as usize) * h + xx as usize];
                        }
                    }
                }
                y[(o * oh + i) * oh + j] = acc;
            }
        }
    }
    (y, oh)
}

/// Largest |got − want| over the two outputs.
fn max_abs_error(got: &[f32], want: &[f64]) -> f64 {
    got.iter()
        .zip(want)
        .map(|(g, w)| (f64::from(*g) - w).abs())
        .fold(0.0, f64::max)
}

/// A `k`×`k` convolution (3×3 with padding 1, or an unpadded 1×1 shortcut).
fn random_conv(rng: &mut ChaCha8Rng, co: usize, ci: usize, stride: usize, k: usize) -> FoldedConv {
    let n = co * ci * k * k;
    let bound = (1.0 / (ci * k * k) as f32).sqrt() * 1.7;
    let p = k / 2;
    FoldedConv {
        shape: [co, ci, k, k],
        weight: (0..n).map(|_| rng.random_range(-bound..bound)).collect(),
        bias: (0..co).map(|_| rng.random_range(-0.3..0.3)).collect(),
        stride: [stride, stride],
        padding: [p, p, p, p],
    }
}

/// `image → conv a → conv b → Flatten` as fp32 ONNX bytes.
fn fp32_pair(a: &FoldedConv, b: &FoldedConv, size: usize) -> Vec<u8> {
    let mut g = GraphBuilder::default();
    let mut x = INPUT.to_string();
    for (stem, conv) in [("a", a), ("b", b)] {
        let w = g.constant_f32(&format!("{stem}.w"), &conv.shape, &conv.weight);
        let bias = g.constant_f32(&format!("{stem}.b"), &[conv.shape[0]], &conv.bias);
        let y = g.fresh(stem);
        g.node(
            "Conv",
            &[&x, &w, &bias],
            &y,
            GraphBuilder::conv_attributes(conv),
        );
        x = y;
    }
    g.node("Flatten", &[&x], OUTPUT, vec![onnx::attr_int("axis", 1)]);
    prost::Message::encode_to_vec(&onnx::model(g, Batch::One, size, 0, &[], "conv check"))
}

fn geometries() -> [(usize, usize, usize, usize, usize, usize); 10] {
    // (input side, channels after a, stride of a, channels after b, stride of b, kernel side
    // of b). a is always 3×3; b is 3×3 or a strided 1×1 (a ResNet shortcut, which the direct
    // convolution takes instead of tract's `Downsample` + matrix product). tract
    // unfolds lazily when the output channels fit one kernel panel, so every geometry has a
    // convolution with more than 24 outputs (the eager `Im2col` path the patch writes). The
    // direct convolution takes whole blocks of output channels (8 with AVX-512, 4 with AVX2:
    // 33 falls back to tract's plans). Rows a whole number of vectors wide are written in
    // place, every row's vectors dealt in turn into blocks of up to three, so blocks span rows
    // (AVX-512's 16-point vectors: 64, 48, 32 and 16 wide, the rest runs over the phase rows;
    // AVX2's 8-point ones: 64, 56, 48, 32, 16 and 8 wide; 28, 13, 12, 7 and 6 wide run over the
    // phase rows on both). Odd sides with stride 2
    // leave the stride phases unequal. In place, taps are read in `KH, C, KW` order from a
    // row-major phase buffer; in runs, `C, KH, KW` from planes.
    [
        (13, 33, 1, 40, 2, 3),
        (32, 16, 1, 32, 1, 3),
        (16, 48, 2, 64, 1, 3),
        (24, 40, 2, 48, 2, 3),
        (56, 24, 1, 32, 2, 3),
        (64, 24, 1, 32, 1, 3),
        (32, 48, 1, 64, 2, 1),
        (64, 40, 1, 24, 2, 1),
        (13, 48, 1, 40, 2, 1),
        (48, 16, 1, 40, 1, 3),
    ]
}

/// How tract lowers an fp32 convolution.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Plan {
    /// The default: our direct convolution with the widest kernel the host runs (AVX-512F,
    /// else AVX2 + FMA) where the geometry fits, else tract's lazy im2col.
    Default,
    /// Our direct convolution with its AVX2 kernel even where AVX-512 is present
    /// (`TRACT_DIRECT_CONV_NO_AVX512`), so that hosts with AVX-512 test both kernels.
    Avx2,
    /// tract's lazy im2col (the direct convolution disabled).
    Lazy,
    /// tract's eager `Im2col`, which our unfolding patch writes.
    Eager,
}

impl Plan {
    /// The model, planned this way.
    fn load(self, bytes: &[u8], size: usize) -> TractModel {
        let load = || TractModel::from_onnx(bytes, size);
        match self {
            Plan::Default => load(),
            Plan::Avx2 => AVX2.enter(load),
            Plan::Lazy => NO_DIRECT.enter(load),
            Plan::Eager => EAGER.enter(load),
        }
        .expect("loads")
    }

    /// The kernel our direct fp32 convolution runs in this plan on this host (tract-core's
    /// own check, `F32Isa::detect`) as its info names it, and its block of output channels;
    /// None when it does not run.
    fn direct_kernel(self) -> Option<(&'static str, usize)> {
        let isa = HostIsa::get();
        self.pick(
            isa.avx512.then_some(("Avx512", 8)),
            isa.avx2_fma.then_some(("Avx2Fma", 4)),
        )
    }

    /// The same for our direct integer convolution (`U8Isa::detect`, `U8Isa::for_kernel`):
    /// AVX2 takes byte pairs where every two weights `vpmaddubsw` adds fit 16 bits (`paired`).
    fn direct_u8_kernel(self, paired: bool) -> Option<(&'static str, usize)> {
        let isa = HostIsa::get();
        let avx2 = if paired { "Avx2Bytes" } else { "Avx2" };
        self.pick(
            isa.vnni.then_some(("Vnni", 8)),
            isa.avx2.then_some((avx2, 4)),
        )
    }

    /// The wide kernel where the host has it and the plan allows it, else the AVX2 one.
    fn pick<T>(self, wide: Option<T>, avx2: Option<T>) -> Option<T> {
        match self {
            Plan::Default => wide.or(avx2),
            Plan::Avx2 => avx2,
            Plan::Lazy | Plan::Eager => None,
        }
    }
}

/// The instruction sets the direct convolutions' kernels need, as this host has them.
struct HostIsa {
    avx512: bool,
    vnni: bool,
    avx2: bool,
    avx2_fma: bool,
}

impl HostIsa {
    fn get() -> HostIsa {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            HostIsa {
                avx512: has!("avx512f"),
                vnni: has!("avx512f") && has!("avx512bw") && has!("avx512vnni"),
                avx2: has!("avx2"),
                avx2_fma: has!("avx2") && has!("fma"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            HostIsa {
                avx512: false,
                vnni: false,
                avx2: false,
                avx2_fma: false,
            }
        }
    }
}

/// How many ops of `profile` are `op` (one of our direct convolutions) on `kernel`.
fn direct_on(profile: &edgeclr_runtime::Profile, op: &str, kernel: &str) -> usize {
    let prefix = format!("{kernel}:");
    profile
        .ops
        .iter()
        .filter(|o| o.op == op && o.info.starts_with(&prefix))
        .count()
}

#[test]
fn fp32_convolutions_match_the_definition() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for (size, c1, s1, c2, s2, k2) in geometries() {
        let (a, b) = (
            random_conv(&mut rng, c1, 3, s1, 3),
            random_conv(&mut rng, c2, c1, s2, k2),
        );
        let x: Vec<f32> = (0..3 * size * size)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let xf: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
        let (mid, h1) = conv_reference(&a, &xf, size);
        let (want, _) = conv_reference(&b, &mid, h1);
        let bytes = fp32_pair(&a, &b, size);
        for plan in [Plan::Default, Plan::Avx2, Plan::Lazy, Plan::Eager] {
            let label = format!("geometry {size}/{c1}/{s1}/{c2}/{s2}/{k2}, {plan:?}");
            let mut model = plan.load(&bytes, size);
            let profile = model.profile(&x, 1).expect("runs");
            // Eager unfolds b's 3×3 (a 1×1 b is a matrix product); a, with three input
            // channels, is unfolded or not as the host's kernels decide (tract's direct spatial
            // convolution takes it where tract-linalg has `conv_w4`), so only b is asserted.
            let b_unfolds = profile
                .ops
                .iter()
                .filter(|o| o.op == "Im2col" && o.node.starts_with("Conv:b"))
                .count();
            assert_eq!(
                b_unfolds > 0,
                plan == Plan::Eager && k2 == 3,
                "{label}: {b_unfolds} Im2col ops for b in\n{profile}"
            );
            let (kernel, direct_expected) = match plan.direct_kernel() {
                Some((kernel, oc)) => (
                    kernel,
                    usize::from(c1.is_multiple_of(oc)) + usize::from(c2.is_multiple_of(oc)),
                ),
                None => ("none", 0),
            };
            assert_eq!(
                profile.count("DirectConvF32"),
                direct_expected,
                "{label}: DirectConvF32 ops in\n{profile}"
            );
            assert_eq!(
                direct_on(&profile, "DirectConvF32", kernel),
                direct_expected,
                "{label}: DirectConvF32 ops on {kernel} in\n{profile}"
            );
            // A strided 1×1 the direct convolution takes leaves no `Downsample` behind (without
            // it tract downsamples, sometimes inside the matrix product's packing).
            if direct_expected > 0 {
                assert_eq!(
                    profile.count("Downsample"),
                    0,
                    "{label}: Downsample ops in\n{profile}"
                );
            }
            let got = model.run(&x).expect("runs").swap_remove(0);
            assert_eq!(got.len(), want.len(), "{label}");
            let worst = max_abs_error(&got, &want);
            assert!(worst < 1e-4, "{label}: max |Δ| {worst:e}");
        }
    }
}

/// A ResNet stem and basic block to check the fused tails against: `image → stem → ReLU = r`,
/// then `conv b1 (→ ReLU → conv b2 when downsampling) → add(shortcut) → ReLU → Flatten`,
/// where the shortcut is `r` itself or a strided 1×1 convolution of it.
struct Block {
    stem: FoldedConv,
    b1: FoldedConv,
    /// The second convolution and the 1×1 shortcut of a downsampling block.
    down: Option<(FoldedConv, FoldedConv)>,
    /// The shortcut as the add's first operand (our output is then operand 1).
    swap: bool,
}

impl Block {
    fn onnx(&self, size: usize) -> Vec<u8> {
        let mut g = GraphBuilder::default();
        let conv = |g: &mut GraphBuilder, stem: &str, x: &str, conv: &FoldedConv| {
            let w = g.constant_f32(&format!("{stem}.w"), &conv.shape, &conv.weight);
            let bias = g.constant_f32(&format!("{stem}.b"), &[conv.shape[0]], &conv.bias);
            let y = g.fresh(stem);
            g.node(
                "Conv",
                &[x, &w, &bias],
                &y,
                GraphBuilder::conv_attributes(conv),
            );
            y
        };
        let relu = |g: &mut GraphBuilder, x: &str| {
            let y = g.fresh("relu");
            g.node("Relu", &[x], &y, vec![]);
            y
        };
        let r = conv(&mut g, "stem", INPUT, &self.stem);
        let r = relu(&mut g, &r);
        let mut main = conv(&mut g, "b1", &r, &self.b1);
        let mut shortcut = r.clone();
        if let Some((b2, sc)) = &self.down {
            let m = relu(&mut g, &main);
            main = conv(&mut g, "b2", &m, b2);
            shortcut = conv(&mut g, "shortcut", &r, sc);
        }
        let sum = g.fresh("sum");
        let operands = if self.swap {
            [&shortcut, &main]
        } else {
            [&main, &shortcut]
        };
        g.node(
            "Add",
            &[operands[0].as_str(), operands[1].as_str()],
            &sum,
            vec![],
        );
        let out = relu(&mut g, &sum);
        g.node("Flatten", &[&out], OUTPUT, vec![onnx::attr_int("axis", 1)]);
        prost::Message::encode_to_vec(&onnx::model(g, Batch::One, size, 0, &[], "block check"))
    }

    /// The definition, in f64.
    fn reference(&self, x: &[f64], size: usize) -> Vec<f64> {
        let relu = |v: Vec<f64>| v.into_iter().map(|x| x.max(0.0)).collect::<Vec<f64>>();
        let (r, h) = conv_reference(&self.stem, x, size);
        let r = relu(r);
        let (mut main, h1) = conv_reference(&self.b1, &r, h);
        let mut shortcut = r.clone();
        if let Some((b2, sc)) = &self.down {
            main = conv_reference(b2, &relu(main), h1).0;
            shortcut = conv_reference(sc, &r, h).0;
        }
        relu(main.iter().zip(&shortcut).map(|(m, s)| m + s).collect())
    }

    fn convolutions(&self) -> usize {
        if self.down.is_some() { 4 } else { 2 }
    }
}

#[test]
fn relu_and_residual_add_fuse_into_the_direct_convolution() {
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    // (input side, stem channels, stem kernel and stride, downsampling block, add operands
    // swapped). With AVX-512, 48, 32 and 16 wide rows are written in place (the epilogue in
    // registers), 24 and 13 as runs over the phase rows (the epilogue after compaction); with
    // AVX2 every width but 13 is in place. The 7×7 stride-2 stems are ImageNet's.
    for (size, c, (k, s), down, swap) in [
        (32, 16, (3, 1), false, false),
        (16, 32, (3, 1), false, true),
        (13, 24, (3, 1), false, false),
        (64, 16, (7, 2), true, false),
        (96, 16, (7, 2), true, true),
        (32, 16, (3, 1), true, false),
    ] {
        let stem = random_conv(&mut rng, c, 3, s, k);
        let block = if down {
            Block {
                stem,
                b1: random_conv(&mut rng, 2 * c, c, 2, 3),
                down: Some((
                    random_conv(&mut rng, 2 * c, 2 * c, 1, 3),
                    random_conv(&mut rng, 2 * c, c, 2, 1),
                )),
                swap,
            }
        } else {
            Block {
                stem,
                b1: random_conv(&mut rng, c, c, 1, 3),
                down: None,
                swap,
            }
        };
        let x: Vec<f32> = (0..3 * size * size)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let xf: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
        let want = block.reference(&xf, size);
        for plan in [Plan::Default, Plan::Avx2] {
            let label = format!(
                "{size}×{size}, {c} channels, stem {k}/{s}, down {down}, swap {swap}, {plan:?}"
            );
            check_block(&block, plan, &x, size, &want, &label);
        }
    }
}

/// One [`Block`] in one plan against its definition `want`: every convolution direct where the
/// host runs the plan's kernel, with the tails fused.
fn check_block(block: &Block, plan: Plan, x: &[f32], size: usize, want: &[f64], label: &str) {
    let mut model = plan.load(&block.onnx(size), size);
    let profile = model.profile(x, 1).expect("runs");
    if let Some((kernel, _)) = plan.direct_kernel() {
        // Every convolution direct, ReLUs and the add folded in; nothing pointwise left.
        assert_eq!(
            direct_on(&profile, "DirectConvF32", kernel),
            block.convolutions(),
            "{label}:\n{profile}"
        );
        let pointwise = |op: &str| ["Bin", "Max", "Add"].iter().any(|k| op.contains(k));
        assert!(
            !profile.ops.iter().any(|o| pointwise(&o.op)),
            "{label}: pointwise ops left in\n{profile}"
        );
        let infos: Vec<&str> = profile.ops.iter().map(|o| o.info.as_str()).collect();
        let fused = |tail: &str| infos.iter().filter(|i| i.ends_with(tail)).count();
        assert_eq!(fused(" + residual, ReLU"), 1, "{label}: {infos:?}");
        assert_eq!(
            fused(", ReLU") - 1,
            block.convolutions() / 2,
            "{label}: ReLUs folded in {infos:?}"
        );
    }
    let got = model.run(x).expect("runs").swap_remove(0);
    assert_eq!(got.len(), want.len(), "{label}");
    let worst = max_abs_error(&got, want);
    assert!(worst < 1e-4, "{label}: max |Δ| {worst:e}");
    // Clamped outputs are exactly zero, as ReLU defines (about half of them).
    let zeros = got.iter().filter(|&&v| v == 0.0).count();
    assert!(
        zeros > got.len() / 5 && zeros < got.len() * 4 / 5,
        "{label}: {zeros} zeros"
    );
}

/// tract's knobs that send every convolution to the eager `Im2col` path.
static EAGER: std::sync::LazyLock<KnobScope> = std::sync::LazyLock::new(|| {
    KnobScope::new([
        ("TRACT_DISABLE_DIRECT_CONV", "true"),
        ("TRACT_LAZY_IM2COL_MIN_KERNEL", "1000000"),
        ("TRACT_LAZY_IM2COL_MAX_EAGER_BYTES", "1000000000000"),
    ])
    .expect("tract knows these knobs")
});

/// The knob that turns our direct convolution off (tract's lazy im2col then runs).
static NO_DIRECT: std::sync::LazyLock<KnobScope> = std::sync::LazyLock::new(|| {
    KnobScope::new([("TRACT_DISABLE_DIRECT_CONV", "true")]).expect("tract knows this knob")
});

/// The knob that makes our direct fp32 convolution take its AVX2 kernel on AVX-512 hosts.
static AVX2: std::sync::LazyLock<KnobScope> = std::sync::LazyLock::new(|| {
    KnobScope::new([("TRACT_DIRECT_CONV_NO_AVX512", "true")]).expect("tract knows this knob")
});

/// One integer convolution: i8 weights (per-tensor scale, zero point 0), i32 bias, the
/// output's u8 scale and zero point.
struct QConv {
    /// Weights and bias as integers (held in f32, exact).
    int: FoldedConv,
    w_scale: f32,
    y_scale: f32,
    y_zero: u8,
}

/// Requantises integer accumulators the way ONNX QLinearConv defines it:
/// `y = sat_u8(round_half_even(acc · s_x·s_w / s_y) + z_y)`.
fn requantise(acc: &[f64], m: f64, zero: u8) -> Vec<u8> {
    acc.iter()
        .map(|a| ((a * m).round_ties_even() + f64::from(zero)).clamp(0.0, 255.0) as u8)
        .collect()
}

/// A random integer convolution with weights in `±bound` whose output scale puts its
/// accumulators' spread at about 40 quanta for input `x_int` (input minus its zero point) of
/// side `h`. `[co, ci, stride, k]`: output and input channels, stride, kernel side.
fn random_qconv(
    rng: &mut ChaCha8Rng,
    [co, ci, stride, k]: [usize; 4],
    bound: i8,
    x_int: &[f64],
    h: usize,
    x_scale: f32,
) -> (QConv, Vec<u8>, usize) {
    let mut int = random_conv(rng, co, ci, stride, k);
    int.weight = int
        .weight
        .iter()
        .map(|_| f32::from(rng.random_range(-bound..=bound)))
        .collect();
    int.bias = int
        .bias
        .iter()
        .map(|_| rng.random_range(-2000i32..2000) as f32)
        .collect();
    let (acc, oh) = conv_reference(&int, x_int, h);
    let spread = (acc.iter().map(|a| a * a).sum::<f64>() / acc.len() as f64).sqrt();
    let w_scale = 0.004f32;
    let y_scale = (f64::from(x_scale) * f64::from(w_scale) * spread / 40.0) as f32;
    let y_zero = rng.random_range(20u8..140);
    let m = f64::from(x_scale) * f64::from(w_scale) / f64::from(y_scale);
    let y = requantise(&acc, m, y_zero);
    (
        QConv {
            int,
            w_scale,
            y_scale,
            y_zero,
        },
        y,
        oh,
    )
}

/// Dequantised u8 outputs `got` against the definition `want`, on a grid of `scale`:
/// requantisation may round a near-tie the other way (f32 vs f64 scale, upstream too), so one
/// quantum is allowed, and almost every value must be exact.
fn assert_within_a_quantum(got: &[f32], want: &[f64], scale: f32, label: &str) {
    assert_eq!(got.len(), want.len(), "{label}");
    let quanta: Vec<f64> = got
        .iter()
        .zip(want)
        .map(|(g, w)| (f64::from(*g) - w).abs() / f64::from(scale))
        .collect();
    let worst = quanta.iter().copied().fold(0.0, f64::max);
    let exact = quanta.iter().filter(|&&q| q < 0.01).count() as f64 / quanta.len() as f64;
    assert!(
        worst < 1.01 && exact > 0.95,
        "{label}: worst {worst:.2} quanta, {:.1}% exact",
        100.0 * exact
    );
}

/// `image → QuantizeLinear → QLinearConv a → QLinearConv b → DequantizeLinear → Flatten`.
fn int8_pair(x_scale: f32, x_zero: u8, convs: [&QConv; 2], size: usize) -> Vec<u8> {
    let mut g = GraphBuilder::default();
    let mut scale = g.constant_f32("x.s", &[], &[x_scale]);
    let mut zero = g.constant_u8("x.z", &[], &[x_zero]);
    let mut x = g.fresh("x.u8");
    g.node("QuantizeLinear", &[INPUT, &scale, &zero], &x, vec![]);
    for (stem, q) in [("a", convs[0]), ("b", convs[1])] {
        [x, scale, zero] = qlinear_conv(&mut g, stem, [&x, &scale, &zero], q);
    }
    let f = g.fresh("y.f32");
    g.node("DequantizeLinear", &[&x, &scale, &zero], &f, vec![]);
    g.node("Flatten", &[&f], OUTPUT, vec![onnx::attr_int("axis", 1)]);
    prost::Message::encode_to_vec(&onnx::model(g, Batch::One, size, 0, &[], "qconv check"))
}

/// `QLinearConv` of `x` (a u8 tensor, its scale and zero point) by `q`: the output, its scale
/// and zero point.
fn qlinear_conv(g: &mut GraphBuilder, stem: &str, x: [&str; 3], q: &QConv) -> [String; 3] {
    let weights: Vec<i8> = q.int.weight.iter().map(|&w| w as i8).collect();
    let bias: Vec<i32> = q.int.bias.iter().map(|&b| b as i32).collect();
    let w = g.constant_i8(&format!("{stem}.w"), &q.int.shape, &weights);
    let ws = g.constant_f32(&format!("{stem}.ws"), &[], &[q.w_scale]);
    let wz = g.constant_i8(&format!("{stem}.wz"), &[], &[0]);
    let ys = g.constant_f32(&format!("{stem}.ys"), &[], &[q.y_scale]);
    let yz = g.constant_u8(&format!("{stem}.yz"), &[], &[q.y_zero]);
    let b = g.constant_i32(&format!("{stem}.b"), &[q.int.shape[0]], &bias);
    let y = g.fresh(stem);
    let inputs = [x[0], x[1], x[2], &w, &ws, &wz, &ys, &yz, &b];
    g.node(
        "QLinearConv",
        &inputs,
        &y,
        GraphBuilder::conv_attributes(&q.int),
    );
    [y, ys, yz]
}

#[test]
fn int8_convolutions_match_the_definition_with_zero_point_padding() {
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let (x_scale, x_zero) = (1.0f32 / 64.0, 100u8);
    // Weights in ±127 leave pairs that `vpmaddubsw` would saturate (AVX2 then runs on i16
    // pairs); in ±64 every pair fits (255 · 128 ≤ 32 767: AVX2 runs on bytes).
    for (bound, (size, c1, s1, c2, s2, k2)) in [127i8, 64]
        .into_iter()
        .flat_map(|b| geometries().map(|g| (b, g)))
    {
        let label = format!("weights ±{bound}, geometry {size}/{c1}/{s1}/{c2}/{s2}/{k2}");
        // Inputs on the quantisation grid, so QuantizeLinear is exact.
        let xq: Vec<u8> = (0..3 * size * size).map(|_| rng.random::<u8>()).collect();
        let x_int: Vec<f64> = xq
            .iter()
            .map(|&q| f64::from(q) - f64::from(x_zero))
            .collect();
        let x: Vec<f32> = x_int.iter().map(|&v| v as f32 * x_scale).collect();
        let (a, y1, h1) = random_qconv(&mut rng, [c1, 3, s1, 3], bound, &x_int, size, x_scale);
        let y1_int: Vec<f64> = y1
            .iter()
            .map(|&q| f64::from(q) - f64::from(a.y_zero))
            .collect();
        let (b, y2, _) = random_qconv(&mut rng, [c2, c1, s2, k2], bound, &y1_int, h1, a.y_scale);
        let want: Vec<f64> = y2
            .iter()
            .map(|&q| (f64::from(q) - f64::from(b.y_zero)) * f64::from(b.y_scale))
            .collect();
        let bytes = int8_pair(x_scale, x_zero, [&a, &b], size);
        // The default plan (our direct integer convolution with the widest kernel the host
        // runs: VNNI, else AVX2, for whole blocks of output channels), its AVX2 kernels on a
        // host with VNNI too, and tract's own eager `Im2col`.
        for plan in [Plan::Default, Plan::Avx2, Plan::Lazy] {
            let label = format!("{label}, {plan:?}");
            let mut model = plan.load(&bytes, size);
            let profile = model.profile(&x, 1).expect("runs");
            let kernel = plan.direct_u8_kernel(bound <= 64);
            let direct = |c: usize| kernel.is_some_and(|(_, oc)| c.is_multiple_of(oc));
            let expected = usize::from(direct(c1)) + usize::from(direct(c2));
            let on = kernel.map_or(0, |(name, _)| direct_on(&profile, "DirectConvU8", name));
            assert_eq!(
                (profile.count("DirectConvU8"), on),
                (expected, expected),
                "{label}: DirectConvU8 ops in\n{profile}"
            );
            // Without the direct path tract unfolds the 3×3s and runs a 1×1 as a product.
            let b_unfolds = usize::from(k2 == 3 && !direct(c2));
            let a_unfolds = usize::from(!direct(c1));
            assert_eq!(
                profile.count("Im2col"),
                a_unfolds + b_unfolds,
                "{label}: Im2col ops in\n{profile}"
            );
            let got = model.run(&x).expect("runs").swap_remove(0);
            // Padding with 0 instead of the input zero point would be off by ~100·Σw on every
            // border position.
            assert_within_a_quantum(&got, &want, b.y_scale, &label);
        }
    }
}

/// A residual block as edgeclr's int8 export writes it: `x → QuantizeLinear → QLinearConv a →
/// QLinearConv b`, then `QuantizeLinear(Relu(DequantizeLinear(b) + DequantizeLinear(a)))` with
/// `tail` as its scale and zero point (the add's operands swapped with `swap`), then
/// `DequantizeLinear → Flatten`.
fn int8_block(
    x: (f32, u8),
    convs: [&QConv; 2],
    tail: (f32, u8),
    swap: bool,
    size: usize,
) -> Vec<u8> {
    let mut g = GraphBuilder::default();
    let scale = g.constant_f32("x.s", &[], &[x.0]);
    let zero = g.constant_u8("x.z", &[], &[x.1]);
    let xq = g.fresh("x.u8");
    g.node("QuantizeLinear", &[INPUT, &scale, &zero], &xq, vec![]);
    let a = qlinear_conv(&mut g, "a", [&xq, &scale, &zero], convs[0]);
    let b = qlinear_conv(&mut g, "b", [&a[0], &a[1], &a[2]], convs[1]);
    let dequantize = |g: &mut GraphBuilder, q: &[String; 3]| {
        let f = g.fresh("f32");
        g.node("DequantizeLinear", &[&q[0], &q[1], &q[2]], &f, vec![]);
        f
    };
    let (fa, fb) = (dequantize(&mut g, &a), dequantize(&mut g, &b));
    let sum = g.fresh("sum");
    let operands = if swap { [&fa, &fb] } else { [&fb, &fa] };
    g.node(
        "Add",
        &[operands[0].as_str(), operands[1].as_str()],
        &sum,
        vec![],
    );
    let relu = g.fresh("relu");
    g.node("Relu", &[&sum], &relu, vec![]);
    let ts = g.constant_f32("t.s", &[], &[tail.0]);
    let tz = g.constant_u8("t.z", &[], &[tail.1]);
    let out = [g.fresh("out.u8"), ts, tz];
    g.node(
        "QuantizeLinear",
        &[&relu, &out[1], &out[2]],
        &out[0],
        vec![],
    );
    let f = dequantize(&mut g, &out);
    g.node("Flatten", &[&f], OUTPUT, vec![onnx::attr_int("axis", 1)]);
    prost::Message::encode_to_vec(&onnx::model(g, Batch::One, size, 0, &[], "qblock check"))
}

#[test]
fn an_int8_blocks_dequantise_add_relu_requantise_tail_fuses_into_the_direct_convolution() {
    let mut rng = ChaCha8Rng::seed_from_u64(14);
    let (x_scale, x_zero) = (1.0f32 / 64.0, 100u8);
    // (side, channels, add operands swapped): 32 wide rows in place, 13 wide as runs; 13 × 13
    // × 12 values leave four past the last eight (the tail's scalar remainder; 12 channels are
    // not a VNNI block, so there only the AVX2 plan is direct).
    for (size, c, swap) in [
        (32, 16, false),
        (32, 16, true),
        (13, 24, false),
        (13, 12, false),
    ] {
        let xq: Vec<u8> = (0..3 * size * size).map(|_| rng.random::<u8>()).collect();
        let centred = |q: &[u8], z: u8| -> Vec<f64> {
            q.iter().map(|&q| f64::from(q) - f64::from(z)).collect()
        };
        let x: Vec<f32> = centred(&xq, x_zero)
            .iter()
            .map(|&v| v as f32 * x_scale)
            .collect();
        let (a, ya, h) = random_qconv(
            &mut rng,
            [c, 3, 1, 3],
            64,
            &centred(&xq, x_zero),
            size,
            x_scale,
        );
        let (b, yb, _) = random_qconv(
            &mut rng,
            [c, c, 1, 3],
            64,
            &centred(&ya, a.y_zero),
            h,
            a.y_scale,
        );
        // The tail in f32 as the graph defines it, then requantised in f64.
        let dequantize =
            |q: u8, conv: &QConv| (f32::from(q) - f32::from(conv.y_zero)) * conv.y_scale;
        let sum: Vec<f32> = ya
            .iter()
            .zip(&yb)
            .map(|(&qa, &qb)| (dequantize(qb, &b) + dequantize(qa, &a)).max(0.0))
            .collect();
        // A zero point of 17 and the largest sums past 255: the output saturates.
        let (tail_scale, tail_zero) = (sum.iter().copied().fold(0.0f32, f32::max) / 300.0, 17u8);
        let want: Vec<f64> = sum
            .iter()
            .map(|&v| {
                let q =
                    (f64::from(v) / f64::from(tail_scale)).round_ties_even() + f64::from(tail_zero);
                (q.clamp(0.0, 255.0) - f64::from(tail_zero)) * f64::from(tail_scale)
            })
            .collect();
        let saturated = want
            .iter()
            .filter(|&&w| w >= (255.0 - 17.0) * f64::from(tail_scale) * 0.999);
        assert!(saturated.count() > 0, "some outputs saturate");
        let bytes = int8_block(
            (x_scale, x_zero),
            [&a, &b],
            (tail_scale, tail_zero),
            swap,
            size,
        );
        for plan in [Plan::Default, Plan::Avx2] {
            let label = format!("{size}×{size}, {c} channels, swap {swap}, {plan:?}");
            let mut model = plan.load(&bytes, size);
            let profile = model.profile(&x, 1).expect("runs");
            let direct = plan
                .direct_u8_kernel(true)
                .filter(|(_, oc)| c.is_multiple_of(*oc));
            if let Some((kernel, _)) = direct {
                // Both convolutions direct; the tail is b's: only the input's QuantizeLinear and
                // the output's DequantizeLinear are left.
                assert_eq!(
                    direct_on(&profile, "DirectConvU8", kernel),
                    2,
                    "{label}:\n{profile}"
                );
                let infos: Vec<&str> = profile.ops.iter().map(|o| o.info.as_str()).collect();
                let fused = infos
                    .iter()
                    .filter(|i| i.ends_with("+ shortcut, ReLU, requantised"));
                assert_eq!(fused.count(), 1, "{label}: {infos:?}");
                assert_eq!(
                    (
                        profile.count("QuantizeLinearU8"),
                        profile.count("DequantizeLinearF32")
                    ),
                    (1, 1),
                    "{label}:\n{profile}"
                );
            }
            let got = model.run(&x).expect("runs").swap_remove(0);
            assert_within_a_quantum(&got, &want, tail_scale, &label);
        }
    }
}
