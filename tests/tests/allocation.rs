//! Which number a `create` gets: round-robin order, random coverage, reproducibility,
//! flat cost at any pool size, and no double booking under concurrency.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use request_access_host::api::{CreateRequest, Error};
use request_access_host::runtime::CallError;
use request_access_tests::*;

fn group_config(strategy: &str, numbers: &str, services: usize) -> String {
    let services: Vec<String> = (0..services).map(|i| format!("\"s{i}\"")).collect();
    format!(
        "[[resource_group]]\nname = \"G\"\nstrategy = \"{strategy}\"\nnumbers = [\"{numbers}\"]\n\
         [registry]\nservices = [{}]\n",
        services.join(", ")
    )
}

#[test]
fn round_robin_lends_in_pool_order_and_reuses_the_longest_free() {
    let h = Harness::new(&group_config("round-robin", "5551000..5551004", 6));
    let numbers: Vec<String> = (0..5)
        .map(|i| {
            h.runtime
                .create(&create(&format!("s{i}"), "G"))
                .unwrap()
                .access_number
        })
        .collect();
    assert_eq!(
        numbers,
        ["5551000", "5551001", "5551002", "5551003", "5551004"]
    );
    // Numbers come back in the order they were released.
    h.runtime.release("s3", "G").unwrap();
    h.runtime.release("s1", "G").unwrap();
    let next = |id: &str| h.runtime.create(&create(id, "G")).unwrap().access_number;
    assert_eq!(next("s5"), "5551003");
    assert_eq!(next("s1"), "5551001");
}

#[test]
fn random_selection_reaches_every_free_number() {
    let h = Harness::new(&group_config("random", "5551000..5551009", 1));
    let mut seen = BTreeSet::new();
    for _ in 0..200 {
        seen.insert(h.runtime.create(&create("s0", "G")).unwrap().access_number);
    }
    assert_eq!(seen.len(), 10, "seen: {seen:?}");

    // With most numbers held, the draw still covers exactly the free ones.
    let h = Harness::new(&group_config("random", "5551000..5551009", 8));
    let held: BTreeSet<String> = (1..8)
        .map(|i| {
            h.runtime
                .create(&create(&format!("s{i}"), "G"))
                .unwrap()
                .access_number
        })
        .collect();
    let mut seen = BTreeSet::new();
    for _ in 0..100 {
        let n = h.runtime.create(&create("s0", "G")).unwrap().access_number;
        assert!(!held.contains(&n), "{n} is held by another service");
        seen.insert(n);
    }
    assert_eq!(seen.len(), 3, "seen: {seen:?}");
}

#[test]
fn a_seeded_generator_reproduces_numbers_and_codes() {
    let run = || {
        let h = Harness::new(&group_config("random", "5551000..5551099", 3));
        (0..20)
            .map(|i| {
                let info = h
                    .runtime
                    .create(&create_with_code(&format!("s{}", i % 3), "G"))
                    .unwrap();
                (info.access_number, info.access_code.unwrap())
            })
            .collect::<Vec<_>>()
    };
    let first = run();
    assert_eq!(first, run());
    let codes: BTreeSet<_> = first.iter().map(|(_, c)| c).collect();
    assert!(codes.len() > 15, "codes vary: {codes:?}");
}

/// Keys read and commits made by one `create`, at a given pool size and occupancy.
fn create_cost(pool: &str, size: u32, hold: u32, strategy: &str) -> ((u64, u64), (u64, u64)) {
    let h = Harness::new(&group_config(strategy, pool, 0));
    let registry = &h.runtime.services().registry;
    for i in 0..=hold {
        wait(registry.register(&format!("s{i}"), None)).unwrap();
    }
    for i in 0..hold {
        h.runtime.create(&create(&format!("s{i}"), "G")).unwrap();
    }
    h.store.take_counts();
    let outcome = h.runtime.create(&create(&format!("s{hold}"), "G"));
    let taken = h.store.take_counts();
    assert_eq!(outcome.is_err(), hold == size);
    // Exhaust a small pool of the same strategy for the exhausted cost.
    let small = Harness::new(&group_config(strategy, "5551000..5551001", 3));
    small.runtime.create(&create("s0", "G")).unwrap();
    small.runtime.create(&create("s1", "G")).unwrap();
    small.store.take_counts();
    assert!(small.runtime.create(&create("s2", "G")).is_err());
    (taken, small.store.take_counts())
}

#[test]
fn the_work_of_a_create_does_not_grow_with_the_pool() {
    for strategy in ["round-robin", "random"] {
        let (small, exhausted_small) = create_cost("5551000..5551009", 10, 5, strategy);
        let (large, exhausted_large) =
            create_cost("+15550000000..+15550999999", 1_000_000, 5, strategy);
        assert_eq!((small.1, large.1), (1, 1), "one commit per create");
        // Random reads one more ring slot when its draw is not the head already. The
        // keys: the ring, its pool record, the holder, the expiry index's first page,
        // one or two slots, the number's reservation.
        let bound = if strategy == "random" { 1 } else { 0 };
        assert!(
            small.0.abs_diff(large.0) <= bound && large.0 <= 7,
            "{strategy}: keys read at 10 numbers: {}, at 1,000,000: {}",
            small.0,
            large.0
        );
        assert_eq!(exhausted_small, exhausted_large);
        assert_eq!(exhausted_small.1, 0, "an exhausted create commits nothing");
        assert!(
            exhausted_small.0 <= 5,
            "an exhausted create reads {exhausted_small:?}"
        );
    }
}

#[test]
fn no_number_is_ever_lent_twice_under_concurrency() {
    const THREADS: usize = 8;
    const ROUNDS: usize = 150;
    let services = THREADS * 2;
    let h = Arc::new(Harness::new(&group_config(
        "random",
        "5551000..5551004",
        services,
    )));
    // number -> service, maintained around each call so that an overlap is a real
    // double booking: entries are removed *before* the number is given back.
    let holders: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (h, holders) = (h.clone(), holders.clone());
            std::thread::spawn(move || {
                let mut counts = (0, 0);
                let mut held: Vec<(String, String, Option<String>)> = Vec::new();
                for round in 0..ROUNDS {
                    let id = format!("s{}", t * 2 + round % 2);
                    if let Some(pos) = held.iter().position(|(s, _, _)| *s == id) {
                        let (service, number, code) = held.remove(pos);
                        holders.lock().unwrap().remove(&number);
                        if round % 3 == 0 {
                            h.runtime.release(&service, "G").unwrap();
                        } else {
                            let m = h
                                .runtime
                                .match_access(&match_with_code(&number, code.as_deref().unwrap()))
                                .unwrap();
                            assert_eq!(m.service_id, service);
                        }
                        continue;
                    }
                    match h.runtime.create(&CreateRequest {
                        provide_code: true,
                        ..create(&id, "G")
                    }) {
                        Ok(info) => {
                            counts.0 += 1;
                            let previous = holders
                                .lock()
                                .unwrap()
                                .insert(info.access_number.clone(), id.clone());
                            assert_eq!(previous, None, "{} lent twice", info.access_number);
                            held.push((id, info.access_number, info.access_code));
                        }
                        Err(CallError::Service(Error::NoAccessNumberAvailable(_))) => counts.1 += 1,
                        Err(other) => panic!("create failed: {other}"),
                    }
                }
                counts
            })
        })
        .collect();
    let (mut created, mut exhausted) = (0, 0);
    for t in threads {
        let (c, e) = t.join().expect("no thread saw a double booking");
        created += c;
        exhausted += e;
    }
    assert!(created > 100, "created {created}");
    assert!(exhausted > 0, "the pool of 5 was contended by 16 services");
    let status = h.runtime.pool_status("G").unwrap();
    assert_eq!(status.live as usize, holders.lock().unwrap().len());
}
