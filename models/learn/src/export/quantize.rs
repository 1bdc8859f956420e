//! Post-training int8 quantisation of a [`FoldedResNet`], calibrated on real images at the
//! deployment resolution.
//!
//! - Activations: u8, asymmetric, per tensor. Ranges come from running the fp32 graph with
//!   every intermediate tensor exposed ([`super::onnx::fp32_with_taps`]) over the calibration
//!   images, taking either the min/max or a percentile of the observed values. A ReLU output
//!   has range `[0, hi]`, so its zero point is 0 and u8 saturation *is* the ReLU (folded).
//! - Weights: i8, symmetric (zero point 0), per tensor (default) or per output channel;
//!   biases i32 at scale `s_x·s_w` (the ONNX QLinearConv convention).
//!
//! Two graphs come from one plan, so they compute the same function:
//! - [`qlinear`] — `QuantizeLinear → QLinearConv → … → DequantizeLinear` around the float
//!   residual adds. This is the form tract 0.23.9 runs on real i8×i8→i32 kernels; with
//!   per-tensor weight scales it fuses the requantisation into the matmul.
//! - [`qdq`] — the standard QDQ form (Q/DQ pairs around float Conv) for other runtimes;
//!   tract loads it but runs the convolutions in float (docs/export.md).

use std::collections::{BTreeMap, HashMap};

use prost::Message;
use serde::{Deserialize, Serialize};
use tract_onnx::pb::AttributeProto;
use tract_onnx::pb::attribute_proto::AttributeType;

use super::onnx::{Batch, GraphBuilder, Lowering, Value, lower, model};
use super::{ExportError, FoldedConv, FoldedResNet};

pub use edgeclr_artifact::quant::{CalibrationMethod, QuantConfig, WeightGranularity};

/// Per-tensor activation ranges, keyed by calibration point (`input`, `stem`,
/// `block0.conv0`, …, `block2.out`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// How the ranges were taken.
    pub method: CalibrationMethod,
    /// Number of calibration images.
    pub images: usize,
    /// `[lo, hi]` per point.
    pub ranges: BTreeMap<String, [f32; 2]>,
}

/// Accumulates exact min/max and a strided sample of every point's values.
#[derive(Debug, Default)]
pub struct RangeCollector {
    points: BTreeMap<String, Observed>,
    images: usize,
}

#[derive(Debug)]
struct Observed {
    min: f32,
    max: f32,
    sample: Vec<f32>,
}

/// Values kept per tensor per image for percentile estimates.
const SAMPLES_PER_IMAGE: usize = 4096;

impl RangeCollector {
    /// Records the values of `point` for one image.
    pub fn observe(&mut self, point: &str, values: &[f32]) {
        let o = self.points.entry(point.to_string()).or_insert(Observed {
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            sample: Vec::new(),
        });
        for &v in values {
            o.min = o.min.min(v);
            o.max = o.max.max(v);
        }
        let stride = values.len().div_ceil(SAMPLES_PER_IMAGE).max(1);
        o.sample.extend(values.iter().step_by(stride));
    }

    /// Marks the end of one image.
    pub fn next_image(&mut self) {
        self.images += 1;
    }

    /// The ranges under `method`.
    pub fn finish(self, method: CalibrationMethod) -> Calibration {
        let ranges = self
            .points
            .into_iter()
            .map(|(name, mut o)| {
                let range = match method {
                    CalibrationMethod::MinMax => [o.min, o.max],
                    CalibrationMethod::Percentile(p) => {
                        o.sample.sort_by(f32::total_cmp);
                        let at = |q: f32| {
                            let i = ((q / 100.0) * (o.sample.len() - 1) as f32).round() as usize;
                            o.sample[i.min(o.sample.len() - 1)]
                        };
                        [at(100.0 - p), at(p)]
                    }
                };
                (name, range)
            })
            .collect();
        Calibration {
            method,
            images: self.images,
            ranges,
        }
    }
}

/// u8 affine parameters of one activation tensor: `x ≈ scale · (q − zero_point)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ActivationParams {
    /// Step size.
    pub scale: f32,
    /// The u8 code of 0.0.
    pub zero_point: u8,
}

impl ActivationParams {
    /// Parameters covering `[lo, hi]` widened to include 0 (so zero padding is exact).
    pub fn from_range([lo, hi]: [f32; 2]) -> Self {
        let (lo, hi) = (lo.min(0.0), hi.max(0.0));
        let scale = ((hi - lo) / 255.0).max(1e-8);
        let zero_point = (-lo / scale).round().clamp(0.0, 255.0) as u8;
        Self { scale, zero_point }
    }
}

/// Symmetric i8 quantisation of a convolution's weights: `(codes, scale per channel)`; per
/// tensor gives one scale repeated for every channel.
///
/// The scale maps the largest [`pair_reach`] of a channel (or of the tensor) to 127 rather
/// than its largest weight, so that the codes of input channels `2k` and `2k + 1` at one kernel
/// position add to at most 128 on each side of zero: then x86 hosts without VNNI multiply u8
/// activations by them with `vpmaddubsw` exactly (255 · 128 ≤ 32 767: no 16-bit saturation),
/// twice the products per instruction of the 16-bit path (the board runtime's tract patch,
/// docs/export.md). Where one weight dominates every pair this is the plain `absmax / 127`; at
/// worst (two equal weights) it costs one bit.
pub fn quantize_weights(conv: &FoldedConv, granularity: WeightGranularity) -> (Vec<i8>, Vec<f32>) {
    let cout = conv.shape[0];
    let khw = conv.shape[2] * conv.shape[3];
    let reach = |o: usize| pair_reach(conv.channel(o), khw);
    let scales: Vec<f32> = match granularity {
        WeightGranularity::PerTensor => {
            let r = (0..cout).map(reach).fold(0.0f32, f32::max);
            vec![(r / 127.0).max(1e-12); cout]
        }
        WeightGranularity::PerChannel => (0..cout).map(|o| (reach(o) / 127.0).max(1e-12)).collect(),
    };
    let mut codes = Vec::with_capacity(conv.weight.len());
    for (o, &s) in scales.iter().enumerate() {
        codes.extend(
            conv.channel(o)
                .iter()
                .map(|w| (w / s).round().clamp(-127.0, 127.0) as i8),
        );
    }
    (codes, scales)
}

/// The largest sum of the positive, or of the negative (as a magnitude), weights of a pair of
/// input channels `2k`, `2k + 1` at one of the `khw` kernel positions, in one output channel's
/// `[C, KH·KW]` weights (an odd last channel pairs with zero).
pub fn pair_reach(channel: &[f32], khw: usize) -> f32 {
    let c = channel.len() / khw.max(1);
    let mut reach = 0.0f32;
    for ic in (0..c).step_by(2) {
        for k in 0..khw {
            let a = channel[ic * khw + k];
            let b = if ic + 1 < c {
                channel[(ic + 1) * khw + k]
            } else {
                0.0
            };
            let positive = a.max(0.0) + b.max(0.0);
            let negative = -(a.min(0.0) + b.min(0.0));
            reach = reach.max(positive).max(negative);
        }
    }
    reach
}

/// Shared state of the two int8 lowerings: parameters per point and the constants emitted
/// for them (each scale/zero-point pair written once).
struct Plan<'a> {
    calibration: &'a Calibration,
    weights: WeightGranularity,
    consts: HashMap<String, (String, String)>,
}

impl Plan<'_> {
    fn params(&self, point: &str) -> ActivationParams {
        let range = self
            .calibration
            .ranges
            .get(point)
            .copied()
            .unwrap_or_else(|| {
                panic!("calibration has no range for `{point}`; it must come from the same network")
            });
        ActivationParams::from_range(range)
    }

    fn consts(&mut self, g: &mut GraphBuilder, point: &str) -> (String, String) {
        if let Some(c) = self.consts.get(point) {
            return c.clone();
        }
        let p = self.params(point);
        let c = (
            g.constant_f32(&format!("{point}.scale"), &[], &[p.scale]),
            g.constant_u8(&format!("{point}.zero_point"), &[], &[p.zero_point]),
        );
        self.consts.insert(point.to_string(), c.clone());
        c
    }

    /// Weight codes + their scale and zero-point constants (scalars per tensor, 1-D per
    /// channel).
    fn weight_consts(
        &self,
        g: &mut GraphBuilder,
        point: &str,
        conv: &FoldedConv,
    ) -> (String, String, String, Vec<f32>) {
        let (codes, scales) = quantize_weights(conv, self.weights);
        let w = g.constant_i8(&format!("{point}.weight_q"), &conv.shape, &codes);
        let cout = conv.shape[0];
        let (s, z) = match self.weights {
            WeightGranularity::PerTensor => (
                g.constant_f32(&format!("{point}.weight_scale"), &[], &scales[..1]),
                g.constant_i8(&format!("{point}.weight_zero_point"), &[], &[0]),
            ),
            WeightGranularity::PerChannel => (
                g.constant_f32(&format!("{point}.weight_scale"), &[cout], &scales),
                g.constant_i8(
                    &format!("{point}.weight_zero_point"),
                    &[cout],
                    &vec![0; cout],
                ),
            ),
        };
        (w, s, z, scales)
    }
}

/// The integer lowering: u8 activations between convolutions, QLinearConv.
struct QLinear<'a>(Plan<'a>);

impl QLinear<'_> {
    fn quant(&mut self, g: &mut GraphBuilder, v: &mut Value) -> String {
        if let Some(q) = &v.quant {
            return q.clone();
        }
        let f = v
            .float
            .clone()
            .expect("a value has a float or a quantised form");
        let (s, z) = self.0.consts(g, &v.point);
        let q = g.fresh(&format!("{}.u8", v.point));
        g.node("QuantizeLinear", &[&f, &s, &z], &q, vec![]);
        v.quant = Some(q.clone());
        q
    }
}

impl Lowering for QLinear<'_> {
    fn conv(
        &mut self,
        g: &mut GraphBuilder,
        point: &str,
        conv: &FoldedConv,
        input: &mut Value,
        _relu: bool,
    ) -> Value {
        // ReLU needs no node: the output range of a ReLU point is [0, hi], so its zero point
        // is 0 and u8 saturation clamps negatives exactly as ReLU does.
        let x = self.quant(g, input);
        let (xs, xz) = self.0.consts(g, &input.point);
        let (ys, yz) = self.0.consts(g, point);
        let sx = self.0.params(&input.point).scale;
        let (w, ws, wz, scales) = self.0.weight_consts(g, point, conv);
        let bias: Vec<i32> = conv
            .bias
            .iter()
            .zip(&scales)
            .map(|(b, sw)| (f64::from(*b) / (f64::from(sx) * f64::from(*sw))).round() as i32)
            .collect();
        let b = g.constant_i32(&format!("{point}.bias_q"), &[conv.shape[0]], &bias);
        let y = g.fresh(&format!("{point}.u8"));
        g.node(
            "QLinearConv",
            &[&x, &xs, &xz, &w, &ws, &wz, &ys, &yz, &b],
            &y,
            GraphBuilder::conv_attributes(conv),
        );
        Value {
            point: point.to_string(),
            float: None,
            quant: Some(y),
        }
    }

    fn float(&mut self, g: &mut GraphBuilder, v: &mut Value) -> String {
        if let Some(f) = &v.float {
            return f.clone();
        }
        let q = v
            .quant
            .clone()
            .expect("a value has a float or a quantised form");
        let (s, z) = self.0.consts(g, &v.point);
        let f = g.fresh(&format!("{}.f32", v.point));
        g.node("DequantizeLinear", &[&q, &s, &z], &f, vec![]);
        v.float = Some(f.clone());
        f
    }
}

/// The fake-quantised lowering: float Conv between Q/DQ pairs (standard QDQ).
struct Qdq<'a>(Plan<'a>);

impl Qdq<'_> {
    fn fake(&mut self, g: &mut GraphBuilder, point: &str, f: &str) -> String {
        let (s, z) = self.0.consts(g, point);
        let q = g.fresh(&format!("{point}.u8"));
        g.node("QuantizeLinear", &[f, &s, &z], &q, vec![]);
        let dq = g.fresh(&format!("{point}.dq"));
        g.node("DequantizeLinear", &[&q, &s, &z], &dq, vec![]);
        dq
    }
}

impl Lowering for Qdq<'_> {
    fn conv(
        &mut self,
        g: &mut GraphBuilder,
        point: &str,
        conv: &FoldedConv,
        input: &mut Value,
        relu: bool,
    ) -> Value {
        let x = match &input.quant {
            Some(q) => q.clone(),
            None => {
                let f = input.float.clone().expect("QDQ keeps a float form");
                let dq = self.fake(g, &input.point, &f);
                input.quant = Some(dq.clone());
                dq
            }
        };
        let (wq, ws, wz, _) = self.0.weight_consts(g, point, conv);
        let w = g.fresh(&format!("{point}.weight"));
        let attrs = match self.0.weights {
            WeightGranularity::PerTensor => vec![],
            WeightGranularity::PerChannel => vec![AttributeProto {
                name: "axis".into(),
                r#type: AttributeType::Int as i32,
                i: 0,
                ..Default::default()
            }],
        };
        g.node("DequantizeLinear", &[&wq, &ws, &wz], &w, attrs);
        let b = g.constant_f32(&format!("{point}.bias"), &[conv.shape[0]], &conv.bias);
        let mut y = g.fresh(&format!("{point}.conv"));
        g.node(
            "Conv",
            &[&x, &w, &b],
            &y,
            GraphBuilder::conv_attributes(conv),
        );
        if relu {
            let r = g.fresh(&format!("{point}.relu"));
            g.node("Relu", &[&y], &r, vec![]);
            y = r;
        }
        let out = self.fake(g, point, &y);
        Value {
            point: point.to_string(),
            float: Some(out.clone()),
            quant: Some(out),
        }
    }

    fn float(&mut self, _g: &mut GraphBuilder, v: &mut Value) -> String {
        v.float.clone().expect("QDQ keeps a float form")
    }
}

fn check_covers(net: &FoldedResNet, calibration: &Calibration) -> Result<(), ExportError> {
    match net
        .points()
        .into_iter()
        .find(|p| !calibration.ranges.contains_key(p))
    {
        Some(missing) => Err(ExportError::Calibration(format!(
            "no range for `{missing}`: the calibration was taken on a different network; calibrate this encoder again"
        ))),
        None => Ok(()),
    }
}

/// One int8 graph: checks the calibration, lowers `net` with the lowering `make` builds
/// from the shared [`Plan`], and encodes it.
fn int8_model<'a, L: Lowering + 'a>(
    net: &FoldedResNet,
    calibration: &'a Calibration,
    weights: WeightGranularity,
    batch: Batch,
    size: usize,
    form: &str,
    make: impl FnOnce(Plan<'a>) -> L,
) -> Result<Vec<u8>, ExportError> {
    check_covers(net, calibration)?;
    let mut g = GraphBuilder::default();
    let mut lowering = make(Plan {
        calibration,
        weights,
        consts: HashMap::new(),
    });
    lower(&mut g, net, &mut lowering);
    let doc = format!(
        "edgeclr SimCLR encoder h = f(x), int8 {form} (u8 activations, i8 {weights:?} weights), calibrated {} on {} images",
        calibration.method, calibration.images
    );
    Ok(model(g, batch, size, net.output_dim(), &[], &doc).encode_to_vec())
}

/// The QLinearConv int8 graph (the form tract runs in int8) as ONNX bytes.
///
/// # Errors
/// [`ExportError::Calibration`] when `calibration` lacks a point of `net`.
pub fn qlinear(
    net: &FoldedResNet,
    calibration: &Calibration,
    weights: WeightGranularity,
    batch: Batch,
    size: usize,
) -> Result<Vec<u8>, ExportError> {
    int8_model(
        net,
        calibration,
        weights,
        batch,
        size,
        "QLinearConv",
        QLinear,
    )
}

/// The standard QDQ int8 graph (Q/DQ around float Conv) as ONNX bytes, with the same
/// quantisation parameters as [`qlinear`].
///
/// # Errors
/// [`ExportError::Calibration`] when `calibration` lacks a point of `net`.
pub fn qdq(
    net: &FoldedResNet,
    calibration: &Calibration,
    weights: WeightGranularity,
    batch: Batch,
    size: usize,
) -> Result<Vec<u8>, ExportError> {
    int8_model(net, calibration, weights, batch, size, "QDQ", Qdq)
}

/// Measures activation ranges of `net` at `size`×`size` on `images` (normalised CHW) by
/// running the fp32 graph with taps in tract.
///
/// # Errors
/// [`ExportError::Calibration`] for an empty image set or an image of the wrong size;
/// [`ExportError::Tract`] when tract fails to load or run the graph.
pub fn calibrate(
    net: &FoldedResNet,
    size: usize,
    images: &[Vec<f32>],
    method: CalibrationMethod,
) -> Result<Calibration, ExportError> {
    if images.is_empty() {
        return Err(ExportError::Calibration(
            "no calibration images; pass --calib-data with a folder of real images at the deployment resolution".into(),
        ));
    }
    let (bytes, taps) = super::onnx::fp32_with_taps(net, size);
    let mut runner = edgeclr_runtime::embed::TractModel::from_onnx(&bytes, size)
        .map_err(|e| ExportError::Tract(format!("calibration graph: {e}")))?;
    let mut ranges = RangeCollector::default();
    for (i, image) in images.iter().enumerate() {
        if image.len() != 3 * size * size {
            return Err(ExportError::Calibration(format!(
                "calibration image {i} has {} values, expected 3×{size}×{size} = {}",
                image.len(),
                3 * size * size
            )));
        }
        let outputs = runner
            .run(image)
            .map_err(|e| ExportError::Tract(format!("calibration image {i}: {e}")))?;
        ranges.observe("input", image);
        for (name, values) in taps.iter().zip(outputs.iter().skip(1)) {
            ranges.observe(name, values);
        }
        ranges.next_image();
    }
    Ok(ranges.finish(method))
}
