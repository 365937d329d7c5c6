//! An in-memory implementation of [`Imports`] for the logic's own tests: the pools as
//! explicit lists, a clock the test sets, and a revisioned map with the contract's
//! compare-and-swap commit.

use std::collections::BTreeMap;

use crate::api::{
    CommitOutcome, Entry, Group, Imports, Instant, LeasePolicy, Mutation, Options, Policy,
    Precondition, Strategy,
};

/// The world as one test sees it.
pub struct Fake {
    pub now: Instant,
    pub options: Options,
    /// Each group and its numbers, in pool order.
    pub groups: Vec<(Group, Vec<String>)>,
    /// Policies by group name; absent: the default.
    pub policies: BTreeMap<String, Policy>,
    /// Lease policies by group name; absent: the default.
    pub leases: BTreeMap<String, LeasePolicy>,
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
            leases: BTreeMap::new(),
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
    fn lease_policy(&mut self, group: &str) -> LeasePolicy {
        self.leases.get(group).copied().unwrap_or_default()
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
    use crate::api::{CreateRequest, Error, MatchRequest, Refused};
    use crate::{create, create_placed, match_access, pool_status, release};
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
        ..Policy::WHOLE
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
            ..Policy::WHOLE
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
            ..Policy::WHOLE
        };
        let mut fake = world(Strategy::RoundRobin, &["5551001", "5551002"], policy);
        take(&mut fake, "a", 30).unwrap();
        fake.advance(35);
        // A create reclaims expired reservations first: not this one yet.
        assert_eq!(take(&mut fake, "b", 30).unwrap(), "5551002");
        assert_eq!(dial(&mut fake, "5551001").unwrap(), "a");
    }

    /// Group G (one number) falling back to SHARED (two numbers).
    fn with_fallback(cooldown: u32) -> Fake {
        let mut fake = Fake::new(vec![
            group("G", Strategy::RoundRobin, &["5551001"]),
            group("SHARED", Strategy::RoundRobin, &["5552001", "5552002"]),
        ]);
        let policy = |fallback: Option<&str>| Policy {
            reuse_cooldown: cooldown,
            match_grace: 0,
            fallback_group: fallback.map(String::from),
            ..Policy::WHOLE
        };
        fake.policies.insert("G".into(), policy(Some("SHARED")));
        fake.policies.insert("SHARED".into(), policy(None));
        fake
    }

    fn place(fake: &mut Fake, id: &str, group: &str) -> Result<(String, String), Refused> {
        let request = CreateRequest {
            service_id: id.into(),
            resource_group: group.into(),
            provide_code: false,
            phone_number: None,
            booking_expiration_timeout: Some(30),
        };
        create_placed(fake, &mut StdRng::seed_from_u64(7), &request)
            .map(|p| (p.access.access_number, p.resource_group))
    }

    fn pair(number: &str, group: &str) -> (String, String) {
        (number.to_string(), group.to_string())
    }

    #[test]
    fn an_exhausted_group_lends_from_its_fallback_and_says_so() {
        let mut fake = with_fallback(0);
        assert_eq!(place(&mut fake, "a", "G").unwrap(), pair("5551001", "G"));
        assert_eq!(
            place(&mut fake, "b", "G").unwrap(),
            pair("5552001", "SHARED")
        );
        assert_eq!(pool_status(&mut fake, "SHARED").unwrap().free, 1);
        // The call to the fallback number matches, and gives it back to SHARED.
        let matched = match_access(
            &mut fake,
            &MatchRequest {
                access_number: "5552001".into(),
                access_code: None,
                phone_number: None,
            },
        )
        .unwrap();
        assert_eq!(
            (matched.service_id.as_str(), matched.resource_group.as_str()),
            ("b", "SHARED")
        );
        assert_eq!(pool_status(&mut fake, "SHARED").unwrap().free, 2);
    }

    #[test]
    fn a_fallback_reservation_is_the_services_reservation_in_the_group_it_asked() {
        let mut fake = with_fallback(0);
        place(&mut fake, "a", "G").unwrap();
        assert_eq!(
            place(&mut fake, "b", "G").unwrap(),
            pair("5552001", "SHARED")
        );
        // Asking G again replaces it (its number goes back to SHARED)...
        assert_eq!(
            place(&mut fake, "b", "G").unwrap(),
            pair("5552002", "SHARED")
        );
        assert_eq!(pool_status(&mut fake, "SHARED").unwrap().free, 1);
        // ...and releasing in G gives it back.
        assert_eq!(release(&mut fake, "b", "G").unwrap(), "5552002");
        assert_eq!(pool_status(&mut fake, "SHARED").unwrap().free, 2);
        // A reservation the service made in SHARED itself is another one: asking G
        // again leaves it alone.
        assert_eq!(
            place(&mut fake, "b", "SHARED").unwrap(),
            pair("5552001", "SHARED")
        );
        assert_eq!(
            place(&mut fake, "b", "G").unwrap(),
            pair("5552002", "SHARED")
        );
        assert_eq!(release(&mut fake, "b", "SHARED").unwrap(), "5552001");
        assert_eq!(release(&mut fake, "b", "G").unwrap(), "5552002");
    }

    #[test]
    fn the_fallback_is_one_hop_and_exhaustion_names_the_requested_group() {
        let mut fake = with_fallback(0);
        // SHARED falling back to G is never followed from G (one hop), nor from SHARED
        // back into G's exhausted pool twice.
        fake.policies.get_mut("SHARED").unwrap().fallback_group = Some("G".into());
        for id in ["a", "b", "c"] {
            place(&mut fake, id, "G").unwrap();
        }
        let refused = place(&mut fake, "d", "G").unwrap_err();
        assert_eq!(refused.error, Error::NoAccessNumberAvailable("G".into()));
        // Every reservation expires 30 s from now: that is when to retry.
        assert_eq!(refused.retry_at, Some(fake.now + 30_000));
    }

    #[test]
    fn an_exhausted_pool_says_when_its_first_number_becomes_lendable() {
        let mut fake = world(Strategy::RoundRobin, &["5551001", "5551002"], COOL_OFF);
        let first = take(&mut fake, "a", 300).unwrap();
        fake.advance(10);
        take(&mut fake, "b", 300).unwrap();
        fake.advance(5);
        // The first number rests 60 s from its release; the other is held 295 s more.
        assert_eq!(release(&mut fake, "a", "G").unwrap(), first);
        let released_at = fake.now;
        let refused = place(&mut fake, "c", "G").unwrap_err();
        assert_eq!(refused.error, Error::NoAccessNumberAvailable("G".into()));
        assert_eq!(refused.retry_at, Some(released_at + 60_000));
        // Without rests, the first expiry (plus its rest) is the answer.
        let mut fake = world(Strategy::RoundRobin, &["5551001"], COOL_OFF);
        take(&mut fake, "a", 30).unwrap();
        let refused = place(&mut fake, "c", "G").unwrap_err();
        assert_eq!(refused.retry_at, Some(fake.now + 30_000 + 60_000));
        fake.advance(90);
        assert_eq!(take(&mut fake, "c", 30).unwrap(), "5551001");
    }

    #[test]
    fn asking_again_in_an_exhausted_pool_counts_the_rest_it_just_began() {
        // The service's own number goes to rest in the same transaction that finds the
        // pool exhausted: the answer must see that write, not the stale expiry entry.
        let mut fake = world(Strategy::RoundRobin, &["5551001"], COOL_OFF);
        take(&mut fake, "a", 300).unwrap();
        fake.advance(10);
        let refused = place(&mut fake, "a", "G").unwrap_err();
        assert_eq!(refused.error, Error::NoAccessNumberAvailable("G".into()));
        assert_eq!(refused.retry_at, Some(fake.now + 60_000));
    }

    fn sticky(cooldown: u32) -> Policy {
        Policy {
            reuse_cooldown: cooldown,
            sticky_memory: 600,
            ..Policy::default()
        }
    }

    /// `id` asks for a number for the caller `caller`.
    fn take_for(fake: &mut Fake, id: &str, caller: &str) -> Result<String, Error> {
        let request = CreateRequest {
            service_id: id.into(),
            resource_group: "G".into(),
            provide_code: false,
            phone_number: Some(caller.into()),
            booking_expiration_timeout: Some(300),
        };
        create(fake, &mut StdRng::seed_from_u64(7), &request).map(|info| info.access_number)
    }

    const NUMBERS: [&str; 3] = ["5551001", "5551002", "5551003"];

    #[test]
    fn a_sticky_group_lends_a_caller_their_last_number_when_it_is_free() {
        for strategy in [Strategy::RoundRobin, Strategy::Random] {
            let mut fake = world(strategy, &NUMBERS, sticky(0));
            let mine = take_for(&mut fake, "a", "+15557770001").unwrap();
            release(&mut fake, "a", "G").unwrap();
            let other = take_for(&mut fake, "b", "+15557770002").unwrap();
            if other == mine {
                continue; // a random draw took it: nothing to remember any more
            }
            assert_eq!(
                take_for(&mut fake, "c", "+1 555 777 0001").unwrap(),
                mine,
                "{strategy:?}"
            );
            assert_eq!(
                free(&mut fake),
                1,
                "{strategy:?}: the ring lost exactly that number"
            );
            let last = take(&mut fake, "d", 30).unwrap();
            assert!(![mine.as_str(), other.as_str()].contains(&last.as_str()));
            assert_eq!(take(&mut fake, "e", 30), exhausted());
        }
        // Without `sticky`, round-robin lends the number free the longest.
        let mut fake = world(Strategy::RoundRobin, &NUMBERS, Policy::default());
        let first = take_for(&mut fake, "a", "+15557770001").unwrap();
        release(&mut fake, "a", "G").unwrap();
        take_for(&mut fake, "b", "+15557770002").unwrap();
        assert_ne!(take_for(&mut fake, "c", "+15557770001").unwrap(), first);
    }

    #[test]
    fn the_same_caller_skips_the_cool_off_and_others_wait_for_it() {
        let mut fake = world(Strategy::RoundRobin, &NUMBERS[..2], sticky(60));
        let mine = take_for(&mut fake, "a", "+15557770001").unwrap();
        release(&mut fake, "a", "G").unwrap();
        take_for(&mut fake, "b", "+15557770002").unwrap();
        assert_eq!(
            take_for(&mut fake, "c", "+15557770003"),
            exhausted(),
            "it rests"
        );
        assert_eq!(take_for(&mut fake, "d", "+15557770001").unwrap(), mine);
        assert_eq!(free(&mut fake), 0);
    }

    #[test]
    fn a_remembered_number_is_found_after_it_finished_resting() {
        let mut fake = world(Strategy::RoundRobin, &NUMBERS, sticky(60));
        let mine = take_for(&mut fake, "a", "+15557770001").unwrap();
        release(&mut fake, "a", "G").unwrap();
        fake.advance(61);
        // This create moves the rested number onto the ring, behind the other two.
        let other = take_for(&mut fake, "b", "+15557770002").unwrap();
        assert_ne!(other, mine);
        assert_eq!(take_for(&mut fake, "c", "+15557770001").unwrap(), mine);
        assert_eq!(free(&mut fake), 1);
    }

    #[test]
    fn a_held_number_or_an_ended_memory_is_not_lent_again() {
        let mut fake = world(Strategy::RoundRobin, &NUMBERS[..2], sticky(0));
        let mine = take_for(&mut fake, "a", "+15557770001").unwrap();
        release(&mut fake, "a", "G").unwrap();
        let other = take(&mut fake, "b", 300).unwrap();
        assert_eq!(
            take(&mut fake, "c", 300).unwrap(),
            mine,
            "lent to someone else"
        );
        release(&mut fake, "b", "G").unwrap();
        assert_eq!(take_for(&mut fake, "d", "+15557770001").unwrap(), other);

        // The memory lasts 600 s from the reservation's end; then it is forgotten,
        // and its keys are gone.
        let mut fake = world(Strategy::RoundRobin, &NUMBERS, sticky(0));
        let mine = take_for(&mut fake, "a", "+15557770001").unwrap();
        release(&mut fake, "a", "G").unwrap();
        take(&mut fake, "b", 300).unwrap();
        fake.advance(601);
        assert_ne!(take_for(&mut fake, "c", "+15557770001").unwrap(), mine);
        assert!(
            !fake.state.keys().any(|k| k.starts_with(['c', 'y', 'o'])),
            "{:?}",
            fake.state.keys().collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_remembered_number_is_followed_when_another_takes_its_place() {
        // X's and Y's numbers wait at the ring's tail; X takes theirs from the middle,
        // and Y's moves into its place: Y still gets theirs.
        let mut fake = world(Strategy::RoundRobin, &NUMBERS, sticky(0));
        let x = take_for(&mut fake, "a", "+15557770001").unwrap();
        let y = take_for(&mut fake, "b", "+15557770002").unwrap();
        release(&mut fake, "a", "G").unwrap();
        release(&mut fake, "b", "G").unwrap();
        assert_eq!(take_for(&mut fake, "c", "+15557770001").unwrap(), x);
        assert_eq!(take_for(&mut fake, "d", "+15557770002").unwrap(), y);
    }

    #[test]
    fn a_remembered_number_is_followed_when_a_random_draw_moves_it() {
        // X's number at the head of a random ring; another create draws a number behind
        // it, which moves X's into the drawn place; then X asks among two free numbers.
        let mut moved = 0;
        for seed in 0..16 {
            let mut fake = world(Strategy::Random, &NUMBERS, sticky(0));
            let mut rng = StdRng::seed_from_u64(seed);
            let mut lend = |fake: &mut Fake, id: &str, caller: Option<&str>| {
                let request = CreateRequest {
                    service_id: id.into(),
                    resource_group: "G".into(),
                    provide_code: false,
                    phone_number: caller.map(String::from),
                    booking_expiration_timeout: Some(300),
                };
                create(fake, &mut rng, &request).unwrap().access_number
            };
            // Released in this order, the ring holds X's number first, then two more.
            let x = lend(&mut fake, "a", Some("+15557770001"));
            lend(&mut fake, "b", None);
            lend(&mut fake, "e", None);
            for id in ["a", "b", "e"] {
                release(&mut fake, id, "G").unwrap();
            }
            if lend(&mut fake, "c", None) != x {
                moved += 1;
                assert_eq!(lend(&mut fake, "d", Some("+15557770001")), x, "seed {seed}");
            }
        }
        assert!(moved > 0, "no draw moved the remembered number");
    }
}
