//! Which of tract's CPU kernels this process may use: Intel AMX stays out.
//!
//! tract-linalg 0.23.9's AMX int8 kernels (`avx512amx_mmm_i32_16x16`, and `…_8x8`) pack A
//! as `PackedAmxA` with K padded to a multiple of 64, but reuse `PackedI8K4` for B:
//! `ceil(K/4)·4·nr` bytes per panel, with no padding to 64. Their inner loop loads one B tile
//! per 64 K (`tileloaddt1 tmm2`, 16 rows of `4·nr` bytes), so when K is not a multiple of 64
//! the last B panel is read past its end — by up to 960 bytes for the 16×16 kernel. Our int8
//! exports hit that on every layer: the stem conv has K = 3·3·3 = 27, the 32-channel 3×3 convs
//! K = 288. The products with A's zero padding are discarded, so results are right, but the
//! load faults whenever the panel ends near an unmapped page: 1–3 SIGSEGV in 20 `edgeclr embed`
//! runs of an int8 export on a Sapphire Rapids Xeon, 0 in 25 with the AMX kernels removed
//! (issue 12). The AMX bf16 kernel is opt-in in tract (`TRACT_AMX_BF16`) and lossy; it goes too.
//!
//! [`apply`] removes both features from tract's instruction-set view through its own knob
//! (`TRACT_CPU_ISA`, set programmatically and merged with whatever the user's environment
//! asks for) before tract first probes the CPU. Every tract entry point in this crate calls
//! it. `EDGECLR_TRACT_AMX=on` lifts the guard — for the regression test that shows the
//! guard is what keeps the kernel out, and for trying a tract release that fixes the packing.
//! Remove the guard once such a release passes that test on an AMX machine.
//!
//! Only x86_64 has these kernels; on other architectures tract would reject the x86 feature
//! names, so nothing is edited there.

use std::sync::OnceLock;

use tract_linalg::isa::{self, Isa};

/// The variable that lifts the guard (`on`/`1`/`true`).
pub const ALLOW_AMX_VAR: &str = "EDGECLR_TRACT_AMX";

/// The edits appended to tract's `TRACT_CPU_ISA`.
#[cfg(target_arch = "x86_64")]
const REMOVE_AMX: &str = "-amx-int8,-amx-bf16";

/// What [`apply`] did, for reports and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsaReport {
    /// tract's instruction-set view after our edits, as tract names it (`x86_64,avx2,fma,…`).
    pub tract_isa: String,
    /// Whether tract may dispatch to an AMX kernel in this process.
    pub amx_in_use: bool,
    /// Whether [`ALLOW_AMX_VAR`] lifted the guard.
    pub guard_lifted: bool,
}

/// Applies the guard once per process and reports tract's resulting view of the CPU.
/// Call before building any tract plan; later calls return the first result.
pub fn apply() -> &'static IsaReport {
    static REPORT: OnceLock<IsaReport> = OnceLock::new();
    REPORT.get_or_init(|| {
        let guard_lifted = lifted(std::env::var(ALLOW_AMX_VAR).ok().as_deref());
        if !guard_lifted {
            install_edits();
        }
        let native = isa::native();
        let amx_in_use = native.has(Isa::X86_64AmxInt8) || native.has(Isa::X86_64AmxBf16);
        if amx_in_use {
            tracing::warn!(
                "tract may use its Intel AMX kernels ({ALLOW_AMX_VAR} is set); they over-read packed \
                 inputs and can crash (models/runtime/src/isa.rs)"
            );
        }
        IsaReport {
            tract_isa: format!("{native:?}"),
            amx_in_use,
            guard_lifted,
        }
    })
}

fn lifted(value: Option<&str>) -> bool {
    matches!(
        value.map(|v| v.trim().to_ascii_lowercase()).as_deref(),
        Some("1" | "on" | "true" | "yes")
    )
}

#[cfg(target_arch = "x86_64")]
fn install_edits() {
    let user = std::env::var("TRACT_CPU_ISA").ok();
    tract_linalg::knobs::TRACT_CPU_ISA.set(Some(merged_spec(user.as_deref())));
}

#[cfg(not(target_arch = "x86_64"))]
fn install_edits() {}

/// The user's own `TRACT_CPU_ISA` edits (the programmatic value replaces the environment's),
/// then ours, which win because tract applies edits left to right.
#[cfg(target_arch = "x86_64")]
fn merged_spec(user: Option<&str>) -> String {
    match user.map(str::trim).filter(|s| !s.is_empty()) {
        Some(user) => format!("{user},{REMOVE_AMX}"),
        None => REMOVE_AMX.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_lifts_only_on_an_explicit_yes() {
        assert!(lifted(Some("on")));
        assert!(lifted(Some(" TRUE ")));
        assert!(lifted(Some("1")));
        assert!(!lifted(None));
        assert!(!lifted(Some("")));
        assert!(!lifted(Some("0")));
        assert!(!lifted(Some("off")));
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn user_edits_are_kept_and_ours_come_last() {
        assert_eq!(merged_spec(None), "-amx-int8,-amx-bf16");
        assert_eq!(merged_spec(Some("  ")), "-amx-int8,-amx-bf16");
        assert_eq!(
            merged_spec(Some("-avx512f")),
            "-avx512f,-amx-int8,-amx-bf16"
        );
        // A user who adds AMX back still loses it: the later edit wins.
        assert_eq!(
            merged_spec(Some("+amx-int8")),
            "+amx-int8,-amx-int8,-amx-bf16"
        );
    }

    #[test]
    fn tract_never_sees_amx_in_the_test_process() {
        // The test harness does not set EDGECLR_TRACT_AMX; with the guard applied, tract's
        // view must lack both AMX features whatever this CPU has (on a CPU without AMX this
        // holds trivially; the e2e test `embed_int8_never_crashes` checks an AMX CPU's view).
        let report = apply();
        assert!(!report.guard_lifted);
        assert!(!report.amx_in_use, "tract ISA: {}", report.tract_isa);
        assert!(!report.tract_isa.contains("amx"), "{}", report.tract_isa);
        assert_eq!(apply(), report, "applied once per process");
    }
}
