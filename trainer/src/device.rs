//! Picking the device to train on ([`DeviceChoice`], `--device`), a one-line description of it for logs, CUDA autocast
//! control (bf16, scoped on/off) without tch's deprecated calls, shared by the training
//! step and the fp32 loss, and the host allocator setting that spares a CPU step its page
//! faults ([`keep_freed_host_memory`]).
//!
//! `tch` exposes no GPU name, so a CUDA device is described by its index, the number of
//! visible devices and the CUDA runtime and cuDNN versions libtorch was built with.
//!
//! ```
//! let device = cvrl_trainer::device::default_device();
//! println!("training on {}", cvrl_trainer::device::describe(device));
//! ```

use std::fmt;
use std::str::FromStr;

use tch::{Cuda, Device};

/// Where to train or evaluate (`--device`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// The first CUDA device if libtorch sees one, else the CPU.
    #[default]
    Auto,
    Cpu,
    /// `cuda` (device 0) or `cuda:N`.
    Cuda(usize),
}

impl FromStr for DeviceChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|i| i.parse().ok())
                .map(DeviceChoice::Cuda)
                .ok_or_else(|| format!("{other:?}: expected auto, cpu, cuda or cuda:N")),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Auto => f.write_str("auto"),
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

/// `--device` asked for a CUDA device that libtorch does not see.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("--device {0} asked for CUDA, but libtorch sees no CUDA device (see cvrl_trainer::device)")]
pub struct NoCuda(pub DeviceChoice);

/// Resolves `--device`.
pub fn pick_device(choice: DeviceChoice) -> Result<Device, NoCuda> {
    match choice {
        DeviceChoice::Auto => Ok(default_device()),
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Cuda(i) if Cuda::is_available() && i < Cuda::device_count() as usize => {
            Ok(Device::Cuda(i))
        }
        DeviceChoice::Cuda(_) => Err(NoCuda(choice)),
    }
}

/// The first CUDA device when libtorch sees one, else the CPU.
///
/// A false answer on a GPU machine usually means libtorch_cuda.so was not linked (see the
/// crate's `build.rs`) or the machine's driver is not visible.
pub fn default_device() -> Device {
    if Cuda::is_available() {
        Device::Cuda(0)
    } else {
        Device::Cpu
    }
}

/// One line for logs, e.g. `cuda:0 (1 of 1 CUDA devices, CUDA runtime 13.0, cuDNN 9.19.0)`
/// or `cpu (16 threads)`.
pub fn describe(device: Device) -> String {
    match device {
        Device::Cpu => format!("cpu ({} threads)", tch::get_num_threads()),
        Device::Cuda(index) => {
            let count = Cuda::device_count();
            if count == 0 {
                // Asking libtorch for CUDA versions without its CUDA library loaded panics.
                return format!("cuda:{index} (no CUDA device visible)");
            }
            let cudnn = if Cuda::cudnn_is_available() {
                format_cudnn_version(tch::utils::version_cudnn())
            } else {
                "unavailable".to_owned()
            };
            format!(
                "cuda:{index} ({} of {count} CUDA devices, CUDA runtime {}, cuDNN {cudnn})",
                index + 1,
                format_cudart_version(tch::utils::version_cudart()),
            )
        }
        Device::Mps => "mps".to_owned(),
        Device::Vulkan => "vulkan".to_owned(),
    }
}

/// `CUDART_VERSION` is `1000 * major + 10 * minor`: 13000 is 13.0, 12080 is 12.8.
fn format_cudart_version(v: i64) -> String {
    format!("{}.{}", v / 1000, (v % 1000) / 10)
}

/// `CUDNN_VERSION` is `10000 * major + 100 * minor + patch` from cuDNN 9 on (91900 is 9.19.0)
/// and `1000 * major + 100 * minor + patch` before (8902 is 8.9.2).
fn format_cudnn_version(v: i64) -> String {
    let (major, rest) = if v >= 90000 { (v / 10000, v % 10000) } else { (v / 1000, v % 1000) };
    format!("{major}.{}.{}", rest / 100, rest % 100)
}

/// Makes glibc's allocator keep freed memory of up to 32 MiB a block for reuse, rather than
/// hand it back to the kernel; true if glibc took both settings, false elsewhere.
///
/// libtorch's CPU tensors come from `malloc` and go back at every free. glibc serves blocks
/// above its (adaptive) mmap threshold with fresh `mmap`s and trims the heap's free top, so
/// every training step page-faults its activations in again as zeroed pages: about 55 MB a
/// step for the `SIZE=cpu` model, 7-10 % of its CPU time in the kernel (EXPERIMENTS.md,
/// "Cheaper CPU steps"; BENCHMARKS.md).
/// With a fixed 32 MiB threshold (glibc's largest) and no trimming, the second step reuses
/// the first one's memory. The process keeps its peak footprint, which a training run
/// reaches at every step anyway. Blocks over 32 MiB are still mapped afresh.
pub fn keep_freed_host_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use libc::{mallopt, M_MMAP_THRESHOLD, M_TRIM_THRESHOLD};
        // glibc's mallopt returns 1 on success.
        // SAFETY: each call sets one global of the allocator; no pointer passes, and both
        // values are in range (the trim threshold is any int; 32 MiB is glibc's largest mmap
        // threshold on 64-bit).
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1 && mallopt(M_TRIM_THRESHOLD, i32::MAX) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// libtorch's CUDA autocast settings, called by their C++ names: tch 0.24 cannot choose
/// the autocast type, and its `tch::autocast` goes through `at::autocast::set_enabled` /
/// `is_enabled`, deprecated in libtorch 2.x, which print a deprecation warning at every call
/// (several lines per training step). All four are exported by libtorch_cpu (2.4 and
/// later). `c10::DeviceType` and `c10::ScalarType` are `int8_t` enums, which the C calling
/// convention passes like `i8`; C++ `bool` is Rust's `bool`.
mod ffi {
    /// `c10::DeviceType::CUDA`.
    pub const CUDA: i8 = 1;
    /// `c10::ScalarType::BFloat16`.
    pub const BFLOAT16: i8 = 15;
    extern "C" {
        #[link_name = "_ZN2at8autocast18set_autocast_dtypeEN3c1010DeviceTypeENS1_10ScalarTypeE"]
        pub fn set_autocast_dtype(device_type: i8, dtype: i8);
        #[link_name = "_ZN2at8autocast18get_autocast_dtypeEN3c1010DeviceTypeE"]
        pub fn get_autocast_dtype(device_type: i8) -> i8;
        #[link_name = "_ZN2at8autocast20set_autocast_enabledEN3c1010DeviceTypeEb"]
        pub fn set_autocast_enabled(device_type: i8, enabled: bool);
        #[link_name = "_ZN2at8autocast19is_autocast_enabledEN3c1010DeviceTypeE"]
        pub fn is_autocast_enabled(device_type: i8) -> bool;
    }
}

/// Makes CUDA autocast (on this thread) produce bfloat16 rather than its float16 default;
/// false if libtorch did not take the setting (it is read back).
pub fn enable_bf16_autocast() -> bool {
    // SAFETY: these only store / load the thread's autocast type for a device type; the
    // arguments are valid enum values (see `ffi`) and nothing is passed by pointer.
    unsafe {
        ffi::set_autocast_dtype(ffi::CUDA, ffi::BFLOAT16);
        ffi::get_autocast_dtype(ffi::CUDA) == ffi::BFLOAT16
    }
}

/// Whether CUDA autocast is on for this thread.
pub fn cuda_autocast_enabled() -> bool {
    // SAFETY: reads a thread-local flag; see `ffi`.
    unsafe { ffi::is_autocast_enabled(ffi::CUDA) }
}

/// Runs `f` with CUDA autocast on or off, then restores the previous setting (also if `f`
/// panics): what `tch::autocast` does, without its deprecation warnings. Leaving the
/// outermost autocast region clears the cache of cast weights, so that the next step casts
/// the updated ones. Does nothing to tensors on the CPU.
pub fn cuda_autocast<T>(enabled: bool, f: impl FnOnce() -> T) -> T {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            // SAFETY: libtorch's nesting counter and thread-local flag; see `ffi`.
            unsafe {
                if torch_sys::at_autocast_decrement_nesting() == 0 {
                    torch_sys::at_autocast_clear_cache();
                }
                ffi::set_autocast_enabled(ffi::CUDA, self.0);
            }
        }
    }
    let _restore = Restore(cuda_autocast_enabled());
    // SAFETY: as above.
    unsafe {
        ffi::set_autocast_enabled(ffi::CUDA, enabled);
        torch_sys::at_autocast_increment_nesting();
    }
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_flags_parse_and_print_back() {
        for text in ["auto", "cpu", "cuda:0", "cuda:3"] {
            assert_eq!(text.parse::<DeviceChoice>().unwrap().to_string(), text);
        }
        assert_eq!("cuda".parse::<DeviceChoice>(), Ok(DeviceChoice::Cuda(0)));
        assert!("gpu".parse::<DeviceChoice>().is_err());
        assert!("cuda:x".parse::<DeviceChoice>().is_err());
        assert_eq!(pick_device(DeviceChoice::Cpu), Ok(Device::Cpu));
        let beyond = DeviceChoice::Cuda(Cuda::device_count() as usize);
        assert_eq!(pick_device(beyond), Err(NoCuda(beyond)));
    }

    #[test]
    fn cudart_versions() {
        assert_eq!(format_cudart_version(13000), "13.0");
        assert_eq!(format_cudart_version(12080), "12.8");
        assert_eq!(format_cudart_version(11080), "11.8");
    }

    #[test]
    fn cudnn_versions() {
        assert_eq!(format_cudnn_version(91900), "9.19.0");
        assert_eq!(format_cudnn_version(90100), "9.1.0");
        assert_eq!(format_cudnn_version(8902), "8.9.2");
    }

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_takes_the_allocator_settings() {
        assert!(keep_freed_host_memory());
        // And memory still works: a block under the threshold, freed and taken again.
        let first = tch::Tensor::ones([4 << 20], (tch::Kind::Float, Device::Cpu));
        drop(first);
        let again = tch::Tensor::ones([4 << 20], (tch::Kind::Float, Device::Cpu));
        assert_eq!(f64::try_from(again.sum(tch::Kind::Double)).unwrap(), f64::from(4u32 << 20));
    }

    #[test]
    fn cpu_description_counts_threads() {
        let text = describe(Device::Cpu);
        let threads: i32 = text
            .strip_prefix("cpu (")
            .and_then(|s| s.strip_suffix(" threads)"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected description {text:?}"));
        assert!(threads >= 1, "{text}");
    }

    #[test]
    fn bf16_autocast_can_be_selected_and_regions_restore_the_setting() {
        // These are plain thread-local state in libtorch: they work without a GPU.
        assert!(enable_bf16_autocast());
        assert!(!cuda_autocast_enabled());
        let inner = cuda_autocast(true, || {
            let on = cuda_autocast_enabled();
            (on, cuda_autocast(false, cuda_autocast_enabled), cuda_autocast_enabled())
        });
        assert_eq!(inner, (true, false, true));
        assert!(!cuda_autocast_enabled());
    }
}
