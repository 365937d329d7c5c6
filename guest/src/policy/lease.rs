//! How long a reservation lasts after its create: extended on request (`lease.extend`,
//! a page's heartbeat) and, under a sliding expiry, restarted by each matched call, never
//! past the group's maximum lifetime from the create (`lease-policy.max-lifetime`).
//!
//! A reservation records its [`Lease`] (when it was made, for how long); one written
//! before leases were stored counts from its first extension. Moving an expiry moves
//! the entries that point at it: the group's expiry index, a ring's that parked the
//! number, and a shared number's lease of the seat.
//!
//! The operation is [`crate::extend()`]; a match asks [`LeaseTerms::slide`] (or
//! [`LeaseTerms::slide_seat`]) before it ends a reservation.

use crate::api::{Error, Imports, LeasePolicy};
use crate::keys;
use crate::records::{Lease, Parked, Reservation, SeatState, SharedNumber, decode};
use crate::txn::Txn;
use crate::validate::digits;

/// The terms a group's reservations are leased on (`lease-policy`): the policy's entry
/// point.
#[derive(Debug, Clone, Copy)]
pub struct LeaseTerms {
    policy: LeasePolicy,
}

impl LeaseTerms {
    /// The lease terms of the group called `group`, as configured now.
    pub fn of_group<I: Imports>(imports: &mut I, group: &str) -> LeaseTerms {
        LeaseTerms {
            policy: imports.lease_policy(group),
        }
    }

    /// Extend `res` (a live number lent whole) to last `timeout` seconds from `now`,
    /// within the terms, and store it. Answers its expiry, and whether the maximum
    /// lifetime cut the request short.
    pub fn extend<I: Imports>(
        &self,
        txn: &mut Txn<'_, I>,
        res: &mut Reservation,
        timeout: u32,
        now: u64,
    ) -> Result<(u64, bool), Error> {
        let lease = lease_or_now(res.lease, timeout, now);
        let (to, capped) = extended_expiry(&self.policy, &lease, res.expires_at, timeout, now);
        reschedule(txn, res, lease, to)?;
        Ok((to, capped))
    }

    /// [`LeaseTerms::extend`] for held seat `index` of `record`, expiring at `expires_at`
    /// (the caller stores the record).
    pub fn extend_seat<I: Imports>(
        &self,
        txn: &mut Txn<'_, I>,
        record: &mut SharedNumber,
        (index, expires_at): (usize, u64),
        timeout: u32,
        now: u64,
    ) -> Result<(u64, bool), Error> {
        let lease = lease_or_now(seat_lease(record, expires_at), timeout, now);
        let (to, capped) = extended_expiry(&self.policy, &lease, expires_at, timeout, now);
        let to = reschedule_seat(txn, record, index, lease, to)?;
        Ok((to, capped))
    }

    /// Under a sliding expiry, a matched call to `res` (a number lent whole) restarts its
    /// timeout instead of ending it: answers `true` if it did (and stored it), `false` if
    /// the group does not slide or the maximum lifetime leaves no time (the match ends
    /// it). `self` is the terms of `res`'s group.
    pub fn slide<I: Imports>(
        &self,
        txn: &mut Txn<'_, I>,
        res: &mut Reservation,
        now: u64,
    ) -> Result<bool, Error> {
        slide(txn, &self.policy, res, now)
    }

    /// [`LeaseTerms::slide`] for held seat `index` of a shared number: answers `true` if
    /// it restarted (the caller stores the record).
    pub fn slide_seat<I: Imports>(
        &self,
        txn: &mut Txn<'_, I>,
        record: &mut SharedNumber,
        index: usize,
        now: u64,
    ) -> Result<bool, Error> {
        slide_seat(txn, &self.policy, record, index, now)
    }
}

/// When a reservation made under `lease` and expiring at `expires_at` expires once
/// asked to last `timeout` seconds from `now`: never earlier than it does, never past
/// `policy`'s maximum lifetime from its create. Answers it, and whether the maximum
/// cut the request short.
fn extended_expiry(
    policy: &LeasePolicy,
    lease: &Lease,
    expires_at: u64,
    timeout: u32,
    now: u64,
) -> (u64, bool) {
    let wanted = now.saturating_add(u64::from(timeout) * 1000);
    let limit = lease
        .created_at
        .saturating_add(u64::from(policy.max_lifetime) * 1000);
    (wanted.min(limit).max(expires_at), wanted > limit)
}

/// The lease of a reservation that has none recorded (written before leases were): it
/// counts from `now`, asked for `timeout` seconds.
fn lease_or_now(lease: Option<Lease>, timeout: u32, now: u64) -> Lease {
    lease.unwrap_or(Lease {
        created_at: now,
        timeout,
    })
}

/// Move the entries pointing at `digits`'s reservation in `group` from its expiry `from`
/// to `to`: its group's expiry index, and the entry of the ring that parked the number,
/// if one did (that ring's reclaim then ends it on time).
fn move_expiry<I: Imports>(
    txn: &mut Txn<'_, I>,
    group: &str,
    digits: &str,
    (from, to): (u64, u64),
) -> Result<(), Error> {
    txn.delete(keys::expiry(group, from, digits));
    txn.put(keys::expiry(group, to, digits), Vec::new());
    let parked_key = keys::parked(digits);
    if let Some(parked) = txn
        .get(&parked_key)?
        .map(|b| decode::<Parked>(&parked_key, b))
        .transpose()?
    {
        txn.delete(keys::expiry(&parked.group, from, digits));
        txn.put(keys::expiry(&parked.group, to, digits), Vec::new());
    }
    Ok(())
}

/// Give `res` (a live number lent whole) the expiry `to`, and store it.
fn reschedule<I: Imports>(
    txn: &mut Txn<'_, I>,
    res: &mut Reservation,
    lease: Lease,
    to: u64,
) -> Result<(), Error> {
    let number_digits = digits(&res.number);
    if to != res.expires_at {
        move_expiry(txn, &res.group, &number_digits, (res.expires_at, to))?;
    }
    res.expires_at = to;
    res.lease = Some(lease);
    txn.put(keys::reservation(&number_digits), res.encode());
    Ok(())
}

/// Give held seat `index` of `record` an expiry of `to` or, if another held seat expires
/// then, the first millisecond after it that none does (each seat has its own expiry
/// key). Answers the expiry given. The caller stores the record.
fn reschedule_seat<I: Imports>(
    txn: &mut Txn<'_, I>,
    record: &mut SharedNumber,
    index: usize,
    lease: Lease,
    mut to: u64,
) -> Result<u64, Error> {
    let SeatState::Held { expires_at, .. } = record.seats[index].state else {
        return Ok(to);
    };
    if to == expires_at {
        return Ok(to);
    }
    let taken = |record: &SharedNumber, at: u64| {
        record.seats.iter().enumerate().any(|(i, seat)| {
            i != index
                && matches!(seat.state, SeatState::Held { expires_at, .. } if expires_at == at)
        })
    };
    while taken(record, to) {
        to += 1;
    }
    move_expiry(
        txn,
        &record.group,
        &digits(&record.number),
        (expires_at, to),
    )?;
    if let SeatState::Held { expires_at, .. } = &mut record.seats[index].state {
        *expires_at = to;
    }
    record.leases.retain(|(at, _)| *at != expires_at);
    record.leases.push((to, lease));
    Ok(to)
}

/// The lease recorded for the seat of `record` expiring at `expires_at`, if any.
fn seat_lease(record: &SharedNumber, expires_at: u64) -> Option<Lease> {
    record
        .leases
        .iter()
        .find(|(at, _)| *at == expires_at)
        .map(|(_, lease)| *lease)
}

/// [`LeaseTerms::slide`] under `policy`.
fn slide<I: Imports>(
    txn: &mut Txn<'_, I>,
    policy: &LeasePolicy,
    res: &mut Reservation,
    now: u64,
) -> Result<bool, Error> {
    if !policy.sliding_expiry {
        return Ok(false);
    }
    let lease = match res.lease {
        Some(lease) => lease,
        None => lease_or_now(None, restart_of(txn, &res.group), now),
    };
    let (to, _) = extended_expiry(policy, &lease, res.expires_at, lease.timeout, now);
    if to <= now {
        return Ok(false);
    }
    res.failed_attempts = 0;
    reschedule(txn, res, lease, to)?;
    Ok(true)
}

/// [`LeaseTerms::slide_seat`] under `policy`.
fn slide_seat<I: Imports>(
    txn: &mut Txn<'_, I>,
    policy: &LeasePolicy,
    record: &mut SharedNumber,
    index: usize,
    now: u64,
) -> Result<bool, Error> {
    let SeatState::Held { expires_at, .. } = record.seats[index].state else {
        return Ok(false);
    };
    if !policy.sliding_expiry {
        return Ok(false);
    }
    let lease = match seat_lease(record, expires_at) {
        Some(lease) => lease,
        None => lease_or_now(None, restart_of(txn, &record.group), now),
    };
    let (to, _) = extended_expiry(policy, &lease, expires_at, lease.timeout, now);
    if to <= now {
        return Ok(false);
    }
    reschedule_seat(txn, record, index, lease, to)?;
    Ok(true)
}

/// The timeout a reservation of `group` restarts with when it recorded none: the
/// group's, then the global one.
fn restart_of<I: Imports>(txn: &mut Txn<'_, I>, group: &str) -> u32 {
    let imports = txn.imports();
    imports
        .group(group)
        .and_then(|g| g.booking_expiration_timeout)
        .unwrap_or_else(|| imports.options().booking_expiration_timeout)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;
    use crate::api::{
        AccessInfo, CreateRequest, ExtendRequest, Extended, MatchRequest, Matched, Policy, Strategy,
    };
    use crate::testing::{Fake, group};
    use crate::{create, extend, match_access, pool_status, release};

    const HOUR: LeasePolicy = LeasePolicy {
        max_lifetime: 3600,
        sliding_expiry: false,
    };
    const MADE: Lease = Lease {
        created_at: 1_000_000,
        timeout: 30,
    };

    #[test]
    fn an_extension_counts_from_now_and_never_shortens() {
        let expires_at = MADE.created_at + 30_000;
        let now = MADE.created_at + 20_000;
        assert_eq!(
            extended_expiry(&HOUR, &MADE, expires_at, 60, now),
            (now + 60_000, false)
        );
        // Asking for less than is left keeps what is left.
        assert_eq!(
            extended_expiry(&HOUR, &MADE, expires_at, 5, now),
            (expires_at, false)
        );
    }

    #[test]
    fn no_extension_passes_the_maximum_lifetime_from_the_create() {
        let limit = MADE.created_at + 3_600_000;
        let now = limit - 10_000;
        assert_eq!(
            extended_expiry(&HOUR, &MADE, now + 5_000, 60, now),
            (limit, true)
        );
        // At the limit already: nothing moves, and the answer says why.
        assert_eq!(extended_expiry(&HOUR, &MADE, limit, 60, now), (limit, true));
    }

    fn world(numbers: &[&str], lease: LeasePolicy, policy: Policy) -> Fake {
        let mut fake = Fake::new(vec![group("G", Strategy::RoundRobin, numbers)]);
        fake.leases.insert("G".into(), lease);
        fake.policies.insert("G".into(), policy);
        fake
    }

    fn take(fake: &mut Fake, id: &str, code: bool) -> AccessInfo {
        let request = CreateRequest {
            service_id: id.into(),
            resource_group: "G".into(),
            provide_code: code,
            phone_number: None,
            booking_expiration_timeout: Some(30),
        };
        create(fake, &mut StdRng::seed_from_u64(fake.now), &request).unwrap()
    }

    fn extend_by(fake: &mut Fake, id: &str, seconds: Option<u32>) -> Result<Extended, Error> {
        let request = ExtendRequest {
            service_id: id.into(),
            resource_group: "G".into(),
            booking_expiration_timeout: seconds,
        };
        extend(fake, &request)
    }

    fn dial(fake: &mut Fake, info: &AccessInfo) -> Result<Matched, Error> {
        let request = MatchRequest {
            access_number: info.access_number.clone(),
            access_code: info.access_code.clone(),
            phone_number: None,
        };
        match_access(fake, &request)
    }

    fn shared(seats: u32) -> Policy {
        Policy {
            reservations_per_number: seats,
            wrong_code_limit: 100,
            wrong_code_window: 3600,
            ..Policy::WHOLE
        }
    }

    #[test]
    fn an_extended_reservation_keeps_its_number_and_code_past_its_first_expiry() {
        for policy in [Policy::WHOLE, shared(3)] {
            let mut fake = world(&["5551000", "5551001"], HOUR, policy.clone());
            let info = take(&mut fake, "a", true);
            fake.advance(20);
            let extended = extend_by(&mut fake, "a", Some(120)).unwrap();
            assert_eq!(extended.access_number, info.access_number);
            assert_eq!(extended.expiration_time, 120);
            assert_eq!(extended.expires_at, fake.now + 120_000);
            assert!(!extended.capped);
            // Past the create's 30 s, the reservation still holds its number.
            fake.advance(60);
            if !policy.shared() {
                assert_eq!(pool_status(&mut fake, "G").unwrap().live, 1);
                assert_ne!(take(&mut fake, "b", true).access_number, info.access_number);
            }
            assert_eq!(dial(&mut fake, &info).unwrap().service_id, "a");
        }
    }

    #[test]
    fn an_extended_reservation_expires_at_its_new_instant_and_its_number_comes_back() {
        for policy in [Policy::WHOLE, shared(2)] {
            for (after, matches) in [(99, true), (101, false)] {
                let mut fake = world(&["5551000"], HOUR, policy.clone());
                let info = take(&mut fake, "a", true);
                extend_by(&mut fake, "a", Some(100)).unwrap();
                fake.advance(after);
                if !policy.shared() {
                    let live = pool_status(&mut fake, "G").unwrap().live;
                    assert_eq!(live, u32::from(matches));
                }
                assert_eq!(dial(&mut fake, &info).is_ok(), matches, "{after} s");
                // The number is lendable again, its expiry index entry reclaimed on time.
                assert_eq!(take(&mut fake, "b", true).access_number, "5551000");
            }
        }
    }

    #[test]
    fn extensions_stop_at_the_groups_maximum_lifetime_from_the_create() {
        let lease = LeasePolicy {
            max_lifetime: 1800,
            sliding_expiry: false,
        };
        for policy in [Policy::WHOLE, shared(2)] {
            let mut fake = world(&["5551000"], lease, policy);
            let made = fake.now;
            take(&mut fake, "a", false);
            let mut last = None;
            // A heartbeat every 100 s, asking for 300 s each time.
            for _ in 0..17 {
                last = Some(extend_by(&mut fake, "a", Some(300)).unwrap());
                fake.advance(100);
            }
            let last = last.unwrap();
            assert!(last.capped);
            assert_eq!(last.expires_at, made + 1_800_000);
            fake.now = made + 1_800_000;
            assert_eq!(extend_by(&mut fake, "a", Some(300)), Err(Error::NoMatch));
        }
    }

    #[test]
    fn what_cannot_be_extended_is_refused_and_changes_nothing() {
        let mut fake = world(&["5551000"], HOUR, Policy::WHOLE);
        assert_eq!(extend_by(&mut fake, "a", None), Err(Error::NoMatch));
        take(&mut fake, "a", false);
        let before = fake.state.clone();
        assert!(matches!(
            extend_by(&mut fake, "a", Some(4)),
            Err(Error::InvalidParameter { field, .. }) if field == "_booking_expiration_timeout"
        ));
        assert!(matches!(
            extend(
                &mut fake,
                &ExtendRequest {
                    service_id: "a".into(),
                    resource_group: "NOPE".into(),
                    booking_expiration_timeout: None,
                }
            ),
            Err(Error::UnknownResourceGroup(_))
        ));
        assert_eq!(extend_by(&mut fake, "b", None), Err(Error::NoMatch));
        assert_eq!(fake.state, before);
        // Expired: nothing to extend.
        fake.advance(31);
        assert_eq!(extend_by(&mut fake, "a", None), Err(Error::NoMatch));
        // Released: nothing to extend either.
        take(&mut fake, "a", false);
        release(&mut fake, "a", "G").unwrap();
        assert_eq!(extend_by(&mut fake, "a", None), Err(Error::NoMatch));
    }

    #[test]
    fn asking_for_less_than_is_left_keeps_what_is_left() {
        let mut fake = world(&["5551000"], HOUR, Policy::WHOLE);
        let info = take(&mut fake, "a", false);
        let extended = extend_by(&mut fake, "a", Some(5)).unwrap();
        assert_eq!(extended.expires_at, info.expires_at);
        assert_eq!(extended.expiration_time, 30);
    }

    #[test]
    fn a_sliding_expiry_keeps_the_number_across_calls_and_ends_when_idle() {
        let lease = LeasePolicy {
            max_lifetime: 3600,
            sliding_expiry: true,
        };
        for policy in [Policy::WHOLE, shared(2)] {
            let mut fake = world(&["5551000"], lease, policy.clone());
            let info = take(&mut fake, "a", true);
            for _ in 0..5 {
                fake.advance(25);
                assert_eq!(dial(&mut fake, &info).unwrap().service_id, "a");
            }
            // 125 s after the create, the number is still the session's.
            if !policy.shared() {
                assert_eq!(pool_status(&mut fake, "G").unwrap().live, 1);
            }
            fake.advance(31);
            assert_eq!(dial(&mut fake, &info), Err(Error::NoMatch));
            assert_eq!(pool_status(&mut fake, "G").unwrap().free, 1);
        }
    }

    #[test]
    fn without_a_sliding_expiry_a_match_releases() {
        let mut fake = world(&["5551000"], HOUR, Policy::WHOLE);
        let info = take(&mut fake, "a", true);
        assert_eq!(dial(&mut fake, &info).unwrap().service_id, "a");
        assert_eq!(dial(&mut fake, &info), Err(Error::NoMatch));
    }
}
