//! How much this test process's resident memory grows while something runs: a thread samples
//! `VmRSS` of `/proc/self/status` every millisecond. The server runs in this process
//! ([`super::TestServer`]), so what it holds shows here. The tests that use it live in the
//! `isolated` test binary and take turns ([`alone`]), so no other test's allocations count.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

/// Samples the process's resident memory from its start to [`MemoryWatch::growth`].
pub(crate) struct MemoryWatch {
    before: u64,
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    sampler: JoinHandle<()>,
}

/// A memory figure of this process in KiB: `VmRSS` (resident now) or `VmHWM` (the peak).
pub(crate) fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect(field)
}

/// The process's resident memory now, in bytes.
fn resident() -> u64 {
    status_kib("VmRSS") * 1024
}

impl MemoryWatch {
    /// Starts sampling.
    pub(crate) fn start() -> MemoryWatch {
        let before = resident();
        let (peak, stop) = (
            Arc::new(AtomicU64::new(before)),
            Arc::new(AtomicBool::new(false)),
        );
        let sampler = std::thread::spawn({
            let (peak, stop) = (peak.clone(), stop.clone());
            move || {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(resident(), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        });
        MemoryWatch {
            before,
            peak,
            stop,
            sampler,
        }
    }

    /// Stops sampling: the most the resident memory grew above where it was at the start, in
    /// MiB.
    pub(crate) fn growth_mib(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.sampler.join().expect("sampler");
        let peak = self.peak.load(Ordering::Relaxed).max(resident());
        peak.saturating_sub(self.before) / (1024 * 1024)
    }
}

/// Taken for the whole of each test of the `isolated` binary: they run one at a time, so no
/// other test's allocations or work show as the server's growth or delay.
static ALONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// [`ALONE`], from an async test.
pub(crate) async fn alone() -> tokio::sync::MutexGuard<'static, ()> {
    ALONE.lock().await
}

/// [`ALONE`], from a test that runs its own runtimes.
pub(crate) fn alone_blocking() -> tokio::sync::MutexGuard<'static, ()> {
    ALONE.blocking_lock()
}
