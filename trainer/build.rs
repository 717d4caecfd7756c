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
//!
//! It also compiles `csrc/c10d_shim.cpp`, the C ABI over PyTorch's distributed engine that
//! `src/dist/ffi.rs` declares, against the wheel's headers. Gloo's own headers are not in the
//! wheel: they come from Debian's `libgloo-dev` (`scripts/setup.sh`), or from the directory
//! `CVRL_GLOO_INCLUDE` names. The NCCL backend is compiled in only when libtorch_cuda.so is
//! linked (above) and the CUDA headers it needs are in the venv (`nvidia/nccl/include`,
//! `nvidia/cu13/include` with the `nvidia-cuda-crt` and `nvidia-cuda-cccl` wheels);
//! `CVRL_C10D_NCCL=0` leaves it out.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=CVRL_LINK_TORCH_CUDA");
    println!("cargo:rerun-if-env-changed=CVRL_GLOO_INCLUDE");
    println!("cargo:rerun-if-env-changed=CVRL_C10D_NCCL");
    println!("cargo:rerun-if-changed=csrc/c10d_shim.cpp");

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

    let nccl = cuda.then(|| nccl_includes(&lib_dir)).flatten();
    compile_c10d_shim(&lib_dir, nccl.as_deref());
}

/// Compiles `csrc/c10d_shim.cpp` with the flags libtorch itself was built with (C++17, the
/// CXX11 ABI) and links it into this crate; `nccl` holds the extra include directories of the
/// NCCL backend, `None` compiles it out.
fn compile_c10d_shim(lib_dir: &Path, nccl: Option<&[PathBuf]>) {
    let torch_root = lib_dir.parent().unwrap_or(lib_dir);
    let gloo = gloo_include();
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .pic(true)
        .std("c++17")
        .warnings(false)
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .define("USE_C10D_GLOO", None)
        .define("GLOG_USE_GLOG_EXPORT", None)
        .include(torch_root.join("include"))
        .include(torch_root.join("include/torch/csrc/api/include"))
        .file("csrc/c10d_shim.cpp");
    if let Some(dir) = gloo {
        build.include(dir);
    }
    if let Some(dirs) = nccl {
        build.define("USE_C10D_NCCL", None).includes(dirs);
    }
    build.compile("cvrl_c10d");
}

/// Where `gloo/algorithm.h` is: `CVRL_GLOO_INCLUDE`, else the system include path (`None`).
/// Stops the build with the fix in the message when neither has it.
fn gloo_include() -> Option<PathBuf> {
    if let Some(dir) = env::var_os("CVRL_GLOO_INCLUDE").map(PathBuf::from) {
        if !dir.join("gloo/algorithm.h").is_file() {
            panic!("CVRL_GLOO_INCLUDE={} has no gloo/algorithm.h", dir.display());
        }
        return Some(dir);
    }
    if !Path::new("/usr/include/gloo/algorithm.h").is_file() {
        panic!(
            "gloo headers not found (/usr/include/gloo/algorithm.h): the c10d shim needs them. \
             Install Debian's libgloo-dev (scripts/setup.sh does) or set CVRL_GLOO_INCLUDE"
        );
    }
    None
}

/// The include directories the NCCL backend's headers need, from the pip wheels beside torch
/// (`site-packages/nvidia/...`), or `None` (with a warning) when one is missing or
/// `CVRL_C10D_NCCL=0`.
fn nccl_includes(lib_dir: &Path) -> Option<Vec<PathBuf>> {
    if env::var("CVRL_C10D_NCCL").as_deref() == Ok("0") {
        return None;
    }
    let nvidia = lib_dir.parent()?.parent()?.join("nvidia");
    let nccl = nvidia.join("nccl/include");
    // The CUDA 13 wheels share one include tree; its compiler-internal headers (crt/) and
    // libcu++ (cccl/) come from nvidia-cuda-crt and nvidia-cuda-cccl.
    let cuda = nvidia.join("cu13/include");
    let cccl = cuda.join("cccl");
    let needed = [
        nccl.join("nccl.h"),
        cuda.join("cuda_runtime_api.h"),
        cuda.join("crt/host_config.h"),
        cccl.join("nv/target"),
    ];
    if let Some(missing) = needed.iter().find(|f| !f.exists()) {
        println!(
            "cargo:warning=c10d shim built without NCCL: {} is missing (scripts/setup.sh \
             installs the header wheels); CUDA tensors cannot use a process group",
            missing.display()
        );
        return None;
    }
    Some(vec![nccl, cuda, cccl])
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
