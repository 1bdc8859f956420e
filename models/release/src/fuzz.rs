//! Bounded fuzzing (proptest, run by `cargo test`) of the bundle unpacker and verifier: a real
//! signed bundle with random byte edits, splices and cuts. Nothing may panic or write outside
//! the destination folder, and whatever verifies against the signing key is exactly what was
//! signed, byte for byte.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::LazyLock;

use ed25519_dalek::VerifyingKey;
use proptest::prelude::*;
use proptest::sample::Index;

use crate::bundle::tests::{files, manifest};
use crate::bundle::{MANIFEST, SIGNATURE, unpack, verify_dir, write_tar};
use crate::keys::{keygen, parse_verifying_key, read_signing_key, write_secret_key};

/// Inputs tried per property (docs/reliability.md reports them).
const CASES: u32 = 1500;

/// A signed bundle, its verifying key and the files it carries by path.
struct Signed {
    tar: Vec<u8>,
    key: VerifyingKey,
    files: BTreeMap<String, Vec<u8>>,
}

static SIGNED: LazyLock<Signed> = LazyLock::new(|| {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (secret, public) = keygen();
    write_secret_key(&tmp.path().join("k"), &secret).expect("key");
    let sk = read_signing_key(&tmp.path().join("k")).expect("key");
    let f = files();
    let mut tar = Vec::new();
    write_tar(&mut tar, &manifest(&f), &f, Some(&sk)).expect("tar");
    Signed {
        tar,
        key: parse_verifying_key(&public).expect("public key"),
        files: f.into_iter().map(|(p, b, _)| (p, b)).collect(),
    }
});

/// Every file under `dir` by relative path.
fn contents(dir: &Path, base: &Path, out: &mut BTreeMap<String, Vec<u8>>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            contents(&path, base, out)?;
        } else {
            let rel = path.strip_prefix(base).unwrap_or(&path);
            out.insert(rel.to_string_lossy().into_owned(), std::fs::read(&path)?);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn edited_bundles_never_panic_escape_or_verify_changed(
        edits in prop::collection::vec((any::<Index>(), 1u8..), 0..4),
        splice in prop::option::of((any::<Index>(), prop::collection::vec(any::<u8>(), 1..600))),
        cut in prop::option::of(any::<Index>()),
    ) {
        let s = &*SIGNED;
        let mut bytes = s.tar.clone();
        for (at, x) in &edits {
            let i = at.index(bytes.len());
            bytes[i] ^= x;
        }
        if let Some((at, insert)) = &splice {
            let i = at.index(bytes.len());
            bytes.splice(i..i, insert.iter().copied());
        }
        if let Some(c) = cut {
            bytes.truncate(c.index(bytes.len()));
        }
        // dest three levels down: an entry climbing out by any number of `..` lands in tmp.
        let tmp = tempfile::tempdir()?;
        let dest = tmp.path().join("a/b/dest");
        std::fs::create_dir_all(&dest)?;
        let unpacked = unpack(bytes.as_slice(), &dest);
        let mut everything = BTreeMap::new();
        contents(tmp.path(), tmp.path(), &mut everything)?;
        let outside: Vec<&String> = everything.keys().filter(|p| !p.starts_with("a/b/dest/")).collect();
        prop_assert!(outside.is_empty(), "wrote outside dest: {:?}", outside);
        if unpacked.is_ok() && verify_dir(&dest, Some(&s.key)).is_ok() {
            let mut got = BTreeMap::new();
            contents(&dest, &dest, &mut got)?;
            got.remove(MANIFEST);
            got.remove(SIGNATURE);
            prop_assert_eq!(&got, &s.files, "a changed bundle verified");
        }
    }
}

#[test]
fn the_unedited_bundle_unpacks_and_verifies() {
    let s = &*SIGNED;
    let tmp = tempfile::tempdir().expect("tempdir");
    unpack(s.tar.as_slice(), tmp.path()).expect("unpacks");
    verify_dir(tmp.path(), Some(&s.key)).expect("verifies");
}
