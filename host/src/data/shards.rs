//! Data bigger than RAM: WebDataset-layout tar shards (`shard-000000.tar` holding
//! `000000000.jpg` + `000000000.cls`, …) and `shards.json` (shard names, sample counts, class
//! names), written by `edgeclr shard` and streamed by `edgeclr pretrain`.
//!
//! The stream never holds the data set: shards are read one shard at a time in an order
//! permuted per pass from the seed, through a shuffle buffer of compressed samples, and each
//! batch is decoded on rayon's threads; memory is the shuffle buffer plus the batches in
//! flight. A pass is deterministic from `(seed, pass)`, so a position — pass and samples taken
//! from it — is all a checkpoint needs to resume on the right sample. Entries that do not
//! decode are skipped and counted, as the folder loader does.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use edgeclr_artifact::RgbImage;
use edgeclr_artifact::atomic::write_atomic;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tracing::warn;

use super::UNLABELED;

/// The index file beside the shards.
pub const INDEX: &str = "shards.json";

/// One shard in the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardEntry {
    /// File name inside the shard folder.
    pub file: String,
    /// Samples it holds.
    pub samples: usize,
}

/// `shards.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardIndex {
    /// The shards, in writing order.
    pub shards: Vec<ShardEntry>,
    /// Class names by label (empty for unlabelled data).
    pub classes: Vec<String>,
}

impl ShardIndex {
    /// Reads `dir/shards.json`.
    ///
    /// # Errors
    /// A missing or malformed index, or a listed shard that is missing.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(INDEX);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "{}: no shard index; write shards with `edgeclr shard`",
                path.display()
            )
        })?;
        let index: Self = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a shard index", path.display()))?;
        let plain = |f: &str| !f.is_empty() && !f.contains('/') && f != ".." && f != ".";
        if let Some(bad) = index.shards.iter().find(|s| !plain(&s.file)) {
            bail!(
                "{} lists `{}`; shard entries are plain file names in the index's folder",
                path.display(),
                bad.file
            );
        }
        if index
            .shards
            .iter()
            .try_fold(0usize, |n, s| n.checked_add(s.samples))
            .is_none()
        {
            bail!(
                "{}: sample counts overflow; the index is corrupt",
                path.display()
            );
        }
        if let Some(missing) = index.shards.iter().find(|s| !dir.join(&s.file).is_file()) {
            bail!(
                "{} lists {} but it is missing; copy the whole shard folder",
                path.display(),
                missing.file
            );
        }
        Ok(index)
    }

    /// Samples in all shards.
    pub fn samples(&self) -> usize {
        self.shards.iter().map(|s| s.samples).sum()
    }
}

/// Tar shards being written: samples go into the open shard, which is closed and renamed
/// into place every `per_shard` samples.
pub struct ShardWriter {
    out: PathBuf,
    per_shard: usize,
    open: Option<(tar::Builder<BufWriter<File>>, ShardEntry)>,
    index: ShardIndex,
    next_key: u64,
}

fn tmp_name(file: &str) -> String {
    format!(".{file}.partial")
}

impl ShardWriter {
    /// Shards of `per_shard` samples into `out` (which must exist), labelled by `classes`.
    pub fn new(out: &Path, per_shard: usize, classes: Vec<String>) -> Self {
        Self {
            out: out.to_path_buf(),
            per_shard: per_shard.max(1),
            open: None,
            index: ShardIndex {
                shards: Vec::new(),
                classes,
            },
            next_key: 0,
        }
    }

    fn append(b: &mut tar::Builder<BufWriter<File>>, name: &str, bytes: &[u8]) -> Result<()> {
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_cksum();
        b.append_data(&mut header, name, bytes)?;
        Ok(())
    }

    /// Adds one sample (`ext`: `jpg` or `png`), with its label unless it has none.
    ///
    /// # Errors
    /// A write failure.
    pub fn add(&mut self, bytes: &[u8], ext: &str, label: u16) -> Result<()> {
        if self.open.is_none() {
            let file = format!("shard-{:06}.tar", self.index.shards.len());
            let path = self.out.join(tmp_name(&file));
            let f = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
            let entry = ShardEntry { file, samples: 0 };
            self.open = Some((tar::Builder::new(BufWriter::new(f)), entry));
        }
        let key = format!("{:09}", self.next_key);
        self.next_key += 1;
        let Some((builder, entry)) = self.open.as_mut() else {
            bail!("no open shard");
        };
        Self::append(builder, &format!("{key}.{ext}"), bytes)?;
        if label != UNLABELED {
            Self::append(builder, &format!("{key}.cls"), label.to_string().as_bytes())?;
        }
        entry.samples += 1;
        if entry.samples == self.per_shard {
            self.close()?;
        }
        Ok(())
    }

    /// Finishes the open shard and renames it into place.
    fn close(&mut self) -> Result<()> {
        let Some((builder, entry)) = self.open.take() else {
            return Ok(());
        };
        let mut w = builder.into_inner()?;
        w.flush()?;
        w.into_inner()
            .map_err(|e| anyhow::anyhow!("{}", e.error()))?
            .sync_all()?;
        std::fs::rename(
            self.out.join(tmp_name(&entry.file)),
            self.out.join(&entry.file),
        )?;
        self.index.shards.push(entry);
        Ok(())
    }

    /// Closes the last shard and writes `shards.json`.
    ///
    /// # Errors
    /// A write failure.
    pub fn finish(mut self) -> Result<ShardIndex> {
        self.close()?;
        write_atomic(
            &self.out.join(INDEX),
            serde_json::to_string_pretty(&self.index)?.as_bytes(),
        )?;
        Ok(self.index)
    }
}

/// One sample as stored: its key, encoded image bytes and label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawSample {
    /// The WebDataset key (`shard-000003.tar/000001234`).
    pub key: String,
    /// The encoded image (JPEG or PNG).
    pub bytes: Vec<u8>,
    /// Its class, or [`UNLABELED`].
    pub label: u16,
}

/// Where a stream stands: the pass and how many samples it has yielded in that pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Pass over the shards (each pass has its own shard order and shuffle).
    pub pass: u64,
    /// Samples yielded from this pass.
    pub taken: u64,
}

/// The entries of one tar shard as samples (image and `.cls` with the same key are adjacent).
fn read_shard(path: &Path, name: &str, out: &mut Vec<RawSample>) -> Result<()> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut archive = tar::Archive::new(BufReader::new(file));
    let mut pending: Option<RawSample> = None;
    for entry in archive.entries()? {
        let mut entry = entry?;
        let entry_path = entry.path()?.to_string_lossy().into_owned();
        let Some((stem, ext)) = entry_path.rsplit_once('.') else {
            continue;
        };
        let ext = ext.to_ascii_lowercase();
        if !matches!(ext.as_str(), "jpg" | "jpeg" | "png" | "cls") {
            continue; // not part of a sample (a README, a .json sidecar)
        }
        let key = format!("{name}/{stem}");
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes)?;
        if pending.as_ref().is_some_and(|p| p.key != key) {
            out.extend(pending.take());
        }
        let sample = pending.get_or_insert_with(|| RawSample {
            key,
            bytes: Vec::new(),
            label: UNLABELED,
        });
        match ext.as_str() {
            "jpg" | "jpeg" | "png" => sample.bytes = bytes,
            "cls" => {
                sample.label = std::str::from_utf8(&bytes)
                    .ok()
                    .and_then(|t| t.trim().parse().ok())
                    .unwrap_or(UNLABELED);
            }
            _ => {}
        }
    }
    out.extend(pending);
    Ok(())
}

/// A pass over the shards: shard order permuted from `(seed, pass)`, one shard read at a
/// time, samples drawn uniformly from a buffer of `buffer` samples.
pub struct ShardStream {
    dir: PathBuf,
    shards: Vec<ShardEntry>,
    next_shard: usize,
    loaded: std::vec::IntoIter<RawSample>,
    buffer: Vec<RawSample>,
    capacity: usize,
    rng: ChaCha8Rng,
    position: Position,
    /// Shards that could not be read (truncated, not tar), skipped.
    pub unreadable_shards: usize,
}

impl ShardStream {
    /// Pass `pass` of the shards in `dir`, fast-forwarded past its first `skip` samples.
    ///
    /// # Errors
    /// A missing or malformed index.
    pub fn open(dir: &Path, seed: u64, pass: u64, buffer: usize, skip: u64) -> Result<Self> {
        let index = ShardIndex::load(dir)?;
        // One ChaCha stream per pass of the run's seed (as `epoch_order` does per epoch).
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(pass);
        let mut shards = index.shards;
        shards.shuffle(&mut rng);
        let mut s = Self {
            dir: dir.to_path_buf(),
            shards,
            next_shard: 0,
            loaded: Vec::new().into_iter(),
            buffer: Vec::new(),
            capacity: buffer.max(1),
            rng,
            position: Position { pass, taken: 0 },
            unreadable_shards: 0,
        };
        for _ in 0..skip {
            if s.next().is_none() {
                bail!(
                    "{}: pass {pass} ends after {} samples but the checkpoint had taken {skip}; \
                     the shards changed since — resume with the shards the run started on",
                    dir.display(),
                    s.position.taken
                );
            }
        }
        Ok(s)
    }

    /// Where the stream stands.
    pub fn position(&self) -> Position {
        self.position
    }

    /// The next stored sample in shard order, reading the next shard when one runs out.
    fn next_stored(&mut self) -> Option<RawSample> {
        loop {
            if let Some(s) = self.loaded.next() {
                return Some(s);
            }
            let shard = self.shards.get(self.next_shard)?.clone();
            self.next_shard += 1;
            let mut samples = Vec::new();
            if let Err(e) = read_shard(&self.dir.join(&shard.file), &shard.file, &mut samples) {
                warn!("{}: {e:#}; skipping the rest of this shard", shard.file);
                self.unreadable_shards += 1;
            }
            self.loaded = samples.into_iter();
        }
    }
}

impl Iterator for ShardStream {
    type Item = RawSample;

    fn next(&mut self) -> Option<RawSample> {
        while self.buffer.len() < self.capacity {
            match self.next_stored() {
                Some(s) => self.buffer.push(s),
                None => break,
            }
        }
        if self.buffer.is_empty() {
            return None;
        }
        let i = self.rng.random_range(0..self.buffer.len());
        self.position.taken += 1;
        Some(self.buffer.swap_remove(i))
    }
}

/// Decodes one stored image (downscaled as the folder loader does).
///
/// # Errors
/// Bytes that are not a JPEG/PNG image, naming the key.
pub fn decode(sample: &RawSample) -> Result<RgbImage> {
    let img = image::load_from_memory(&sample.bytes)
        .map_err(|e| anyhow::anyhow!("{}: {e}", sample.key))?;
    super::folder::to_rgb(img)
}

/// Batches of decoded images from consecutive passes over the shards: the stream behind
/// `edgeclr pretrain --data SHARD_DIR`.
pub struct ShardBatches {
    dir: PathBuf,
    seed: u64,
    buffer: usize,
    stream: ShardStream,
    /// Samples that did not decode, skipped.
    pub corrupt: usize,
}

impl ShardBatches {
    /// Batches starting at `at` (a checkpoint's position; the default is the beginning),
    /// with `corrupt` samples already skipped before it.
    ///
    /// # Errors
    /// A missing or malformed index; a position past the end of its pass.
    pub fn open(
        dir: &Path,
        seed: u64,
        buffer: usize,
        at: Position,
        corrupt: usize,
    ) -> Result<Self> {
        Ok(Self {
            dir: dir.to_path_buf(),
            seed,
            buffer,
            stream: ShardStream::open(dir, seed, at.pass, buffer, at.taken)?,
            corrupt,
        })
    }

    /// The position after the last batch returned.
    pub fn position(&self) -> Position {
        self.stream.position()
    }

    /// The next stored sample, starting the next pass when this one ends.
    fn next_raw(&mut self) -> Result<RawSample> {
        if let Some(s) = self.stream.next() {
            return Ok(s);
        }
        let pass = self.stream.position().pass + 1;
        self.stream = ShardStream::open(&self.dir, self.seed, pass, self.buffer, 0)?;
        self.stream
            .next()
            .with_context(|| format!("{}: the shards hold no readable sample", self.dir.display()))
    }

    /// `n` decoded images (and labels); samples that do not decode are replaced by the next.
    ///
    /// # Errors
    /// When the shards hold no readable sample at all.
    pub fn next_batch(&mut self, n: usize) -> Result<(Vec<RgbImage>, Vec<u16>)> {
        let (mut images, mut labels) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let mut attempts = 0usize;
        while images.len() < n {
            let raw: Vec<RawSample> = (images.len()..n)
                .map(|_| self.next_raw())
                .collect::<Result<_>>()?;
            attempts += raw.len();
            let decoded: Vec<(Result<RgbImage>, u16)> =
                raw.par_iter().map(|s| (decode(s), s.label)).collect();
            for (img, label) in decoded {
                match img {
                    Ok(img) => {
                        images.push(img);
                        labels.push(label);
                    }
                    Err(e) => {
                        warn!("skipping {e:#}");
                        self.corrupt += 1;
                    }
                }
            }
            if attempts > 64 * n.max(1) && images.is_empty() {
                bail!(
                    "{}: no sample decodes; are these image shards?",
                    self.dir.display()
                );
            }
        }
        Ok((images, labels))
    }
}

#[cfg(test)]
mod tests;
