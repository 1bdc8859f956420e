//! What runs the embeddings on this board: an engine and a precision. `selftest` measures
//! every pair that passes its parity check and writes the fastest to `STATE/artifact`
//! (`tract:int8`, `onnxruntime:fp32`, …); `run` reads it back unless `--artifact`/`--backend`
//! say otherwise. A bare `fp32`/`int8` (written before there were two engines) means tract.

use std::fmt;
use std::str::FromStr;

use edgeclr_runtime::Backend;

use super::ArtifactChoice;

/// An engine × precision pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbedChoice {
    /// The engine.
    pub backend: Backend,
    /// The precision (which exported file).
    pub artifact: ArtifactChoice,
}

impl EmbedChoice {
    /// Every pair this build can run, tract first, fp32 before int8.
    pub fn all() -> Vec<Self> {
        Backend::ALL
            .into_iter()
            .filter(|b| b.compiled())
            .flat_map(|backend| {
                [ArtifactChoice::Fp32, ArtifactChoice::Int8]
                    .map(|artifact| Self { backend, artifact })
            })
            .collect()
    }
}

impl fmt::Display for EmbedChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.backend, self.artifact.name())
    }
}

impl FromStr for EmbedChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (backend, precision) = match s.split_once(':') {
            Some((b, p)) => (b.parse::<Backend>()?, p),
            None => (Backend::Tract, s),
        };
        let artifact = match precision {
            "fp32" => ArtifactChoice::Fp32,
            "int8" => ArtifactChoice::Int8,
            other => {
                return Err(format!(
                    "unknown precision `{other}` in `{s}`; expected BACKEND:fp32 or BACKEND:int8"
                ));
            }
        };
        Ok(Self { backend, artifact })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_reads_the_single_engine_form() {
        for c in EmbedChoice::all() {
            assert_eq!(c.to_string().parse::<EmbedChoice>(), Ok(c));
        }
        let legacy: EmbedChoice = "int8".parse().expect("legacy");
        assert_eq!(legacy.backend, Backend::Tract);
        assert_eq!(legacy.artifact, ArtifactChoice::Int8);
        let ort: EmbedChoice = "onnxruntime:fp32".parse().expect("ort");
        assert_eq!(ort.backend, Backend::Onnxruntime);
        for bad in ["fp16", "tvm:fp32", "tract:", ":int8"] {
            let err = bad.parse::<EmbedChoice>().expect_err(bad);
            assert!(err.contains("unknown"), "{bad}: {err}");
        }
    }
}
