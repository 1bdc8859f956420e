//! Debian binary packages written directly (deb(5)): an `ar` archive of `debian-binary`
//! (`2.0`), `control.tar.gz` (control, conffiles, maintainer scripts) and `data.tar.gz` (the
//! files, owned by root, with every parent directory). No dpkg-deb or cargo-deb on the host:
//! `edgeclr bundle --format deb` works wherever `edgeclr` does.

use std::io::Write;

use anyhow::{Result, bail};
use flate2::Compression;
use flate2::write::GzEncoder;

/// One file or directory of the package, by absolute path without the leading `/`.
#[derive(Debug, Clone)]
pub struct Entry {
    /// `usr/bin/edgeclr-device`.
    pub path: String,
    /// Contents; `None` for a directory.
    pub bytes: Option<Vec<u8>>,
    /// Permission bits.
    pub mode: u32,
}

impl Entry {
    /// A file.
    pub fn file(path: &str, bytes: Vec<u8>, mode: u32) -> Self {
        Self {
            path: path.trim_start_matches('/').into(),
            bytes: Some(bytes),
            mode,
        }
    }

    /// An (empty) directory.
    pub fn dir(path: &str, mode: u32) -> Self {
        Self {
            path: path.trim_start_matches('/').trim_end_matches('/').into(),
            bytes: None,
            mode,
        }
    }
}

/// The fields of `DEBIAN/control` a package needs.
#[derive(Debug, Clone)]
pub struct Control {
    /// `edgeclr-device`.
    pub package: String,
    /// A Debian version (starts with a digit).
    pub version: String,
    /// `amd64`, `arm64` or `all`.
    pub architecture: String,
    /// `Name <email>`.
    pub maintainer: String,
    /// `Depends:`, when any.
    pub depends: Option<String>,
    /// Further relationship fields: (`Conflicts`, `edgeclr-model`), (`Replaces`, …).
    pub relations: Vec<(String, String)>,
    /// One line, then the long description's lines.
    pub description: Vec<String>,
}

/// A whole package.
#[derive(Debug, Clone)]
pub struct Package {
    /// Its control fields.
    pub control: Control,
    /// Its files and directories.
    pub entries: Vec<Entry>,
    /// Files under /etc that dpkg must not overwrite once the admin changed them.
    pub conffiles: Vec<String>,
    /// Maintainer scripts: (`postinst`, text).
    pub scripts: Vec<(String, String)>,
}

/// `edgeclr-device_1.2.3_arm64.deb`.
pub fn file_name(c: &Control) -> String {
    format!("{}_{}_{}.deb", c.package, c.version, c.architecture)
}

/// Debian's version syntax for what we generate: `[0-9][A-Za-z0-9.+~]*`.
///
/// # Errors
/// The version and the rule it breaks.
pub fn check_version(v: &str) -> Result<()> {
    let ok = v.starts_with(|c: char| c.is_ascii_digit())
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || ".+~".contains(c));
    if !ok {
        bail!("Debian version `{v}`: start with a digit, then letters, digits and `.+~`");
    }
    Ok(())
}

/// Control fields are single lines (a newline would inject a field) and the summary is set.
fn check_control(c: &Control) -> Result<()> {
    check_version(&c.version)?;
    let fields = [&c.package, &c.architecture, &c.maintainer]
        .into_iter()
        .chain(c.depends.as_ref())
        .chain(c.relations.iter().map(|(_, v)| v))
        .chain(c.description.iter());
    for f in fields {
        if f.contains(['\n', '\r']) {
            bail!("control field `{}` holds a line break", f.escape_debug());
        }
    }
    if c.description.first().is_none_or(|s| s.trim().is_empty()) {
        bail!("the package description's first line (the summary) is empty");
    }
    if !c.maintainer.contains('@') {
        bail!("Maintainer `{}`: use `Name <email>`", c.maintainer);
    }
    Ok(())
}

/// `x86_64` → `amd64`, `aarch64` → `arm64`, as an ELF machine names them.
pub fn debian_arch(elf_arch: &str) -> Option<&'static str> {
    match elf_arch {
        "x86_64" => Some("amd64"),
        "aarch64" => Some("arm64"),
        "arm" => Some("armhf"),
        _ => None,
    }
}

/// The `.deb` bytes; `mtime` stamps every member (reproducible for a fixed time).
///
/// # Errors
/// Relative paths with `..`, a conffile that is not a packaged file under `etc/`.
pub fn build(pkg: &Package, mtime: u64) -> Result<Vec<u8>> {
    check_control(&pkg.control)?;
    for e in &pkg.entries {
        if e.path.is_empty()
            || e.path
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
        {
            bail!("package path `/{}` is not a plain absolute path", e.path);
        }
    }
    for c in &pkg.conffiles {
        let packaged = pkg
            .entries
            .iter()
            .any(|e| e.bytes.is_some() && e.path == c.trim_start_matches('/'));
        if !c.starts_with("/etc/") || !packaged {
            bail!("conffile {c} must be a packaged file under /etc");
        }
    }
    let data = gzip(&data_tar(&pkg.entries, mtime)?)?;
    let control = gzip(&control_tar(pkg, mtime)?)?;
    let mut out = b"!<arch>\n".to_vec();
    ar_member(&mut out, "debian-binary", b"2.0\n", mtime);
    ar_member(&mut out, "control.tar.gz", &control, mtime);
    ar_member(&mut out, "data.tar.gz", &data, mtime);
    Ok(out)
}

/// The `control` file's text.
fn control_text(pkg: &Package) -> String {
    let c = &pkg.control;
    let installed_kib: u64 = pkg
        .entries
        .iter()
        .map(|e| {
            e.bytes
                .as_ref()
                .map_or(1, |b| (b.len() as u64).div_ceil(1024))
        })
        .sum();
    let mut t = format!(
        "Package: {}\nVersion: {}\nArchitecture: {}\nMaintainer: {}\nInstalled-Size: {installed_kib}\n",
        c.package, c.version, c.architecture, c.maintainer
    );
    if let Some(d) = &c.depends {
        t += &format!("Depends: {d}\n");
    }
    for (field, value) in &c.relations {
        t += &format!("{field}: {value}\n");
    }
    t += "Section: misc\nPriority: optional\nHomepage: https://github.com/edgeclr/edgeclr\n";
    let (summary, long) = c
        .description
        .split_first()
        .map_or(("", &[][..]), |(s, l)| (s.as_str(), l));
    t += &format!("Description: {summary}\n");
    for line in long {
        t += &if line.is_empty() {
            " .\n".to_string()
        } else {
            format!(" {line}\n")
        };
    }
    t
}

fn control_tar(pkg: &Package, mtime: u64) -> Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    dir_header(&mut tar, "./", mtime)?;
    file_header(
        &mut tar,
        "./control",
        control_text(pkg).as_bytes(),
        0o644,
        mtime,
    )?;
    if !pkg.conffiles.is_empty() {
        let list = pkg.conffiles.join("\n") + "\n";
        file_header(&mut tar, "./conffiles", list.as_bytes(), 0o644, mtime)?;
    }
    for (name, text) in &pkg.scripts {
        file_header(
            &mut tar,
            &format!("./{name}"),
            text.as_bytes(),
            0o755,
            mtime,
        )?;
    }
    Ok(tar.into_inner()?)
}

/// Every entry, parents first, each directory once.
fn data_tar(entries: &[Entry], mtime: u64) -> Result<Vec<u8>> {
    let mut dirs = std::collections::BTreeSet::new();
    for e in entries {
        let parts: Vec<&str> = e.path.split('/').collect();
        let keep = if e.bytes.is_some() {
            parts.len() - 1
        } else {
            parts.len()
        };
        for k in 1..=keep {
            dirs.insert(parts[..k].join("/"));
        }
    }
    let mut tar = tar::Builder::new(Vec::new());
    dir_header(&mut tar, "./", mtime)?;
    for d in &dirs {
        let mode = entries
            .iter()
            .find(|e| e.bytes.is_none() && &e.path == d)
            .map_or(0o755, |e| e.mode);
        let mut h = header(tar::EntryType::Directory, 0, mode, mtime);
        append(&mut tar, &mut h, &format!("./{d}/"), &[])?;
    }
    let mut files: Vec<&Entry> = entries.iter().filter(|e| e.bytes.is_some()).collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    for f in files {
        let bytes = f.bytes.as_deref().unwrap_or_default();
        file_header(&mut tar, &format!("./{}", f.path), bytes, f.mode, mtime)?;
    }
    Ok(tar.into_inner()?)
}

fn header(kind: tar::EntryType, size: u64, mode: u32, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(mtime);
    h.set_uid(0);
    h.set_gid(0);
    let _ = h.set_username("root");
    let _ = h.set_groupname("root");
    h
}

fn dir_header(tar: &mut tar::Builder<Vec<u8>>, path: &str, mtime: u64) -> Result<()> {
    let mut h = header(tar::EntryType::Directory, 0, 0o755, mtime);
    append(tar, &mut h, path, &[])
}

fn file_header(
    tar: &mut tar::Builder<Vec<u8>>,
    path: &str,
    bytes: &[u8],
    mode: u32,
    mtime: u64,
) -> Result<()> {
    let mut h = header(tar::EntryType::Regular, bytes.len() as u64, mode, mtime);
    append(tar, &mut h, path, bytes)
}

/// Appends with the name exactly as given: dpkg-deb's `./usr/…` (the tar crate's path setter
/// drops the `./`).
fn append(
    tar: &mut tar::Builder<Vec<u8>>,
    h: &mut tar::Header,
    path: &str,
    bytes: &[u8],
) -> Result<()> {
    let name = &mut h.as_old_mut().name;
    if path.len() >= name.len() {
        bail!(
            "package path {path} is longer than {} bytes",
            name.len() - 1
        );
    }
    name.fill(0);
    name[..path.len()].copy_from_slice(path.as_bytes());
    h.set_cksum();
    tar.append(h, bytes)?;
    Ok(())
}

fn gzip(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::new(9));
    gz.write_all(bytes)?;
    Ok(gz.finish()?)
}

/// One `ar` member: a 60-byte header, the data, a newline to an even length.
fn ar_member(out: &mut Vec<u8>, name: &str, data: &[u8], mtime: u64) {
    let header = format!(
        "{name:<16}{mtime:<12}{:<6}{:<6}{:<8o}{:<10}`\n",
        0,
        0,
        0o100644,
        data.len()
    );
    debug_assert_eq!(header.len(), 60);
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    if data.len() % 2 == 1 {
        out.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn package() -> Package {
        Package {
            control: Control {
                package: "demo".into(),
                version: "1.0+2".into(),
                architecture: "amd64".into(),
                maintainer: "Ops <ops@example.com>".into(),
                depends: Some("libc6 (>= 2.34)".into()),
                relations: vec![("Conflicts".into(), "old-demo".into())],
                description: vec![
                    "a demo".into(),
                    "Long text.".into(),
                    String::new(),
                    "More.".into(),
                ],
            },
            entries: vec![
                Entry::file("/usr/bin/demo", b"#!/bin/sh\n".to_vec(), 0o755),
                Entry::file("/etc/demo/a.toml", b"x = 1\n".to_vec(), 0o644),
                Entry::dir("/var/lib/demo", 0o750),
            ],
            conffiles: vec!["/etc/demo/a.toml".into()],
            scripts: vec![("postinst".into(), "#!/bin/sh\nexit 0\n".into())],
        }
    }

    /// (name, data) of each `ar` member, parsed by hand from the documented layout.
    fn members(deb: &[u8]) -> Vec<(String, Vec<u8>)> {
        assert_eq!(&deb[..8], b"!<arch>\n");
        let mut at = 8;
        let mut out = Vec::new();
        while at < deb.len() {
            let h = std::str::from_utf8(&deb[at..at + 60]).expect("ascii header");
            assert_eq!(&h[58..], "`\n");
            let size: usize = h[48..58].trim().parse().expect("size");
            out.push((
                h[..16].trim().to_string(),
                deb[at + 60..at + 60 + size].to_vec(),
            ));
            at += 60 + size + size % 2;
        }
        out
    }

    fn untar(gz: &[u8]) -> Vec<(String, u32, Vec<u8>)> {
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(gz));
        tar.entries()
            .expect("entries")
            .map(|e| {
                let mut e = e.expect("entry");
                let mut b = Vec::new();
                e.read_to_end(&mut b).expect("read");
                let h = e.header();
                assert_eq!((h.uid().expect("uid"), h.gid().expect("gid")), (0, 0));
                // tar writes `./usr/bin` as `usr/bin`; dpkg reads both.
                let p = e.path().expect("path").display().to_string();
                let p = p.trim_start_matches("./").trim_end_matches('/').to_string();
                (p, h.mode().expect("mode"), b)
            })
            .collect()
    }

    #[test]
    fn the_archive_has_deb5s_three_members_in_order() {
        let deb = build(&package(), 1_700_000_000).expect("build");
        let m = members(&deb);
        let names: Vec<&str> = m.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["debian-binary", "control.tar.gz", "data.tar.gz"]);
        assert_eq!(m[0].1, b"2.0\n");

        let control = untar(&m[1].1);
        let text = |name: &str| {
            String::from_utf8(
                control
                    .iter()
                    .find(|(p, _, _)| p == name)
                    .expect(name)
                    .2
                    .clone(),
            )
            .expect("utf-8")
        };
        assert!(
            text("control").starts_with("Package: demo\nVersion: 1.0+2\nArchitecture: amd64\n")
        );
        assert!(text("control").contains("Depends: libc6 (>= 2.34)\nConflicts: old-demo\n"));
        assert!(text("control").ends_with("Description: a demo\n Long text.\n .\n More.\n"));
        assert_eq!(text("conffiles"), "/etc/demo/a.toml\n");
        assert_eq!(
            control
                .iter()
                .find(|(p, _, _)| p == "postinst")
                .expect("postinst")
                .1,
            0o755
        );

        let data = untar(&m[2].1);
        let paths: Vec<&str> = data.iter().map(|(p, _, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "",
                "etc",
                "etc/demo",
                "usr",
                "usr/bin",
                "var",
                "var/lib",
                "var/lib/demo",
                "etc/demo/a.toml",
                "usr/bin/demo"
            ]
        );
        assert_eq!(data[7].1, 0o750, "the directory keeps its mode");
        assert_eq!(
            (data[9].1, data[9].2.as_slice()),
            (0o755, &b"#!/bin/sh\n"[..])
        );
    }

    #[test]
    fn bad_versions_paths_and_conffiles_are_refused() {
        for v in ["v1.0", "1.0-rc_1", ""] {
            assert!(check_version(v).is_err(), "{v}");
        }
        let mut p = package();
        p.entries.push(Entry::file("/usr/../etc/x", vec![], 0o644));
        assert!(build(&p, 0).is_err());
        let mut p = package();
        p.conffiles = vec!["/usr/bin/demo".into()];
        assert!(
            build(&p, 0)
                .expect_err("refused")
                .to_string()
                .contains("under /etc")
        );
        assert_eq!(file_name(&package().control), "demo_1.0+2_amd64.deb");
        let mut p = package();
        p.control.maintainer = "Ops <o@x>\nEssential: yes".into();
        assert!(
            build(&p, 0)
                .expect_err("injected")
                .to_string()
                .contains("line break")
        );
        let mut p = package();
        p.control.description = vec![" ".into()];
        assert!(
            build(&p, 0)
                .expect_err("no summary")
                .to_string()
                .contains("summary")
        );
    }
}
