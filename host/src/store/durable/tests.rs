//! The durable store's tests: its contract, durability across reopening, the
//! flusher's failures, the log's replay and checkpoints, and the legacy migration.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use redb::{Database, ReadableDatabase, TableHandle};

use super::super::contract::{absent, put};
use super::super::host_keys::Registration;
use super::disk::REVISION;
use super::migrate::LEGACY_SERVICES;
use super::*;
use crate::clock::ManualClock;
use crate::registry::Registry;

/// Drive a store future to its end on this thread.
fn wait<F: std::future::Future>(future: F) -> F::Output {
    futures::executor::block_on(future)
}

fn at(k: &str, revision: u64) -> Precondition {
    Precondition {
        key: k.into(),
        revision: Some(revision),
    }
}

fn committed(outcome: Result<CommitOutcome, StoreError>) -> u64 {
    match outcome {
        Ok(CommitOutcome::Committed(r)) => r,
        other => panic!("expected a commit, got {other:?}"),
    }
}

#[test]
fn honours_the_store_contract() {
    let dir = tempfile::tempdir().unwrap();
    wait(super::super::contract::check(
        &DurableStore::open(&dir.path().join("s.redb")).unwrap(),
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_histories_are_linearizable() {
    let dir = tempfile::tempdir().unwrap();
    let store = DurableStore::open(&dir.path().join("s.redb")).unwrap();
    super::super::contract::check_linearizable(std::sync::Arc::new(store), 6, 150).await;
}

#[test]
fn receives_a_copy_of_another_store() {
    let dir = tempfile::tempdir().unwrap();
    wait(super::super::contract::check_copy(
        &DurableStore::open(&dir.path().join("s.redb")).unwrap(),
    ));
}

/// A registry over `store`, its clock at 0.
fn registry(store: Arc<DurableStore>) -> Registry {
    Registry::new(HashSet::new(), store, Arc::new(ManualClock::new(0)))
}

#[test]
fn committed_state_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let revision = {
        let store = Arc::new(DurableStore::open(&path).unwrap());
        wait(registry(store.clone()).register("svc", Some(Duration::from_millis(9)))).unwrap();
        match wait(store.commit(&[], &[Mutation::Put("k".into(), b"v".to_vec())])).unwrap() {
            CommitOutcome::Committed(r) => r,
            other => panic!("{other:?}"),
        }
    };
    let store = Arc::new(DurableStore::open(&path).unwrap());
    assert_eq!(
        wait(store.get(&["k".into()])).unwrap()[0]
            .as_ref()
            .unwrap()
            .revision,
        revision
    );
    assert_eq!(
        wait(registry(store.clone()).registration("svc")).unwrap(),
        Some(Registration {
            expires_at: Some(9)
        })
    );
    // Revisions keep growing across restarts, so no revision is ever reused.
    match wait(store.commit(&[], &[Mutation::Delete("k".into())])).unwrap() {
        CommitOutcome::Committed(r) => assert!(r > revision),
        other => panic!("{other:?}"),
    }
}

#[test]
fn registrations_of_an_older_file_become_keys_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    {
        // A file as written before registrations were keys: one reservation entry
        // at revision 4, and two registrations in their own table.
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(STATE)
            .unwrap()
            .insert("n\u{1f}5550000", (4, &b"held"[..]))
            .unwrap();
        txn.open_table(META).unwrap().insert(REVISION, 4).unwrap();
        let mut services = txn.open_table(LEGACY_SERVICES).unwrap();
        services.insert("forever", None).unwrap();
        services.insert("until-9", Some(9)).unwrap();
        drop(services);
        txn.commit().unwrap();
    }
    let store = Arc::new(DurableStore::open(&path).unwrap());
    let listed = wait(registry(store.clone()).registrations()).unwrap();
    let expected = vec![
        ("forever".to_string(), Registration { expires_at: None }),
        (
            "until-9".to_string(),
            Registration {
                expires_at: Some(9),
            },
        ),
    ];
    assert_eq!(listed, expected);
    assert_eq!(
        wait(store.get(&["n\u{1f}5550000".into()])).unwrap()[0]
            .as_ref()
            .map(|e| e.revision),
        Some(4)
    );
    // The migration took revision 5; reopening migrates nothing again.
    drop(store);
    let store = Arc::new(DurableStore::open(&path).unwrap());
    assert_eq!(
        wait(registry(store.clone()).registrations()).unwrap(),
        expected
    );
    assert_eq!(committed(wait(store.commit(&[], &[put("k", b"v")]))), 6);
    drop(store);
    let db = Database::open(&path).unwrap();
    let txn = db.begin_read().unwrap();
    assert!(
        !txn.list_tables()
            .unwrap()
            .any(|t| t.name() == LEGACY_SERVICES.name()),
        "the legacy table is gone"
    );
}

#[test]
fn concurrent_creates_have_one_winner_per_key_and_all_survive_reopening() {
    const THREADS: usize = 16;
    const COMMITS: usize = 50;
    const KEYS: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let store = DurableStore::open(&path).unwrap();
    // (key, thread, revision) of every acknowledged create.
    let wins: Vec<(String, usize, u64)> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let store = &store;
                s.spawn(move || {
                    let mut wins = Vec::new();
                    for i in 0..COMMITS {
                        // Every key is contended by several threads, in varied orders.
                        let key = format!("k{:02}", (i * 7 + t * 3) % KEYS);
                        let value = t.to_string();
                        match wait(store.commit(&[absent(&key)], &[put(&key, value.as_bytes())]))
                            .unwrap()
                        {
                            CommitOutcome::Committed(r) => wins.push((key, t, r)),
                            CommitOutcome::Conflict(k) => assert_eq!(k, key),
                        }
                    }
                    wins
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect()
    });

    let mut winner = HashMap::new();
    for (key, t, r) in &wins {
        assert!(
            winner.insert(key.clone(), (*t, *r)).is_none(),
            "{key} created twice"
        );
    }
    assert_eq!(winner.len(), KEYS, "every key has a winner");
    let revisions: HashSet<u64> = wins.iter().map(|w| w.2).collect();
    assert_eq!(revisions.len(), wins.len(), "revisions are never shared");

    drop(store);
    let store = DurableStore::open(&path).unwrap();
    let keys: Vec<String> = winner.keys().cloned().collect();
    for (key, entry) in keys.iter().zip(wait(store.get(&keys)).unwrap()) {
        let entry = entry.unwrap_or_else(|| panic!("acknowledged {key} lost"));
        let (t, r) = winner[key];
        assert_eq!(
            (entry.value, entry.revision),
            (t.to_string().into_bytes(), r)
        );
    }
    let last = *revisions.iter().max().unwrap();
    assert!(committed(wait(store.commit(&[], &[put("after", b"x")]))) > last);
}

/// Read the counter, add one, commit against the revision read; retry on conflict.
fn increment(store: &DurableStore, key: &str) -> u64 {
    loop {
        let current = wait(store.get(&[key.to_string()])).unwrap().pop().unwrap();
        let (n, revision) = current.map_or((0, None), |e| {
            let n: u64 = String::from_utf8(e.value).unwrap().parse().unwrap();
            (n, Some(e.revision))
        });
        let precondition = Precondition {
            key: key.into(),
            revision,
        };
        match wait(store.commit(&[precondition], &[put(key, (n + 1).to_string().as_bytes())]))
            .unwrap()
        {
            CommitOutcome::Committed(r) => return r,
            CommitOutcome::Conflict(k) => assert_eq!(k, key),
        }
    }
}

#[test]
fn concurrent_increments_of_one_counter_all_land_and_survive_reopening() {
    const THREADS: usize = 16;
    const INCREMENTS: usize = 50;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let store = DurableStore::open(&path).unwrap();
    let revisions: Vec<u64> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..THREADS)
            .map(|_| {
                let store = &store;
                s.spawn(move || {
                    (0..INCREMENTS)
                        .map(|_| increment(store, "counter"))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect()
    });
    let distinct: HashSet<u64> = revisions.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        THREADS * INCREMENTS,
        "revisions are never shared"
    );
    let last = *distinct.iter().max().unwrap();

    drop(store);
    let store = DurableStore::open(&path).unwrap();
    let entry = wait(store.get(&["counter".into()])).unwrap()[0]
        .clone()
        .unwrap();
    assert_eq!(entry.value, (THREADS * INCREMENTS).to_string().into_bytes());
    assert_eq!(entry.revision, last);
    assert!(committed(wait(store.commit(&[], &[put("after", b"x")]))) > last);
}

fn write_set(revision: u64, mutations: Vec<Mutation>) -> WriteSet {
    WriteSet {
        revision,
        mutations,
    }
}

#[test]
fn a_flushed_batch_lands_in_revision_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    drop(DurableStore::open(&path).unwrap()); // creates the tables
    let db = Database::open(&path).unwrap();
    let batch = [
        write_set(1, vec![put("a", b"1"), put("b", b"1"), put("c", b"1")]),
        write_set(2, vec![put("a", b"2"), Mutation::Delete("b".into())]),
        write_set(3, vec![Mutation::Delete("zz".into()), put("b", b"3")]),
        // A commit that changed nothing still takes its revision.
        write_set(4, vec![]),
        write_set(5, vec![Mutation::Delete("c".into()), put("d", b"5")]),
    ];
    let txn = db.begin_write().unwrap();
    write_batch(&txn, &batch).unwrap();
    txn.commit().unwrap();

    // A batch that does not go beyond the stored revision is refused whole.
    let txn = db.begin_write().unwrap();
    let stale = [write_set(6, vec![put("e", b"6")]), write_set(5, vec![])];
    assert!(matches!(
        write_batch(&txn, &stale),
        Err(StoreError::Unavailable(m)) if m.contains("out of order")
    ));
    drop(txn); // aborts it
    drop(db);

    let store = DurableStore::open(&path).unwrap();
    let keys: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).into();
    let got: Vec<Option<(Vec<u8>, u64)>> = wait(store.get(&keys))
        .unwrap()
        .into_iter()
        .map(|e| e.map(|e| (e.value, e.revision)))
        .collect();
    assert_eq!(
        got,
        [
            Some((b"2".to_vec(), 2)),
            Some((b"3".to_vec(), 3)),
            None,
            Some((b"5".to_vec(), 5)),
            None,
        ]
    );
    // The batch's last revision is persisted, so the next commit goes beyond it.
    assert_eq!(committed(wait(store.commit(&[], &[put("g", b"8")]))), 6);
}

#[test]
fn a_failed_flush_fails_the_store_until_it_is_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    // A disk that refuses any batch writing "boom".
    let store = DurableStore::open_with(&path, |disk, batch: &[WriteSet]| {
        let boom = batch
            .iter()
            .flat_map(|w| &w.mutations)
            .any(|m| matches!(m, Mutation::Put(k, _) if k == "boom"));
        if boom {
            return Err(StoreError::Unavailable("disk full".into()));
        }
        flush(disk, batch)
    })
    .unwrap();
    let r1 = committed(wait(store.commit(&[], &[put("ok", b"1")])));
    let failed = wait(store.commit(&[absent("boom")], &[put("boom", b"2")]));
    assert!(
        matches!(&failed, Err(StoreError::Unavailable(m)) if m.contains("disk full")),
        "{failed:?}"
    );
    // Memory may hold "boom", which the disk lost: nothing is served any more.
    let unavailable = |r: Result<(), StoreError>| {
        assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
    };
    unavailable(wait(store.get(&["ok".into()])).map(drop));
    unavailable(wait(store.scan("a", "z", 10)).map(drop));
    unavailable(wait(store.commit(&[], &[put("later", b"3")])).map(drop));
    unavailable(wait(store.commit(&[absent("ok")], &[])).map(drop));

    drop(store);
    let store = DurableStore::open(&path).unwrap();
    let got = wait(store.get(&["ok".into(), "boom".into(), "later".into()])).unwrap();
    assert_eq!(got[0].as_ref().map(|e| e.revision), Some(r1));
    assert_eq!(got[1..], [None, None]);
    assert!(committed(wait(store.commit(&[], &[put("k", b"v")]))) > r1);
}

#[test]
fn a_dead_flusher_makes_commits_unavailable_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let store = DurableStore::open_with(&dir.path().join("s.redb"), |_, _: &[WriteSet]| {
        panic!("a flusher bug (expected by this test)")
    })
    .unwrap();
    for _ in 0..2 {
        let outcome = wait(store.commit(&[], &[put("k", b"v")]));
        assert!(
            matches!(&outcome, Err(StoreError::Unavailable(m)) if m.contains("flusher")),
            "{outcome:?}"
        );
    }
    assert!(matches!(
        wait(store.get(&["k".into()])),
        Err(StoreError::Unavailable(_))
    ));
    // Dropping joins the dead thread without panicking.
    drop(store);
}

#[test]
fn a_conflict_is_answered_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let store = DurableStore::open(&path).unwrap();
    let r1 = committed(wait(store.commit(&[absent("a")], &[put("a", b"1")])));
    assert_eq!(
        wait(store.commit(&[absent("a")], &[put("a", b"2")])).unwrap(),
        CommitOutcome::Conflict("a".into())
    );
    assert_eq!(
        wait(store.commit(&[at("a", r1), absent("a")], &[put("b", b"3")])).unwrap(),
        CommitOutcome::Conflict("a".into())
    );
    drop(store);
    let store = DurableStore::open(&path).unwrap();
    let got = wait(store.get(&["a".into(), "b".into()])).unwrap();
    assert_eq!(
        got[0].as_ref().map(|e| (&e.value[..], e.revision)),
        Some((&b"1"[..], r1))
    );
    assert_eq!(got[1], None);
    // Conflicts took no revision.
    assert_eq!(
        committed(wait(store.commit(&[], &[put("c", b"4")]))),
        r1 + 1
    );
}

#[test]
fn a_commit_whose_future_is_dropped_lands_whole_or_not_at_all() {
    use futures::FutureExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    // A slow disk, so that a commit is still waiting for its flush when dropped.
    let store = DurableStore::open_with(&path, |disk, batch: &[WriteSet]| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        flush(disk, batch)
    })
    .unwrap();
    // Never polled: it did nothing.
    drop(store.commit(&[], &[put("never", b"1")]));
    // Polled once: applied and queued whole, then dropped before its acknowledgement.
    let pending = store
        .commit(&[absent("a")], &[put("a", b"2"), put("b", b"2")])
        .now_or_never();
    assert!(pending.is_none(), "the flush was held back");
    let seen = wait(store.get(&["a".into(), "b".into(), "never".into()])).unwrap();
    assert!(seen[0].is_some() && seen[1].is_some() && seen[2].is_none());
    drop(store); // flushes what was queued
    let store = DurableStore::open(&path).unwrap();
    let got = wait(store.get(&["a".into(), "b".into(), "never".into()])).unwrap();
    let values: Vec<Option<Vec<u8>>> = got.into_iter().map(|e| e.map(|e| e.value)).collect();
    assert_eq!(values, [Some(b"2".to_vec()), Some(b"2".to_vec()), None]);
}

#[test]
fn the_log_replays_what_the_file_misses_and_skips_what_it_has() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    {
        let store = DurableStore::open(&path).unwrap();
        assert_eq!(committed(wait(store.commit(&[], &[put("a", b"1")]))), 1);
    } // closed: the log is folded into the file, which is now at revision 1
    assert_eq!(std::fs::metadata(log_path(&path)).unwrap().len(), 0);
    {
        // As a crash would leave it: revision 1 both checkpointed and still logged
        // (the crash came before the log was emptied), then 2 and 3 only logged.
        let (mut log, _) = Log::open(&log_path(&path)).unwrap();
        let stale = [put("a", b"stale")];
        let later = [put("b", b"2"), put("c", b"2")];
        let last = [Mutation::Delete("c".into())];
        log.append([(1, &stale[..]), (2, &later[..])].into_iter())
            .unwrap();
        log.append([(3, &last[..])].into_iter()).unwrap();
    }
    let store = DurableStore::open(&path).unwrap();
    let got = wait(store.get(&["a".into(), "b".into(), "c".into()])).unwrap();
    let rows: Vec<Option<(Vec<u8>, u64)>> = got
        .into_iter()
        .map(|e| e.map(|e| (e.value, e.revision)))
        .collect();
    assert_eq!(
        rows,
        [Some((b"1".to_vec(), 1)), Some((b"2".to_vec(), 2)), None]
    );
    assert_eq!(committed(wait(store.commit(&[], &[put("d", b"4")]))), 4);
    assert!(std::fs::metadata(log_path(&path)).unwrap().len() > 0);
}

#[test]
fn checkpoints_empty_the_log_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    // A checkpoint after every flush.
    let store = DurableStore::open_with_checkpoints(&path, 1, flush).unwrap();
    let mut last = 0;
    for i in 0..50 {
        last = increment(&store, "counter");
        if i % 10 == 0 {
            wait(store.commit(&[], &[Mutation::Delete("counter-shadow".into())])).unwrap();
        }
    }
    assert_eq!(std::fs::metadata(log_path(&path)).unwrap().len(), 0);
    drop(store);
    let store = DurableStore::open(&path).unwrap();
    let entry = wait(store.get(&["counter".into()])).unwrap()[0]
        .clone()
        .unwrap();
    assert_eq!((entry.value, entry.revision), (b"50".to_vec(), last));
}
