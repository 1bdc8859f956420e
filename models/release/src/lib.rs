//! # edgeclr-release — what a board installs
//!
//! The release bundle format (a tarball whose `MANIFEST.json` lists every file with its
//! sha256 and mode), its ed25519 signatures and keys, safe unpacking, and the board's install
//! root with its releases and `current`/`previous` pointers ([`bundle`]). The host's
//! `edgeclr bundle`/`flash` and the board's `edgeclr-device` release commands share it.

pub mod bundle;
