//! Sticky numbers: a group with a `sticky-memory` remembers the number each caller
//! (by the digits of `_phone_number`) was given last, from the end of that reservation,
//! and lends it to that caller again while it is free, without waiting for its cool-off.
//!
//! A memory is two keys plus one per number: `c␟{group}␟{caller}` ([`Remembered`]: the
//! ring, the pool index, where the number waits, until when), `y␟{group}␟{until}␟{caller}`
//! (the index that forgets it), and `o␟{group}␟{ring}␟{index}` (the caller who remembers
//! the number: its last one; an earlier caller's memory of it is dropped). About 150
//! bytes per caller, written when a reservation naming a caller ends. A caller remembers
//! one number and a number is remembered by one caller, so a group holds at most one
//! memory per number. A memory ends `sticky-memory` seconds after it was written, and
//! each create of the group forgets up to [`FORGET_BATCH`] ended ones: every memory was
//! written at the end of a reservation some create made, so they go as fast as they come.
//!
//! Where a free number waits is kept exact, so finding it costs O(1): its resting key, or
//! its ring position, updated whenever it moves (woken onto the ring, swapped by a random
//! draw, or moved into the place of another caller's number taken out of the ring).

use crate::api::{Error, Group, Imports, Policy};
use crate::keys;
use crate::lookup::read_holding;
use crate::records::{Place, Remembered, Reservation, decode, encode};
use crate::ring;
use crate::txn::Txn;
use crate::validate::digits;

/// Memories a `create` of a sticky group forgets once they have ended.
const FORGET_BATCH: u32 = 2;

/// Remember `memory` as `caller`'s last number in `group`, in place of any earlier one.
fn remember<I: Imports>(
    txn: &mut Txn<'_, I>,
    group: &Group,
    caller: &str,
    memory: Remembered,
) -> Result<(), Error> {
    // This caller's earlier number, if any, is no longer theirs to remember.
    drop_memory(txn, group, caller)?;
    // Nor is this number another caller's any more.
    if let Some(other) = rememberer(txn, group, memory.ring_id, memory.index)? {
        drop_memory(txn, group, &other)?;
    }
    txn.put(
        keys::forgetting(&group.name, memory.until, caller),
        Vec::new(),
    );
    txn.put(
        keys::remembered_by(&group.name, memory.ring_id, memory.index),
        caller.as_bytes().to_vec(),
    );
    txn.put(keys::remembered(&group.name, caller), encode(&memory));
    Ok(())
}

/// `caller`'s memory in `group`, if any.
fn memory_of<I: Imports>(
    txn: &mut Txn<'_, I>,
    group: &Group,
    caller: &str,
) -> Result<Option<Remembered>, Error> {
    let key = keys::remembered(&group.name, caller);
    txn.get(&key)?
        .map(|b| decode::<Remembered>(&key, b))
        .transpose()
}

/// Delete `caller`'s memory in `group` and the keys that point at it.
fn drop_memory<I: Imports>(txn: &mut Txn<'_, I>, group: &Group, caller: &str) -> Result<(), Error> {
    let Some(memory) = memory_of(txn, group, caller)? else {
        return Ok(());
    };
    txn.delete(keys::remembered(&group.name, caller));
    txn.delete(keys::forgetting(&group.name, memory.until, caller));
    let by = keys::remembered_by(&group.name, memory.ring_id, memory.index);
    if txn.get(&by)? == Some(caller.as_bytes()) {
        txn.delete(by);
    }
    Ok(())
}

/// Forget up to [`FORGET_BATCH`] of `group`'s remembered numbers whose memory ended by
/// `now` (see the module's notes on why that keeps up).
pub fn forget_callers<I: Imports>(
    txn: &mut Txn<'_, I>,
    group: &Group,
    now: u64,
) -> Result<(), Error> {
    let (start, end) = keys::forgotten_by(&group.name, now);
    for (key, _) in txn.scan(&start, &end, FORGET_BATCH)? {
        txn.delete(key.clone());
        let Some((until, caller)) = keys::parse_forgetting(&key) else {
            continue;
        };
        if memory_of(txn, group, caller)?.is_some_and(|m| m.until == until) {
            drop_memory(txn, group, caller)?;
        }
    }
    Ok(())
}

/// Lend `caller` the number they were given last in `group`, if it is remembered and
/// free (on the ring, or resting: the same caller need not wait for its cool-off).
pub fn lend_remembered<I: Imports>(
    txn: &mut Txn<'_, I>,
    group: &Group,
    caller: &str,
    now: u64,
) -> Result<Option<String>, Error> {
    let Some(memory) = memory_of(txn, group, caller)? else {
        return Ok(None);
    };
    if memory.until <= now || memory.ring_id != ring::open(txn, group)?.id() {
        return Ok(None);
    }
    let Some(number) = txn.imports().number_at(&group.name, memory.index) else {
        return Ok(None);
    };
    if read_holding(txn, &digits(&number))?.is_some() {
        return Ok(None);
    }
    Ok(ring::take_remembered(txn, group, memory.index, memory.place)?.then_some(number))
}

/// `caller`'s memory of number `(ring_id, index)` now says `to`, if it says `from`
/// (`None`: wherever it said).
pub fn follow<I: Imports>(
    txn: &mut Txn<'_, I>,
    group: &Group,
    caller: &str,
    (ring_id, index, from): (u64, u32, Option<Place>),
    to: Place,
) -> Result<(), Error> {
    let Some(mut memory) = memory_of(txn, group, caller)? else {
        return Ok(());
    };
    if (memory.ring_id, memory.index) == (ring_id, index)
        && from.is_none_or(|from| from == memory.place)
    {
        memory.place = to;
        txn.put(keys::remembered(&group.name, caller), encode(&memory));
    }
    Ok(())
}

/// Who remembers number `(ring_id, index)` of `group`, if anyone.
pub fn rememberer<I: Imports>(
    txn: &mut Txn<'_, I>,
    group: &Group,
    ring_id: u64,
    index: u32,
) -> Result<Option<String>, Error> {
    let key = keys::remembered_by(&group.name, ring_id, index);
    Ok(txn
        .get(&key)?
        .map(|b| String::from_utf8_lossy(b).into_owned()))
}

/// The memory of whoever remembers number `(ring_id, index)` of `group` now says `to`,
/// if it says `from` (`None`: wherever it said, for a number that came back from a
/// reservation naming no caller).
pub fn follow_number<I: Imports>(
    txn: &mut Txn<'_, I>,
    group: &Group,
    from: (u64, u32, Option<Place>),
    to: Place,
) -> Result<(), Error> {
    match rememberer(txn, group, from.0, from.1)? {
        Some(caller) => follow(txn, group, &caller, from, to),
        None => Ok(()),
    }
}

/// Who remembers the number at pool index `index` once `ended` gives it back to ring
/// `ended.pool_id` of `group` under `policy`: the reservation's caller from now on, or
/// whoever remembered it before. `None` outside a sticky group.
pub fn keeper<I: Imports>(
    txn: &mut Txn<'_, I>,
    group: &Group,
    policy: &Policy,
    ended: &Reservation,
    index: u32,
) -> Result<Option<String>, Error> {
    match (&ended.caller_digits, policy.sticky()) {
        (_, false) => Ok(None),
        (Some(caller), true) => Ok(Some(caller.clone())),
        (None, true) => rememberer(txn, group, ended.pool_id, index),
    }
}

/// `ended`'s number (pool index `index`) went back to `place` at `now`: its caller
/// remembers it from now on, or whoever remembered it learns where it waits.
pub fn returned<I: Imports>(
    txn: &mut Txn<'_, I>,
    group: &Group,
    policy: &Policy,
    ended: &Reservation,
    (index, place): (u32, Place),
    now: u64,
) -> Result<(), Error> {
    if !policy.sticky() {
        return Ok(());
    }
    match &ended.caller_digits {
        Some(caller) => {
            let memory = Remembered {
                ring_id: ended.pool_id,
                index,
                until: now.saturating_add(u64::from(policy.sticky_memory) * 1000),
                place,
            };
            remember(txn, group, caller, memory)
        }
        None => follow_number(txn, group, (ended.pool_id, index, None), place),
    }
}
