//! `ssh://USER@HOST[:PORT][/ROOT]` flash targets and the ssh/scp client `edgeclr flash` drives.
//!
//! Everything from the command line that reaches ssh is validated first: user and host may not
//! start with `-` and hold only the characters a user name, a host name or an IP literal can
//! (so `ssh://-oProxyCommand=…@host` is refused, not run), IPv6 literals come in brackets
//! (`ssh://pi@[::1]:2222`), and the destination follows `--` on both ssh and scp. Host keys
//! are always checked (`StrictHostKeyChecking=yes`, `BatchMode=yes`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// A flash target.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// A local folder acting as the board's install root.
    Dir(PathBuf),
    /// A board reached over ssh.
    Ssh(SshTarget),
}

/// A validated ssh destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    /// Login name.
    pub user: String,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Install root on the board.
    pub root: String,
}

impl SshTarget {
    /// `user@host`, as ssh takes it (after `--`).
    pub fn dest(&self) -> String {
        format!("{}@{}", self.user, self.host)
    }

    /// `user@host:path` for scp, with an IPv6 host in brackets.
    pub fn scp_dest(&self, path: &str) -> String {
        if self.host.contains(':') {
            format!("{}@[{}]:{path}", self.user, self.host)
        } else {
            format!("{}@{}:{path}", self.user, self.host)
        }
    }
}

fn valid_user(u: &str) -> bool {
    !u.is_empty()
        && !u.starts_with('-')
        && u.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && !h.starts_with('-')
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-".contains(c))
}

/// An IPv6 literal, optionally with a zone (`fe80::1%eth0`).
fn valid_ipv6(h: &str) -> bool {
    let (addr, zone) = h.split_once('%').unwrap_or((h, "x"));
    addr.contains(':')
        && addr
            .chars()
            .all(|c| c.is_ascii_hexdigit() || ":.".contains(c))
        && !zone.is_empty()
        && zone
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// Splits `HOST[:PORT]` or `[IPV6][:PORT]`.
fn host_and_port(s: &str, whole: &str) -> Result<(String, u16), String> {
    let bad_port = |p: &str| format!("--to {whole}: bad port `{p}`");
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("--to {whole}: `[` without `]` around the IPv6 address"))?;
        if !valid_ipv6(host) {
            return Err(format!("--to {whole}: `{host}` is not an IPv6 address"));
        }
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad_port(p))?,
            None if after.is_empty() => 22,
            None => return Err(format!("--to {whole}: unexpected `{after}` after `]`")),
        };
        return Ok((host.into(), port));
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().map_err(|_| bad_port(p))?),
        None => (s, 22),
    };
    if host.contains(':') {
        return Err(format!(
            "--to {whole}: put an IPv6 address in brackets, ssh://USER@[ADDR]:PORT"
        ));
    }
    if !valid_host(host) {
        return Err(format!(
            "--to {whole}: `{host}` is not a host name or address"
        ));
    }
    Ok((host.into(), port))
}

impl std::str::FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(p) = s.strip_prefix("dir:") {
            return Ok(Self::Dir(PathBuf::from(p)));
        }
        let rest = s
            .strip_prefix("ssh://")
            .ok_or_else(|| format!("--to {s}: use dir:ROOT or ssh://USER@HOST[:PORT][/ROOT]"))?;
        let (hostpart, root) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].to_string()),
            None => (rest, "/opt/edgeclr".to_string()),
        };
        let (user, host) = hostpart.split_once('@').ok_or_else(|| {
            if hostpart.starts_with('-') {
                format!("--to {s}: `{hostpart}` starts with `-` (ssh would read an option); use ssh://USER@HOST")
            } else {
                format!("--to {s}: name the user, ssh://USER@HOST")
            }
        })?;
        if !valid_user(user) {
            return Err(format!(
                "--to {s}: `{user}` is not a user name (letters, digits, `._-`, not starting with `-`)"
            ));
        }
        let (host, port) = host_and_port(host, s)?;
        let plain = |c: char| c.is_ascii_alphanumeric() || "._/-".contains(c);
        if !root.chars().all(plain) || root.split('/').any(|c| c == "..") {
            return Err(format!(
                "--to {s}: the install root `{root}` may hold only letters, digits and `._/-` (no `..`)"
            ));
        }
        Ok(Self::Ssh(SshTarget {
            user: user.into(),
            host,
            port,
            root,
        }))
    }
}

/// Single-quotes `s` for a POSIX shell.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// ssh/scp options for one board.
#[derive(Debug, Clone)]
pub struct Ssh {
    /// Where.
    pub target: SshTarget,
    /// `UserKnownHostsFile`.
    pub known_hosts: Option<PathBuf>,
    /// Private key.
    pub identity: Option<PathBuf>,
    /// scp bandwidth limit, Kbit/s.
    pub limit_kbps: Option<u32>,
}

impl Ssh {
    fn common(&self, port_flag: &str) -> Vec<String> {
        let mut v = vec![
            port_flag.into(),
            self.target.port.to_string(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            "StrictHostKeyChecking=yes".into(),
            "-o".into(),
            "ConnectTimeout=10".into(),
        ];
        if let Some(k) = &self.known_hosts {
            v.extend(["-o".into(), format!("UserKnownHostsFile={}", k.display())]);
        }
        if let Some(i) = &self.identity {
            v.extend(["-i".into(), i.display().to_string()]);
        }
        v
    }

    fn exec(&self, command: &str) -> Result<std::process::Output> {
        Command::new("ssh")
            .args(self.common("-p"))
            .arg("--")
            .arg(self.target.dest())
            .arg(command)
            .output()
            .context("running ssh (install openssh-client)")
    }

    /// Runs `command` on the board; returns (success, stdout + stderr) for a person to read.
    ///
    /// # Errors
    /// When ssh cannot be started.
    pub fn run(&self, command: &str) -> Result<(bool, String)> {
        let out = self.exec(command)?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok((out.status.success(), text))
    }

    /// Runs `command` on the board; its stdout alone (banners and warnings on stderr never
    /// reach a parser), or an error naming `what` with stderr.
    ///
    /// # Errors
    /// When ssh fails or the command exits non-zero.
    pub fn must(&self, command: &str, what: &str) -> Result<String> {
        let out = self.exec(command)?;
        if !out.status.success() {
            bail!(
                "{what} failed on {}: {}{}",
                self.target.dest(),
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Copies `local` to `remote` on the board.
    ///
    /// # Errors
    /// When scp fails.
    pub fn upload(&self, local: &Path, remote: &str) -> Result<()> {
        let mut limit = Vec::new();
        if let Some(l) = self.limit_kbps {
            limit = vec!["-l".to_string(), l.to_string()];
        }
        let dest = self.target.scp_dest(remote);
        let out = Command::new("scp")
            .args(self.common("-P"))
            .args(limit)
            .arg("-q")
            .arg("--")
            .arg(local)
            .arg(&dest)
            .output()
            .context("running scp (install openssh-client)")?;
        if !out.status.success() {
            bail!(
                "upload of {} to {dest} failed: {}",
                local.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ssh(user: &str, host: &str, port: u16, root: &str) -> Target {
        Target::Ssh(SshTarget {
            user: user.into(),
            host: host.into(),
            port,
            root: root.into(),
        })
    }

    #[test]
    fn targets_parse_with_defaults() {
        assert_eq!(
            "dir:/tmp/b".parse::<Target>(),
            Ok(Target::Dir("/tmp/b".into()))
        );
        assert_eq!(
            "ssh://pi@board.local:2222/srv/edgeclr".parse::<Target>(),
            Ok(ssh("pi", "board.local", 2222, "/srv/edgeclr"))
        );
        assert_eq!(
            "ssh://pi@10.0.0.2".parse::<Target>(),
            Ok(ssh("pi", "10.0.0.2", 22, "/opt/edgeclr"))
        );
    }

    #[test]
    fn ipv6_literals_in_brackets() {
        let t = "ssh://user@[::1]:2222".parse::<Target>().expect("parses");
        assert_eq!(t, ssh("user", "::1", 2222, "/opt/edgeclr"));
        let Target::Ssh(s) = t else {
            unreachable!("ssh target")
        };
        assert_eq!(s.dest(), "user@::1");
        assert_eq!(s.scp_dest("/x"), "user@[::1]:/x");
        assert_eq!(
            "ssh://pi@[fe80::1%eth0]/r".parse::<Target>(),
            Ok(ssh("pi", "fe80::1%eth0", 22, "/r"))
        );
        let err = "ssh://user@::1:2222"
            .parse::<Target>()
            .expect_err("no brackets");
        assert!(err.contains("brackets"), "{err}");
        assert!("ssh://u@[::1".parse::<Target>().is_err());
        assert!("ssh://u@[zz]:22".parse::<Target>().is_err());
    }

    #[test]
    fn options_and_bad_names_are_refused() {
        for bad in [
            "ssh://-oProxyCommand=touch${IFS}/tmp/pwned@host",
            "ssh://pi@-oProxyCommand=x",
            "ssh://pi@host;rm",
            "ssh://p i@host",
            "ssh://board",
            "ssh://@host",
            "ssh://a@b:x",
            "ssh://pi@host/opt/x$(reboot)",
            "ssh://pi@host/opt/../etc",
            "ssh://pi@host/opt/a b",
            "scp:x",
        ] {
            assert!(bad.parse::<Target>().is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(sh_quote("a'b"), "'a'\\''b'");
    }
}
