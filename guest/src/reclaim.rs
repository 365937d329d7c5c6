//! Reclaiming: each create first ends a bounded batch of its group's reservations whose
//! grace window is over ([`Grace`]), so that an expired reservation never holds a number
//! the pool is called exhausted for, and the rings that parked numbers get them back.

use crate::api::{Error, EventKind, Group, Imports, KeyRange, Policy};
use crate::ending::{Number, end_reservation};
use crate::events;
use crate::keys;
use crate::lookup::read_holding;
use crate::policy::{Grace, Shared};
use crate::records::{Holding, SeatState, SharedNumber};
use crate::txn::Txn;
use crate::validate::digits;

/// Expired reservations a `create` reclaims before taking a number. At least one, so
/// an expired reservation is always reclaimed before the pool is called exhausted.
const RECLAIM_BATCH: u32 = 4;

/// The expiry-index entries [`reclaim_expired`] looks at: those of `group` due by `now`
/// under `policy`'s grace window, the earliest [`RECLAIM_BATCH`].
pub fn reclaim_range(group: &Group, policy: &Policy, now: u64) -> KeyRange {
    let (start, end) = keys::expired_by(&group.name, Grace::of(policy).expired_by(now));
    KeyRange {
        start,
        end,
        limit: RECLAIM_BATCH,
    }
}

/// Reclaim up to [`RECLAIM_BATCH`] reservations that expired by `now` from `group`'s
/// expiry index (`policy` is the group's): the group's own, and other rings' holding
/// numbers the group parked.
pub fn reclaim_expired<I: Imports>(
    txn: &mut Txn<'_, I>,
    group: &Group,
    policy: &Policy,
    now: u64,
) -> Result<(), Error> {
    let grace = Grace::of(policy);
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
                grace.over_at(res.expires_at) <= now
            } else {
                !Grace::matches(txn.imports(), &res, now)
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
        let record_policy = txn.imports().policy(&record.group);
        if let Some(latest) = Shared::of(&record_policy).end_expired(txn, record, now)? {
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
            Shared::of(policy).end(txn, record, seat, now)
        }
        // An entry whose seat ended.
        None => Ok(()),
    }
}
