//! `allocator::keep_freed_memory` in a process of its own (no libtest harness): the check runs
//! on the main thread, which allocates from glibc's main heap as `edgeclr` does, instead of a
//! libtest thread that owns an arena created before the settings could apply.

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn main() {
    edgeclr_host::allocator::keep_freed_memory().expect("glibc takes the settings");
    a_large_block_is_not_mapped_and_comes_back_resident();
    println!("allocator: a large block is kept in the heap and reused without page faults");
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn main() {
    println!("allocator: glibc's malloc settings apply to linux-gnu only; nothing to check here");
}

/// Above glibc's largest dynamic mmap threshold (32 MiB): glibc as it comes maps a block this
/// size afresh on every allocation and unmaps it on free.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const BYTES: usize = 48 << 20;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn a_large_block_is_not_mapped_and_comes_back_resident() {
    drop(std::hint::black_box(vec![1u8; BYTES]));
    let (faults_before, mapped_before) = (minor_faults(), mapped_blocks());
    let second = std::hint::black_box(vec![2u8; BYTES]);
    // Mapped, the block counts in `hblks` whatever the page size; from the heap it does not.
    assert_eq!(
        mapped_blocks(),
        mapped_before,
        "the 48 MiB block was mmapped"
    );
    // Mapped afresh, every page faults in again (12,288 of 4 KiB); kept, they stay resident.
    let faults = minor_faults() - faults_before;
    assert!(
        faults < 1_000,
        "{faults} page faults writing a reused 48 MiB block"
    );
    assert_eq!(second[BYTES - 1], 2);
}

/// Minor page faults this thread has taken so far.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn minor_faults() -> libc::c_long {
    // SAFETY: getrusage writes one plain struct we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(
        unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) },
        0
    );
    usage.ru_minflt
}

/// Blocks glibc's malloc holds as separate mappings.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn mapped_blocks() -> usize {
    // SAFETY: mallinfo2 only reads malloc's counters (glibc ≥ 2.33).
    unsafe { libc::mallinfo2() }.hblks
}
