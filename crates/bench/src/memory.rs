//! Memory accounting: the process's resident memory sampled on a background thread while a
//! test runs (and the kernel's own high-water mark where Linux keeps one), the memory a model
//! will need before it is loaded, and GPU memory through NVML (feature `nvml`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

/// Resident set size of this process now, bytes (sysinfo).
pub fn current_rss() -> Option<u64> {
    let pid = Pid::from_u32(std::process::id());
    let mut system = System::new().ok()?;
    system.refresh_processes_specifics(
        ProcessesToUpdate::Some(&[pid]),
        true,
        ProcessRefreshKind::nothing().with_memory(),
    );
    system.process(pid).map(|p| p.memory())
}

/// The kernel's peak resident set size of this process (`VmHWM`), bytes; Linux only.
pub fn kernel_peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Resets the kernel's peak RSS to the current RSS (Linux ≥ 4.0: `/proc/self/clear_refs`);
/// returns whether it could.
pub fn reset_kernel_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Memory the system can give a new allocation now, bytes (sysinfo's "available").
pub fn available_memory() -> Option<u64> {
    let mut system = System::new().ok()?;
    system.refresh_memory();
    Some(system.available_memory())
}

/// Samples this process's RSS every `interval` on a background thread and keeps the maximum.
#[derive(Debug)]
pub struct RssSampler {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RssSampler {
    /// Starts sampling.
    pub fn start(interval: Duration) -> Self {
        let peak = Arc::new(AtomicU64::new(current_rss().unwrap_or(0)));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (peak, stop) = (Arc::clone(&peak), Arc::clone(&stop));
            std::thread::spawn(move || {
                let pid = Pid::from_u32(std::process::id());
                let Ok(mut system) = System::new() else {
                    return;
                };
                while !stop.load(Ordering::Relaxed) {
                    system.refresh_processes_specifics(
                        ProcessesToUpdate::Some(&[pid]),
                        true,
                        ProcessRefreshKind::nothing().with_memory(),
                    );
                    if let Some(p) = system.process(pid) {
                        peak.fetch_max(p.memory(), Ordering::Relaxed);
                    }
                    std::thread::park_timeout(interval);
                }
            })
        };
        RssSampler {
            peak,
            stop,
            thread: Some(thread),
        }
    }

    /// The largest RSS sampled since the start or the last [`RssSampler::restart`], bytes.
    pub fn peak(&self) -> u64 {
        let now = current_rss().unwrap_or(0);
        self.peak.fetch_max(now, Ordering::Relaxed).max(now)
    }

    /// Starts a new maximum from the current RSS.
    pub fn restart(&self) {
        self.peak
            .store(current_rss().unwrap_or(0), Ordering::Relaxed);
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

/// Bytes of GPU memory in use on device 0 (NVML), when built with `nvml` and a driver exists.
pub fn gpu_memory_used() -> Option<u64> {
    #[cfg(feature = "nvml")]
    {
        let nvml = nvml_wrapper::Nvml::init().ok()?;
        let device = nvml.device_by_index(0).ok()?;
        device.memory_info().ok().map(|m| m.used)
    }
    #[cfg(not(feature = "nvml"))]
    {
        None
    }
}

/// What a model will need resident, estimated before loading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryEstimate {
    /// Weight bytes (tensor data in the file).
    pub weights: u64,
    /// KV-cache bytes for the largest context of the plan (F16 keys and values, every layer
    /// at full context: an upper bound for sliding-window layers).
    pub kv_cache: u64,
}

impl MemoryEstimate {
    /// Weights plus KV cache.
    pub fn total(&self) -> u64 {
        self.weights + self.kv_cache
    }

    /// Refuses when the estimate exceeds `available` bytes, with the figures.
    pub fn check_fits(&self, available: u64, what: &str) -> Result<(), String> {
        if self.total() > available {
            return Err(format!(
                "{what}: needs about {} (weights {} + KV cache {}), only {} is available; use a smaller model, quantization or context",
                human_bytes(self.total()),
                human_bytes(self.weights),
                human_bytes(self.kv_cache),
                human_bytes(available)
            ));
        }
        Ok(())
    }
}

/// Bytes with a binary unit (`97.5 MiB`).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampler_sees_a_large_allocation_that_is_gone_at_the_end() {
        let sampler = RssSampler::start(Duration::from_millis(2));
        let before = current_rss().expect("rss");
        {
            // Touch 64 MiB so it becomes resident, hold it while the sampler looks, free it.
            let block = vec![1u8; 64 << 20];
            std::thread::sleep(Duration::from_millis(50));
            assert_eq!(std::hint::black_box(&block)[12345], 1);
        }
        let peak = sampler.peak();
        assert!(
            peak >= before + (48 << 20),
            "peak {peak} should exceed {before} by most of 64 MiB"
        );
    }

    #[test]
    fn estimates_refuse_with_figures() {
        let e = MemoryEstimate {
            weights: 3 << 30,
            kv_cache: 1 << 30,
        };
        assert!(e.check_fits(5 << 30, "m.gguf").is_ok());
        let err = e.check_fits(2 << 30, "m.gguf").expect_err("too big");
        assert!(err.contains("m.gguf") && err.contains("4.0 GiB") && err.contains("2.0 GiB"));
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }

    #[test]
    fn kernel_peak_sees_a_freed_allocation_and_resets() {
        if !reset_kernel_peak_rss() {
            return; // not Linux, or no /proc/self/clear_refs
        }
        let before = kernel_peak_rss().expect("VmHWM");
        {
            let block = vec![1u8; 96 << 20];
            assert_eq!(std::hint::black_box(&block)[4321], 1);
        }
        let peak = kernel_peak_rss().expect("VmHWM");
        assert!(peak >= before + (80 << 20), "{peak} vs {before}");
        assert!(reset_kernel_peak_rss());
        let after = kernel_peak_rss().expect("VmHWM");
        assert!(after + (80 << 20) <= peak, "reset: {after} vs {peak}");
    }
}
