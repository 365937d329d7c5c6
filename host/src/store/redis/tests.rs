//! The Redis store's tests, against real servers (skipped where `redis-server` is
//! missing): the contract, prefixes, hash tags, exact revisions, durability checks, TLS,
//! discreet errors, replica waits, timeouts and outages.

use super::super::contract::{self, absent, put};
use super::*;
use request_access_testkit::RedisServer;

async fn connect(server: &RedisServer) -> RedisStore {
    RedisStore::connect(&server.url(), &StoreConfig::default())
        .await
        .unwrap()
}

#[tokio::test]
async fn honours_the_store_contract() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    contract::check(&connect(&server).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_histories_are_linearizable() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    contract::check_linearizable(std::sync::Arc::new(connect(&server).await), 4, 150).await;
}

#[tokio::test]
async fn receives_a_copy_of_another_store() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    contract::check_copy(&connect(&server).await).await;
}

#[tokio::test]
async fn deployments_with_other_prefixes_do_not_see_each_other() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let east = connect(&server).await;
    let west = RedisStore::connect(
        &server.url(),
        &StoreConfig {
            prefix: "west:".into(),
            ..StoreConfig::default()
        },
    )
    .await
    .unwrap();
    east.commit(&[], &[put("k", b"east")]).await.unwrap();
    assert_eq!(west.get(&["k".into()]).await.unwrap(), vec![None]);
    assert!(west.scan("", "\u{10ffff}", 10).await.unwrap().is_empty());
    assert!(matches!(
        west.commit(&[absent("k")], &[put("k", b"west")])
            .await
            .unwrap(),
        CommitOutcome::Committed(_)
    ));
    assert_eq!(
        east.get(&["k".into()]).await.unwrap()[0]
            .as_ref()
            .unwrap()
            .value,
        b"east"
    );
}

#[tokio::test]
async fn a_groups_keys_share_one_hash_tag() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = connect(&server).await;
    let keys = [
        "g\u{1f}DNIS",
        "s\u{1f}DNIS\u{1f}svc",
        "x\u{1f}DNIS\u{1f}00ff\u{1f}1",
    ];
    let puts: Vec<Mutation> = keys.iter().map(|k| put(k, b"")).collect();
    store.commit(&[], &puts).await.unwrap();
    let names = server.cli(&["--raw", "KEYS", "request-access:{*"]);
    for key in keys {
        assert!(
            names
                .lines()
                .any(|n| n == format!("request-access:{{DNIS}}{key}")),
            "{key:?} not under the group's tag in {names:?}"
        );
    }
}

#[tokio::test]
async fn revisions_stay_exact_beyond_what_a_lua_number_holds() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = connect(&server).await;
    // 2^53 + 1 has no exact double; the counter's own string carries it.
    server.cli(&["SET", "request-access:revision", "9007199254740993"]);
    let CommitOutcome::Committed(r) = store.commit(&[], &[put("k", b"v")]).await.unwrap() else {
        panic!("an unconditional commit commits")
    };
    assert_eq!(r, 9_007_199_254_740_994);
    let current = Precondition {
        key: "k".into(),
        revision: Some(r),
    };
    assert!(matches!(
        store.commit(&[current], &[put("k", b"w")]).await.unwrap(),
        CommitOutcome::Committed(9_007_199_254_740_995)
    ));
}

#[tokio::test]
async fn a_server_that_could_lose_acknowledged_writes_is_refused_unless_accepted() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    server.cli(&["CONFIG", "SET", "appendfsync", "everysec"]);
    server.cli(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]);
    let refused = RedisStore::connect(&server.url(), &StoreConfig::default())
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(refused.contains("appendfsync is \"everysec\""), "{refused}");
    assert!(
        refused.contains("maxmemory-policy is \"allkeys-lru\""),
        "{refused}"
    );
    assert!(refused.contains("accept_weaker_durability"), "{refused}");
    let accepted = RedisStore::connect(
        &server.url(),
        &StoreConfig {
            accept_weaker_durability: true,
            ..StoreConfig::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(accepted.durability_problems().await.unwrap().len(), 2);
}

#[tokio::test]
async fn rediss_checks_the_servers_certificate_against_the_configured_authority() {
    let Some(server) = RedisServer::start_tls() else {
        return;
    };
    let url = server.url();
    assert!(url.starts_with("rediss://"), "{url}");
    let trusted = StoreConfig {
        tls_ca_file: Some(server.dir().join("ca.pem")),
        ..StoreConfig::default()
    };
    let store = RedisStore::connect(&url, &trusted).await.unwrap();
    assert!(matches!(
        store
            .commit(&[absent("k")], &[put("k", b"v")])
            .await
            .unwrap(),
        CommitOutcome::Committed(_)
    ));
    assert_eq!(
        store.get(&["k".into()]).await.unwrap()[0]
            .as_ref()
            .unwrap()
            .value,
        b"v"
    );
    // Without the authority, the system's roots do not know this certificate.
    let e = RedisStore::connect(&url, &StoreConfig::default())
        .await
        .err()
        .expect("an unknown issuer is refused")
        .to_string();
    assert!(e.to_lowercase().contains("certificate"), "{e}");
}

#[tokio::test]
async fn the_password_appears_in_no_error() {
    let Some(server) = RedisServer::start_with(Some("s3cret-pw")) else {
        return;
    };
    let wrong = format!("redis://:wr0ng-pw@127.0.0.1:{}/0", server.port);
    let closed = format!(
        "redis://:s3cret-pw@127.0.0.1:{}/0",
        request_access_testkit::free_port()
    );
    for url in [
        wrong,
        closed,
        "redis://:s3cret-pw@127.0.0.1:notaport/0".into(),
    ] {
        let e = RedisStore::connect(&url, &StoreConfig::default())
            .await
            .err()
            .expect("refused")
            .to_string();
        assert!(!e.contains("pw"), "{e}");
        assert!(e.contains(":***@127.0.0.1"), "{e}");
    }
    // The right password works, and its failures are as discreet.
    let store = connect(&server).await;
    server.kill9();
    let e = store.get(&["k".into()]).await.unwrap_err().to_string();
    assert!(e.contains(":***@") && !e.contains("s3cret"), "{e}");
}

#[tokio::test]
async fn with_wait_a_commit_is_acknowledged_only_once_a_replica_holds_it() {
    let Some(primary) = RedisServer::start() else {
        return;
    };
    let config = StoreConfig {
        wait_replicas: 1,
        wait_timeout: Duration::from_millis(200),
        ..StoreConfig::default()
    };
    let store = RedisStore::connect(&primary.url(), &config).await.unwrap();
    // No replica: the commit is on the primary, but not acknowledged.
    let e = store
        .commit(&[], &[put("k", b"v")])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("0 of 1 replicas acknowledged it within 200 ms"),
        "{e}"
    );
    let replica = RedisServer::start_replica_of(&primary);
    // `WAIT` answers as soon as the replica acknowledges; a busy machine may take
    // longer than 200 ms to, so the waiting store gets time.
    let patient = StoreConfig {
        wait_timeout: Duration::from_secs(10),
        ..config
    };
    let store = RedisStore::connect(&primary.url(), &patient).await.unwrap();
    let CommitOutcome::Committed(r) = store.commit(&[], &[put("k", b"w")]).await.unwrap() else {
        panic!("a replica acknowledges")
    };
    // What was acknowledged is on the replica.
    assert_eq!(
        replica
            .cli(&["--raw", "HGET", "request-access:{k}k", "r"])
            .trim(),
        r.to_string()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stops_answering_is_cut_off_by_the_command_timeout() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let config = StoreConfig {
        command_timeout: Duration::from_millis(200),
        ..StoreConfig::default()
    };
    let store = RedisStore::connect(&server.url(), &config).await.unwrap();
    server.freeze();
    let started = std::time::Instant::now();
    let e = store.get(&["k".into()]).await.unwrap_err();
    assert!(e.to_string().contains("no answer within 200 ms"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    server.thaw();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while let Err(e) = store.commit(&[], &[put("k", b"v")]).await {
        assert!(std::time::Instant::now() < deadline, "not back: {e}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_fails_fast_and_the_store_recovers_by_itself() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let config = StoreConfig {
        command_timeout: Duration::from_millis(300),
        connect_timeout: Duration::from_millis(300),
        ..StoreConfig::default()
    };
    let store = RedisStore::connect(&server.url(), &config).await.unwrap();
    let CommitOutcome::Committed(before) = store.commit(&[], &[put("k", b"v")]).await.unwrap()
    else {
        panic!("commits")
    };
    server.kill9();
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let failed = store.commit(&[], &[put("k", b"w")]).await;
        assert!(
            matches!(failed, Err(StoreError::Unavailable(_))),
            "{failed:?}"
        );
        // Bounded by the timeouts (generously: the machine is shared).
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }
    server.launch();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let entry = loop {
        match store.get(&["k".into()]).await {
            Ok(found) => break found,
            Err(e) => {
                assert!(std::time::Instant::now() < deadline, "not back: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    // The append-only file kept the acknowledged commit, and nothing else landed.
    assert_eq!(entry[0].as_ref().unwrap().value, b"v");
    assert_eq!(entry[0].as_ref().unwrap().revision, before);
    // The restarted server has lost its script cache; commits load it again.
    assert!(matches!(
        store.commit(&[], &[put("k", b"x")]).await.unwrap(),
        CommitOutcome::Committed(r) if r > before
    ));
}
