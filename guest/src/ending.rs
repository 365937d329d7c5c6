//! Ending a reservation (or a seat of a shared number): what points at it goes, and its
//! number goes back to its ring, or to the ring that parked it, or nowhere. Every
//! operation that ends one (a create replacing or reclaiming, a match, a release) ends it
//! here, and here the pool policies are asked what becomes of the number: when it may be
//! lent again ([`CoolOff`]), who remembers it ([`Sticky`]), and, for a seat, what is left
//! of the shared number ([`Shared`]).

use std::borrow::Cow;

use crate::api::{Error, EventKind, Group, Imports};
use crate::events;
use crate::keys;
use crate::lookup::read_holding;
use crate::policy::{CoolOff, Shared, Sticky};
use crate::records::{Holding, Reservation};
use crate::ring;
use crate::txn::Txn;
use crate::validate::digits;

/// What becomes of an ended reservation's number.
pub enum Number<'g> {
    /// Back on its group's ring; the group, if the caller already has it (one host call
    /// less).
    Back(Option<&'g Group>),
    /// Nowhere: the caller takes it from ring `ring_id` of `group`.
    Kept { group: &'g str, ring_id: u64 },
}

/// Why a reservation ended, for its event: what happened, and who called if a call did.
pub type Ended<'c> = (EventKind, Option<&'c str>);

/// Remove a reservation and everything pointing at it, and give its number back or not.
pub fn end_reservation<I: Imports>(
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
                let usable_at = CoolOff::of(&policy).usable_at(ended_at);
                let sticky = Sticky::of(&policy);
                let keeper = sticky.keeper(txn, group, res, index)?;
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
                    sticky.returned(txn, group, res, (index, place), now)?;
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
    // taker keeps it, that ring meets it held again and parks it again), to rest for its
    // group's cool-off from the end.
    let rest = |txn: &mut Txn<'_, I>, group: &str| {
        CoolOff::of_group(txn.imports(), group).usable_at(ended_at)
    };
    ring::unpark(txn, &res.number, res.expires_at, now, rest)?;
    Ok(())
}

/// End `service_id`'s reservation in `group_name`, on the number whose digits its holder
/// key `holder` names (`back`: its group, if the caller has it). Answers the number and
/// when the reservation expires; `None` if the key named no such reservation (it is
/// deleted).
pub fn end_held<I: Imports>(
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
                Shared::of(&policy).end(txn, record, seat, now)?;
                return Ok(Some((number, expires_at)));
            }
        }
        _ => {}
    }
    txn.delete(holder.to_string());
    Ok(None)
}
