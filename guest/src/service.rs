//! The request-access operations. Each one is a loop of optimistic transactions: read
//! what it needs, decide, commit everything at once; on a conflict, read again.

use std::borrow::Cow;

use rand::Rng;
use rand::distr::{Distribution, Uniform};
use subtle::ConstantTimeEq;

use crate::api::{
    AccessInfo, CreateRequest, Entry, Error, EventKind, Group, Imports, KeyRange, MatchRequest,
    Matched, Placed, Policy, PoolStatus, Refused,
};
use crate::events;
use crate::keys;
use crate::lease;
pub use crate::lookup::MAX_ATTEMPTS;
use crate::lookup::{self, contended, group_of, read_holding};
use crate::records::{Holding, Lease, Queue, Reservation, SeatState, SharedNumber};
use crate::ring;
use crate::shared;
use crate::sticky;
use crate::txn::{Outcome, Txn};
use crate::validate::{self, digits};

/// Expired reservations a `create` reclaims before taking a number. At least one, so
/// an expired reservation is always reclaimed before the pool is called exhausted.
const RECLAIM_BATCH: u32 = 4;
/// Entries `pool_status` reads per scan.
const STATUS_PAGE: u32 = 512;
/// Ring entries one transaction of a `create` looks at before committing what it did:
/// after a pool change the ring may begin with many numbers still held, and one commit
/// must stay within the store's key limit.
const TAKE_BATCH: u64 = 64;

/// What becomes of an ended reservation's number.
enum Number<'g> {
    /// Back on its group's ring; the group, if the caller already has it (one host call
    /// less).
    Back(Option<&'g Group>),
    /// Nowhere: the caller takes it from ring `ring_id` of `group`.
    Kept { group: &'g str, ring_id: u64 },
}

/// Why a reservation ended, for its event: what happened, and who called if a call did.
type Ended<'c> = (EventKind, Option<&'c str>);

/// Remove a reservation and everything pointing at it, and give its number back or not.
fn end_reservation<I: Imports>(
    txn: &mut Txn<'_, I>,
    res: &Reservation,
    (number, (why, caller)): (Number<'_>, Ended<'_>),
    now: u64,
) -> Result<(), Error> {
    txn.record(events::of_reservation(why, res, caller));
    // It ended now, or when it expired if that was earlier: its number rests from then.
    let ended_at = now.min(res.expires_at);
    let number_digits = digits(&res.number);
    txn.delete(keys::reservation(&number_digits));
    // Made for a request to another group (its fallback), it is the service's there.
    let holder = keys::holder(
        res.asked_group.as_deref().unwrap_or(&res.group),
        &res.service_id,
    );
    let back_to = match number {
        Number::Back(known) => Some(match known.filter(|g| g.name == res.group) {
            Some(group) => Some(Cow::Borrowed(group)),
            None => txn.imports().group(&res.group).map(Cow::Owned),
        }),
        Number::Kept { .. } => None,
    };
    let parked = keys::parked(&number_digits);
    match &back_to {
        // The ring is needed next: one host call for its keys, the holder and the ring
        // that may be waiting for the number.
        Some(Some(group)) => txn.prefetch(&[
            holder.clone(),
            keys::ring_meta(&group.name, group.pool_id),
            keys::pool_record(&group.name, group.pool_id),
            parked,
        ])?,
        Some(None) => txn.prefetch(&[holder.clone(), parked])?,
        None => {}
    }
    if txn.get(&holder)? == Some(number_digits.as_bytes()) {
        txn.delete(holder);
    }
    txn.delete(keys::expiry(&res.group, res.expires_at, &number_digits));
    let pushed = match (&back_to, number) {
        (Some(Some(group)), _) => match txn.imports().index_of(&group.name, &res.number) {
            Some(index) => {
                let policy = txn.imports().policy(&group.name);
                let usable_at = ring::rested(&policy, ended_at);
                let keeper = sticky::keeper(txn, group, &policy, res, index)?;
                let place = ring::push_placed(
                    txn,
                    group,
                    res.pool_id,
                    index,
                    usable_at,
                    now,
                    keeper.as_deref(),
                )?;
                if let Some(place) = place {
                    sticky::returned(txn, group, &policy, res, (index, place), now)?;
                }
                place.is_some()
            }
            None => false,
        },
        // Taken by the ring it came from: nothing to forget.
        (_, Number::Kept { group, ring_id }) if group == res.group && ring_id == res.pool_id => {
            true
        }
        _ => false,
    };
    if !pushed {
        // The ring it came from will not get it back (the group retired, its numbers
        // changed, or another ring took it): that ring must not be resumed as it is
        // should the same numbers be served again.
        ring::forget(txn, &res.group, res.pool_id)?;
    }
    // A ring that popped the number while this reservation held it gets it now (if a
    // taker keeps it, that ring meets it held again and parks it again).
    ring::unpark(txn, &res.number, res.expires_at, ended_at, now)?;
    Ok(())
}

/// The expiry-index entries [`reclaim_expired`] looks at: those of `group` due by `now`
/// under `policy`'s grace window, the earliest [`RECLAIM_BATCH`].
fn reclaim_range(group: &Group, policy: &Policy, now: u64) -> KeyRange {
    let grace = u64::from(policy.match_grace) * 1000;
    let (start, end) = keys::expired_by(&group.name, now.saturating_sub(grace));
    KeyRange {
        start,
        end,
        limit: RECLAIM_BATCH,
    }
}

/// Reclaim up to [`RECLAIM_BATCH`] reservations that expired by `now` from `group`'s
/// expiry index (`policy` is the group's): the group's own, and other rings' holding
/// numbers the group parked.
fn reclaim_expired<I: Imports>(
    txn: &mut Txn<'_, I>,
    group: &Group,
    policy: &Policy,
    now: u64,
) -> Result<(), Error> {
    let grace = u64::from(policy.match_grace) * 1000;
    let range = reclaim_range(group, policy, now);
    for (key, _) in txn.scan(&range.start, &range.end, range.limit)? {
        let holding = keys::digits_of_expiry(&key)
            .map(|d| read_holding(txn, d))
            .transpose()?
            .flatten();
        let res = match holding {
            Some(Holding::One(res)) => res,
            Some(Holding::Shared(record)) => {
                reclaim_seat(txn, (group, policy), record, &key, now)?;
                continue;
            }
            None => {
                // An index entry whose reservation is gone.
                txn.delete(key);
                continue;
            }
        };
        if keys::expiry(&group.name, res.expires_at, &digits(&res.number)) != key {
            // An index entry whose reservation was replaced.
            txn.delete(key);
        } else {
            // A parked number's holder is another group's, under that group's window.
            let over = if res.group == group.name {
                res.expires_at.saturating_add(grace) <= now
            } else {
                !in_grace(txn.imports(), &res, now)
            };
            if over {
                let ended = (Number::Back(Some(group)), (EventKind::Expired, None));
                end_reservation(txn, &res, ended, now)?
            }
        }
    }
    Ok(())
}

/// Reclaim the seat of a shared number that expiry-index entry `key` of `group` was
/// filed for: the entry is due (past `policy`'s grace window), as the scan that found it
/// only reaches those.
fn reclaim_seat<I: Imports>(
    txn: &mut Txn<'_, I>,
    (group, policy): (&Group, &Policy),
    record: SharedNumber,
    key: &str,
    now: u64,
) -> Result<(), Error> {
    // Ending the seat deletes its entry; any other entry goes too.
    txn.delete(key.to_string());
    if record.group != group.name {
        // Filed by this group's ring, which parked the number: it comes back to that
        // ring when its last seat ends. End the seats due under their own group's
        // window, even if that group gets no calls, and file the next due one.
        let number_digits = digits(&record.number);
        if let Some(latest) = shared::end_expired(txn, record, now)? {
            txn.put(
                keys::expiry(&group.name, latest, &number_digits),
                Vec::new(),
            );
        }
        return Ok(());
    }
    let at = keys::expiry_instant(key);
    let seat = record.seats.iter().position(
        |seat| matches!(seat.state, SeatState::Held { expires_at, .. } if Some(expires_at) == at),
    );
    match seat {
        Some(seat) => {
            txn.record(events::of_seat(EventKind::Expired, &record, seat, None));
            shared::end(txn, record, seat, policy, now)
        }
        // An entry whose seat ended.
        None => Ok(()),
    }
}

/// `group`'s grace window for late calls, in milliseconds.
fn grace_ms<I: Imports>(imports: &mut I, group: &str) -> u64 {
    u64::from(imports.policy(group).match_grace) * 1000
}

/// Whether a call to `res`'s number still matches it: it has not expired, or its
/// group's grace window for late calls is not over.
fn in_grace<I: Imports>(imports: &mut I, res: &Reservation, now: u64) -> bool {
    res.expires_at > now || res.expires_at.saturating_add(grace_ms(imports, &res.group)) > now
}

/// What looking for a free number found.
enum Take {
    /// A free number, in its configured form.
    Number(String),
    /// A shared number with a seat free for the caller.
    Seat(SharedNumber),
    /// The ring holds no free number.
    Exhausted,
    /// [`TAKE_BATCH`] entries looked at, none free: commit, and go on in a new transaction.
    Unfinished,
}

/// Take a free number off `group`'s ring (a shared number with a seat free for `ask`,
/// if `policy` shares numbers). `unseen` counts the ring entries not looked at yet by
/// this `create` (set on the first call): numbers still held go back behind them, so
/// each entry is looked at once at most, in either strategy. `assume_free`: take the
/// first number off the ring to be free without reading its reservation key (a number
/// on the ring is nearly always free, and the commit checks it is), unless `policy`
/// shares numbers (a shared number on the ring usually has its record).
fn take_number<I: Imports, R: Rng>(
    txn: &mut Txn<'_, I>,
    (group, policy): (&Group, &Policy),
    ask: &Ask<'_>,
    now: u64,
    rng: &mut R,
    (unseen, assume_free): (&mut Option<u64>, bool),
) -> Result<Take, Error> {
    if policy.reuse_cooldown > 0 {
        ring::wake(txn, group, now)?;
    }
    let ring = ring::open(txn, group)?;
    let unseen = unseen.get_or_insert(ring.len());
    // A number local to the caller first, where the group prefers one.
    let local = ask
        .caller_digits
        .as_deref()
        .filter(|_| policy.prefer_caller_prefix > 0)
        .map(|caller| (caller, policy.prefer_caller_prefix));
    for _ in 0..TAKE_BATCH {
        let Some(index) = ring::pop(txn, group, rng, (*unseen, local), policy.sticky())? else {
            return Ok(Take::Exhausted);
        };
        *unseen -= 1;
        let Some(index) = index else { continue };
        let Some(number) = txn.imports().number_at(&group.name, index) else {
            continue;
        };
        let number_digits = digits(&number);
        if number_digits.is_empty() {
            continue;
        }
        if assume_free && !policy.shared() {
            txn.assume_absent(&keys::reservation(&number_digits));
            return Ok(Take::Number(number));
        }
        let free = match read_holding(txn, &number_digits)? {
            None => None,
            // Shared by this ring: a seat, if one is free for this caller.
            Some(Holding::Shared(record)) if record.lent_by(&group.name, ring.id()) => Some(record),
            // Left behind with its expiry entry, past its grace window: clean it up,
            // and use the number once it has rested.
            Some(Holding::One(stale)) if !in_grace(txn.imports(), &stale, now) => {
                let kept = Number::Kept {
                    group: &group.name,
                    ring_id: ring.id(),
                };
                end_reservation(txn, &stale, (kept, (EventKind::Expired, None)), now)?;
                let usable_at = ring::rested(policy, stale.expires_at);
                if usable_at > now {
                    ring::push(txn, group, ring.id(), index, usable_at, now)?;
                    continue;
                }
                None
            }
            // Still held: by a reservation from another ring of this group (an earlier
            // pool definition) or of another group (the number was moved), or in its
            // grace window. Its end does not give the number to this ring, so the ring
            // parks it to get it back then; if another ring parked it already, the ring
            // keeps it behind the others.
            Some(held) => {
                let held = match held {
                    Holding::One(res) => res,
                    Holding::Shared(record) => record.as_holder(),
                };
                let ours = held.group == group.name && held.pool_id == ring.id();
                if ours || !ring::park(txn, group, &ring, &held, index)? {
                    ring::push(txn, group, ring.id(), index, 0, now)?;
                }
                continue;
            }
        };
        if free.is_none() && !policy.shared() {
            return Ok(Take::Number(number));
        }
        let claimed = (number, ring.id());
        if let Some(record) = shared::claim(txn, group, policy, free, claimed, ask, now)? {
            return Ok(Take::Seat(record));
        }
    }
    Ok(Take::Unfinished)
}

/// A numeric access code of `length` digits, each drawn uniformly from `rng`.
pub fn access_code<R: Rng>(length: u8, rng: &mut R) -> String {
    // Uniform::sample uses Lemire's rejection method: every digit equally likely.
    let digit = Uniform::new(0u8, 10).expect("0..10 is a valid range");
    (0..length)
        .map(|_| char::from(b'0' + digit.sample(rng)))
        .collect()
}

/// The seed's Create: reserve a number of the group for the service.
pub fn create<I: Imports, R: Rng>(
    imports: &mut I,
    rng: &mut R,
    request: &CreateRequest,
) -> Result<AccessInfo, Error> {
    create_placed(imports, rng, request)
        .map(|placed| placed.access)
        .map_err(|refused| refused.error)
}

/// What a create asks for, checked, and fixed for every attempt.
pub(crate) struct Ask<'r> {
    pub request: &'r CreateRequest,
    pub caller_digits: Option<String>,
    /// Seconds the reservation lasts (request, then the requested group, then global).
    pub timeout: u32,
    pub access_code_length: u8,
    /// The group the request named.
    pub group: &'r str,
}

/// [`create`], answering the group that lent the number (the requested one or, when it
/// is exhausted, its fallback group: one hop), or, when the pool is exhausted, when a
/// number is first known to become lendable again.
pub fn create_placed<I: Imports, R: Rng>(
    imports: &mut I,
    rng: &mut R,
    request: &CreateRequest,
) -> Result<Placed, Refused> {
    validate::service_id(&request.service_id)?;
    let caller_digits = request
        .phone_number
        .as_deref()
        .map(|n| validate::phone_number("_phone_number", n))
        .transpose()?;
    validate::booking_timeout(request.booking_expiration_timeout)?;
    let group = group_of(imports, &request.resource_group)?;
    // Asked once per call, not per attempt: the configuration a call sees is fixed.
    let policy = imports.policy(&group.name);
    let options = imports.options();
    let global = options.booking_expiration_timeout;
    let timeout = lookup::timeout(request.booking_expiration_timeout, &group, global)?;
    match imports.is_active(&request.service_id) {
        Ok(true) => {}
        Ok(false) => return Err(Error::ServiceNotActive(request.service_id.clone()).into()),
        Err(why) => return Err(Error::RegistryFailure(why).into()),
    }
    let ask = Ask {
        request,
        caller_digits,
        timeout,
        access_code_length: options.access_code_length,
        group: &group.name,
    };
    let exhausted = match lend(imports, rng, &ask, &group, &policy)? {
        Lent::Placed(placed) => return Ok(placed),
        Lent::Exhausted { retry_at } => retry_at,
    };
    // One hop: the fallback group's own fallback is not followed. A fallback the host
    // does not know leaves the answer as it was.
    let refused = |retry_at| Refused {
        error: Error::NoAccessNumberAvailable(group.name.clone()),
        retry_at,
    };
    let Some(fallback) = policy
        .fallback_group
        .as_deref()
        .filter(|f| *f != group.name)
        .and_then(|f| group_of(imports, f).ok())
    else {
        return Err(refused(exhausted));
    };
    let fallback_policy = imports.policy(&fallback.name);
    match lend(imports, rng, &ask, &fallback, &fallback_policy)? {
        Lent::Placed(placed) => Ok(placed),
        Lent::Exhausted { retry_at } => Err(refused(earliest(exhausted, retry_at))),
    }
}

/// The earlier of two instants that may be unknown.
fn earliest(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// What lending from one group came to.
enum Lent {
    Placed(Placed),
    Exhausted { retry_at: Option<u64> },
}

/// Lend a number of `group` (the requested group, or its fallback) for `ask`.
fn lend<I: Imports, R: Rng>(
    imports: &mut I,
    rng: &mut R,
    ask: &Ask<'_>,
    group: &Group,
    policy: &Policy,
) -> Result<Lent, Error> {
    let request = ask.request;
    let mut unseen = None;
    // Until a commit finds a number on the ring held after all (see `take_number`).
    let mut assume_free = true;
    for _ in 0..MAX_ATTEMPTS {
        let now = imports.now();
        let expires_at = now.saturating_add(u64::from(ask.timeout) * 1000);
        let mut txn = Txn::new(imports);
        // The service's reservation in the requested group, wherever its number came from.
        let holder = keys::holder(ask.group, &request.service_id);
        let sticky_caller = ask.caller_digits.as_deref().filter(|_| policy.sticky());
        let mut wanted = vec![
            keys::ring_meta(&group.name, group.pool_id),
            keys::pool_record(&group.name, group.pool_id),
            holder.clone(),
        ];
        wanted.extend(sticky_caller.map(|c| keys::remembered(&group.name, c)));
        // One host call for the keys and the expiry index: one round trip on a
        // networked store.
        txn.prefetch_with(&wanted, Some(reclaim_range(group, policy, now)))?;
        reclaim_expired(&mut txn, group, policy, now)?;
        if policy.sticky() {
            sticky::forget_callers(&mut txn, group, now)?;
        }

        // Asking again replaces the service's reservation: its number goes back first.
        if let Some(held) = lookup::held(&mut txn, &holder)? {
            let (service, back) = (request.service_id.as_str(), Some(group));
            let why = EventKind::Replaced;
            end_held(
                &mut txn,
                (&holder, &held),
                (service, ask.group),
                (back, why),
                now,
            )?;
        }

        // A caller's own number again, if the group remembers it and it is free.
        let remembered = match sticky_caller {
            Some(caller) => sticky::lend_remembered(&mut txn, group, caller, now)?,
            None => None,
        };
        let taken = match remembered {
            Some(number) => Take::Number(number),
            None => {
                let reads = (&mut unseen, assume_free);
                take_number(&mut txn, (group, policy), ask, now, rng, reads)?
            }
        };
        let (number, access_code, expires_at) = match taken {
            Take::Number(number) => {
                let access_code = lend_whole(&mut txn, ask, group, &number, expires_at, rng)?;
                (number, access_code, expires_at)
            }
            Take::Seat(record) => {
                let number = record.number.clone();
                let at = (now, expires_at);
                let (access_code, expires_at) =
                    shared::seat(&mut txn, group, policy, record, ask, at, rng)?;
                (number, access_code, expires_at)
            }
            // Keep what was done on the way (numbers skipped after a pool change), so
            // the next call does not redo it; a plain exhausted ring writes nothing.
            Take::Exhausted => {
                let retry_at = first_lendable(&mut txn, group, policy, now)?;
                match txn.commit_for_outcome()? {
                    Outcome::Committed => return Ok(Lent::Exhausted { retry_at }),
                    Outcome::Conflict { on_assumed } => assume_free &= !on_assumed,
                }
                unseen = None;
                continue;
            }
            Take::Unfinished => {
                if let Outcome::Conflict { on_assumed } = txn.commit_for_outcome()? {
                    assume_free &= !on_assumed;
                    unseen = None;
                }
                continue;
            }
        };
        txn.put(holder, digits(&number).into_bytes());
        let placed = Placed {
            access: AccessInfo {
                access_number: number,
                access_code,
                expiration_time: ask.timeout,
                expires_at,
            },
            resource_group: group.name.clone(),
        };
        match txn.commit_for_outcome()? {
            Outcome::Committed => return Ok(Lent::Placed(placed)),
            Outcome::Conflict { on_assumed } => assume_free &= !on_assumed,
        }
        // Lost to another commit: what this one looked at is to be looked at again.
        unseen = None;
    }
    Err(contended())
}

/// Reserve `number` of `group` whole for `ask` until `expires_at`; answers its code.
fn lend_whole<I: Imports, R: Rng>(
    txn: &mut Txn<'_, I>,
    ask: &Ask<'_>,
    group: &Group,
    number: &str,
    expires_at: u64,
    rng: &mut R,
) -> Result<Option<String>, Error> {
    let ring_id = ring::open(txn, group)?.id();
    let access_code = ask
        .request
        .provide_code
        .then(|| access_code(ask.access_code_length, rng));
    let number_digits = digits(number);
    let reservation = Reservation {
        service_id: ask.request.service_id.clone(),
        group: group.name.clone(),
        number: number.to_string(),
        code: access_code.clone(),
        caller_digits: ask.caller_digits.clone(),
        expires_at,
        failed_attempts: 0,
        pool_id: ring_id,
        asked_group: (group.name != ask.group).then(|| ask.group.to_string()),
        lease: Some(Lease {
            created_at: expires_at.saturating_sub(u64::from(ask.timeout) * 1000),
            timeout: ask.timeout,
        }),
    };
    txn.put(keys::reservation(&number_digits), reservation.encode());
    txn.put(
        keys::expiry(&group.name, expires_at, &number_digits),
        Vec::new(),
    );
    txn.record(events::of_reservation(
        EventKind::Created,
        &reservation,
        None,
    ));
    Ok(access_code)
}

/// End `service_id`'s reservation in `group_name`, on the number whose digits its holder
/// key `holder` names (`back`: its group, if the caller has it). Answers the number and
/// when the reservation expires; `None` if the key named no such reservation (it is
/// deleted).
fn end_held<I: Imports>(
    txn: &mut Txn<'_, I>,
    (holder, held): (&str, &str),
    (service_id, group_name): (&str, &str),
    (back, why): (Option<&Group>, EventKind),
    now: u64,
) -> Result<Option<(String, u64)>, Error> {
    match read_holding(txn, held)? {
        Some(Holding::One(res)) if res.held_in(service_id, group_name) => {
            // One that had expired ended unmatched, whoever asks after it.
            let why = if res.expires_at > now {
                why
            } else {
                EventKind::Expired
            };
            end_reservation(txn, &res, (Number::Back(back), (why, None)), now)?;
            return Ok(Some((res.number, res.expires_at)));
        }
        Some(Holding::Shared(record)) => {
            if let Some((seat, expires_at)) = record.seat_of(service_id, group_name) {
                let number = record.number.clone();
                let policy = txn.imports().policy(&record.group);
                let why = if expires_at > now {
                    why
                } else {
                    EventKind::Expired
                };
                txn.record(events::of_seat(why, &record, seat, None));
                shared::end(txn, record, seat, &policy, now)?;
                return Ok(Some((number, expires_at)));
            }
        }
        _ => {}
    }
    txn.delete(holder.to_string());
    Ok(None)
}

/// When an exhausted `group` is first known to lend again: its first resting number
/// becomes usable, or its first reservation expires and (under `policy`) rests. A
/// release or a match may free a number sooner. Two reads of one key each (plus one per
/// key this transaction deleted in the range).
fn first_lendable<I: Imports>(
    txn: &mut Txn<'_, I>,
    group: &Group,
    policy: &Policy,
    now: u64,
) -> Result<Option<u64>, Error> {
    let ring = ring::open(txn, group)?;
    let resting = ring::first_usable_at(txn, group, &ring)?;
    let (start, end) = keys::expired_by(&group.name, u64::MAX);
    let expiring = txn
        .first_key(&start, &end)?
        .and_then(|key| keys::expiry_instant(&key))
        .map(|expires_at| {
            let grace_over = expires_at.saturating_add(u64::from(policy.match_grace) * 1000);
            ring::rested(policy, expires_at).max(grace_over)
        });
    Ok(earliest(resting, expiring).map(|at| at.max(now)))
}

/// The companion `match-interaction`: find the reservation an incoming call was made
/// for, and release it.
pub fn match_access<I: Imports>(imports: &mut I, request: &MatchRequest) -> Result<Matched, Error> {
    let number_digits = validate::phone_number("_access_number", &request.access_number)?;
    if let Some(code) = &request.access_code {
        validate::access_code(code)?;
    }
    let caller_digits = validate::caller_number(request.phone_number.as_deref())?;

    for _ in 0..MAX_ATTEMPTS {
        let now = imports.now();
        let mut txn = Txn::new(imports);
        let caller = caller_digits.as_deref();
        let mut res = match read_holding(&mut txn, &number_digits)? {
            None => {
                // A misrouted caller: told to the host, checked against a reservation
                // made meanwhile (the commit's precondition), and then no match.
                txn.record(events::unreserved(&request.access_number, caller));
                if txn.commit()? {
                    return Err(Error::NoMatch);
                }
                continue;
            }
            Some(Holding::One(res)) => res,
            Some(Holding::Shared(record)) => {
                let code = request.access_code.as_deref();
                let outcome = shared::match_call(&mut txn, record, code, caller, now)?;
                if txn.commit()? {
                    return outcome;
                }
                continue;
            }
        };
        // A late call, within the group's grace window, still matches.
        let outcome = if !in_grace(txn.imports(), &res, now) {
            let ended = (Number::Back(None), (EventKind::Expired, None));
            end_reservation(&mut txn, &res, ended, now)?;
            txn.record(events::unreserved(&request.access_number, caller));
            Err(Error::NoMatch)
        } else if let (Some(want), Some(got)) = (&res.caller_digits, &caller_digits)
            && want != got
        {
            // A call from another number: not this reservation's caller. Nothing changes.
            return Err(Error::NoMatch);
        } else {
            let right = match (&res.code, &request.access_code) {
                (None, _) => true,
                // The caller has not typed the code yet: no match, and no strike.
                (Some(_), None) => return Err(Error::NoMatch),
                (Some(want), Some(got)) => bool::from(want.as_bytes().ct_eq(got.as_bytes())),
            };
            match right {
                true => {
                    // A sliding expiry keeps the reservation for the session's next call.
                    if lease::slide(&mut txn, &mut res, now)? {
                        txn.record(events::of_reservation(EventKind::Matched, &res, caller));
                    } else {
                        let ended = (Number::Back(None), (EventKind::Matched, caller));
                        end_reservation(&mut txn, &res, ended, now)?;
                    }
                    Ok(Matched {
                        service_id: res.service_id.clone(),
                        resource_group: res.group.clone(),
                    })
                }
                false => {
                    res.failed_attempts += 1;
                    if res.failed_attempts >= txn.imports().options().max_code_attempts {
                        let ended = (Number::Back(None), (EventKind::Revoked, caller));
                        end_reservation(&mut txn, &res, ended, now)?;
                        Err(Error::TooManyAttempts)
                    } else {
                        txn.record(events::of_reservation(EventKind::WrongCode, &res, caller));
                        txn.put(keys::reservation(&number_digits), res.encode());
                        Err(Error::NoMatch)
                    }
                }
            }
        };
        if txn.commit()? {
            return outcome;
        }
    }
    Err(contended())
}

/// Give the service's reservation in `group` back; answers the number released. A
/// group retired from the configuration still releases the reservations it holds (their
/// numbers go back to no ring); with none, it is an unknown group.
pub fn release<I: Imports>(
    imports: &mut I,
    service_id: &str,
    group_name: &str,
) -> Result<String, Error> {
    validate::service_id(service_id)?;
    let group = match group_of(imports, group_name) {
        Ok(group) => Some(group),
        Err(Error::UnknownResourceGroup(_)) => None,
        Err(other) => return Err(other),
    };
    let nothing_held = || match &group {
        Some(_) => Error::NoMatch,
        None => Error::UnknownResourceGroup(group_name.to_string()),
    };
    for _ in 0..MAX_ATTEMPTS {
        let now = imports.now();
        let mut txn = Txn::new(imports);
        let holder = keys::holder(group_name, service_id);
        let Some(held) = lookup::held(&mut txn, &holder)? else {
            return Err(nothing_held());
        };
        let ended = end_held(
            &mut txn,
            (&holder, &held),
            (service_id, group_name),
            (group.as_ref(), EventKind::Released),
            now,
        )?;
        let outcome = match ended {
            Some((number, expires_at)) if expires_at > now => Ok(number),
            Some(_) => Err(Error::NoMatch),
            None => Err(nothing_held()),
        };
        if txn.commit()? {
            return outcome;
        }
    }
    Err(contended())
}

/// Occupancy of a group: `free` counts the numbers a `create` could be lent now, `live`
/// the others (held, in a grace window, or resting after a reservation). O(expired
/// reservations not reclaimed yet, and numbers that finished resting since the ring was
/// last used) once its ring is settled; until then (after its numbers changed, until
/// every reservation made before has ended) O(reservations of every group), counted
/// exactly.
pub fn pool_status<I: Imports>(imports: &mut I, group_name: &str) -> Result<PoolStatus, Error> {
    let group = group_of(imports, group_name)?;
    let policy = imports.policy(&group.name);
    // A number is free once its reservation expired and both its grace window and its
    // rest are over (the configuration keeps the grace window within the rest).
    let rest_ms = u64::from(policy.reuse_cooldown.max(policy.match_grace)) * 1000;
    let now = imports.now();
    let mut txn = Txn::new(imports);
    let ring = ring::open(&mut txn, &group)?;
    let (rested, resting, _) = ring::resting(&mut txn, &group, &ring, now)?;
    let size = u64::from(group.size);
    let free = if ring::settled(&mut txn, &ring)? {
        // Every free number is usable on the ring or held by an expired reservation of
        // the group that is not reclaimed yet, and only the ring's numbers are held by
        // the group. The index also holds entries of numbers parked by rings of other
        // pools, which a settled ring's pool does not have.
        // A shared number is counted already unless it is full; full, the first of its
        // seats to expire (and rest) frees it.
        let (start, end) = keys::expired_by(&group.name, now.saturating_sub(rest_ms));
        let mut freed = std::collections::BTreeSet::new();
        let mut unreadable = None;
        let expired = count_range(&mut txn, start, &end, |txn, entry| {
            let Some(d) = keys::digits_of_expiry(&entry.key) else {
                return false;
            };
            if txn.imports().index_of(&group.name, d).is_none() {
                return false;
            }
            if !policy.shared() {
                return true;
            }
            match read_holding(txn, d) {
                Ok(Some(Holding::Shared(record))) => {
                    !record.ring_counts_free(now) && freed.insert(d.to_string())
                }
                Ok(_) => true,
                Err(e) => {
                    unreadable = Some(e);
                    false
                }
            }
        })?;
        if let Some(e) = unreadable {
            return Err(e);
        }
        (ring.len() + rested + expired).min(size)
    } else {
        let (held, foreign, freed) = count_holders(&mut txn, &group, ring.id(), now, rest_ms)?;
        if foreign == 0 {
            // Only this group's ring lends its numbers from now on (numbers belong to one
            // group), so the count stays settled; the commit checks that the ring is
            // still the one counted. Settling only makes the next status cheaper: this
            // answer is exact either way, so a conflict or a store failure changes
            // nothing for the caller.
            ring::settle(&mut txn, &group)?;
            let _ = txn.commit();
        }
        (size + freed).saturating_sub(held + resting)
    } as u32;
    Ok(PoolStatus {
        size: group.size,
        live: group.size - free,
        free,
    })
}

/// How many entries of `start..end` satisfy `keep`, reading [`STATUS_PAGE`] at a time.
fn count_range<I: Imports>(
    txn: &mut Txn<'_, I>,
    mut start: String,
    end: &str,
    mut keep: impl FnMut(&mut Txn<'_, I>, &Entry) -> bool,
) -> Result<u64, Error> {
    // Not preconditions: new entries can appear in the range anyway, and the counts
    // stay exact without them (see `pool_status`).
    let mut count = 0;
    loop {
        let page = txn.scan_unrecorded(&start, end, STATUS_PAGE)?;
        for entry in &page {
            count += u64::from(keep(txn, entry));
        }
        match page.last() {
            // The smallest key after the last one seen.
            Some(last) if page.len() == STATUS_PAGE as usize => start = format!("{}\0", last.key),
            _ => return Ok(count),
        }
    }
}

/// Of every stored reservation: how many hold a number of `group`'s pool and are live,
/// in a grace window or resting (`rest_ms` after expiry), and how many the settled count
/// would get wrong (not taken from ring `ring_id` of this group, or holding a number the
/// group no longer has). A shared number counts as one, held while it is full; the
/// third count is of full shared numbers that wait in the resting index though a seat
/// has expired and rested since (which the caller counts resting).
fn count_holders<I: Imports>(
    txn: &mut Txn<'_, I>,
    group: &Group,
    ring_id: u64,
    now: u64,
    rest_ms: u64,
) -> Result<(u64, u64, u64), Error> {
    let (start, end) = keys::all_reservations();
    let mut live = 0;
    let mut foreign = 0;
    let mut freed = 0;
    let mut undecodable = None;
    count_range(txn, start, &end, |txn, entry| {
        // The number, its group and ring, until when it is held, and whether it waits in
        // the resting index though free.
        let (number, holder_group, holder_ring, held_until, waits_free) =
            match Holding::decode(&entry.key, &entry.value) {
                Ok(Holding::One(res)) => (
                    res.number,
                    res.group,
                    res.pool_id,
                    Some(res.expires_at),
                    false,
                ),
                Ok(Holding::Shared(record)) => {
                    let rested = |at: u64| at.saturating_add(rest_ms) <= now;
                    let (held_until, waits_free) = match record.queue {
                        Queue::Off => (record.first_expiry(), false),
                        Queue::Resting(until) if until > now => {
                            (None, record.first_expiry().is_some_and(rested))
                        }
                        _ => (None, false),
                    };
                    let (number, group) = (record.number, record.group);
                    (number, group, record.ring_id, held_until, waits_free)
                }
                Err(e) => {
                    undecodable = Some(e);
                    return false;
                }
            };
        let in_pool = txn.imports().index_of(&group.name, &number).is_some();
        let ours = holder_group == group.name;
        if in_pool && held_until.is_some_and(|at| at.saturating_add(rest_ms) > now) {
            live += 1;
        }
        freed += u64::from(in_pool && waits_free);
        if (in_pool || ours) && !(ours && in_pool && holder_ring == ring_id) {
            foreign += 1;
        }
        false
    })?;
    match undecodable {
        Some(e) => Err(e),
        None => Ok((live, foreign, freed)),
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    /// Pearson's chi-square of observed counts against a uniform expectation.
    fn chi_square(counts: &[u64]) -> f64 {
        let total: u64 = counts.iter().sum();
        let expected = total as f64 / counts.len() as f64;
        counts
            .iter()
            .map(|&c| (c as f64 - expected).powi(2) / expected)
            .sum()
    }

    #[test]
    fn code_digits_are_uniform_overall_and_at_every_position() {
        // 100,000 codes of 6 digits. With 9 degrees of freedom, chi-square above 27.88
        // happens by chance once in 1,000; a modulo-biased `byte % 10` scores ~110 here.
        let mut rng = StdRng::seed_from_u64(2026);
        let mut overall = [0u64; 10];
        let mut by_position = [[0u64; 10]; 6];
        for _ in 0..100_000 {
            let code = super::access_code(6, &mut rng);
            assert_eq!(code.len(), 6);
            for (position, digit) in code.bytes().enumerate() {
                let d = usize::from(digit - b'0');
                overall[d] += 1;
                by_position[position][d] += 1;
            }
        }
        assert!(chi_square(&overall) < 27.88, "overall {overall:?}");
        for counts in &by_position {
            assert!(chi_square(counts) < 27.88, "position {counts:?}");
        }
    }

    #[test]
    fn the_chi_square_check_catches_modulo_bias() {
        // The same measure applied to the naive method: it must fail, or the test above
        // proves nothing.
        let mut rng = StdRng::seed_from_u64(2026);
        let mut counts = [0u64; 10];
        for _ in 0..600_000 {
            counts[usize::from(rand::Rng::next_u32(&mut rng) as u8 % 10)] += 1;
        }
        assert!(chi_square(&counts) > 27.88, "{counts:?}");
    }
}
