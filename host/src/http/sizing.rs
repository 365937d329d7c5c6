//! Pool sizing by Erlang B, as call centres size trunk groups: from this node's measured
//! demand on a group, the probability that a create finds the pool exhausted, and the
//! numbers the pool needs to keep that below a target.
//!
//! A number is a server: a create takes one for its lease, and it stays unusable for the
//! rest after it (`reuse_cooldown`; the grace window for late calls runs inside it), so
//! the holding time is h = mean lease + max(cool-off, grace). Offered traffic is
//! A = lambda x h Erlangs, lambda being the creates asking the group per second (lent or
//! refused as exhausted). With c servers (numbers x reservations per number), blocked
//! creates refused rather than queued, Erlang B gives the blocking probability:
//!
//! B(0, A) = 1,  B(n, A) = A B(n-1, A) / (n + A B(n-1, A)).
//!
//! It assumes creates arrive independently (Poisson) and holds whatever the lease's
//! distribution. A create replacing the service's own reservation is counted as demand
//! too (it asks for a number): the estimate errs on the side of more numbers. Each node
//! measures its own creates: behind a balancer, the cluster's demand is the sum.

use serde::Serialize;

use super::history::{POINT_SECONDS, Point};

/// The longest stretch of history the demand is measured over.
pub const WINDOW_SECONDS: u64 = 15 * 60;
/// The shortest: below it, a rate says too little.
pub const MIN_WINDOW_SECONDS: u64 = 60;
/// The most servers [`servers_for`] counts up to: beyond, a pool is not sized here.
const MAX_SERVERS: u64 = 10_000_000;

/// Erlang B: the share of creates that find all `servers` busy under `erlangs` of
/// offered traffic.
pub fn erlang_b(servers: u64, erlangs: f64) -> f64 {
    if erlangs <= 0.0 {
        return if servers == 0 { 1.0 } else { 0.0 };
    }
    // The recurrence stays within 0..=1, so it cannot overflow as the factorial form does.
    (1..=servers).fold(1.0, |b, n| erlangs * b / (n as f64 + erlangs * b))
}

/// The fewest servers whose blocking under `erlangs` is at most `target`, if within
/// [`MAX_SERVERS`].
pub fn servers_for(target: f64, erlangs: f64) -> Option<u64> {
    if erlangs <= 0.0 {
        // No demand: no number is needed.
        return Some(0);
    }
    let mut b = 1.0;
    for n in 0..=MAX_SERVERS {
        if n > 0 {
            b = erlangs * b / (n as f64 + erlangs * b);
        }
        if b <= target {
            return Some(n);
        }
    }
    None
}

/// A group's sizing on this node, as `/admin/pools`, the metrics and the page show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sizing {
    /// Seconds of history the demand was measured over.
    pub window_seconds: u64,
    /// Creates asking the group per minute (lent or refused as exhausted).
    pub offered_per_minute: f64,
    /// Seconds a number is kept from other services per create: lease plus rest.
    pub holding_seconds: f64,
    /// Offered traffic, lambda x h.
    pub offered_erlangs: f64,
    /// Erlang B's blocking probability with the pool as it is.
    pub blocking: f64,
    /// The blocking probability aimed at.
    pub target: f64,
    /// Numbers the pool needs for `target` (at its reservations per number), if countable.
    pub numbers_needed: Option<u64>,
}

/// What a group's configuration says of its numbers.
#[derive(Debug, Clone, Copy)]
pub struct Pool {
    /// Numbers in the pool.
    pub size: u32,
    /// Reservations each number carries at once.
    pub seats: u32,
    /// Seconds a number rests after a reservation (max of cool-off and grace).
    pub rest_seconds: u32,
    /// The lease when none was measured: the group's timeout, or the global one.
    pub default_lease: u32,
}

/// Size `pool` from its `points` of history before `now_ms`, for `target`; `None` until
/// the node has [`MIN_WINDOW_SECONDS`] of history of the group.
pub fn size(points: &[Point], pool: Pool, target: f64, now_ms: u64) -> Option<Sizing> {
    let now = now_ms / 1000;
    let since = now.saturating_sub(WINDOW_SECONDS);
    let recent: Vec<&Point> = points.iter().filter(|p| p.at >= since).collect();
    let first = recent.first()?.at;
    let window_seconds = (now - first.min(now)).max(POINT_SECONDS);
    if window_seconds < MIN_WINDOW_SECONDS {
        return None;
    }
    let (lent, refused, lease_sum) = recent.iter().fold((0u64, 0u64, 0u64), |(l, r, s), p| {
        (
            l + u64::from(p.lent),
            r + u64::from(p.exhausted),
            s + u64::from(p.lease_seconds),
        )
    });
    let per_second = (lent + refused) as f64 / window_seconds as f64;
    let lease = match lent {
        0 => f64::from(pool.default_lease),
        n => lease_sum as f64 / n as f64,
    };
    let holding_seconds = lease + f64::from(pool.rest_seconds);
    let erlangs = per_second * holding_seconds;
    let seats = u64::from(pool.seats.max(1));
    let servers = u64::from(pool.size) * seats;
    Some(Sizing {
        window_seconds,
        offered_per_minute: per_second * 60.0,
        holding_seconds,
        offered_erlangs: erlangs,
        blocking: erlang_b(servers, erlangs),
        target,
        numbers_needed: servers_for(target, erlangs).map(|c| c.div_ceil(seats)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erlang_b_matches_the_published_tables() {
        // Traffic tables: 10 servers at 5 Erlangs block 1.84%; 1 server at 1 Erlang 50%.
        assert!((erlang_b(10, 5.0) - 0.018_385).abs() < 1e-5);
        assert!((erlang_b(1, 1.0) - 0.5).abs() < 1e-12);
        assert_eq!(erlang_b(0, 3.0), 1.0);
        assert_eq!(erlang_b(5, 0.0), 0.0);
        // 0.1% at 10 Erlangs takes 21 servers (B(20) = 0.0018, B(21) = 0.0009).
        assert_eq!(servers_for(0.001, 10.0), Some(21));
        assert_eq!(servers_for(0.01, 0.0), Some(0));
        // Large pools stay exact enough: 1000 Erlangs at 1% need about 1029 servers.
        let needed = servers_for(0.01, 1000.0).unwrap();
        assert!((1020..=1040).contains(&needed), "{needed}");
    }

    fn point(at: u64, lent: u32, exhausted: u32, lease_seconds: u32) -> Point {
        Point {
            at,
            utilisation: None,
            exhausted,
            lent,
            lease_seconds,
        }
    }

    const POOL: Pool = Pool {
        size: 10,
        seats: 1,
        rest_seconds: 30,
        default_lease: 60,
    };

    #[test]
    fn demand_is_the_creates_lent_and_refused_over_the_window() {
        // Ten minutes of 6 creates a minute (one per ten-second point), leases of 90 s.
        let points: Vec<Point> = (0..60).map(|i| point(1000 + i * 10, 1, 0, 90)).collect();
        let now_ms = (1000 + 600) * 1000;
        let sizing = size(&points, POOL, 0.001, now_ms).unwrap();
        assert_eq!(sizing.window_seconds, 600);
        assert!((sizing.offered_per_minute - 6.0).abs() < 1e-9);
        // Held 90 s of lease and 30 s of rest: 0.1 per second x 120 s = 12 Erlangs.
        assert!((sizing.holding_seconds - 120.0).abs() < 1e-9);
        assert!((sizing.offered_erlangs - 12.0).abs() < 1e-9);
        assert!((sizing.blocking - erlang_b(10, 12.0)).abs() < 1e-12);
        assert_eq!(sizing.numbers_needed, servers_for(0.001, 12.0));
        // Refusals are demand too; with no lend measured, the lease is the group's.
        let refused: Vec<Point> = (0..60).map(|i| point(1000 + i * 10, 0, 1, 0)).collect();
        let sizing = size(&refused, POOL, 0.001, now_ms).unwrap();
        assert!((sizing.holding_seconds - 90.0).abs() < 1e-9);
    }

    #[test]
    fn shared_numbers_count_their_seats_and_a_young_history_sizes_nothing() {
        let points: Vec<Point> = (0..60).map(|i| point(1000 + i * 10, 1, 0, 90)).collect();
        let now_ms = (1000 + 600) * 1000;
        let shared = Pool { seats: 4, ..POOL };
        let sizing = size(&points, shared, 0.001, now_ms).unwrap();
        assert!((sizing.blocking - erlang_b(40, 12.0)).abs() < 1e-12);
        assert_eq!(
            sizing.numbers_needed,
            servers_for(0.001, 12.0).map(|c| c.div_ceil(4))
        );
        assert_eq!(size(&points[..3], POOL, 0.001, 1030 * 1000), None);
        assert_eq!(size(&[], POOL, 0.001, now_ms), None);
    }
}
