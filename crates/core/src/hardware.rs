//! The hardware fingerprint recorded in every manifest.

use serde::{Deserialize, Serialize};
use sysinfo::System;

/// The machine a run ran on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Hardware {
    /// CPU brand string.
    pub cpu_model: String,
    /// Physical cores, if the OS tells.
    pub cpu_cores_physical: Option<usize>,
    /// Logical CPUs.
    pub cpu_threads: usize,
    /// SIMD features this CPU has that matter to inference kernels.
    pub cpu_features: Vec<String>,
    /// Total RAM.
    pub ram_total_bytes: u64,
    /// RAM available when the run started.
    pub ram_available_bytes: u64,
    /// OS name and version.
    pub os: String,
    /// Kernel version.
    pub kernel: String,
    /// Architecture (`x86_64`, `aarch64`).
    pub arch: String,
    /// GPU, when the run used one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<String>,
}

impl Hardware {
    /// Reads the fingerprint of this machine.
    pub fn detect() -> Self {
        // sysinfo reports failures per query; a field it cannot read stays empty.
        let (cpu_model, ram_total_bytes, ram_available_bytes) = match System::new() {
            Ok(mut sys) => {
                sys.refresh_memory();
                sys.refresh_cpu_all();
                let model = sys
                    .cpus()
                    .first()
                    .map(|c| c.brand().trim().to_string())
                    .unwrap_or_default();
                (model, sys.total_memory(), sys.available_memory())
            }
            Err(_) => (String::new(), 0, 0),
        };
        Hardware {
            cpu_model,
            cpu_cores_physical: System::physical_core_count().ok(),
            cpu_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_features: cpu_features(),
            ram_total_bytes,
            ram_available_bytes,
            os: System::long_os_version().unwrap_or_default(),
            kernel: System::kernel_version().unwrap_or_default(),
            arch: std::env::consts::ARCH.to_string(),
            gpu: None,
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn cpu_features() -> Vec<String> {
    let mut out = Vec::new();
    macro_rules! probe {
        ($($f:tt),*) => {$(
            if std::arch::is_x86_feature_detected!($f) { out.push($f.to_string()); }
        )*};
    }
    probe!(
        "sse4.2",
        "avx",
        "avx2",
        "fma",
        "f16c",
        "bmi2",
        "avx512f",
        "avx512bw",
        "avx512vnni",
        "avx512bf16"
    );
    out
}

#[cfg(not(target_arch = "x86_64"))]
fn cpu_features() -> Vec<String> {
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_this_machine() {
        let hw = Hardware::detect();
        assert!(hw.cpu_threads >= 1);
        assert!(hw.ram_total_bytes > 0);
        assert_eq!(hw.arch, std::env::consts::ARCH);
    }
}
