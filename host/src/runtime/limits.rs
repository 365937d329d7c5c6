//! What one call may use: the memory cap (with the peak it reached) and the deadline
//! on the guest's own time, enforced by epoch interruption.

use std::time::{Duration, Instant};

use wasmtime::{ResourceLimiter, StoreLimits};

/// How often the epoch advances: the granularity of the call deadline.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(5);

/// The memory cap, and the most linear memory the instance has asked for.
pub(super) struct GuestMemory {
    pub(super) limits: StoreLimits,
    pub(super) peak_bytes: usize,
}

impl ResourceLimiter for GuestMemory {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if allowed {
            self.peak_bytes = self.peak_bytes.max(desired);
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

/// Where the time of the current call goes. The deadline bounds the guest's own time:
/// time blocked in the host (a contended store, a slow registry) does not count, or a
/// busy store would turn into plugin faults after its commits had landed.
#[derive(Debug, Clone, Copy)]
pub(super) struct CallTime {
    started: Instant,
    pub(super) in_host: Duration,
    deadline: Duration,
    /// Whether the state store failed to answer during this call.
    pub(super) store_unavailable: bool,
    /// Commits of this call refused by a precondition so far.
    pub(super) conflicts: u32,
    /// Whether the call's last store call was a commit refused by a precondition: a
    /// plugin that gives up then gives up on contention, which passes.
    pub(super) ended_in_conflict: bool,
}

impl CallTime {
    pub(super) fn start(deadline: Duration) -> Self {
        CallTime {
            started: Instant::now(),
            in_host: Duration::ZERO,
            deadline,
            store_unavailable: false,
            conflicts: 0,
            ended_in_conflict: false,
        }
    }

    /// The guest's time left, or `None` once it has run past the deadline.
    pub(super) fn guest_time_left(&self) -> Option<Duration> {
        let in_guest = self.started.elapsed().saturating_sub(self.in_host);
        self.deadline.checked_sub(in_guest).filter(|d| !d.is_zero())
    }
}

/// `duration` in epoch ticks, one more than it holds whole: a deadline is never cut
/// short by the tick.
pub(super) fn ticks(duration: Duration) -> u64 {
    (duration.as_micros() / EPOCH_TICK.as_micros()) as u64 + 1
}
