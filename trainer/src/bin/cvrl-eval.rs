//! `cvrl-eval`: scores a trained encoder on labelled shard sets (linear probe, kNN) and
//! draws the comparison plots. Parses flags and prints; the work is
//! [`cvrl_trainer::eval`].

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use cvrl_formats::atomic::atomic_write;
use cvrl_formats::SetPath;
use cvrl_trainer::device::{pick_device, DeviceChoice};
use cvrl_trainer::eval::features::Target;
use cvrl_trainer::eval::finetune::{finetune, FinetuneConfig};
use cvrl_trainer::eval::knn::KnnConfig;
use cvrl_trainer::eval::linear::LinearConfig;
use cvrl_trainer::eval::plot::{self, Bar};
use cvrl_trainer::eval::probe::{evaluate, Method, ProbeData, Report};
use cvrl_trainer::eval::{read_run_config, Encoder};
use cvrl_trainer::run_dir::RunDir;
use cvrl_trainer::train::Reporter;
use indicatif::{ProgressBar, ProgressStyle};

/// Evaluate an encoder trained by `cvrl-train` on labelled shard sets, the way the paper
/// does: frozen features with a linear classifier (`linear`) or nearest neighbours (`knn`),
/// or the whole network fine-tuned on the labels (`finetune`).
/// `--random-init` evaluates the same architecture untrained, the baseline every table
/// needs. `report` gathers result files into one table and plots.
///
/// Each evaluation prints a table, writes OUT/<name>.json (scores, confusion matrix, every
/// setting) and OUT/<name>-confusion.png. Features are cached in OUT/cache under a key of the
/// weights, the set contents and the views. Exit status: 0 done, 1 error, 2 bad usage.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Linear probe on frozen, L2-normalised features (reference linear evaluation).
    Linear {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        linear: LinearArgs,
    },
    /// Weighted k-nearest-neighbour accuracy on frozen features (no training; quick).
    Knn {
        #[command(flatten)]
        common: Common,
        /// Neighbours that vote.
        #[arg(long, default_value_t = 20)]
        k: i64,
        /// Vote weight exp(similarity / T).
        #[arg(long, default_value_t = 0.07)]
        knn_temperature: f64,
    },
    /// Fine-tunes the whole encoder plus a linear classifier on the train set's labels
    /// (`cvrl-train --supervised --init-encoder` into OUT/finetune-<label>-seed<N>), then
    /// scores it on the val set's test views. With --random-init: trained from scratch.
    Finetune {
        #[command(flatten)]
        common: Common,
        /// Passes over the train set.
        #[arg(long, default_value_t = 10.0)]
        epochs: f64,
        /// Videos per step [default: the pretraining run's].
        #[arg(long)]
        batch_size: Option<usize>,
        /// Learning rate per 1024 videos.
        #[arg(long, default_value_t = 0.32)]
        lr: f64,
        #[arg(long, default_value_t = 1.0)]
        warmup_epochs: f64,
    },
    /// Gathers result JSON files into a table (mean and spread over seeds per label) and
    /// plots: accuracy per label (OUT/accuracy-<method>-<target>.png) and, with --run, the
    /// pretraining loss curves (OUT/loss.png).
    Report {
        /// Result files written by `linear` or `knn`.
        #[arg(required = true)]
        results: Vec<PathBuf>,
        /// Where the plots go.
        #[arg(long, default_value = "report")]
        out: PathBuf,
        /// Run directories whose log.jsonl loss curves to plot.
        #[arg(long = "run", value_name = "RUN_DIR")]
        runs: Vec<PathBuf>,
    },
}

#[derive(Args)]
struct Common {
    /// The cvrl-train run directory (run.json + encoder.safetensors).
    #[arg(long, value_name = "RUN_DIR")]
    run: PathBuf,
    /// Labelled shard set to fit the probe on, DIR or DIR:SPLIT (the videos of one split of
    /// it, e.g. out/:train); repeat for several.
    #[arg(long, required = true, value_name = "SET")]
    train: Vec<SetPath>,
    /// Labelled shard set to score, DIR or DIR:SPLIT (e.g. out/:val); repeat for several.
    #[arg(long, required = true, value_name = "SET")]
    val: Vec<SetPath>,
    /// Evaluate the run's architecture with random weights (seeded by --seed) instead.
    #[arg(long)]
    random_init: bool,
    /// What to predict: `class`, or a factor recorded in the index (proxy data: object, motion).
    #[arg(long, default_value = "class")]
    target: Target,
    /// Frames per clip [default: the run's].
    #[arg(long)]
    frames: Option<u32>,
    /// Frames between clip frames at the run's base fps [default: the run's].
    #[arg(long)]
    stride: Option<u32>,
    /// Side of the square views [default: the run's crop].
    #[arg(long)]
    size: Option<u32>,
    /// Random clips (crop + flip) per training video.
    #[arg(long, default_value_t = 4)]
    train_clips: u32,
    /// Evenly spaced clips per test video (reference 10).
    #[arg(long, default_value_t = 10)]
    temporal_views: u32,
    /// Full-short-side crops per test clip along the long side (reference 3).
    #[arg(long, default_value_t = 3)]
    spatial_crops: u32,
    /// Seeds the training views, the probe and --random-init.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: DeviceChoice,
    /// Output directory [default: RUN_DIR/eval].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Name of the result files and the label in reports [default: cvrl, supervised or
    /// random-init, then the target].
    #[arg(long)]
    name: Option<String>,
    /// Recompute features even when cached.
    #[arg(long)]
    no_cache: bool,
}

#[derive(Args)]
struct LinearArgs {
    /// Passes over the training views.
    #[arg(long, default_value_t = 100.0)]
    epochs: f64,
    /// Views per step.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Learning rate per 1024 views (reference 32), scaled to --batch.
    #[arg(long, default_value_t = 32.0)]
    lr: f64,
    #[arg(long, default_value_t = 5.0)]
    warmup_epochs: f64,
}

fn main() -> ExitCode {
    // Feature extraction and fine-tuning on the CPU free and re-allocate their tensors at
    // every batch: keep that memory instead of page-faulting it in again.
    cvrl_trainer::device::keep_freed_host_memory();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cvrl-eval: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Linear { common, linear } => {
            let cfg = LinearConfig {
                epochs: linear.epochs,
                batch: linear.batch,
                lr: linear.lr,
                warmup_epochs: linear.warmup_epochs,
                ..LinearConfig::default()
            };
            probe(common, Method::Linear(cfg))
        }
        Command::Knn { common, k, knn_temperature } => {
            probe(common, Method::Knn(KnnConfig { k, temperature: knn_temperature }))
        }
        Command::Finetune { common, epochs, batch_size, lr, warmup_epochs } => {
            let out = common.out.clone().unwrap_or_else(|| RunDir::new(&common.run).eval());
            let label = label_of(&common)?;
            let cfg = FinetuneConfig {
                epochs,
                batch_size,
                lr,
                warmup_epochs,
                out: out.join(format!("finetune-{label}-seed{}", common.seed)),
                device: common.device,
            };
            probe(common, Method::Finetune(cfg))
        }
        Command::Report { results, out, runs } => report(&results, &out, &runs),
    }
}

/// Runs one evaluation and writes its table, JSON and confusion plot.
fn probe(c: Common, method: Method) -> Result<()> {
    let label = label_of(&c)?;
    let out = c.out.clone().unwrap_or_else(|| RunDir::new(&c.run).eval());
    let data = ProbeData {
        train: c.train,
        val: c.val,
        target: c.target,
        frames: c.frames,
        stride: c.stride,
        size: c.size,
        train_clips: c.train_clips,
        temporal_views: c.temporal_views,
        spatial_crops: c.spatial_crops,
        seed: c.seed,
        cache: (!c.no_cache).then(|| out.join("cache")),
    };
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{msg:>16} [{bar:30}] {pos}/{len} videos")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let progress = |stage: &str, done: usize, total: usize| {
        bar.set_message(stage.to_owned());
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    };
    let report = match &method {
        Method::Finetune(cfg) => {
            let (scores, test_views) =
                finetune(&c.run, c.random_init, &data, cfg, &mut Say, &progress)?;
            let from = if c.random_init { "random init" } else { "encoder" };
            Report {
                method: method.clone(),
                encoder: format!("{from} of {}, fine-tuned", c.run.display()),
                data: data.clone(),
                views: [format!("supervised training into {}", cfg.out.display()), test_views],
                scores,
            }
        }
        _ => {
            let device = pick_device(c.device)?;
            let encoder = Encoder::load(&c.run, c.random_init.then_some(c.seed), device)?;
            evaluate(&encoder, &data, &method, &progress)?
        }
    };
    bar.finish_and_clear();
    let name = format!("{label}-{}-{}-seed{}", method.name(), data.target, c.seed);
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let json = out.join(format!("{name}.json"));
    let value = serde_json::json!({ "label": label, "report": &report });
    let text = serde_json::to_string_pretty(&value)?;
    atomic_write(&json, |f| f.write_all(text.as_bytes()))?;
    let png = out.join(format!("{name}-confusion.png"));
    plot::confusion(
        &png,
        &format!("{label}: {} {} top-1 {:.1}%", method.name(), data.target, report.scores.top1),
        &report.scores,
    )?;
    print_table(&[(label, &report)]);
    println!("wrote {} and {}", json.display(), png.display());
    Ok(())
}

/// `--name`, else `cvrl`, `supervised` or `random-init` from the run's configuration.
fn label_of(c: &Common) -> Result<String> {
    if let Some(name) = &c.name {
        return Ok(name.clone());
    }
    if c.random_init {
        return Ok("random-init".into());
    }
    let config = read_run_config(&c.run)?;
    Ok(if config.supervised { "supervised" } else { "cvrl" }.into())
}

/// Prints what fine-tuning's training loop reports, apart from every step.
struct Say;
impl Reporter for Say {
    fn note(&mut self, message: &str) {
        eprintln!("{message}");
    }
}

fn print_table(rows: &[(String, &Report)]) {
    println!("| label | method | target | top-1 | top-5 | train top-1 | encoder |");
    println!("|---|---|---|---|---|---|---|");
    for (label, r) in rows {
        let train = r.scores.train_top1.map_or("-".to_owned(), |t| format!("{t:.1}"));
        println!(
            "| {label} | {} | {} | {:.1} | {:.1} | {train} | {} |",
            r.method.name(),
            r.data.target,
            r.scores.top1,
            r.scores.top5,
            r.encoder
        );
    }
}

/// One result file's fields that reports group and average.
struct Result1 {
    label: String,
    method: String,
    target: String,
    top1: f64,
}

fn read_result(path: &Path) -> Result<Result1> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
    let r = &v["report"];
    let (Some(label), Some(top1)) = (v["label"].as_str(), r["scores"]["top1"].as_f64()) else {
        bail!("{}: not a cvrl-eval result (no label or top-1)", path.display());
    };
    let method = r["method"].as_object().and_then(|m| m.keys().next().cloned()).unwrap_or_default();
    let target = r["data"]["target"].as_str().unwrap_or("class").to_owned();
    Ok(Result1 { label: label.to_owned(), method, target, top1 })
}

/// Mean and sample standard deviation.
fn mean_std(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = if xs.len() > 1 {
        xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

/// Groups results by (method, target) then label; prints mean ± std and draws bars.
fn report(results: &[PathBuf], out: &Path, runs: &[PathBuf]) -> Result<()> {
    let mut groups: BTreeMap<(String, String), BTreeMap<String, Vec<f64>>> = BTreeMap::new();
    for path in results {
        let r = read_result(path)?;
        groups.entry((r.method, r.target)).or_default().entry(r.label).or_default().push(r.top1);
    }
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    println!("| method | target | label | runs | top-1 mean | top-1 std |");
    println!("|---|---|---|---|---|---|");
    for ((method, target), labels) in &groups {
        let mut bars = Vec::new();
        for (label, xs) in labels {
            let (mean, std) = mean_std(xs);
            println!("| {method} | {target} | {label} | {} | {mean:.1} | {std:.1} |", xs.len());
            bars.push(Bar { label: label.clone(), mean, spread: std });
        }
        let png = out.join(format!("accuracy-{method}-{target}.png"));
        plot::bars(
            &png,
            &format!("{method} probe, {target}: top-1 (mean ± std over seeds)"),
            "top-1 %",
            &bars,
        )?;
        println!("wrote {}", png.display());
    }
    if !runs.is_empty() {
        let lines = runs.iter().map(|r| loss_curve(r)).collect::<Result<Vec<_>>>()?;
        let png = out.join("loss.png");
        plot::curves(&png, "pretraining loss", "step", "loss", &lines)?;
        println!("wrote {}", png.display());
    }
    Ok(())
}

/// (step, loss) from a run's log.jsonl, labelled by the run directory's name.
fn loss_curve(run: &Path) -> Result<(String, Vec<(f64, f64)>)> {
    let path = run.join("log.jsonl");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let points = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| Some((v["step"].as_f64()?, v["loss"].as_f64()?)))
        .collect();
    let name = run
        .file_name()
        .map_or_else(|| run.display().to_string(), |n| n.to_string_lossy().into_owned());
    Ok((name, points))
}
