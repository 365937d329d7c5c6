//! The seed's Create: reserve a number of the group for the service. A loop of optimistic
//! transactions: read what it needs, decide, commit everything at once; on a conflict,
//! read again.
//!
//! Every pool policy has a say in a create ([`crate::policy`]): it reclaims expired
//! reservations first ([`crate::reclaim`], under [`Grace`]), forgets ended memories and
//! lends a caller their last number ([`Sticky`]), wakes rested numbers ([`CoolOff`]),
//! prefers a local number ([`Local`]), seats a shared number ([`Shared`]), and, exhausted,
//! lends from the group's fallback ([`Fallback`]).

use rand::Rng;

use crate::api::{
    AccessInfo, CreateRequest, Error, EventKind, Group, Imports, Placed, Policy, Refused,
};
use crate::ask::{Ask, access_code};
use crate::ending::{Number, end_held, end_reservation};
use crate::events;
use crate::keys;
use crate::lookup::{self, MAX_ATTEMPTS, contended, group_of, read_holding};
use crate::policy::{CoolOff, Fallback, Grace, Local, Shared, Sticky};
use crate::reclaim::{reclaim_expired, reclaim_range};
use crate::records::{Holding, Lease, Reservation, SharedNumber};
use crate::ring::{self, Ring};
use crate::txn::{Outcome, Txn};
use crate::validate::{self, digits};

/// Ring entries one transaction of a `create` looks at before committing what it did:
/// after a pool change the ring may begin with many numbers still held, and one commit
/// must stay within the store's key limit.
const TAKE_BATCH: u64 = 64;

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
    // One hop: the fallback group's own fallback is not followed.
    let refused = |retry_at| Refused {
        error: Error::NoAccessNumberAvailable(group.name.clone()),
        retry_at,
    };
    let Some((fallback, fallback_policy)) = Fallback::of(&policy).group(imports, &group) else {
        return Err(refused(exhausted));
    };
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
    let sticky = Sticky::of(policy);
    let mut unseen = None;
    // Until a commit finds a number on the ring held after all (see `take_number`).
    let mut assume_free = true;
    for _ in 0..MAX_ATTEMPTS {
        let now = imports.now();
        let expires_at = now.saturating_add(u64::from(ask.timeout) * 1000);
        let mut txn = Txn::new(imports);
        // The service's reservation in the requested group, wherever its number came from.
        let holder = keys::holder(ask.group, &request.service_id);
        let sticky_caller = sticky.caller(ask.caller_digits.as_deref());
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
        sticky.forget_ended(&mut txn, group, now)?;

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
            Some(caller) => sticky.lend(&mut txn, group, caller, now)?,
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
                    Shared::of(policy).seat(&mut txn, group, record, ask, at, rng)?;
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
    let (cool_off, sticky) = (CoolOff::of(policy), Sticky::of(policy));
    cool_off.wake(txn, group, &sticky, now)?;
    let ring = ring::open(txn, group)?;
    let unseen = unseen.get_or_insert(ring.len());
    // A number local to the caller first, where the group prefers one.
    let local = Local::of(policy, ask.caller_digits.as_deref());
    for _ in 0..TAKE_BATCH {
        let prefer = |txn: &mut Txn<'_, I>, ring: &Ring, free| match &local {
            Some(local) => local.offset(txn, group, ring, free),
            None => Ok(None),
        };
        // A number a random draw moves is followed by whoever remembers it.
        let moved = |txn: &mut Txn<'_, I>, moved| sticky.moved(txn, group, moved);
        let Some(index) = ring::pop(txn, group, rng, *unseen, prefer, moved)? else {
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
            Some(Holding::One(stale)) if !Grace::matches(txn.imports(), &stale, now) => {
                let kept = Number::Kept {
                    group: &group.name,
                    ring_id: ring.id(),
                };
                end_reservation(txn, &stale, (kept, (EventKind::Expired, None)), now)?;
                let usable_at = cool_off.usable_at(stale.expires_at);
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
        if let Some(record) = Shared::of(policy).claim(txn, group, free, claimed, ask, now)? {
            return Ok(Take::Seat(record));
        }
    }
    Ok(Take::Unfinished)
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
    let resting = CoolOff::first_usable_at(txn, group, &ring)?;
    let (start, end) = keys::expired_by(&group.name, u64::MAX);
    let expiring = txn
        .first_key(&start, &end)?
        .and_then(|key| keys::expiry_instant(&key))
        .map(|expires_at| {
            let grace_over = Grace::of(policy).over_at(expires_at);
            CoolOff::of(policy).usable_at(expires_at).max(grace_over)
        });
    Ok(earliest(resting, expiring).map(|at| at.max(now)))
}
