//! `edgeclr-device` configuration: a board profile (built in from `hardware/boards/*.toml`,
//! or `--config FILE` in the same shape), then CLI overrides; validated into the runtime
//! settings and logged resolved. Unknown keys are errors.

pub mod choice;
pub mod finetune;
pub mod overrides;

use edgeclr_runtime::{Backend, OrtSettings};
use serde::{Deserialize, Serialize};

use self::finetune::FinetuneSection;
use crate::display::DisplaySpec;
use crate::sink::{PayloadFormat, SinkSpec};
use crate::source::SourceSpec;

/// `[board]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardSection {
    /// Profile name.
    pub name: String,
    /// What the profile describes.
    pub description: String,
    /// Whether a wgpu adapter is expected (fine-tuning on the GPU).
    pub gpu_expected: bool,
    /// This board's id in a fleet (`{board}` in MQTT topics); the host name when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

impl BoardSection {
    /// `id`, else the host name, else the profile name.
    pub fn id(&self) -> String {
        self.id.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| self.name.clone())
        })
    }
}

/// `[source]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSection {
    /// `v4l:/dev/videoN`, `mjpeg:FILE`, `folder:DIR` or `synthetic`.
    pub spec: SourceSpec,
    /// Requested width.
    pub width: u32,
    /// Requested height.
    pub height: u32,
    /// Requested or replay frame rate.
    pub fps: f64,
}

/// Which exported file to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ArtifactChoice {
    /// fp32 (ONNX, else NNEF).
    Fp32,
    /// int8 QLinearConv ONNX.
    Int8,
}

impl ArtifactChoice {
    /// `fp32` or `int8`, as in profiles and `STATE/artifact`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Fp32 => "fp32",
            Self::Int8 => "int8",
        }
    }

    /// The exported ONNX file of this precision.
    pub fn kind(self) -> edgeclr_artifact::ArtifactKind {
        match self {
            Self::Fp32 => edgeclr_artifact::ArtifactKind::OnnxFp32,
            Self::Int8 => edgeclr_artifact::ArtifactKind::OnnxInt8Qlinear,
        }
    }
}

/// `[runtime]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeSection {
    /// Frames held between capture and embedding (drop-oldest).
    pub queue_capacity: usize,
    /// Embedding threads (one tract state each).
    pub embed_workers: usize,
    /// Peak RSS that triggers a warning.
    pub memory_budget_mib: u64,
    /// fp32 or int8.
    pub artifact: ArtifactChoice,
    /// The engine: `tract` (built in) or `onnxruntime` (the board's own library).
    #[serde(default)]
    pub backend: Backend,
    /// Where onnxruntime's library is and which execution providers it tries.
    #[serde(default)]
    pub onnxruntime: OrtSettings,
}

impl RuntimeSection {
    /// The configured engine × precision.
    pub fn choice(&self) -> choice::EmbedChoice {
        choice::EmbedChoice {
            backend: self.backend,
            artifact: self.artifact,
        }
    }
}

/// `[sink]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkSection {
    /// Where embeddings go.
    pub outputs: Vec<SinkSpec>,
    /// Embeddings each sink may lag behind before dropping.
    pub capacity: usize,
    /// Payload of message sinks (MQTT): `binary` (the socket layout) or `json`.
    #[serde(default)]
    pub format: PayloadFormat,
    /// Seconds between the board-status messages (MQTT's retained `TOPIC/status`).
    #[serde(default = "default_status_every_s")]
    pub status_every_s: f64,
    /// Seconds the sinks may take at exit to deliver what is queued (then up to 4 s more for a
    /// sink on a dead connection to give up; within the unit's TimeoutStopSec=15).
    #[serde(default = "default_drain_s")]
    pub drain_s: f64,
}

fn default_status_every_s() -> f64 {
    5.0
}

fn default_drain_s() -> f64 {
    5.0
}

/// `[display]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisplaySection {
    /// `none`, `png:FILE`, `fb:/dev/fbN`, `ssd1306:/dev/i2c-N`.
    pub target: DisplaySpec,
    /// Refresh period.
    pub refresh_ms: u64,
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// Board identity.
    pub board: BoardSection,
    /// Camera.
    pub source: SourceSection,
    /// Threads and budgets.
    pub runtime: RuntimeSection,
    /// Outputs.
    pub sink: SinkSection,
    /// Status screen.
    pub display: DisplaySection,
    /// On-device fine-tuning (off unless `enabled` or `--finetune`).
    #[serde(default)]
    pub finetune: FinetuneSection,
}

impl DeviceConfig {
    /// The built-in profile `name`.
    ///
    /// # Errors
    /// Names the known boards when `name` is not one.
    pub fn board(name: &str) -> Result<Self, String> {
        let (_, text) = edgeclr_artifact::boards::board(name)?;
        Self::parse(text, &format!("built-in board {name}"))
    }

    /// Parses a TOML profile; `origin` names it in errors.
    ///
    /// # Errors
    /// The TOML error (unknown keys included) with the origin.
    pub fn parse(text: &str, origin: &str) -> Result<Self, String> {
        toml::from_str(text)
            .map_err(|e| crate::sink::mqtt_url::redact_urls(&format!("{origin}: {e}")))
    }

    /// Checks ranges.
    ///
    /// # Errors
    /// The offending key and a valid value.
    pub fn validate(&self) -> Result<(), String> {
        if self.runtime.queue_capacity == 0 {
            return Err("runtime.queue_capacity = 0; use ≥ 1 (2 keeps latency low)".into());
        }
        if self.runtime.embed_workers == 0 {
            return Err("runtime.embed_workers = 0; use ≥ 1".into());
        }
        if self.sink.capacity == 0 {
            return Err("sink.capacity = 0; use ≥ 1".into());
        }
        for (key, v) in [
            ("sink.status_every_s", self.sink.status_every_s),
            ("sink.drain_s", self.sink.drain_s),
        ] {
            if !(v.is_finite() && v > 0.0 && v <= 86_400.0) {
                return Err(format!("{key} = {v}; use seconds in (0, 86400]"));
            }
        }
        if let Some(id) = &self.board.id
            && (id.is_empty() || id.contains(['/', '+', '#', '\0']))
        {
            return Err(format!(
                "board.id = {id:?}: an id is one MQTT topic level, non-empty, without / + #"
            ));
        }
        if self.source.fps.is_nan() || self.source.fps <= 0.0 {
            return Err(format!(
                "source.fps = {}; use a positive rate",
                self.source.fps
            ));
        }
        self.finetune.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_board_parses_and_validates() {
        for (name, _, _) in edgeclr_artifact::boards::BOARDS {
            let c = DeviceConfig::board(name).expect(name);
            assert_eq!(&c.board.name, name);
            c.validate().expect(name);
        }
        let err = DeviceConfig::board("pi-zero").expect_err("unknown");
        assert!(err.contains("rpi5"), "{err}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let text = edgeclr_artifact::boards::BOARDS[0]
            .2
            .replace("refresh_ms = 500", "refresh_ms = 500\nbrightness = 3");
        let err = DeviceConfig::parse(&text, "test.toml").expect_err("unknown key");
        assert!(
            err.contains("test.toml") && err.contains("brightness"),
            "{err}"
        );
    }

    #[test]
    fn statistics_only_needs_the_output_end_and_adapting_statistics() {
        let with = |sets: &[&str]| {
            let sets: Vec<overrides::Override> = sets
                .iter()
                .map(|s| format!("finetune.trainer.{s}").parse().expect("override"))
                .collect();
            let text = overrides::apply_all(edgeclr_artifact::boards::BOARDS[0].2, "t", &sets)
                .expect("applies");
            DeviceConfig::parse(&text, "t")
                .expect("parses")
                .finetune
                .validate()
        };
        assert!(with(&["trainable_blocks=0"]).is_ok());
        assert!(with(&["trainable_blocks=1", "trainable_end=input"]).is_ok());
        for bad in [
            ["trainable_blocks=0", "trainable_end=input"],
            ["trainable_blocks=0", "adapt_bn_stats=false"],
        ] {
            let err = with(&bad).expect_err("refused");
            assert!(err.contains("trainer.trainable_blocks"), "{err}");
        }
    }

    #[test]
    fn a_step_budget_of_zero_is_refused_and_one_step_accepted() {
        let with = |steps: &str| {
            let set: overrides::Override = format!("finetune.max_steps={steps}")
                .parse()
                .expect("override");
            let text = overrides::apply_all(edgeclr_artifact::boards::BOARDS[0].2, "t", &[set])
                .expect("applies");
            DeviceConfig::parse(&text, "t")
                .expect("parses")
                .finetune
                .validate()
        };
        assert!(with("1").is_ok());
        let err = with("0").expect_err("refused");
        assert!(err.contains("max_steps"), "{err}");
    }
}
