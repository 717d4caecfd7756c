//! The dataset folder: every video's path and plan, written in parallel, then the factors
//! CSVs and `synth.json` (written last, so its presence marks a complete dataset).

use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use serde::Serialize;
use std::path::Path;

use super::encode::{fill_fresh_memory, write_video};
use super::{Canvas, ClassSpec, SynthConfig, VideoPlan, FACTORS_FILE, PARAMS_FILE};
use crate::build::Reporter;

/// One video of the dataset: where it goes and how it looks.
#[derive(Clone, Debug)]
pub struct SynthVideo {
    /// Path relative to the dataset root: `<split>/<class>/<class>_<NNN>.mp4`.
    pub rel_path: String,
    pub split: &'static str,
    pub class: ClassSpec,
    pub plan: VideoPlan,
}

/// Every video of `cfg`, in a fixed order (class by class). Validates `cfg`.
pub fn plan_dataset(cfg: &SynthConfig) -> Result<Vec<SynthVideo>> {
    cfg.validate()?;
    let specs = cfg.class_specs()?;
    let train = cfg.videos_per_class - cfg.val_per_class;
    let mut out = Vec::with_capacity(specs.len() * cfg.videos_per_class);
    for (c, &class) in specs.iter().enumerate() {
        for v in 0..cfg.videos_per_class {
            let split = if v < train { "train" } else { "val" };
            out.push(SynthVideo {
                rel_path: format!("{split}/{class}/{class}_{v:03}.mp4"),
                split,
                class,
                plan: VideoPlan::new(cfg, class, cfg.class_stream(c), v),
            });
        }
    }
    Ok(out)
}

/// What [`synth`] made.
#[derive(Debug)]
pub struct SynthSummary {
    pub videos: usize,
    pub frames: u64,
    pub bytes: u64,
    pub classes: Vec<String>,
    pub seconds: f64,
}

/// The contents of `synth.json`.
#[derive(Serialize)]
struct ParamsFile<'a> {
    tool: String,
    config: &'a SynthConfig,
    classes: Vec<String>,
    videos: usize,
}

/// Writes the dataset of `cfg` into `out`: the videos (in parallel on rayon's pool), then
/// `factors.csv`, then `synth.json`. An `out` holding an earlier dataset is refused unless
/// `force`, which deletes only what `synth` writes (`train/`, `val/` and the two files).
pub fn synth(
    cfg: &SynthConfig,
    out: &Path,
    force: bool,
    progress: &dyn Reporter,
) -> Result<SynthSummary> {
    let started = std::time::Instant::now();
    let videos = plan_dataset(cfg)?;
    prepare_out(out, force)?;
    crate::decode::init();
    fill_fresh_memory();
    let specs = cfg.class_specs()?;
    let train = cfg.videos_per_class - cfg.val_per_class;
    let splits = [("train", train), ("val", cfg.val_per_class)];
    for split in splits.iter().filter(|s| s.1 > 0).map(|s| s.0) {
        for class in &specs {
            let dir = out.join(split).join(class.to_string());
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
    }
    progress.start(videos.len(), 0);
    let sizes: Vec<u64> = videos
        .par_iter()
        .map_init(
            || Canvas::new(cfg.width, cfg.height),
            |canvas, v| {
                let path = out.join(&v.rel_path);
                write_video(&v.plan, cfg.crf, &path, canvas)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                progress.video_done(u64::from(v.plan.frames), None);
                let meta = std::fs::metadata(&path)
                    .with_context(|| format!("cannot stat {}", path.display()))?;
                Ok(meta.len())
            },
        )
        .collect::<Result<_>>()?;
    progress.finish();

    // One factors file for the whole tree and one per split folder, each with paths
    // relative to its own folder: `cvrl-shard build` finds it whether it is given OUT or
    // OUT/train.
    write_factors(&out.join(FACTORS_FILE), videos.iter(), "")?;
    for (split, _) in splits.iter().filter(|s| s.1 > 0) {
        let prefix = format!("{split}/");
        let mine = videos.iter().filter(|v| v.split == *split);
        write_factors(&out.join(split).join(FACTORS_FILE), mine, &prefix)?;
    }
    let names: Vec<String> = specs.iter().map(ToString::to_string).collect();
    let params = ParamsFile {
        tool: format!("cvrl-shard {}", env!("CARGO_PKG_VERSION")),
        config: cfg,
        classes: names.clone(),
        videos: videos.len(),
    };
    let json = serde_json::to_vec_pretty(&params)?;
    let params_path = out.join(PARAMS_FILE);
    cvrl_formats::atomic::atomic_write(&params_path, |f| std::io::Write::write_all(f, &json))
        .with_context(|| format!("cannot write {}", params_path.display()))?;
    Ok(SynthSummary {
        videos: videos.len(),
        frames: videos.iter().map(|v| u64::from(v.plan.frames)).sum(),
        bytes: sizes.iter().sum(),
        classes: names,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Writes a factors CSV of `videos`, their paths with `strip` removed from the front.
fn write_factors<'a>(
    path: &Path,
    videos: impl Iterator<Item = &'a SynthVideo>,
    strip: &str,
) -> Result<()> {
    let mut csv = String::from("path,object,motion,colour\n");
    for v in videos {
        let rel = v.rel_path.strip_prefix(strip).unwrap_or(&v.rel_path);
        let [(_, object), (_, motion), (_, colour)] = v.plan.factors();
        csv.push_str(&format!("{rel},{object},{motion},{colour}\n"));
    }
    cvrl_formats::atomic::atomic_write(path, |f| std::io::Write::write_all(f, csv.as_bytes()))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Refuses to mix datasets; with `force`, removes an earlier one (and nothing else).
fn prepare_out(out: &Path, force: bool) -> Result<()> {
    let ours = [out.join(PARAMS_FILE), out.join(FACTORS_FILE)];
    let dirs = [out.join("train"), out.join("val")];
    let earlier = ours.iter().any(|p| p.exists());
    if earlier && !force {
        bail!("{} already holds a synthetic dataset; pass --force to replace it", out.display());
    }
    if !earlier {
        if let Some(d) = dirs.iter().find(|d| d.exists()) {
            bail!(
                "{} exists and was not made by cvrl-shard synth; choose an empty output folder",
                d.display()
            );
        }
    }
    for p in ours.iter().filter(|p| p.exists()) {
        std::fs::remove_file(p).with_context(|| format!("cannot remove {}", p.display()))?;
    }
    for d in dirs.iter().filter(|d| d.exists()) {
        std::fs::remove_dir_all(d).with_context(|| format!("cannot remove {}", d.display()))?;
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_with_other_data_is_refused() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("train/x")).unwrap();
        let err = format!("{:#}", prepare_out(d.path(), true).unwrap_err());
        assert!(err.contains("not made by cvrl-shard synth"), "{err}");
        assert!(d.path().join("train/x").exists());
    }
}
