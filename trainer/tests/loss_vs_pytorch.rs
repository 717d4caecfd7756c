//! `info_nce` against PyTorch: the loss and its gradients with respect to both embeddings,
//! for the same inputs, must agree to 1e-5.
//!
//! The Python side is written independently of ours, from the formula rather than from the
//! reference's two-direction code: one 2N x 2N similarity matrix of the concatenated views,
//! the diagonal masked with -inf, `F.cross_entropy` with the other view as target, summed
//! over the 2N anchors and divided by N. It runs in float64, so the comparison also bounds the
//! error of our f32 computation.
//!
//! Needs the project venv (`scripts/setup.sh`) with the full torch install: the lean one
//! cannot `import torch`.

use std::path::PathBuf;
use std::process::Command;

use cvrl_trainer::loss::info_nce;
use tch::{Device, Kind, Tensor};

const N: i64 = 6;
const D: i64 = 16;
const TEMPERATURES: [f64; 3] = [0.1, 0.5, 1.0];
const TOLERANCE: f64 = 1e-5;

/// Reads `z_a`, `z_b` from a safetensors file (parsed by hand: the venv has no `safetensors`
/// package) and prints, per temperature: `loss <v>`, `grad_a <v>...`, `grad_b <v>...`.
const PYTHON: &str = r#"
import json, struct, sys
import torch
import torch.nn.functional as F

raw = open(sys.argv[1], "rb").read()
(header_len,) = struct.unpack("<Q", raw[:8])
header = json.loads(raw[8 : 8 + header_len])
data = raw[8 + header_len :]

def load(name):
    entry = header[name]
    assert entry["dtype"] == "F32", entry
    start, end = entry["data_offsets"]
    t = torch.frombuffer(bytearray(data[start:end]), dtype=torch.float32)
    return t.reshape(entry["shape"]).double().requires_grad_(True)

for tau in map(float, sys.argv[2:]):
    z_a, z_b = load("z_a"), load("z_b")
    n = z_a.shape[0]
    z = F.normalize(torch.cat([z_a, z_b]), dim=1)
    sim = (z @ z.T) / tau
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    loss = F.cross_entropy(sim, target, reduction="sum") / n
    loss.backward()
    print("loss", repr(loss.item()))
    print("grad_a", " ".join(repr(v) for v in z_a.grad.flatten().tolist()))
    print("grad_b", " ".join(repr(v) for v in z_b.grad.flatten().tolist()))
"#;

fn venv_python() -> PathBuf {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup.sh to create the project venv with torch",
        python.display()
    );
    python
}

/// The values after `key` on the next line of `lines`.
fn take(lines: &mut std::str::Lines<'_>, key: &str) -> Vec<f64> {
    let line = lines.next().unwrap_or_else(|| panic!("python output ended before {key}"));
    let mut fields = line.split_whitespace();
    assert_eq!(fields.next(), Some(key), "unexpected line {line:?}");
    fields.map(|v| v.parse().unwrap_or_else(|e| panic!("{key}: bad number {v:?}: {e}"))).collect()
}

fn to_vec(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).expect("CPU tensor")
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

#[test]
fn loss_and_gradients_match_pytorch() {
    let python = venv_python();
    // The only test in this binary drawing from the global RNG, so the seed holds.
    tch::manual_seed(20_080_380);
    let z_a = Tensor::randn([N, D], (Kind::Float, Device::Cpu));
    // Correlated views, as after training starts: positives stand out but not by far.
    let z_b = &z_a + Tensor::randn([N, D], (Kind::Float, Device::Cpu)) * 0.8;

    let dir = tempfile::tempdir().expect("temp dir");
    let inputs = dir.path().join("z.safetensors");
    Tensor::write_safetensors(&[("z_a", &z_a), ("z_b", &z_b)], &inputs).expect("write inputs");
    let output = Command::new(&python)
        .arg("-c")
        .arg(PYTHON)
        .arg(&inputs)
        .args(TEMPERATURES.map(|t| t.to_string()))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    assert!(
        output.status.success(),
        "python failed ({}); is the full torch installed (scripts/setup.sh)?\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).expect("utf-8 output");
    let mut lines = stdout.lines();

    for tau in TEMPERATURES {
        let expected_loss = take(&mut lines, "loss")[0];
        let expected_grad_a = take(&mut lines, "grad_a");
        let expected_grad_b = take(&mut lines, "grad_b");

        let a = z_a.detach().set_requires_grad(true);
        let b = z_b.detach().set_requires_grad(true);
        let loss = info_nce(&a, &b, tau);
        assert_eq!(loss.kind(), Kind::Float);
        loss.backward();
        let loss = f64::try_from(&loss).unwrap();

        let loss_diff = (loss - expected_loss).abs();
        let grad_a_diff = max_abs_diff(&to_vec(&a.grad()), &expected_grad_a);
        let grad_b_diff = max_abs_diff(&to_vec(&b.grad()), &expected_grad_b);
        println!(
            "τ={tau}: loss {loss:.7} (torch {expected_loss:.7}), max |Δ| loss {loss_diff:.1e}, \
             grad_a {grad_a_diff:.1e}, grad_b {grad_b_diff:.1e}"
        );
        assert!(loss_diff < TOLERANCE, "τ={tau}: loss {loss} vs torch {expected_loss}");
        assert!(grad_a_diff < TOLERANCE, "τ={tau}: grad_a off by {grad_a_diff}");
        assert!(grad_b_diff < TOLERANCE, "τ={tau}: grad_b off by {grad_b_diff}");
    }
    assert_eq!(lines.next(), None, "python printed more than expected");
}
