//! The free-number rings of a group: FIFOs of pool indexes kept in the state store, so
//! taking and returning a number costs O(1) reads and writes at any pool size or
//! occupancy, and an empty ring answers "exhausted" without scanning anything.
//!
//! A ring serves one pool definition: it is keyed by the group and the fingerprint of
//! its numbers, and its [`PoolRecord`] names its identity and generation. Nodes serving
//! two definitions at once (a rolling update) each use their own ring. A new ring holds
//! every index in order without writing a single slot: an unwritten slot at position
//! `p < size` holds `p`. Slots are keyed by the ring's identity, so a definition that
//! comes back gets a new generation and never reads an old ring's slots, and a
//! reservation from one ring never returns its number to another.
//!
//! Every number has one reservation key, whichever ring lent it, and every lend checks
//! it: rings that share numbers never lend one twice. A ring that meets a number held by
//! another ring's reservation *parks* it, and gets it back when that reservation ends
//! ([`park`], [`unpark`]). A ring whose number ended where it could not come back (its
//! group retired, its numbers changed) is *forgotten* and rebuilt when its numbers are
//! served again ([`forget`]).
//!
//! Until no reservation from another ring holds a number of its pool, a ring is
//! *unsettled* and `pool_status` counts reservations instead of trusting it (see
//! [`crate::status::pool_status`] and [`settled`]).
//!
//! Round-robin takes the head, the number free the longest; random first swaps a
//! uniformly drawn free position with the head.
//!
//! The ring is the core the pool policies ([`crate::policy`]) build on, and it uses none
//! of them: where a policy has a say, the caller passes its answer in (when a returned
//! number may be lent again, which entry to take first) or is told what happened (a free
//! number moved: [`Moved`]).

use rand::Rng;
use rand::distr::{Distribution, Uniform};

use crate::api::{Error, Group, Imports};
use crate::keys;
use crate::records::{Epoch, Place, PoolRecord, RingMeta, decode, encode};
use crate::txn::Txn;

mod parking;

pub use parking::{park, unpark};

/// A free number that moved: pool index `index` of ring `ring_id`, from `from` (`None`:
/// wherever it was) to `to`. Told to the caller of the ring operation that moved it, for
/// a policy that keeps track of where a number waits ([`crate::policy::Sticky`]).
#[derive(Debug, Clone, Copy)]
pub struct Moved {
    pub ring_id: u64,
    pub index: u32,
    pub from: Option<Place>,
    pub to: Place,
}

/// Take pool index `index` of `group`'s ring from `place`, where a caller's memory says
/// it is, if it is still there: out of the resting index, or off the ring (the ring's
/// last entry moves into its position, and `moved` is told). `false` if it is not there
/// any more.
pub fn take_from<I: Imports>(
    txn: &mut Txn<'_, I>,
    group: &Group,
    (index, place): (u32, Place),
    moved: impl FnOnce(&mut Txn<'_, I>, Moved) -> Result<(), Error>,
) -> Result<bool, Error> {
    let mut ring = open(txn, group)?;
    match place {
        Place::Resting(at) => {
            let key = keys::resting(&group.name, ring.id(), at, index);
            if txn.get(&key)?.is_none() {
                return Ok(false);
            }
            txn.delete(key);
            Ok(true)
        }
        Place::Ring(position) => {
            let (head, tail) = (ring.meta.head, ring.meta.tail);
            if !(head..tail).contains(&position)
                || read_slot(txn, group, &ring, position)? != Some(index)
            {
                return Ok(false);
            }
            let last = tail - 1;
            if position != last {
                let Some(moved_index) = read_slot(txn, group, &ring, last)? else {
                    return Ok(false);
                };
                write_slot(txn, group, &ring, position, moved_index);
                let moved_to = Moved {
                    ring_id: ring.id(),
                    index: moved_index,
                    from: Some(Place::Ring(last)),
                    to: Place::Ring(position),
                };
                moved(txn, moved_to)?;
            }
            ring.meta.tail = last;
            save(txn, group, &mut ring)?;
            Ok(true)
        }
    }
}

/// Rings (or resting entries) one scan of [`settle`], [`forget`] or [`drop_ring`] reads.
const RING_PAGE: u32 = 256;

/// A group's ring as this call sees it.
pub struct Ring {
    meta: RingMeta,
    record: PoolRecord,
    /// The record is not stored as it is here yet (a new ring, or settled just now).
    record_unsaved: bool,
    /// The ring is new: storing it counts one more [`Epoch`].
    built: bool,
    /// The ring was found at its legacy key: storing it moves it.
    legacy: bool,
}

impl Ring {
    /// The identity of the ring: what a reservation taken from it records.
    pub fn id(&self) -> u64 {
        self.meta.pool_id
    }

    /// How many entries the ring holds.
    pub fn len(&self) -> u64 {
        self.meta.tail - self.meta.head
    }
}

fn epoch<I: Imports>(txn: &mut Txn<'_, I>) -> Result<Epoch, Error> {
    let key = keys::epoch();
    Ok(txn
        .get(&key)?
        .map(|b| decode(&key, b))
        .transpose()?
        .unwrap_or_default())
}

/// Whether every number `ring` holds is free, or expired and indexed by the group: no
/// reservation made before the ring, or by another group, holds one of its numbers.
pub fn settled<I: Imports>(txn: &mut Txn<'_, I>, ring: &Ring) -> Result<bool, Error> {
    Ok(match ring.record.settled_at {
        Some(at) => !ring.built && Epoch(at) == epoch(txn)?,
        None => false,
    })
}

/// The identity of the ring built for the `generation`-th pool seen under a group's name.
/// Generation 0 is the fingerprint itself, which is what rings were keyed by before
/// rings had records: a store written then keeps its ring and reservations.
fn ring_id(fingerprint: u64, generation: u64) -> u64 {
    if generation == 0 {
        return fingerprint;
    }
    // SplitMix64's finaliser: distinct generations give unrelated identities.
    let mut z = fingerprint ^ generation.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The ring of `group` for its configured numbers, or a new one if there is none or it
/// was forgotten.
pub fn open<I: Imports>(txn: &mut Txn<'_, I>, group: &Group) -> Result<Ring, Error> {
    let fingerprint = group.pool_id;
    let meta_key = keys::ring_meta(&group.name, fingerprint);
    let record_key = keys::pool_record(&group.name, fingerprint);
    txn.prefetch(&[meta_key.clone(), record_key.clone()])?;
    let meta: Option<RingMeta> = txn
        .get(&meta_key)?
        .map(|b| decode(&meta_key, b))
        .transpose()?;
    let record: Option<PoolRecord> = txn
        .get(&record_key)?
        .map(|b| decode(&record_key, b))
        .transpose()?;
    let generation = match (meta, record) {
        (Some(meta), Some(record)) if meta.pool_id == record.ring_id => {
            return Ok(Ring {
                meta,
                record,
                record_unsaved: false,
                built: false,
                legacy: false,
            });
        }
        (_, Some(record)) => record.generation + 1,
        (Some(_), None) => 1,
        (None, None) => {
            // A ring kept where rings were kept before they were keyed by fingerprint,
            // for these numbers: it is this pool's ring, identified by the fingerprint.
            let legacy_key = keys::legacy_ring_meta(&group.name);
            let legacy: Option<RingMeta> = txn
                .get(&legacy_key)?
                .map(|b| decode(&legacy_key, b))
                .transpose()?;
            if let Some(meta) = legacy.filter(|m| m.pool_id == fingerprint) {
                return Ok(Ring {
                    meta,
                    record: PoolRecord {
                        fingerprint,
                        ring_id: fingerprint,
                        generation: 0,
                        settled_at: None,
                    },
                    record_unsaved: true,
                    built: false,
                    legacy: true,
                });
            }
            // Generation 0 is the legacy identity, whose slots may still be stored.
            1
        }
    };
    let id = ring_id(fingerprint, generation);
    Ok(Ring {
        meta: RingMeta {
            pool_id: id,
            head: 0,
            tail: u64::from(group.size),
        },
        record: PoolRecord {
            fingerprint,
            ring_id: id,
            generation,
            settled_at: None,
        },
        record_unsaved: true,
        built: true,
        legacy: false,
    })
}

fn save<I: Imports>(txn: &mut Txn<'_, I>, group: &Group, ring: &mut Ring) -> Result<(), Error> {
    let fingerprint = ring.record.fingerprint;
    txn.put(
        keys::ring_meta(&group.name, fingerprint),
        encode(&ring.meta),
    );
    if ring.legacy {
        txn.delete(keys::legacy_ring_meta(&group.name));
        ring.legacy = false;
    }
    if ring.built {
        let next = Epoch(epoch(txn)?.0.wrapping_add(1));
        txn.put(keys::epoch(), encode(&next));
        ring.built = false;
    }
    if ring.record_unsaved {
        txn.put(
            keys::pool_record(&group.name, fingerprint),
            encode(&ring.record),
        );
        ring.record_unsaved = false;
    }
    Ok(())
}

fn slot_key(group: &Group, ring: &Ring, position: u64) -> String {
    keys::ring_slot(&group.name, ring.id(), position % u64::from(group.size))
}

/// The index at `position`; `None` if the slot holds nothing usable.
fn read_slot<I: Imports>(
    txn: &mut Txn<'_, I>,
    group: &Group,
    ring: &Ring,
    position: u64,
) -> Result<Option<u32>, Error> {
    let key = slot_key(group, ring, position);
    Ok(match txn.get(&key)? {
        Some(bytes) => bytes.try_into().ok().map(u32::from_le_bytes),
        None if position < u64::from(group.size) => u32::try_from(position).ok(),
        None => None,
    })
}

fn write_slot<I: Imports>(
    txn: &mut Txn<'_, I>,
    group: &Group,
    ring: &Ring,
    position: u64,
    index: u32,
) {
    txn.put(
        slot_key(group, ring, position),
        index.to_le_bytes().to_vec(),
    );
}

/// Take a pool index off the ring, or `None` when the ring is empty. A slot holding
/// nothing usable is skipped (and so dropped): `Some(None)`. Random draws among the
/// first `window` entries only: the ones behind were put back by this call already.
/// `prefer`: given the ring and how many entries the draw is among (more than one), the
/// offset from the head of the entry to take before the strategy picks, if any (the
/// caller's policy: [`crate::policy::Local`]). `moved` is told of the number a draw moves
/// from the head.
pub fn pop<I: Imports, R: Rng>(
    txn: &mut Txn<'_, I>,
    group: &Group,
    rng: &mut R,
    window: u64,
    prefer: impl FnOnce(&mut Txn<'_, I>, &Ring, u64) -> Result<Option<u64>, Error>,
    moved: impl FnOnce(&mut Txn<'_, I>, Moved) -> Result<(), Error>,
) -> Result<Option<Option<u32>>, Error> {
    let mut ring = open(txn, group)?;
    let free = ring.len().min(window);
    if free == 0 {
        return Ok(None);
    }
    let preferred = match free > 1 {
        true => prefer(txn, &ring, free)?,
        false => None,
    };
    let offset = match preferred {
        Some(offset) => offset,
        None if group.strategy == crate::api::Strategy::Random && free > 1 => Uniform::new(0, free)
            .map_err(|e| Error::StateStoreFailure(format!("ring bounds: {e}")))?
            .sample(rng),
        None => 0,
    };
    if offset != 0 {
        let head = ring.meta.head;
        let picked = head + offset;
        let (Some(at_head), Some(at_picked)) = (
            read_slot(txn, group, &ring, head)?,
            read_slot(txn, group, &ring, picked)?,
        ) else {
            // A damaged slot: fall back to the head, which is skipped if unusable.
            return take_head(txn, group, &mut ring);
        };
        write_slot(txn, group, &ring, head, at_picked);
        write_slot(txn, group, &ring, picked, at_head);
        // The number that was at the head waits at `picked` now.
        let moved_to = Moved {
            ring_id: ring.id(),
            index: at_head,
            from: Some(Place::Ring(head)),
            to: Place::Ring(picked),
        };
        moved(txn, moved_to)?;
    }
    take_head(txn, group, &mut ring)
}

/// The pool indexes of `ring`'s next `count` entries from its head, in ring order (`None`
/// for a slot holding nothing usable): their slots in one batched read.
pub fn ahead<I: Imports>(
    txn: &mut Txn<'_, I>,
    group: &Group,
    ring: &Ring,
    count: u64,
) -> Result<Vec<Option<u32>>, Error> {
    let head = ring.meta.head;
    let keys: Vec<String> = (head..head + count)
        .map(|p| slot_key(group, ring, p))
        .collect();
    txn.prefetch(&keys)?;
    (head..head + count)
        .map(|p| read_slot(txn, group, ring, p))
        .collect()
}

fn take_head<I: Imports>(
    txn: &mut Txn<'_, I>,
    group: &Group,
    ring: &mut Ring,
) -> Result<Option<Option<u32>>, Error> {
    let index = read_slot(txn, group, ring, ring.meta.head)?;
    ring.meta.head += 1;
    save(txn, group, ring)?;
    Ok(Some(index.filter(|&i| i < group.size)))
}

/// Give a pool index back to the ring: at the tail, or to rest until `usable_at` if that
/// is after `now` (its cool-off). `false` if it did nothing because `ring_id` is not the
/// ring's identity (the number was taken from an earlier ring: a newer one holds it
/// already, or its pool no longer does) or because the ring is full.
pub fn push<I: Imports>(
    txn: &mut Txn<'_, I>,
    group: &Group,
    ring_id: u64,
    index: u32,
    usable_at: u64,
    now: u64,
) -> Result<bool, Error> {
    Ok(push_placed(txn, group, ring_id, index, usable_at, now, None)?.is_some())
}

/// [`push`], answering where the number went (`None`: nowhere). A resting number's
/// entry names `caller`, if given, so that waking it ([`crate::policy::CoolOff`]) updates
/// the caller's memory of it.
pub fn push_placed<I: Imports>(
    txn: &mut Txn<'_, I>,
    group: &Group,
    ring_id: u64,
    index: u32,
    usable_at: u64,
    now: u64,
    caller: Option<&str>,
) -> Result<Option<Place>, Error> {
    let mut ring = open(txn, group)?;
    if ring_id != ring.id() || index >= group.size || ring.len() >= u64::from(group.size) {
        return Ok(None);
    }
    if usable_at > now {
        // Resting numbers wait in an index ordered by when they become usable, whatever
        // order they ended in (an expired one rests from its expiry).
        txn.put(
            keys::resting(&group.name, ring.id(), usable_at, index),
            caller.unwrap_or_default().as_bytes().to_vec(),
        );
        return Ok(Some(Place::Resting(usable_at)));
    }
    let tail = ring.meta.tail;
    write_slot(txn, group, &ring, tail, index);
    ring.meta.tail += 1;
    save(txn, group, &mut ring)?;
    Ok(Some(Place::Ring(tail)))
}

/// Forget ring `ring_id` of `group_name` if it is stored: a number it lent ended
/// while the configuration could not put it back (the group retired, or its numbers
/// changed). The ring would otherwise miss that number if the same numbers came back;
/// forgotten, the next call for those numbers builds a new ring.
pub fn forget<I: Imports>(
    txn: &mut Txn<'_, I>,
    group_name: &str,
    ring_id: u64,
) -> Result<(), Error> {
    let (start, end) = keys::group_ring_metas(group_name);
    // A group has a ring per pool definition it was served with: a handful.
    let mut keys_of_ring: Vec<String> = txn
        .scan_unrecorded(&start, &end, RING_PAGE)?
        .into_iter()
        .filter(|e| decode::<RingMeta>(&e.key, &e.value).is_ok_and(|m| m.pool_id == ring_id))
        .map(|e| e.key)
        .collect();
    let legacy = keys::legacy_ring_meta(group_name);
    if txn
        .get(&legacy)?
        .is_some_and(|b| decode::<RingMeta>(&legacy, b).is_ok_and(|m| m.pool_id == ring_id))
    {
        keys_of_ring.push(legacy);
    }
    for key in keys_of_ring {
        drop_ring(txn, &key)?;
    }
    Ok(())
}

/// Delete the ring stored at `meta_key`, keeping its record: the next ring for its
/// numbers is the next generation, with slots of its own.
fn drop_ring<I: Imports>(txn: &mut Txn<'_, I>, meta_key: &str) -> Result<(), Error> {
    // Read through the transaction: the commit then checks that it is still this ring.
    let Some(bytes) = txn.get(meta_key)? else {
        return Ok(());
    };
    let meta: RingMeta = decode(meta_key, bytes)?;
    if let Some((group, None)) = keys::parse_ring_meta(meta_key) {
        // A legacy ring: identified by its fingerprint, at generation 0.
        let record_key = keys::pool_record(group, meta.pool_id);
        if txn.get(&record_key)?.is_none() {
            let record = PoolRecord {
                fingerprint: meta.pool_id,
                ring_id: meta.pool_id,
                generation: 0,
                settled_at: None,
            };
            txn.put(record_key, encode(&record));
        }
    }
    // Its resting numbers go with it (a new ring holds every number anyway).
    if let Some((group, _)) = keys::parse_ring_meta(meta_key) {
        let (start, end) = keys::resting_by(group, meta.pool_id, u64::MAX);
        for entry in txn.scan_unrecorded(&start, &end, RING_PAGE)? {
            txn.delete(entry.key);
        }
    }
    txn.delete(meta_key.to_string());
    Ok(())
}

/// Record that the ring is [`settled`] as of now. Any other ring stored for numbers the
/// configuration does not give its group now (a retired group, a group whose numbers
/// changed, a node still serving an earlier pool definition) is forgotten first: it
/// might lend a number of this pool, and being rebuilt then counts an epoch.
pub fn settle<I: Imports>(txn: &mut Txn<'_, I>, group: &Group) -> Result<(), Error> {
    // Stored first: a legacy ring moves to its own key, and a new one counts its epoch.
    let mut ring = open(txn, group)?;
    save(txn, group, &mut ring)?;
    let (mut start, end) = keys::all_ring_metas();
    loop {
        let page = txn.scan_unrecorded(&start, &end, RING_PAGE)?;
        for entry in &page {
            let Some((name, fingerprint)) = keys::parse_ring_meta(&entry.key) else {
                continue;
            };
            let current = match (txn.imports().group(name), fingerprint) {
                (Some(configured), Some(fingerprint)) => {
                    configured.name == name && configured.pool_id == fingerprint
                }
                _ => false,
            };
            if !current {
                drop_ring(txn, &entry.key)?;
            }
        }
        match page.last() {
            Some(last) if page.len() == RING_PAGE as usize => start = format!("{}\0", last.key),
            _ => break,
        }
    }
    ring.record.settled_at = Some(epoch(txn)?.0);
    ring.record_unsaved = true;
    save(txn, group, &mut ring)
}
