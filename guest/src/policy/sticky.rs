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
//! draw, or moved into the place of another caller's number taken out of the ring: the
//! ring tells of each as a [`Moved`]).

use crate::api::{Error, Group, Imports, Policy};
use crate::keys;
use crate::lookup::read_holding;
use crate::records::{Place, Remembered, Reservation, decode, encode};
use crate::ring::{self, Moved};
use crate::txn::Txn;
use crate::validate::digits;

/// A group's sticky numbers: the policy's entry point.
#[derive(Debug, Clone, Copy)]
pub struct Sticky {
    /// Seconds a caller's last number is remembered; 0: the group remembers none (no
    /// `sticky-memory`, or numbers shared by code).
    memory: u32,
}

impl Sticky {
    /// The sticky numbers of a group with `policy`.
    pub fn of(policy: &Policy) -> Sticky {
        Sticky {
            memory: match policy.sticky() {
                true => policy.sticky_memory,
                false => 0,
            },
        }
    }

    /// Whether the group lends a caller their last number again.
    pub fn remembers(&self) -> bool {
        self.memory > 0
    }

    /// `caller`, if the group remembers callers' numbers: whose memory a create uses.
    pub fn caller<'c>(&self, caller: Option<&'c str>) -> Option<&'c str> {
        caller.filter(|_| self.remembers())
    }

    /// Forget up to [`FORGET_BATCH`] of `group`'s remembered numbers whose memory ended
    /// by `now` (see the module's notes on why that keeps up), if the group remembers.
    pub fn forget_ended<I: Imports>(
        &self,
        txn: &mut Txn<'_, I>,
        group: &Group,
        now: u64,
    ) -> Result<(), Error> {
        match self.remembers() {
            true => forget_callers(txn, group, now),
            false => Ok(()),
        }
    }

    /// Lend `caller` the number they were given last in `group`, if it is remembered and
    /// free (on the ring, or resting: the same caller need not wait for its cool-off).
    /// `caller` is one from [`Sticky::caller`].
    pub fn lend<I: Imports>(
        &self,
        txn: &mut Txn<'_, I>,
        group: &Group,
        caller: &str,
        now: u64,
    ) -> Result<Option<String>, Error> {
        lend_remembered(txn, group, caller, now)
    }

    /// A free number of `group` moved on its ring: whoever remembers it learns where it
    /// waits now, if the group remembers.
    pub fn moved<I: Imports>(
        &self,
        txn: &mut Txn<'_, I>,
        group: &Group,
        moved: Moved,
    ) -> Result<(), Error> {
        match self.remembers() {
            true => follow_number(txn, group, moved),
            false => Ok(()),
        }
    }

    /// A resting number of `group` whose entry names `caller` was woken onto the ring:
    /// the caller's memory follows it, whatever the group's setting now (the entry was
    /// written while it remembered).
    pub fn woke<I: Imports>(
        &self,
        txn: &mut Txn<'_, I>,
        group: &Group,
        caller: &str,
        woken: Moved,
    ) -> Result<(), Error> {
        follow(txn, group, caller, woken)
    }

    /// Who remembers the number at pool index `index` once `ended` gives it back to ring
    /// `ended.pool_id` of `group`: the reservation's caller from now on, or whoever
    /// remembered it before. `None` if the group does not remember.
    pub fn keeper<I: Imports>(
        &self,
        txn: &mut Txn<'_, I>,
        group: &Group,
        ended: &Reservation,
        index: u32,
    ) -> Result<Option<String>, Error> {
        match (&ended.caller_digits, self.remembers()) {
            (_, false) => Ok(None),
            (Some(caller), true) => Ok(Some(caller.clone())),
            (None, true) => rememberer(txn, group, ended.pool_id, index),
        }
    }

    /// `ended`'s number (pool index `index`) went back to `place` at `now`: its caller
    /// remembers it from now on, or whoever remembered it learns where it waits.
    pub fn returned<I: Imports>(
        &self,
        txn: &mut Txn<'_, I>,
        group: &Group,
        ended: &Reservation,
        (index, place): (u32, Place),
        now: u64,
    ) -> Result<(), Error> {
        if !self.remembers() {
            return Ok(());
        }
        match &ended.caller_digits {
            Some(caller) => {
                let memory = Remembered {
                    ring_id: ended.pool_id,
                    index,
                    until: now.saturating_add(u64::from(self.memory) * 1000),
                    place,
                };
                remember(txn, group, caller, memory)
            }
            None => {
                let moved = Moved {
                    ring_id: ended.pool_id,
                    index,
                    from: None,
                    to: place,
                };
                follow_number(txn, group, moved)
            }
        }
    }
}

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
/// `now`.
fn forget_callers<I: Imports>(txn: &mut Txn<'_, I>, group: &Group, now: u64) -> Result<(), Error> {
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

/// [`Sticky::lend`].
fn lend_remembered<I: Imports>(
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
    let place = (memory.index, memory.place);
    // The ring's last entry may move into the place of the number taken.
    let taken = ring::take_from(txn, group, place, |txn, moved| {
        follow_number(txn, group, moved)
    })?;
    Ok(taken.then_some(number))
}

/// `caller`'s memory of number `(ring_id, index)` now says `to`, if it says `from`
/// (`None`: wherever it said).
fn follow<I: Imports>(
    txn: &mut Txn<'_, I>,
    group: &Group,
    caller: &str,
    Moved {
        ring_id,
        index,
        from,
        to,
    }: Moved,
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
fn rememberer<I: Imports>(
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

/// The memory of whoever remembers the number that `moved` now says where it went, if
/// it says where it was (`from`; `None`: wherever it said, for a number that came back
/// from a reservation naming no caller).
fn follow_number<I: Imports>(
    txn: &mut Txn<'_, I>,
    group: &Group,
    moved: Moved,
) -> Result<(), Error> {
    match rememberer(txn, group, moved.ring_id, moved.index)? {
        Some(caller) => follow(txn, group, &caller, moved),
        None => Ok(()),
    }
}
