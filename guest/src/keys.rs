//! The layout of the reservation state in the host's ordered key space.
//!
//! Parts are joined by U+001F (unit separator), which validation keeps out of every id,
//! so no two tuples share a key and a group's keys form one contiguous range.
//!
//! | key                                   | value                                 |
//! |---------------------------------------|---------------------------------------|
//! | `g␟{group}␟{fingerprint}`             | [`RingMeta`](crate::records::RingMeta)|
//! | `g␟{group}`                           | a legacy [`RingMeta`](crate::records::RingMeta) |
//! | `p␟{group}␟{fingerprint}`             | [`PoolRecord`](crate::records::PoolRecord) |
//! | `e`                                   | [`Epoch`](crate::records::Epoch)      |
//! | `r␟{group}␟{ring-id}␟{slot}`          | a pool index (u32, little endian)     |
//! | `n␟{number digits}`                   | a [`Reservation`](crate::records::Reservation), or a [`SharedNumber`](crate::records::SharedNumber) |
//! | `k␟{number digits}`                   | [`Parked`](crate::records::Parked)    |
//! | `w␟{group}␟{ring-id}␟{usable-at}␟{index}` | empty: a number resting (cool-off) |
//! | `s␟{group}␟{service id}`              | the digits of the service's number    |
//! | `x␟{group}␟{expires-at}␟{digits}`     | empty: the expiry index (one per seat of a shared number, each expiring at its own instant) |
//! | `c␟{group}␟{caller digits}`           | [`Remembered`](crate::records::Remembered): the caller's last number |
//! | `y␟{group}␟{until}␟{caller digits}`   | empty: when a remembered number is forgotten |
//! | `o␟{group}␟{ring-id}␟{index}`         | the caller digits that remember the number |
//!
//! Numbers are fixed-width hexadecimal so that key order is numeric order.

const SEP: char = '\u{1f}';

/// A key under construction: a tag, then parts each preceded by [`SEP`]. Built by hand
/// rather than with `format!`: keys are made on every call, and the formatting
/// machinery is a measurable share of a call inside the component.
struct Key(String);

impl Key {
    fn new(tag: char) -> Key {
        let mut key = String::with_capacity(64);
        key.push(tag);
        Key(key)
    }

    fn part(mut self, part: &str) -> Key {
        self.0.push(SEP);
        self.0.push_str(part);
        self
    }

    /// `n` as 16 lower-case hexadecimal digits.
    fn hex(mut self, n: u64) -> Key {
        self.0.push(SEP);
        for shift in (0..16).rev() {
            let nibble = ((n >> (shift * 4)) & 0xf) as u32;
            self.0.push(char::from_digit(nibble, 16).unwrap_or('0'));
        }
        self
    }
}

/// The free-number ring of `group` for the pool with this fingerprint: its identity,
/// head and tail. Keyed by the fingerprint, so that nodes serving two pool definitions
/// at once (a rolling update) each use their own ring instead of rebuilding one in turn.
pub fn ring_meta(group: &str, fingerprint: u64) -> String {
    Key::new('g').part(group).hex(fingerprint).0
}

/// Where rings were kept before they were keyed by fingerprint: one per group.
pub fn legacy_ring_meta(group: &str) -> String {
    Key::new('g').part(group).0
}

/// The key range of every ring of `group` (not the legacy one).
pub fn group_ring_metas(group: &str) -> (String, String) {
    // Hexadecimal digits all sort before U+007F.
    let start = Key::new('g').part(group).part("").0;
    let end = format!("{start}\u{7f}");
    (start, end)
}

/// The key range of every ring of every group, legacy ones included.
pub fn all_ring_metas() -> (String, String) {
    // U+0020 is the character after the separator: every `g␟…` key sorts before `g `.
    (Key::new('g').part("").0, String::from("g\u{20}"))
}

/// The group of a ring key from [`all_ring_metas`], and its fingerprint (`None` for a
/// legacy ring).
pub fn parse_ring_meta(key: &str) -> Option<(&str, Option<u64>)> {
    let rest = key.strip_prefix('g')?.strip_prefix(SEP)?;
    Some(match rest.split_once(SEP) {
        Some((group, hex)) => (group, Some(u64::from_str_radix(hex, 16).ok()?)),
        None => (rest, None),
    })
}

/// Which ring `group` uses for the pool with this fingerprint.
pub fn pool_record(group: &str, fingerprint: u64) -> String {
    Key::new('p').part(group).hex(fingerprint).0
}

/// How many rings were built.
pub fn epoch() -> String {
    Key::new('e').0
}

/// One slot of the free-number ring `ring_id` of `group`.
pub fn ring_slot(group: &str, ring_id: u64, slot: u64) -> String {
    Key::new('r').part(group).hex(ring_id).hex(slot).0
}

/// Pool index `index` of ring `ring_id` of `group`, resting until `usable_at`.
pub fn resting(group: &str, ring_id: u64, usable_at: u64, index: u32) -> String {
    Key::new('w')
        .part(group)
        .hex(ring_id)
        .hex(usable_at)
        .hex(u64::from(index))
        .0
}

/// The key range of ring `ring_id`'s resting numbers usable by `until` (all of them:
/// `u64::MAX`), in the order they become usable.
pub fn resting_by(group: &str, ring_id: u64, until: u64) -> (String, String) {
    let start = Key::new('w').part(group).hex(ring_id).part("").0;
    let end = match until.checked_add(1) {
        Some(after) => Key::new('w').part(group).hex(ring_id).hex(after).0,
        None => format!("{start}\u{7f}"),
    };
    (start, end)
}

/// The instant and pool index of a [`resting`] key.
pub fn parse_resting(key: &str) -> Option<(u64, u32)> {
    let mut parts = key.rsplitn(3, SEP);
    let index = u32::try_from(u64::from_str_radix(parts.next()?, 16).ok()?).ok()?;
    let usable_at = u64::from_str_radix(parts.next()?, 16).ok()?;
    Some((usable_at, index))
}

/// The number `caller` was given last in `group`, remembered for sticky lending.
pub fn remembered(group: &str, caller: &str) -> String {
    Key::new('c').part(group).part(caller).0
}

/// Who remembers pool index `index` of ring `ring_id` of `group` as their last number.
pub fn remembered_by(group: &str, ring_id: u64, index: u32) -> String {
    Key::new('o')
        .part(group)
        .hex(ring_id)
        .hex(u64::from(index))
        .0
}

/// The entry that forgets `caller`'s remembered number in `group` at `until`.
pub fn forgetting(group: &str, until: u64, caller: &str) -> String {
    Key::new('y').part(group).hex(until).part(caller).0
}

/// The key range of `group`'s remembered numbers to forget by `now`.
pub fn forgotten_by(group: &str, now: u64) -> (String, String) {
    (
        Key::new('y').part(group).part("").0,
        Key::new('y').part(group).hex(now.saturating_add(1)).0,
    )
}

/// The instant and caller digits of a [`forgetting`] key.
pub fn parse_forgetting(key: &str) -> Option<(u64, &str)> {
    let mut parts = key.rsplitn(3, SEP);
    let caller = parts.next()?;
    let until = u64::from_str_radix(parts.next()?, 16).ok()?;
    Some((until, caller))
}

/// The reservation holding the number with these digits.
pub fn reservation(digits: &str) -> String {
    Key::new('n').part(digits).0
}

/// The ring waiting for the number with these digits.
pub fn parked(digits: &str) -> String {
    Key::new('k').part(digits).0
}

/// The key range of every reservation, of every group.
pub fn all_reservations() -> (String, String) {
    // U+0020 is the character after the separator: every `n␟…` key sorts before `n `.
    (Key::new('n').part("").0, String::from("n\u{20}"))
}

/// Which number `service_id` holds in `group`.
pub fn holder(group: &str, service_id: &str) -> String {
    Key::new('s').part(group).part(service_id).0
}

/// The expiry-index entry of a reservation.
pub fn expiry(group: &str, expires_at: u64, digits: &str) -> String {
    Key::new('x').part(group).hex(expires_at).part(digits).0
}

/// The key range of `group`'s reservations that expire at or before `now`.
pub fn expired_by(group: &str, now: u64) -> (String, String) {
    (
        Key::new('x').part(group).part("").0,
        Key::new('x').part(group).hex(now.saturating_add(1)).0,
    )
}

/// The instant an expiry-index key is filed under.
pub fn expiry_instant(key: &str) -> Option<u64> {
    let mut parts = key.rsplitn(3, SEP);
    parts.next()?;
    u64::from_str_radix(parts.next()?, 16).ok()
}

/// The number digits at the end of an expiry-index key.
pub fn digits_of_expiry(key: &str) -> Option<&str> {
    key.rsplit_once(SEP).map(|(_, digits)| digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_the_documented_layout() {
        assert_eq!(ring_meta("G", 0xabc), "g\u{1f}G\u{1f}0000000000000abc");
        assert_eq!(legacy_ring_meta("G"), "g\u{1f}G");
        assert_eq!(
            ring_slot("G", 0xabc, 255),
            "r\u{1f}G\u{1f}0000000000000abc\u{1f}00000000000000ff"
        );
        assert_eq!(reservation("123"), "n\u{1f}123");
        assert_eq!(parked("123"), "k\u{1f}123");
        let key = resting("G", 7, 0x1234, 9);
        assert_eq!(parse_resting(&key), Some((0x1234, 9)));
        let entry = expiry("G", 0x5678, "155");
        assert_eq!(expiry_instant(&entry), Some(0x5678));
        assert_eq!(digits_of_expiry(&entry), Some("155"));
        assert_eq!(remembered("G", "1555"), "c\u{1f}G\u{1f}1555");
        let forget = forgetting("G", 0x42, "1555");
        assert_eq!(parse_forgetting(&forget), Some((0x42, "1555")));
        let (start, end) = forgotten_by("G", 0x42);
        assert!(start <= forget && forget < end);
        assert!(forgetting("G", 0x43, "1") >= forgotten_by("G", 0x42).1);
        let (start, end) = resting_by("G", 7, 0x1234);
        assert!(start <= key && key < end);
        assert!(resting("G", 7, 0x1235, 0) >= end);
        assert!(resting("G", 8, 0, 0) >= resting_by("G", 7, u64::MAX).1);
        let (start, end) = resting_by("G", 7, u64::MAX);
        assert!(
            start <= resting("G", 7, u64::MAX, u32::MAX)
                && resting("G", 7, u64::MAX, u32::MAX) < end
        );
        assert_eq!(pool_record("G", 1), "p\u{1f}G\u{1f}0000000000000001");
        assert_eq!(parse_ring_meta(&ring_meta("G", 7)), Some(("G", Some(7))));
        assert_eq!(parse_ring_meta(&legacy_ring_meta("G")), Some(("G", None)));
        let (start, end) = all_ring_metas();
        for key in [
            ring_meta("", 0),
            ring_meta("\u{10ffff}", u64::MAX),
            legacy_ring_meta("G"),
        ] {
            assert!(start <= key && key < end, "{key:?}");
        }
        let (start, end) = group_ring_metas("G");
        assert!(start <= ring_meta("G", 0) && ring_meta("G", u64::MAX) < end);
        for other in [legacy_ring_meta("G"), ring_meta("G2", 0), ring_meta("", 0)] {
            assert!(!(start <= other && other < end), "{other:?}");
        }
        let (start, end) = all_reservations();
        assert!(start <= reservation("") && reservation("999") < end);
        assert!(!(start <= holder("G", "s") && holder("G", "s") < end));
        assert_eq!(holder("G", "svc"), "s\u{1f}G\u{1f}svc");
        assert_eq!(
            expiry("G", u64::MAX, "9"),
            "x\u{1f}G\u{1f}ffffffffffffffff\u{1f}9"
        );
        // Fixed-width hexadecimal: key order is numeric order.
        assert!(expiry("G", 0xf, "1") < expiry("G", 0x10, "1"));
    }

    #[test]
    fn expired_range_holds_exactly_the_due_entries() {
        let (start, end) = expired_by("G", 1000);
        let due = expiry("G", 1000, "123");
        let not_due = expiry("G", 1001, "123");
        let other_group = expiry("G2", 10, "123");
        assert!(start <= due && due < end);
        assert!(not_due >= end);
        assert!(!(start <= other_group && other_group < end));
        assert_eq!(digits_of_expiry(&due), Some("123"));
    }
}
