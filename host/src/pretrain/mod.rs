//! `edgeclr pretrain`: the SimCLR training loop on the host.
//!
//! Every random choice derives from `(seed, epoch, batch)`, so a run resumed from any
//! checkpoint replays the same schedule, shuffles and augmentations bit for bit. Views
//! for the next batch are built on worker threads while the current one trains.

mod args;
mod source;

pub use args::{LossKind, OptimizerKind, PretrainArgs};

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::mpsc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use edgeclr_learn::SimclrTrainer;
use edgeclr_learn::augment::BatchBuilder;
use edgeclr_learn::checkpoint::{CheckpointDir, TrainState, save_weights, write_atomic};
use edgeclr_learn::device::select_device;
use edgeclr_learn::encoder::trainable_params;
use edgeclr_learn::optim::WarmupCosine;
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use tracing::{info, warn};

use crate::config::PretrainConfig;
use crate::data::{self, LabeledImages, Split};
use crate::eval::{features, knn};
use crate::plots::{self, Series};
use source::{Batches, TrainData};

/// The plan derived from the config and the dataset size.
#[derive(Debug, Clone, Copy)]
struct Plan {
    steps_per_epoch: usize,
    schedule: WarmupCosine,
}

/// Called after each epoch with the trainer and the metrics: the kNN monitor, when it ran.
type OnEpoch<'a> =
    dyn FnMut(usize, &SimclrTrainer, &mut Metrics) -> Result<Option<knn::Accuracy>> + 'a;

/// Shuffled image order of `epoch`.
fn epoch_order(seed: u64, epoch: usize, n: usize) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed0fe90c);
    rng.set_stream(epoch as u64);
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rng);
    order
}

/// Augmentation seed of global step `step`.
fn batch_seed(seed: u64, step: usize) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (step as u64)
            .wrapping_add(1)
            .wrapping_mul(0xD1B5_4A32_D192_ED03)
}

/// `--init DIR`: an export folder's recipe and burn weights.
struct Init {
    dir: std::path::PathBuf,
    recipe: edgeclr_learn::SimclrConfig,
}

impl Init {
    fn read(dir: &Path) -> Result<Self> {
        let manifest = edgeclr_artifact::Manifest::load(dir).with_context(|| {
            format!(
                "--init {}: expected an export folder from `edgeclr export`",
                dir.display()
            )
        })?;
        let recipe = edgeclr_learn::export::recipe_of(&manifest)?.with_context(|| {
            format!(
                "--init {}: its manifest has no SimCLR recipe; re-export it with this edgeclr",
                dir.display()
            )
        })?;
        Ok(Self {
            dir: dir.to_path_buf(),
            recipe,
        })
    }

    /// `model` with the export's encoder and (when present) head weights.
    fn load(&self, mut model: edgeclr_learn::Simclr) -> Result<edgeclr_learn::Simclr> {
        use edgeclr_learn::checkpoint::load_weights;
        let encoder = self.dir.join("encoder.bpk");
        model.encoder = load_weights(model.encoder, &encoder).with_context(|| {
            format!(
                "--init: loading {} (export with its burn weights)",
                encoder.display()
            )
        })?;
        let head = self.dir.join("head.bpk");
        if head.exists() {
            model.head = load_weights(model.head, &head)
                .with_context(|| format!("--init: loading {}", head.display()))?;
        }
        Ok(model)
    }
}

/// Appends JSON lines to `metrics.jsonl`.
struct Metrics(fs::File);

impl Metrics {
    fn open(path: &Path) -> Result<Self> {
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(Self(f))
    }

    fn log(&mut self, value: serde_json::Value) -> Result<()> {
        writeln!(self.0, "{value}").context("writing metrics.jsonl")
    }
}

/// Runs `edgeclr pretrain`.
pub fn run(args: PretrainArgs) -> Result<()> {
    let mut cfg = PretrainConfig::resolve(&args)?;
    let init = args.init.as_deref().map(Init::read).transpose()?;
    if let Some(i) = &init {
        info!(from = %i.dir.display(), "recipe and weights of the export");
        if cfg.simclr != i.recipe {
            warn!(
                "--init {}: its recipe (model, loss, augmentation) replaces the one the flags and \
                 --config give; training flags (data, batch, optimizer, steps) still apply",
                i.dir.display()
            );
        }
        cfg.simclr = i.recipe.clone();
    }
    let out = &args.out;
    let ckpts = CheckpointDir::new(out.join("checkpoints"), 2);
    if !args.resume && ckpts.latest()?.is_some() {
        bail!(
            "{} already holds a run; pass --resume to continue it or choose another --out",
            out.display()
        );
    }
    fs::create_dir_all(out).with_context(|| format!("creating run folder {}", out.display()))?;
    write_atomic(
        &out.join("config.toml"),
        toml::to_string_pretty(&cfg)?.as_bytes(),
    )?;

    let selected = select_device(cfg.train.device)?;
    info!(device = %selected.description, "backend");
    let device = selected.device.clone().autodiff();

    let root = cfg.train.data.clone().expect("validated: data is set");
    let train = TrainData::open(&cfg, &root)?;
    let batch = cfg.train.batch_size;
    if train.len() < batch {
        bail!(
            "{} training images is fewer than one batch of {batch}; lower --batch-size",
            train.len()
        );
    }
    let steps_per_epoch = train.len() / batch;
    let total_steps = steps_per_epoch * cfg.train.epochs;
    let plan = Plan {
        steps_per_epoch,
        schedule: WarmupCosine {
            base_lr: cfg.train.base_lr(),
            warmup_steps: steps_per_epoch * cfg.train.warmup(),
            total_steps,
        },
    };
    let stop_at = cfg
        .train
        .max_steps
        .map_or(total_steps, |m| m.min(total_steps));
    info!(
        images = train.len(),
        batch,
        steps_per_epoch,
        total_steps,
        base_lr = plan.schedule.base_lr,
        "plan"
    );

    let (mut trainer, mut state) = match ckpts.load_latest(&device)? {
        Some(loaded) if args.resume => {
            if loaded.state.config != cfg.simclr {
                bail!(
                    "--resume with a different model/loss/augmentation config than {}; \
                     resume with the run's own config.toml or start a new --out",
                    loaded.path.display()
                );
            }
            info!(step = loaded.state.step, path = %loaded.path.display(), "resuming");
            (
                SimclrTrainer::new(loaded.model, &cfg.simclr).with_optimizer(loaded.optim),
                loaded.state,
            )
        }
        _ => {
            device.seed(cfg.train.seed);
            let mut model = cfg.simclr.init_model(&device);
            if let Some(i) = &init {
                model = i.load(model)?;
            }
            let trainer = SimclrTrainer::new(model, &cfg.simclr);
            let state = TrainState {
                step: 0,
                epoch: 0,
                rng: ChaCha8Rng::seed_from_u64(cfg.train.seed),
                lr_scale: 1.0,
                config: cfg.simclr.clone(),
                extra: serde_json::Value::Null,
            };
            ckpts.save(trainer.model(), trainer.optimizer(), &state)?;
            (trainer, state)
        }
    };
    info!(
        params = trainable_params(&trainer.model().encoder),
        "encoder"
    );

    let monitor = match (cfg.train.knn_every > 0, train.in_memory()) {
        (true, Some(bank)) => Monitor::new(bank, &cfg, &root, &selected.device),
        (true, None) => {
            info!("kNN monitor off for streamed shards; score the run with `edgeclr eval`");
            None
        }
        (false, _) => None,
    };
    let mut metrics = Metrics::open(&out.join("metrics.jsonl"))?;
    let builder = BatchBuilder::new(cfg.simclr.augment.clone());
    let started = Instant::now();
    let first_step = state.step as usize;
    let mut last_loss = f32::NAN;
    let mut progress = Progress::default();

    let mut on_epoch = |epoch: usize,
                        trainer: &SimclrTrainer,
                        metrics: &mut Metrics|
     -> Result<Option<knn::Accuracy>> {
        let mut acc = None;
        if let Some(m) = &monitor
            && (epoch + 1).is_multiple_of(cfg.train.knn_every)
        {
            let a = m.knn(trainer, &cfg);
            info!(epoch, top1 = a.top1, top5 = a.top5, "kNN monitor");
            metrics.log(json!({"epoch": epoch, "knn_top1": a.top1, "knn_top5": a.top5}))?;
            acc = Some(a);
        }
        draw_plots(out)?;
        Ok(acc)
    };
    'training: while (state.step as usize) < stop_at {
        let segment = train_segment(
            &train,
            &builder,
            &cfg,
            &plan,
            stop_at,
            &device,
            &mut trainer,
            &mut state,
            &mut metrics,
            &ckpts,
            &mut progress,
            &mut on_epoch,
        )?;
        match segment {
            Segment::Done(loss) => {
                last_loss = loss;
                break 'training;
            }
            Segment::Diverged { step, loss } => {
                let loaded = ckpts
                    .load_latest(&device)?
                    .context("no checkpoint to roll back to")?;
                let lr_scale = state.lr_scale * 0.5;
                warn!(
                    step,
                    loss,
                    rollback_to = loaded.state.step,
                    lr_scale,
                    "non-finite loss: reloaded the last good checkpoint and halved the learning rate"
                );
                metrics.log(json!({"event": "diverged", "step": step, "loss": loss.to_string(), "rollback_to": loaded.state.step, "lr_scale": lr_scale}))?;
                trainer =
                    SimclrTrainer::new(loaded.model, &cfg.simclr).with_optimizer(loaded.optim);
                state = TrainState {
                    lr_scale,
                    ..loaded.state
                };
                progress.epoch_losses.clear();
                if lr_scale < 1e-6 {
                    bail!(
                        "loss keeps diverging even at lr × {lr_scale}; check the data and lower --lr"
                    );
                }
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    // The monitor already scored this exact model if the run ended on a monitored epoch.
    let knn_final = match progress.last_knn {
        Some((step, acc)) if step == state.step => Some(acc),
        _ => monitor.as_ref().map(|m| m.knn(&trainer, &cfg)),
    };
    if let Some(acc) = knn_final {
        info!(top1 = acc.top1, top5 = acc.top5, "final kNN");
    }
    draw_plots(out)?;
    let steps_run = state.step as usize - first_step;

    let encoder_path = out.join("encoder.bpk");
    save_weights(&trainer.model().encoder.clone().valid(), &encoder_path)?;
    // The head is thrown away for evaluation but kept for on-device fine-tuning.
    save_weights(&trainer.model().head.clone().valid(), &out.join("head.bpk"))?;
    let results = json!({
        "steps": state.step,
        "epochs_completed": state.epoch,
        "final_loss": last_loss,
        "knn": knn_final,
        // Training throughput: source images (two views each) per second of step time,
        // excluding the kNN monitor, plots and checkpoints.
        "images_per_second": (steps_run * batch) as f64 / progress.train_seconds.max(1e-9),
        "wall_seconds": elapsed,
        "corrupt_samples": progress.corrupt,
        "device": selected.description,
        "encoder": cfg.simclr.encoder,
        "encoder_params": trainable_params(&trainer.model().encoder),
        "representation_dim": cfg.simclr.encoder.output_dim(),
        "encoder_weights": encoder_path.file_name().map(|n| n.to_string_lossy().into_owned()),
    });
    write_atomic(
        &out.join("results.json"),
        serde_json::to_string_pretty(&results)?.as_bytes(),
    )?;
    println!("{}", serde_json::to_string(&results)?);
    Ok(())
}

/// The online kNN monitor: training split as memory bank, test split scored.
struct Monitor {
    bank: LabeledImages,
    test: LabeledImages,
    device: Device,
}

impl Monitor {
    /// The monitor for a labelled dataset with a test split; `None` (with a warning) otherwise.
    fn new(
        train: &LabeledImages,
        cfg: &PretrainConfig,
        root: &Path,
        device: &Device,
    ) -> Option<Self> {
        let mut bank = train.clone().labeled_only();
        if let Some(l) = cfg.train.knn_bank_limit {
            bank = bank.balanced_subset(l);
        }
        let test = match data::load(cfg.train.dataset, root, Split::Test) {
            Ok(t) => t.labeled_only(),
            Err(e) => {
                warn!("kNN monitor off: no labelled test split ({e:#})");
                return None;
            }
        };
        if bank.len() == 0 || test.len() == 0 {
            warn!("kNN monitor off: the dataset has no labels");
            return None;
        }
        Some(Self {
            bank,
            test,
            device: device.clone(),
        })
    }

    fn knn(&self, trainer: &SimclrTrainer, cfg: &PretrainConfig) -> knn::Accuracy {
        let encoder = trainer.model().encoder.clone().valid();
        let aug = &cfg.simclr.augment;
        let bank = features::extract(&encoder, &self.bank.images, aug, &self.device, 256);
        let query = features::extract(&encoder, &self.test.images, aug, &self.device, 256);
        let classes = self.bank.num_classes().max(self.test.num_classes());
        knn::knn_accuracy(
            &bank,
            &self.bank.labels,
            &query,
            &self.test.labels,
            classes,
            knn::KnnConfig::default(),
            &self.device,
        )
    }
}

/// Redraws `plots/{loss,lr,knn}.png` from `metrics.jsonl` (the one source of truth, so
/// resumed runs plot their whole history).
fn draw_plots(out: &Path) -> Result<()> {
    let text = fs::read_to_string(out.join("metrics.jsonl")).context("reading metrics.jsonl")?;
    let (mut loss, mut epoch_loss, mut lr, mut top1, mut top5) =
        (vec![], vec![], vec![], vec![], vec![]);
    for v in text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
    {
        let f = |k: &str| v.get(k).and_then(serde_json::Value::as_f64);
        if let (Some(step), Some(l)) = (f("step"), f("loss")) {
            loss.push((step, l));
            if let Some(r) = f("lr") {
                lr.push((step, r));
            }
        }
        if let (Some(l), Some(steps)) = (f("epoch_loss"), f("steps")) {
            epoch_loss.push((steps, l));
        }
        if let (Some(e), Some(t1), Some(t5)) = (f("epoch"), f("knn_top1"), f("knn_top5")) {
            top1.push((e + 1.0, t1));
            top5.push((e + 1.0, t5));
        }
    }
    let dir = out.join("plots");
    plots::line_chart(
        &dir.join("loss.png"),
        "SimCLR loss",
        "step",
        "loss",
        &[
            Series {
                label: "step",
                points: loss,
            },
            Series {
                label: "epoch mean",
                points: epoch_loss,
            },
        ],
    )?;
    plots::line_chart(
        &dir.join("lr.png"),
        "learning rate",
        "step",
        "lr",
        &[Series {
            label: "lr",
            points: lr,
        }],
    )?;
    if !top1.is_empty() {
        plots::line_chart(
            &dir.join("knn.png"),
            "kNN accuracy (k=200, t=0.1)",
            "epoch",
            "accuracy %",
            &[
                Series {
                    label: "top-1",
                    points: top1,
                },
                Series {
                    label: "top-5",
                    points: top5,
                },
            ],
        )?;
    }
    Ok(())
}

/// Running totals of a training loop, kept across rollbacks.
#[derive(Default)]
struct Progress {
    /// Losses of the current epoch.
    epoch_losses: Vec<f32>,
    /// Seconds spent in training steps (data wait included, monitor/plots/checkpoints not).
    train_seconds: f64,
    /// The step and result of the latest kNN check.
    last_knn: Option<(u64, knn::Accuracy)>,
    /// Streamed samples skipped because they did not decode.
    corrupt: usize,
}

enum Segment {
    Done(f32),
    Diverged { step: usize, loss: f32 },
}

/// Host views of one batch, built off the training thread.
struct Prepared {
    step: usize,
    views: Vec<f32>,
    mark: Option<source::StreamMark>,
}

/// Trains from `state.step` until `stop_at` or a non-finite loss.
#[allow(clippy::too_many_arguments)]
fn train_segment(
    data: &TrainData,
    builder: &BatchBuilder,
    cfg: &PretrainConfig,
    plan: &Plan,
    stop_at: usize,
    device: &Device,
    trainer: &mut SimclrTrainer,
    state: &mut TrainState,
    metrics: &mut Metrics,
    ckpts: &CheckpointDir,
    progress: &mut Progress,
    on_epoch: &mut OnEpoch<'_>,
) -> Result<Segment> {
    let batch = cfg.train.batch_size;
    let seed = cfg.train.seed;
    let side = cfg.simclr.augment.image_size;
    let start = state.step as usize;
    std::thread::scope(|scope| -> Result<Segment> {
        // Producer: reads/decodes and augments upcoming batches (rayon inside) while the
        // device trains; a stream resumes at the checkpoint's mark.
        let mut batches = Batches::open(data, seed, state)?;
        let (tx, rx) = mpsc::sync_channel::<Result<Prepared>>(2);
        scope.spawn(move || {
            for step in start..stop_at {
                let built = batches.with_batch(step, batch, plan, |picked| {
                    builder.views(picked, batch_seed(seed, step))
                });
                let failed = built.is_err();
                let msg = built.map(|(views, mark)| Prepared { step, views, mark });
                if tx.send(msg).is_err() || failed {
                    return; // the trainer stopped early (divergence), or the data failed
                }
            }
        });

        let mut bar = new_bar(plan, state.step as usize);
        let mut tick = Instant::now();
        let mut last = f32::NAN;
        for prepared in rx {
            let prepared = prepared?;
            let step = prepared.step;
            let epoch = step / plan.steps_per_epoch;
            let views = Tensor::<4>::from_data(
                TensorData::new(prepared.views, [2 * batch, 3, side, side]),
                device,
            );
            let lr = plan.schedule.lr(step) * state.lr_scale;
            let outcome = trainer.step(views, lr);
            if !outcome.loss.is_finite() {
                bar.abandon();
                return Ok(Segment::Diverged {
                    step,
                    loss: outcome.loss,
                });
            }
            last = outcome.loss;
            progress.epoch_losses.push(outcome.loss);
            state.step = step as u64 + 1;
            if let Some(mark) = prepared.mark {
                mark.record(state)?;
                progress.corrupt = mark.corrupt;
            }
            let dt = tick.elapsed().as_secs_f64();
            progress.train_seconds += dt;
            let ips = batch as f64 / dt.max(1e-9);
            metrics.log(json!({"step": step, "epoch": epoch, "loss": outcome.loss, "lr": lr, "images_per_second": ips}))?;
            bar.set_message(format!(
                "loss {:.4}  lr {lr:.4}  {ips:.0} img/s",
                outcome.loss
            ));
            bar.inc(1);
            let end_of_epoch = (step + 1) % plan.steps_per_epoch == 0;
            if end_of_epoch || step + 1 == stop_at {
                let losses = &progress.epoch_losses;
                let mean = losses.iter().sum::<f32>() / losses.len().max(1) as f32;
                if end_of_epoch {
                    state.epoch = epoch as u64 + 1;
                    metrics
                        .log(json!({"epoch": epoch, "epoch_loss": mean, "steps": state.step}))?;
                    info!(epoch, loss = mean, "epoch done");
                    progress.epoch_losses.clear();
                    if let Some(acc) = on_epoch(epoch, trainer, metrics)? {
                        progress.last_knn = Some((state.step, acc));
                    }
                }
                ckpts.save(trainer.model(), trainer.optimizer(), state)?;
                bar.finish();
                if step + 1 < stop_at {
                    bar = new_bar(plan, step + 1);
                }
            }
            tick = Instant::now();
        }
        Ok(Segment::Done(last))
    })
}

fn new_bar(plan: &Plan, step: usize) -> ProgressBar {
    let epoch = step / plan.steps_per_epoch;
    let bar = ProgressBar::new(plan.steps_per_epoch as u64);
    bar.set_position((step % plan.steps_per_epoch) as u64);
    bar.set_style(
        ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}")
            .expect("static template")
            .progress_chars("=> "),
    );
    bar.set_prefix((epoch + 1).to_string());
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_order_is_a_permutation_and_changes_per_epoch() {
        let a = epoch_order(1, 0, 50);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_ne!(a, epoch_order(1, 1, 50));
        assert_eq!(a, epoch_order(1, 0, 50));
    }
}
