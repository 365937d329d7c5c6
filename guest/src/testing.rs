//! An in-memory implementation of [`Imports`] for the logic's own tests: the pools as
//! explicit lists, a clock the test sets, and a revisioned map with the contract's
//! compare-and-swap commit.

use std::collections::BTreeMap;

use crate::api::{
    CommitOutcome, Entry, Group, Imports, Instant, Mutation, Options, Policy, Precondition,
    Strategy,
};

/// The world as one test sees it.
pub struct Fake {
    pub now: Instant,
    pub options: Options,
    /// Each group and its numbers, in pool order.
    pub groups: Vec<(Group, Vec<String>)>,
    /// Policies by group name; absent: the default.
    pub policies: BTreeMap<String, Policy>,
    pub state: BTreeMap<String, (Vec<u8>, u64)>,
    revision: u64,
}

/// A group of `numbers`, fingerprinted by their list.
pub fn group(name: &str, strategy: Strategy, numbers: &[&str]) -> (Group, Vec<String>) {
    // FNV-1a over the list: a changed list changes the fingerprint.
    let pool_id = numbers
        .iter()
        .flat_map(|n| n.bytes().chain([0]))
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    let group = Group {
        name: name.to_string(),
        strategy,
        booking_expiration_timeout: None,
        size: numbers.len() as u32,
        pool_id,
    };
    (group, numbers.iter().map(|n| n.to_string()).collect())
}

impl Fake {
    pub fn new(groups: Vec<(Group, Vec<String>)>) -> Fake {
        Fake {
            now: 1_000_000,
            options: Options {
                access_code_length: 6,
                booking_expiration_timeout: 30,
                max_code_attempts: 5,
            },
            groups,
            policies: BTreeMap::new(),
            state: BTreeMap::new(),
            revision: 0,
        }
    }

    pub fn advance(&mut self, seconds: u64) {
        self.now += seconds * 1000;
    }

    fn pool(&self, name: &str) -> Option<&(Group, Vec<String>)> {
        self.groups.iter().find(|(g, _)| g.name == name)
    }
}

fn digits(n: &str) -> String {
    n.chars().filter(char::is_ascii_digit).collect()
}

impl Imports for Fake {
    fn now(&mut self) -> Instant {
        self.now
    }
    fn is_active(&mut self, _: &str) -> Result<bool, String> {
        Ok(true)
    }
    fn options(&mut self) -> Options {
        self.options
    }
    fn group(&mut self, name: &str) -> Option<Group> {
        self.pool(name).map(|(g, _)| g.clone())
    }
    fn policy(&mut self, group: &str) -> Policy {
        self.policies.get(group).cloned().unwrap_or_default()
    }
    fn number_at(&mut self, group: &str, index: u32) -> Option<String> {
        self.pool(group)?.1.get(index as usize).cloned()
    }
    fn index_of(&mut self, group: &str, number: &str) -> Option<u32> {
        let wanted = digits(number);
        let position = self
            .pool(group)?
            .1
            .iter()
            .position(|n| digits(n) == wanted)?;
        u32::try_from(position).ok()
    }
    fn get(&mut self, keys: &[String]) -> Result<Vec<Option<Entry>>, String> {
        Ok(keys
            .iter()
            .map(|k| {
                self.state.get(k).map(|(value, revision)| Entry {
                    key: k.clone(),
                    value: value.clone(),
                    revision: *revision,
                })
            })
            .collect())
    }
    fn scan(&mut self, start: &str, end: &str, limit: u32) -> Result<Vec<Entry>, String> {
        Ok(self
            .state
            .range(start.to_string()..end.to_string())
            .take(limit as usize)
            .map(|(k, (value, revision))| Entry {
                key: k.clone(),
                value: value.clone(),
                revision: *revision,
            })
            .collect())
    }
    fn commit(
        &mut self,
        preconditions: Vec<Precondition>,
        mutations: Vec<Mutation>,
    ) -> Result<CommitOutcome, String> {
        for p in preconditions {
            if self.state.get(&p.key).map(|(_, r)| *r) != p.revision {
                return Ok(CommitOutcome::Conflict(p.key));
            }
        }
        self.revision += 1;
        for m in mutations {
            match m {
                Mutation::Put(k, v) => {
                    self.state.insert(k, (v, self.revision));
                }
                Mutation::Delete(k) => {
                    self.state.remove(&k);
                }
            }
        }
        Ok(CommitOutcome::Committed(self.revision))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{CreateRequest, Error, MatchRequest};
    use crate::{create, match_access, pool_status, release};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn world(strategy: Strategy, numbers: &[&str], policy: Policy) -> Fake {
        let mut fake = Fake::new(vec![group("G", strategy, numbers)]);
        fake.policies.insert("G".into(), policy);
        fake
    }

    fn take(fake: &mut Fake, id: &str, timeout: u32) -> Result<String, Error> {
        let request = CreateRequest {
            service_id: id.into(),
            resource_group: "G".into(),
            provide_code: false,
            phone_number: None,
            booking_expiration_timeout: Some(timeout),
        };
        create(fake, &mut StdRng::seed_from_u64(7), &request).map(|info| info.access_number)
    }

    fn dial(fake: &mut Fake, number: &str) -> Result<String, Error> {
        let request = MatchRequest {
            access_number: number.into(),
            access_code: None,
            phone_number: None,
        };
        match_access(fake, &request).map(|m| m.service_id)
    }

    fn free(fake: &mut Fake) -> u32 {
        let status = pool_status(fake, "G").unwrap();
        assert_eq!(status.live + status.free, status.size);
        status.free
    }

    fn exhausted() -> Result<String, Error> {
        Err(Error::NoAccessNumberAvailable("G".into()))
    }

    const COOL_OFF: Policy = Policy {
        reuse_cooldown: 60,
        match_grace: 0,
    };

    #[test]
    fn a_released_number_rests_for_the_cool_off_in_either_strategy() {
        for strategy in [Strategy::RoundRobin, Strategy::Random] {
            let mut fake = world(strategy, &["5551001", "5551002"], COOL_OFF);
            let first = take(&mut fake, "a", 300).unwrap();
            assert_eq!(release(&mut fake, "a", "G").unwrap(), first);
            assert_eq!(free(&mut fake), 1, "{strategy:?}: resting is not free");
            let second = take(&mut fake, "b", 300).unwrap();
            assert_ne!(second, first, "{strategy:?}");
            assert_eq!(take(&mut fake, "c", 300), exhausted(), "{strategy:?}");
            fake.advance(59);
            assert_eq!(take(&mut fake, "c", 300), exhausted(), "{strategy:?}");
            assert_eq!(free(&mut fake), 0);
            fake.advance(1);
            assert_eq!(free(&mut fake), 1);
            assert_eq!(take(&mut fake, "c", 300).unwrap(), first, "{strategy:?}");
        }
    }

    #[test]
    fn an_expired_number_rests_from_its_expiry() {
        let mut fake = world(Strategy::RoundRobin, &["5551001"], COOL_OFF);
        take(&mut fake, "a", 30).unwrap();
        fake.advance(30);
        assert_eq!(take(&mut fake, "b", 30), exhausted());
        assert_eq!(free(&mut fake), 0);
        fake.advance(59);
        assert_eq!(take(&mut fake, "b", 30), exhausted());
        fake.advance(1);
        assert_eq!(free(&mut fake), 1);
        assert_eq!(take(&mut fake, "b", 30).unwrap(), "5551001");
    }

    #[test]
    fn without_a_cool_off_numbers_come_back_at_once() {
        let mut fake = world(Strategy::RoundRobin, &["5551001"], Policy::default());
        take(&mut fake, "a", 30).unwrap();
        release(&mut fake, "a", "G").unwrap();
        assert_eq!(free(&mut fake), 1);
        assert_eq!(take(&mut fake, "b", 30).unwrap(), "5551001");
    }

    #[test]
    fn a_late_call_within_the_grace_window_still_matches_once() {
        let policy = Policy {
            reuse_cooldown: 20,
            match_grace: 10,
        };
        let mut fake = world(Strategy::RoundRobin, &["5551001"], policy.clone());
        take(&mut fake, "a", 30).unwrap();
        fake.advance(39);
        assert_eq!(free(&mut fake), 0, "in its grace window: not free");
        assert_eq!(dial(&mut fake, "5551001").unwrap(), "a");
        assert_eq!(dial(&mut fake, "5551001"), Err(Error::NoMatch));

        // Past the grace window: no match, and the number rests until expiry + 20 s.
        let mut fake = world(Strategy::RoundRobin, &["5551001"], policy);
        take(&mut fake, "a", 30).unwrap();
        fake.advance(40);
        assert_eq!(dial(&mut fake, "5551001"), Err(Error::NoMatch));
        assert_eq!(take(&mut fake, "b", 30), exhausted());
        fake.advance(10);
        assert_eq!(take(&mut fake, "b", 30).unwrap(), "5551001");
    }

    #[test]
    fn a_reservation_in_its_grace_window_is_not_reclaimed() {
        let policy = Policy {
            reuse_cooldown: 20,
            match_grace: 10,
        };
        let mut fake = world(Strategy::RoundRobin, &["5551001", "5551002"], policy);
        take(&mut fake, "a", 30).unwrap();
        fake.advance(35);
        // A create reclaims expired reservations first: not this one yet.
        assert_eq!(take(&mut fake, "b", 30).unwrap(), "5551002");
        assert_eq!(dial(&mut fake, "5551001").unwrap(), "a");
    }
}
