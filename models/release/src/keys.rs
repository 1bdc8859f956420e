//! Release keys: ed25519 key pairs as hex files, written and read the way ssh treats its
//! keys — a secret key is created with mode 0600 (never readable by others, not even
//! briefly) and refused when group or world can read it.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::bundle::{BundleError, hex, io, parse_hex};

/// A new signing key from 32 bytes of OS randomness: `(secret hex, public hex)`.
pub fn keygen() -> (String, String) {
    let mut seed = [0u8; 32];
    rand::fill(&mut seed);
    let key = SigningKey::from_bytes(&seed);
    (hex(&seed), hex(key.verifying_key().as_bytes()))
}

/// Writes a secret key file, created with mode 0600; an existing file is never overwritten.
///
/// # Errors
/// When `path` exists or cannot be written.
pub fn write_secret_key(path: &Path, secret_hex: &str) -> Result<(), BundleError> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    f.write_all(format!("{secret_hex}\n").as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(io(path))
}

/// Reads a secret key file written by [`keygen`] (hex).
///
/// # Errors
/// When unreadable, readable by group or others, or not 32 hex bytes.
pub fn read_signing_key(path: &Path) -> Result<SigningKey, BundleError> {
    // One open: the mode checked is the mode of the file read.
    let mut file = fs::File::open(path).map_err(io(path))?;
    let mode = file.metadata().map_err(io(path))?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(BundleError::Signature(format!(
            "{}: permissions {mode:04o} are too open for a secret key; `chmod 600 {}`",
            path.display(),
            path.display()
        )));
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut file, &mut text).map_err(io(path))?;
    parse_hex::<32>(text.trim())
        .map(|b| SigningKey::from_bytes(&b))
        .ok_or_else(|| {
            BundleError::Signature(format!(
                "{} is not a secret key (64 hex characters); make one with `edgeclr keygen`",
                path.display()
            ))
        })
}

/// Parses a public key (64 hex characters).
pub fn parse_verifying_key(text: &str) -> Option<VerifyingKey> {
    parse_hex::<32>(text.trim()).and_then(|b| VerifyingKey::from_bytes(&b).ok())
}

/// Reads a public key file (hex).
///
/// # Errors
/// When unreadable or not a valid key.
pub fn read_verifying_key(path: &Path) -> Result<VerifyingKey, BundleError> {
    let text = fs::read_to_string(path).map_err(io(path))?;
    parse_verifying_key(&text).ok_or_else(|| {
        BundleError::Signature(format!(
            "{} is not a public key (64 hex characters from `edgeclr keygen`)",
            path.display()
        ))
    })
}

/// A public key as hex, the form key files and manifests hold.
pub fn key_hex(key: &VerifyingKey) -> String {
    hex(key.as_bytes())
}

/// A short name for a public key in messages: the first 16 hex digits of its sha256.
pub fn fingerprint(key: &VerifyingKey) -> String {
    hex(&Sha256::digest(key.as_bytes()))[..16].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_keys_are_private_and_never_overwritten() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let p = tmp.path().join("k");
        let (secret, public) = keygen();
        write_secret_key(&p, &secret).expect("written");
        let mode = fs::metadata(&p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(
            write_secret_key(&p, &secret).is_err(),
            "create_new refuses to overwrite"
        );
        let sk = read_signing_key(&p).expect("reads a 0600 key");
        assert_eq!(key_hex(&sk.verifying_key()), public);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = read_signing_key(&p)
            .expect_err("world-readable")
            .to_string();
        assert!(err.contains("0644") && err.contains("chmod 600"), "{err}");
    }

    #[test]
    fn fingerprints_are_stable_and_distinct() {
        let a = parse_verifying_key(&keygen().1).expect("key");
        let b = parse_verifying_key(&keygen().1).expect("key");
        assert_eq!(fingerprint(&a), fingerprint(&a));
        assert_ne!(fingerprint(&a), fingerprint(&b));
        assert_eq!(fingerprint(&a).len(), 16);
        assert!(parse_verifying_key("not hex").is_none());
    }
}
