//! ONNX graphs of a [`FoldedResNet`], built in memory with the prost types tract-onnx exposes
//! (`tract_onnx::pb`) and encoded with `prost::Message`: the fp32 graph, the same graph with
//! calibration taps, and — through the `Lowering` trait — the int8 forms of [`super::quantize`].
//!
//! Opset 13, IR version 8 (the newest the bundled `onnx.proto` knows). Input `image`
//! `[N, 3, P, P]` (normalised RGB, NCHW), output `h` `[N, D]`.

use std::collections::HashMap;

use prost::Message;
use tract_onnx::pb::{
    self, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto, attribute_proto::AttributeType,
    tensor_proto::DataType, tensor_shape_proto::Dimension, tensor_shape_proto::dimension,
    type_proto,
};

use super::{FoldedConv, FoldedResNet};

/// The ONNX operator set the graphs use.
pub const OPSET: i64 = 13;
/// The ONNX IR version written.
pub const IR_VERSION: i64 = 8;
/// Name of the graph input.
pub const INPUT: &str = "image";
/// Name of the graph output.
pub const OUTPUT: &str = "h";
/// Name of the symbolic batch dimension.
pub const BATCH_SYMBOL: &str = "N";

/// The batch dimension written into the graph's input and output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batch {
    /// A fixed batch of one: tract plans the fastest (lazy im2col) path at load time.
    One,
    /// Symbolic `N`, for runtimes that batch; set it concretely before optimising in tract.
    Symbolic,
}

/// Accumulates nodes and initialisers; names every tensor uniquely.
#[derive(Debug, Default)]
pub(crate) struct GraphBuilder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    counter: usize,
}

fn attr_ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints: values.to_vec(),
        ..Default::default()
    }
}

pub(crate) fn attr_int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i: value,
        ..Default::default()
    }
}

fn dims_i64(dims: &[usize]) -> Vec<i64> {
    dims.iter().map(|&d| d as i64).collect()
}

impl GraphBuilder {
    /// A new unique tensor name starting with `stem`.
    pub(crate) fn fresh(&mut self, stem: &str) -> String {
        self.counter += 1;
        format!("{stem}#{}", self.counter)
    }

    /// Adds a constant; returns its (unique) name.
    pub(crate) fn constant(
        &mut self,
        stem: &str,
        data_type: DataType,
        dims: &[usize],
        raw_data: Vec<u8>,
    ) -> String {
        let name = self.fresh(stem);
        self.initializers.push(TensorProto {
            name: name.clone(),
            dims: dims_i64(dims),
            data_type: data_type as i32,
            raw_data,
            ..Default::default()
        });
        name
    }

    pub(crate) fn constant_f32(&mut self, stem: &str, dims: &[usize], values: &[f32]) -> String {
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.constant(stem, DataType::Float, dims, raw)
    }

    pub(crate) fn constant_i8(&mut self, stem: &str, dims: &[usize], values: &[i8]) -> String {
        let raw = values.iter().map(|&v| v as u8).collect();
        self.constant(stem, DataType::Int8, dims, raw)
    }

    pub(crate) fn constant_u8(&mut self, stem: &str, dims: &[usize], values: &[u8]) -> String {
        self.constant(stem, DataType::Uint8, dims, values.to_vec())
    }

    pub(crate) fn constant_i32(&mut self, stem: &str, dims: &[usize], values: &[i32]) -> String {
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.constant(stem, DataType::Int32, dims, raw)
    }

    /// Adds a node writing `output`.
    pub(crate) fn node(
        &mut self,
        op_type: &str,
        inputs: &[&str],
        output: &str,
        attribute: Vec<AttributeProto>,
    ) {
        self.nodes.push(NodeProto {
            name: format!("{op_type}:{output}"),
            op_type: op_type.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.to_string()],
            attribute,
            ..Default::default()
        });
    }

    /// Conv attributes of `conv`.
    pub(crate) fn conv_attributes(conv: &FoldedConv) -> Vec<AttributeProto> {
        vec![
            attr_ints("kernel_shape", &dims_i64(&conv.shape[2..])),
            attr_ints("strides", &dims_i64(&conv.stride)),
            attr_ints("pads", &dims_i64(&conv.padding)),
            attr_ints("dilations", &[1, 1]),
            attr_int("group", 1),
        ]
    }

    fn finish(self, inputs: Vec<ValueInfoProto>, outputs: Vec<ValueInfoProto>) -> GraphProto {
        GraphProto {
            name: "edgeclr_encoder".into(),
            node: self.nodes,
            initializer: self.initializers,
            input: inputs,
            output: outputs,
            ..Default::default()
        }
    }
}

/// One tensor of the network, in whichever forms the lowering has produced so far.
#[derive(Debug, Clone)]
pub(crate) struct Value {
    /// The calibration point this tensor is (`input`, `stem`, `block0.conv1`, `block2.out`…).
    pub(crate) point: String,
    /// Name of its float form, once materialised.
    pub(crate) float: Option<String>,
    /// Name of its quantised form, once materialised (u8 for QLinear, the fake-quantised
    /// float for QDQ).
    pub(crate) quant: Option<String>,
}

impl Value {
    fn float(point: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            point: point.into(),
            float: Some(name.into()),
            quant: None,
        }
    }
}

/// How convolutions and tensor forms are written: float, fake-quantised or integer. The
/// network topology ([`lower`]) is shared, so every form computes the same function.
pub(crate) trait Lowering {
    /// Emits `conv` (followed by ReLU when `relu`) reading `input`; the result is the
    /// calibration point `point`.
    fn conv(
        &mut self,
        g: &mut GraphBuilder,
        point: &str,
        conv: &FoldedConv,
        input: &mut Value,
        relu: bool,
    ) -> Value;

    /// The float form of `value`, emitting a dequantisation if needed.
    fn float(&mut self, g: &mut GraphBuilder, value: &mut Value) -> String;
}

/// The plain fp32 lowering.
#[derive(Debug, Default)]
pub(crate) struct Float32;

impl Lowering for Float32 {
    fn conv(
        &mut self,
        g: &mut GraphBuilder,
        point: &str,
        conv: &FoldedConv,
        input: &mut Value,
        relu: bool,
    ) -> Value {
        let x = self.float(g, input);
        let w = g.constant_f32(&format!("{point}.weight"), &conv.shape, &conv.weight);
        let b = g.constant_f32(&format!("{point}.bias"), &[conv.shape[0]], &conv.bias);
        let attrs = GraphBuilder::conv_attributes(conv);
        if relu {
            let pre = g.fresh(&format!("{point}.pre"));
            g.node("Conv", &[&x, &w, &b], &pre, attrs);
            g.node("Relu", &[&pre], point, vec![]);
        } else {
            g.node("Conv", &[&x, &w, &b], point, attrs);
        }
        Value::float(point, point)
    }

    fn float(&mut self, _g: &mut GraphBuilder, value: &mut Value) -> String {
        value
            .float
            .clone()
            .expect("the fp32 lowering keeps every value in float")
    }
}

/// Writes the network with `lowering` into `g`. Tensor and calibration-point names follow
/// [`FoldedResNet::points`].
pub(crate) fn lower(g: &mut GraphBuilder, net: &FoldedResNet, lowering: &mut dyn Lowering) {
    let mut x = Value::float("input", INPUT);
    let mut y = lowering.conv(g, "stem", &net.stem, &mut x, true);
    if net.stem_pool {
        let f = lowering.float(g, &mut y);
        g.node(
            "MaxPool",
            &[&f],
            "stem.pool",
            vec![
                attr_ints("kernel_shape", &[3, 3]),
                attr_ints("strides", &[2, 2]),
                attr_ints("pads", &[1, 1, 1, 1]),
            ],
        );
        y = Value::float("stem.pool", "stem.pool");
    }
    for (i, block) in net.blocks.iter().enumerate() {
        let mut input = y;
        let n = block.convs.len();
        let mut t = lowering.conv(
            g,
            &format!("block{i}.conv0"),
            &block.convs[0],
            &mut input,
            n > 1,
        );
        for (j, conv) in block.convs.iter().enumerate().skip(1) {
            t = lowering.conv(g, &format!("block{i}.conv{j}"), conv, &mut t, j + 1 < n);
        }
        let identity = match &block.shortcut {
            Some(s) => {
                let mut sc = lowering.conv(g, &format!("block{i}.shortcut"), s, &mut input, false);
                lowering.float(g, &mut sc)
            }
            None => lowering.float(g, &mut input),
        };
        let main = lowering.float(g, &mut t);
        let sum = g.fresh(&format!("block{i}.sum"));
        g.node("Add", &[&main, &identity], &sum, vec![]);
        let out = format!("block{i}.out");
        g.node("Relu", &[&sum], &out, vec![]);
        y = Value::float(out.clone(), out);
    }
    let f = lowering.float(g, &mut y);
    let pooled = g.fresh("pooled");
    g.node("GlobalAveragePool", &[&f], &pooled, vec![]);
    g.node("Flatten", &[&pooled], OUTPUT, vec![attr_int("axis", 1)]);
}

fn tensor_info(name: &str, dims: &[Option<usize>]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Some(v) => dimension::Value::DimValue(*v as i64),
                None => dimension::Value::DimParam(BATCH_SYMBOL.into()),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: DataType::Float as i32,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Wraps a lowered graph into a model with input `[N|1, 3, size, size]` and output `h`.
/// `taps` become extra outputs (calibration).
pub(crate) fn model(
    g: GraphBuilder,
    batch: Batch,
    size: usize,
    dim: usize,
    taps: &[String],
    doc: &str,
) -> ModelProto {
    let n = match batch {
        Batch::One => Some(1),
        Batch::Symbolic => None,
    };
    let mut outputs = vec![tensor_info(OUTPUT, &[n, Some(dim)])];
    outputs.extend(taps.iter().map(|t| ValueInfoProto {
        name: t.clone(),
        ..Default::default()
    }));
    let graph = g.finish(
        vec![tensor_info(INPUT, &[n, Some(3), Some(size), Some(size)])],
        outputs,
    );
    ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        producer_name: "edgeclr".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: doc.into(),
        graph: Some(graph),
        ..Default::default()
    }
}

/// The fp32 encoder as ONNX bytes.
pub fn fp32(net: &FoldedResNet, batch: Batch, size: usize) -> Vec<u8> {
    let mut g = GraphBuilder::default();
    lower(&mut g, net, &mut Float32);
    model(
        g,
        batch,
        size,
        net.output_dim(),
        &[],
        "edgeclr SimCLR encoder h = f(x), fp32, BatchNorm folded",
    )
    .encode_to_vec()
}

/// The fp32 encoder at batch 1 with every calibration point except the input as an extra
/// output; returns the bytes and the tap names in output order (after `h`).
pub fn fp32_with_taps(net: &FoldedResNet, size: usize) -> (Vec<u8>, Vec<String>) {
    let mut g = GraphBuilder::default();
    lower(&mut g, net, &mut Float32);
    let mut points = net.points();
    points.retain(|p| p != "input");
    let model = model(
        g,
        Batch::One,
        size,
        net.output_dim(),
        &points,
        "calibration",
    );
    (model.encode_to_vec(), points)
}

/// Counts nodes per operator type of an encoded model (for tests and `export` summaries).
///
/// # Errors
/// The protobuf decode error when `bytes` is not an ONNX model.
pub fn op_histogram(bytes: &[u8]) -> Result<HashMap<String, usize>, prost::DecodeError> {
    let model = pb::ModelProto::decode(bytes)?;
    let mut ops = HashMap::new();
    for n in model.graph.iter().flat_map(|g| &g.node) {
        *ops.entry(n.op_type.clone()).or_insert(0) += 1;
    }
    Ok(ops)
}
