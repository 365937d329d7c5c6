//! `[limits]`: what each plugin call may use.

use std::time::Duration;

/// Limits on the guest, with safe defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Most linear memory one instance may grow to.
    pub memory_bytes: usize,
    /// Longest one call may run before it is interrupted.
    pub call_deadline: Duration,
    /// Warm instances kept between calls. The HTTP service runs one call per request in
    /// flight, and a durable commit holds its instance until the fsync, so this should
    /// cover the concurrent requests expected: past it, calls pay for a fresh instance
    /// (about 3.5x a warm call). Each costs about 1.3 MiB of linear memory.
    pub max_idle_instances: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 32 << 20,
            call_deadline: Duration::from_millis(500),
            max_idle_instances: 64,
        }
    }
}
