//! tract's NNEF form of the fp32 encoder: a tar of the graph text and raw weights that the
//! board loads with tract-nnef alone (no protobuf parse), written from the decluttered typed
//! model as tract requires. The batch stays symbolic (`N`); loaders set it to 1.

use prost::Message;
use tract_onnx::pb;
use tract_onnx::prelude::*;

use super::ExportError;

fn tract_err(what: &str) -> impl FnOnce(TractError) -> ExportError + '_ {
    move |e| ExportError::Tract(format!("{what}: {e:#}"))
}

/// Converts fp32 ONNX bytes into an (uncompressed) NNEF tar.
///
/// # Errors
/// [`ExportError::Tract`] when the graph cannot be decoded, typed or serialised (int8 ONNX
/// graphs cannot: tract 0.23.9 has no NNEF serialiser for `QuantizeLinearU8`).
pub fn from_onnx(onnx: &[u8]) -> Result<Vec<u8>, ExportError> {
    crate::embed::isa::apply();
    let proto = pb::ModelProto::decode(onnx)
        .map_err(|e| ExportError::Tract(format!("decoding the ONNX graph: {e}")))?;
    let model = tract_onnx::onnx()
        .with_ignore_output_shapes(true)
        .model_for_proto_model(&proto)
        .map_err(tract_err("loading the ONNX graph"))?
        .into_typed()
        .map_err(tract_err("typing the ONNX graph"))?
        .into_decluttered()
        .map_err(tract_err("decluttering"))?;
    tract_nnef::nnef()
        .with_onnx()
        .write_to_tar(&model, Vec::new())
        .map_err(tract_err("writing NNEF"))
}
