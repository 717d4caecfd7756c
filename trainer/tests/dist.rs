//! `cvrl_trainer::dist` with two processes on 127.0.0.1, Gloo on the CPU.
//!
//! Each test starts this test executable twice as ranks 0 and 1 (torchrun's variables, a port
//! the OS just handed out), running only the ignored test [`rank_process`] with the scenario
//! named in `CVRL_DIST_SCENARIO`; ranks read their inputs from and write their results to the
//! directory in `CVRL_DIST_DIR` as `.npy` files. A rank that fails panics and so exits
//! non-zero; the parent then fails with its stderr. Every wait is bounded ([`DEADLINE`]), so
//! a broken collective fails the test instead of hanging CI.
//!
//! References are independent of `dist`: closed forms for the collectives, PyTorch's own
//! `torch.distributed` for the global InfoNCE, and tch's plain BatchNorm and `info_nce` on
//! the concatenated batch in one process for sync BN and for a whole data-parallel step.
//!
//! The InfoNCE test needs the project venv with the full torch install (`scripts/setup.sh`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cvrl_trainer::dist::{
    broadcast_variables, info_nce_global, sync_batch_norm, GradReducer, GradSync, GroupOptions,
    Launch, Launcher, ProcessGroup,
};
use cvrl_trainer::loss::info_nce;
use cvrl_trainer::model::{HeadConfig, Model, Norm, ProjectionHead, R3dConfig, Stem};
use tch::nn::{self, BatchNormConfig, ModuleT};
use tch::{Device, Kind, Tensor};

const SCENARIO_ENV: &str = "CVRL_DIST_SCENARIO";
const DIR_ENV: &str = "CVRL_DIST_DIR";
/// The longest any rank may take; far above the seconds they need.
const DEADLINE: Duration = Duration::from_secs(120);
/// Collective timeout of the ranks (the failure tests set their own).
const TIMEOUT: Duration = Duration::from_secs(60);
const TOLERANCE: f64 = 1e-5;
const WORLD: usize = 2;

// ---------------------------------------------------------------------------------------
// Launching ranks
// ---------------------------------------------------------------------------------------

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// Starts rank `rank` of [`WORLD`] running `scenario`, with results in `dir`.
fn spawn_rank(scenario: &str, dir: &Path, port: u16, rank: usize, timeout_ms: u64) -> Child {
    Command::new(std::env::current_exe().expect("test executable"))
        .args(["--ignored", "--exact", "rank_process", "--nocapture", "--test-threads=1"])
        .env(SCENARIO_ENV, scenario)
        .env(DIR_ENV, dir)
        .env("CVRL_DIST_TIMEOUT_MS", timeout_ms.to_string())
        .env("RANK", rank.to_string())
        .env("LOCAL_RANK", rank.to_string())
        .env("WORLD_SIZE", WORLD.to_string())
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", port.to_string())
        // One intra-op thread per rank, as torchrun sets: OpenMP teams of several ranks on
        // the same few cores spin against each other.
        .env("OMP_NUM_THREADS", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start a rank")
}

/// Waits for `child` until `deadline`; kills it and fails the test past that.
fn wait_until(mut child: Child, deadline: Instant, what: &str) -> Output {
    loop {
        match child.try_wait().expect("poll a rank") {
            Some(_) => return child.wait_with_output().expect("collect a rank's output"),
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let out = child.wait_with_output().expect("collect a killed rank's output");
                panic!(
                    "{what} still running after {DEADLINE:?}; killed. stderr:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `scenario` on two ranks to completion; both must succeed.
fn run_ranks(scenario: &str, dir: &Path) {
    let port = free_port();
    let timeout_ms = TIMEOUT.as_millis() as u64;
    let children: Vec<Child> =
        (0..WORLD).map(|r| spawn_rank(scenario, dir, port, r, timeout_ms)).collect();
    let deadline = Instant::now() + DEADLINE;
    for (rank, child) in children.into_iter().enumerate() {
        let what = format!("rank {rank} of {scenario}");
        assert_success(&wait_until(child, deadline, &what), &what);
    }
}

fn venv_python() -> PathBuf {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup.sh to create the project venv with torch",
        python.display()
    );
    python
}

// ---------------------------------------------------------------------------------------
// Data and comparisons
// ---------------------------------------------------------------------------------------

/// libtorch's generator is global and tests run on parallel threads: hold this from
/// `manual_seed` to the last draw.
static RNG: Mutex<()> = Mutex::new(());

fn seeded(seed: i64) -> MutexGuard<'static, ()> {
    let guard = RNG.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    tch::manual_seed(seed);
    guard
}

fn save(dir: &Path, name: &str, t: &Tensor) {
    t.to_kind(Kind::Float).write_npy(dir.join(format!("{name}.npy"))).expect("write .npy");
}

fn load(dir: &Path, name: &str) -> Tensor {
    let path = dir.join(format!("{name}.npy"));
    Tensor::read_npy(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size(), "shapes differ");
    f64::try_from((a.to_kind(Kind::Double) - b.to_kind(Kind::Double)).abs().max())
        .expect("a scalar")
}

fn assert_close(got: &Tensor, want: &Tensor, what: &str) {
    let diff = max_abs_diff(got, want);
    println!("{what}: max |Δ| {diff:.1e}");
    assert!(diff < TOLERANCE, "{what}: off by {diff}\ngot {got}\nwant {want}");
}

/// Rows `rank * n .. (rank + 1) * n` of `t`.
fn rows(t: &Tensor, rank: usize, n: i64) -> Tensor {
    t.narrow(0, rank as i64 * n, n)
}

fn values(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).expect("CPU tensor")
}

// ---------------------------------------------------------------------------------------
// The rank side
// ---------------------------------------------------------------------------------------

/// One rank of a two-process test: does nothing unless a test started it (module docs).
#[test]
#[ignore = "a rank of the two-process tests, which start it themselves"]
fn rank_process() {
    let Ok(scenario) = std::env::var(SCENARIO_ENV) else { return };
    let dir = PathBuf::from(std::env::var(DIR_ENV).expect("CVRL_DIST_DIR"));
    let timeout_ms: u64 = std::env::var("CVRL_DIST_TIMEOUT_MS").expect("timeout").parse().unwrap();
    let launch = Launch::from_env().expect("torchrun variables").expect("two ranks");
    let options = GroupOptions {
        timeout: Duration::from_millis(timeout_ms),
        ..GroupOptions::for_device(Device::Cpu)
    };
    let group = ProcessGroup::new(&launch, &options).expect("join the group");
    assert_eq!((group.rank(), group.world_size()), (launch.rank, WORLD));
    match scenario.as_str() {
        "collectives" => rank_collectives(&group),
        "info_nce" => rank_info_nce(&group, &dir),
        "sync_bn" => rank_sync_bn(&group, &dir),
        "step_sync" => rank_step(&group, &dir, false),
        "step_reducer" => rank_step(&group, &dir, true),
        "lost_peer" => rank_lost_peer(&group, &dir, 1),
        "lost_store" => rank_lost_peer(&group, &dir, 0),
        other => panic!("unknown scenario {other:?}"),
    }
}

/// Every collective against its closed form. Rank r contributes values scaled by r + 1, so
/// sums carry the factor 1 + 2 = 3.
fn rank_collectives(group: &ProcessGroup) {
    let r = group.rank();
    let scale = (r + 1) as f64;
    let base = Tensor::arange(6, (Kind::Float, Device::Cpu)).view([2, 3]);

    let mut x = &base * scale;
    group.all_reduce_sum_(&mut x).unwrap();
    assert_eq!(values(&x), values(&(&base * 3.0)), "all_reduce f32");
    let mut ints = Tensor::arange(4, (Kind::Int64, Device::Cpu)) + r as i64 * 10;
    group.all_reduce_sum_(&mut ints).unwrap();
    assert_eq!(values(&ints), vec![10.0, 12.0, 14.0, 16.0], "all_reduce i64");

    let gathered = group.all_gather(&(&base * scale)).unwrap();
    assert_eq!(values(&gathered), values(&Tensor::cat(&[&base, &(&base * 2.0)], 0)), "all_gather");

    let mut b = Tensor::full([5], r as f64 + 7.0, (Kind::Float, Device::Cpu));
    group.broadcast_(&mut b, 1).unwrap();
    assert_eq!(values(&b), vec![8.0; 5], "broadcast from rank 1");
    group.barrier().unwrap();

    // All-gather with gradient: loss_r = Σ y ⊙ W_r with W_r = (r + 1) · arange over the
    // gathered [4, 3]; d(loss_0 + loss_1)/dx_r = 3 · (rows of arange for rank r).
    let x = (&base * scale).set_requires_grad(true);
    let y = group.all_gather_with_grad(&x).unwrap();
    let w = Tensor::arange(12, (Kind::Float, Device::Cpu)).view([4, 3]);
    (&y * (&w * scale)).sum(Kind::Float).f_backward().unwrap();
    assert_eq!(values(&x.grad()), values(&(rows(&w, r, 2) * 3.0)), "all_gather grad");

    // All-reduce with gradient: loss_r = Σ y ⊙ v_r, v_r = (r + 1) · [1, 2, 3]; the gradient
    // of the summed loss is 3 · [1, 2, 3] on both ranks.
    let x = Tensor::from_slice(&[1.0f32, -1.0, 0.5]).set_requires_grad(true);
    let y = group.all_reduce_with_grad(&(&x * scale)).unwrap();
    assert_eq!(values(&y), vec![3.0, -3.0, 1.5], "all_reduce_with_grad value");
    let v = Tensor::from_slice(&[1.0f32, 2.0, 3.0]);
    (&y * (&v * scale)).sum(Kind::Float).f_backward().unwrap();
    // d/dx of (x · scale) summed over ranks: Σ_r' v_r' · scale_r = 3 v · scale.
    assert_eq!(values(&x.grad()), values(&(&v * 3.0 * scale)), "all_reduce grad");
}

fn rank_info_nce(group: &ProcessGroup, dir: &Path) {
    let r = group.rank();
    for (i, tau) in INFO_NCE_TEMPERATURES.iter().enumerate() {
        let z_a = load(dir, &format!("za_{r}")).set_requires_grad(true);
        let z_b = load(dir, &format!("zb_{r}")).set_requires_grad(true);
        let loss = info_nce_global(&z_a, &z_b, *tau, group).unwrap();
        loss.f_backward().unwrap();
        save(dir, &format!("rs_loss_{r}_{i}"), &loss.detach().view([1]));
        save(dir, &format!("rs_ga_{r}_{i}"), &z_a.grad());
        save(dir, &format!("rs_gb_{r}_{i}"), &z_b.grad());
    }
}

/// The BatchNorm settings the sync BN test uses for both sides.
fn bn_config() -> BatchNormConfig {
    BatchNormConfig { momentum: 0.3, eps: 1e-5, ..Default::default() }
}

/// Sync BN forward + backward of this rank's rows, for the 3-d (backbone) and 1-d (head)
/// layouts, two training steps each (the running statistics accumulate).
fn rank_sync_bn(group: &ProcessGroup, dir: &Path) {
    let r = group.rank();
    for (layout, nd) in [("3d", 3), ("1d", 1)] {
        let vs = nn::VarStore::new(Device::Cpu);
        let bn = sync_batch_norm(vs.root(), nd, BN_CHANNELS, bn_config(), Some(group.clone()));
        tch::no_grad(|| {
            bn.ws.as_ref().unwrap().shallow_clone().copy_(&load(dir, &format!("w_{layout}")));
            bn.bs.as_ref().unwrap().shallow_clone().copy_(&load(dir, &format!("b_{layout}")));
        });
        for step in 0..2 {
            let x = load(dir, &format!("x_{layout}_{step}_{r}")).set_requires_grad(true);
            let weights = load(dir, &format!("r_{layout}_{step}_{r}"));
            let y = bn.forward_t(&x, true);
            (&y * weights).sum(Kind::Float).f_backward().unwrap();
            let tag = format!("{layout}_{step}_{r}");
            save(dir, &format!("y_{tag}"), &y.detach());
            save(dir, &format!("gx_{tag}"), &x.grad());
        }
        save(dir, &format!("gw_{layout}_{r}"), &bn.ws.as_ref().unwrap().grad());
        save(dir, &format!("gb_{layout}_{r}"), &bn.bs.as_ref().unwrap().grad());
        save(dir, &format!("rm_{layout}_{r}"), &bn.running_mean);
        save(dir, &format!("rv_{layout}_{r}"), &bn.running_var);
        // Evaluation uses the running statistics: no collective, same as tch.
        let eval = bn.forward_t(&load(dir, &format!("x_{layout}_0_{r}")), false);
        save(dir, &format!("eval_{layout}_{r}"), &eval);
    }
}

fn head_config() -> HeadConfig {
    HeadConfig { hidden_layers: 2, hidden_dim: 12, out_dim: 6 }
}

/// One data-parallel step of the projection head with sync BN and the global InfoNCE,
/// gradients averaged by [`GradReducer`] during backward or by [`GradSync`] after it: rank 1
/// starts from other weights, which the broadcast replaces by rank 0's.
fn rank_step(group: &ProcessGroup, dir: &Path, reducer: bool) {
    let r = group.rank();
    let mut vs = nn::VarStore::new(Device::Cpu);
    let head = ProjectionHead::with_norm(
        &vs.root(),
        STEP_FEATURES,
        &head_config(),
        &Norm::SyncBatch(group.clone()),
    )
    .unwrap();
    if r == 0 {
        vs.load(dir.join("head.safetensors")).unwrap();
    }
    broadcast_variables(&vs, group, 0).unwrap();
    let views = load(dir, &format!("views_{r}"));
    // Buckets of at most 256 bytes: several, and a weight larger than one gets its own.
    if reducer {
        let mut reducer = GradReducer::new(&vs, group, 256).unwrap();
        // Two steps: the second runs on the buckets rebuilt in arrival order.
        for step in 0..2 {
            let z = head.forward_t(&views, true).chunk(2, 0);
            let loss = info_nce_global(&z[0], &z[1], 0.2, group).unwrap();
            reducer.prepare_for_backward(&[&loss]).unwrap();
            if step == 0 {
                loss.f_backward().unwrap();
                for t in vs.trainable_variables() {
                    let _ = t.grad().zero_();
                }
                // The step-0 forward updated the running statistics once more than the
                // reference's single forward: put them back.
                vs.load(dir.join("head.safetensors")).unwrap();
                continue;
            }
            loss.f_backward().unwrap();
        }
    } else {
        let mut grads = GradSync::new(&vs, group, 256).unwrap();
        assert!(grads.buckets() > 3, "{grads:?}");
        let z = head.forward_t(&views, true).chunk(2, 0);
        let loss = info_nce_global(&z[0], &z[1], 0.2, group).unwrap();
        loss.f_backward().unwrap();
        grads.all_reduce_mean().unwrap();
    }
    for (name, t) in vs.variables() {
        let name = name.replace('.', "_");
        match t.requires_grad() {
            true => save(dir, &format!("grad_{name}_{r}"), &t.grad()),
            false => save(dir, &format!("buf_{name}_{r}"), &t),
        }
    }
}

/// Both ranks announce they have joined; then the `victim` waits to be killed or stopped by
/// the test, and the other rank runs an all-reduce that the victim never joins, reports how
/// it ended, and asks the heartbeats which rank was lost.
fn rank_lost_peer(group: &ProcessGroup, dir: &Path, victim: usize) {
    group.barrier().unwrap();
    std::fs::write(dir.join(format!("joined_{}", group.rank())), b"").unwrap();
    if group.rank() == victim {
        std::thread::sleep(DEADLINE);
        return;
    }
    let mut x = Tensor::ones([4], (Kind::Float, Device::Cpu));
    let err = group.all_reduce_sum_(&mut x).expect_err("the peer is gone");
    std::fs::write(dir.join("error"), err.to_string()).unwrap();
    let lost = group.find_lost();
    let ranks: Vec<String> = lost.ranks().iter().map(usize::to_string).collect();
    std::fs::write(dir.join("lost"), format!("{}\n{lost}", ranks.join(","))).unwrap();
}

// ---------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------

#[test]
fn collectives_give_the_right_values_and_gradients() {
    let dir = tempfile::tempdir().unwrap();
    run_ranks("collectives", dir.path());
}

const INFO_NCE_TEMPERATURES: [f64; 2] = [0.1, 0.5];
/// Per rank.
const INFO_NCE_N: i64 = 4;
const INFO_NCE_D: i64 = 8;

/// `torch.distributed` reference: each rank gathers both views' normalised embeddings with
/// `torch.distributed.nn.functional.all_gather` and scores its anchors against all 2M clips
/// (M = world · N), the positive being the other view's clip of the same video; float64.
const PYTHON_INFO_NCE: &str = r#"
import datetime, os, sys
import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.distributed.nn.functional import all_gather

out, temperatures = sys.argv[1], [float(t) for t in sys.argv[2:]]
dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
r = dist.get_rank()
for i, tau in enumerate(temperatures):
    z_a = torch.from_numpy(np.load(f"{out}/za_{r}.npy")).double().requires_grad_(True)
    z_b = torch.from_numpy(np.load(f"{out}/zb_{r}.npy")).double().requires_grad_(True)
    a, b = F.normalize(z_a, dim=1), F.normalize(z_b, dim=1)
    all_a, all_b = torch.cat(all_gather(a)), torch.cat(all_gather(b))
    n, m = a.shape[0], all_a.shape[0]
    mine = r * n + torch.arange(n)
    def loss_of(anchor, same_view, other_view):
        # Columns: the other view's m clips, then this view's m clips (itself masked).
        logits = anchor @ torch.cat([other_view, same_view]).T / tau
        itself = torch.zeros_like(logits, dtype=torch.bool)
        itself[torch.arange(n), m + mine] = True
        return F.cross_entropy(logits.masked_fill(itself, float("-inf")), mine)
    loss = loss_of(a, all_a, all_b) + loss_of(b, all_b, all_a)
    loss.backward()
    np.save(f"{out}/py_loss_{r}_{i}.npy", np.array([loss.item()], dtype=np.float64))
    np.save(f"{out}/py_ga_{r}_{i}.npy", z_a.grad.numpy())
    np.save(f"{out}/py_gb_{r}_{i}.npy", z_b.grad.numpy())
dist.destroy_process_group()
"#;

fn run_python_ranks(dir: &Path) {
    let python = venv_python();
    let port = free_port();
    let children: Vec<Child> = (0..WORLD)
        .map(|rank| {
            Command::new(&python)
                .arg("-c")
                .arg(PYTHON_INFO_NCE)
                .arg(dir)
                .args(INFO_NCE_TEMPERATURES.map(|t| t.to_string()))
                .env("RANK", rank.to_string())
                .env("WORLD_SIZE", WORLD.to_string())
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", port.to_string())
                .env("GLOO_SOCKET_IFNAME", "lo")
                .env("OMP_NUM_THREADS", "1")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start a python rank")
        })
        .collect();
    let deadline = Instant::now() + DEADLINE;
    for (rank, child) in children.into_iter().enumerate() {
        let what = format!("python rank {rank} (is the full torch installed? scripts/setup.sh)");
        assert_success(&wait_until(child, deadline, &what), &what);
    }
}

#[test]
fn info_nce_global_matches_torch_distributed() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (z_a, z_b) = {
        let _rng = seeded(20_210_622);
        let z_a =
            Tensor::randn([WORLD as i64 * INFO_NCE_N, INFO_NCE_D], (Kind::Float, Device::Cpu));
        // Correlated views: positives stand out, but not by far.
        let z_b = &z_a + Tensor::randn_like(&z_a) * 0.8;
        (z_a, z_b)
    };
    for r in 0..WORLD {
        save(dir, &format!("za_{r}"), &rows(&z_a, r, INFO_NCE_N));
        save(dir, &format!("zb_{r}"), &rows(&z_b, r, INFO_NCE_N));
    }
    // Both sides at once: they use different ports and read the same inputs.
    std::thread::scope(|s| {
        s.spawn(|| run_python_ranks(dir));
        run_ranks("info_nce", dir);
    });

    for (i, tau) in INFO_NCE_TEMPERATURES.iter().enumerate() {
        let a = z_a.detach().set_requires_grad(true);
        let b = z_b.detach().set_requires_grad(true);
        let single = info_nce(&a, &b, *tau);
        single.backward();
        let mut losses = Vec::new();
        for r in 0..WORLD {
            let tag = format!("{r}_{i}");
            let loss = load(dir, &format!("rs_loss_{tag}"));
            let (ga, gb) = (load(dir, &format!("rs_ga_{tag}")), load(dir, &format!("rs_gb_{tag}")));
            assert_close(
                &loss,
                &load(dir, &format!("py_loss_{tag}")),
                &format!("τ={tau} rank {r} loss"),
            );
            assert_close(
                &ga,
                &load(dir, &format!("py_ga_{tag}")),
                &format!("τ={tau} rank {r} grad_a"),
            );
            assert_close(
                &gb,
                &load(dir, &format!("py_gb_{tag}")),
                &format!("τ={tau} rank {r} grad_b"),
            );
            // Averaged over ranks, the gradient is that of the one-process loss on the
            // concatenated batch.
            let n = INFO_NCE_N;
            assert_close(
                &(&ga / WORLD as f64),
                &rows(&a.grad(), r, n),
                &format!("τ={tau} rank {r} grad_a / W vs one process"),
            );
            assert_close(
                &(&gb / WORLD as f64),
                &rows(&b.grad(), r, n),
                &format!("τ={tau} rank {r} grad_b / W vs one process"),
            );
            losses.push(f64::try_from(&loss.squeeze()).unwrap());
        }
        let mean = losses.iter().sum::<f64>() / WORLD as f64;
        let single = f64::try_from(&single).unwrap();
        println!("τ={tau}: mean of rank losses {mean:.7}, one process {single:.7}");
        assert!((mean - single).abs() < TOLERANCE, "τ={tau}: {mean} vs {single}");
    }
}

const BN_CHANNELS: i64 = 5;
/// Rows per rank.
const BN_N: i64 = 3;

#[test]
fn sync_batch_norm_equals_batch_norm_on_the_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let n = BN_N;
    let global = WORLD as i64 * n;
    // Inputs with a large mean and uneven scale per channel, two steps, two layouts.
    let inputs = {
        let _rng = seeded(7);
        let shift = Tensor::arange(BN_CHANNELS, (Kind::Float, Device::Cpu)) * 2.0 - 3.0;
        [("3d", 3, vec![global, BN_CHANNELS, 2, 3, 3]), ("1d", 1, vec![global, BN_CHANNELS])].map(
            |(layout, nd, shape)| {
                let mut bshape = vec![1i64; shape.len()];
                bshape[1] = BN_CHANNELS;
                let steps: Vec<(Tensor, Tensor)> = (0..2)
                    .map(|_| {
                        let x = Tensor::randn(shape.as_slice(), (Kind::Float, Device::Cpu)) * 1.7
                            + shift.view(bshape.as_slice());
                        // Loss weights of 0.1: the γ gradient sums ~100 products, kept O(1)
                        // so that an absolute 1e-5 is a test of the formula, not of f32.
                        let weights = Tensor::randn(shape.as_slice(), (Kind::Float, Device::Cpu));
                        (x, weights * 0.1)
                    })
                    .collect();
                let w = Tensor::rand([BN_CHANNELS], (Kind::Float, Device::Cpu)) + 0.5;
                let b = Tensor::randn([BN_CHANNELS], (Kind::Float, Device::Cpu));
                (layout, nd, steps, w, b)
            },
        )
    };
    for (layout, _, steps, w, b) in &inputs {
        save(dir, &format!("w_{layout}"), w);
        save(dir, &format!("b_{layout}"), b);
        for (step, (x, weights)) in steps.iter().enumerate() {
            for r in 0..WORLD {
                save(dir, &format!("x_{layout}_{step}_{r}"), &rows(x, r, n));
                save(dir, &format!("r_{layout}_{step}_{r}"), &rows(weights, r, n));
            }
        }
    }
    run_ranks("sync_bn", dir);

    for (layout, nd, steps, w, b) in &inputs {
        let vs = nn::VarStore::new(Device::Cpu);
        let bn = match nd {
            1 => nn::batch_norm1d(vs.root(), BN_CHANNELS, bn_config()),
            _ => nn::batch_norm3d(vs.root(), BN_CHANNELS, bn_config()),
        };
        tch::no_grad(|| {
            bn.ws.as_ref().unwrap().shallow_clone().copy_(w);
            bn.bs.as_ref().unwrap().shallow_clone().copy_(b);
        });
        for (step, (x, weights)) in steps.iter().enumerate() {
            let x = x.detach().set_requires_grad(true);
            let y = bn.forward_t(&x, true);
            (&y * weights).sum(Kind::Float).backward();
            for r in 0..WORLD {
                let tag = format!("{layout}_{step}_{r}");
                assert_close(
                    &load(dir, &format!("y_{tag}")),
                    &rows(&y, r, n),
                    &format!("{tag} output"),
                );
                assert_close(
                    &load(dir, &format!("gx_{tag}")),
                    &rows(&x.grad(), r, n),
                    &format!("{tag} input grad"),
                );
            }
        }
        // Each rank's γ, β gradients hold its own rows' share; their sum is the whole
        // batch's (GradSync averages them, with the loss a mean, to the same end).
        let summed = |name: &str| {
            (0..WORLD)
                .map(|r| load(dir, &format!("{name}_{layout}_{r}")))
                .reduce(|a, b| a + b)
                .unwrap()
        };
        assert_close(
            &summed("gw"),
            &bn.ws.as_ref().unwrap().grad(),
            &format!("{layout} weight grad"),
        );
        assert_close(
            &summed("gb"),
            &bn.bs.as_ref().unwrap().grad(),
            &format!("{layout} bias grad"),
        );
        let eval = bn.forward_t(&steps[0].0, false);
        for r in 0..WORLD {
            assert_close(
                &load(dir, &format!("rm_{layout}_{r}")),
                &bn.running_mean,
                &format!("{layout} rank {r} running mean"),
            );
            assert_close(
                &load(dir, &format!("rv_{layout}_{r}")),
                &bn.running_var,
                &format!("{layout} rank {r} running var"),
            );
            assert_close(
                &load(dir, &format!("eval_{layout}_{r}")),
                &rows(&eval, r, n),
                &format!("{layout} rank {r} eval output"),
            );
        }
    }
}

const STEP_FEATURES: i64 = 10;
/// Videos per rank.
const STEP_N: i64 = 3;

#[test]
fn a_data_parallel_step_equals_one_process_on_the_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let n = STEP_N;
    let mut vs = nn::VarStore::new(Device::Cpu);
    let (head, view_a, view_b) = {
        let _rng = seeded(11);
        let head = ProjectionHead::new(&vs.root(), STEP_FEATURES, &head_config()).unwrap();
        let shape = [WORLD as i64 * n, STEP_FEATURES];
        let view_a = Tensor::randn(shape, (Kind::Float, Device::Cpu));
        let view_b = &view_a + Tensor::randn(shape, (Kind::Float, Device::Cpu)) * 0.5;
        (head, view_a, view_b)
    };
    vs.save(dir.join("head.safetensors")).unwrap();
    for r in 0..WORLD {
        // As the trainer does: both views of this rank's videos in one forward pass.
        save(
            dir,
            &format!("views_{r}"),
            &Tensor::cat(&[rows(&view_a, r, n), rows(&view_b, r, n)], 0),
        );
    }
    for (scenario, how) in [("step_sync", "GradSync"), ("step_reducer", "GradReducer")] {
        run_ranks(scenario, dir);
        compare_step(dir, &mut vs, &head, how);
    }
}

/// Checks the ranks' gradients and buffers after a `step_*` scenario against one process.
fn compare_step(dir: &Path, vs: &mut nn::VarStore, head: &ProjectionHead, how: &str) {
    let n = STEP_N;
    // From the saved start (running statistics included), no gradient.
    vs.load(dir.join("head.safetensors")).unwrap();
    for t in vs.trainable_variables() {
        if t.grad().defined() {
            let _ = t.grad().zero_();
        }
    }

    // One process, plain BatchNorm over every rank's [a; b] rows at once: the batch sync BN
    // normalises over (row order does not change BatchNorm's statistics).
    let stacked: Vec<Tensor> = (0..WORLD).map(|r| load(dir, &format!("views_{r}"))).collect();
    let z = head.forward_t(&Tensor::cat(&stacked, 0), true);
    let per_rank = z.chunk(WORLD as i64, 0);
    let z_a = Tensor::cat(&per_rank.iter().map(|t| t.narrow(0, 0, n)).collect::<Vec<_>>(), 0);
    let z_b = Tensor::cat(&per_rank.iter().map(|t| t.narrow(0, n, n)).collect::<Vec<_>>(), 0);
    info_nce(&z_a, &z_b, 0.2).backward();
    let mut checked = 0;
    for (name, t) in vs.variables() {
        let file = name.replace('.', "_");
        for r in 0..WORLD {
            if t.requires_grad() {
                assert_close(
                    &load(dir, &format!("grad_{file}_{r}")),
                    &t.grad(),
                    &format!("{how}: rank {r} grad {name}"),
                );
            } else {
                assert_close(
                    &load(dir, &format!("buf_{file}_{r}")),
                    &t,
                    &format!("{how}: rank {r} {name}"),
                );
            }
            checked += 1;
        }
    }
    // 3 linear layers (weight, bias) and 2 BatchNorms (weight, bias, 2 running stats).
    assert_eq!(checked, WORLD * (3 * 2 + 2 * 4));
}

/// How the survivor of a lost-peer scenario ended: the collective's error, the ranks
/// [`ProcessGroup::find_lost`] named, and its message.
struct LostReport {
    error: String,
    ranks: String,
    message: String,
}

/// Starts ranks 0 and 1 with collective timeout `timeout`, waits until both joined, then does
/// `act` to the `victim`'s process; returns what the other rank reported, once it has
/// finished (within [`DEADLINE`]).
fn lost_peer(victim: usize, timeout: Duration, act: impl FnOnce(&mut Child)) -> LostReport {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let port = free_port();
    let timeout_ms = timeout.as_millis() as u64;
    let scenario = if victim == 1 { "lost_peer" } else { "lost_store" };
    let mut ranks: Vec<Child> =
        (0..WORLD).map(|r| spawn_rank(scenario, dir, port, r, timeout_ms)).collect();
    let deadline = Instant::now() + DEADLINE;
    while !(dir.join("joined_0").exists() && dir.join("joined_1").exists()) {
        assert!(Instant::now() < deadline, "the ranks never joined");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut lost = ranks.remove(victim);
    act(&mut lost);
    let survivor = format!("rank {} after losing rank {victim}", 1 - victim);
    let out = wait_until(ranks.remove(0), deadline, &survivor);
    // A stopped process still takes SIGKILL.
    let _ = lost.kill();
    let _ = lost.wait();
    assert_success(&out, &survivor);
    let error = std::fs::read_to_string(dir.join("error")).expect("the survivor wrote its error");
    let lost = std::fs::read_to_string(dir.join("lost")).expect("the survivor wrote the lost");
    let (ranks, message) = lost.split_once('\n').expect("ranks, then the message");
    println!("rank {}: {error}; {message}", 1 - victim);
    LostReport { error, ranks: ranks.to_owned(), message: message.to_owned() }
}

fn sigstop(child: &mut Child) {
    let status = Command::new("kill").args(["-STOP", &child.id().to_string()]).status();
    assert!(status.expect("run kill").success(), "SIGSTOP {}", child.id());
}

#[test]
fn a_killed_rank_fails_the_other_ranks_collective_and_its_heartbeat_names_it() {
    // A generous timeout: the failure must come from the closed connection, not the clock.
    let report = lost_peer(1, Duration::from_secs(60), |rank1| {
        rank1.kill().expect("SIGKILL rank 1");
    });
    assert!(report.error.starts_with("all_reduce failed on rank 0 of 2: "), "{}", report.error);
    assert_eq!(report.ranks, "1", "{}", report.message);
    assert!(report.message.starts_with("rank 1 of 2 stopped answering"), "{}", report.message);
}

#[test]
fn a_stopped_rank_fails_the_other_ranks_collective_after_the_timeout_and_is_named() {
    let report = lost_peer(1, Duration::from_secs(2), sigstop);
    assert!(report.error.starts_with("all_reduce failed on rank 0 of 2: "), "{}", report.error);
    assert!(report.error.to_lowercase().contains("timed out"), "{}", report.error);
    assert_eq!(report.ranks, "1", "{}", report.message);
}

#[test]
fn losing_rank_0_names_it_as_the_stores_host_whether_killed_or_stopped() {
    let killed = lost_peer(0, Duration::from_secs(60), |rank0| {
        rank0.kill().expect("SIGKILL rank 0");
    });
    assert!(killed.error.starts_with("all_reduce failed on rank 1 of 2: "), "{}", killed.error);
    assert_eq!(killed.ranks, "0", "{}", killed.message);
    assert!(killed.message.contains("serves the group's store at 127.0.0.1"), "{}", killed.message);
    // Stopped, its store still accepts connections but never answers: the reads time out.
    let stopped = lost_peer(0, Duration::from_secs(2), sigstop);
    assert_eq!(stopped.ranks, "0", "{}", stopped.message);
}

/// The switch in `model`: sync BN builds the same variables as tch's BatchNorm, and in a
/// world of one rank computes the same outputs, running statistics and gradients (there it
/// takes libtorch's fused kernel; sync BN's own formula is checked against one process at
/// two ranks by the step tests). In f64, so that a formula that drifted would show.
#[test]
fn sync_norm_builds_the_same_model_and_matches_it_on_one_rank() {
    let solo = Launch {
        launcher: Launcher::Torchrun,
        rank: 0,
        local_rank: 0,
        world_size: 1,
        master_addr: "127.0.0.1".into(),
        master_port: free_port(),
    };
    let group = ProcessGroup::new(
        &solo,
        &GroupOptions { timeout: TIMEOUT, ..GroupOptions::for_device(Device::Cpu) },
    )
    .expect("a world of one");
    let backbone = R3dConfig { base_width: 4, stem: Stem::Small, ..R3dConfig::r3d18() };
    let head = HeadConfig { hidden_layers: 1, hidden_dim: 8, out_dim: 4 };
    let clips = Tensor::rand([3, 3, 4, 16, 16], (Kind::Double, Device::Cpu));
    let (mut plain_vs, mut sync_vs) =
        (nn::VarStore::new(Device::Cpu), nn::VarStore::new(Device::Cpu));
    let plain = Model::new(&plain_vs.root(), &backbone, &head).unwrap();
    let sync =
        Model::with_norm(&sync_vs.root(), &backbone, &head, &Norm::SyncBatch(group)).unwrap();
    plain_vs.double();
    sync_vs.double();
    sync_vs.copy(&plain_vs).expect("same names and shapes");
    assert_eq!(
        {
            let mut names: Vec<(String, Vec<i64>)> =
                plain_vs.variables().into_iter().map(|(n, t)| (n, t.size())).collect();
            names.sort();
            names
        },
        {
            let mut names: Vec<(String, Vec<i64>)> =
                sync_vs.variables().into_iter().map(|(n, t)| (n, t.size())).collect();
            names.sort();
            names
        }
    );

    for train in [true, false] {
        let (plain_z, sync_z) = (plain.forward_t(&clips, train).1, sync.forward_t(&clips, train).1);
        assert_close(&sync_z, &plain_z, &format!("embeddings, train {train}"));
        if train {
            plain_z.square().sum(Kind::Float).backward();
            sync_z.square().sum(Kind::Float).backward();
        }
    }
    let sync_vars = sync_vs.variables();
    for (name, t) in plain_vs.variables() {
        let other = &sync_vars[&name];
        match t.requires_grad() {
            true => assert_close(&other.grad(), &t.grad(), &format!("grad {name}")),
            false => assert_close(other, &t, &name),
        }
    }
}
