//! burn-flex vs burn-ndarray on one SimCLR train step (forward + backward + Adam).
//!
//! A plain harness rather than criterion: one ndarray step takes tens of seconds, so
//! criterion's minimum of ten samples would take many minutes for no extra information.
//! Both backends start from the same weights and see the same views; the bench prints
//! the per-step medians, their ratio and the losses (which must agree).
//!
//! `cargo bench --release -p edgeclr-models --bench cpu_backends [-- VIEWS STEPS]`

use std::time::Instant;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use edgeclr_learn::augment::{AugmentConfig, BatchBuilder};
use edgeclr_learn::encoder::{Architecture, EncoderConfig};
use edgeclr_learn::head::HeadConfig;
use edgeclr_learn::optim::OptimizerConfig;
use edgeclr_learn::{RgbImage, SimclrConfig, SimclrTrainer};

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let views = args.first().copied().unwrap_or(32);
    let steps = args.get(1).copied().unwrap_or(3);
    // The edge encoder (resnet8: 32/64/128) with a 128→128→64 head, as measured in the notes.
    let cfg = SimclrConfig {
        augment: AugmentConfig::cifar(),
        encoder: EncoderConfig::new(Architecture::Resnet8),
        head: HeadConfig::default()
            .with_out_dim(64)
            .with_batch_norm(false),
        optim: OptimizerConfig::Adam { weight_decay: 0.0 },
        ..SimclrConfig::default()
    };
    let images: Vec<RgbImage> = (0..views / 2)
        .map(|k| {
            RgbImage::new(
                32,
                32,
                (0..3072).map(|i| ((i * (k + 3)) % 251) as u8).collect(),
            )
            .expect("32x32")
        })
        .collect();
    let refs: Vec<&RgbImage> = images.iter().collect();
    let data = BatchBuilder::new(cfg.augment.clone()).views(&refs, 0);
    let record = cfg.init_model(&Device::flex()).into_record();
    println!(
        "SimCLR step, resnet8 + head ({} params), {views} views of 32x32, {steps} timed steps after 1 warm-up",
        cfg.init_model(&Device::flex()).num_params()
    );

    #[allow(deprecated)] // ndarray is the baseline being measured
    let backends = [("flex", Device::flex()), ("ndarray", Device::ndarray())];
    let mut medians = Vec::new();
    for (name, device) in backends {
        let device = device.autodiff();
        let model = cfg.init_model(&device).load_record(record.clone());
        let mut trainer = SimclrTrainer::new(model, &cfg);
        let batch =
            || Tensor::<4>::from_data(TensorData::new(data.clone(), [views, 3, 32, 32]), &device);
        let mut times = Vec::new();
        let mut losses = Vec::new();
        for i in 0..=steps {
            let t = Instant::now();
            losses.push(trainer.step(batch(), 1e-3).loss);
            device.sync().expect("device sync");
            if i > 0 {
                times.push(t.elapsed().as_secs_f64());
            }
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        println!(
            "{name:8} median {median:8.3} s/step  {:7.1} img/s  losses {losses:?}",
            views as f64 / median
        );
        medians.push(median);
    }
    println!("ratio ndarray/flex = {:.1}x", medians[1] / medians[0]);
}
