//! An integration test is a separate binary, so running this file at all proves that the
//! crate's binaries link libtorch and find it at run time without `LD_LIBRARY_PATH` (the rpath
//! from `build.rs`). The tests then check that libtorch's 3D convolution, the building block of
//! the R3D encoder, gives correct gradients in f64, and that CUDA is linked when it should be.

use std::sync::{Mutex, MutexGuard};

use cvrl_trainer::device::{default_device, describe};
use tch::nn::{self, Module};
use tch::{Cuda, Device, Kind, Tensor};

const X_SHAPE: [i64; 5] = [1, 2, 6, 9, 9];
/// Out 3, in 2, and the 5x7x7 kernel of the R3D stem.
const W_SHAPE: [i64; 5] = [3, 2, 5, 7, 7];
const STRIDE: [i64; 3] = [2, 2, 2];
/// Half the kernel, as the stem pads: every input voxel, borders included, reaches an output.
const PADDING: [i64; 3] = [2, 3, 3];
/// Output [1, 3, 3, 5, 5].
const Y_SHAPE: [i64; 5] = [1, 3, 3, 5, 5];

const STEP: f64 = 1e-6;
const TOLERANCE: f64 = 1e-6;
const OPTS: (Kind, Device) = (Kind::Double, Device::Cpu);

/// libtorch's CPU generator is global and tests run on parallel threads: hold this from
/// `manual_seed` to the last draw, or another test's draws interleave and the data (and the
/// coordinates checked) change from run to run.
static RNG: Mutex<()> = Mutex::new(());

fn seeded(seed: i64) -> MutexGuard<'static, ()> {
    let guard = RNG.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    tch::manual_seed(seed);
    guard
}

fn to_vec(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.flatten(0, -1)).expect("a CPU f64 tensor converts to Vec<f64>")
}

/// A conv3d followed by a scalar loss, with the data held as plain vectors so single entries
/// can be nudged for finite differences.
struct Problem {
    x: Vec<f64>,
    w: Vec<f64>,
    b: Tensor,
    r: Tensor,
}

impl Problem {
    fn new(seed: i64) -> Self {
        let _rng = seeded(seed);
        let fan_in: i64 = W_SHAPE[1..].iter().product();
        Problem {
            x: to_vec(&Tensor::randn(X_SHAPE, OPTS)),
            // Scaled like a real init so the conv outputs are O(1) and sin() below is far from
            // linear over them.
            w: to_vec(&(Tensor::randn(W_SHAPE, OPTS) / (fan_in as f64).sqrt())),
            b: Tensor::randn([W_SHAPE[0]], OPTS),
            r: Tensor::randn(Y_SHAPE, OPTS),
        }
    }

    /// `sum(r * y + sin(y))` with `y = conv3d(x, w) + b`: not quadratic, so central
    /// differences are not exact by construction, and dL/dy = r + cos(y) varies per voxel.
    fn loss(&self, x: &Tensor, w: &Tensor) -> Tensor {
        let y = x.conv3d(w, Some(&self.b), STRIDE, PADDING, [1, 1, 1], 1);
        assert_eq!(y.size(), Y_SHAPE);
        (&y * &self.r + y.sin()).sum(Kind::Double)
    }

    fn loss_at(&self, x: &[f64], w: &[f64]) -> f64 {
        tch::no_grad(|| {
            let x = Tensor::from_slice(x).view(X_SHAPE);
            let w = Tensor::from_slice(w).view(W_SHAPE);
            self.loss(&x, &w).double_value(&[])
        })
    }

    /// dL/dx and dL/dw by libtorch's backward pass.
    fn analytic(&self) -> (Vec<f64>, Vec<f64>) {
        let x = Tensor::from_slice(&self.x).view(X_SHAPE).set_requires_grad(true);
        let w = Tensor::from_slice(&self.w).view(W_SHAPE).set_requires_grad(true);
        self.loss(&x, &w).backward();
        (to_vec(&x.grad()), to_vec(&w.grad()))
    }

    /// Central difference of the loss along entry `i` of x.
    fn numeric_x(&self, i: usize) -> f64 {
        let mut x = self.x.clone();
        x[i] = self.x[i] + STEP;
        let plus = self.loss_at(&x, &self.w);
        x[i] = self.x[i] - STEP;
        let minus = self.loss_at(&x, &self.w);
        (plus - minus) / (2.0 * STEP)
    }

    /// Central difference of the loss along entry `i` of w.
    fn numeric_w(&self, i: usize) -> f64 {
        let mut w = self.w.clone();
        w[i] = self.w[i] + STEP;
        let plus = self.loss_at(&self.x, &w);
        w[i] = self.w[i] - STEP;
        let minus = self.loss_at(&self.x, &w);
        (plus - minus) / (2.0 * STEP)
    }
}

/// The first and last entries (padding borders) and `n` random ones, fixed by `seed`.
fn coordinates(len: usize, n: i64, seed: i64) -> Vec<usize> {
    let _rng = seeded(seed);
    let random = Vec::<i64>::try_from(Tensor::randint(len as i64, [n], (Kind::Int64, Device::Cpu)))
        .expect("int64 tensor converts");
    let mut coords = vec![0, len - 1];
    coords.extend(random.into_iter().map(|i| usize::try_from(i).expect("randint is >= 0")));
    coords
}

/// The largest `|analytic - numeric| / max(|analytic|, |numeric|)` over `coords`.
///
/// Panics when both are near zero at a coordinate, where a relative error says nothing.
fn worst_relative_error(
    name: &str,
    analytic: &[f64],
    numeric: impl Fn(usize) -> f64,
    coords: &[usize],
) -> f64 {
    coords
        .iter()
        .map(|&i| {
            let (a, n) = (analytic[i], numeric(i));
            let scale = a.abs().max(n.abs());
            assert!(scale > 1e-4, "{name}[{i}] too small to compare: {a} vs {n}");
            (a - n).abs() / scale
        })
        .fold(0.0, f64::max)
}

#[test]
fn conv3d_gradients_match_central_differences() {
    let problem = Problem::new(0);
    let (grad_x, grad_w) = problem.analytic();
    assert_eq!(grad_x.len(), problem.x.len());
    assert_eq!(grad_w.len(), problem.w.len());

    let coords_x = coordinates(grad_x.len(), 8, 1);
    let err_x = worst_relative_error("dL/dx", &grad_x, |i| problem.numeric_x(i), &coords_x);
    let coords_w = coordinates(grad_w.len(), 8, 2);
    let err_w = worst_relative_error("dL/dw", &grad_w, |i| problem.numeric_w(i), &coords_w);
    eprintln!("worst relative error: input {err_x:.2e}, weight {err_w:.2e}");
    assert!(err_x < TOLERANCE, "dL/dx off by {err_x:e} (relative)");
    assert!(err_w < TOLERANCE, "dL/dw off by {err_w:e} (relative)");
}

/// The check above must be able to fail: a gradient wrong by 1e-5 relative is caught.
#[test]
fn gradient_check_rejects_a_slightly_wrong_gradient() {
    let problem = Problem::new(0);
    let (mut grad_x, mut grad_w) = problem.analytic();
    let coords_x = coordinates(grad_x.len(), 8, 1);
    let coords_w = coordinates(grad_w.len(), 8, 2);
    grad_x[coords_x[3]] *= 1.0 + 1e-5;
    grad_w[coords_w[0]] *= 1.0 - 1e-5;
    let err_x = worst_relative_error("dL/dx", &grad_x, |i| problem.numeric_x(i), &coords_x);
    let err_w = worst_relative_error("dL/dw", &grad_w, |i| problem.numeric_w(i), &coords_w);
    assert!(err_x > TOLERANCE, "perturbed dL/dx passed: {err_x:e}");
    assert!(err_w > TOLERANCE, "perturbed dL/dw passed: {err_w:e}");
}

/// The layer the R3D stem will use: `nn::conv` with a non-cubic kernel (`nn::conv3d` only
/// takes cubes), in f64, agrees with the functional conv and back-propagates into its weights.
#[test]
fn nn_conv_with_non_cubic_kernel() {
    let _rng = seeded(3);
    let mut vs = nn::VarStore::new(Device::Cpu);
    let config = nn::ConvConfigND::<[i64; 3]> {
        stride: STRIDE,
        padding: [0, 0, 0],
        dilation: [1, 1, 1],
        groups: 1,
        bias: true,
        ws_init: nn::init::DEFAULT_KAIMING_UNIFORM,
        bs_init: nn::Init::Const(0.1),
        padding_mode: nn::PaddingMode::Zeros,
    };
    let conv = nn::conv(vs.root() / "stem", W_SHAPE[1], W_SHAPE[0], [5, 7, 7], config);
    vs.double();
    assert_eq!(conv.ws.size(), W_SHAPE);
    assert_eq!(conv.ws.kind(), Kind::Double);

    let x = Tensor::randn(X_SHAPE, OPTS);
    let y = conv.forward(&x);
    // No padding: depth (6 - 5) / 2 + 1, height and width (9 - 7) / 2 + 1.
    assert_eq!(y.size(), [1, 3, 1, 2, 2]);
    let reference = x.conv3d(&conv.ws, conv.bs.as_ref(), STRIDE, [0, 0, 0], [1, 1, 1], 1);
    let diff = (&y - &reference).abs().max().double_value(&[]);
    assert!(diff == 0.0, "nn::conv and conv3d differ by {diff}");

    y.square().sum(Kind::Double).backward();
    let grad = conv.ws.grad();
    assert_eq!(grad.size(), W_SHAPE);
    assert!(
        grad.abs().sum(Kind::Double).double_value(&[]) > 0.0,
        "no gradient reached the weights"
    );
}

/// On a machine with an NVIDIA driver CUDA must be found, elsewhere the CPU is used; neither
/// may panic. `CVRL_EXPECT_CUDA=1` / `=0` overrides what the driver's presence suggests.
#[test]
fn default_device_is_cuda_exactly_when_a_gpu_is_usable() {
    let expect_cuda = match std::env::var("CVRL_EXPECT_CUDA").as_deref() {
        Ok("1") => true,
        Ok("0") => false,
        _ => std::path::Path::new("/dev/nvidiactl").exists(),
    };
    let device = default_device();
    let text = describe(device);
    eprintln!("default device: {text}");
    assert_eq!(Cuda::is_available(), expect_cuda, "CUDA availability; device {text}");
    if expect_cuda {
        assert_eq!(device, Device::Cuda(0));
        assert!(text.starts_with("cuda:0 ("), "{text}");
        let y = Tensor::ones([2, 2], (Kind::Float, device)).sum(Kind::Float);
        assert_eq!(y.double_value(&[]), 4.0);
    } else {
        assert_eq!(device, Device::Cpu);
        assert!(text.starts_with("cpu ("), "{text}");
    }
}

/// When build.rs forced libtorch_cuda.so in, libtorch's CUDA hooks must be loaded at run time,
/// GPU or not: without them, asking for the CUDA runtime version is an error. This is what
/// catches `--as-needed` dropping the library on a machine that has no GPU to test with.
#[test]
fn libtorch_cuda_is_loaded_when_linked() {
    if env!("CVRL_TORCH_CUDA_LINKED") != "1" {
        eprintln!("libtorch_cuda.so not linked by build.rs (CPU-only or lean libtorch); skipped");
        return;
    }
    let cudart = tch::utils::version_cudart();
    eprintln!("libtorch built against CUDA runtime {cudart}");
    assert!(cudart >= 11000, "implausible CUDART_VERSION {cudart}");
}
