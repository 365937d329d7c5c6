//! Per-service request rates on the service routes (create, extend, release), as
//! number-masking services limit each account: a token bucket per `_id` (GCRA, by
//! `governor`), on this node. Over its rate a service is answered 429 with
//! `Retry-After` before any plugin or store call, so one misbehaving app cannot drain a
//! pool or crowd out the others. Each node counts its own requests: behind a balancer
//! over N nodes, a service gets up to N times the rate.

use std::sync::atomic::{AtomicU64, Ordering};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use request_access_config::RateLimit;

/// Checks between two sweeps of the services back at their full burst.
const SWEEP_EVERY: u64 = 4096;

/// One token bucket per service id.
pub struct ServiceLimiter {
    buckets: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
    checks: AtomicU64,
}

impl ServiceLimiter {
    /// Buckets of `limit` (a rate of 0 or a burst of 0 count as 1).
    pub fn new(limit: RateLimit) -> ServiceLimiter {
        let per_minute =
            std::num::NonZeroU32::new(limit.per_minute).unwrap_or(std::num::NonZeroU32::MIN);
        let burst = std::num::NonZeroU32::new(limit.burst).unwrap_or(std::num::NonZeroU32::MIN);
        ServiceLimiter {
            buckets: RateLimiter::keyed(Quota::per_minute(per_minute).allow_burst(burst)),
            clock: DefaultClock::default(),
            checks: AtomicU64::new(0),
        }
    }

    /// Take one request of `service_id`'s: `Err` with the whole seconds until it may
    /// ask again (rounded up, at least 1) when it is over its rate.
    pub fn check(&self, service_id: &str) -> Result<(), u32> {
        // Services whose bucket is full again weigh nothing: dropped now and then, so
        // ids that come and go do not pile up.
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.buckets.retain_recent();
        }
        self.buckets
            .check_key(&service_id.to_string())
            .map_err(|not_until| {
                let wait = not_until.wait_time_from(self.clock.now());
                let seconds = wait.as_millis().div_ceil(1000).max(1);
                u32::try_from(seconds).unwrap_or(u32::MAX)
            })
    }

    /// Services tracked now (those not back at their full burst, and some that are).
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_gets_its_burst_then_waits_and_others_are_unaffected() {
        let limiter = ServiceLimiter::new(RateLimit {
            per_minute: 60,
            burst: 3,
        });
        for _ in 0..3 {
            assert_eq!(limiter.check("app"), Ok(()));
        }
        // One a second sustained: the next in about a second.
        assert_eq!(limiter.check("app"), Err(1));
        assert_eq!(limiter.check("other"), Ok(()));
    }

    #[test]
    fn a_slow_rate_says_how_long_to_wait() {
        let limiter = ServiceLimiter::new(RateLimit {
            per_minute: 1,
            burst: 1,
        });
        assert_eq!(limiter.check("app"), Ok(()));
        let wait = limiter.check("app").unwrap_err();
        assert!((59..=60).contains(&wait), "{wait}");
    }
}
