//! The free-number ring of a group: a FIFO of pool indexes kept in the state store, so
//! taking and returning a number costs O(1) reads and writes at any pool size or
//! occupancy, and an empty ring answers "exhausted" without scanning anything.
//!
//! A fresh ring (no meta yet, or a changed pool fingerprint) holds every index in order
//! without writing a single slot: an unwritten slot at position `p < size` holds `p`.
//! Round-robin takes the head, the number free the longest; random first swaps a
//! uniformly drawn free position with the head.

use rand::Rng;
use rand::distr::{Distribution, Uniform};

use crate::api::{Error, Group, Imports};
use crate::keys;
use crate::records::{RingMeta, decode, encode};
use crate::txn::Txn;

fn load<I: Imports>(txn: &mut Txn<'_, I>, group: &Group) -> Result<RingMeta, Error> {
    let key = keys::ring_meta(&group.name);
    let fresh = RingMeta {
        pool_id: group.pool_id,
        head: 0,
        tail: u64::from(group.size),
    };
    match txn.get(&key)? {
        None => Ok(fresh),
        Some(bytes) => {
            let meta: RingMeta = decode(&key, bytes)?;
            Ok(if meta.pool_id == group.pool_id {
                meta
            } else {
                fresh
            })
        }
    }
}

fn save<I: Imports>(txn: &mut Txn<'_, I>, group: &Group, meta: &RingMeta) {
    txn.put(keys::ring_meta(&group.name), encode(meta));
}

fn slot_key(group: &Group, position: u64) -> String {
    keys::ring_slot(&group.name, group.pool_id, position % u64::from(group.size))
}

/// The index at `position`; `None` if the slot holds nothing usable.
fn read_slot<I: Imports>(
    txn: &mut Txn<'_, I>,
    group: &Group,
    position: u64,
) -> Result<Option<u32>, Error> {
    let key = slot_key(group, position);
    Ok(match txn.get(&key)? {
        Some(bytes) => bytes.try_into().ok().map(u32::from_le_bytes),
        None if position < u64::from(group.size) => u32::try_from(position).ok(),
        None => None,
    })
}

fn write_slot<I: Imports>(txn: &mut Txn<'_, I>, group: &Group, position: u64, index: u32) {
    txn.put(slot_key(group, position), index.to_le_bytes().to_vec());
}

/// How many numbers the ring holds.
pub fn free_count<I: Imports>(txn: &mut Txn<'_, I>, group: &Group) -> Result<u64, Error> {
    let meta = load(txn, group)?;
    Ok(meta.tail - meta.head)
}

/// Take a pool index off the ring, or `None` when the ring is empty. A slot holding
/// nothing usable is skipped (and so dropped): `Some(None)`.
pub fn pop<I: Imports, R: Rng>(
    txn: &mut Txn<'_, I>,
    group: &Group,
    rng: &mut R,
) -> Result<Option<Option<u32>>, Error> {
    let mut meta = load(txn, group)?;
    let free = meta.tail - meta.head;
    if free == 0 {
        return Ok(None);
    }
    if group.strategy == crate::api::Strategy::Random && free > 1 {
        let offset = Uniform::new(0, free)
            .map_err(|e| Error::StateStoreFailure(format!("ring bounds: {e}")))?
            .sample(rng);
        if offset != 0 {
            let picked = meta.head + offset;
            let (Some(at_head), Some(at_picked)) = (
                read_slot(txn, group, meta.head)?,
                read_slot(txn, group, picked)?,
            ) else {
                // A damaged slot: fall back to the head, which is skipped if unusable.
                return take_head(txn, group, &mut meta);
            };
            write_slot(txn, group, meta.head, at_picked);
            write_slot(txn, group, picked, at_head);
        }
    }
    take_head(txn, group, &mut meta)
}

fn take_head<I: Imports>(
    txn: &mut Txn<'_, I>,
    group: &Group,
    meta: &mut RingMeta,
) -> Result<Option<Option<u32>>, Error> {
    let index = read_slot(txn, group, meta.head)?;
    meta.head += 1;
    save(txn, group, meta);
    Ok(Some(index.filter(|&i| i < group.size)))
}

/// Put a pool index back at the tail. Does nothing if the ring belongs to another pool
/// than `pool_id` (the number is then already in the fresh ring) or is full.
pub fn push<I: Imports>(
    txn: &mut Txn<'_, I>,
    group: &Group,
    pool_id: u64,
    index: u32,
) -> Result<(), Error> {
    if pool_id != group.pool_id || index >= group.size {
        return Ok(());
    }
    let mut meta = load(txn, group)?;
    if meta.tail - meta.head >= u64::from(group.size) {
        return Ok(());
    }
    write_slot(txn, group, meta.tail, index);
    meta.tail += 1;
    save(txn, group, &meta);
    Ok(())
}
