//! Picking the device to train on, and a one-line description of it for logs.
//!
//! `tch` exposes no GPU name, so a CUDA device is described by its index, the number of
//! visible devices and the CUDA runtime and cuDNN versions libtorch was built with.
//!
//! ```
//! let device = cvrl_trainer::device::default_device();
//! println!("training on {}", cvrl_trainer::device::describe(device));
//! ```

use tch::{Cuda, Device};

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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn cpu_description_counts_threads() {
        let text = describe(Device::Cpu);
        let threads: i32 = text
            .strip_prefix("cpu (")
            .and_then(|s| s.strip_suffix(" threads)"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected description {text:?}"));
        assert!(threads >= 1, "{text}");
    }
}
