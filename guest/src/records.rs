//! Values the logic stores through the state import. The host treats them as opaque
//! bytes; a leading format byte lets a later plugin read what an earlier one wrote.

use serde::{Deserialize, Serialize};

use crate::api::Error;

const FORMAT_V1: u8 = 1;
/// The format of a [`SharedNumber`]: a plugin that knows only [`FORMAT_V1`] reads it as
/// an unknown format (a store failure) rather than as a number lent whole.
const FORMAT_SHARED: u8 = 2;

/// One live reservation: a number lent to a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub service_id: String,
    pub group: String,
    /// The number as configured (its formatting is what the caller is told to dial).
    pub number: String,
    pub code: Option<String>,
    /// Digits of the caller's number tied to the reservation.
    pub caller_digits: Option<String>,
    pub expires_at: u64,
    pub failed_attempts: u32,
    /// The identity of the ring the number was taken from ([`crate::ring`]): the number
    /// goes back to the group's ring only if that ring is still the same.
    pub pool_id: u64,
    /// The group the service asked for, when the number came from its fallback group:
    /// the reservation is the service's reservation in that group too. Stored after the
    /// fields above, and only when present, so that a plugin that does not know it reads
    /// the rest (postcard ignores trailing bytes).
    #[serde(skip)]
    pub asked_group: Option<String>,
    /// When it was made and for how long, for extensions (stored after `asked_group`,
    /// likewise). `None` in one written before the field existed.
    #[serde(skip)]
    pub lease: Option<Lease>,
}

/// What bounds and restarts a reservation's expiry ([`crate::policy::LeaseTerms`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// When its create made it: it lasts at most the group's maximum lifetime from then.
    pub created_at: u64,
    /// Seconds its create asked for: what a sliding expiry restarts.
    pub timeout: u32,
}

fn undecodable(key: &str) -> impl Fn(postcard::Error) -> Error + '_ {
    move |e| Error::StateStoreFailure(format!("undecodable value at {key:?}: {e}"))
}

impl Reservation {
    /// Whether this is `service_id`'s reservation in `group` (made there, or made in its
    /// fallback group for a request to it).
    pub fn held_in(&self, service_id: &str, group: &str) -> bool {
        self.service_id == service_id
            && (self.group == group || self.asked_group.as_deref() == Some(group))
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = encode(self);
        if self.asked_group.is_some() || self.lease.is_some() {
            out.extend(postcard::to_stdvec(&self.asked_group).unwrap_or_default());
        }
        if let Some(lease) = &self.lease {
            out.extend(postcard::to_stdvec(lease).unwrap_or_default());
        }
        out
    }

    pub fn decode(key: &str, bytes: &[u8]) -> Result<Reservation, Error> {
        let body = body(key, bytes)?;
        let (mut res, rest) =
            postcard::take_from_bytes::<Reservation>(body).map_err(undecodable(key))?;
        if !rest.is_empty() {
            let (asked_group, rest) = postcard::take_from_bytes(rest).map_err(undecodable(key))?;
            res.asked_group = asked_group;
            if !rest.is_empty() {
                res.lease = Some(postcard::from_bytes(rest).map_err(undecodable(key))?);
            }
        }
        Ok(res)
    }
}

/// What a number's reservation key holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holding {
    /// A number lent whole.
    One(Reservation),
    /// A number shared by code.
    Shared(SharedNumber),
}

impl Holding {
    pub fn decode(key: &str, bytes: &[u8]) -> Result<Holding, Error> {
        match bytes.first() {
            Some(&FORMAT_SHARED) => SharedNumber::decode(key, &bytes[1..]).map(Holding::Shared),
            _ => Reservation::decode(key, bytes).map(Holding::One),
        }
    }
}

/// The reservations sharing one number of a group whose numbers carry several, stored
/// together at the number's reservation key: a lend, a match or an end reads and writes
/// that one key, as for a number lent whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedNumber {
    pub group: String,
    /// The number as configured.
    pub number: String,
    /// The identity of the ring that lends it (see [`Reservation::pool_id`]).
    pub ring_id: u64,
    /// Where its ring has it.
    pub queue: Queue,
    /// At most the group's `reservations_per_number`, in no particular order.
    pub seats: Vec<Seat>,
    /// Wrong access codes tried on the number in its current window.
    pub wrong_codes: WrongCodes,
    /// The leases of held seats, by the seat's expiry (unique among them). Stored after
    /// the rest, so that a plugin that does not know them reads the rest; one that
    /// rewrites the record drops them, and its seats then count as having none.
    #[serde(skip)]
    pub leases: Vec<(u64, Lease)>,
}

/// Where a shared number waits to be lent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Queue {
    /// Nowhere: every seat is held (it comes back when one ends), or a create took it
    /// off the ring and decides.
    Off,
    /// On the ring: it has a free seat.
    Ring,
    /// In the ring's resting index until this instant, when its first ended seat has
    /// rested (unless a create has woken it onto the ring since).
    Resting(u64),
}

/// One reservation of a shared number, or its place while it rests after one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seat {
    /// The access code that tells it apart; kept while it rests, so that a late call
    /// cannot reach the next reservation.
    pub code: Option<String>,
    /// Digits of the caller it was made for, which tell it apart too.
    pub caller_digits: Option<String>,
    pub state: SeatState,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SeatState {
    /// A live reservation (or one expired and not yet reclaimed).
    Held {
        service_id: String,
        /// As [`Reservation::asked_group`].
        asked_group: Option<String>,
        /// Unique among the number's held seats, so that each has its own expiry key.
        expires_at: u64,
    },
    /// Ended; lendable again from this instant (the group's cool-off).
    Resting { until: u64 },
}

/// Wrong codes counted on a shared number within a window that starts at the first one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct WrongCodes {
    pub since: u64,
    pub count: u32,
}

impl SharedNumber {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![FORMAT_SHARED];
        // Serialising these plain structs into a Vec cannot fail.
        out.extend(postcard::to_stdvec(self).unwrap_or_default());
        if !self.leases.is_empty() {
            out.extend(postcard::to_stdvec(&self.leases).unwrap_or_default());
        }
        out
    }

    fn decode(key: &str, body: &[u8]) -> Result<SharedNumber, Error> {
        let (mut record, rest) =
            postcard::take_from_bytes::<SharedNumber>(body).map_err(undecodable(key))?;
        if !rest.is_empty() {
            record.leases = postcard::from_bytes(rest).map_err(undecodable(key))?;
        }
        Ok(record)
    }
}

/// The free-number ring of one group: positions `head..tail` hold the free numbers.
/// Positions are absolute; position `p` lives in slot `p % size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingMeta {
    /// The ring's identity (named for what it was before rings had records: the pool's
    /// fingerprint, which generation 0 still uses).
    pub pool_id: u64,
    pub head: u64,
    pub tail: u64,
}

/// Which numbers a group's ring was built for, and whether any reservation made before
/// it may still hold one of them. Kept apart from [`RingMeta`], which every take and
/// return rewrites, so that an earlier plugin still reads the ring it knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolRecord {
    /// The configured pool's fingerprint (`group.pool-id`).
    pub fingerprint: u64,
    /// The ring's identity: the key of its slots, and what reservations record.
    pub ring_id: u64,
    /// How many rings this group had before this one.
    pub generation: u64,
    /// When it was found that no reservation from an earlier ring or another group
    /// holds a number of this pool: the [`Epoch`] then. Any ring built since (which may
    /// lend numbers this pool had or has) makes the finding stale.
    pub settled_at: Option<u64>,
}

/// A number a ring popped while a reservation from another ring held it: the ring gets
/// it back when that reservation ends, instead of meeting it again on every turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parked {
    /// The group of the ring waiting for the number.
    pub group: String,
    /// The fingerprint of the pool that ring serves (which keys its head and tail).
    pub fingerprint: u64,
    /// The ring's identity: if it was rebuilt since, the number goes to no ring.
    pub ring_id: u64,
    /// The ring's size and the number's index in its pool.
    pub size: u32,
    pub index: u32,
}

/// The number a caller was given last in a group, for sticky lending: where it is while
/// it is free, and until when it is remembered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remembered {
    /// The ring it goes back to; a rebuilt ring forgets it.
    pub ring_id: u64,
    /// Its index in the pool.
    pub index: u32,
    /// When the memory ends.
    pub until: u64,
    /// Where the number went when the caller's reservation ended.
    pub place: Place,
}

/// Where a free number waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Place {
    /// Resting until this instant (its key in the resting index).
    Resting(u64),
    /// On the ring at this absolute position.
    Ring(u64),
}

/// How many rings were built, in every group: a count that changes whenever numbers may
/// have started to be lent by another ring than before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Epoch(pub u64);

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![FORMAT_V1];
    // Serialising these plain structs into a Vec cannot fail.
    out.extend(postcard::to_stdvec(value).unwrap_or_default());
    out
}

pub fn decode<'a, T: Deserialize<'a>>(key: &str, bytes: &'a [u8]) -> Result<T, Error> {
    postcard::from_bytes(body(key, bytes)?)
        .map_err(|e| Error::StateStoreFailure(format!("undecodable value at {key:?}: {e}")))
}

/// What follows the format byte.
fn body<'a>(key: &str, bytes: &'a [u8]) -> Result<&'a [u8], Error> {
    match bytes.split_first() {
        Some((&FORMAT_V1, body)) => Ok(body),
        _ => Err(Error::StateStoreFailure(format!(
            "value at {key:?} has an unknown format"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_garbage_is_a_store_failure() {
        let meta = RingMeta {
            pool_id: 7,
            head: 3,
            tail: 12,
        };
        assert_eq!(decode::<RingMeta>("k", &encode(&meta)).unwrap(), meta);
        assert!(matches!(
            decode::<RingMeta>("k", &[9, 1, 2]),
            Err(Error::StateStoreFailure(_))
        ));
        assert!(matches!(
            Reservation::decode("k", &[FORMAT_V1, 200]),
            Err(Error::StateStoreFailure(_))
        ));
    }

    fn reservation(asked_group: Option<&str>) -> Reservation {
        Reservation {
            service_id: "s".into(),
            group: "SHARED".into(),
            number: "+15550000001".into(),
            code: None,
            caller_digits: None,
            expires_at: 9,
            failed_attempts: 0,
            pool_id: 3,
            asked_group: asked_group.map(String::from),
            lease: None,
        }
    }

    #[test]
    fn the_asked_group_round_trips_and_readers_without_it_read_the_rest() {
        let plain = reservation(None);
        let fallback = reservation(Some("DNIS"));
        assert_eq!(Reservation::decode("k", &plain.encode()).unwrap(), plain);
        assert_eq!(
            Reservation::decode("k", &fallback.encode()).unwrap(),
            fallback
        );
        // A reservation written before the field existed reads as asked for its group.
        assert_eq!(Reservation::decode("k", &encode(&plain)).unwrap(), plain);
        // A reader that does not know the field (an earlier plugin) reads the rest.
        assert_eq!(
            decode::<Reservation>("k", &fallback.encode()).unwrap(),
            plain
        );
        assert!(fallback.held_in("s", "DNIS") && fallback.held_in("s", "SHARED"));
        assert!(!plain.held_in("s", "DNIS") && !fallback.held_in("t", "DNIS"));
    }

    #[test]
    fn the_lease_round_trips_and_readers_without_it_read_the_rest() {
        let lease = Lease {
            created_at: 1_767_225_600_000,
            timeout: 30,
        };
        for asked_group in [None, Some("DNIS")] {
            let leased = Reservation {
                lease: Some(lease),
                ..reservation(asked_group)
            };
            assert_eq!(Reservation::decode("k", &leased.encode()).unwrap(), leased);
            // An earlier plugin reads the asked group (and ignores what follows).
            let body = &leased.encode()[1..];
            let (_, rest) = postcard::take_from_bytes::<Reservation>(body).unwrap();
            let asked: Option<String> = postcard::from_bytes(rest).unwrap();
            assert_eq!(asked.as_deref(), asked_group);
        }
        let shared = SharedNumber {
            group: "SHARED".into(),
            number: "+15550000001".into(),
            ring_id: 3,
            queue: Queue::Ring,
            seats: Vec::new(),
            wrong_codes: WrongCodes::default(),
            leases: vec![(9, lease)],
        };
        let bytes = shared.encode();
        assert_eq!(
            Holding::decode("k", &bytes).unwrap(),
            Holding::Shared(shared.clone())
        );
        // An earlier plugin reads the record without its leases.
        let earlier: SharedNumber = postcard::from_bytes(&bytes[1..]).unwrap();
        assert_eq!(
            earlier,
            SharedNumber {
                leases: Vec::new(),
                ..shared
            }
        );
    }
}
