//! The training data loader: CVRL positive pairs from a shard set, built by worker threads
//! into a bounded prefetch queue, with no video decoding.
//!
//! Determinism: the randomness of every sample comes from its own generator, seeded from
//! `(seed, epoch, position in the epoch)`, and the video order of an epoch is a permutation
//! seeded from `(seed, epoch)`. Worker `w` builds batches `w, w + W, w + 2W, ...` and the
//! consumer takes them round-robin, so the batches come out in step order with the same
//! contents whatever the number of workers or their timing, and a loader started at step
//! `s` yields exactly what an uninterrupted one yields from step `s` (resume).
//!
//! Data-parallel runs: with `ranks` > 1 each rank's loader makes only its slice of every
//! batch (rank `r` of `R` the videos at positions `r·B/R .. (r+1)·B/R`), with the same
//! generators as one loader making the whole batch; so the ranks together see exactly the
//! batches of a single-process run, whatever their number.
//!
//! Augmentation on the device (`on_device`): the workers draw each clip's parameters exactly
//! as the host path draws them, but only cut the crop boxes out of the stored frames into a
//! [`PackedBatch`]; the training step does the per-pixel work on its device
//! ([`crate::augment::device`]).
//!
//! A video whose frames cannot be read (a damaged chunk) is skipped with a warning and the
//! next video of the epoch's order takes its place, so one bad record never stops a run.

use crate::augment::device::{draw_params, PackedBatch};
use crate::augment::{AugmentConfig, ClipParams};
use crate::sampler::{sample_pair, ClipSpec, IntervalDistribution};
use cvrl_formats::{FrameLayout, ShardSet};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt as _, SeedableRng};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

/// Which clip of a positive pair is being made: CVRL augments the two differently (the
/// reference blurs the first always and solarizes only the second).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    First,
    Second,
}

impl View {
    /// 0 for the first clip, 1 for the second.
    pub fn index(self) -> usize {
        match self {
            View::First => 0,
            View::Second => 1,
        }
    }
}

/// Turns the stored frames of one clip into the model's input (augmentation, or a plain
/// resize for evaluation). Implementations draw their random parameters from `rng`.
pub trait ClipTransform: Send + Sync {
    /// Bytes of one transformed clip of `t` frames.
    fn output_len(&self, t: usize) -> usize;
    /// Transforms `t` frames (`layout.frame_bytes()` each, back to back) of the pair's
    /// `view` into `out` (`output_len(t)` bytes).
    fn apply(
        &self,
        view: View,
        rng: &mut Xoshiro256PlusPlus,
        layout: &FrameLayout,
        frames: &[u8],
        t: usize,
        out: &mut [u8],
    );
    /// The two views' augmentations, for loaders that cut clips for the device instead of
    /// calling [`ClipTransform::apply`]; `None` for a transform that runs on the host only.
    fn views(&self) -> Option<&[AugmentConfig; 2]> {
        None
    }
}

/// What the loader draws.
#[derive(Clone, Debug)]
pub struct LoaderConfig {
    /// Videos per batch (each gives two clips).
    pub batch_size: usize,
    /// Worker threads building batches.
    pub workers: usize,
    /// Batches each worker may have ready ahead of the consumer.
    pub prefetch: usize,
    pub seed: u64,
    pub clip: ClipSpec,
    pub interval: IntervalDistribution,
    /// This process's slice of every batch: rank `rank` of `ranks` (0 of 1 alone).
    pub rank: usize,
    pub ranks: usize,
    /// Cut the clips for augmentation on the training device ([`Clips::Cut`]) instead of
    /// augmenting them ([`Clips::Host`]); needs a transform with [`ClipTransform::views`].
    pub on_device: bool,
}

impl LoaderConfig {
    /// The positions in a batch this rank makes.
    fn slots(&self) -> std::ops::Range<usize> {
        let per_rank = self.batch_size / self.ranks.max(1);
        self.rank * per_rank..(self.rank + 1) * per_rank
    }
}

/// The two clips of each video of a batch.
pub enum Clips {
    /// Transformed on the host: the first views, `[B, ...]` with the transform's layout per
    /// clip (for the CVRL augmentation `[B, C, T, H, W]` u8), and the second views.
    Host { a: Vec<u8>, b: Vec<u8> },
    /// Cut for augmentation on the device, a video's first clip then its second, video
    /// after video.
    Cut(Box<PackedBatch>),
}

/// Two views of `batch_size` videos.
pub struct Batch {
    pub step: u64,
    /// Index in the shard set of each sample's video.
    pub videos: Vec<u32>,
    pub clips: Clips,
    /// Videos that could not be read while this batch was made (each named in a warning);
    /// the next videos of the epoch's order took their places.
    pub skipped: u32,
}

/// Time the consumer spent waiting for data, and videos skipped for damage.
#[derive(Debug, Default)]
pub struct LoaderStats {
    wait_ns: AtomicU64,
    total_ns: AtomicU64,
    skipped: AtomicU64,
}

impl LoaderStats {
    /// Fraction of the consumer's time spent blocked on the queue since the loader started.
    pub fn wait_fraction(&self) -> f64 {
        let total = self.total_ns.load(Ordering::Relaxed);
        if total == 0 {
            return 0.0;
        }
        self.wait_ns.load(Ordering::Relaxed) as f64 / total as f64
    }
    /// Videos skipped because they could not be read.
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }
}

/// Packed batches handed back by the consumer ([`Loader::recycle`]) for the workers to fill
/// again: a batch of cut clips is megabytes, and a buffer that is reused keeps its pages
/// instead of being allocated, grown and faulted in anew for every batch.
type Spares = Arc<std::sync::Mutex<Vec<Box<PackedBatch>>>>;

/// A running loader; dropping it stops the workers.
pub struct Loader {
    queues: Vec<Receiver<Batch>>,
    workers: Vec<JoinHandle<()>>,
    start_step: u64,
    next_step: u64,
    stats: Arc<LoaderStats>,
    last_return: Option<Instant>,
    spares: Spares,
}

/// SplitMix64, the one cvrl-formats' sampler (and the Python package) seed with.
pub use cvrl_formats::sampler::mix;

/// The order of the videos in `epoch`: a Fisher-Yates shuffle seeded from `(seed, epoch)`.
pub fn epoch_order(n: usize, seed: u64, epoch: u64) -> Vec<u32> {
    let mut order: Vec<u32> = (0..n as u32).collect();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(mix(seed ^ mix(epoch)));
    for i in (1..n).rev() {
        let j = rng.random_range(0..=i);
        order.swap(i, j);
    }
    order
}

impl Loader {
    /// Starts the workers at `start_step` (0 for a new run).
    pub fn start(
        set: Arc<ShardSet>,
        cfg: LoaderConfig,
        transform: Arc<dyn ClipTransform>,
        start_step: u64,
    ) -> Result<Loader, String> {
        if set.len() < cfg.batch_size || cfg.batch_size == 0 {
            return Err(format!(
                "batch size {} needs at least that many videos; the set has {}",
                cfg.batch_size,
                set.len()
            ));
        }
        if cfg.on_device && transform.views().is_none() {
            return Err("this clip transform runs on the host only: pass --augment-on host".into());
        }
        if cfg.ranks == 0 || cfg.rank >= cfg.ranks || !cfg.batch_size.is_multiple_of(cfg.ranks) {
            return Err(format!(
                "rank {} of {}: the batch of {} videos must split evenly among the ranks",
                cfg.rank, cfg.ranks, cfg.batch_size
            ));
        }
        let workers = cfg.workers.max(1);
        let stats = Arc::new(LoaderStats::default());
        let spares = Spares::default();
        let mut queues = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        for w in 0..workers {
            let (tx, rx) = sync_channel(cfg.prefetch.max(1));
            let (set, cfg, transform, stats, spares) =
                (set.clone(), cfg.clone(), transform.clone(), stats.clone(), spares.clone());
            let first = start_step + w as u64;
            let handle = std::thread::Builder::new()
                .name(format!("cvrl-loader-{w}"))
                .spawn(move || {
                    let pairs = PairMaker::new(&set, &cfg, &*transform, spares);
                    if let Some(pairs) = pairs {
                        worker(pairs, &stats, first, workers as u64, tx);
                    }
                })
                .map_err(|e| format!("cannot start loader thread: {e}"))?;
            queues.push(rx);
            handles.push(handle);
        }
        Ok(Loader {
            queues,
            workers: handles,
            start_step,
            next_step: start_step,
            stats,
            last_return: None,
            spares,
        })
    }

    /// The next batch, in step order. Blocks until it is ready; the time blocked counts as
    /// data wait.
    pub fn next_batch(&mut self) -> Option<Batch> {
        let before = Instant::now();
        let q = ((self.next_step - self.start_step) % self.queues.len() as u64) as usize;
        let batch = self.queues[q].recv().ok()?;
        let now = Instant::now();
        self.stats.wait_ns.fetch_add((now - before).as_nanos() as u64, Ordering::Relaxed);
        if let Some(last) = self.last_return {
            self.stats.total_ns.fetch_add((now - last).as_nanos() as u64, Ordering::Relaxed);
        }
        self.last_return = Some(now);
        debug_assert_eq!(batch.step, self.next_step);
        self.next_step += 1;
        Some(batch)
    }

    pub fn stats(&self) -> &LoaderStats {
        &self.stats
    }

    /// Hands a used batch back, so that a worker fills its buffers again instead of
    /// allocating new ones (only batches of cut clips are kept; a few at most).
    pub fn recycle(&self, batch: Batch) {
        if let Clips::Cut(packed) = batch.clips {
            let mut spares = self.spares.lock().unwrap_or_else(|e| e.into_inner());
            if spares.len() < self.queues.len() + 2 {
                spares.push(packed);
            }
        }
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        self.queues.clear(); // workers see a closed channel and stop
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
    }
}

/// Builds batches `first, first + every, ...` until the consumer hangs up.
fn worker(
    mut pairs: PairMaker<'_>,
    stats: &LoaderStats,
    first: u64,
    every: u64,
    tx: SyncSender<Batch>,
) {
    let (set, cfg) = (pairs.set, pairs.cfg);
    let per_epoch = (set.len() / cfg.batch_size) as u64;
    let mut order = (u64::MAX, Vec::new());
    let mut step = first;
    loop {
        let epoch = step / per_epoch;
        if order.0 != epoch {
            order = (epoch, epoch_order(set.len(), cfg.seed, epoch));
        }
        let base = (step % per_epoch) as usize * cfg.batch_size;
        let slots = cfg.slots();
        let mut batch = Batch {
            step,
            videos: Vec::with_capacity(slots.len()),
            clips: pairs.empty(slots.len()),
            skipped: 0,
        };
        for (i, slot) in slots.enumerate() {
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(mix(
                cfg.seed ^ mix(epoch ^ mix((base + slot) as u64))
            ));
            // Damaged videos are replaced by the next ones in the epoch's order.
            let mut k = base + slot;
            let video = loop {
                let v = order.1[k % order.1.len()] as usize;
                match pairs.make(&mut rng, v, i, &mut batch.clips) {
                    Ok(()) => break v,
                    Err(PairError::Pack(e)) => {
                        // Parameters the host path would reject too: a bug, not bad data.
                        eprintln!("error: cannot cut video {v} for the device: {e}");
                        return;
                    }
                    Err(PairError::Read(e)) => {
                        stats.skipped.fetch_add(1, Ordering::Relaxed);
                        batch.skipped += 1;
                        eprintln!("warning: skipping a video the loader cannot read: {e}");
                        k += 1;
                        if k > base + slot + set.len() {
                            return; // nothing readable at all: end the stream
                        }
                    }
                }
            };
            batch.videos.push(video as u32);
        }
        if let Clips::Cut(packed) = &mut batch.clips {
            if let Err(e) = packed.finish() {
                eprintln!("error: cannot pack batch {step} for the device: {e}");
                return;
            }
        }
        if tx.send(batch).is_err() {
            return;
        }
        step += every;
    }
}

/// Why a pair was not made.
enum PairError {
    /// Its frames cannot be read: the video is skipped.
    Read(cvrl_formats::FormatError),
    /// Its clips cannot be cut for the device.
    Pack(crate::augment::device::PackError),
}

/// A worker's buffers, reused from clip to clip.
#[derive(Default)]
struct Scratch {
    indices: Vec<u32>,
    /// The stored frames of a pair's two clips.
    frames: [Vec<u8>; 2],
    /// The parameters drawn for each clip (device path).
    params: [Vec<ClipParams>; 2],
}

/// Makes the pairs of one worker's batches.
struct PairMaker<'a> {
    set: &'a ShardSet,
    cfg: &'a LoaderConfig,
    transform: &'a dyn ClipTransform,
    reader: cvrl_formats::FrameReader<'a>,
    scratch: Scratch,
    spares: Spares,
}

impl<'a> PairMaker<'a> {
    /// `None` when the set's shards cannot be mapped for reading.
    fn new(
        set: &'a ShardSet,
        cfg: &'a LoaderConfig,
        transform: &'a dyn ClipTransform,
        spares: Spares,
    ) -> Option<Self> {
        let reader = set.reader().ok()?;
        Some(PairMaker { set, cfg, transform, reader, scratch: Scratch::default(), spares })
    }

    /// An empty batch of `videos` pairs, in the form the loader makes.
    fn empty(&self, videos: usize) -> Clips {
        match self.transform.views().filter(|_| self.cfg.on_device) {
            Some(views) => {
                let spare = self.spares.lock().unwrap_or_else(|e| e.into_inner()).pop();
                let mut packed = spare.unwrap_or_default();
                packed.clear(views[0].out_size);
                Clips::Cut(packed)
            }
            None => {
                let len = self.transform.output_len(self.cfg.clip.frames as usize) * videos;
                Clips::Host { a: vec![0; len], b: vec![0; len] }
            }
        }
    }

    /// Samples the two clips of `video` and puts them at `slot` of `clips`. The generator
    /// calls are the same on both paths (the pair's starts, then each clip's parameters after
    /// its frames are read), so a failed read leaves `rng` where the host path leaves it.
    fn make(
        &mut self,
        rng: &mut Xoshiro256PlusPlus,
        video: usize,
        slot: usize,
        clips: &mut Clips,
    ) -> Result<(), PairError> {
        let row = &self.set.videos()[video];
        let layout = self.set.layout(video);
        let clip = &self.cfg.clip;
        let starts = sample_pair(rng, self.cfg.interval, clip, row.num_frames, row.fps());
        let s = &mut self.scratch;
        for (view, start) in [(View::First, starts.first), (View::Second, starts.second)] {
            let v = view.index();
            clip.indices(start, row.num_frames, row.fps(), &mut s.indices);
            s.frames[v].clear();
            self.reader
                .read_indices(video, &s.indices, &mut s.frames[v])
                .map_err(PairError::Read)?;
            let t = s.indices.len();
            match clips {
                Clips::Host { a, b } => {
                    let out = if v == 0 { a } else { b };
                    let len = self.transform.output_len(t);
                    let out = &mut out[slot * len..(slot + 1) * len];
                    self.transform.apply(view, rng, &layout, &s.frames[v], t, out);
                }
                Clips::Cut(_) => {
                    let views = self.transform.views().expect("checked when the loader started");
                    draw_params(rng, &views[v], &layout, t, &mut s.params[v]);
                }
            }
        }
        if let Clips::Cut(packed) = clips {
            // Both reads succeeded: only now do the clips join the batch.
            let t = s.indices.len();
            for v in 0..2 {
                packed
                    .push_clip(&layout, &s.frames[v], t, &s.params[v])
                    .map_err(PairError::Pack)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_orders_are_permutations_that_differ_between_epochs_and_repeat_for_a_seed() {
        let a = epoch_order(100, 7, 0);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_ne!(a, epoch_order(100, 7, 1));
        assert_ne!(a, epoch_order(100, 8, 0));
        assert_eq!(a, epoch_order(100, 7, 0));
    }
}
