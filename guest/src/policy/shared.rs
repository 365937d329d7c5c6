//! Numbers shared by access code (`reservations_per_number` N above 1).
//!
//! A shared number carries up to N live reservations, its *seats*, kept together in one
//! [`SharedNumber`] at the number's reservation key, so that lending, matching or ending
//! one reads and writes that key, as for a number lent whole. A seat is told apart by its
//! access code, unique among the number's seats (issued whenever the create named no
//! caller), or by the caller the create named, who appears on the number once.
//!
//! The ring holds a shared number while it has a free seat. A create takes it off the
//! ring and, while a seat is left, puts it back at the tail, so round-robin spreads the
//! reservations over the pool (fewer live codes per number: a guess's odds stay low) and
//! random draws among numbers with room. A full number is off the ring and comes back
//! when a seat ends, or, under a cool-off, when the first ended seat has rested: an ended
//! seat keeps its code and caller while it rests, so a late call cannot reach the
//! reservation that takes the seat next. [`SharedNumber::queue`] says where it is.
//!
//! Guessing: with n live codes of L digits on a number, a guessed code matches one with
//! probability n / 10^L <= N / 10^L (the configuration refuses N / 10^L above 1/1000),
//! and a number takes `wrong_code_limit` wrong codes per `wrong_code_window`, after which
//! every code tried on it is refused uncompared until the window ends.

use rand::Rng;
use subtle::ConstantTimeEq;

use crate::api::{Error, EventKind, Group, Imports, Matched, Policy};
use crate::ask::{Ask, access_code};
use crate::events;
use crate::keys;
use crate::records::{Lease, Place, Queue, Reservation, Seat, SeatState, SharedNumber};
use crate::ring;
use crate::txn::Txn;
use crate::validate::digits;

use super::cool_off::CoolOff;
use super::grace::Grace;
use super::lease::LeaseTerms;

/// The most bytes a shared number's value may take. A store may refuse a value above
/// 64 KiB (`reservation-state`'s `refused`): a number whose reservations have long ids
/// carries fewer of them instead of failing creates.
const VALUE_BUDGET: usize = 48 * 1024;

/// Draws of an access code before giving up on one that no seat of the number has.
/// The configuration keeps N / 10^L at most 1/1000, so that all of them collide with
/// probability at most 10^-96.
const CODE_DRAWS: u32 = 32;

impl SharedNumber {
    /// A number of `group`'s ring `ring_id` that carries no reservation yet, off the ring.
    pub fn vacant(group: &Group, number: String, ring_id: u64) -> SharedNumber {
        SharedNumber {
            group: group.name.clone(),
            number,
            ring_id,
            queue: Queue::Off,
            seats: Vec::new(),
            wrong_codes: Default::default(),
            leases: Vec::new(),
        }
    }

    /// Whether ring `ring_id` of `group` lends this number.
    pub fn lent_by(&self, group: &str, ring_id: u64) -> bool {
        self.group == group && self.ring_id == ring_id
    }

    /// The seat that is `service_id`'s reservation in `group`, if any, and its expiry. A
    /// service may have two seats on one number: one asked of this group, one asked of a
    /// group that fell back to it.
    pub fn seat_of(&self, service_id: &str, group: &str) -> Option<(usize, u64)> {
        self.seats
            .iter()
            .enumerate()
            .find_map(|(index, seat)| match &seat.state {
                SeatState::Held {
                    service_id: s,
                    asked_group,
                    expires_at,
                } if s == service_id && asked_group.as_deref().unwrap_or(&self.group) == group => {
                    Some((index, *expires_at))
                }
                _ => None,
            })
    }

    /// The held seats' expiry instants.
    fn expiries(&self) -> impl Iterator<Item = u64> + '_ {
        self.seats.iter().filter_map(|seat| match seat.state {
            SeatState::Held { expires_at, .. } => Some(expires_at),
            SeatState::Resting { .. } => None,
        })
    }

    /// Whether its ring counts it free at `now` (on the ring, or rested): otherwise it is
    /// full, and frees a seat when a held one has expired and rested.
    pub fn ring_counts_free(&self, now: u64) -> bool {
        match self.queue {
            Queue::Ring => true,
            Queue::Resting(until) => until <= now,
            Queue::Off => false,
        }
    }

    /// When the first held seat expires, if any is held.
    pub fn first_expiry(&self) -> Option<u64> {
        self.expiries().min()
    }

    /// A reservation standing for every seat, for a ring that meets the number while
    /// another ring lends it: it parks the number until the last seat ends.
    pub fn as_holder(&self) -> Reservation {
        Reservation {
            service_id: String::new(),
            group: self.group.clone(),
            number: self.number.clone(),
            code: None,
            caller_digits: None,
            expires_at: self.expiries().max().unwrap_or(0),
            failed_attempts: 0,
            pool_id: self.ring_id,
            asked_group: None,
            lease: None,
        }
    }

    /// Drop the seats that have rested by `now`; answer how many seats are taken.
    fn taken(&mut self, now: u64) -> u32 {
        self.seats
            .retain(|seat| !matches!(seat.state, SeatState::Resting { until } if until <= now));
        u32::try_from(self.seats.len()).unwrap_or(u32::MAX)
    }
}

/// A group's numbers shared by access code: the policy's entry point. Its methods are
/// for a number of the group whose policy it is made of.
#[derive(Debug, Clone, Copy)]
pub struct Shared<'p> {
    /// The group's policy: seats per number, wrong codes, and the grace and cool-off its
    /// seats end under.
    policy: &'p Policy,
}

impl<'p> Shared<'p> {
    /// The shared numbers of a group with `policy`.
    pub fn of(policy: &'p Policy) -> Shared<'p> {
        Shared { policy }
    }

    /// Read the holding of a number popped by `group`'s ring `ring_id` (`record`, this
    /// ring's or none): end its seats past their grace window, and answer it if it can seat
    /// `ask` now. Otherwise it goes back to the ring (or to rest, or stays off the ring
    /// while full) and the answer is `None`.
    pub fn claim<I: Imports>(
        &self,
        txn: &mut Txn<'_, I>,
        group: &Group,
        record: Option<SharedNumber>,
        (number, ring_id): (String, u64),
        ask: &Ask<'_>,
        now: u64,
    ) -> Result<Option<SharedNumber>, Error> {
        let policy = self.policy;
        let mut record = record.unwrap_or_else(|| SharedNumber::vacant(group, number, ring_id));
        // Popped: off the ring until this create puts it back.
        record.queue = Queue::Off;
        end_due(txn, &mut record, policy, now)?;
        let room = record.taken(now) < policy.seats();
        let callers_own = ask.caller_digits.as_deref().is_some_and(|caller| {
            record
                .seats
                .iter()
                .any(|seat| seat.caller_digits.as_deref() == Some(caller))
        });
        // The seat's ids, code and caller, and a few integers (postcard's are shorter).
        let seat_bytes = ask.request.service_id.len()
            + ask.group.len()
            + ask.caller_digits.as_ref().map_or(0, String::len)
            + usize::from(ask.access_code_length)
            + 32;
        let fits = record.encode().len() + seat_bytes <= VALUE_BUDGET;
        if room && fits && !callers_own {
            return Ok(Some(record));
        }
        put_back(txn, group, policy, record, now)?;
        Ok(None)
    }

    /// Seat `ask`'s reservation on `record` (from [`Shared::claim`]) at `now`, expiring at
    /// `expires_at` or the first millisecond after it that no other seat of the number
    /// expires at (each has its own expiry key). Answers its access code and expiry.
    pub fn seat<I: Imports, R: Rng>(
        &self,
        txn: &mut Txn<'_, I>,
        group: &Group,
        mut record: SharedNumber,
        ask: &Ask<'_>,
        (now, mut expires_at): (u64, u64),
        rng: &mut R,
    ) -> Result<(Option<String>, u64), Error> {
        let policy = self.policy;
        // Told apart by the caller when the create named one, by a code otherwise.
        let code = match ask.request.provide_code || ask.caller_digits.is_none() {
            true => Some(unused_code(&record, ask.access_code_length, rng)?),
            false => None,
        };
        while record.expiries().any(|at| at == expires_at) {
            expires_at += 1;
        }
        let number_digits = digits(&record.number);
        txn.put(
            keys::expiry(&group.name, expires_at, &number_digits),
            Vec::new(),
        );
        record.seats.push(Seat {
            code: code.clone(),
            caller_digits: ask.caller_digits.clone(),
            state: SeatState::Held {
                service_id: ask.request.service_id.clone(),
                asked_group: (group.name != ask.group).then(|| ask.group.to_string()),
                expires_at,
            },
        });
        let lease = Lease {
            created_at: now,
            timeout: ask.timeout,
        };
        record.leases.push((expires_at, lease));
        let seated = record.seats.len() - 1;
        txn.record(events::of_seat(EventKind::Created, &record, seated, None));
        put_back(txn, group, policy, record, now)?;
        Ok((code, expires_at))
    }

    /// End seat `index` of `record` now (its reservation was matched, released, replaced,
    /// revoked or reclaimed) and store what is left; the number comes back to its ring if it
    /// was full. `self` is the record's group's.
    pub fn end<I: Imports>(
        &self,
        txn: &mut Txn<'_, I>,
        mut record: SharedNumber,
        index: usize,
        now: u64,
    ) -> Result<(), Error> {
        let policy = self.policy;
        end_seat(txn, &mut record, index, policy, now)?;
        back_to_its_group(txn, record, policy, now)
    }

    /// End every seat of `record` past its group's grace window by `now`, and store what is
    /// left. Answers when the last seat still held expires, if one is. `self` is the
    /// record's group's.
    pub fn end_expired<I: Imports>(
        &self,
        txn: &mut Txn<'_, I>,
        mut record: SharedNumber,
        now: u64,
    ) -> Result<Option<u64>, Error> {
        let policy = self.policy;
        let before = record.clone();
        end_due(txn, &mut record, policy, now)?;
        let latest = record.expiries().max();
        if record != before {
            back_to_its_group(txn, record, policy, now)?;
        }
        Ok(latest)
    }

    /// Match a call to `record`'s number: by the code the caller typed, or, without one, by
    /// the caller's number. Answers what the call gets; the transaction holds what changed.
    /// `self` is the record's group's.
    pub fn match_call<I: Imports>(
        &self,
        txn: &mut Txn<'_, I>,
        mut record: SharedNumber,
        code: Option<&str>,
        caller: Option<&str>,
        now: u64,
    ) -> Result<Result<Matched, Error>, Error> {
        let policy = self.policy;
        let window = u64::from(policy.wrong_code_window) * 1000;
        let limit = policy.wrong_code_limit.max(1);
        let found = match (code, caller) {
            (Some(code), _) => {
                let shut = record.wrong_codes.count >= limit
                    && now < record.wrong_codes.since.saturating_add(window);
                if shut {
                    return Ok(Err(Error::TooManyAttempts));
                }
                // Every seat's code is compared, in constant time, whichever matches.
                let mut found = None;
                for (index, seat) in record.seats.iter().enumerate() {
                    let held = matches!(seat.state, SeatState::Held { .. });
                    let same = seat
                        .code
                        .as_deref()
                        .is_some_and(|want| bool::from(want.as_bytes().ct_eq(code.as_bytes())));
                    if held && same {
                        found = Some(index);
                    }
                }
                let Some(index) = found else {
                    if now >= record.wrong_codes.since.saturating_add(window) {
                        record.wrong_codes = Default::default();
                        record.wrong_codes.since = now;
                    }
                    record.wrong_codes.count += 1;
                    let shut = record.wrong_codes.count >= limit;
                    let kind = if shut {
                        EventKind::Revoked
                    } else {
                        EventKind::WrongCode
                    };
                    txn.record(events::of_number(kind, &record, caller));
                    let key = keys::reservation(&digits(&record.number));
                    txn.put(key, record.encode());
                    return Ok(Err(if shut {
                        Error::TooManyAttempts
                    } else {
                        Error::NoMatch
                    }));
                };
                // The right code from another number than the reservation's caller.
                if let (Some(want), Some(got)) = (&record.seats[index].caller_digits, caller)
                    && want != got
                {
                    return Ok(Err(Error::NoMatch));
                }
                index
            }
            (None, Some(caller)) => match record.seats.iter().position(|seat| {
                matches!(seat.state, SeatState::Held { .. })
                    && seat.caller_digits.as_deref() == Some(caller)
            }) {
                Some(index) => index,
                None => return Ok(Err(Error::NoMatch)),
            },
            (None, None) => return Ok(Err(Error::NoMatch)),
        };
        let SeatState::Held {
            service_id,
            expires_at,
            ..
        } = record.seats[found].state.clone()
        else {
            return Ok(Err(Error::NoMatch));
        };
        let in_grace = Grace::of(policy).over_at(expires_at) > now;
        let group = record.group.clone();
        // A sliding expiry keeps the seat for the session's next call.
        let kind = if in_grace {
            EventKind::Matched
        } else {
            EventKind::Expired
        };
        if in_grace
            && LeaseTerms::of_group(txn.imports(), &group).slide_seat(
                txn,
                &mut record,
                found,
                now,
            )?
        {
            txn.record(events::of_seat(kind, &record, found, caller));
            store(txn, record, now)?;
        } else {
            txn.record(events::of_seat(kind, &record, found, caller));
            self.end(txn, record, found, now)?;
        }
        Ok(match in_grace {
            true => Ok(Matched {
                service_id,
                resource_group: group,
            }),
            false => Err(Error::NoMatch),
        })
    }
}

/// An access code of `length` digits that no seat of `record` has, held or resting.
fn unused_code<R: Rng>(record: &SharedNumber, length: u8, rng: &mut R) -> Result<String, Error> {
    for _ in 0..CODE_DRAWS {
        let code = access_code(length, rng);
        if !record
            .seats
            .iter()
            .any(|seat| seat.code.as_deref() == Some(code.as_str()))
        {
            return Ok(code);
        }
    }
    Err(Error::StateStoreFailure(format!(
        "no unused access code of {length} digits in {CODE_DRAWS} draws: the number's \
         reservations use too many of them"
    )))
}

/// [`put_back`] to the record's group, if it is still configured; otherwise the ring it
/// came from will not get the number back, and is forgotten.
fn back_to_its_group<I: Imports>(
    txn: &mut Txn<'_, I>,
    mut record: SharedNumber,
    policy: &Policy,
    now: u64,
) -> Result<(), Error> {
    match txn.imports().group(&record.group) {
        Some(group) if group.name == record.group => put_back(txn, &group, policy, record, now),
        _ => {
            ring::forget(txn, &record.group, record.ring_id)?;
            record.queue = Queue::Off;
            store(txn, record, now)
        }
    }
}

/// End the seats of `record` whose grace window (under `policy`, their group's) is over
/// by `now`.
fn end_due<I: Imports>(
    txn: &mut Txn<'_, I>,
    record: &mut SharedNumber,
    policy: &Policy,
    now: u64,
) -> Result<(), Error> {
    let grace = Grace::of(policy);
    while let Some(due) = record.seats.iter().position(|seat| {
        matches!(seat.state, SeatState::Held { expires_at, .. } if grace.over_at(expires_at) <= now)
    }) {
        txn.record(events::of_seat(EventKind::Expired, record, due, None));
        end_seat(txn, record, due, policy, now)?;
    }
    Ok(())
}

/// End held seat `index`: remove what points at it, and let it rest for the cool-off
/// with its code and caller (or free it at once).
fn end_seat<I: Imports>(
    txn: &mut Txn<'_, I>,
    record: &mut SharedNumber,
    index: usize,
    policy: &Policy,
    now: u64,
) -> Result<(), Error> {
    let SeatState::Held {
        service_id,
        asked_group,
        expires_at,
    } = record.seats[index].state.clone()
    else {
        return Ok(());
    };
    let number_digits = digits(&record.number);
    txn.delete(keys::expiry(&record.group, expires_at, &number_digits));
    let holder = keys::holder(asked_group.as_deref().unwrap_or(&record.group), &service_id);
    if txn.get(&holder)? == Some(number_digits.as_bytes()) {
        txn.delete(holder);
    }
    // It ended now, or when it expired if that was earlier: it rests from then.
    let usable_at = CoolOff::of(policy).usable_at(now.min(expires_at));
    if usable_at > now {
        record.seats[index].state = SeatState::Resting { until: usable_at };
    } else {
        record.seats.swap_remove(index);
    }
    Ok(())
}

/// Give `record` back to its ring when it can take a reservation (at the tail now, or to
/// rest until its first ended seat has rested), or sooner than its ring has it, and store
/// it.
fn put_back<I: Imports>(
    txn: &mut Txn<'_, I>,
    group: &Group,
    policy: &Policy,
    mut record: SharedNumber,
    now: u64,
) -> Result<(), Error> {
    let lendable_at = if record.taken(now) < policy.seats() {
        Some(now)
    } else {
        record
            .seats
            .iter()
            .filter_map(|seat| match seat.state {
                SeatState::Resting { until } => Some(until),
                SeatState::Held { .. } => None,
            })
            .min()
    };
    let index = txn.imports().index_of(&group.name, &record.number);
    let move_to = match (record.queue, lendable_at, index) {
        // Every seat held: it comes back when one ends.
        (_, None, _) | (Queue::Ring, _, _) => None,
        (Queue::Off, Some(at), _) => Some(at),
        // A seat that ended in the past (an expired one reclaimed late) can rest less
        // than the one the number waits for: it moves up, unless it was woken already.
        (Queue::Resting(waits), Some(at), Some(index)) if at < waits => {
            let key = keys::resting(&group.name, record.ring_id, waits, index);
            if txn.get(&key)?.is_some() {
                txn.delete(key);
                Some(at)
            } else {
                record.queue = Queue::Ring;
                None
            }
        }
        (Queue::Resting(_), _, _) => None,
    };
    if let Some(at) = move_to {
        let usable_at = if at <= now { 0 } else { at };
        let placed = match index {
            Some(index) => {
                ring::push_placed(txn, group, record.ring_id, index, usable_at, now, None)?
            }
            None => None,
        };
        record.queue = match placed {
            Some(Place::Ring(_)) => Queue::Ring,
            Some(Place::Resting(at)) => Queue::Resting(at),
            None => {
                // The ring it came from will not get it back (see `ending::end_reservation`).
                ring::forget(txn, &record.group, record.ring_id)?;
                Queue::Off
            }
        };
    }
    store(txn, record, now)
}

/// Write `record`, or delete it once no seat is taken at `now`: an absent holding is a
/// free number that its ring gives out.
fn store<I: Imports>(
    txn: &mut Txn<'_, I>,
    mut record: SharedNumber,
    now: u64,
) -> Result<(), Error> {
    let key = keys::reservation(&digits(&record.number));
    if record.taken(now) > 0 {
        let held: Vec<u64> = record.expiries().collect();
        record.leases.retain(|(at, _)| held.contains(at));
        txn.put(key, record.encode());
        return Ok(());
    }
    txn.delete(key);
    // A ring that met the number while this one lent it gets it back now, to rest for
    // its group's cool-off from now. (The expiry entry it filed for the number is not
    // known here; its reclaim drops it.)
    let rest =
        |txn: &mut Txn<'_, I>, group: &str| CoolOff::of_group(txn.imports(), group).usable_at(now);
    ring::unpark(txn, &record.number, 0, now, rest)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::atomic::{AtomicU64, Ordering};

    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use crate::api::{AccessInfo, CreateRequest, Error, MatchRequest, Policy, Strategy};
    use crate::testing::{Fake, group};
    use crate::{create, create_placed, match_access, pool_status, release};

    fn shared(seats: u32) -> Policy {
        Policy {
            reservations_per_number: seats,
            wrong_code_limit: 1_000_000,
            wrong_code_window: 3600,
            ..Policy::WHOLE
        }
    }

    fn world(strategy: Strategy, numbers: &[&str], policy: Policy) -> Fake {
        let mut fake = Fake::new(vec![group("G", strategy, numbers)]);
        fake.policies.insert("G".into(), policy);
        fake
    }

    /// `id` asks G for access information, for `caller` if given, never asking for a code.
    fn take(fake: &mut Fake, id: &str, caller: Option<&str>) -> Result<AccessInfo, Error> {
        let request = CreateRequest {
            service_id: id.into(),
            resource_group: "G".into(),
            provide_code: false,
            phone_number: caller.map(String::from),
            booking_expiration_timeout: Some(60),
        };
        // A seed per call, as every call draws anew.
        static CALLS: AtomicU64 = AtomicU64::new(0);
        let seed = CALLS.fetch_add(1, Ordering::Relaxed);
        create(fake, &mut StdRng::seed_from_u64(seed), &request)
    }

    fn dial(
        fake: &mut Fake,
        number: &str,
        code: Option<&str>,
        caller: Option<&str>,
    ) -> Result<String, Error> {
        let request = MatchRequest {
            access_number: number.into(),
            access_code: code.map(String::from),
            phone_number: caller.map(String::from),
        };
        match_access(fake, &request).map(|m| m.service_id)
    }

    fn free(fake: &mut Fake) -> u32 {
        let status = pool_status(fake, "G").unwrap();
        assert_eq!(status.live + status.free, status.size);
        status.free
    }

    fn exhausted<T>() -> Result<T, Error> {
        Err(Error::NoAccessNumberAvailable("G".into()))
    }

    #[test]
    fn a_pool_of_p_numbers_serves_p_times_n_services_each_told_apart_by_its_code() {
        for strategy in [Strategy::RoundRobin, Strategy::Random] {
            let mut fake = world(strategy, &["5551001", "5551002"], shared(3));
            let mut lent = BTreeMap::new();
            for i in 0..6 {
                let id = format!("s{i}");
                let info = take(&mut fake, &id, None).unwrap();
                // No caller to tell it apart: a code, though none was asked for.
                assert_eq!(info.access_code.as_ref().map(String::len), Some(6));
                lent.insert(id, info);
            }
            assert_eq!(take(&mut fake, "s6", None).map(|_| ()), exhausted());
            assert_eq!(free(&mut fake), 0);
            let per_number = lent.values().fold(BTreeMap::new(), |mut counts, info| {
                *counts.entry(info.access_number.clone()).or_insert(0) += 1;
                counts
            });
            assert_eq!(per_number.values().collect::<Vec<_>>(), [&3, &3]);
            for (id, info) in &lent {
                let code = info.access_code.as_deref();
                assert_eq!(
                    dial(&mut fake, &info.access_number, code, None).as_ref(),
                    Ok(id)
                );
                // Matched once: the seat is free again, and one number has room.
                assert_eq!(
                    dial(&mut fake, &info.access_number, code, None),
                    Err(Error::NoMatch)
                );
            }
            assert_eq!(free(&mut fake), 2);
        }
    }

    #[test]
    fn round_robin_spreads_the_reservations_over_the_numbers() {
        let mut fake = world(
            Strategy::RoundRobin,
            &["5551001", "5551002", "5551003"],
            shared(4),
        );
        let numbers: Vec<String> = (0..6)
            .map(|i| {
                take(&mut fake, &format!("s{i}"), None)
                    .unwrap()
                    .access_number
            })
            .collect();
        assert_eq!(
            numbers,
            [
                "5551001", "5551002", "5551003", "5551001", "5551002", "5551003"
            ]
        );
    }

    #[test]
    fn exactly_n_of_all_codes_match_a_full_number() {
        // The odds of a guess are N / 10^L: with 4-digit codes and 10 reservations on the
        // number, exactly 10 of the 10,000 codes match one (each once, to its own service).
        let mut fake = world(Strategy::RoundRobin, &["5551001"], shared(10));
        fake.options.access_code_length = 4;
        let services: BTreeSet<String> = (0..10).map(|i| format!("s{i}")).collect();
        for id in &services {
            take(&mut fake, id, None).unwrap();
        }
        let mut matched = BTreeSet::new();
        for guess in 0..10_000 {
            match dial(&mut fake, "5551001", Some(&format!("{guess:04}")), None) {
                Ok(service) => assert!(matched.insert(service)),
                Err(e) => assert_eq!(e, Error::NoMatch),
            }
        }
        assert_eq!(matched, services);
    }

    #[test]
    fn codes_are_unique_among_the_live_reservations_of_a_number() {
        // 4-digit codes, 10 per number: 45 pairs, so that without the check two would
        // collide in about one round in 220 (in one of these 1,000, with odds 99%).
        let mut fake = world(Strategy::RoundRobin, &["5551001"], shared(10));
        fake.options.access_code_length = 4;
        let mut rng = StdRng::seed_from_u64(5);
        for round in 0..1000 {
            let mut codes = BTreeSet::new();
            for i in 0..10 {
                let request = CreateRequest {
                    service_id: format!("r{round}s{i}"),
                    resource_group: "G".into(),
                    provide_code: true,
                    phone_number: None,
                    booking_expiration_timeout: Some(5),
                };
                let info = create(&mut fake, &mut rng, &request).unwrap();
                assert!(codes.insert(info.access_code.unwrap()), "round {round}");
            }
            fake.advance(6);
        }
    }

    #[test]
    fn a_caller_named_by_the_create_is_matched_by_number_and_caller() {
        let mut fake = world(Strategy::RoundRobin, &["5551001"], shared(2));
        let a = take(&mut fake, "a", Some("+1 555 777 0001")).unwrap();
        assert_eq!(a.access_code, None, "told apart by its caller: no code");
        let b = take(&mut fake, "b", None).unwrap();
        assert!(b.access_code.is_some());
        // Another caller, or a hidden one, without a code: nobody.
        assert_eq!(
            dial(&mut fake, "5551001", None, Some("15557770002")),
            Err(Error::NoMatch)
        );
        assert_eq!(dial(&mut fake, "5551001", None, None), Err(Error::NoMatch));
        assert_eq!(
            dial(&mut fake, "5551001", None, Some("15557770001")).unwrap(),
            "a"
        );
        // The right code from the wrong caller is not a match either.
        let b_code = b.access_code.as_deref();
        let c = take(&mut fake, "c", Some("15557770003")).unwrap();
        assert_eq!(c.access_number, "5551001");
        assert_eq!(
            dial(&mut fake, "5551001", None, Some("15557770001")),
            Err(Error::NoMatch)
        );
        assert_eq!(dial(&mut fake, "5551001", b_code, None).unwrap(), "b");
    }

    #[test]
    fn a_caller_appears_once_on_a_number() {
        let mut fake = world(Strategy::RoundRobin, &["5551001", "5551002"], shared(2));
        let caller = Some("15557770001");
        let first = take(&mut fake, "a", caller).unwrap().access_number;
        let second = take(&mut fake, "b", caller).unwrap().access_number;
        assert_ne!(first, second);
        // Room is left on both numbers, but not for this caller.
        assert_eq!(take(&mut fake, "c", caller).map(|_| ()), exhausted());
        assert!(take(&mut fake, "d", Some("15557770002")).is_ok());
        assert_eq!(dial(&mut fake, &second, None, caller).unwrap(), "b");
    }

    /// A call to 5551001 with `code`.
    fn with_code(fake: &mut Fake, code: &str) -> Result<String, Error> {
        dial(fake, "5551001", Some(code), None)
    }

    fn limited(limit: u32, window: u32) -> Policy {
        Policy {
            wrong_code_limit: limit,
            wrong_code_window: window,
            ..shared(3)
        }
    }

    #[test]
    fn wrong_codes_shut_a_number_for_the_rest_of_the_window_and_revoke_nothing() {
        let mut fake = world(Strategy::RoundRobin, &["5551001"], limited(3, 30));
        let a = take(&mut fake, "a", None).unwrap();
        take(&mut fake, "b", Some("15557770002")).unwrap();
        let code = a.access_code.as_deref().unwrap();
        let wrong = if code == "000000" { "111111" } else { "000000" };
        fake.advance(10);
        assert_eq!(with_code(&mut fake, wrong), Err(Error::NoMatch));
        assert_eq!(with_code(&mut fake, wrong), Err(Error::NoMatch));
        assert_eq!(with_code(&mut fake, wrong), Err(Error::TooManyAttempts));
        // Shut: even the right code is refused uncompared until the window ends...
        assert_eq!(with_code(&mut fake, code), Err(Error::TooManyAttempts));
        // ...while a call from a caller the number knows still matches, and nothing was
        // revoked: one seat is held by "a" still.
        assert_eq!(
            dial(&mut fake, "5551001", None, Some("15557770002")).unwrap(),
            "b"
        );
        assert_eq!(free(&mut fake), 1);
        fake.advance(29);
        assert_eq!(with_code(&mut fake, code), Err(Error::TooManyAttempts));
        fake.advance(1);
        assert_eq!(with_code(&mut fake, code).unwrap(), "a");
    }

    #[test]
    fn the_window_restarts_at_the_first_wrong_code_after_it_ends() {
        let mut fake = world(Strategy::RoundRobin, &["5551001"], limited(2, 60));
        let code = take(&mut fake, "a", None).unwrap().access_code.unwrap();
        let wrong = if code == "000000" { "111111" } else { "000000" };
        assert_eq!(with_code(&mut fake, wrong), Err(Error::NoMatch));
        fake.advance(30);
        take(&mut fake, "a", None).unwrap();
        fake.advance(31);
        // The first wrong code was 61 s ago: this one opens a new window.
        assert_eq!(with_code(&mut fake, wrong), Err(Error::NoMatch));
        assert_eq!(with_code(&mut fake, wrong), Err(Error::TooManyAttempts));
    }

    #[test]
    fn an_ended_seat_rests_for_the_cool_off_and_the_number_comes_back_then() {
        let policy = Policy {
            reuse_cooldown: 20,
            ..shared(2)
        };
        let mut fake = world(Strategy::RoundRobin, &["5551001"], policy);
        let a = take(&mut fake, "a", None).unwrap();
        take(&mut fake, "b", None).unwrap();
        assert_eq!(release(&mut fake, "a", "G").unwrap(), "5551001");
        // a's seat rests with its code: the number is full for 20 s.
        let request = CreateRequest {
            service_id: "c".into(),
            resource_group: "G".into(),
            provide_code: false,
            phone_number: None,
            booking_expiration_timeout: Some(60),
        };
        let refused = create_placed(&mut fake, &mut StdRng::seed_from_u64(1), &request)
            .err()
            .unwrap();
        assert_eq!(refused.retry_at, Some(fake.now + 20_000));
        assert_eq!(free(&mut fake), 0);
        let code = a.access_code.as_deref();
        assert_eq!(dial(&mut fake, "5551001", code, None), Err(Error::NoMatch));
        fake.advance(20);
        assert_eq!(free(&mut fake), 1);
        assert_eq!(take(&mut fake, "c", None).unwrap().access_number, "5551001");
    }

    #[test]
    fn expired_seats_are_reclaimed_after_their_grace_window() {
        let policy = Policy {
            reuse_cooldown: 10,
            match_grace: 10,
            ..shared(2)
        };
        let mut fake = world(Strategy::RoundRobin, &["5551001"], policy);
        let a = take(&mut fake, "a", None).unwrap();
        take(&mut fake, "b", None).unwrap();
        fake.advance(65);
        // Expired, in the grace window: still matched, and still not free.
        assert_eq!(free(&mut fake), 0);
        assert_eq!(
            dial(&mut fake, "5551001", a.access_code.as_deref(), None).unwrap(),
            "a"
        );
        // b's grace window is over, and its seat has rested from its expiry (1 ms after
        // a's: each seat of a number expires at its own instant).
        fake.advance(6);
        assert_eq!(free(&mut fake), 1);
        assert_eq!(take(&mut fake, "c", None).unwrap().access_number, "5551001");
        assert_eq!(take(&mut fake, "d", None).unwrap().access_number, "5551001");
        assert_eq!(take(&mut fake, "e", None).map(|_| ()), exhausted());
    }

    #[test]
    fn asking_again_replaces_the_services_seat() {
        let mut fake = world(Strategy::RoundRobin, &["5551001"], shared(2));
        let first = take(&mut fake, "a", None).unwrap();
        let second = take(&mut fake, "a", None).unwrap();
        take(&mut fake, "b", None).unwrap();
        assert_eq!(take(&mut fake, "c", None).map(|_| ()), exhausted());
        let old = first.access_code.as_deref();
        assert_eq!(dial(&mut fake, "5551001", old, None), Err(Error::NoMatch));
        let new = second.access_code.as_deref();
        assert_eq!(dial(&mut fake, "5551001", new, None).unwrap(), "a");
        assert_eq!(release(&mut fake, "b", "G").unwrap(), "5551001");
        assert_eq!(release(&mut fake, "b", "G"), Err(Error::NoMatch));
        assert_eq!(free(&mut fake), 1);
        assert!(
            fake.state.keys().all(|k| !k.starts_with('n')),
            "{:?}",
            fake.state.keys()
        );
    }

    #[test]
    fn a_number_waiting_for_a_rest_comes_back_when_an_expired_seat_has_rested() {
        let policy = Policy {
            reuse_cooldown: 20,
            ..shared(2)
        };
        let mut fake = world(Strategy::RoundRobin, &["5551001"], policy);
        let request = |id: &str, timeout: u32| CreateRequest {
            service_id: id.into(),
            resource_group: "G".into(),
            provide_code: false,
            phone_number: None,
            booking_expiration_timeout: Some(timeout),
        };
        let mut rng = StdRng::seed_from_u64(9);
        create(&mut fake, &mut rng, &request("a", 5)).unwrap();
        create(&mut fake, &mut rng, &request("b", 60)).unwrap();
        fake.advance(30);
        // b's seat rests until 50 s; a's expired at 5 s and has rested since 25 s.
        release(&mut fake, "b", "G").unwrap();
        assert_eq!(free(&mut fake), 1);
        let lent = create(&mut fake, &mut rng, &request("c", 60)).unwrap();
        assert_eq!(lent.access_number, "5551001");
        assert_eq!(free(&mut fake), 0);
    }

    /// G (5551001, lent whole) falling back to SHARED (5552001, `seats` per number).
    fn falling_back_to_shared(seats: u32) -> Fake {
        let mut fake = Fake::new(vec![
            group("G", Strategy::RoundRobin, &["5551001"]),
            group("SHARED", Strategy::RoundRobin, &["5552001"]),
        ]);
        let fallback = Policy {
            fallback_group: Some("SHARED".into()),
            ..Policy::WHOLE
        };
        fake.policies.insert("G".into(), fallback);
        fake.policies.insert("SHARED".into(), shared(seats));
        fake
    }

    #[test]
    fn a_service_may_hold_a_seat_of_its_own_and_one_lent_for_the_group_that_fell_back() {
        let mut fake = falling_back_to_shared(2);
        let mut rng = StdRng::seed_from_u64(4);
        let mut ask = |fake: &mut Fake, id: &str, group: &str| {
            let request = CreateRequest {
                service_id: id.into(),
                resource_group: group.into(),
                provide_code: false,
                phone_number: None,
                booking_expiration_timeout: Some(60),
            };
            create_placed(fake, &mut rng, &request).unwrap()
        };
        ask(&mut fake, "t", "G");
        let for_g = ask(&mut fake, "s", "G");
        let own = ask(&mut fake, "s", "SHARED");
        assert_eq!(for_g.access.access_number, own.access.access_number);
        // Released through SHARED: the seat asked of SHARED, not the one asked of G.
        assert_eq!(release(&mut fake, "s", "SHARED").unwrap(), "5552001");
        let code = |p: &crate::api::Placed| p.access.access_code.clone();
        assert_eq!(
            dial(&mut fake, "5552001", code(&own).as_deref(), None),
            Err(Error::NoMatch)
        );
        assert_eq!(
            dial(&mut fake, "5552001", code(&for_g).as_deref(), None).unwrap(),
            "s"
        );
    }

    #[test]
    fn long_service_ids_make_a_number_carry_fewer_reservations_not_fail() {
        // 100 per number, with ids of 500 bytes: a number's value would pass 64 KiB, which
        // a store may refuse. It stops taking reservations first.
        let mut fake = world(Strategy::RoundRobin, &["5551001", "5551002"], shared(100));
        let mut lent = 0;
        for i in 0..200 {
            let id = format!("{}{i:03}", "é".repeat(250));
            match take(&mut fake, &id, None) {
                Ok(_) => lent += 1,
                Err(e) => assert_eq!(e, Error::NoAccessNumberAvailable("G".into())),
            }
        }
        assert!((100..200).contains(&lent), "{lent} lent");
        let largest = fake.state.values().map(|(v, _)| v.len()).max().unwrap();
        assert!(largest <= 48 * 1024, "a value of {largest} bytes");
    }

    #[test]
    fn an_exhausted_group_falls_back_to_a_shared_one() {
        let mut fake = falling_back_to_shared(3);
        let mut rng = StdRng::seed_from_u64(3);
        let mut place = |fake: &mut Fake, id: &str| {
            let request = CreateRequest {
                service_id: id.into(),
                resource_group: "G".into(),
                provide_code: false,
                phone_number: None,
                booking_expiration_timeout: Some(60),
            };
            create_placed(fake, &mut rng, &request)
        };
        assert_eq!(place(&mut fake, "a").unwrap().resource_group, "G");
        let mut codes = Vec::new();
        for id in ["b", "c", "d"] {
            let placed = place(&mut fake, id).unwrap();
            assert_eq!(placed.resource_group, "SHARED");
            codes.push(placed.access.access_code.unwrap());
        }
        assert!(place(&mut fake, "e").is_err());
        // A fallback seat is the service's reservation in the group it asked.
        assert_eq!(release(&mut fake, "c", "G").unwrap(), "5552001");
        assert_eq!(
            dial(&mut fake, "5552001", Some(&codes[0]), None).unwrap(),
            "b"
        );
        assert_eq!(place(&mut fake, "e").unwrap().resource_group, "SHARED");
    }
}
