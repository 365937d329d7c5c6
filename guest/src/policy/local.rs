//! Geo-matching: for a create that names its caller, a group may prefer a free number
//! that looks local to them, sharing the country code or the area code, as Twilio Proxy
//! and Chime SDK proxy sessions choose one. A number is compared by its leading digits
//! (E.164, as the pool and the caller give them): the number sharing the longest prefix
//! with the caller wins, if it shares at least the group's `prefer_caller_prefix` digits;
//! ties go to the one the strategy would have taken first. Otherwise the strategy picks
//! as usual. Only the next [`WINDOW`] free numbers are looked at, so a create still costs
//! O(1) store reads (one batched read of their slots) at any pool size.

use crate::api::{Error, Group, Imports, Policy};
use crate::ring::{self, Ring};
use crate::txn::Txn;
use crate::validate::digits;

/// Free numbers looked at, from the ring's head.
const WINDOW: u64 = 32;

/// A create's preference for a number local to its caller: the policy's entry point.
#[derive(Debug, Clone, Copy)]
pub struct Local<'c> {
    /// The caller's digits.
    caller: &'c str,
    /// Leading digits a number must share with them to be preferred.
    min_digits: u32,
}

impl<'c> Local<'c> {
    /// The preference of a create for `caller` (its digits) in a group with `policy`:
    /// none without a caller or where the group prefers nothing.
    pub fn of(policy: &Policy, caller: Option<&'c str>) -> Option<Local<'c>> {
        caller
            .filter(|_| policy.prefer_caller_prefix > 0)
            .map(|caller| Local {
                caller,
                min_digits: policy.prefer_caller_prefix,
            })
    }

    /// The offset from the head of the first of `ring`'s next `free` numbers (at most
    /// [`WINDOW`]) that looks local to the caller, if one does: their slots in one batched
    /// read.
    pub fn offset<I: Imports>(
        &self,
        txn: &mut Txn<'_, I>,
        group: &Group,
        ring: &Ring,
        free: u64,
    ) -> Result<Option<u64>, Error> {
        let seen = free.min(WINDOW);
        let indexes = ring::ahead(txn, group, ring, seen)?;
        let mut candidates = Vec::with_capacity(indexes.len());
        for (offset, index) in (0..seen).zip(indexes) {
            if let Some(index) = index
                && let Some(number) = txn.imports().number_at(&group.name, index)
            {
                candidates.push((offset, digits(&number)));
            }
        }
        let candidates = candidates.iter().map(|(o, d)| (*o, d.as_str()));
        Ok(best(self.caller, self.min_digits, candidates))
    }
}

/// Leading digits `a` and `b` share.
fn shared_prefix(a: &str, b: &str) -> usize {
    a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count()
}

/// Of `candidates` (an offset from the ring's head and a number's digits, in ring
/// order), the offset of the one sharing the longest prefix with `caller`, if any shares
/// at least `min_digits`.
fn best<'a>(
    caller: &str,
    min_digits: u32,
    candidates: impl IntoIterator<Item = (u64, &'a str)>,
) -> Option<u64> {
    let min = usize::try_from(min_digits).ok()?.max(1);
    let mut best: Option<(usize, u64)> = None;
    for (offset, digits) in candidates {
        let shared = shared_prefix(caller, digits);
        if shared >= min && best.is_none_or(|(longest, _)| shared > longest) {
            best = Some((shared, offset));
        }
    }
    best.map(|(_, offset)| offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_shared_prefix_wins_and_ties_keep_ring_order() {
        let ring = [
            (0, "442071838750"),
            (1, "14155550100"),
            (2, "12125550100"),
            (3, "14155550199"),
        ];
        // A San Francisco caller: the 415 numbers, the first of them.
        assert_eq!(best("14155551234", 1, ring), Some(1));
        // A New York caller: the 212 number over the other +1 ones.
        assert_eq!(best("12125559876", 1, ring), Some(2));
        // A Chicago caller: no 312 number; any +1 number, the first.
        assert_eq!(best("13125550000", 1, ring), Some(1));
        // ... unless the group wants the area code: then none, and the strategy picks.
        assert_eq!(best("13125550000", 4, ring), None);
        // A Paris caller shares nothing.
        assert_eq!(best("33142685300", 1, ring), None);
    }

    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use crate::api::{CreateRequest, Policy, Strategy};
    use crate::testing::{Fake, group};

    const NUMBERS: [&str; 5] = [
        "+14155550100",
        "+12125550100",
        "+14155550101",
        "+442071838750",
        "+13125550100",
    ];

    fn world(strategy: Strategy, prefix: u32) -> Fake {
        let mut fake = Fake::new(vec![group("G", strategy, &NUMBERS)]);
        let policy = Policy {
            prefer_caller_prefix: prefix,
            ..Policy::WHOLE
        };
        fake.policies.insert("G".into(), policy);
        fake
    }

    fn take(fake: &mut Fake, id: &str, caller: Option<&str>) -> String {
        let request = CreateRequest {
            service_id: id.into(),
            resource_group: "G".into(),
            provide_code: false,
            phone_number: caller.map(String::from),
            booking_expiration_timeout: None,
        };
        let mut rng = StdRng::seed_from_u64(u64::from(id.as_bytes()[0]));
        crate::create(fake, &mut rng, &request)
            .unwrap()
            .access_number
    }

    #[test]
    fn a_caller_gets_a_number_of_their_area_then_of_their_country_then_any() {
        for strategy in [Strategy::RoundRobin, Strategy::Random] {
            let mut fake = world(strategy, 1);
            assert_eq!(
                take(&mut fake, "a", Some("+1 (212) 555-9999")),
                "+12125550100"
            );
            assert_eq!(
                take(&mut fake, "b", Some("+44 20 7946 0000")),
                "+442071838750"
            );
            // The 212 number is taken: another New Yorker gets a +1 number.
            let c = take(&mut fake, "c", Some("+12125550123"));
            assert!(c.starts_with("+1"), "{c}");
            // San Francisco callers get the 415 numbers while they last.
            let d = take(&mut fake, "d", Some("+14155557777"));
            assert!(d.starts_with("+1415") || c.starts_with("+1415"), "{c} {d}");
            // Nothing +33 is left or was ever there: the one number left, whatever it is.
            assert!(take(&mut fake, "e", Some("+33142685300")).starts_with('+'));
        }
    }

    #[test]
    fn without_a_caller_or_a_preference_the_strategy_picks() {
        let mut fake = world(Strategy::RoundRobin, 1);
        assert_eq!(take(&mut fake, "a", None), "+14155550100");
        let mut fake = world(Strategy::RoundRobin, 0);
        assert_eq!(take(&mut fake, "a", Some("+12125559999")), "+14155550100");
        // Wanting the area code (4 digits), a Chicago caller gets the 312 number (which
        // changes places with the head); a Boston one (617) gets the next number
        // round-robin gives.
        let mut fake = world(Strategy::RoundRobin, 4);
        assert_eq!(take(&mut fake, "a", Some("+13125559999")), "+13125550100");
        assert_eq!(take(&mut fake, "b", Some("+16175559999")), "+12125550100");
    }
}
