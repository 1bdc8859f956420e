//! `edgeclr-device info`: what this board offers — tract's CPU kernels and, in builds with
//! fine-tuning, the training backends.

use anyhow::Result;
use edgeclr_runtime::isa;

/// Prints the board's inference kernels and training backends.
///
/// # Errors
/// When the training backend cannot be probed.
pub fn run() -> Result<()> {
    let report = isa::apply();
    println!(
        "tract CPU kernels: {} (Intel AMX {})",
        report.tract_isa,
        if report.amx_in_use {
            "in use"
        } else {
            "kept out"
        }
    );
    println!(
        "features: camera={} finetune={} gpu={} ssd1306={}",
        cfg!(feature = "camera"),
        cfg!(feature = "finetune"),
        cfg!(feature = "gpu"),
        cfg!(feature = "ssd1306")
    );
    training_backends()
}

#[cfg(feature = "finetune")]
fn training_backends() -> Result<()> {
    use edgeclr_learn::device::{DeviceChoice, adapters, select_device};
    for a in adapters() {
        println!(
            "wgpu adapter: {} ({}){}",
            a.name,
            a.kind,
            if a.software { " [software]" } else { "" }
        );
    }
    let d = select_device(DeviceChoice::Auto)?;
    println!("auto backend: {}", d.description);
    Ok(())
}

#[cfg(not(feature = "finetune"))]
fn training_backends() -> Result<()> {
    println!("training backends: none (built without `finetune`)");
    Ok(())
}
