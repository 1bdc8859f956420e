//! Linear evaluation: a logistic-regression classifier on frozen, L2-normalised features,
//! trained full-batch to convergence (Adam, cosine-decayed learning rate, stop when the loss
//! stops improving).

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::features::Features;
use super::knn::Accuracy;

/// Linear-probe settings.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct LinearProbeConfig {
    /// Maximum full-batch iterations.
    pub max_iters: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// L2 penalty on the weights.
    pub weight_decay: f32,
    /// Stop when the loss improved by less than this over `patience` iterations.
    pub tolerance: f32,
    /// Iterations over which improvement is measured.
    pub patience: usize,
}

impl Default for LinearProbeConfig {
    fn default() -> Self {
        Self {
            max_iters: 2000,
            lr: 0.05,
            weight_decay: 1e-5,
            tolerance: 1e-5,
            patience: 50,
        }
    }
}

/// Result of a linear probe.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LinearProbeResult {
    /// Accuracy on the training features.
    pub train: Accuracy,
    /// Accuracy on the test features.
    pub test: Accuracy,
    /// Iterations run.
    pub iterations: usize,
    /// Final training loss.
    pub final_loss: f32,
}

fn labels_tensor(labels: &[u16], device: &Device) -> Tensor<1, Int> {
    let v: Vec<i64> = labels.iter().map(|&l| i64::from(l)).collect();
    Tensor::from_data(TensorData::new(v, [labels.len()]), device)
}

/// Top-1/top-5 of `logits` against `labels`.
pub fn accuracy(logits: Tensor<2>, labels: &[u16]) -> Accuracy {
    let [n, c] = logits.dims();
    let values: Vec<f32> = logits.into_data().try_to_vec().expect("f32 logits");
    let (mut top1, mut top5) = (0usize, 0usize);
    for (row, &truth) in values.chunks(c).zip(labels) {
        let t = usize::from(truth);
        let better = row.iter().filter(|&&v| v > row[t]).count();
        top1 += usize::from(better == 0);
        top5 += usize::from(better < 5);
    }
    let n = n.max(1) as f64;
    Accuracy {
        top1: 100.0 * top1 as f64 / n,
        top5: 100.0 * top5 as f64 / n,
    }
}

/// Trains a linear classifier on `train` and scores it on `train` and `test`.
pub fn linear_probe(
    train: &Features,
    train_labels: &[u16],
    test: &Features,
    test_labels: &[u16],
    num_classes: usize,
    cfg: LinearProbeConfig,
    device: &Device,
) -> LinearProbeResult {
    let ad = device.clone().autodiff();
    let x = train.tensor(&ad);
    let y = labels_tensor(train_labels, &ad);
    let mut model: Linear = LinearConfig::new(train.dim, num_classes).init(&ad);
    let mut optim = AdamConfig::new()
        .with_weight_decay(Some(burn::optim::decay::WeightDecayConfig::new(
            cfg.weight_decay,
        )))
        .init();
    let ce = CrossEntropyLossConfig::new().init(&ad);
    let mut history: Vec<f32> = Vec::new();
    let mut iterations = 0;
    for it in 0..cfg.max_iters {
        let lr =
            cfg.lr * 0.5 * (1.0 + (std::f64::consts::PI * it as f64 / cfg.max_iters as f64).cos());
        let loss = ce.forward(model.forward(x.clone()), y.clone());
        let value: f32 = loss.clone().into_scalar();
        history.push(value);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(lr, model, grads);
        iterations = it + 1;
        if history.len() > cfg.patience
            && history[history.len() - 1 - cfg.patience] - value < cfg.tolerance
        {
            break;
        }
    }
    let model = model.valid();
    let train_acc = accuracy(model.forward(train.tensor(device)), train_labels);
    let test_acc = accuracy(model.forward(test.tensor(device)), test_labels);
    LinearProbeResult {
        train: train_acc,
        test: test_acc,
        iterations,
        final_loss: history.last().copied().unwrap_or(f32::NAN),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_counts_ranks() {
        let device = Device::flex();
        // Row 0: truth 2 has the max (top-1). Row 1: truth 0 is 3rd of 6 (top-5, not top-1).
        let logits = Tensor::<2>::from_data(
            TensorData::from([
                [0.1f32, 0.2, 0.9, 0.0, 0.0, 0.0],
                [0.5, 0.9, 0.8, 0.1, 0.0, 0.2],
            ]),
            &device,
        );
        let acc = accuracy(logits, &[2, 0]);
        assert_eq!(acc.top1, 50.0);
        assert_eq!(acc.top5, 100.0);
    }

    #[test]
    fn separable_features_are_learned() {
        // Two classes on opposite sides of the x axis: a linear model separates them exactly.
        let device = Device::flex();
        let rows: Vec<[f32; 2]> = (0..40)
            .map(|i| {
                let a = (i as f32) * 0.15;
                if i % 2 == 0 {
                    [a.cos(), a.sin().abs() + 0.1]
                } else {
                    [a.cos(), -a.sin().abs() - 0.1]
                }
            })
            .collect();
        let labels: Vec<u16> = (0..40).map(|i| (i % 2) as u16).collect();
        let f = Features {
            n: 40,
            dim: 2,
            values: rows.iter().flatten().copied().collect(),
        };
        let r = linear_probe(
            &f,
            &labels,
            &f,
            &labels,
            2,
            LinearProbeConfig::default(),
            &device,
        );
        assert_eq!(r.train.top1, 100.0, "{r:?}");
    }
}
