//! Parking: a ring that meets a number held by another ring's reservation (an earlier
//! pool definition of its group, or another group the number moved from) parks it, and
//! gets it back when that reservation ends. See [`crate::ring`].

use super::Ring;
use crate::api::{Error, Group, Imports};
use crate::keys;
use crate::records::{Parked, Reservation, RingMeta, decode, encode};
use crate::txn::Txn;

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

/// The last reservation holding `number`, which expired at `expires_at`, has ended: give
/// the number back to the ring that parked it, if any and if that ring is still stored,
/// whatever this node's configuration, to rest first until `usable_at` (asked of the
/// group of that ring, only if the ring takes the number: [`crate::policy::CoolOff`]).
pub fn unpark<I: Imports>(
    txn: &mut Txn<'_, I>,
    number: &str,
    expires_at: u64,
    now: u64,
    usable_at: impl FnOnce(&mut Txn<'_, I>, &str) -> u64,
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
    let usable_at = usable_at(txn, &parked.group);
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
