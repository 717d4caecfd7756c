//! The optimisers: SGD with momentum (the reference's) and LARS (SimCLR's), as one small
//! custom optimiser over a [`VarStore`]'s trainable variables, updated under
//! [`tch::no_grad`] with one velocity buffer per variable (the pattern of tch's
//! `examples/custom-optimizer`).
//!
//! **Which variables decay.** The reference adds `1e-6 · Σ ½‖w‖²` over the variables whose
//! name contains "kernel" to its loss, i.e. conv and dense kernels only: BatchNorm scales and
//! shifts and all biases are left alone. Our layers are named by [`crate::model`]: conv
//! kernels are `<...>.conv.weight` or `<...>.conv_<x>.weight` (`stem.conv.weight`,
//! `res3.0.conv_shortcut.weight`), dense kernels `<...>.linear.weight`
//! (`head.0.linear.weight`); BatchNorm variables are `<...>.bn*.weight` / `.bias` and dense
//! biases `<...>.linear.bias`. So [`is_kernel`] is: the last name component is `weight` and
//! the one before it is `linear` or starts with `conv`. (Every such variable has 2 or more
//! dimensions and every other trainable one has 1; a test checks that on the real model.)
//! The gradient of `wd · ½‖w‖²` is `wd · w`, added to the gradient before the update.
//!
//! **SGD** (non-Nesterov, momentum `m`), in the form the reference's Keras optimiser uses,
//! with the learning rate inside the velocity:
//!
//! ```text
//! g = ∇L + wd·w (kernels only);  v ← m·v + lr·g;  w ← w − v
//! ```
//!
//! PyTorch's SGD keeps `lr` outside (`v ← m·v + g; w ← w − lr·v`); the two agree while `lr`
//! is constant and differ only in how fast an lr change takes effect.
//!
//! **LARS** is SimCLR's (`lars_optimizer.py`, classic momentum, η = 0.001): for kernels,
//! `g = ∇L + wd·w` and the trust ratio `η‖w‖ / ‖g‖` (1 when either norm is 0) scales the
//! learning rate, `v ← m·v + lr·trust·g; w ← w − v`. BatchNorm variables and biases get
//! neither weight decay nor adaptation (trust 1), as SimCLR excludes `batch_normalization`
//! and `bias` from both. The released CVRL config uses SGD, not LARS.
//!
//! [`Optimizer::state`] and [`Optimizer::load_state`] give the velocity buffers by variable
//! name, for checkpoints.

use std::fmt;
use std::str::FromStr;

use tch::nn::VarStore;
use tch::{Kind, Tensor};

use crate::mismatch::TensorMismatch;

/// Which update rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OptimizerKind {
    /// SGD with momentum (the reference's).
    #[default]
    Sgd,
    /// LARS, SimCLR style.
    Lars,
}

impl FromStr for OptimizerKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "sgd" => Ok(OptimizerKind::Sgd),
            "lars" => Ok(OptimizerKind::Lars),
            other => Err(format!("{other:?}: expected sgd or lars")),
        }
    }
}

impl fmt::Display for OptimizerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OptimizerKind::Sgd => "sgd",
            OptimizerKind::Lars => "lars",
        })
    }
}

/// Hyper-parameters of the optimiser; the learning rate comes with each step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OptimizerConfig {
    pub kind: OptimizerKind,
    /// Momentum `m` (reference 0.9).
    pub momentum: f64,
    /// Weight decay `wd` on kernels (reference 1e-6).
    pub weight_decay: f64,
    /// LARS trust coefficient η (SimCLR 0.001); unused by SGD.
    pub lars_eta: f64,
}

impl Default for OptimizerConfig {
    /// The reference: SGD, momentum 0.9, weight decay 1e-6.
    fn default() -> Self {
        OptimizerConfig {
            kind: OptimizerKind::Sgd,
            momentum: 0.9,
            weight_decay: 1e-6,
            lars_eta: 0.001,
        }
    }
}

/// Whether the variable `name` is a conv or dense kernel: decayed, and adapted by LARS (see
/// the module docs for the naming rule).
pub fn is_kernel(name: &str) -> bool {
    let mut parts = name.rsplit('.');
    let (Some(last), Some(layer)) = (parts.next(), parts.next()) else { return false };
    last == "weight" && (layer == "linear" || layer.starts_with("conv"))
}

/// One trainable variable and its velocity.
struct Param {
    name: String,
    var: Tensor,
    velocity: Tensor,
    kernel: bool,
}

/// SGD or LARS over the trainable variables of a [`VarStore`].
pub struct Optimizer {
    config: OptimizerConfig,
    params: Vec<Param>,
}

impl Optimizer {
    /// Takes the store's trainable variables (those that require a gradient: BatchNorm's
    /// running statistics do not) in name order, with zero velocities on their device.
    pub fn new(vs: &VarStore, config: OptimizerConfig) -> Self {
        let mut vars: Vec<(String, Tensor)> =
            vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let params = vars
            .into_iter()
            .map(|(name, var)| Param {
                kernel: is_kernel(&name),
                velocity: var.zeros_like(),
                name,
                var,
            })
            .collect();
        Optimizer { config, params }
    }

    pub fn config(&self) -> &OptimizerConfig {
        &self.config
    }

    /// Names of the variables this optimiser updates, in order, with whether each is a
    /// kernel (decayed, LARS-adapted).
    pub fn variables(&self) -> impl Iterator<Item = (&str, bool)> {
        self.params.iter().map(|p| (p.name.as_str(), p.kernel))
    }

    /// Zeroes every gradient (before the next backward pass accumulates into them).
    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.var.zero_grad();
        }
    }

    /// One update at learning rate `lr` from the gradients now held by the variables.
    /// Variables without a gradient (not reached by the loss) are left alone.
    pub fn step(&mut self, lr: f64) {
        let OptimizerConfig { kind, momentum, weight_decay, lars_eta } = self.config;
        tch::no_grad(|| {
            for p in &mut self.params {
                let grad = p.var.grad();
                if !grad.defined() {
                    continue;
                }
                let g = if p.kernel && weight_decay != 0.0 {
                    grad + &p.var * weight_decay
                } else {
                    grad
                };
                let step = match kind {
                    OptimizerKind::Lars if p.kernel => {
                        // Kept as tensors: reading the norms back would sync the GPU per variable.
                        let w_norm = p.var.norm();
                        let g_norm = g.norm();
                        let usable = w_norm.gt(0.0).logical_and(&g_norm.gt(0.0));
                        let ratio = (&w_norm * lars_eta) / &g_norm;
                        let trust = ratio.where_self(&usable, &ratio.ones_like());
                        g * (trust * lr)
                    }
                    _ => g * lr,
                };
                p.velocity *= momentum;
                p.velocity += &step;
                p.var -= &p.velocity;
            }
        });
    }

    /// The velocity buffers, named as their variables (for a checkpoint).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.params.iter().map(|p| (p.name.clone(), p.velocity.shallow_clone())).collect()
    }

    /// Restores velocity buffers saved by [`Optimizer::state`]. Every variable must be
    /// there with its shape, and nothing else; otherwise nothing is changed and the
    /// differences are returned.
    pub fn load_state(&mut self, saved: &[(String, Tensor)]) -> Result<(), TensorMismatch> {
        let expected: Vec<(String, Vec<i64>)> =
            self.params.iter().map(|p| (p.name.clone(), p.velocity.size())).collect();
        let found: Vec<(String, Vec<i64>)> =
            saved.iter().map(|(n, t)| (n.clone(), t.size())).collect();
        let mismatch = TensorMismatch::between(&expected, &found);
        if !mismatch.is_empty() {
            return Err(mismatch);
        }
        let saved: std::collections::HashMap<&str, &Tensor> =
            saved.iter().map(|(n, t)| (n.as_str(), t)).collect();
        tch::no_grad(|| {
            for p in &mut self.params {
                let src = saved[p.name.as_str()];
                p.velocity.copy_(&src.to_kind(Kind::Float).to_device(p.velocity.device()));
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{HeadConfig, Model, R3dConfig};
    use tch::Device;

    fn values(t: &Tensor) -> Vec<f64> {
        Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap()
    }

    fn assert_close(got: &[f64], want: &[f64], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}");
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{what}: {got:?} vs {want:?}");
        }
    }

    /// A store with a dense kernel `lin.linear.weight` [1, 2] and bias `lin.linear.bias` [1],
    /// and a BatchNorm-like scale `lin.bn.weight` [1].
    fn toy(w: [f32; 2], b: f32, s: f32) -> (VarStore, Tensor, Tensor, Tensor) {
        let vs = VarStore::new(Device::Cpu);
        let root = vs.root();
        let p = &root / "lin";
        let wt = (&p / "linear").var_copy("weight", &Tensor::from_slice(&w).view([1, 2]));
        let bt = (&p / "linear").var_copy("bias", &Tensor::from_slice(&[b]));
        let st = (&p / "bn").var_copy("weight", &Tensor::from_slice(&[s]));
        (vs, wt, bt, st)
    }

    /// Loss (s·(w·x + b) − y)² at x = (1, 2), y = 3; gradients set on all three variables.
    fn backward(w: &Tensor, b: &Tensor, s: &Tensor) {
        let x = Tensor::from_slice(&[1.0f32, 2.0]).view([2, 1]);
        let pred = (w.matmul(&x) + b) * s;
        (pred - 3.0).square().sum(Kind::Float).backward();
    }

    #[test]
    fn kernels_are_conv_and_linear_weights_only() {
        for name in [
            "stem.conv.weight",
            "res3.0.conv_a.weight",
            "res2.0.conv_shortcut.weight",
            "head.3.linear.weight",
        ] {
            assert!(is_kernel(name), "{name}");
        }
        for name in [
            "stem.bn.weight",
            "res3.0.bn_a.weight",
            "res3.0.bn_a.bias",
            "head.0.bn.weight",
            "head.0.linear.bias",
            "weight",
            "stem.bn.running_mean",
        ] {
            assert!(!is_kernel(name), "{name}");
        }
    }

    #[test]
    fn the_name_rule_picks_exactly_the_multi_dimensional_variables_of_the_model() {
        let vs = VarStore::new(Device::Cpu);
        let head = HeadConfig { hidden_layers: 2, hidden_dim: 16, out_dim: 8 };
        let _model = Model::new(&vs.root(), &R3dConfig::r3d18(), &head).unwrap();
        let opt = Optimizer::new(&vs, OptimizerConfig::default());
        let vars = vs.variables();
        let (mut kernels, mut others) = (0, 0);
        for (name, kernel) in opt.variables() {
            let dims = vars[name].dim();
            assert_eq!(kernel, dims >= 2, "{name}: {dims} dims");
            if kernel {
                kernels += 1;
            } else {
                others += 1;
            }
        }
        // R3D-18: stem + 8 blocks x 2 convs + 3 shortcuts = 20 convs; head: 3 dense layers.
        assert_eq!(kernels, 23);
        // BN scale and shift after each conv and hidden dense layer, plus 3 dense biases.
        assert_eq!(others, 2 * (20 + 2) + 3);
        assert!(opt.variables().all(|(n, _)| !n.contains("running")));
    }

    #[test]
    fn two_sgd_steps_follow_the_hand_formula() {
        let (m, wd) = (0.9, 0.1);
        let (vs, w, b, s) = toy([0.5, -1.0], 0.25, 1.0);
        let mut opt = Optimizer::new(
            &vs,
            OptimizerConfig {
                kind: OptimizerKind::Sgd,
                momentum: m,
                weight_decay: wd,
                lars_eta: 0.0,
            },
        );
        // By hand: pred = w·x + b, r = pred - 3, dL/dw = 2r·x, dL/db = 2r, dL/ds = 2r·(w·x + b).
        let (mut wv, mut bv, mut sv) = ([0.5f64, -1.0], 0.25f64, 1.0f64);
        let (mut vw, mut vb, mut vs_) = ([0.0f64; 2], 0.0f64, 0.0f64);
        for lr in [0.1, 0.05] {
            opt.zero_grad();
            backward(&w, &b, &s);
            opt.step(lr);

            let z = wv[0] + 2.0 * wv[1] + bv;
            let r = sv * z - 3.0;
            let gw = [2.0 * r * sv + wd * wv[0], 4.0 * r * sv + wd * wv[1]];
            let gb = 2.0 * r * sv; // no decay on a bias
            let gs = 2.0 * r * z; // nor on a BatchNorm scale
            for k in 0..2 {
                vw[k] = m * vw[k] + lr * gw[k];
                wv[k] -= vw[k];
            }
            vb = m * vb + lr * gb;
            bv -= vb;
            vs_ = m * vs_ + lr * gs;
            sv -= vs_;
            assert_close(&values(&w), &wv, &format!("kernel after lr {lr}"));
            assert_close(&values(&b), &[bv], "bias");
            assert_close(&values(&s), &[sv], "scale");
        }
    }

    #[test]
    fn batch_norm_and_biases_get_no_weight_decay() {
        let (vs, w, b, s) = toy([2.0, -4.0], 3.0, 5.0);
        let mut opt = Optimizer::new(
            &vs,
            OptimizerConfig { weight_decay: 0.5, momentum: 0.0, ..OptimizerConfig::default() },
        );
        // A zero gradient everywhere: only weight decay can move anything.
        ((&w.sum(Kind::Float) + &b.sum(Kind::Float) + &s.sum(Kind::Float)) * 0.0).backward();
        opt.step(0.1);
        assert_close(&values(&w), &[2.0 * 0.95, -4.0 * 0.95], "kernel decays by lr·wd");
        assert_close(&values(&b), &[3.0], "bias");
        assert_close(&values(&s), &[5.0], "BatchNorm scale");
    }

    #[test]
    fn lars_scales_kernel_steps_by_the_trust_ratio_and_leaves_the_rest_plain() {
        let (eta, wd, lr) = (0.01, 0.1, 0.5);
        let (vs, w, b, s) = toy([3.0, 4.0], 1.0, 2.0);
        let mut opt = Optimizer::new(
            &vs,
            OptimizerConfig {
                kind: OptimizerKind::Lars,
                momentum: 0.9,
                weight_decay: wd,
                lars_eta: eta,
            },
        );
        backward(&w, &b, &s);
        let grad = |t: &Tensor| values(&t.grad());
        let (gw, gb, gs) = (grad(&w), grad(&b), grad(&s));
        opt.step(lr);
        // ‖w‖ = 5; g = ∇ + wd·w; trust = η·5/‖g‖; first step from v = 0: w -= lr·trust·g.
        let g = [gw[0] + wd * 3.0, gw[1] + wd * 4.0];
        let trust = eta * 5.0 / (g[0] * g[0] + g[1] * g[1]).sqrt();
        assert!(trust < 0.1, "a real scaling: {trust}");
        assert_close(&values(&w), &[3.0 - lr * trust * g[0], 4.0 - lr * trust * g[1]], "kernel");
        assert_close(&values(&b), &[1.0 - lr * gb[0]], "bias: trust 1, no decay");
        assert_close(&values(&s), &[2.0 - lr * gs[0]], "scale: trust 1, no decay");
    }

    #[test]
    fn lars_trust_is_one_for_a_zero_kernel() {
        let (vs, w, b, s) = toy([0.0, 0.0], 1.0, 1.0);
        let mut opt = Optimizer::new(
            &vs,
            OptimizerConfig {
                kind: OptimizerKind::Lars,
                weight_decay: 0.0,
                ..OptimizerConfig::default()
            },
        );
        backward(&w, &b, &s);
        let gw = values(&w.grad());
        opt.step(0.1);
        assert_close(&values(&w), &[-0.1 * gw[0], -0.1 * gw[1]], "no NaN from 0/0");
    }

    #[test]
    fn state_round_trips_and_a_foreign_state_is_refused_with_names() {
        let (vs, w, b, s) = toy([0.5, -1.0], 0.25, 1.0);
        let mut opt = Optimizer::new(&vs, OptimizerConfig::default());
        backward(&w, &b, &s);
        opt.step(0.1);
        let saved: Vec<(String, Tensor)> =
            opt.state().into_iter().map(|(n, t)| (n, t.copy())).collect();
        let names: Vec<&str> = saved.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["lin.bn.weight", "lin.linear.bias", "lin.linear.weight"]);

        let (vs2, ..) = toy([0.0, 0.0], 0.0, 0.0);
        let mut fresh = Optimizer::new(&vs2, OptimizerConfig::default());
        fresh.load_state(&saved).unwrap();
        for ((n1, a), (n2, b)) in saved.iter().zip(fresh.state()) {
            assert_eq!(n1, &n2);
            assert_close(&values(&b), &values(a), n1);
        }

        let mut wrong = saved;
        wrong[2].1 = Tensor::zeros([3], (Kind::Float, Device::Cpu));
        wrong.push(("other.weight".into(), Tensor::zeros([1], (Kind::Float, Device::Cpu))));
        let err = fresh.load_state(&wrong[1..]).unwrap_err().to_string();
        assert!(err.contains("lin.bn.weight"), "{err}");
        assert!(err.contains("other.weight"), "{err}");
        assert!(err.contains("lin.linear.weight") && err.contains("[1, 2]"), "{err}");
    }

    #[test]
    fn kinds_parse() {
        assert_eq!("lars".parse::<OptimizerKind>(), Ok(OptimizerKind::Lars));
        assert_eq!(OptimizerKind::Sgd.to_string(), "sgd");
        assert!("adam".parse::<OptimizerKind>().is_err());
    }
}
