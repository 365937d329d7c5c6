//! Grace (`match_grace`): for that many seconds after a reservation expires, a late call
//! to its number still matches it, and the reservation is not reclaimed (the
//! configuration keeps the window within the cool-off, so the number is not lent again
//! meanwhile either).

use crate::api::{Imports, Policy};
use crate::records::Reservation;

/// A group's grace window for late calls: the policy's entry point.
#[derive(Debug, Clone, Copy)]
pub struct Grace {
    /// The window, in milliseconds.
    ms: u64,
}

impl Grace {
    /// The grace window of a group with `policy`.
    pub fn of(policy: &Policy) -> Grace {
        Grace {
            ms: u64::from(policy.match_grace) * 1000,
        }
    }

    /// The grace window of the group called `group`, as configured now.
    pub fn of_group<I: Imports>(imports: &mut I, group: &str) -> Grace {
        Grace::of(&imports.policy(group))
    }

    /// When the window of a reservation expiring at `expires_at` is over: a call from
    /// then on no longer matches it, and it may be reclaimed.
    pub fn over_at(&self, expires_at: u64) -> u64 {
        expires_at.saturating_add(self.ms)
    }

    /// The latest expiry whose window is over by `now`, as far as the clock goes back:
    /// reclaiming looks at the reservations expired by then.
    pub fn expired_by(&self, now: u64) -> u64 {
        now.saturating_sub(self.ms)
    }

    /// Whether a call at `now` to `res`'s number still matches it: it has not expired, or
    /// its group's grace window for late calls is not over. The group's policy is asked
    /// only for an expired reservation.
    pub fn matches<I: Imports>(imports: &mut I, res: &Reservation, now: u64) -> bool {
        res.expires_at > now || Grace::of_group(imports, &res.group).over_at(res.expires_at) > now
    }
}
