//! The training binary's allocator settings. `edgeclr` runs on mimalloc (host/src/main.rs);
//! a training step on burn-flex frees and reallocates tensor buffers of up to ~70 MB each. By
//! default mimalloc hands freed pages back to the kernel about a second after they are freed
//! ("purging") and the next step faults them in again, zeroed: measured on issue 15's protocol, 55–60 k page faults and
//! 2.5–3.9 s of system time per 12 steps. Keeping them cost 30–70 MiB of peak RSS in the same
//! 12-step runs and removes both (docs/backends.md, "Allocator").

use libmimalloc_sys::{mi_option_get, mi_option_set, mi_option_t};

/// `mi_option_purge_delay` of mimalloc 3.x's `mi_option_t` (libmimalloc-sys 0.1.49 bundles
/// mimalloc 3.3; its Rust constants stop before this option). The test below checks the
/// index against mimalloc's default (1000 ms in 3.3's `options.c`).
const PURGE_DELAY: mi_option_t = 15;

/// mimalloc's purge delay when neither the environment nor this code sets it (ms).
#[cfg(test)]
const DEFAULT_PURGE_DELAY: std::os::raw::c_long = 1000;

/// Tells mimalloc never to purge freed pages, unless the user set `MIMALLOC_PURGE_DELAY`.
// The one foreign call of the host: mimalloc's C option API has no safe wrapper.
#[allow(unsafe_code)]
pub fn keep_freed_pages() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one integer option; mimalloc reads it when it next decides to purge.
        unsafe { mi_option_set(PURGE_DELAY, -1) };
    }
}

/// The purge delay in effect (ms; −1 = never).
#[allow(unsafe_code)]
pub fn purge_delay() -> std::os::raw::c_long {
    // SAFETY: reads one integer option.
    unsafe { mi_option_get(PURGE_DELAY) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_option_index_is_mimallocs_purge_delay() {
        // The environment may set it (mimalloc reads MIMALLOC_PURGE_DELAY); else the default.
        let expected = std::env::var("MIMALLOC_PURGE_DELAY")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_PURGE_DELAY);
        assert_eq!(purge_delay(), expected);
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            keep_freed_pages();
            assert_eq!(purge_delay(), -1);
        }
    }
}
