//! Pools that change while reservations are live, through the real component: numbers
//! added, removed and moved between groups, groups retired and brought back, and pools
//! changing back to an earlier list (as nodes of a rolling update do), with the clock
//! moving across expiries.
//!
//! Invariants checked after every step against a reference model: no number is held by
//! two live reservations; a number is lent only by the group whose pool has it now; a
//! live reservation matches and releases whatever happened to its pool; "exhausted"
//! only when every number of the pool is held; and every group's status is exact (a held
//! number is never counted free). Set `PROPTEST_CASES` for a longer run.

use std::collections::BTreeMap;

use proptest::prelude::*;
use request_access_host::api::{CreateRequest, Error};
use request_access_host::config::Config;
use request_access_host::runtime::CallError;
use request_access_tests::*;

const NUMBERS: usize = 8;
const SERVICES: usize = 6;
const GROUPS: [&str; 2] = ["G", "H"];

fn number(i: usize) -> String {
    format!("555100{i}")
}

/// Which group each number belongs to (`None`: to no group), and each group's strategy.
#[derive(Debug, Clone, PartialEq)]
struct Layout {
    owner: [Option<usize>; NUMBERS],
    random: [bool; 2],
}

impl Layout {
    fn pool(&self, group: usize) -> Vec<String> {
        (0..NUMBERS)
            .filter(|&i| self.owner[i] == Some(group))
            .map(number)
            .collect()
    }

    fn configured(&self, group: usize) -> bool {
        !self.pool(group).is_empty()
    }

    fn config(&self) -> String {
        let mut text = String::new();
        for (g, name) in GROUPS.iter().enumerate() {
            let pool = self.pool(g);
            if pool.is_empty() {
                continue; // a group without numbers is retired
            }
            let quoted: Vec<String> = pool.iter().map(|n| format!("\"{n}\"")).collect();
            let strategy = if self.random[g] {
                "random"
            } else {
                "round-robin"
            };
            text += &format!(
                "[[resource_group]]\nname = \"{name}\"\nstrategy = \"{strategy}\"\nnumbers = [{}]\n",
                quoted.join(", ")
            );
        }
        let services: Vec<String> = (0..SERVICES).map(|s| format!("\"s{s}\"")).collect();
        text + &format!("[registry]\nservices = [{}]\n", services.join(", "))
    }
}

fn layout() -> impl Strategy<Value = Layout> {
    (
        prop::array::uniform8(prop_oneof![
            1 => Just(None),
            3 => Just(Some(0)),
            3 => Just(Some(1)),
        ]),
        any::<[bool; 2]>(),
    )
        .prop_map(|(owner, random)| Layout { owner, random })
}

#[derive(Debug, Clone)]
enum Op {
    Create {
        service: usize,
        group: usize,
        timeout: u32,
    },
    Match {
        number: usize,
    },
    Release {
        service: usize,
        group: usize,
    },
    Advance {
        seconds: u64,
    },
    /// Serve one of the case's layouts from now on.
    Reconfigure {
        layout: usize,
    },
}

const LAYOUTS: usize = 3;

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0..SERVICES, 0..2usize, 5u32..60)
            .prop_map(|(service, group, timeout)| Op::Create { service, group, timeout }),
        3 => (0..NUMBERS).prop_map(|number| Op::Match { number }),
        1 => (0..SERVICES, 0..2usize).prop_map(|(service, group)| Op::Release { service, group }),
        2 => (1u64..40).prop_map(|seconds| Op::Advance { seconds }),
        2 => (0..LAYOUTS).prop_map(|layout| Op::Reconfigure { layout }),
    ]
}

#[derive(Debug, Clone)]
struct Held {
    service: usize,
    group: usize,
    expires_at: u64,
}

fn run(layouts: Vec<Layout>, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut layout = layouts[0].clone();
    let h = Harness::new(&layout.config());
    let mut now = T0;
    // Live reservations by number index.
    let mut model: BTreeMap<usize, Held> = BTreeMap::new();
    let index_of = |n: &str| (0..NUMBERS).find(|&i| number(i) == n);

    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Create {
                service,
                group,
                timeout,
            } => {
                let request = CreateRequest {
                    booking_expiration_timeout: Some(timeout),
                    ..create(&format!("s{service}"), GROUPS[group])
                };
                let outcome = h.runtime.create(&request);
                if !layout.configured(group) {
                    prop_assert_eq!(
                        outcome,
                        Err(CallError::Service(Error::UnknownResourceGroup(
                            GROUPS[group].into()
                        )))
                    );
                    continue;
                }
                // Asking again gives the old number back first.
                model.retain(|_, held| !(held.service == service && held.group == group));
                let free = (0..NUMBERS)
                    .filter(|i| layout.owner[*i] == Some(group) && !model.contains_key(i))
                    .count();
                match outcome {
                    Ok(info) => {
                        let i = index_of(&info.access_number).ok_or_else(|| {
                            TestCaseError::fail(format!("lent {}", info.access_number))
                        })?;
                        prop_assert_eq!(
                            layout.owner[i],
                            Some(group),
                            "{} lent by a group that does not have it",
                            info.access_number
                        );
                        prop_assert!(!model.contains_key(&i), "{} lent twice", info.access_number);
                        prop_assert_eq!(info.expires_at, now + u64::from(timeout) * 1000);
                        model.insert(
                            i,
                            Held {
                                service,
                                group,
                                expires_at: info.expires_at,
                            },
                        );
                    }
                    Err(CallError::Service(Error::NoAccessNumberAvailable(_))) => {
                        prop_assert_eq!(free, 0, "exhausted with free numbers");
                    }
                    Err(other) => prop_assert!(false, "create failed: {other}"),
                }
            }
            Op::Match { number: i } => {
                let outcome = h.runtime.match_access(&match_number(&number(i)));
                match model.remove(&i) {
                    Some(held) => {
                        let matched = outcome.map_err(|e| {
                            TestCaseError::fail(format!("live reservation did not match: {e}"))
                        })?;
                        prop_assert_eq!(matched.service_id, format!("s{}", held.service));
                        prop_assert_eq!(matched.resource_group, GROUPS[held.group]);
                    }
                    None => prop_assert_eq!(outcome, Err(CallError::Service(Error::NoMatch))),
                }
            }
            Op::Release { service, group } => {
                let outcome = h.runtime.release(&format!("s{service}"), GROUPS[group]);
                let held = model
                    .iter()
                    .find(|(_, held)| held.service == service && held.group == group)
                    .map(|(&i, _)| i);
                match held {
                    Some(i) => {
                        model.remove(&i);
                        prop_assert_eq!(outcome, Ok(number(i)));
                    }
                    // A retired group that still held an expired reservation may answer
                    // either, depending on whether the reservation was reclaimed yet.
                    None if !layout.configured(group) => prop_assert!(
                        matches!(
                            outcome,
                            Err(CallError::Service(
                                Error::NoMatch | Error::UnknownResourceGroup(_)
                            ))
                        ),
                        "{outcome:?}"
                    ),
                    None => prop_assert_eq!(outcome, Err(CallError::Service(Error::NoMatch))),
                }
            }
            Op::Advance { seconds } => {
                now += seconds * 1000;
                h.clock.set(now);
            }
            Op::Reconfigure { layout: l } => {
                layout = layouts[l].clone();
                let config = Config::parse(&layout.config(), "test config").unwrap();
                prop_assert!(h.runtime.0.reconfigure(config).is_empty());
            }
        }
        // Reservations end exactly at their expiry instant.
        model.retain(|_, held| held.expires_at > now);
        for (g, name) in GROUPS.iter().enumerate() {
            if !layout.configured(g) {
                continue;
            }
            let status = h.runtime.pool_status(name).unwrap();
            let pool: Vec<usize> = (0..NUMBERS)
                .filter(|&i| layout.owner[i] == Some(g))
                .collect();
            let live = pool.iter().filter(|i| model.contains_key(i)).count();
            prop_assert_eq!(status.size as usize, pool.len());
            prop_assert_eq!(
                status.live as usize,
                live,
                "live in {} after step {}",
                name,
                step
            );
            prop_assert_eq!(
                status.free as usize,
                pool.len() - live,
                "free in {} after step {}",
                name,
                step
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(48),
        ..ProptestConfig::default()
    })]

    #[test]
    fn pools_that_change_under_live_reservations_behave_like_the_model(
        layouts in prop::collection::vec(layout(), LAYOUTS),
        ops in prop::collection::vec(op(), 1..80),
    ) {
        run(layouts, ops)?;
    }
}

/// The operator's scenarios one by one, with the status checked right after each change.
#[test]
fn status_is_exact_right_after_numbers_are_removed_added_and_moved() {
    let numbers = |g: &str, h: &str| {
        format!(
            "[[resource_group]]\nname = \"G\"\nnumbers = [{g}]\n\
             [[resource_group]]\nname = \"H\"\nnumbers = [{h}]\n\
             [registry]\nservices = [\"a\", \"b\", \"c\"]\n"
        )
    };
    let h = Harness::new(&numbers(
        "\"5551001\", \"5551002\", \"5551003\"",
        "\"5551009\"",
    ));
    let reconfigure = |text: String| {
        h.runtime
            .0
            .reconfigure(Config::parse(&text, "test config").unwrap())
    };
    let status = |g: &str| {
        let s = h.runtime.pool_status(g).unwrap();
        (s.size, s.live, s.free)
    };
    assert_eq!(
        h.runtime.create(&create("a", "G")).unwrap().access_number,
        "5551001"
    );
    assert_eq!(
        h.runtime.create(&create("b", "G")).unwrap().access_number,
        "5551002"
    );

    // 5551001 leaves the pool and two numbers join it while a and b hold theirs.
    reconfigure(numbers(
        "\"5551002\", \"5551003\", \"5551004\", \"5551005\"",
        "\"5551009\"",
    ));
    assert_eq!(status("G"), (4, 1, 3), "b's 5551002 is held, not free");
    // 5551003 moves to H while c holds it.
    assert_eq!(
        h.runtime.create(&create("c", "G")).unwrap().access_number,
        "5551003"
    );
    assert_eq!(status("G"), (4, 2, 2));
    reconfigure(numbers(
        "\"5551002\", \"5551004\", \"5551005\"",
        "\"5551003\", \"5551009\"",
    ));
    assert_eq!(status("G"), (3, 1, 2));
    assert_eq!(status("H"), (2, 1, 1), "c's 5551003 is held in H's pool");
    // H lends its free number, then is exhausted until c's reservation ends.
    assert_eq!(
        h.runtime.create(&create("a", "H")).unwrap().access_number,
        "5551009"
    );
    assert_eq!(
        h.runtime.create(&create("b", "H")),
        Err(CallError::Service(Error::NoAccessNumberAvailable(
            "H".into()
        )))
    );
    // Every reservation still matches with the group it was made in.
    let matched = h.runtime.match_access(&match_number("5551001")).unwrap();
    assert_eq!(
        (matched.service_id.as_str(), matched.resource_group.as_str()),
        ("a", "G")
    );
    let matched = h.runtime.match_access(&match_number("5551003")).unwrap();
    assert_eq!(
        (matched.service_id.as_str(), matched.resource_group.as_str()),
        ("c", "G")
    );
    assert_eq!(status("H"), (2, 1, 1));
    assert_eq!(
        h.runtime.create(&create("b", "H")).unwrap().access_number,
        "5551003"
    );
    // The removed number is lent by nobody.
    for id in ["a", "c"] {
        let info = h.runtime.create(&create(id, "G")).unwrap();
        assert_ne!(info.access_number, "5551001");
    }
    assert_eq!(status("G"), (3, 3, 0));
    // Expiry ends them all, whatever the pool went through.
    h.advance(31);
    assert_eq!(status("G"), (3, 0, 3));
    assert_eq!(status("H"), (2, 0, 2));
}

/// Unsigned LEB128, as postcard writes integers and lengths.
fn varint(mut n: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn text(s: &str, out: &mut Vec<u8>) {
    varint(s.len() as u64, out);
    out.extend_from_slice(s.as_bytes());
}

#[test]
fn a_store_written_before_rings_were_keyed_by_pool_keeps_its_ring_and_reservations() {
    use request_access_host::api::Mutation;
    use request_access_host::store::StateStore;

    let h = Harness::new(
        "[[resource_group]]\nname = \"G\"\nnumbers = [\"5551000..5551004\"]\n\
         [registry]\nservices = [\"s0\", \"s1\", \"s2\", \"s3\", \"s4\", \"s5\"]\n",
    );
    let fingerprint = h.runtime.services().config.group("G").unwrap().pool.id();
    // What the earlier layout stored after s0 and s1 took the first two numbers: one
    // ring per group at `g␟G` (format byte, pool fingerprint, head, tail), reservations
    // that name the fingerprint as their ring, holders and expiry entries.
    let sep = '\u{1f}';
    let mut ring = vec![1];
    for n in [fingerprint, 2, 5] {
        varint(n, &mut ring);
    }
    let expires_at = T0 + 30_000;
    let mut mutations = vec![Mutation::Put(format!("g{sep}G"), ring)];
    for (service, number) in [("s0", "5551000"), ("s1", "5551001")] {
        let mut res = vec![1];
        text(service, &mut res);
        text("G", &mut res);
        text(number, &mut res);
        res.extend([0, 0]); // no code, no caller
        varint(expires_at, &mut res);
        varint(0, &mut res);
        varint(fingerprint, &mut res);
        mutations.push(Mutation::Put(format!("n{sep}{number}"), res));
        mutations.push(Mutation::Put(
            format!("s{sep}G{sep}{service}"),
            number.as_bytes().to_vec(),
        ));
        mutations.push(Mutation::Put(
            format!("x{sep}G{sep}{expires_at:016x}{sep}{number}"),
            Vec::new(),
        ));
    }
    wait(h.store.commit(&[], &mutations)).unwrap();

    let status = h.runtime.pool_status("G").unwrap();
    assert_eq!((status.live, status.free), (2, 3));
    let matched = h.runtime.match_access(&match_number("5551001")).unwrap();
    assert_eq!(matched.service_id, "s1");
    // The ring goes on where it was, and numbers come back to it.
    let next = |id: &str| h.runtime.create(&create(id, "G")).unwrap().access_number;
    assert_eq!(next("s2"), "5551002");
    assert_eq!(h.runtime.release("s0", "G").unwrap(), "5551000");
    assert_eq!(next("s3"), "5551003");
    assert_eq!(next("s4"), "5551004");
    assert_eq!(next("s5"), "5551001");
    assert_eq!(next("s0"), "5551000");
    assert_eq!(
        h.runtime.create(&create("s1", "G")),
        Err(CallError::Service(Error::NoAccessNumberAvailable(
            "G".into()
        )))
    );
    let keys: Vec<String> = h.snapshot().into_iter().map(|(k, _)| k).collect();
    assert!(!keys.contains(&format!("g{sep}G")), "moved: {keys:?}");
    assert!(keys.contains(&format!("g{sep}G{sep}{fingerprint:016x}")));
}
