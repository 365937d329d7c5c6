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
//! [`crate::service::pool_status`] and [`settled`]).
//!
//! Round-robin takes the head, the number free the longest; random first swaps a
//! uniformly drawn free position with the head.

use rand::Rng;
use rand::distr::{Distribution, Uniform};

use crate::api::{Error, Group, Imports, Policy};
use crate::keys;
use crate::records::{Epoch, Parked, Place, PoolRecord, Reservation, RingMeta, decode, encode};
use crate::sticky;
use crate::txn::Txn;

/// When a number whose reservation ended at `ended_at` may be lent again under
/// `policy` (0: at once).
pub fn rested(policy: &Policy, ended_at: u64) -> u64 {
    match policy.reuse_cooldown {
        0 => 0,
        seconds => ended_at.saturating_add(u64::from(seconds) * 1000),
    }
}

/// Resting numbers moved onto the ring per call, the earliest first. Any one is enough
/// for the call that moves them: once some rested, the ring is not empty.
const WAKE_BATCH: u32 = 8;

/// Move the numbers of `group`'s ring that have rested by `now` onto its tail, in the
/// order they became usable. A caller who remembers one (its resting entry names them)
/// remembers where it went.
pub fn wake<I: Imports>(txn: &mut Txn<'_, I>, group: &Group, now: u64) -> Result<(), Error> {
    let ring = open(txn, group)?;
    let (start, end) = keys::resting_by(&group.name, ring.id(), now);
    let rested = txn.scan(&start, &end, WAKE_BATCH)?;
    let memories: Vec<String> = rested
        .iter()
        .filter(|(_, caller)| !caller.is_empty())
        .map(|(_, caller)| keys::remembered(&group.name, &String::from_utf8_lossy(caller)))
        .collect();
    txn.prefetch(&memories)?;
    for (key, caller) in rested {
        txn.delete(key.clone());
        if let Some((at, index)) = keys::parse_resting(&key) {
            let pushed = push_placed(txn, group, ring.id(), index, 0, now, None)?;
            if let (Some(place), false) = (pushed, caller.is_empty()) {
                let caller = String::from_utf8_lossy(&caller);
                sticky::follow(
                    txn,
                    group,
                    &caller,
                    (ring.id(), index, Some(Place::Resting(at))),
                    place,
                )?;
            }
        }
    }
    Ok(())
}

/// Take pool index `index` of `group`'s ring from `place`, where a caller's memory says
/// it is, if it is still there: out of the resting index, or off the ring (the ring's
/// last entry moves into its position). `false` if it is not there any more.
pub fn take_remembered<I: Imports>(
    txn: &mut Txn<'_, I>,
    group: &Group,
    index: u32,
    place: Place,
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
                let Some(moved) = read_slot(txn, group, &ring, last)? else {
                    return Ok(false);
                };
                write_slot(txn, group, &ring, position, moved);
                let moved_from = (ring.id(), moved, Some(Place::Ring(last)));
                sticky::follow_number(txn, group, moved_from, Place::Ring(position))?;
            }
            ring.meta.tail = last;
            save(txn, group, &mut ring)?;
            Ok(true)
        }
    }
}

/// Of `ring`'s resting numbers: how many have rested by `now` (usable, not yet on the
/// ring), how many still rest, and when the first of those becomes usable. Reads only.
pub fn resting<I: Imports>(
    txn: &mut Txn<'_, I>,
    group: &Group,
    ring: &Ring,
    now: u64,
) -> Result<(u64, u64, Option<u64>), Error> {
    let (mut start, end) = keys::resting_by(&group.name, ring.id(), u64::MAX);
    let (mut rested, mut resting, mut first) = (0, 0, None);
    loop {
        let page = txn.scan_unrecorded(&start, &end, RING_PAGE)?;
        for entry in &page {
            match keys::parse_resting(&entry.key) {
                Some((at, _)) if at <= now => rested += 1,
                Some((at, _)) => {
                    resting += 1;
                    first = first.or(Some(at));
                }
                None => {}
            }
        }
        match page.last() {
            Some(last) if page.len() == RING_PAGE as usize => start = format!("{}\0", last.key),
            _ => return Ok((rested, resting, first)),
        }
    }
}

/// When `ring`'s first resting number becomes usable, if one rests (this transaction's
/// own writes included). Reads only.
pub fn first_usable_at<I: Imports>(
    txn: &mut Txn<'_, I>,
    group: &Group,
    ring: &Ring,
) -> Result<Option<u64>, Error> {
    let (start, end) = keys::resting_by(&group.name, ring.id(), u64::MAX);
    Ok(txn
        .first_key(&start, &end)?
        .and_then(|key| keys::parse_resting(&key))
        .map(|(at, _)| at))
}

/// Rings `settle` reads per scan.
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
/// `local`: the caller's digits and the prefix the group prefers them to share with the
/// number ([`crate::local`]); a number that does is taken before the strategy picks.
pub fn pop<I: Imports, R: Rng>(
    txn: &mut Txn<'_, I>,
    group: &Group,
    rng: &mut R,
    (window, local): (u64, Option<(&str, u32)>),
    sticky: bool,
) -> Result<Option<Option<u32>>, Error> {
    let mut ring = open(txn, group)?;
    let free = ring.len().min(window);
    if free == 0 {
        return Ok(None);
    }
    let local = match local {
        Some((caller, min_digits)) if free > 1 => {
            local_offset(txn, group, &ring, free, (caller, min_digits))?
        }
        _ => None,
    };
    let offset = match local {
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
        if sticky {
            // The number that was at the head waits at `picked` now.
            let moved_from = (ring.id(), at_head, Some(Place::Ring(head)));
            sticky::follow_number(txn, group, moved_from, Place::Ring(picked))?;
        }
    }
    take_head(txn, group, &mut ring)
}

/// The offset from the head of the first of the ring's next `free` numbers (at most
/// [`crate::local::WINDOW`]) that looks local to `caller`, if one does: their slots in
/// one batched read.
fn local_offset<I: Imports>(
    txn: &mut Txn<'_, I>,
    group: &Group,
    ring: &Ring,
    free: u64,
    (caller, min_digits): (&str, u32),
) -> Result<Option<u64>, Error> {
    let head = ring.meta.head;
    let seen = free.min(crate::local::WINDOW);
    let keys: Vec<String> = (head..head + seen)
        .map(|p| slot_key(group, ring, p))
        .collect();
    txn.prefetch(&keys)?;
    let mut candidates = Vec::with_capacity(keys.len());
    for offset in 0..seen {
        if let Some(index) = read_slot(txn, group, ring, head + offset)?
            && let Some(number) = txn.imports().number_at(&group.name, index)
        {
            candidates.push((offset, crate::validate::digits(&number)));
        }
    }
    let candidates = candidates.iter().map(|(o, d)| (*o, d.as_str()));
    Ok(crate::local::best(caller, min_digits, candidates))
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
/// entry names `caller`, if given, so that [`wake`] updates the caller's memory of it.
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

/// Park pool index `index` of `ring`: its number is held by `holder`, a reservation
/// from another ring, and comes back to this one when that reservation ends
/// ([`unpark`]). An entry in the group's expiry index lets the group's own calls end the
/// holder once it expires, even if the holder's group gets no calls. `false` if another
/// stored ring parked it already: the caller keeps it on the ring instead.
pub fn park<I: Imports>(
    txn: &mut Txn<'_, I>,
    group: &Group,
    ring: &Ring,
    holder: &Reservation,
    index: u32,
) -> Result<bool, Error> {
    let digits = crate::validate::digits(&holder.number);
    let key = keys::parked(&digits);
    if let Some(other) = txn
        .get(&key)?
        .map(|b| decode::<Parked>(&key, b))
        .transpose()?
    {
        // Parked by a ring still stored: that one gets it. A ring since forgotten
        // gives its claim up.
        let meta_key = keys::ring_meta(&other.group, other.fingerprint);
        let alive = txn
            .get(&meta_key)?
            .map(|b| decode::<RingMeta>(&meta_key, b))
            .transpose()?
            .is_some_and(|m| m.pool_id == other.ring_id);
        if alive {
            return Ok(false);
        }
    }
    let parked = Parked {
        group: group.name.clone(),
        fingerprint: ring.record.fingerprint,
        ring_id: ring.id(),
        size: group.size,
        index,
    };
    txn.put(key, encode(&parked));
    txn.put(
        keys::expiry(&group.name, holder.expires_at, &digits),
        Vec::new(),
    );
    Ok(true)
}

/// The last reservation holding `number`, which expired at `expires_at`, has ended at
/// `ended_at`: give the number back to the ring that parked it, if any and if that ring
/// is still stored, whatever this node's configuration, to rest for that group's
/// cool-off first.
pub fn unpark<I: Imports>(
    txn: &mut Txn<'_, I>,
    number: &str,
    expires_at: u64,
    ended_at: u64,
    now: u64,
) -> Result<(), Error> {
    let digits = crate::validate::digits(number);
    let key = keys::parked(&digits);
    let Some(parked) = txn
        .get(&key)?
        .map(|b| decode::<Parked>(&key, b))
        .transpose()?
    else {
        return Ok(());
    };
    txn.delete(key);
    txn.delete(keys::expiry(&parked.group, expires_at, &digits));
    let meta_key = keys::ring_meta(&parked.group, parked.fingerprint);
    let Some(mut meta) = txn
        .get(&meta_key)?
        .map(|b| decode::<RingMeta>(&meta_key, b))
        .transpose()?
    else {
        return Ok(());
    };
    let size = u64::from(parked.size);
    if meta.pool_id != parked.ring_id
        || parked.index >= parked.size
        || meta.tail - meta.head >= size
    {
        return Ok(());
    }
    let usable_at = rested(&txn.imports().policy(&parked.group), ended_at);
    if usable_at > now {
        let key = keys::resting(&parked.group, meta.pool_id, usable_at, parked.index);
        txn.put(key, Vec::new());
        return Ok(());
    }
    let slot = keys::ring_slot(&parked.group, meta.pool_id, meta.tail % size);
    txn.put(slot, parked.index.to_le_bytes().to_vec());
    meta.tail += 1;
    txn.put(meta_key, encode(&meta));
    Ok(())
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
