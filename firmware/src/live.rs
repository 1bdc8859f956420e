//! The running model, swappable while frames flow: embedding workers check a generation
//! counter per frame (one atomic load) and fork a fresh state (a tract state, an onnxruntime
//! session) from the new model when it changes; frames in flight finish on the old one.
//! Nothing is dropped by a swap.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use edgeclr_runtime::embed::{EmbedError, Embedder};

/// The current embedder and its version.
#[derive(Debug)]
pub struct LiveModel {
    generation: AtomicU64,
    /// The model and its version; workers fork their own states from it (embedders are
    /// `Send` but not `Sync`, hence the mutex).
    current: Mutex<(Box<dyn Embedder>, Arc<str>)>,
}

/// A worker's view of the live model: its own state and the version it embeds with.
pub struct Worker {
    generation: u64,
    embedder: Box<dyn Embedder>,
    version: Arc<str>,
}

impl LiveModel {
    /// Starts with `embedder` at `version`.
    pub fn new(embedder: Box<dyn Embedder>, version: &str) -> Self {
        Self {
            generation: AtomicU64::new(0),
            current: Mutex::new((embedder, Arc::from(version))),
        }
    }

    /// Replaces the model; workers pick it up at their next frame.
    pub fn swap(&self, embedder: Box<dyn Embedder>, version: &str) {
        *self.current.lock().expect("live model lock") = (embedder, Arc::from(version));
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The current version.
    pub fn version(&self) -> Arc<str> {
        self.current.lock().expect("live model lock").1.clone()
    }

    /// Number of swaps so far.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// A worker state on the current model.
    ///
    /// # Errors
    /// When the runtime cannot create a state.
    pub fn worker(&self) -> Result<Worker, EmbedError> {
        let generation = self.generation();
        let current = self.current.lock().expect("live model lock");
        Ok(Worker {
            generation,
            embedder: current.0.fork_boxed()?,
            version: current.1.clone(),
        })
    }
}

impl Worker {
    /// Embeds `chw` with the newest model, re-forking first if it changed; returns the vector
    /// and the version that produced it.
    ///
    /// # Errors
    /// Runtime failures.
    pub fn embed(
        &mut self,
        live: &LiveModel,
        chw: &[f32],
    ) -> Result<(Vec<f32>, Arc<str>), EmbedError> {
        if live.generation() != self.generation {
            *self = live.worker()?;
        }
        Ok((self.embedder.embed(chw)?, self.version.clone()))
    }
}
