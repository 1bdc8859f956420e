//! # edgeclr-release — what a board installs
//!
//! The release bundle format — a tarball whose `MANIFEST.json` lists every file with its
//! sha256 and mode, signed with ed25519 — and its safe unpacking ([`bundle`]); release keys
//! ([`keys`]); and the board's install root with its one trust anchor, `trusted.pub`, and
//! atomically switched releases ([`install`]). The host's `edgeclr bundle`/`flash` and the
//! board's `edgeclr-device release` commands share it.

pub mod bundle;
pub mod install;
pub mod keys;

#[cfg(test)]
mod fuzz;

pub use bundle::{BundleError, BundleManifest};
pub use install::{InstallRoot, Staged};
