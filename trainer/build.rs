//! Link settings for every binary, test, example and bench of cvrl-trainer.
//!
//! torch-sys puts libtorch on the link line but leaves two gaps, both filled here with
//! `cargo:rustc-link-arg`, which (unlike link settings a dependency emits) reaches every
//! linked target of this package:
//!
//! 1. No rpath. Without one, `cargo test` and our binaries die at start-up with
//!    "libtorch_cpu.so: cannot open shared object file", and `[env] LD_LIBRARY_PATH` in
//!    `.cargo/config.toml` does not reach test processes. We add `-rpath <libtorch>/lib`.
//!    libtorch's own libraries carry `$ORIGIN` rpaths, so the CUDA and cuDNN libraries of
//!    the wheel are found from there.
//! 2. rustc links with `--as-needed`. Nothing in tch calls into libtorch_cuda.so directly
//!    (CUDA kernels register themselves when the library loads), so the linker drops it and
//!    `tch::Cuda::is_available()` is false even on a GPU machine (tch-rs #907, #980). We
//!    re-add libtorch_cuda.so and libtorch.so under `--no-as-needed`, so they are always in
//!    DT_NEEDED. We only do so when every library libtorch_cuda.so needs resolves: the lean
//!    CPU-only install (`pip install --no-deps torch`) ships libtorch_cuda.so without cuDNN,
//!    cuBLAS, NCCL, ..., and forcing it in would make every binary fail to start there.
//!    `CVRL_LINK_TORCH_CUDA=1` / `=0` overrides that check.
//!
//! On another machine (a GPU box running a binary built here), the rpath names this machine's
//! venv: point `LD_LIBRARY_PATH` at that machine's `torch/lib`.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=CVRL_LINK_TORCH_CUDA");

    // torch-sys has `links = "tch"` and prints `cargo:libtorch_lib=...`, which cargo hands to
    // direct dependents only: this is why torch-sys is a direct dependency of this crate.
    let Some(lib_dir) = env::var_os("DEP_TCH_LIBTORCH_LIB")
        .map(PathBuf::from)
        .or_else(|| env::var_os("LIBTORCH").map(|root| PathBuf::from(root).join("lib")))
    else {
        println!("cargo:rustc-env=CVRL_TORCH_CUDA_LINKED=0");
        // torch-sys itself fails to build without a libtorch, so this is only reachable with
        // an unusual setup (e.g. its doc-only feature); linking will report the real problem.
        println!(
            "cargo:warning=libtorch lib dir unknown (no DEP_TCH_LIBTORCH_LIB, no LIBTORCH); \
             no rpath added"
        );
        return;
    };
    // A reinstall of torch (lean -> full, or another version) changes these directories; the
    // CUDA decision below must then be made again.
    println!("cargo:rerun-if-changed={}", lib_dir.display());
    // The pip wheels of the CUDA libraries sit beside torch: site-packages/nvidia.
    let nvidia_dir = lib_dir.parent().and_then(Path::parent).map(|p| p.join("nvidia"));
    if let Some(dir) = nvidia_dir.filter(|d| d.is_dir()) {
        println!("cargo:rerun-if-changed={}", dir.display());
    }

    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib_dir.display());

    let cuda = link_cuda(&lib_dir);
    if cuda {
        println!("cargo:rustc-link-arg=-Wl,--push-state,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-ltorch");
        println!("cargo:rustc-link-arg=-Wl,--pop-state");
    }
    // Lets tests check that libtorch's CUDA library really loads, even on a machine without a GPU.
    println!("cargo:rustc-env=CVRL_TORCH_CUDA_LINKED={}", u8::from(cuda));
}

/// Whether to force libtorch_cuda.so into DT_NEEDED (see the file comment).
fn link_cuda(lib_dir: &Path) -> bool {
    match env::var("CVRL_LINK_TORCH_CUDA").as_deref() {
        Ok("1") => return true,
        Ok("0") => return false,
        _ => {}
    }
    let cuda_lib = lib_dir.join("libtorch_cuda.so");
    if !cuda_lib.exists() || !lib_dir.join("libtorch.so").exists() {
        return false; // a CPU-only libtorch: nothing to keep
    }
    // ldd resolves the way the loader will (the library's rpaths, ld.so.cache, system dirs).
    match Command::new("ldd").arg(&cuda_lib).output() {
        Ok(out) if out.status.success() => {
            let stdout = String::from_utf8_lossy(&out.stdout);
            let missing: Vec<&str> = stdout
                .lines()
                .filter(|l| l.contains("not found"))
                .filter_map(|l| l.split_whitespace().next())
                .collect();
            if missing.is_empty() {
                true
            } else {
                println!(
                    "cargo:warning=libtorch_cuda.so not linked (CUDA off): it needs {} which are \
                     not installed (lean torch install?); set CVRL_LINK_TORCH_CUDA=1 to force",
                    missing.join(", ")
                );
                false
            }
        }
        _ => {
            println!(
                "cargo:warning=could not run ldd on {}; libtorch_cuda.so not linked (CUDA off); \
                 set CVRL_LINK_TORCH_CUDA=1 to force",
                cuda_lib.display()
            );
            false
        }
    }
}
