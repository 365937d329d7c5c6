//! `pool-status`: how many of a group's numbers a create could be lent now.

use crate::api::{Entry, Error, Group, Imports, PoolStatus};
use crate::keys;
use crate::lookup::{group_of, read_holding};
use crate::policy::CoolOff;
use crate::records::{Holding, Queue};
use crate::ring;
use crate::txn::Txn;

/// Entries `pool_status` reads per scan.
const STATUS_PAGE: u32 = 512;

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
    let (rested, resting, _) = CoolOff::resting(&mut txn, &group, &ring, now)?;
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
