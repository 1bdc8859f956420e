//! The training binary's allocator settings. A training step on burn-flex allocates and frees
//! tensor buffers of up to ~70 MB each, in the same sizes every step. glibc's malloc, as it
//! comes, serves each one with a fresh `mmap` and hands it back to the kernel on free, so
//! every step faults all of them in again, zeroed (issue 15's protocol: 3.2 M page faults and
//! 13 s of system time per 8 steps). Told to keep one heap (no `mmap` for large blocks, no
//! trimming, one arena), it reuses the freed blocks best-fit: a few thousand page faults after
//! the first step and a peak RSS at the live memory. mimalloc, the previous global allocator,
//! kept freed pages too but fragmented: 30 % more peak RSS (docs/backends.md, "Allocator").

/// Largest value glibc accepts for `M_TRIM_THRESHOLD` without wrapping (an `int`).
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
    let user_tuned = std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.malloc."));
    if user_tuned {
        return Ok(());
    }
    set(libc::M_MMAP_MAX, 0, "M_MMAP_MAX=0 (no mmap for large blocks)")?;
    set(libc::M_TRIM_THRESHOLD, NEVER_TRIM, "M_TRIM_THRESHOLD (never trim the heap)")?;
    set(libc::M_ARENA_MAX, 1, "M_ARENA_MAX=1 (one arena for all threads)")
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
    if ok == 1 { Ok(()) } else { Err(AllocatorError::Refused(what)) }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    /// Minor page faults this thread has taken so far.
    #[allow(unsafe_code)]
    fn minor_faults() -> i64 {
        // SAFETY: getrusage writes one plain struct we own.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) }, 0);
        usage.ru_minflt
    }

    #[test]
    fn a_large_block_freed_and_asked_again_is_reused_not_refaulted() {
        assert_eq!(keep_freed_memory(), Ok(()));
        // Above glibc's largest dynamic mmap threshold (32 MiB), so glibc as it comes maps it
        // afresh every time; below the 64 MiB heaps of the arena a test thread may own.
        const BYTES: usize = 48 << 20; // 12,288 pages of 4 KiB
        drop(std::hint::black_box(vec![1u8; BYTES]));
        let before = minor_faults();
        let second = std::hint::black_box(vec![2u8; BYTES]);
        let faults = minor_faults() - before;
        // Mapped afresh, every page faults in again (12,288; fewer only with transparent huge
        // pages); kept in the heap, the pages stay resident.
        assert!(faults < 1_000, "{faults} page faults writing a reused 48 MiB block");
        assert_eq!(second[BYTES - 1], 2);
    }
}
