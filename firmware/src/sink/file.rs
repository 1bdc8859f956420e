//! File sinks: JSON lines (stdout or a file, one object per embedding, flushed per line so a
//! reader sees frames as they come) and `.npy` (float32 `[n, dim]`, rows streamed to a side
//! file and assembled atomically at shutdown).

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use super::{Embedding, EmbeddingSink};
use crate::error::SinkError;

fn io(target: &str) -> impl FnOnce(std::io::Error) -> SinkError + '_ {
    move |source| SinkError::Io {
        target: target.into(),
        source,
    }
}

/// `jsonl:-` or `jsonl:FILE`.
pub struct JsonlSink {
    target: String,
    out: Box<dyn Write + Send>,
}

impl JsonlSink {
    /// Opens stdout (`-`) or creates/truncates `path`.
    ///
    /// # Errors
    /// [`SinkError::Io`] when the file cannot be created.
    pub fn open(path: &str) -> Result<Self, SinkError> {
        let out: Box<dyn Write + Send> = if path == "-" {
            Box::new(std::io::stdout())
        } else {
            Box::new(BufWriter::new(File::create(path).map_err(io(path))?))
        };
        Ok(Self {
            target: path.into(),
            out,
        })
    }
}

impl EmbeddingSink for JsonlSink {
    fn push(&mut self, e: &Embedding) -> Result<(), SinkError> {
        let line = serde_json::to_string(e).expect("embeddings serialise");
        writeln!(self.out, "{line}").map_err(io(&self.target))?;
        self.out.flush().map_err(io(&self.target))
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.out.flush().map_err(io(&self.target))
    }

    fn describe(&self) -> String {
        format!("jsonl:{}", self.target)
    }
}

/// `npy:FILE` — rows go to `FILE.rows` as they come; `flush` writes `FILE` (header + rows)
/// through a temp file and rename, then removes the side file.
pub struct NpySink {
    path: PathBuf,
    rows_path: PathBuf,
    rows: BufWriter<File>,
    n: usize,
    dim: usize,
}

impl NpySink {
    /// Creates the side file next to `path`.
    ///
    /// # Errors
    /// [`SinkError::Io`] when it cannot be created.
    pub fn open(path: &str) -> Result<Self, SinkError> {
        let path = PathBuf::from(path);
        let rows_path = path.with_extension("npy.rows");
        let rows =
            BufWriter::new(File::create(&rows_path).map_err(io(path.to_str().unwrap_or("npy")))?);
        Ok(Self {
            path,
            rows_path,
            rows,
            n: 0,
            dim: 0,
        })
    }
}

fn assemble(path: &Path, rows_path: &Path, n: usize, dim: usize) -> std::io::Result<()> {
    let tmp = path.with_extension("npy.tmp");
    {
        let mut out = BufWriter::new(File::create(&tmp)?);
        out.write_all(&edgeclr_artifact::npy::header("<f4", &[n, dim]))?;
        let mut rows = File::open(rows_path)?;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let k = rows.read(&mut buf)?;
            if k == 0 {
                break;
            }
            out.write_all(&buf[..k])?;
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

impl EmbeddingSink for NpySink {
    fn push(&mut self, e: &Embedding) -> Result<(), SinkError> {
        if self.n == 0 {
            self.dim = e.vector.len();
        } else if e.vector.len() != self.dim {
            return Err(SinkError::Invalid(format!(
                "{}: embedding of {} values after rows of {}; one npy holds one model",
                self.path.display(),
                e.vector.len(),
                self.dim
            )));
        }
        let target = self.path.display().to_string();
        for v in &e.vector {
            self.rows.write_all(&v.to_le_bytes()).map_err(io(&target))?;
        }
        self.n += 1;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        let target = self.path.display().to_string();
        self.rows.flush().map_err(io(&target))?;
        assemble(&self.path, &self.rows_path, self.n, self.dim).map_err(io(&target))?;
        let _ = std::fs::remove_file(&self.rows_path);
        Ok(())
    }

    fn describe(&self) -> String {
        format!("npy:{}", self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emb(id: u64, v: Vec<f32>) -> Embedding {
        Embedding {
            frame_id: id,
            timestamp_us: 1_700_000_000_000_000 + id,
            model_version: "run-abc".into(),
            vector: v,
        }
    }

    #[test]
    fn jsonl_lines_carry_id_time_version_vector() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("e.jsonl");
        let mut s = JsonlSink::open(p.to_str().expect("utf-8")).expect("open");
        s.push(&emb(3, vec![0.5, -1.0])).expect("push");
        s.flush().expect("flush");
        let line: serde_json::Value =
            serde_json::from_str(std::fs::read_to_string(&p).expect("read").trim()).expect("json");
        assert_eq!(line["frame_id"], 3);
        assert_eq!(line["model_version"], "run-abc");
        assert_eq!(line["vector"], serde_json::json!([0.5, -1.0]));
        assert_eq!(line["timestamp_us"], 1_700_000_000_000_003u64);
    }

    #[test]
    fn npy_is_assembled_at_flush() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("e.npy");
        let mut s = NpySink::open(p.to_str().expect("utf-8")).expect("open");
        s.push(&emb(0, vec![1.0, 2.0, 3.0])).expect("push");
        s.push(&emb(1, vec![4.0, 5.0, 6.0])).expect("push");
        assert!(
            s.push(&emb(2, vec![1.0])).is_err(),
            "rows must agree in length"
        );
        s.flush().expect("flush");
        let bytes = std::fs::read(&p).expect("npy");
        let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + hlen) % 64, 0);
        assert!(
            std::str::from_utf8(&bytes[10..10 + hlen])
                .expect("ascii")
                .contains("'shape': (2, 3)")
        );
        let vals: Vec<f32> = bytes[10 + hlen..]
            .chunks(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(vals, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert!(!p.with_extension("npy.rows").exists(), "side file removed");
    }
}
