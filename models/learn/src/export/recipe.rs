//! The training types an export's manifest carries as JSON (`edgeclr-artifact` links no
//! learning types), read back typed for the fine-tuner and written from the trainer's.

use std::path::PathBuf;

use edgeclr_artifact::ArtifactError;
use edgeclr_artifact::manifest::{MANIFEST, Manifest};

use super::ExportError;
use crate::SimclrConfig;
use crate::encoder::EncoderConfig;

fn malformed(field: &str, e: &serde_json::Error) -> ExportError {
    ExportError::Artifact(ArtifactError::Manifest {
        path: PathBuf::from(MANIFEST),
        reason: format!("`{field}` is not this edgeclr's {field} ({e}); export the model again"),
    })
}

/// The encoder architecture a manifest records.
///
/// # Errors
/// [`ExportError::Artifact`] when the field does not parse.
pub fn encoder_of(manifest: &Manifest) -> Result<EncoderConfig, ExportError> {
    serde_json::from_value(manifest.encoder.clone()).map_err(|e| malformed("encoder", &e))
}

/// The SimCLR recipe a manifest records, if any (folders with burn weights carry one).
///
/// # Errors
/// [`ExportError::Artifact`] when the field does not parse.
pub fn recipe_of(manifest: &Manifest) -> Result<Option<SimclrConfig>, ExportError> {
    manifest
        .recipe
        .clone()
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| malformed("recipe", &e))
}

/// `value` as the JSON a manifest field holds.
pub fn to_json<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).expect("training configs serialise to JSON")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoder::Architecture;

    #[test]
    fn configs_round_trip_through_the_manifest_json() {
        let recipe = SimclrConfig::default();
        let back: SimclrConfig = serde_json::from_value(to_json(&recipe)).expect("parses");
        assert_eq!(back, recipe);
        let enc = EncoderConfig::new(Architecture::Resnet8);
        let back: EncoderConfig = serde_json::from_value(to_json(&enc)).expect("parses");
        assert_eq!(back, enc);
    }
}
