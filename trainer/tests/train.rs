//! The training loop on a tiny synthetic shard set (written with cvrl-formats): R3D-18 on
//! 16-pixel crops of 4-frame clips, on the CPU. The loss falls well below chance within 24
//! steps; a run resumed from a checkpoint continues an uninterrupted one to 1e-6; a
//! checkpoint of another model is refused by name; a diverging run stops on the NaN.
//!
//! R3D-18 has 20M parameters whatever the input size, so a step costs about a second on one
//! core (mostly the weight gradients of res4/res5 and the optimiser's pass over the
//! weights); the tests run libtorch on one thread each so that the two cores of a small
//! machine run two tests at once.

mod common;

use common::{tiny, write_set, BATCH, CLASSES};
use cvrl_trainer::augment::AugmentConfig;
use cvrl_trainer::augment::AugmentTransform;
use cvrl_trainer::checkpoint::{self, CheckpointError};
use cvrl_trainer::device::{cuda_autocast, enable_bf16_autocast, DeviceChoice};
use cvrl_trainer::loss::info_nce;
use cvrl_trainer::model::{clips_to_input, HeadConfig, Model, R3dConfig};
use cvrl_trainer::run_dir::RunDir;
use cvrl_trainer::tensorboard;
use cvrl_trainer::train::{
    train, train_with, MicroBatch, Silent, StepLog, Stepper, TrainConfig, TrainError, Views,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tch::{Cuda, Device, Kind, Tensor};

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

fn read_log(run: &Path) -> Vec<StepLog> {
    std::fs::read_to_string(run.join("log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn show(xs: &[f64]) -> String {
    xs.iter().map(|x| format!("{x:.3}")).collect::<Vec<_>>().join(" ")
}

#[test]
fn the_loss_falls_well_below_chance_within_24_steps() {
    let shards = tempfile::tempdir().unwrap();
    write_set(shards.path(), false);
    let out = tempfile::tempdir().unwrap();
    let mut cfg = tiny(shards.path(), out.path().join("run"), 24);
    // 0.02 per step at batch 8. The first steps drop the loss fastest; higher rates (0.05,
    // 0.1) learn as fast but spike more on the plateau.
    cfg.lr = 0.02 * 1024.0 / BATCH as f64;
    // Crop and flip only: this test is about the loop learning, and with colour jitter,
    // grayscale and blur on 16-pixel crops of these 48x40 gratings, 24 steps only reach
    // chance level (the full augmentation runs in the resume test and end to end).
    let mild = AugmentConfig { out_size: cfg.crop, ..AugmentConfig::first_view() }.geometric_only();
    let transform = Arc::new(AugmentTransform::with_views([mild, mild]));
    let summary = train_with(&cfg, None, &mut Silent, transform, None, None).unwrap();
    let losses = &summary.losses;
    println!("loss curve: {}", show(losses));
    println!("step times (s): {}", show(&summary.step_times));
    assert_eq!(losses.len(), 24);
    assert!(losses.iter().all(|l| l.is_finite()));

    let (first, last) = (mean(&losses[..5]), mean(&losses[losses.len() - 5..]));
    // Observed over seeds 1-5 (lr 0.02-0.1): on the plateau the loss moves from step to step
    // with a standard deviation of up to 0.45, so a 5-step mean has a standard error of
    // 0.45/sqrt(5) = 0.2 and the difference of two such means 0.28. 1.0 is 3.5 of those;
    // the runs dropped by 0.8-1.0 at lr 0.1 over 20 steps and by 1.6-2.3 at lr 0.02 over 24.
    let margin = 1.0;
    println!("mean of the first 5: {first:.3}, of the last 5: {last:.3}");
    assert!(last < first - margin, "first 5 {first:.3}, last 5 {last:.3}: {losses:?}");
    // A collapse to identical embeddings also lowers a bad initial loss, to exactly chance,
    // 2 ln(2N - 1) (uniform over the 2N - 1 other clips, both directions summed). Learning
    // to tell the videos apart goes below it.
    let chance = 2.0 * ((2 * BATCH - 1) as f64).ln();
    assert!(last < chance - margin, "last 5 {last:.3} not below chance {chance:.3}");

    let log = read_log(&out.path().join("run"));
    assert_eq!(log.iter().map(|l| l.step).collect::<Vec<_>>(), (0..24).collect::<Vec<_>>());
    // JSON holds the shortest decimal that reads back as the f64; serde_json's fast parser
    // may land one ulp off.
    assert!(log.iter().zip(losses).all(|(l, x)| (l.loss - x).abs() <= 1e-12 * x.abs()));
    assert_eq!(log[0].lr, 0.0, "warm-up starts from 0");
    assert!((log[2].lr - 0.02).abs() < 1e-12, "peak after 2 warm-up steps");
    assert!(log.iter().all(|l| l.clips_per_s > 0.0 && (0.0..=1.0).contains(&l.data_wait)));
    // Only the final checkpoint (checkpoint_every 0), and the exported backbone.
    let ckpts = checkpoint::list(&out.path().join("run")).unwrap();
    assert_eq!(ckpts.iter().map(|c| c.0).collect::<Vec<_>>(), [24]);
    assert!(summary.encoder.is_file());

    // Every step's scalars are in the run's one TensorBoard event file too.
    let files = tensorboard::event_files(&out.path().join("run/tb")).unwrap();
    assert_eq!(files.len(), 1, "{files:?}");
    let points = tensorboard::read_scalars(&files[0]).unwrap();
    let tb_losses: Vec<(i64, f32)> =
        points.iter().filter(|p| p.tag == "train/loss").map(|p| (p.step, p.value)).collect();
    let want: Vec<(i64, f32)> =
        losses.iter().enumerate().map(|(i, &l)| (i as i64, l as f32)).collect();
    assert_eq!(tb_losses, want);
    for tag in ["train/lr", "train/clips_per_s", "train/data_wait", "train/step_time_s"] {
        assert_eq!(points.iter().filter(|p| p.tag == tag).count(), 24, "{tag}");
    }
}

#[test]
fn a_resumed_run_continues_an_uninterrupted_one_exactly() {
    let shards = tempfile::tempdir().unwrap();
    write_set(shards.path(), false);
    let out = tempfile::tempdir().unwrap();
    let (run_a, run_b) = (out.path().join("a"), out.path().join("b"));
    // The full CVRL augmentation here: the loader's generators are what must line up. With
    // two micro-batches per step: the loader's batches are micro-batches, and a resumed run
    // must start at the right one.
    let mut cfg = tiny(shards.path(), run_a.clone(), 6);
    cfg.checkpoint_every = 3;
    cfg.accumulate = 2;
    let whole = train(&cfg, None, &mut Silent).unwrap();
    assert_eq!(whole.losses.len(), 6);

    // Run b crashed right after its step-3 checkpoint, having logged steps up to 5: the
    // same directory content as run a's, minus the later checkpoint.
    std::fs::create_dir(&run_b).unwrap();
    let ckpt3 = RunDir::new(&run_a).checkpoint(3);
    std::fs::create_dir(RunDir::new(&run_b).checkpoint(3)).unwrap();
    for f in [checkpoint::MODEL_FILE, checkpoint::OPTIMIZER_FILE, checkpoint::STATE_FILE] {
        std::fs::copy(ckpt3.join(f), RunDir::new(&run_b).checkpoint(3).join(f)).unwrap();
    }
    std::fs::copy(run_a.join("log.jsonl"), run_b.join("log.jsonl")).unwrap();

    let cfg_b = TrainConfig { out: run_b.clone(), ..cfg.clone() };
    let resumed = train(&cfg_b, Some(&run_b), &mut Silent).unwrap();
    assert_eq!(resumed.start_step, 3);
    println!("losses of steps 0-5, uninterrupted: {}", show(&whole.losses));
    println!("losses of steps 3-5, resumed at 3:  {}", show(&resumed.losses));
    assert_eq!(resumed.losses.len(), 3);
    for (k, (a, b)) in whole.losses[3..].iter().zip(&resumed.losses).enumerate() {
        assert!((a - b).abs() < 1e-6, "step {}: {a} uninterrupted, {b} resumed", k + 3);
    }
    // The log holds every step once: the crashed run's steps 3-5 were replaced.
    let log = read_log(&run_b);
    assert_eq!(log.iter().map(|l| l.step).collect::<Vec<_>>(), [0, 1, 2, 3, 4, 5]);
    // Weights after step 6 agree too.
    let read = |run: &Path| {
        let mut t = tch::Tensor::read_safetensors(run.join("encoder.safetensors")).unwrap();
        t.sort_by(|a, b| a.0.cmp(&b.0));
        t
    };
    let (wa, wb) = (read(&run_a), read(&run_b));
    assert_eq!(wa.len(), wb.len());
    for ((na, ta), (nb, tb)) in wa.iter().zip(&wb) {
        assert_eq!(na, nb);
        let diff = f64::try_from((ta - tb).abs().max()).unwrap();
        assert!(diff < 1e-5, "{na}: {diff}");
    }

    // A fresh run refuses to overwrite run a; a checkpoint of another model is refused
    // with the tensors that differ.
    let err = train(&cfg, None, &mut Silent).unwrap_err();
    assert!(matches!(err, TrainError::RunExists { .. }), "{err}");
    let other = TrainConfig { embedding_dim: 16, out: out.path().join("c"), ..cfg.clone() };
    let err = train(&other, Some(&ckpt3), &mut Silent).unwrap_err();
    let msg = err.to_string();
    println!("{msg}");
    assert!(matches!(err, TrainError::Checkpoint(CheckpointError::OtherModel { .. })), "{msg}");
    assert!(msg.contains("head.2.linear.weight is [32, 64] there but [16, 64] here"), "{msg}");
}

#[test]
fn a_diverging_run_stops_on_the_nan_and_names_the_last_good_checkpoint() {
    let shards = tempfile::tempdir().unwrap();
    write_set(shards.path(), false);
    let out = tempfile::tempdir().unwrap();
    let mut cfg = tiny(shards.path(), out.path().join("run"), 6);
    cfg.checkpoint_every = 1;
    cfg.warmup_epochs = 1.0; // step 0 has lr 0: a good first checkpoint
    cfg.lr = 1e38; // then weights overflow to infinity
    let err = train(&cfg, None, &mut Silent).unwrap_err();
    let msg = err.to_string();
    println!("{msg}");
    // Steps 0 (lr 0) and 1 leave finite weights and write checkpoints; the rate then
    // overflows the weights, and the run stops at the first non-finite loss or weight.
    let latest = checkpoint::resolve(&out.path().join("run")).unwrap();
    let (stop, last) = match &err {
        TrainError::NonFiniteLoss { step, last_checkpoint, .. }
        | TrainError::NonFiniteWeights { step, last_checkpoint, .. } => (*step, last_checkpoint),
        other => panic!("expected a non-finite stop, got {other}"),
    };
    assert_eq!(last.as_deref(), Some(latest.as_path()), "{msg}");
    assert!(msg.contains(&latest.display().to_string()), "{msg}");
    let saved = checkpoint::read_state(&latest).unwrap().step;
    assert!((1..=stop).contains(&saved) && stop < 6, "stopped at {stop}, last checkpoint {saved}");
    // What the checkpoint holds is finite.
    for (name, t) in tch::Tensor::read_safetensors(latest.join(checkpoint::MODEL_FILE)).unwrap() {
        assert!(bool::try_from(t.isfinite().all()).unwrap(), "{name}");
    }
}

/// On a CUDA machine: the forward pass runs in bf16 under autocast, the loss in f32, the
/// gradients of the (f32) weights in f32, and a few training steps give finite losses.
/// Skipped (passes) without a GPU.
#[test]
fn on_cuda_the_forward_pass_runs_in_bf16_and_the_loss_in_f32() {
    if !Cuda::is_available() {
        println!("skipped: libtorch sees no CUDA device");
        return;
    }
    assert!(enable_bf16_autocast());
    let vs = tch::nn::VarStore::new(Device::Cuda(0));
    let head = HeadConfig { hidden_layers: 2, hidden_dim: 64, out_dim: 32 };
    let model = Model::new(&vs.root(), &R3dConfig::r3d18(), &head).unwrap();
    let clips = Tensor::ones([8, 3, 4, 32, 32], (Kind::Uint8, Device::Cpu)) * 100;
    let xs = clips_to_input(&clips, vs.device()).unwrap();
    let (features, z) = cuda_autocast(true, || model.forward_t(&xs, true));
    println!("features {:?}, embeddings {:?}", features.kind(), z.kind());
    assert_eq!(z.kind(), Kind::BFloat16);
    let z = z.chunk(2, 0);
    let loss = info_nce(&z[0], &z[1], 0.1);
    assert_eq!(loss.kind(), Kind::Float);
    loss.backward();
    let grad = vs.variables()["stem.conv.weight"].grad();
    assert_eq!(grad.kind(), Kind::Float);

    let shards = tempfile::tempdir().unwrap();
    write_set(shards.path(), false);
    let out = tempfile::tempdir().unwrap();
    let mut cfg = tiny(shards.path(), out.path().join("run"), 4);
    cfg.device = DeviceChoice::Cuda(0);
    let summary = train(&cfg, None, &mut Silent).unwrap();
    println!("CUDA losses: {}", show(&summary.losses));
    println!("CUDA step times (s): {}", show(&summary.step_times));
    assert!(summary.losses.iter().all(|l| l.is_finite()));
}

/// `n` videos' worth of deterministic, varied clip bytes for one view (`[n, 3, T, S, S]`).
fn pseudo_clips(cfg: &TrainConfig, n: usize, phase: u64) -> Vec<u8> {
    let len = n * 3 * (cfg.frames * cfg.crop * cfg.crop) as usize;
    (0..len as u64).map(|i| ((i + phase).wrapping_mul(2_654_435_761) >> 13) as u8).collect()
}

/// Every variable's gradient, by name.
fn gradients(stepper: &Stepper) -> Vec<(String, Tensor)> {
    let mut g: Vec<(String, Tensor)> = stepper
        .var_store()
        .variables()
        .into_iter()
        .filter(|(_, v)| v.requires_grad())
        .map(|(n, v)| (n, v.grad().copy()))
        .collect();
    g.sort_by(|a, b| a.0.cmp(&b.0));
    g
}

fn assert_gradients_close(a: &[(String, Tensor)], b: &[(String, Tensor)], rel: f64) {
    assert_eq!(a.len(), b.len());
    for ((na, ga), (nb, gb)) in a.iter().zip(b) {
        assert_eq!(na, nb);
        let scale = f64::try_from(ga.abs().max()).unwrap().max(1e-12);
        let diff = f64::try_from((ga - gb).abs().max()).unwrap();
        // The absolute floor: a dense bias before BatchNorm has a zero gradient up to
        // rounding.
        assert!(
            diff <= rel * scale + 1e-5,
            "{na}: max difference {diff:e}, max gradient {scale:e}"
        );
    }
}

/// R3D-18 at base width 8 on 4 x 16 x 16 clips: a fraction of a second per pass.
fn small_step_config(batch: usize, accumulate: usize) -> TrainConfig {
    TrainConfig {
        base_width: 8,
        batch_size: batch,
        accumulate,
        ..tiny(Path::new("unused"), PathBuf::from("unused"), 1)
    }
}

#[test]
fn accumulated_gradients_are_the_mean_of_the_micro_batch_gradients() {
    tch::set_num_threads(1);
    // Two micro-batches of 2 videos in one step of 4 ...
    let cfg = small_step_config(4, 2);
    let (a1, b1) = (pseudo_clips(&cfg, 2, 0), pseudo_clips(&cfg, 2, 7));
    let (a2, b2) = (pseudo_clips(&cfg, 2, 13), pseudo_clips(&cfg, 2, 29));
    let micro = |a: &'static [u8], b: &'static [u8]| MicroBatch {
        views: Views::Host { a, b },
        labels: None,
    };
    let leak = |v: Vec<u8>| -> &'static [u8] { Box::leak(v.into_boxed_slice()) };
    let (a1, b1, a2, b2) = (leak(a1), leak(b1), leak(a2), leak(b2));
    let mut accumulated = Stepper::new(&cfg, None, None).unwrap();
    accumulated.zero_grad();
    let l1 = accumulated.backward(0, &micro(a1, b1)).unwrap();
    let l2 = accumulated.backward(0, &micro(a2, b2)).unwrap();
    let mean_loss = (f64::try_from(&l1).unwrap() + f64::try_from(&l2).unwrap()) / 2.0;
    let together = gradients(&accumulated);

    // ... against each micro-batch as a step of its own (same seed: same initial weights).
    let mut single = Stepper::new(&small_step_config(2, 1), None, None).unwrap();
    let mut separate = Vec::new();
    for (a, b) in [(a1, b1), (a2, b2)] {
        single.zero_grad();
        let loss = single.backward(0, &micro(a, b)).unwrap();
        separate.push((f64::try_from(&loss).unwrap(), gradients(&single)));
    }
    let mean: Vec<(String, Tensor)> = separate[0]
        .1
        .iter()
        .zip(&separate[1].1)
        .map(|((n, g1), (_, g2))| (n.clone(), (g1 + g2) / 2.0))
        .collect();
    assert!((mean_loss - (separate[0].0 + separate[1].0) / 2.0).abs() < 1e-6);
    assert_gradients_close(&together, &mean, 1e-5);
    // Not trivially: the two micro-batches' gradients differ.
    let stem =
        |g: &[(String, Tensor)]| g.iter().find(|(n, _)| n == "stem.conv.weight").unwrap().1.copy();
    let differ = f64::try_from((stem(&separate[0].1) - stem(&separate[1].1)).abs().max()).unwrap();
    assert!(differ > 1e-6, "{differ}");

    // The update then returns the micro-batches' mean loss.
    assert!((accumulated.update(0, 0.0, &[l1, l2]).unwrap() - mean_loss).abs() < 1e-6);

    // A micro-batch of the wrong size is refused, not reshaped.
    let err = accumulated.backward(1, &micro(&a1[1..], b1)).unwrap_err();
    assert!(matches!(err, TrainError::Config(_)), "{err}");
}

#[test]
fn the_channels_last_layout_computes_the_same_step() {
    tch::set_num_threads(1);
    let cfg = small_step_config(2, 1);
    let (a, b) = (pseudo_clips(&cfg, 2, 3), pseudo_clips(&cfg, 2, 5));
    let micro = MicroBatch { views: Views::Host { a: &a, b: &b }, labels: None };
    let mut plain = Stepper::new(&cfg, None, None).unwrap();
    let mut last =
        Stepper::new(&TrainConfig { channels_last: true, ..cfg.clone() }, None, None).unwrap();
    let stem = &last.var_store().variables()["stem.conv.weight"];
    assert!(!stem.is_contiguous(), "conv kernels are stored channels-last");
    plain.zero_grad();
    last.zero_grad();
    let lp = f64::try_from(&plain.backward(0, &micro).unwrap()).unwrap();
    let ll = f64::try_from(&last.backward(0, &micro).unwrap()).unwrap();
    assert!((lp - ll).abs() < 1e-4 * lp.abs(), "{lp} vs {ll}");
    assert_gradients_close(&gradients(&plain), &gradients(&last), 1e-3);
}

#[test]
fn supervised_training_lowers_the_cross_entropy_on_labelled_videos() {
    let shards = tempfile::tempdir().unwrap();
    write_set(shards.path(), true);
    let out = tempfile::tempdir().unwrap();
    let steps = 60;
    let mut cfg = tiny(shards.path(), out.path().join("run"), steps);
    cfg.supervised = true;
    cfg.base_width = 16;
    // 0.003 per step at batch 8 (0.01 learns as fast but is noisier). Base width 16: the
    // classes are arbitrary groups of 4 videos, so the model must tell the 16 videos apart,
    // which takes more steps than the contrastive test; a narrow backbone makes them cheap.
    cfg.lr = 0.003 * 1024.0 / BATCH as f64;
    let mild = AugmentConfig { out_size: cfg.crop, ..AugmentConfig::first_view() }.geometric_only();
    let transform = Arc::new(AugmentTransform::with_views([mild, mild]));
    let summary = train_with(&cfg, None, &mut Silent, transform, None, None).unwrap();
    let losses = &summary.losses;
    println!("supervised loss curve: {}", show(losses));
    // Windows of 10 steps: 5 epochs, each video seen 5 times (the two halves of the set
    // alternate, and their losses differ).
    let (first, last) = (mean(&losses[..10]), mean(&losses[losses.len() - 10..]));
    let chance = f64::from(CLASSES).ln();
    println!("mean of the first 10: {first:.3}, of the last 10: {last:.3}, chance {chance:.3}");
    // Observed: 1.78 -> 0.89 (seed 1), with steps scattered by +-0.3 around the trend.
    assert!(last < first - 0.4, "first 10 {first:.3}, last 10 {last:.3}");
    assert!(last < chance - 0.2, "last 10 {last:.3} not below chance {chance:.3}");

    // The encoder export holds the backbone alone, as a CVRL run's does.
    let encoder = Tensor::read_safetensors(&summary.encoder).unwrap();
    assert!(encoder.iter().all(|(n, _)| !n.starts_with("head.")));
    assert!(encoder.iter().any(|(n, _)| n == "stem.conv.weight"));
    let model =
        Tensor::read_safetensors(summary.last_checkpoint.unwrap().join(checkpoint::MODEL_FILE))
            .unwrap();
    let classifier = model.iter().find(|(n, _)| n == "head.linear.weight").unwrap();
    assert_eq!(classifier.1.size(), [i64::from(CLASSES), 128]);
}

#[test]
fn supervised_training_refuses_a_set_without_labels() {
    let shards = tempfile::tempdir().unwrap();
    write_set(shards.path(), false);
    let out = tempfile::tempdir().unwrap();
    let cfg = TrainConfig { supervised: true, ..tiny(shards.path(), out.path().join("run"), 1) };
    let err = train(&cfg, None, &mut Silent).unwrap_err();
    let msg = err.to_string();
    println!("{msg}");
    assert!(matches!(err, TrainError::NoLabels { .. }), "{msg}");
    assert!(msg.contains("--supervised needs labelled videos") && msg.contains("no classes"));
    assert!(!out.path().join("run").exists(), "nothing written");
}
