//! An in-memory sink: the test double of [`super::EmbeddingSink`].

use std::sync::{Arc, Mutex};

use super::{Embedding, EmbeddingSink};
use crate::error::SinkError;

/// Collects embeddings into a shared vector.
#[derive(Debug, Clone, Default)]
pub struct MemorySink {
    /// Everything pushed, in order.
    pub items: Arc<Mutex<Vec<Embedding>>>,
}

impl EmbeddingSink for MemorySink {
    fn push(&mut self, e: &Embedding) -> Result<(), SinkError> {
        self.items.lock().expect("memory sink lock").push(e.clone());
        Ok(())
    }

    fn describe(&self) -> String {
        "memory".into()
    }
}
