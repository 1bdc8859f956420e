//! The one place a burn backend is chosen.
//!
//! - `cpu`: burn-flex, the pure-Rust CPU backend (about 35× faster than burn-ndarray for
//!   our training step; see `docs/cpu-backend.md`).
//! - `wgpu`: burn-wgpu through WGSL on whatever adapter wgpu finds (Vulkan, Metal, DX12),
//!   including a software one such as Mesa's lavapipe.
//! - `cuda`: burn-cuda on NVIDIA GPU 0 (CubeCL; the driver and NVRTC are loaded at run
//!   time, so the build needs no CUDA toolkit). The kernel driver is checked for first: a
//!   machine without it gets [`ModelError::DeviceUnavailable`]; a driver without the CUDA
//!   user libraries (libcuda, NVRTC) still fails inside burn.
//! - `auto`: CUDA where an NVIDIA driver is loaded, else a hardware GPU adapter, else flex. burn's own default would pick
//!   a software Vulkan adapter over flex (about 10× slower), and burn's wgpu runtime panics
//!   when no adapter exists, so the adapters are probed first.

#[cfg(feature = "wgpu")]
use std::sync::OnceLock;

use burn::tensor::Device;
#[cfg(feature = "wgpu")]
use burn::tensor::wgpu::wgpu;
use serde::{Deserialize, Serialize};

use crate::error::ModelError;

/// The user's choice of backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// A hardware GPU if present, else the CPU.
    #[default]
    Auto,
    /// burn-flex on the CPU.
    Cpu,
    /// burn-wgpu on the default adapter, software adapters included.
    Wgpu,
    /// burn-cuda on NVIDIA GPU 0.
    Cuda,
}

impl std::str::FromStr for DeviceChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "wgpu" => Ok(Self::Wgpu),
            "cuda" => Ok(Self::Cuda),
            other => Err(format!(
                "unknown device `{other}`; use auto, cpu, cuda or wgpu"
            )),
        }
    }
}

/// A device ready for tensors, with a description for logs and results files.
#[derive(Debug, Clone)]
pub struct SelectedDevice {
    /// The inference device (call `.autodiff()` on it to train).
    pub device: Device,
    /// `"cpu"` or `"wgpu"`.
    pub backend: &'static str,
    /// Human description, e.g. `wgpu: NVIDIA GeForce RTX 4090 (DiscreteGpu, Vulkan)`.
    pub description: String,
}

/// One adapter wgpu can see.
#[derive(Debug, Clone)]
pub struct AdapterSummary {
    /// Adapter name.
    pub name: String,
    /// Whether it is a CPU (software) implementation.
    pub software: bool,
    /// `DiscreteGpu (Vulkan)` and the like.
    pub kind: String,
}

/// Lists the adapters wgpu can see, without initialising burn's runtime.
#[cfg(feature = "wgpu")]
pub fn adapters() -> Vec<AdapterSummary> {
    let instance = wgpu::Instance::default();
    pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()))
        .into_iter()
        .map(|a| {
            let info = a.get_info();
            AdapterSummary {
                software: info.device_type == wgpu::DeviceType::Cpu,
                kind: format!("{:?}, {:?}", info.device_type, info.backend),
                name: info.name,
            }
        })
        .collect()
}

fn flex() -> SelectedDevice {
    SelectedDevice {
        device: Device::flex(),
        backend: "cpu",
        description: "cpu: burn-flex".into(),
    }
}

/// Initialises burn's wgpu runtime once per process.
#[cfg(feature = "wgpu")]
fn wgpu_device() -> Result<SelectedDevice, ModelError> {
    static WGPU: OnceLock<Result<(Device, String), String>> = OnceLock::new();
    let init = WGPU.get_or_init(|| {
        Device::wgpu_options()
            .init_with_setup()
            .map(|(device, setup)| {
                let info = setup.adapter.get_info();
                (
                    device,
                    format!(
                        "wgpu: {} ({:?}, {:?})",
                        info.name, info.device_type, info.backend
                    ),
                )
            })
            .map_err(|e| e.to_string())
    });
    match init {
        Ok((device, description)) => Ok(SelectedDevice {
            device: device.clone(),
            backend: "wgpu",
            description: description.clone(),
        }),
        Err(e) => Err(ModelError::DeviceUnavailable {
            device: "wgpu",
            why: format!("no usable wgpu adapter ({e})"),
            fix: "install a Vulkan driver (e.g. mesa-vulkan-drivers) or use --device cpu",
        }),
    }
}

/// No GPU backend in this build: no adapters.
#[cfg(not(feature = "wgpu"))]
pub fn adapters() -> Vec<AdapterSummary> {
    Vec::new()
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_device() -> Result<SelectedDevice, ModelError> {
    Err(ModelError::DeviceUnavailable {
        device: "wgpu",
        why: "this build has no GPU backend".into(),
        fix: "rebuild with the cargo feature `wgpu` of edgeclr-learn (`gpu` of edgeclr-device), or use --device cpu",
    })
}

/// The NVIDIA GPUs the loaded kernel driver reports (`/proc/driver/nvidia/gpus/*`), by
/// model name; empty without the driver.
pub fn nvidia_gpus() -> Vec<String> {
    let Ok(dirs) = std::fs::read_dir("/proc/driver/nvidia/gpus") else {
        return Vec::new();
    };
    let gpus: Vec<String> = dirs
        .flatten()
        .map(|d| {
            std::fs::read_to_string(d.path().join("information"))
                .ok()
                .and_then(|t| {
                    t.lines()
                        .find_map(|l| l.strip_prefix("Model:").map(|m| m.trim().to_string()))
                })
                .unwrap_or_else(|| "NVIDIA GPU".into())
        })
        .collect();
    gpus
}

#[cfg(feature = "cuda")]
fn cuda_device() -> Result<SelectedDevice, ModelError> {
    let gpus = nvidia_gpus();
    if gpus.is_empty() {
        return Err(ModelError::DeviceUnavailable {
            device: "cuda",
            why: "no NVIDIA driver is loaded (no /proc/driver/nvidia/gpus)".into(),
            fix: "install the NVIDIA driver and CUDA runtime (libcuda, libnvrtc), or use --device wgpu or cpu",
        });
    }
    Ok(SelectedDevice {
        device: Device::cuda(0),
        backend: "cuda",
        description: format!("cuda: device 0 (the driver lists {})", gpus.join(", ")),
    })
}

#[cfg(not(feature = "cuda"))]
fn cuda_device() -> Result<SelectedDevice, ModelError> {
    Err(ModelError::DeviceUnavailable {
        device: "cuda",
        why: "this build has no CUDA backend".into(),
        fix: "rebuild with `--features edgeclr-learn/cuda` (its build downloads LLVM; docs/backends.md), or use --device wgpu or cpu",
    })
}

/// Picks the device for `choice`.
///
/// # Errors
/// [`ModelError::DeviceUnavailable`] when `wgpu` or `cuda` is asked for and this machine or
/// build does not have it.
pub fn select_device(choice: DeviceChoice) -> Result<SelectedDevice, ModelError> {
    match choice {
        DeviceChoice::Cpu => Ok(flex()),
        DeviceChoice::Wgpu => wgpu_device(),
        DeviceChoice::Cuda => cuda_device(),
        DeviceChoice::Auto if cfg!(feature = "cuda") && !nvidia_gpus().is_empty() => cuda_device(),
        DeviceChoice::Auto => {
            if adapters().iter().any(|a| !a.software) {
                wgpu_device().or_else(|e| {
                    tracing::warn!(
                        "GPU adapter found but wgpu failed to start ({e}); using the CPU"
                    );
                    Ok(flex())
                })
            } else {
                Ok(flex())
            }
        }
    }
}
