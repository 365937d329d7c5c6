//! The layout of the reservation state in the host's ordered key space.
//!
//! Parts are joined by U+001F (unit separator), which validation keeps out of every id,
//! so no two tuples share a key and a group's keys form one contiguous range.
//!
//! | key                                   | value                                 |
//! |---------------------------------------|---------------------------------------|
//! | `g␟{group}`                           | [`RingMeta`](crate::records::RingMeta)|
//! | `r␟{group}␟{pool-id}␟{slot}`          | a pool index (u32, little endian)     |
//! | `n␟{number digits}`                   | a [`Reservation`](crate::records::Reservation) |
//! | `s␟{group}␟{service id}`              | the digits of the service's number    |
//! | `x␟{group}␟{expires-at}␟{digits}`     | empty: the expiry index               |
//!
//! Numbers are fixed-width hexadecimal so that key order is numeric order.

const SEP: char = '\u{1f}';

/// The free-number ring's head, tail and pool fingerprint for `group`.
pub fn ring_meta(group: &str) -> String {
    format!("g{SEP}{group}")
}

/// One slot of `group`'s free-number ring for pool `pool_id`.
pub fn ring_slot(group: &str, pool_id: u64, slot: u64) -> String {
    format!("r{SEP}{group}{SEP}{pool_id:016x}{SEP}{slot:016x}")
}

/// The reservation holding the number with these digits.
pub fn reservation(digits: &str) -> String {
    format!("n{SEP}{digits}")
}

/// Which number `service_id` holds in `group`.
pub fn holder(group: &str, service_id: &str) -> String {
    format!("s{SEP}{group}{SEP}{service_id}")
}

/// The expiry-index entry of a reservation.
pub fn expiry(group: &str, expires_at: u64, digits: &str) -> String {
    format!("x{SEP}{group}{SEP}{expires_at:016x}{SEP}{digits}")
}

/// The key range of `group`'s reservations that expire at or before `now`.
pub fn expired_by(group: &str, now: u64) -> (String, String) {
    (
        format!("x{SEP}{group}{SEP}"),
        format!("x{SEP}{group}{SEP}{:016x}", now.saturating_add(1)),
    )
}

/// The number digits at the end of an expiry-index key.
pub fn digits_of_expiry(key: &str) -> Option<&str> {
    key.rsplit_once(SEP).map(|(_, digits)| digits)
}

#[cfg(test)]
mod tests {
    use super::*;

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
