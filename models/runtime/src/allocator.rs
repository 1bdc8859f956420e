//! The process's allocator settings, for both binaries (`edgeclr`, `edgeclr-device`) and the
//! benchmarks that stand for them. glibc's malloc, as it comes, serves large blocks with a
//! fresh `mmap` and trims freed memory at the top of the heap back to the kernel, so a
//! workload that frees and reallocates the same large buffers faults them in again, zeroed,
//! every time:
//! - training on burn-flex allocates and frees tensor buffers of up to ~70 MB each, in the
//!   same sizes every step (issue 15's protocol: 3.2 M page faults and 13 s of system time
//!   per 8 steps; with these settings 0.19 M page faults in all, the same over 8 and 40 steps,
//!   and a peak RSS of 763 MiB; mimalloc, the previous global allocator, kept freed pages too
//!   but fragmented: 1.04–1.29 GiB of peak RSS against 0.74 GiB — docs/backends.md, "Intel
//!   Xeon, and peak memory");
//! - inference with tract allocates every op's output afresh (1.2 MB per 96×96×32 f32
//!   activation): ≈ 560 page faults per 96 px encoder run, and 25–30 % of its time
//!   (docs/export.md, "Page faults"); with these settings a handful per run.
//!
//! Told to keep one heap (no `mmap` for large blocks, no trimming, one arena), glibc reuses
//! the freed blocks best-fit.

/// Largest value glibc accepts for `M_TRIM_THRESHOLD` without wrapping (an `int`): the heap is
/// trimmed only once 2 GiB at its top are free.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const NEVER_TRIM: i32 = i32::MAX;

/// Why the settings were not applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllocatorError {
    /// `mallopt` refused one of the settings (glibc returns 0 on an invalid parameter).
    Refused(&'static str),
}

impl std::fmt::Display for AllocatorError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refused(what) => write!(f, "glibc's mallopt refused {what}"),
        }
    }
}

impl std::error::Error for AllocatorError {}

/// Makes glibc's malloc keep freed memory in one heap for reuse, unless the user tuned it
/// (`GLIBC_TUNABLES` naming `glibc.malloc.`). Call first thing in `main`, before any thread
/// starts (arenas are created per thread on first use).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn keep_freed_memory() -> Result<(), AllocatorError> {
    let user_tuned = std::env::var_os("GLIBC_TUNABLES")
        .is_some_and(|t| t.to_string_lossy().contains("glibc.malloc."));
    if user_tuned {
        return Ok(());
    }
    set(
        libc::M_MMAP_MAX,
        0,
        "M_MMAP_MAX=0 (no mmap for large blocks)",
    )?;
    set(
        libc::M_TRIM_THRESHOLD,
        NEVER_TRIM,
        "M_TRIM_THRESHOLD (never trim the heap)",
    )?;
    set(
        libc::M_ARENA_MAX,
        1,
        "M_ARENA_MAX=1 (one arena for all threads)",
    )
}

/// Other C libraries (musl, macOS) keep their own policy.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn keep_freed_memory() -> Result<(), AllocatorError> {
    Ok(())
}

/// One `mallopt` call.
// The one foreign call of the host: glibc's malloc options have no safe wrapper.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn set(param: libc::c_int, value: libc::c_int, what: &'static str) -> Result<(), AllocatorError> {
    // SAFETY: mallopt only stores an integer setting under malloc's own lock; it is safe to
    // call at any time, and `param` is one of glibc's documented parameters.
    let ok = unsafe { libc::mallopt(param, value) };
    (ok == 1).then_some(()).ok_or(AllocatorError::Refused(what))
}

// Tested in host/tests/allocator.rs, on the main thread of its own process: libtest's
// threads own arenas of their own, created before any test could set `M_ARENA_MAX`.
