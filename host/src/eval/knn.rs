//! Weighted kNN classifier on cosine similarity (Wu et al. 2018, the SimCLR monitor):
//! the `k` most similar memory-bank features vote for their class with weight `exp(s / t)`.

use burn::tensor::Device;

use super::features::Features;

/// kNN settings (paper monitor: k = 200, t = 0.1).
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct KnnConfig {
    /// Neighbours.
    pub k: usize,
    /// Vote temperature.
    pub temperature: f32,
}

impl Default for KnnConfig {
    fn default() -> Self {
        Self {
            k: 200,
            temperature: 0.1,
        }
    }
}

/// Top-1 and top-5 accuracy in percent.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Accuracy {
    /// Top-1 accuracy, %.
    pub top1: f64,
    /// Top-5 accuracy, %.
    pub top5: f64,
}

/// Classifies `query` against the labelled `bank`; features must be L2-normalised.
///
/// # Panics
/// When the feature dimensions differ or a label count does not match.
pub fn knn_accuracy(
    bank: &Features,
    bank_labels: &[u16],
    query: &Features,
    query_labels: &[u16],
    num_classes: usize,
    cfg: KnnConfig,
    device: &Device,
) -> Accuracy {
    assert_eq!(
        bank.dim, query.dim,
        "bank dim {} vs query dim {}",
        bank.dim, query.dim
    );
    assert_eq!(
        bank.n,
        bank_labels.len(),
        "bank rows {} vs labels {}",
        bank.n,
        bank_labels.len()
    );
    assert_eq!(
        query.n,
        query_labels.len(),
        "query rows {} vs labels {}",
        query.n,
        query_labels.len()
    );
    let k = cfg.k.min(bank.n);
    let bank_t = bank.tensor(device).transpose();
    let (mut top1, mut top5) = (0usize, 0usize);
    let chunk = 256;
    for start in (0..query.n).step_by(chunk) {
        let rows = chunk.min(query.n - start);
        let q = burn::tensor::Tensor::<2>::from_data(
            burn::tensor::TensorData::new(
                query.values[start * query.dim..(start + rows) * query.dim].to_vec(),
                [rows, query.dim],
            ),
            device,
        );
        let (sims, idx) = q.matmul(bank_t.clone()).topk_with_indices(k, 1);
        let sims: Vec<f32> = sims.into_data().try_to_vec().expect("f32 similarities");
        let idx: Vec<i64> = idx
            .into_data()
            .convert::<i64>()
            .try_to_vec()
            .expect("int indices");
        for r in 0..rows {
            let mut votes = vec![0.0f64; num_classes];
            for j in 0..k {
                let label = usize::from(bank_labels[idx[r * k + j] as usize]);
                votes[label] += f64::from((sims[r * k + j] / cfg.temperature).exp());
            }
            let truth = usize::from(query_labels[start + r]);
            let mut order: Vec<usize> = (0..num_classes).collect();
            order.sort_by(|&a, &b| votes[b].total_cmp(&votes[a]));
            top1 += usize::from(order[0] == truth);
            top5 += usize::from(order.iter().take(5).any(|&c| c == truth));
        }
    }
    let n = query.n.max(1) as f64;
    Accuracy {
        top1: 100.0 * top1 as f64 / n,
        top5: 100.0 * top5 as f64 / n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feats(rows: &[[f32; 2]]) -> Features {
        let values: Vec<f32> = rows
            .iter()
            .flat_map(|r| {
                let n = (r[0] * r[0] + r[1] * r[1]).sqrt();
                [r[0] / n, r[1] / n]
            })
            .collect();
        Features {
            n: rows.len(),
            dim: 2,
            values,
        }
    }

    #[test]
    fn votes_follow_similarity_weights() {
        // Bank: class 0 near +x, class 1 near +y. Query at 30° from +x: nearest is class 0.
        let bank = feats(&[[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0], [0.05, 1.0]]);
        let labels = [0u16, 0, 1, 1, 1];
        let query = feats(&[[0.866, 0.5], [0.2, 1.0]]);
        let device = Device::flex();
        let acc = knn_accuracy(
            &bank,
            &labels,
            &query,
            &[0, 1],
            2,
            KnnConfig {
                k: 5,
                temperature: 0.1,
            },
            &device,
        );
        // Query 0 with k = 5 and t = 0.1: class-0 weight exp(0.866/0.1)+exp(0.912/0.1) ≈ 1.5e4,
        // class-1 weight 3·exp(≈0.53/0.1) ≈ 600: class 0 wins although class 1 has 3 votes.
        assert_eq!(acc.top1, 100.0);
        // With t = 10 votes are nearly uniform: the 3 class-1 neighbours outvote 2 class-0 ones.
        let flat = knn_accuracy(
            &bank,
            &labels,
            &query,
            &[0, 1],
            2,
            KnnConfig {
                k: 5,
                temperature: 10.0,
            },
            &device,
        );
        assert_eq!(flat.top1, 50.0);
        assert_eq!(flat.top5, 100.0);
    }
}
