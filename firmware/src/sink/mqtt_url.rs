//! `mqtt://[USER[:PASS]@]HOST[:PORT]/TOPIC[?OPTIONS]` and `mqtts://…` (TLS): where the MQTT
//! sink publishes. `TOPIC` may hold `{board}` (the board id). Options, `&`-separated:
//!
//! | option | meaning | default |
//! |---|---|---|
//! | `qos=0\|1` | embeddings at most / at least once | `1` |
//! | `ca=FILE` | PEM CA certificates that sign the broker's (mqtts only) | required for mqtts |
//! | `password_file=FILE` | the password, first line (instead of `:PASS` on a command line) | — |
//! | `client_id=ID` | MQTT client id (may hold `{board}`) | `edgeclr-{board}` |
//! | `keepalive=S` | seconds between pings; a dead board's will fires after 1.5 × S | `30` |
//!
//! `USER` and `PASS` may be percent-encoded (`%40` for `@`).

use std::path::PathBuf;

/// A parsed MQTT sink address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttUrl {
    /// `mqtts://`.
    pub tls: bool,
    /// User name.
    pub user: Option<String>,
    /// Password given in the URL.
    pub password: Option<String>,
    /// Broker host name or address.
    pub host: String,
    /// Broker port (1883, 8883 for mqtts, unless given).
    pub port: u16,
    /// Topic of the embeddings; may hold `{board}`.
    pub topic: String,
    /// 0 or 1.
    pub qos: u8,
    /// CA certificates (PEM) for mqtts.
    pub ca: Option<PathBuf>,
    /// A file whose first line is the password.
    pub password_file: Option<PathBuf>,
    /// Client id template.
    pub client_id: Option<String>,
    /// Keep-alive, seconds.
    pub keepalive_s: u16,
}

const OPTIONS: &str = "qos, ca, password_file, client_id, keepalive";

impl std::str::FromStr for MqttUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("sink `{}`: {why}", redacted(s));
        let (tls, rest) = if let Some(r) = s.strip_prefix("mqtts://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("mqtt://") {
            (false, r)
        } else {
            return Err(bad("an MQTT sink starts with mqtt:// or mqtts://"));
        };
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, topic) = rest.split_once('/').ok_or_else(|| {
            bad("name the topic after the broker, e.g. mqtt://broker.local/edgeclr/{board}/embeddings")
        })?;
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (host, port) =
            host_port(hostport, if tls { 8883 } else { 1883 }).map_err(|w| bad(&w))?;
        let (user, password) = match userinfo {
            None => (None, None),
            Some(u) => {
                let (name, pass) = u.split_once(':').map_or((u, None), |(n, p)| (n, Some(p)));
                if name.is_empty() {
                    return Err(bad("the user name before `@` is empty"));
                }
                (
                    Some(percent_decode(name).map_err(|w| bad(&w))?),
                    pass.map(percent_decode).transpose().map_err(|w| bad(&w))?,
                )
            }
        };
        check_topic(topic).map_err(|w| bad(&w))?;
        let mut url = Self {
            tls,
            user,
            password,
            host,
            port,
            topic: topic.into(),
            qos: 1,
            ca: None,
            password_file: None,
            client_id: None,
            keepalive_s: 30,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            url.option(pair).map_err(|w| bad(&w))?;
        }
        if url.tls && url.ca.is_none() {
            return Err(bad(
                "mqtts needs the CA that signed the broker's certificate: add ?ca=/etc/edgeclr/ca.pem",
            ));
        }
        if url.password.is_some() && url.password_file.is_some() {
            return Err(bad(
                "give the password once: in the URL or as password_file, not both",
            ));
        }
        if (url.password.is_some() || url.password_file.is_some()) && url.user.is_none() {
            return Err(bad(
                "a password needs a user name: mqtt://USER@HOST/TOPIC?password_file=FILE",
            ));
        }
        Ok(url)
    }
}

impl MqttUrl {
    /// Applies one `key=value` option.
    fn option(&mut self, pair: &str) -> Result<(), String> {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if value.is_empty() {
            return Err(format!("option `{key}` needs a value ({key}=…)"));
        }
        match key {
            "qos" => {
                self.qos = match value {
                    "0" => 0,
                    "1" => 1,
                    _ => {
                        return Err(format!(
                            "qos={value}: use 0 (at most once) or 1 (at least once)"
                        ));
                    }
                }
            }
            "ca" if !self.tls => return Err("ca= is for mqtts:// (TLS) brokers".into()),
            "ca" => self.ca = Some(value.into()),
            "password_file" => self.password_file = Some(value.into()),
            "client_id" => self.client_id = Some(value.into()),
            "keepalive" => {
                self.keepalive_s = value
                    .parse::<u16>()
                    .ok()
                    .filter(|&k| k >= 5)
                    .ok_or_else(|| format!("keepalive={value}: seconds from 5 to 65535"))?;
            }
            _ => return Err(format!("unknown option `{key}`; the options are {OPTIONS}")),
        }
        Ok(())
    }

    /// The topic with `{board}` filled in.
    pub fn topic_for(&self, board: &str) -> String {
        self.topic.replace("{board}", board)
    }

    /// Where the retained status and the last will go: `TOPIC/status`.
    pub fn status_topic_for(&self, board: &str) -> String {
        format!("{}/status", self.topic_for(board))
    }

    /// The client id with `{board}` filled in.
    pub fn client_id_for(&self, board: &str) -> String {
        self.client_id
            .as_deref()
            .unwrap_or("edgeclr-{board}")
            .replace("{board}", board)
    }

    /// The password: from the URL, else the first line of `password_file`.
    ///
    /// # Errors
    /// An unreadable or empty password file, named.
    pub fn resolve_password(&self) -> Result<Option<String>, String> {
        let Some(file) = &self.password_file else {
            return Ok(self.password.clone());
        };
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("password_file {}: {e}", file.display()))?;
        let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
        if line.is_empty() {
            return Err(format!(
                "password_file {}: the first line (the password) is empty",
                file.display()
            ));
        }
        Ok(Some(line.to_string()))
    }
}

/// The URL as given, with the password replaced by `***` (for logs and reports).
impl std::fmt::Display for MqttUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://", if self.tls { "mqtts" } else { "mqtt" })?;
        if let Some(u) = &self.user {
            write!(f, "{}", percent_encode(u))?;
            if self.password.is_some() {
                write!(f, ":***")?;
            }
            write!(f, "@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]:{}/{}", self.host, self.port, self.topic)?;
        } else {
            write!(f, "{}:{}/{}", self.host, self.port, self.topic)?;
        }
        let mut options = vec![format!("qos={}", self.qos)];
        if let Some(c) = &self.ca {
            options.push(format!("ca={}", c.display()));
        }
        if let Some(p) = &self.password_file {
            options.push(format!("password_file={}", p.display()));
        }
        if let Some(c) = &self.client_id {
            options.push(format!("client_id={c}"));
        }
        if self.keepalive_s != 30 {
            options.push(format!("keepalive={}", self.keepalive_s));
        }
        write!(f, "?{}", options.join("&"))
    }
}

/// `s` with everything between `://` and the last `@` (before any `?`) hidden when it holds a
/// `:`, for messages about a URL that did not parse: a password with an unencoded `/` or `@`
/// stays hidden too.
pub fn redacted(s: &str) -> String {
    let Some((scheme, rest)) = s.split_once("://") else {
        return s.into();
    };
    let query = rest.find('?').unwrap_or(rest.len());
    match rest[..query].rfind('@') {
        Some(at) if rest[..at].contains(':') => {
            let user = rest[..at].split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***{}", &rest[at..])
        }
        _ => s.into(),
    }
}

/// `text` with every URL's `USER:PASS@` hidden (TOML errors quote the offending line).
pub fn redact_urls(text: &str) -> String {
    text.split_inclusive(['"', '\'', ' ', '\n'])
        .map(|part| {
            if part.contains("://") {
                redacted(part)
            } else {
                part.to_string()
            }
        })
        .collect()
}

fn host_port(s: &str, default: u16) -> Result<(String, u16), String> {
    let parse_port = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| {
                "the port is not a number from 1 to 65535 (in a password, percent-encode `/` `@` `:` as %2F %40 %3A)"
                    .to_string()
            })
    };
    let (host, port) = if let Some(v6) = s.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or("an IPv6 address needs its closing `]`")?;
        match after.strip_prefix(':') {
            Some(p) => (host, parse_port(p)?),
            None if after.is_empty() => (host, default),
            None => return Err(format!("unexpected `{after}` after the IPv6 address")),
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, parse_port(p)?),
            None => (s, default),
        }
    };
    if host.is_empty() {
        return Err("no broker host: mqtt://HOST[:PORT]/TOPIC".into());
    }
    Ok((host.into(), port))
}

fn check_topic(topic: &str) -> Result<(), String> {
    if topic.is_empty() {
        return Err("the topic after the broker is empty".into());
    }
    if topic.contains(['+', '#', '\0']) {
        return Err(format!(
            "topic `{topic}`: `+`, `#` are subscription wildcards, not allowed where a board publishes"
        ));
    }
    Ok(())
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            // Never echo the text: it may be a password.
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("a `%` is not followed by two hex digits (write `%` itself as %25)")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "a %XX escape makes invalid UTF-8".into())
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> MqttUrl {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn the_parts_and_their_defaults() {
        let u = parse("mqtt://broker.local/edgeclr/{board}/embeddings");
        assert_eq!(
            (u.host.as_str(), u.port, u.qos, u.tls),
            ("broker.local", 1883, 1, false)
        );
        assert_eq!(u.topic_for("cam-7"), "edgeclr/cam-7/embeddings");
        assert_eq!(
            u.status_topic_for("cam-7"),
            "edgeclr/cam-7/embeddings/status"
        );
        assert_eq!(u.client_id_for("cam-7"), "edgeclr-cam-7");
        assert_eq!(u.user, None);

        let u = parse("mqtts://fleet%40site:p%3Ass@[::1]:9000/t?qos=0&ca=/etc/ca.pem&keepalive=60");
        assert_eq!(u.user.as_deref(), Some("fleet@site"));
        assert_eq!(u.password.as_deref(), Some("p:ss"));
        assert_eq!(
            (u.host.as_str(), u.port, u.qos, u.keepalive_s),
            ("::1", 9000, 0, 60)
        );
        assert_eq!(u.ca, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(parse("mqtts://h/t?ca=c").port, 8883);
    }

    #[test]
    fn display_hides_the_password_and_parses_back_to_the_rest() {
        let u = parse("mqtt://cam:secret@10.0.0.2:1884/a/{board}?client_id=x-{board}");
        let shown = u.to_string();
        assert!(!shown.contains("secret"), "{shown}");
        assert_eq!(
            shown,
            "mqtt://cam:***@10.0.0.2:1884/a/{board}?qos=1&client_id=x-{board}"
        );
        let again = parse(&shown.replace(":***", ""));
        assert_eq!(
            again,
            MqttUrl {
                password: None,
                ..u
            }
        );
    }

    #[test]
    fn bad_urls_say_what_to_fix_without_echoing_the_password() {
        for (s, hint) in [
            ("mqtt://host", "name the topic"),
            ("mqtt:///t", "no broker host"),
            ("mqtt://h:0/t", "1 to 65535"),
            ("mqtt://u:pa/ss@h/t", "percent-encode"),
            ("mqtt://u:%aé@h/t", "two hex digits"),
            ("mqtt://h/t?qos=2", "use 0 (at most once) or 1"),
            ("mqtt://h/a/#", "wildcards"),
            ("mqtt://h/t?ca=x", "for mqtts://"),
            ("mqtts://h/t", "?ca="),
            ("mqtt://h/t?color=red", "qos, ca, password_file"),
            ("mqtt://h/t?keepalive=1", "from 5"),
            ("mqtt://:pw@h/t", "user name before `@` is empty"),
            ("mqtt://u:pw@h/t?password_file=f", "give the password once"),
            ("mqtt://u:p%zz@h/t", "two hex digits"),
        ] {
            let err = s.parse::<MqttUrl>().expect_err(s);
            assert!(err.contains(hint), "{s}: {err}");
            for secret in [":pw@", "pa/ss", "%aé", "%zz"] {
                assert!(!err.contains(secret), "{s}: {err}");
            }
        }
    }

    #[test]
    fn urls_inside_other_text_are_redacted() {
        let toml_error = "TOML parse error at line 3\n3 | outputs = [\"mqtt://cam:hunter2@h/t\"]\n";
        let shown = redact_urls(toml_error);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("mqtt://cam:***@h/t"), "{shown}");
    }

    #[test]
    fn the_password_file_gives_its_first_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("pw");
        std::fs::write(&f, "s3cret\nignored\n").expect("write");
        let u = parse(&format!("mqtt://cam@h/t?password_file={}", f.display()));
        assert_eq!(
            u.resolve_password().expect("read").as_deref(),
            Some("s3cret")
        );
        std::fs::write(&f, "\n").expect("write");
        assert!(
            u.resolve_password()
                .expect_err("empty")
                .contains("is empty")
        );
        let missing = parse("mqtt://cam@h/t?password_file=/nonexistent/pw");
        assert!(
            missing
                .resolve_password()
                .expect_err("missing")
                .contains("/nonexistent/pw")
        );
    }
}
