//! Where a tract plan spends its time, op by op: the measurement behind every change to what
//! we export for tract (docs/export.md, "Per-op profile"). [`TractModel::profile`] runs the
//! optimised plan through tract's own evaluation hook, timing each node, and reports the
//! mean per run; [`Profile::by_kind`] sums nodes of one op kind and element type, which is
//! how "no float convolution left in the int8 plan" is read off.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Instant;

use serde::Serialize;
use tract_onnx::prelude::*;

use crate::embed::EmbedError;
use crate::tract::TractModel;

/// One node of the optimised plan and its mean time per run.
#[derive(Debug, Clone, Serialize)]
pub struct OpTime {
    /// The node's name in the optimised graph (derived from the exported node's name).
    pub node: String,
    /// tract's op name (`OptMatMul`, `Pad`, `OptMaxByScalar`, …).
    pub op: String,
    /// Element type of the node's first output (`F32`, `I8`, `I32`, …).
    pub output_type: String,
    /// What tract reports about the op: the matmul kernel chosen, fused ops, …
    pub info: String,
    /// Mean milliseconds per run.
    pub ms: f64,
}

/// Per-op time of one plan on one input.
#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    /// Every node that ran, in plan order.
    pub ops: Vec<OpTime>,
    /// Sum of the per-node means (excludes the tract loop between nodes).
    pub total_ms: f64,
    /// Mean wall time of a whole run (input tensor, every node, tract's loop between them):
    /// `wall_ms − total_ms` is what no op accounts for.
    pub wall_ms: f64,
    /// Timed runs averaged (after one warm-up run).
    pub rounds: usize,
}

impl Profile {
    /// Time per (op kind, output type), largest first: `(kind, nodes, ms)`.
    pub fn by_kind(&self) -> Vec<(String, usize, f64)> {
        let mut sums: BTreeMap<String, (usize, f64)> = BTreeMap::new();
        for op in &self.ops {
            let entry = sums
                .entry(format!("{} {}", op.op, op.output_type))
                .or_default();
            entry.0 += 1;
            entry.1 += op.ms;
        }
        let mut kinds: Vec<(String, usize, f64)> =
            sums.into_iter().map(|(k, (n, ms))| (k, n, ms)).collect();
        kinds.sort_by(|a, b| b.2.total_cmp(&a.2));
        kinds
    }

    /// How many nodes of op kind `op` (tract's name) the plan runs.
    pub fn count(&self, op: &str) -> usize {
        self.ops.iter().filter(|o| o.op == op).count()
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{:>9} {:>6}  {:<24} {:<5} node", "ms", "%", "op", "type")?;
        let total = self.total_ms.max(f64::MIN_POSITIVE);
        for op in &self.ops {
            writeln!(
                f,
                "{:>9.4} {:>5.1}%  {:<24} {:<5} {}",
                op.ms,
                100.0 * op.ms / total,
                op.op,
                op.output_type,
                op.node
            )?;
        }
        writeln!(
            f,
            "{:>9.4} 100.0%  total ({} nodes)",
            self.total_ms,
            self.ops.len()
        )
    }
}

impl TractModel {
    /// Runs the plan `rounds` times on `chw` (after one untimed run) and reports each node's
    /// mean time.
    ///
    /// # Errors
    /// [`EmbedError::InputSize`] or [`EmbedError::Run`], as [`TractModel::run`].
    pub fn profile(&mut self, chw: &[f32], rounds: usize) -> Result<Profile, EmbedError> {
        self.run(chw)?;
        let rounds = rounds.max(1);
        let mut totals: BTreeMap<usize, f64> = BTreeMap::new();
        let wall = Instant::now();
        for _ in 0..rounds {
            let input = self.input_tensor(chw)?;
            self.state_mut()
                .run_plan_with_eval(tvec!(input.into_tvalue()), |ctx, state, node, inputs| {
                    let start = Instant::now();
                    let out = tract_onnx::tract_core::plan::eval(ctx, state, node, inputs);
                    *totals.entry(node.id).or_default() += start.elapsed().as_secs_f64();
                    out
                })
                .map_err(|e| EmbedError::Run(format!("{e:#}")))?;
        }
        let wall_ms = wall.elapsed().as_secs_f64() * 1e3 / rounds as f64;
        let model = self.plan().model();
        let ops: Vec<OpTime> = totals
            .into_iter()
            .map(|(id, secs)| {
                let node = &model.nodes[id];
                OpTime {
                    node: node.name.clone(),
                    op: node.op().name().to_string(),
                    output_type: node
                        .outputs
                        .first()
                        .map_or(String::new(), |o| format!("{:?}", o.fact.datum_type)),
                    info: node.op().info().unwrap_or_default().join("; "),
                    ms: secs * 1e3 / rounds as f64,
                }
            })
            .collect();
        let total_ms = ops.iter().map(|o| o.ms).sum();
        Ok(Profile {
            ops,
            total_ms,
            wall_ms,
            rounds,
        })
    }
}
