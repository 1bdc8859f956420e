//! Export tests: burn (the trained model, unfolded BatchNorm) is the independent reference
//! for every exported graph run in tract; quantisation arithmetic is checked by hand.

use std::path::Path;

use burn::module::Module;
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use rand::RngExt;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::manifest::{Agreement, sha256_bytes};
use super::onnx::{self, Batch};
use super::quantize::{self, ActivationParams, RangeCollector, quantize_weights};
use super::*;
use crate::encoder::{Architecture, EncoderConfig, ResNet, Stem};
use edgeclr_runtime::embed::{EmbedError, Embedder, TractEmbedder, cosine};

/// A small encoder whose BatchNorms hold non-trivial running statistics and affine
/// parameters (a few train-mode forwards on the autodiff device), in inference mode.
fn trained_like(config: &EncoderConfig, size: usize) -> ResNet {
    let device = crate::test_device();
    device.seed(7);
    let encoder = config.init(&device);
    for _ in 0..3 {
        let x = Tensor::<4>::random([4, 3, size, size], Distribution::Normal(0.5, 1.0), &device);
        let _ = encoder.forward(x);
    }
    // Perturb γ and β too, so folding is exercised beyond the running statistics.
    let encoder = encoder.map(&mut Perturb(ChaCha8Rng::seed_from_u64(3)));
    encoder.valid()
}

struct Perturb(ChaCha8Rng);
impl burn::module::ModuleMapper for Perturb {
    fn map_float<const D: usize>(
        &mut self,
        param: burn::module::Param<Tensor<D>>,
    ) -> burn::module::Param<Tensor<D>> {
        if D != 1 {
            return param;
        }
        let rng = &mut self.0;
        param.map(|tensor| {
            let n = tensor.dims()[0];
            let noise: Vec<f32> = (0..n).map(|_| rng.random_range(-0.3..0.3)).collect();
            let device = tensor.device();
            let mut shape = [0usize; D];
            shape[0] = n;
            tensor + Tensor::<1>::from_data(TensorData::new(noise, [n]), &device).reshape(shape)
        })
    }
}

fn images(n: usize, size: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            // Smooth-ish images: a random per-channel gradient plus noise, normalised range.
            let (a, b, c) = (
                rng.random_range(-1.5f32..1.5),
                rng.random_range(-1.5f32..1.5),
                rng.random_range(-1.0f32..1.0),
            );
            (0..3 * size * size)
                .map(|i| {
                    let (y, x) = ((i / size) % size, i % size);
                    let t = (x as f32 * a + y as f32 * b) / size as f32 + c;
                    t + rng.random_range(-0.5f32..0.5)
                })
                .collect()
        })
        .collect()
}

fn burn_embed(encoder: &ResNet, images: &[Vec<f32>], size: usize) -> Vec<Vec<f32>> {
    let device = Device::flex();
    let flat: Vec<f32> = images.concat();
    let x = Tensor::<4>::from_data(
        TensorData::new(flat, [images.len(), 3, size, size]),
        &device,
    );
    let h = encoder.forward(x);
    let dim = h.dims()[1];
    let v = h.into_data().try_to_vec::<f32>().expect("f32");
    v.chunks(dim).map(<[f32]>::to_vec).collect()
}

fn tract_embed(bytes: &[u8], images: &[Vec<f32>], size: usize) -> Vec<Vec<f32>> {
    let mut e = TractEmbedder::from_bytes(bytes, size, Path::new("<test>")).expect("loads");
    images.iter().map(|x| e.embed(x).expect("runs")).collect()
}

#[test]
fn folded_fp32_onnx_in_tract_matches_burn() {
    for (arch, stem, size) in [
        (Architecture::Resnet8, Stem::Cifar, 16),
        (Architecture::Resnet8, Stem::Imagenet, 32),
    ] {
        let config = EncoderConfig::new(arch).with_stem(stem);
        let encoder = trained_like(&config, size);
        let net = encoder.fold();
        assert_eq!(net.output_dim(), config.output_dim());
        assert_eq!(net.stem_pool, stem == Stem::Imagenet);
        let xs = images(6, size, 1);
        let reference = burn_embed(&encoder, &xs, size);
        for batch in [Batch::One, Batch::Symbolic] {
            let bytes = onnx::fp32(&net, batch, size);
            let got = tract_embed(&bytes, &xs, size);
            let a = Agreement::measure("tract vs burn", &got, &reference);
            assert!(a.min_cosine > 0.99999, "{arch:?} {stem:?} {batch:?}: {a:?}");
            assert!(a.max_abs_error < 1e-4, "{arch:?} {stem:?} {batch:?}: {a:?}");
        }
    }
}

#[test]
fn folded_structure_matches_the_architecture() {
    let net = trained_like(&EncoderConfig::new(Architecture::Resnet8), 8).fold();
    // Stem + 3 basic blocks; the last two change shape and carry projection shortcuts.
    assert_eq!(net.blocks.len(), 3);
    assert!(net.blocks[0].shortcut.is_none());
    assert!(net.blocks[1].shortcut.is_some() && net.blocks[2].shortcut.is_some());
    assert_eq!(net.blocks[1].convs[0].stride, [2, 2]);
    assert_eq!(
        net.blocks[1].shortcut.as_ref().map(|s| s.shape),
        Some([64, 32, 1, 1])
    );
    assert_eq!(net.stem.padding, [1, 1, 1, 1]);
    assert_eq!(net.convs().len(), 1 + 3 * 2 + 2);
}

#[test]
fn nnef_from_onnx_runs_identically() {
    let size = 16;
    let net = trained_like(&EncoderConfig::new(Architecture::Resnet8), size).fold();
    let onnx_bytes = onnx::fp32(&net, Batch::Symbolic, size);
    let tar = nnef::from_onnx(&onnx_bytes).expect("converts");
    assert_eq!(
        edgeclr_runtime::embed::ModelFormat::sniff(&tar),
        edgeclr_runtime::embed::ModelFormat::Nnef
    );
    let xs = images(3, size, 2);
    let a = tract_embed(&onnx::fp32(&net, Batch::One, size), &xs, size);
    let b = tract_embed(&tar, &xs, size);
    let agree = Agreement::measure("nnef vs onnx", &b, &a);
    assert!(agree.max_abs_error < 1e-5, "{agree:?}");
}

#[test]
fn int8_graphs_stay_close_to_fp32_and_to_each_other() {
    let size = 16;
    let encoder = trained_like(&EncoderConfig::new(Architecture::Resnet8), size);
    let net = encoder.fold();
    let calib = images(32, size, 3);
    let held_out = images(12, size, 4);
    let fp32 = tract_embed(&onnx::fp32(&net, Batch::One, size), &held_out, size);
    for weights in [WeightGranularity::PerTensor, WeightGranularity::PerChannel] {
        for method in [
            CalibrationMethod::MinMax,
            CalibrationMethod::Percentile(99.99),
        ] {
            let cal = quantize::calibrate(&net, size, &calib, method).expect("calibrates");
            assert_eq!(cal.images, 32);
            // ReLU outputs start at 0: their zero point is 0, so u8 saturation is the ReLU.
            assert_eq!(cal.ranges["stem"][0], 0.0);
            assert_eq!(cal.ranges["block0.conv0"][0], 0.0);
            assert!(
                cal.ranges["block0.conv1"][0] < 0.0,
                "pre-add conv output is signed"
            );
            let ql = quantize::qlinear(&net, &cal, weights, Batch::One, size).expect("qlinear");
            let qd = quantize::qdq(&net, &cal, weights, Batch::One, size).expect("qdq");
            let int8 = tract_embed(&ql, &held_out, size);
            let fake = tract_embed(&qd, &held_out, size);
            let drift = Agreement::measure("int8 vs fp32", &int8, &fp32);
            assert!(drift.mean_cosine > 0.99, "{weights:?} {method}: {drift:?}");
            let same = Agreement::measure("qlinear vs qdq", &int8, &fake);
            assert!(same.mean_cosine > 0.999, "{weights:?} {method}: {same:?}");
        }
    }
}

#[test]
fn int8_graph_shape_and_size() {
    let size = 16;
    let net = trained_like(&EncoderConfig::new(Architecture::Resnet8), size).fold();
    let cal = quantize::calibrate(&net, size, &images(4, size, 5), CalibrationMethod::MinMax)
        .expect("calibrates");
    let fp32 = onnx::fp32(&net, Batch::One, size);
    let ql = quantize::qlinear(&net, &cal, WeightGranularity::PerTensor, Batch::One, size)
        .expect("qlinear");
    let convs = net.convs().len();
    let ops = onnx::op_histogram(&ql).expect("decodes");
    assert_eq!(ops.get("QLinearConv"), Some(&convs), "{ops:?}");
    assert_eq!(ops.get("Conv"), None, "no float conv left: {ops:?}");
    // A quantised tensor is produced once however many convs read it (block input feeds
    // conv0 and the shortcut), and ReLU is folded into saturation: no Relu before adds.
    assert_eq!(ops.get("Relu"), Some(&net.blocks.len()), "{ops:?}");
    let qdq_ops = onnx::op_histogram(
        &quantize::qdq(&net, &cal, WeightGranularity::PerTensor, Batch::One, size).expect("qdq"),
    )
    .expect("decodes");
    assert_eq!(qdq_ops.get("Conv"), Some(&convs), "{qdq_ops:?}");
    // Weights dominate: i8 instead of f32 makes the file 3.5–4× smaller.
    let ratio = fp32.len() as f64 / ql.len() as f64;
    assert!(
        (3.5..=4.0).contains(&ratio),
        "fp32 {} B / int8 {} B = {ratio:.2}",
        fp32.len(),
        ql.len()
    );
}

#[test]
fn weight_quantisation_by_hand() {
    let conv = FoldedConv {
        shape: [2, 1, 1, 2],
        weight: vec![0.5, -1.27, 0.006, -0.02],
        bias: vec![0.0, 0.0],
        stride: [1, 1],
        padding: [0; 4],
    };
    // Per tensor: s = 1.27/127 = 0.01 → codes round(w / 0.01).
    let (codes, scales) = quantize_weights(&conv, WeightGranularity::PerTensor);
    assert_eq!(codes, vec![50, -127, 1, -2]);
    assert!(scales.iter().all(|s| (s - 0.01).abs() < 1e-9));
    // Per channel: channel 1 has s = 0.02/127, so 0.006 → round(38.1) = 38 and −0.02 → −127.
    let (codes, scales) = quantize_weights(&conv, WeightGranularity::PerChannel);
    assert_eq!(codes, vec![50, -127, 38, -127]);
    assert!((scales[1] - 0.02 / 127.0).abs() < 1e-12);
}

#[test]
fn weight_scales_keep_every_channel_pair_within_reach_of_16_bits() {
    // One output channel, 3 input channels, 1×2 kernel: [C, KW] = [[0.8, -0.5], [0.6, -0.1],
    // [0.2, 0.9]]. Pairs (0, 1) at each position: positive 0.8 + 0.6 = 1.4, negative
    // 0.5 + 0.1 = 0.6; channel 2 pairs with zero: 0.2, 0.9. Reach 1.4 (not absmax 0.9), so
    // s = 1.4/127 and the codes are round(w / s): 72.57 → 73, −45.36 → −45, 54.43 → 54,
    // −9.07 → −9, 18.14 → 18, 81.64 → 82; the pair at position 0 sums to 73 + 54 = 127 ≤ 128.
    let conv = FoldedConv {
        shape: [1, 3, 1, 2],
        weight: vec![0.8, -0.5, 0.6, -0.1, 0.2, 0.9],
        bias: vec![0.0],
        stride: [1, 1],
        padding: [0; 4],
    };
    assert!((quantize::pair_reach(&conv.weight, 2) - 1.4).abs() < 1e-6);
    for granularity in [WeightGranularity::PerTensor, WeightGranularity::PerChannel] {
        let (codes, scales) = quantize_weights(&conv, granularity);
        assert_eq!(codes, vec![73, -45, 54, -9, 18, 82], "{granularity:?}");
        assert!((scales[0] - 1.4 / 127.0).abs() < 1e-7, "{granularity:?}");
    }
}

#[test]
fn quantised_weight_pairs_always_fit_vpmaddubsw() {
    // Random convolutions (odd and even input channels, 1×1 and 3×3, a few weights made the
    // channel's largest so pairs of large same-sign weights occur): in the codes, every pair of
    // input channels 2k, 2k + 1 at one kernel position sums to at most 128 on each side of
    // zero — what the board's AVX2 int8 kernel needs to be exact (255 · 128 ≤ 32 767).
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    for (co, ci, k) in [(8, 3, 3), (16, 16, 3), (12, 7, 1), (32, 64, 3)] {
        let khw = k * k;
        let mut weight: Vec<f32> = (0..co * ci * khw)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        for o in 0..co {
            // Channels 0 and 1 at position 0 both the largest, same sign.
            weight[o * ci * khw] = 1.5;
            if ci > 1 {
                weight[(o * ci + 1) * khw] = 1.5;
            }
        }
        let conv = FoldedConv {
            shape: [co, ci, k, k],
            weight,
            bias: vec![0.0; co],
            stride: [1, 1],
            padding: [k / 2; 4],
        };
        for granularity in [WeightGranularity::PerTensor, WeightGranularity::PerChannel] {
            let (codes, _) = quantize_weights(&conv, granularity);
            for (o, channel) in codes.chunks_exact(ci * khw).enumerate() {
                for ic in (0..ci).step_by(2) {
                    for p in 0..khw {
                        let a = i32::from(channel[ic * khw + p]);
                        let b = if ic + 1 < ci {
                            i32::from(channel[(ic + 1) * khw + p])
                        } else {
                            0
                        };
                        let (pos, neg) = (a.max(0) + b.max(0), a.min(0) + b.min(0));
                        assert!(
                            pos <= 128 && neg >= -128,
                            "{co}×{ci}×{k}² {granularity:?}: channel {o}, pair {ic} at {p}: {a}, {b}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn activation_parameters_by_hand() {
    // [0, 2.55] → scale 0.01, zero point 0 (a ReLU output).
    let p = ActivationParams::from_range([0.0, 2.55]);
    assert!((p.scale - 0.01).abs() < 1e-7 && p.zero_point == 0);
    // [−1, 1.55] → scale 0.01, zero point 100.
    let p = ActivationParams::from_range([-1.0, 1.55]);
    assert!(
        (p.scale - 0.01).abs() < 1e-7 && p.zero_point == 100,
        "{p:?}"
    );
    // A range that excludes 0 is widened to include it, so zero padding is exact.
    let p = ActivationParams::from_range([0.5, 2.55]);
    assert_eq!(p.zero_point, 0);
}

#[test]
fn percentile_calibration_clips_outliers() {
    let values: Vec<f32> = (0..=1000).map(|v| v as f32).collect();
    let collect = |method| {
        let mut c = RangeCollector::default();
        c.observe("x", &values);
        c.next_image();
        c.finish(method)
    };
    assert_eq!(
        collect(CalibrationMethod::MinMax).ranges["x"],
        [0.0, 1000.0]
    );
    // 1001 values 0..=1000: the 1st/99th percentiles are 10 and 990.
    assert_eq!(
        collect(CalibrationMethod::Percentile(99.0)).ranges["x"],
        [10.0, 990.0]
    );
    assert_eq!(
        "percentile:99.9".parse::<CalibrationMethod>(),
        Ok(CalibrationMethod::Percentile(99.9))
    );
    assert!("percentile:20".parse::<CalibrationMethod>().is_err());
}

#[test]
fn calibration_from_another_network_is_refused() {
    let size = 8;
    let small = trained_like(&EncoderConfig::new(Architecture::Resnet8), size).fold();
    let mut cal = quantize::calibrate(&small, size, &images(2, size, 6), CalibrationMethod::MinMax)
        .expect("calibrates");
    cal.ranges.remove("block2.shortcut");
    let err = quantize::qlinear(&small, &cal, WeightGranularity::PerTensor, Batch::One, size)
        .expect_err("a missing range is an error");
    assert!(err.to_string().contains("block2.shortcut"), "{err}");
    let err = quantize::calibrate(&small, size, &[], CalibrationMethod::MinMax).expect_err("empty");
    assert!(err.to_string().contains("--calib-data"), "{err}");
}

#[test]
fn bad_model_files_get_clear_errors() {
    let size = 8;
    let net = trained_like(&EncoderConfig::new(Architecture::Resnet8), size).fold();
    let bytes = onnx::fp32(&net, Batch::One, size);
    let name = Path::new("encoder.onnx");
    // Truncated ONNX.
    let err =
        TractEmbedder::from_bytes(&bytes[..bytes.len() / 2], size, name).expect_err("truncated");
    assert!(matches!(err, EmbedError::Load { .. }), "{err}");
    assert!(err.to_string().contains("encoder.onnx"), "{err}");
    // Foreign bytes.
    let err =
        TractEmbedder::from_bytes(b"this is not a model at all", size, name).expect_err("foreign");
    assert!(
        err.to_string().contains("not an ONNX or NNEF model"),
        "{err}"
    );
    // A model whose input disagrees with the size we were told.
    let err = TractEmbedder::from_bytes(&bytes, 16, name).expect_err("size mismatch");
    assert!(err.to_string().contains("--image-size 16"), "{err}");
    // Truncated NNEF.
    let tar = nnef::from_onnx(&onnx::fp32(&net, Batch::Symbolic, size)).expect("nnef");
    let err = TractEmbedder::from_bytes(&tar[..tar.len() / 3], size, Path::new("encoder.nnef.tar"))
        .expect_err("truncated nnef");
    assert!(err.to_string().contains("encoder.nnef.tar"), "{err}");
    let err =
        TractEmbedder::from_bytes(&tar, 16, Path::new("encoder.nnef.tar")).expect_err("nnef size");
    assert!(err.to_string().contains("--image-size 16"), "{err}");
    // Wrong input length at run time.
    let mut e = TractEmbedder::from_bytes(&bytes, size, name).expect("loads");
    let err = e.embed(&[0.0; 10]).expect_err("short input");
    assert!(err.to_string().contains("3×8×8 = 192"), "{err}");
}

#[test]
fn manifest_checks_checksums_and_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let size = 8;
    let net = trained_like(&EncoderConfig::new(Architecture::Resnet8), size).fold();
    let bytes = onnx::fp32(&net, Batch::One, size);
    let kind = ArtifactKind::OnnxFp32;
    std::fs::write(dir.path().join(kind.file_name()), &bytes).expect("write");
    let manifest = Manifest {
        format_version: manifest::FORMAT_VERSION,
        producer: "test".into(),
        encoder: super::recipe::to_json(&EncoderConfig::new(Architecture::Resnet8)),
        output_dim: 128,
        input: manifest::InputSpec {
            size,
            layout: "NCHW".into(),
            normalize: crate::augment::normalize::Normalize::CIFAR10,
        },
        artifacts: vec![Artifact {
            file: kind.file_name().into(),
            kind,
            sha256: sha256_bytes(&bytes),
            bytes: bytes.len() as u64,
        }],
        quantization: None,
        drift: manifest::Drift::default(),
        source: manifest::Source {
            run: "runs/x".into(),
            weights_sha256: "0".repeat(64),
            model_version: "x".into(),
        },
        recipe: None,
    };
    manifest.save(dir.path()).expect("save");
    let opened = edgeclr_runtime::embed::open(dir.path()).expect("opens the folder");
    assert_eq!(opened.kind, kind);
    assert_eq!(opened.embedder.dim(), 128);
    let opened =
        edgeclr_runtime::embed::open(&dir.path().join("encoder.onnx")).expect("opens the file");
    assert_eq!(opened.manifest, manifest);
    // A file the manifest does not list.
    std::fs::write(dir.path().join("other.onnx"), &bytes).expect("write");
    let err = edgeclr_runtime::embed::open(&dir.path().join("other.onnx")).expect_err("unlisted");
    assert!(
        err.to_string().contains("lists no file `other.onnx`"),
        "{err}"
    );
    // A modified file.
    let mut changed = bytes.clone();
    let last = changed.len() - 1;
    changed[last] ^= 1;
    std::fs::write(dir.path().join("encoder.onnx"), &changed).expect("write");
    let err = edgeclr_runtime::embed::open(dir.path()).expect_err("checksum");
    assert!(
        err.to_string().contains("does not match the manifest"),
        "{err}"
    );
    // A folder with no manifest.
    let empty = tempfile::tempdir().expect("tempdir");
    let err = edgeclr_runtime::embed::open(empty.path()).expect_err("no manifest");
    assert!(err.to_string().contains("edgeclr export"), "{err}");
}

#[test]
fn embed_all_matches_sequential_embedding() {
    let size = 8;
    let net = trained_like(&EncoderConfig::new(Architecture::Resnet8), size).fold();
    let bytes = onnx::fp32(&net, Batch::One, size);
    let xs = images(9, size, 8);
    let e = TractEmbedder::from_bytes(&bytes, size, Path::new("<test>")).expect("loads");
    let all = e.embed_all(&xs).expect("runs");
    let seq = tract_embed(&bytes, &xs, size);
    assert_eq!(all, seq);
    assert!((cosine(&[1.0, 0.0], &[1.0, 1.0]) - std::f64::consts::FRAC_1_SQRT_2).abs() < 1e-12);
}
