//! `edgeclr flash --to-file boards.txt`: a staged rollout. The bundle is verified here once;
//! the first `--canary` boards are flashed (and self-tested) first; a failed canary stops the
//! rollout with every other board untouched; then the rest, `--parallel` at a time. Each
//! board is one `edgeclr flash --to …` child process (its own output, its own failure), whose
//! outcome — versions before and after, self-test summary, rolled back or not — goes into
//! one JSON report and a table.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::release::FlashArgs;
use crate::ssh::Target;

/// Which wave a board is in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Flashed first; any failure stops the rollout.
    Canary,
    /// Flashed after every canary passed.
    #[default]
    Rest,
}

/// How a board's flash ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Flashed and self-tested.
    Ok,
    /// Refused, unreachable, or failed its self-test (see `rolled_back`).
    Failed,
    /// Not attempted: a canary failed.
    #[default]
    Skipped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Ok => "ok",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        })
    }
}

/// What happened to one board.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// The `--to` target.
    pub target: String,
    /// Canary or the rest.
    pub phase: Phase,
    /// Ok, failed, or skipped.
    pub status: Status,
    /// The release current before.
    pub before: Option<String>,
    /// The release current after.
    pub after: Option<String>,
    /// The bundle's version, once verified.
    pub version: Option<String>,
    /// `PASS: 8 ok, 1 skipped` or `FAIL: embed-tract-int8, …`, when the self-test ran.
    pub selftest: Option<String>,
    /// The new release failed its self-test and the board went back to `before`.
    pub rolled_back: bool,
    /// Why it failed.
    pub error: Option<String>,
    /// Wall time of this board's flash.
    pub seconds: f64,
    /// Line order in the boards file (names the board's result and log files).
    #[serde(skip)]
    pub index: usize,
}

impl Outcome {
    /// A board not yet flashed.
    pub fn new(target: &str) -> Self {
        Self {
            target: target.into(),
            ..Self::default()
        }
    }

    /// Records how the flash ended.
    pub fn finish(&mut self, error: Option<&anyhow::Error>, took: Duration) {
        self.status = if error.is_some() {
            Status::Failed
        } else {
            Status::Ok
        };
        self.error = error.map(|e| format!("{e:#}"));
        self.seconds = (took.as_secs_f64() * 10.0).round() / 10.0;
    }
}

/// `PASS: 8 ok, 1 skipped` / `FAIL: name, name` from `edgeclr-device selftest`'s summary
/// lines (`  [ ok ] name  detail`); None when the text holds no self-test.
pub fn selftest_summary(text: &str) -> Option<String> {
    let (mut ok, mut skipped, mut failed) = (0, 0, Vec::new());
    for line in text.lines().map(str::trim_start) {
        if let Some(rest) = line.strip_prefix("[FAIL]") {
            failed.push(rest.split_whitespace().next().unwrap_or("?").to_string());
        } else if line.starts_with("[ ok ]") {
            ok += 1;
        } else if line.starts_with("[skip]") {
            skipped += 1;
        }
    }
    match (ok + skipped, failed.is_empty()) {
        (0, true) => None,
        (_, true) => Some(format!("PASS: {ok} ok, {skipped} skipped")),
        (_, false) => Some(format!("FAIL: {}", failed.join(", "))),
    }
}

/// The targets in `file`: one per line, `#` starts a comment, blank lines skipped.
///
/// # Errors
/// An unreadable file, a line that is not a target, a board listed twice, no boards.
pub fn read_boards(file: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading --to-file {}", file.display()))?;
    let mut boards: Vec<String> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let t = line.split('#').next().unwrap_or("").trim();
        if t.is_empty() {
            continue;
        }
        t.parse::<Target>()
            .map_err(|e| anyhow::anyhow!("{}:{}: {e}", file.display(), n + 1))?;
        if boards.iter().any(|b| b == t) {
            bail!("{}:{}: {t} is listed twice", file.display(), n + 1);
        }
        boards.push(t.to_string());
    }
    if boards.is_empty() {
        bail!(
            "{}: no boards (one dir:ROOT or ssh://USER@HOST per line)",
            file.display()
        );
    }
    Ok(boards)
}

/// Runs the rollout; fails when any board failed (after writing the report).
///
/// # Errors
/// A bad boards file or `--parallel 0` before anything changes; then any failed board.
pub fn run(args: &FlashArgs, file: &Path) -> Result<()> {
    let boards = read_boards(file)?;
    if args.parallel == 0 {
        bail!("--parallel 0: flash at least one board at a time");
    }
    // The bundle is checked here once (and against --key): a broken or unsigned bundle stops
    // before any board is touched, canaries or not.
    crate::release::verify_bundle(args)?;
    let canaries = args.canary.min(boards.len());
    let mut outcomes: Vec<Outcome> = boards.iter().map(|b| Outcome::new(b)).collect();
    for (i, o) in outcomes.iter_mut().enumerate() {
        o.phase = if i < canaries {
            Phase::Canary
        } else {
            Phase::Rest
        };
        o.index = i;
    }
    let bar = indicatif::ProgressBar::new(boards.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} boards {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    // Each board's output, kept beside the report: `rollout.json` → `rollout.logs/3.log`.
    let scratch = args.report.with_extension("logs");
    std::fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
    bar.set_message("canaries");
    flash_many(args, &mut outcomes[..canaries], &scratch, &bar);
    let canary_failed = outcomes[..canaries].iter().any(|o| o.status != Status::Ok);
    if !canary_failed {
        bar.set_message("the rest");
        flash_many(args, &mut outcomes[canaries..], &scratch, &bar);
    }
    bar.finish_and_clear();
    let report = serde_json::json!({
        "bundle": args.bundle,
        "canary": canaries,
        "parallel": args.parallel,
        "stopped_by_canary": canary_failed,
        "boards": outcomes,
    });
    edgeclr_artifact::atomic::write_atomic(&args.report, &serde_json::to_vec_pretty(&report)?)?;
    print!("{}", table(&outcomes));
    println!(
        "report: {} (each board's output: {}/)",
        args.report.display(),
        scratch.display()
    );
    let failed = outcomes
        .iter()
        .filter(|o| o.status == Status::Failed)
        .count();
    if canary_failed {
        bail!(
            "a canary failed: rollout stopped, {} boards untouched",
            outcomes
                .iter()
                .filter(|o| o.status == Status::Skipped)
                .count()
        );
    }
    if failed > 0 {
        bail!(
            "{failed} of {} boards failed (see the table)",
            outcomes.len()
        );
    }
    Ok(())
}

/// Flashes `boards` with up to `--parallel` children at once.
fn flash_many(
    args: &FlashArgs,
    boards: &mut [Outcome],
    scratch: &Path,
    bar: &indicatif::ProgressBar,
) {
    let next = AtomicUsize::new(0);
    let slots: Vec<Mutex<&mut Outcome>> = boards.iter_mut().map(Mutex::new).collect();
    std::thread::scope(|scope| {
        for _ in 0..args.parallel.min(slots.len()) {
            scope.spawn(|| {
                while let Some(slot) = slots.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let mut o = slot.lock().expect("outcome lock");
                    let (phase, index, target) = (o.phase, o.index, o.target.clone());
                    **o = Outcome {
                        phase,
                        index,
                        ..flash_child(args, &target, &scratch.join(index.to_string()))
                    };
                    bar.println(format!("{:<8} {}", o.status, o.target));
                    bar.inc(1);
                }
            });
        }
    });
}

/// `edgeclr flash --to TARGET --result-json …` with this rollout's options, killed after
/// `--board-timeout`; its output goes to `stem.log`, its outcome comes from `stem.json`.
fn flash_child(args: &FlashArgs, target: &str, stem: &Path) -> Outcome {
    let result = stem.with_extension("json");
    let started = std::time::Instant::now();
    let ran = run_child(args, target, &result, &stem.with_extension("log"));
    let read = std::fs::read(&result)
        .ok()
        .and_then(|b| serde_json::from_slice::<Outcome>(&b).ok())
        .filter(|o| o.target == target);
    match (read, ran) {
        (Some(o), _) => o,
        (None, ran) => {
            let mut o = Outcome::new(target);
            let why = ran.err().map_or_else(
                || "edgeclr flash wrote no result".into(),
                |e| format!("{e:#}"),
            );
            o.finish(Some(&anyhow::anyhow!(why)), started.elapsed());
            o
        }
    }
}

/// Runs the child with its output in `log`, killing it after `--board-timeout` seconds.
fn run_child(args: &FlashArgs, target: &str, result: &Path, log: &Path) -> Result<()> {
    let exe = std::env::current_exe().context("finding the edgeclr binary")?;
    let out = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut child = Command::new(exe)
        .args(child_args(args, target, result))
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .context("starting edgeclr flash")?;
    let deadline = std::time::Instant::now() + Duration::from_secs(args.board_timeout);
    loop {
        if let Some(status) = child.try_wait()? {
            return if status.success() || result.exists() {
                Ok(())
            } else {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(3).collect();
                bail!(
                    "edgeclr flash failed ({status}): {}",
                    tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
                )
            };
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "no answer within --board-timeout {} s; stopped",
                args.board_timeout
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The child's arguments: every option of this `flash` that applies to one board.
fn child_args(args: &FlashArgs, target: &str, result: &Path) -> Vec<String> {
    let mut v: Vec<String> = ["flash", "--bundle"].map(String::from).to_vec();
    v.push(args.bundle.display().to_string());
    v.extend([
        "--to".into(),
        target.into(),
        "--result-json".into(),
        result.display().to_string(),
    ]);
    let paths: [(&str, &Option<PathBuf>); 4] = [
        ("--identity", &args.identity),
        ("--known-hosts", &args.known_hosts),
        ("--key", &args.key),
        ("--trust-on-first-use", &args.trust_on_first_use),
    ];
    for (flag, p) in paths.iter().filter_map(|(f, p)| p.as_ref().map(|p| (f, p))) {
        v.extend([flag.to_string(), p.display().to_string()]);
    }
    let texts: [(&str, &Option<String>); 3] = [
        ("--selftest-source", &args.selftest_source),
        ("--selftest-display", &args.selftest_display),
        ("--runner", &args.runner),
    ];
    for (flag, t) in texts.iter().filter_map(|(f, t)| t.as_ref().map(|t| (f, t))) {
        v.extend([flag.to_string(), t.clone()]);
    }
    v.extend([
        "--service".into(),
        args.service.clone(),
        "--keep".into(),
        args.keep.to_string(),
    ]);
    if let Some(k) = args.limit_kbps {
        v.extend(["--limit-kbps".into(), k.to_string()]);
    }
    if args.rollback {
        v.push("--rollback".into());
    }
    v
}

/// One line per board: target, phase, status, before → after, self-test, rollback.
pub fn table(outcomes: &[Outcome]) -> String {
    let width = outcomes
        .iter()
        .map(|o| o.target.len())
        .max()
        .unwrap_or(6)
        .max(6);
    let none = || "-".to_string();
    let mut t = format!(
        "{:<width$}  {:<6}  {:<7}  {:<30}  {:<32}  rolled back\n",
        "board", "phase", "status", "before → after", "self-test"
    );
    for o in outcomes {
        let versions = format!(
            "{} → {}",
            o.before.clone().unwrap_or_else(none),
            o.after.clone().unwrap_or_else(none)
        );
        t += &format!(
            "{:<width$}  {:<6}  {:<7}  {:<30}  {:<32}  {}\n",
            o.target,
            format!("{:?}", o.phase).to_lowercase(),
            o.status.to_string(),
            versions,
            o.selftest.clone().unwrap_or_else(none),
            if o.rolled_back { "yes" } else { "no" }
        );
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_boards_file_takes_comments_and_refuses_bad_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("boards.txt");
        std::fs::write(
            &f,
            "# canaries first\ndir:/tmp/a\n\n  ssh://pi@cam-2:2222/opt/edgeclr  # north gate\n",
        )
        .expect("w");
        assert_eq!(
            read_boards(&f).expect("read"),
            ["dir:/tmp/a", "ssh://pi@cam-2:2222/opt/edgeclr"]
        );
        for (text, why) in [
            ("dir:/a\nftp://x\n", "boards.txt:2"),
            ("dir:/a\ndir:/a\n", "listed twice"),
            ("# nothing\n", "no boards"),
        ] {
            std::fs::write(&f, text).expect("w");
            let err = read_boards(&f).expect_err(text).to_string();
            assert!(err.contains(why), "{text:?}: {err}");
        }
    }

    #[test]
    fn selftest_summaries_count_marks() {
        let pass = "edgeclr selftest on x with m\n  [ ok ] camera   ok\n  [skip] gpu   none\n  [ ok ] embed  1 ms\nPASS\n";
        assert_eq!(
            selftest_summary(pass).as_deref(),
            Some("PASS: 2 ok, 1 skipped")
        );
        let fail = "  [ ok ] camera  ok\n  [FAIL] state   not writable\n  [FAIL] embed-tract-fp32  x\nFAIL\n";
        assert_eq!(
            selftest_summary(fail).as_deref(),
            Some("FAIL: state, embed-tract-fp32")
        );
        assert_eq!(selftest_summary("refused: bad signature"), None);
    }

    #[test]
    fn children_get_every_per_board_option() {
        let mut a = FlashArgs::new("b.tar".into(), String::new());
        a.identity = Some("id".into());
        a.selftest_source = Some("mjpeg:c".into());
        a.service = String::new();
        let v = child_args(&a, "dir:/x", Path::new("/r.json"));
        let s = v.join(" ");
        assert!(
            s.starts_with("flash --bundle b.tar --to dir:/x --result-json /r.json"),
            "{s}"
        );
        assert!(
            s.contains("--identity id") && s.contains("--selftest-source mjpeg:c"),
            "{s}"
        );
        assert!(v.windows(2).any(|w| w == ["--service", ""]), "{v:?}");
    }
}
