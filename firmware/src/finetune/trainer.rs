//! The on-board SimCLR step: camera-frame augmentations → partially frozen encoder + head →
//! NT-Xent with queue negatives, temporal positives and false-negative exclusion, plus an
//! optional distillation term toward the shipped (host-pretrained) encoder.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor, TensorData};
use edgeclr_artifact::Preprocess;
use edgeclr_learn::augment::{AugmentConfig, BatchBuilder, stack_chw};
use edgeclr_learn::checkpoint::{CheckpointDir, TrainState, load_weights, save_weights};
use edgeclr_learn::encoder::ResNet;
use edgeclr_learn::loss::{ContrastMask, NtXentLoss, NtXentLossConfig, l2_normalize};
use edgeclr_learn::optim::OptimizerConfig;
use edgeclr_learn::{RgbImage, Simclr, SimclrConfig};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::negatives::NegativeQueue;
pub use crate::config::finetune::{TrainableEnd, TrainerConfig};

/// The augmentations the board trains and judges with: the model's own SimCLR recipe (the
/// crop, flip, colour distortion, grayscale and blur it was pretrained with, recorded in its
/// manifest) at `size`, with `color_strength` overriding the recipe's strength when set.
/// Continued training keeps the invariances the encoder was built with: views from another
/// recipe (a blur the CIFAR recipe leaves out, say) train it toward invariances its kNN
/// neighbourhoods never relied on.
pub fn augment(config: &TrainerConfig, size: usize, recipe: &SimclrConfig) -> AugmentConfig {
    let a = recipe.augment.clone().with_image_size(size);
    match config.color_strength {
        Some(s) => a.with_color_strength(s),
        None => a,
    }
}

/// burn's BatchNorm momentum, which the recipe trains with.
const BN_MOMENTUM: f64 = 0.1;

/// The encoder as `config` trains it: the blocks away from `trainable_end` frozen, and with
/// `adapt_bn_stats` every BatchNorm's statistics following the camera.
fn prepare(encoder: ResNet, config: &TrainerConfig) -> ResNet {
    let (n, frozen_stats) = (config.trainable_blocks, config.freeze_bn_stats);
    let encoder = match config.trainable_end {
        TrainableEnd::Output => encoder.freeze_early(n, frozen_stats),
        TrainableEnd::Input => encoder.freeze_late(n, frozen_stats),
    };
    if config.adapt_bn_stats {
        encoder.adapt_bn_statistics()
    } else {
        encoder
    }
}

/// One training frame.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Frame id in the stream (temporal neighbourhood).
    pub frame_id: u64,
    /// The frame, downscaled for training.
    pub image: Arc<RgbImage>,
}

/// What one step did.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct StepReport {
    /// Step number after this step.
    pub step: u64,
    /// Total loss.
    pub loss: f32,
    /// Contrastive part.
    pub contrastive: f32,
    /// Distillation part (unweighted).
    pub distill: f32,
    /// Queue entries used as negatives.
    pub queue: usize,
    /// Extra positive pairs from temporal neighbours.
    pub temporal_pairs: usize,
    /// Wall time of the step.
    pub ms: f64,
}

/// The fine-tuning model, its optimizer, queue and teacher.
pub struct Trainer {
    model: Option<Simclr>,
    teacher: Option<ResNet>,
    optim: ModuleOptimizer,
    loss: NtXentLoss,
    queue: NegativeQueue,
    views: BatchBuilder,
    recipe: SimclrConfig,
    config: TrainerConfig,
    device: Device,
    rng: ChaCha8Rng,
    step: u64,
}

impl Trainer {
    /// Starts from the shipped burn weights (`encoder.bpk`, and `head.bpk` when present) on
    /// `device` (an inference device; autodiff is added here). The same encoder weights are
    /// the distillation teacher.
    ///
    /// # Errors
    /// When a weights file is missing or does not match the recipe.
    pub fn new(
        recipe: &SimclrConfig,
        encoder: &Path,
        head: Option<&Path>,
        size: usize,
        config: TrainerConfig,
        device: &Device,
    ) -> Result<Self> {
        let ad = device.clone().autodiff();
        let mut model = recipe.init_model(&ad);
        model.encoder = load_weights(model.encoder, encoder)
            .with_context(|| format!("loading {}", encoder.display()))?;
        if let Some(h) = head {
            model.head =
                load_weights(model.head, h).with_context(|| format!("loading {}", h.display()))?;
        }
        let teacher = (config.distill_weight > 0.0).then(|| model.encoder.valid());
        Self::assemble(model, teacher, None, None, recipe, size, config, device)
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        mut model: Simclr,
        teacher: Option<ResNet>,
        optim: Option<ModuleOptimizer>,
        state: Option<(u64, ChaCha8Rng)>,
        recipe: &SimclrConfig,
        size: usize,
        config: TrainerConfig,
        device: &Device,
    ) -> Result<Self> {
        let blocks = model.encoder.num_blocks();
        if config.trainable_blocks > blocks {
            bail!(
                "[finetune.trainer] trainable_blocks = {} but this model's encoder has {blocks} \
                 residual blocks; set it to at most {blocks}",
                config.trainable_blocks
            );
        }
        model.encoder = prepare(model.encoder, &config);
        let (step, rng) = state.unwrap_or((0, ChaCha8Rng::seed_from_u64(config.seed)));
        Ok(Self {
            model: Some(model),
            teacher,
            optim: optim.unwrap_or_else(|| OptimizerConfig::Adam { weight_decay: 0.0 }.init()),
            loss: NtXentLossConfig::default()
                .with_temperature(config.temperature)
                .init(),
            queue: NegativeQueue::new(config.queue_size, config.queue_max_age),
            views: BatchBuilder::new(augment(&config, size, recipe)),
            recipe: recipe.clone(),
            config,
            device: device.clone(),
            rng,
            step,
        })
    }

    /// Resumes from the latest checkpoint under `dir` (weights, Adam moments, step, RNG);
    /// `None` when there is none. The teacher comes from `teacher` (the shipped encoder).
    ///
    /// # Errors
    /// When a checkpoint exists but does not load.
    pub fn resume(
        dir: &CheckpointDir,
        teacher: &Path,
        size: usize,
        config: TrainerConfig,
        device: &Device,
    ) -> Result<Option<Self>> {
        let Some(loaded) = dir.load_latest(&device.clone().autodiff())? else {
            return Ok(None);
        };
        let recipe = loaded.state.config.clone();
        let teacher = if config.distill_weight > 0.0 {
            Some(load_weights(recipe.encoder.init(device), teacher)?)
        } else {
            None
        };
        Self::assemble(
            loaded.model,
            teacher,
            Some(loaded.optim),
            Some((loaded.state.step, loaded.state.rng)),
            &recipe,
            size,
            config,
            device,
        )
        .map(Some)
    }

    /// Saves weights, optimizer, step and RNG (atomically; the previous checkpoint is kept).
    ///
    /// # Errors
    /// I/O failures naming the file.
    pub fn checkpoint(&self, dir: &CheckpointDir) -> Result<()> {
        let state = TrainState {
            step: self.step,
            epoch: 0,
            rng: self.rng.clone(),
            lr_scale: 1.0,
            config: self.recipe.clone(),
            extra: serde_json::to_value(&self.config)?,
        };
        dir.save(self.model(), &self.optim, &state)?;
        Ok(())
    }

    /// Restarts from the weights in slot folder `dir` (after a rejected candidate) with a
    /// fresh optimizer and queue; the step count and RNG go on.
    ///
    /// # Errors
    /// When the weights do not load.
    pub fn reload(&mut self, dir: &Path) -> Result<()> {
        let ad = self.device.clone().autodiff();
        let mut model = self.recipe.init_model(&ad);
        let encoder = dir.join("encoder.bpk");
        model.encoder = load_weights(model.encoder, &encoder)
            .with_context(|| format!("loading {}", encoder.display()))?;
        let head = dir.join("head.bpk");
        if head.exists() {
            model.head = load_weights(model.head, &head)
                .with_context(|| format!("loading {}", head.display()))?;
        }
        model.encoder = prepare(model.encoder, &self.config);
        self.model = Some(model);
        self.optim = OptimizerConfig::Adam { weight_decay: 0.0 }.init();
        self.queue = NegativeQueue::new(self.config.queue_size, self.config.queue_max_age);
        Ok(())
    }

    fn model(&self) -> &Simclr {
        self.model
            .as_ref()
            .expect("model is only taken inside step")
    }

    /// Steps taken (including before a resume).
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// The recipe.
    pub fn recipe(&self) -> &SimclrConfig {
        &self.recipe
    }

    /// The current encoder in inference mode.
    pub fn encoder(&self) -> ResNet {
        self.model().encoder.valid()
    }

    /// Writes `encoder.bpk` and `head.bpk` into `dir`.
    ///
    /// # Errors
    /// I/O failures naming the file.
    pub fn save_weights(&self, dir: &Path) -> Result<()> {
        save_weights(&self.model().encoder.valid(), &dir.join("encoder.bpk"))?;
        save_weights(&self.model().head.valid(), &dir.join("head.bpk"))?;
        Ok(())
    }

    /// Which images of a batch are temporal neighbours, and which queue entries are neighbours
    /// (or the very frame) of which image.
    fn mask(&self, ids: &[u64], queue_ids: &[u64]) -> (ContrastMask, usize) {
        let w = self.config.temporal_window;
        let mut mask = ContrastMask::views(2 * ids.len(), queue_ids.len());
        let mut pairs = 0;
        for a in 0..ids.len() {
            for b in a + 1..ids.len() {
                let gap = ids[a].abs_diff(ids[b]);
                // The same frame twice (live and replayed) is a true positive.
                if gap == 0 || (self.config.temporal_positives && gap <= w) {
                    mask.pair_images(a, b);
                    pairs += 1;
                } else if gap <= w {
                    mask.exclude_images(a, b);
                }
            }
            for (q, &qid) in queue_ids.iter().enumerate() {
                if ids[a].abs_diff(qid) <= w {
                    mask.exclude_queue(a, q);
                }
            }
        }
        (mask, pairs)
    }

    /// One optimisation step on `batch` (at least two frames). A non-finite loss skips the
    /// update.
    ///
    /// # Panics
    /// With fewer than two frames.
    pub fn step(&mut self, batch: &[Sample]) -> StepReport {
        assert!(batch.len() >= 2, "a contrastive step needs two frames");
        if self.config.trainable_blocks == 0 {
            return self.statistics_step(batch);
        }
        let started = Instant::now();
        let ad = self.device.clone().autodiff();
        let images: Vec<&RgbImage> = batch.iter().map(|s| s.image.as_ref()).collect();
        let ids: Vec<u64> = batch.iter().map(|s| s.frame_id).collect();
        let seed: u64 = self.rng.random();
        let views = self.views.batch(&images, seed, &ad);
        let step = self.step;
        let (queue_z, queue_ids): (Vec<f32>, Vec<u64>) = {
            let fresh = self.queue.fresh(step);
            (
                fresh.iter().flat_map(|e| e.z.iter().copied()).collect(),
                fresh.iter().map(|e| e.frame_id).collect(),
            )
        };
        let (mask, temporal_pairs) = self.mask(&ids, &queue_ids);
        let model = self.model.take().expect("model is only taken inside step");
        let (h, z) = model.forward(views.clone());
        let dim = z.dims()[1];
        let queue = Tensor::<2>::from_data(TensorData::new(queue_z, [queue_ids.len(), dim]), &ad);
        let contrastive = self.loss.forward_masked(z.clone(), queue, &mask);
        let (total, distill) = match &self.teacher {
            Some(teacher) if self.config.distill_weight > 0.0 => {
                let target = Tensor::from_inner(teacher.forward(views.inner()));
                let cos = (l2_normalize(h) * l2_normalize(target)).sum_dim(1);
                let d = cos.neg().add_scalar(1.0).mean();
                (
                    contrastive.clone() + d.clone().mul_scalar(self.config.distill_weight),
                    d.into_scalar::<f32>(),
                )
            }
            _ => (contrastive.clone(), 0.0),
        };
        let loss: f32 = total.clone().into_scalar();
        let z_rows: Vec<f32> = z
            .detach()
            .into_data()
            .try_to_vec()
            .expect("projections are f32");
        if loss.is_finite() {
            let grads = GradientsParams::from_grads(total.backward(), &model);
            self.model = Some(self.optim.step(self.config.lr, model, grads));
            let view_ids: Vec<u64> = ids.iter().flat_map(|&i| [i, i]).collect();
            self.queue.push(step, &view_ids, &z_rows, dim);
            self.step += 1;
        } else {
            self.model = Some(model);
        }
        StepReport {
            step: self.step,
            loss,
            contrastive: contrastive.into_scalar(),
            distill,
            queue: queue_ids.len(),
            temporal_pairs,
            ms: started.elapsed().as_secs_f64() * 1e3,
        }
    }
}

impl Trainer {
    /// A frame as the deployed model sees it (centre square crop, resize, normalise), at the
    /// training size.
    fn preprocess(&self) -> Preprocess {
        let config = self.views.config();
        Preprocess {
            size: config.image_size,
            normalize: config.normalize,
        }
    }

    /// Re-estimates every BatchNorm layer's running statistics as the exact average over
    /// `frames` as the deployed model sees them (centre square crop, resized to the training
    /// size, normalised; chunks of 64, each weighted by its frames): precise BatchNorm on the
    /// camera's own frames, so what is exported normalises like the camera and not like the
    /// training views' colour distortion or the last few batches' momentum. Weights, γ and β
    /// do not change.
    pub fn recalibrate_bn(&mut self, frames: &[&RgbImage]) {
        if frames.is_empty() {
            return;
        }
        let ad = self.device.clone().autodiff();
        let preprocess = self.preprocess();
        let mut model = self
            .model
            .take()
            .expect("model is only taken inside a step");
        let mut encoder = model.encoder.adapt_bn_statistics();
        let mut seen = 0;
        for chunk in frames.chunks(64) {
            // Each chunk weighs by its frames: the running value is their exact average.
            seen += chunk.len();
            encoder = encoder.with_bn_momentum(chunk.len() as f64 / seen as f64);
            let clean: Vec<Vec<f32>> = chunk.iter().map(|f| preprocess.apply(f)).collect();
            let _ = encoder.forward(stack_chw(&clean, preprocess.size, &ad));
        }
        model.encoder = prepare(encoder.with_bn_momentum(BN_MOMENTUM), &self.config);
        self.model = Some(model);
    }

    /// BatchNorm statistics only (`trainable_blocks = 0` with `adapt_bn_stats`): the frames,
    /// as the deployed model sees them (centre square crop, resized, normalised), go through the
    /// encoder in training mode, which moves every running statistic toward theirs; no weight
    /// changes and no loss is computed (reported as 0).
    fn statistics_step(&mut self, batch: &[Sample]) -> StepReport {
        let started = Instant::now();
        let ad = self.device.clone().autodiff();
        let preprocess = self.preprocess();
        let clean: Vec<Vec<f32>> = batch.iter().map(|s| preprocess.apply(&s.image)).collect();
        let x = stack_chw(&clean, preprocess.size, &ad);
        let model = self.model.take().expect("model is only taken inside step");
        let _ = model.encoder.forward(x);
        self.model = Some(model);
        self.step += 1;
        StepReport {
            step: self.step,
            loss: 0.0,
            contrastive: 0.0,
            distill: 0.0,
            queue: 0,
            temporal_pairs: 0,
            ms: started.elapsed().as_secs_f64() * 1e3,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Param;
    use edgeclr_learn::encoder::{Architecture, EncoderConfig};

    fn recipe() -> SimclrConfig {
        SimclrConfig {
            encoder: EncoderConfig::new(Architecture::Resnet8),
            ..SimclrConfig::default()
        }
    }

    fn frames(n: usize) -> Vec<Sample> {
        (0..n)
            .map(|k| Sample {
                frame_id: 10 * k as u64,
                image: Arc::new(
                    RgbImage::new(
                        24,
                        20,
                        (0..24 * 20 * 3)
                            .map(|i| ((i * (k + 2) + 7 * k) % 253) as u8)
                            .collect(),
                    )
                    .expect("image"),
                ),
            })
            .collect()
    }

    /// A trainer at 16 px starting from a freshly initialised resnet8 (weights in the
    /// returned folder, which must outlive it).
    fn fresh_trainer(config: TrainerConfig) -> (tempfile::TempDir, Trainer) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let device = Device::flex();
        let recipe = recipe();
        let weights = tmp.path().join("e.bpk");
        save_weights(&recipe.init_model(&device).encoder, &weights).expect("save");
        let t = Trainer::new(&recipe, &weights, None, 16, config, &device).expect("trainer");
        (tmp, t)
    }

    fn encoder_weights(m: &ResNet) -> Vec<Vec<f32>> {
        struct Collect(Vec<Vec<f32>>);
        impl burn::module::ModuleVisitor for Collect {
            fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
                self.0
                    .push(p.val().into_data().try_to_vec::<f32>().expect("f32"));
            }
        }
        let mut c = Collect(Vec::new());
        m.visit(&mut c);
        c.0
    }

    #[test]
    fn steps_train_only_the_last_stage_and_fill_the_queue() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let device = Device::flex();
        let recipe = recipe();
        let start = recipe.init_model(&device);
        save_weights(&start.encoder, &tmp.path().join("encoder.bpk")).expect("save");
        let config = TrainerConfig {
            batch: 4,
            lr: 1e-2,
            adapt_bn_stats: false,
            ..TrainerConfig::default()
        };
        let mut t = Trainer::new(
            &recipe,
            &tmp.path().join("encoder.bpk"),
            None,
            16,
            config,
            &device,
        )
        .expect("trainer");
        let before = encoder_weights(&t.encoder());
        let batch = frames(4);
        let first = t.step(&batch);
        assert!(
            first.loss.is_finite() && first.queue == 0 && first.distill.abs() < 1e-5,
            "{first:?}"
        );
        let second = t.step(&batch);
        // The same frames come back: the queue holds their own projections from step 0, all
        // excluded as false negatives, so 8 entries are queued but none count.
        assert_eq!(second.queue, 8);
        assert!(
            second.distill > 0.0,
            "the student moved away from the teacher"
        );
        let after = encoder_weights(&t.encoder());
        let changed: Vec<bool> = before.iter().zip(&after).map(|(a, b)| a != b).collect();
        // Visit order: each convolution then its BatchNorm (γ, β, running mean, running var),
        // i.e. groups of five. Frozen: the stem (1 group), block 0 (2 groups), block 1 (3 groups
        // with its shortcut) = 30 values; in block 2 the weights, γ and β train while the
        // running statistics stay frozen.
        let first = changed.iter().position(|c| *c).expect("nothing trained");
        assert_eq!(first, 30, "{changed:?}");
        assert!(
            changed[first..]
                .chunks(5)
                .all(|g| g == [true, true, true, false, false]),
            "{changed:?}"
        );
        assert_eq!(t.steps(), 2);
        // Checkpoint → resume continues at the same step with the same weights.
        let dir = CheckpointDir::new(tmp.path().join("train"), 2);
        t.checkpoint(&dir).expect("checkpoint");
        let r = Trainer::resume(
            &dir,
            &tmp.path().join("encoder.bpk"),
            16,
            t.config.clone(),
            &device,
        )
        .expect("resume")
        .expect("a checkpoint");
        assert_eq!(r.steps(), 2);
        assert_eq!(encoder_weights(&r.encoder()), after);
    }

    #[test]
    fn the_input_end_trains_the_stem_and_first_block_only() {
        let (_tmp, mut t) = fresh_trainer(TrainerConfig {
            batch: 4,
            lr: 1e-2,
            adapt_bn_stats: false,
            trainable_end: TrainableEnd::Input,
            ..TrainerConfig::default()
        });
        let before = encoder_weights(&t.encoder());
        let batch = frames(4);
        t.step(&batch);
        t.step(&batch);
        let after = encoder_weights(&t.encoder());
        let changed: Vec<bool> = before.iter().zip(&after).map(|(a, b)| a != b).collect();
        // Groups of five (weight, γ, β, running mean, running var): the stem and block 0's
        // two convolutions (15 values) train with frozen statistics; blocks 1 and 2 do not.
        assert!(
            changed[..15]
                .chunks(5)
                .all(|g| g == [true, true, true, false, false]),
            "{changed:?}"
        );
        assert!(changed[15..].iter().all(|c| !c), "{changed:?}");
        // More blocks than the encoder has is refused, naming the setting and the limit.
        let tmp = tempfile::tempdir().expect("tempdir");
        let weights = tmp.path().join("e.bpk");
        save_weights(&recipe().init_model(&Device::flex()).encoder, &weights).expect("save");
        let config = TrainerConfig {
            trainable_blocks: 4,
            ..TrainerConfig::default()
        };
        let err = Trainer::new(&recipe(), &weights, None, 16, config, &Device::flex())
            .err()
            .expect("refused");
        assert!(
            err.to_string().contains("trainable_blocks = 4")
                && err.to_string().contains("at most 3"),
            "{err}"
        );
    }

    #[test]
    fn statistics_only_moves_every_running_statistic_and_no_weight() {
        let (_tmp, mut t) = fresh_trainer(TrainerConfig {
            trainable_blocks: 0,
            adapt_bn_stats: true,
            ..TrainerConfig::default()
        });
        let before = encoder_weights(&t.encoder());
        let r = t.step(&frames(4));
        assert_eq!((r.step, r.loss), (1, 0.0));
        let after = encoder_weights(&t.encoder());
        // Groups of five per convolution (weight, γ, β, running mean, running var): freshly
        // initialised statistics are 0 and 1, so every layer's must move toward the frames'
        // (momentum 0.1); weights, γ and β stay bit for bit.
        assert_eq!(before.len() % 5, 0);
        for (g, (b, a)) in before.chunks(5).zip(after.chunks(5)).enumerate() {
            assert_eq!(b[..3], a[..3], "group {g}: a weight, γ or β changed");
            assert!(
                b[3] != a[3] && b[4] != a[4],
                "group {g}: statistics did not move"
            );
        }
    }

    #[test]
    fn recalibrated_statistics_are_the_frames_average_whatever_came_before() {
        let (_tmp, mut t) = fresh_trainer(TrainerConfig::default());
        let batch = frames(70);
        let images: Vec<&RgbImage> = batch.iter().map(|s| s.image.as_ref()).collect();
        let initial = encoder_weights(&t.encoder());
        t.recalibrate_bn(&images);
        let once = encoder_weights(&t.encoder());
        // Other statistics in between (seven of the frames), then the seventy again: the exact
        // average over the same frames (momentum 1/k from k = 1) forgets what came before.
        t.recalibrate_bn(&images[..7]);
        let other = encoder_weights(&t.encoder());
        t.recalibrate_bn(&images);
        let twice = encoder_weights(&t.encoder());
        // The stem's running mean is the mean of its convolution's output over all 70 frames
        // and positions (3×3, stride 1, zero padding 1, no bias), computed here directly:
        // chunks of 64 and 6 frames weighted by frames, not by chunks.
        let (w, p) = (&once[0], t.preprocess());
        let side = p.size as isize;
        let mut mean = vec![0f64; w.len() / 27];
        for img in &images {
            let x = p.apply(img);
            let at = |c: isize, y: isize, xx: isize| {
                let inside = (0..side).contains(&y) && (0..side).contains(&xx);
                if inside {
                    f64::from(x[((c * side + y) * side + xx) as usize])
                } else {
                    0.0
                }
            };
            for (o, m) in mean.iter_mut().enumerate() {
                for (k, &wk) in w[o * 27..o * 27 + 27].iter().enumerate() {
                    let (c, ky, kx) = ((k / 9) as isize, (k % 9 / 3) as isize, (k % 3) as isize);
                    let sum: f64 = (0..side)
                        .flat_map(|y| (0..side).map(move |xx| (y, xx)))
                        .map(|(y, xx)| at(c, y + ky - 1, xx + kx - 1))
                        .sum();
                    *m += f64::from(wk) * sum;
                }
            }
        }
        let n = (images.len() as isize * side * side) as f64;
        for (o, (&got, m)) in once[3].iter().zip(&mean).enumerate() {
            assert!(
                (f64::from(got) - m / n).abs() < 1e-4,
                "channel {o}: {got} vs {}",
                m / n
            );
        }
        for (g, ((a, b), (c, i))) in once
            .chunks(5)
            .zip(twice.chunks(5))
            .zip(other.chunks(5).zip(initial.chunks(5)))
            .enumerate()
        {
            assert_eq!(b[..3], i[..3], "group {g}: a weight, γ or β changed");
            for k in 3..5 {
                let close = a[k].iter().zip(&b[k]).all(|(x, y)| (x - y).abs() < 1e-5);
                assert!(close, "group {g}, statistic {k}: {:?} vs {:?}", a[k], b[k]);
                assert_ne!(
                    a[k], c[k],
                    "group {g}: 7 frames gave the 70 frames' statistics"
                );
                assert_ne!(a[k], i[k], "group {g}: statistics did not move");
            }
        }
    }

    #[test]
    fn temporal_neighbours_pair_up_and_leave_the_negatives() {
        let (_tmp, t) = fresh_trainer(TrainerConfig::default());
        // Frames 100 and 102 are neighbours (window 3), 200 is not; queue entry 101 neighbours
        // both 100 and 102.
        let (mask, pairs) = t.mask(&[100, 102, 200], &[101, 500]);
        assert_eq!(pairs, 1);
        // Row 0 (frame 100, view a): 8 columns; positives: its sibling and frame 102's two views;
        // excluded: itself and queue 101 → negatives: frame 200's two views and queue 500.
        assert_eq!(mask.negatives(0), 3);
        // Row 4 (frame 200): every view of frames 100 and 102 and both queue entries.
        assert_eq!(mask.negatives(4), 6);
        let no_pos = Trainer {
            config: TrainerConfig {
                temporal_positives: false,
                ..t.config.clone()
            },
            ..t
        };
        let (mask, pairs) = no_pos.mask(&[100, 102, 200], &[]);
        assert_eq!(pairs, 0);
        // Frame 102 is neither positive nor negative of frame 100 now.
        assert_eq!(mask.negatives(0), 2);
    }
}
