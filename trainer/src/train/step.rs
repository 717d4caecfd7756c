//! One training step's arithmetic on the device: [`Stepper`] builds the model and its
//! optimiser, uploads a micro-batch of clips, runs the forward and backward passes under
//! autocast, and applies the update. It knows nothing of shard sets, loaders or run
//! directories: the training loop ([`super::train_with`]) feeds it from the loader, and
//! `just bench-train` feeds it random clips to time the step alone against PyTorch.
//!
//! libtorch errors (tch panics on them in its non-`f_` calls) are caught here and turned
//! into [`TrainError::OutOfMemory`], which names the flags that help, or
//! [`TrainError::TorchFailure`].

use std::sync::Mutex;

use tch::nn::{self, VarStore};
use tch::{Cuda, Device, Kind, Tensor};

use super::error::torch_detail;
use super::{is_out_of_memory, TrainConfig, TrainError};
use crate::augment::device::{PackedBatch, Stager};
use crate::device::{cuda_autocast, enable_bf16_autocast, pick_device};
use crate::dist::{
    broadcast_variables, info_nce_global, DistError, GradReducer, ProcessGroup,
    DEFAULT_BUCKET_BYTES,
};
use crate::loader::Clips;
use crate::loss::{cross_entropy, info_nce};
use crate::model::{clips_to_input, Model, Norm, R3d};
use crate::optim::{Optimizer, OptimizerConfig};

/// The network being trained.
enum Net {
    /// CVRL: backbone and projection head, InfoNCE between the two views.
    Contrastive(Model),
    /// The supervised baseline: the same backbone, a linear classifier on its pooled feature
    /// (`head.linear.*`, so the encoder export leaves it out as it leaves out the projection
    /// head), cross-entropy.
    Supervised { backbone: R3d, classifier: nn::Linear },
}

/// Builds the model with weights drawn from `seed`. libtorch's generator is global, so
/// seeding and drawing happen under a lock: two runs in one process (tests) each get the
/// weights their seed gives. Weights are drawn on the CPU and then moved, so a seed gives
/// the same initial model on every device.
fn build_model(
    cfg: &TrainConfig,
    classes: Option<i64>,
    device: Device,
    norm: &Norm,
) -> Result<(VarStore, Net), TrainError> {
    static INIT: Mutex<()> = Mutex::new(());
    let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(cfg.seed as i64);
    let mut vs = VarStore::new(Device::Cpu);
    let net = match classes {
        None => Net::Contrastive(Model::with_norm(&vs.root(), &cfg.backbone(), &cfg.head(), norm)?),
        Some(k) => {
            let backbone = R3d::with_norm(&vs.root(), &cfg.backbone(), norm)?;
            let p = vs.root() / "head" / "linear";
            let classifier = nn::linear(p, backbone.feature_dim(), k, Default::default());
            Net::Supervised { backbone, classifier }
        }
    };
    vs.set_device(device);
    Ok((vs, net))
}

/// `t` (`[N, C, T, H, W]`) with the same values in the channels-last 3D layout: NDHWC in
/// memory, still indexed as NCDHW. tch has no `memory_format` argument; this is what
/// `t.contiguous(memory_format=torch.channels_last_3d)` does, and libtorch recognises the
/// layout by its strides.
fn to_channels_last(t: &Tensor) -> Tensor {
    t.permute([0, 2, 3, 4, 1]).contiguous().permute([0, 4, 1, 2, 3])
}

/// The error of a rank whose collective failed because a peer is gone, naming the peer the
/// heartbeats say stopped (a few seconds' look, see [`ProcessGroup::find_lost`]).
fn lost_rank(group: &ProcessGroup, step: u64, message: &str) -> TrainError {
    TrainError::LostRank {
        step,
        rank: group.rank(),
        ranks: group.world_size(),
        lost: group.find_lost(),
        detail: message.to_owned(),
    }
}

/// Whether a failed collective's message says a peer went away or never answered.
fn is_lost_rank(message: &str) -> bool {
    ["Connection closed by peer", "Connection reset", "Timed out", "timed out", "Broken pipe"]
        .iter()
        .any(|s| message.contains(s))
}

/// Runs `f`, turning a panic (tch panics on any libtorch error in its non-`f_` calls, which
/// the model's layers use) into its message. The panic is reported as the run's error, so
/// the default hook's "thread panicked at" lines are kept off stderr while `f` runs (on this
/// thread only: a panic elsewhere is still printed).
fn catch_torch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    thread_local! {
        static CATCHING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !CATCHING.with(|c| c.get()) {
                default(info);
            }
        }));
    });
    let was = CATCHING.with(|c| c.replace(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    CATCHING.with(|c| c.set(was));
    result.map_err(|payload| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "a libtorch call panicked".to_owned())
    })
}

/// The clips of a micro-batch as the loader made them.
#[derive(Clone, Copy)]
pub enum Views<'a> {
    /// Augmented on the host: the first views, `u8` `[m, 3, T, S, S]`, clip after clip, and
    /// the second views, the same shape.
    Host { a: &'a [u8], b: &'a [u8] },
    /// Cut for augmentation on the device, each video's first clip then its second.
    Cut(&'a PackedBatch),
}

impl<'a> Views<'a> {
    /// The views of a loader's batch.
    pub fn of(clips: &'a Clips) -> Self {
        match clips {
            Clips::Host { a, b } => Views::Host { a, b },
            Clips::Cut(packed) => Views::Cut(packed),
        }
    }
}

/// One micro-batch as the loader made it.
pub struct MicroBatch<'a> {
    pub views: Views<'a>,
    /// The class of each of the `m` videos (supervised training only).
    pub labels: Option<&'a [i64]>,
}

/// The model, its variables and the optimiser on one device, and the arithmetic of a step:
/// [`Stepper::backward`] once per micro-batch, then [`Stepper::update`]. [`train_with`]
/// feeds it from the loader; `just bench-train` feeds it random clips to time the step
/// alone, against the same step in PyTorch.
pub struct Stepper {
    pub(super) vs: VarStore,
    net: Net,
    pub(super) optimizer: Optimizer,
    device: Device,
    bf16: bool,
    channels_last: bool,
    temperature: f64,
    accumulate: usize,
    micro_batch: usize,
    /// `[3, T, S, S]`.
    clip: [i64; 4],
    /// The pinned host buffer CUDA uploads go through (see [`Stepper::upload`]).
    pinned: Option<Tensor>,
    /// Uploads of clips cut for augmentation on the device.
    stager: Stager,
    /// The other ranks of a data-parallel run.
    replicas: Option<Replicas>,
    /// Micro-batches done in this step.
    passes: usize,
}

/// A data-parallel stepper's group, and the reducer that averages the gradients over the
/// ranks during the last micro-batch's backward pass (DDP's `c10d::Reducer`).
struct Replicas {
    group: ProcessGroup,
    reducer: GradReducer,
}

impl Stepper {
    /// Builds the model `cfg` describes (with `classes` outputs: supervised, else CVRL's
    /// projection head) on `cfg.device`, and its optimiser. With a `group`, this is one rank
    /// of a data-parallel run: it takes its share of each micro-batch, scores its clips
    /// against every rank's (CVRL), averages gradients over the ranks, and normalises with
    /// the whole batch's statistics when `cfg.sync_bn`.
    pub fn new(
        cfg: &TrainConfig,
        classes: Option<usize>,
        group: Option<&ProcessGroup>,
    ) -> Result<Stepper, TrainError> {
        cfg.validate_step()?;
        let ranks = group.map_or(1, ProcessGroup::world_size);
        if !cfg.micro_batch().is_multiple_of(ranks) {
            return Err(TrainError::Config(format!(
                "{ranks} ranks cannot share micro-batches of {} videos evenly (--batch-size {} / \
                 --accumulate {})",
                cfg.micro_batch(),
                cfg.batch_size,
                cfg.accumulate
            )));
        }
        if cfg.supervised != classes.is_some() {
            return Err(TrainError::Config(
                "a supervised run needs the number of classes, a CVRL run none".into(),
            ));
        }
        let device = pick_device(cfg.device)?;
        let classes = classes.map(|k| k as i64);
        let norm = match group {
            Some(g) if cfg.sync_bn => Norm::SyncBatch(g.clone()),
            _ => Norm::Batch,
        };
        let (vs, net) = build_model(cfg, classes, device, &norm)?;
        if cfg.channels_last {
            tch::no_grad(|| {
                for (_, mut var) in vs.variables() {
                    if var.dim() == 5 {
                        let cl = to_channels_last(&var);
                        var.set_data(&cl);
                    }
                }
            });
        }
        // After the layout change: the reducer hooks the variables as they now are, and the
        // velocities are `zeros_like` them.
        let replicas = match group {
            Some(group) => {
                let reducer = GradReducer::new(&vs, group, DEFAULT_BUCKET_BYTES)?;
                Some(Replicas { group: group.clone(), reducer })
            }
            None => None,
        };
        let optimizer = Optimizer::new(
            &vs,
            OptimizerConfig {
                kind: cfg.optimizer,
                momentum: cfg.momentum,
                weight_decay: cfg.weight_decay,
                lars_eta: cfg.lars_eta,
            },
        );
        let bf16 = device.is_cuda() && !cfg.fp32;
        if bf16 && !enable_bf16_autocast() {
            return Err(TrainError::Config(
                "libtorch did not accept bfloat16 autocast; pass --fp32".into(),
            ));
        }
        if device.is_cuda() {
            // Every step has the same shapes: let cuDNN pick the fastest convolution once.
            Cuda::cudnn_set_benchmark(true);
        }
        let (t, s) = (i64::from(cfg.frames), i64::from(cfg.crop));
        Ok(Stepper {
            vs,
            net,
            optimizer,
            device,
            bf16,
            channels_last: cfg.channels_last,
            temperature: cfg.temperature,
            accumulate: cfg.accumulate.max(1),
            micro_batch: cfg.micro_batch() / ranks,
            clip: [3, t, s, s],
            pinned: None,
            stager: Stager::new(device),
            replicas,
            passes: 0,
        })
    }

    /// Gives every rank rank 0's variables (after building or resuming at `step`: the same
    /// start).
    pub fn sync_weights(&self, step: u64) -> Result<(), TrainError> {
        match &self.replicas {
            Some(r) => broadcast_variables(&self.vs, &r.group, 0).map_err(|e| match e {
                DistError::Collective { message, .. } if is_lost_rank(&message) => {
                    lost_rank(&r.group, step, &message)
                }
                e => e.into(),
            }),
            None => Ok(()),
        }
    }

    pub fn device(&self) -> Device {
        self.device
    }

    /// The backbone being trained.
    pub fn backbone(&self) -> &R3d {
        match &self.net {
            Net::Contrastive(model) => &model.backbone,
            Net::Supervised { backbone, .. } => backbone,
        }
    }

    /// The model's variables (their gradients after [`Stepper::backward`]).
    pub fn var_store(&self) -> &VarStore {
        &self.vs
    }

    /// Clears the gradients: call before a step's first micro-batch.
    pub fn zero_grad(&mut self) {
        self.passes = 0;
        self.optimizer.zero_grad();
    }

    /// The error for a libtorch failure at `step`: [`TrainError::OutOfMemory`] when it is
    /// one, naming the flags that help.
    fn failure(&self, step: u64, message: &str) -> TrainError {
        if is_out_of_memory(message) {
            TrainError::OutOfMemory {
                step,
                device: if self.device.is_cuda() { "GPU" } else { "CPU" }.to_owned(),
                micro_batch: self.micro_batch,
                accumulate: self.accumulate,
                detail: torch_detail(message),
            }
        } else if let Some(r) = self.replicas.as_ref().filter(|_| is_lost_rank(message)) {
            lost_rank(&r.group, step, message)
        } else {
            TrainError::TorchFailure { step, message: message.to_owned() }
        }
    }

    /// The two views of a micro-batch, one after the other, as `u8` `[2m, 3, T, S, S]` on
    /// the device. The CPU path makes the tensor from the bytes and is done.
    ///
    /// On CUDA both views go into one pinned (page-locked) host buffer, kept for the whole
    /// run, and are copied from it without blocking: a DMA straight from the buffer, with no
    /// staging copy. The buffer is pinned once because tch's `pin_memory` always passes the
    /// device argument, which libtorch 2.x answers with a deprecation warning per call. The
    /// next write into it must wait for this copy, so the device is synchronised right after
    /// queueing it and before the forward pass is queued: nothing is behind the copy on the
    /// stream, so the GPU loses no time, while the host's write of the next micro-batch
    /// overlaps this one's forward and backward passes.
    ///
    /// Clips cut for the device go up as one buffer through the [`Stager`] and are augmented
    /// there; the pairs come out interleaved and are regrouped into the two views.
    fn upload(&mut self, views: Views<'_>) -> Tensor {
        let [c, t, s, _] = self.clip;
        let (view_a, view_b) = match views {
            Views::Host { a, b } => (a, b),
            Views::Cut(packed) => return self.stager.upload(packed).augment_views(),
        };
        let m = (view_a.len() / (c * t * s * s) as usize) as i64;
        let Device::Cuda(index) = self.device else {
            let view = |v: &[u8]| Tensor::from_slice(v).view([m, c, t, s, s]);
            return Tensor::cat(&[view(view_a), view(view_b)], 0);
        };
        let (a, b) = (view_a.len(), view_b.len());
        if self.pinned.as_ref().is_none_or(|p| p.numel() != a + b) {
            let host = Tensor::empty([(a + b) as i64], (Kind::Uint8, Device::Cpu));
            self.pinned = Some(host.pin_memory(self.device));
        }
        let host = self.pinned.as_ref().expect("allocated above");
        assert!(host.is_contiguous() && host.numel() == a + b, "pinned buffer of the batch size");
        // SAFETY: `host` is a contiguous u8 CPU tensor of exactly `a + b` bytes, owned by this
        // stepper, and no copy from it is in flight (the previous upload synchronised); the
        // two slices are outside it.
        unsafe {
            let dst = host.data_ptr() as *mut u8;
            std::ptr::copy_nonoverlapping(view_a.as_ptr(), dst, a);
            std::ptr::copy_nonoverlapping(view_b.as_ptr(), dst.add(a), b);
        }
        let clips =
            host.view([2 * m, c, t, s, s]).to_device_(self.device, Kind::Uint8, true, false);
        Cuda::synchronize(index as i64);
        clips
    }

    /// Forward and backward pass of one micro-batch (of `batch_size / accumulate` videos).
    /// Its loss is scaled by `1 / accumulate` before the backward pass, so that after all
    /// micro-batches the gradient is their mean; the loss is returned unscaled, still on
    /// the device. Negatives (CVRL) and BatchNorm statistics come from this micro-batch only.
    pub fn backward(&mut self, step: u64, micro: &MicroBatch<'_>) -> Result<Tensor, TrainError> {
        let clip_len = self.clip.iter().product::<i64>() as usize;
        let m = self.micro_batch;
        let labels_ok = match (&self.net, micro.labels) {
            (Net::Contrastive(_), None) => true,
            (Net::Supervised { .. }, Some(l)) => l.len() == m,
            _ => false,
        };
        let [_, t, s, _] = self.clip.map(|d| d as usize);
        let clips_ok = match micro.views {
            Views::Host { a, b } => a.len() == m * clip_len && b.len() == m * clip_len,
            Views::Cut(packed) => packed
                .plan()
                .is_some_and(|p| (p.clips(), p.frames(), p.out_size()) == (2 * m, t, s)),
        };
        if !clips_ok || !labels_ok {
            return Err(TrainError::Config(format!(
                "a micro-batch must hold {m} pairs of {t} x {s} x {s} clips{}",
                if self.net_is_supervised() { " and a label per video" } else { "" }
            )));
        }
        let clips = catch_torch(|| self.upload(micro.views)).map_err(|m| self.failure(step, &m))?;
        self.passes += 1;
        let last_pass = self.passes == self.accumulate;
        let result = catch_torch(|| {
            let mut xs = clips_to_input(&clips, self.device).map_err(|e| e.to_string())?;
            if self.channels_last {
                xs = to_channels_last(&xs);
            }
            let autocast = |f: &dyn Fn() -> Tensor| {
                if self.bf16 {
                    cuda_autocast(true, f)
                } else {
                    f()
                }
            };
            let loss = match &self.net {
                Net::Contrastive(model) => {
                    let z = autocast(&|| model.forward_t(&xs, true).1).chunk(2, 0);
                    match &self.replicas {
                        Some(r) => info_nce_global(&z[0], &z[1], self.temperature, &r.group)
                            .map_err(|e| e.to_string())?,
                        None => info_nce(&z[0], &z[1], self.temperature),
                    }
                }
                Net::Supervised { backbone, classifier } => {
                    let logits =
                        autocast(&|| backbone.forward_features_t(&xs, true).apply(classifier));
                    let labels = Tensor::from_slice(micro.labels.unwrap_or_default())
                        .to_device(self.device)
                        .repeat([2]);
                    cross_entropy(&logits, &labels)
                }
            };
            let scaled = &loss / self.accumulate as f64;
            // The earlier micro-batches' gradients add up locally; the last backward pass
            // averages the sums over the ranks.
            if let Some(r) = self.replicas.as_mut().filter(|_| last_pass) {
                r.reducer.prepare_for_backward(&[&scaled]).map_err(|e| e.to_string())?;
            }
            scaled.f_backward().map_err(|e| e.to_string())?;
            Ok::<Tensor, String>(loss.detach())
        });
        match result {
            Ok(Ok(loss)) => Ok(loss),
            Ok(Err(message)) | Err(message) => Err(self.failure(step, &message)),
        }
    }

    fn net_is_supervised(&self) -> bool {
        matches!(self.net, Net::Supervised { .. })
    }

    /// The optimiser's update at `lr` with the accumulated gradients, then the mean of the
    /// micro-batches' `losses`, read back after the update is queued so that the GPU is
    /// never idle waiting for the copy.
    pub fn update(&mut self, step: u64, lr: f64, losses: &[Tensor]) -> Result<f64, TrainError> {
        let optimizer = &mut self.optimizer;
        catch_torch(|| optimizer.step(lr)).map_err(|m| self.failure(step, &m))?;
        let replicas = &self.replicas;
        let mean = catch_torch(|| {
            let mut mean = Tensor::stack(losses, 0).mean(Kind::Double);
            // The loss of the whole batch: the mean of the ranks' (each over its anchors).
            if let Some(r) = replicas {
                r.group.all_reduce_sum_(&mut mean).map_err(|e| e.to_string())?;
                mean /= r.group.world_size() as f64;
            }
            f64::try_from(&mean).map_err(|e| e.to_string())
        });
        match mean {
            Ok(Ok(loss)) => Ok(loss),
            Ok(Err(message)) | Err(message) => Err(self.failure(step, &message)),
        }
    }
}
