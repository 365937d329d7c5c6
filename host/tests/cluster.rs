//! Several `serve` nodes sharing one state on a real Redis (and on a real etcd): what
//! one node does, every node sees; a Redis outage is a fast 503 and readiness failing,
//! and the same nodes serve again when Redis returns. Skipped where `redis-server` (or
//! `etcd`) is not installed, unless `REQUEST_ACCESS_REQUIRE_TOOLS` is set.

mod common;

use std::time::{Duration, Instant};

use common::*;
use request_access_testkit::RedisServer;

/// A node's configuration: `size` numbers, services s0..s9, the shared store.
fn node_config(redis: &RedisServer, size: u32, store: &str) -> String {
    config(
        size,
        10,
        &format!("[store]\nurl = \"{}\"\n{store}", redis.url()),
    )
}

fn nodes(
    redis: &RedisServer,
    count: usize,
    size: u32,
    store: &str,
) -> Vec<(tempfile::TempDir, Server)> {
    (0..count)
        .map(|_| {
            let dir = tempfile::tempdir().unwrap();
            let server = Server::start(dir.path(), &node_config(redis, size, store), Some(TOKEN));
            (dir, server)
        })
        .collect()
}

fn pools(node: &Server) -> serde_json::Value {
    let reply = get(&node.url("/admin/pools"), Some(TOKEN));
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    reply.body
}

/// `request_access_pool_live{group="DNIS"}` from a node's metrics.
fn live_metric(node: &Server) -> String {
    let text = agent()
        .get(&node.url("/metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    text.lines()
        .find(|l| l.starts_with("request_access_pool_live{"))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn three_nodes_share_reservations_registrations_and_pool_status() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let nodes = nodes(&redis, 3, 5, "");
    let (a, b, c) = (&nodes[0].1, &nodes[1].1, &nodes[2].1);

    // Created on A, matched on B: the number goes back to the pool for everyone.
    let created = post_form(
        &create_url(a),
        &[
            ("_id", "s1"),
            ("_resource_group", "DNIS"),
            ("_provide_code", "true"),
        ],
    );
    assert_eq!(created.status, 200, "{:?}", created.body);
    let number = created.body["_access_number"].as_str().unwrap();
    let code = created.body["_access_code"].as_str().unwrap();
    for node in [a, b, c] {
        assert_eq!(pools(node)["groups"][0]["live"], 1);
    }
    let matched = post_form(
        &match_url(b),
        &[("_access_number", number), ("_access_code", code)],
    );
    assert_eq!(matched.status, 200, "{:?}", matched.body);
    assert_eq!(matched.body["_id"], "s1");
    // The same call again, on C: the reservation has ended.
    let again = post_form(
        &match_url(c),
        &[("_access_number", number), ("_access_code", code)],
    );
    assert_eq!(again.status, 404, "{:?}", again.body);

    // A registration made through A is active on B, and released on C.
    let registered = reply(
        agent()
            .post(&a.url("/admin/services"))
            .header("authorization", &format!("Bearer {TOKEN}"))
            .send_form([("_id", "app-7"), ("_ttl", "60")])
            .unwrap(),
    );
    assert_eq!(registered.status, 200, "{:?}", registered.body);
    let listed = get(&c.url("/admin/services"), Some(TOKEN));
    assert!(
        listed.body.to_string().contains("app-7"),
        "{:?}",
        listed.body
    );
    let created = post_form(
        &create_url(b),
        &[("_id", "app-7"), ("_resource_group", "DNIS")],
    );
    assert_eq!(created.status, 200, "{:?}", created.body);
    let held = created.body["_access_number"].as_str().unwrap().to_string();
    // Extended through A: every node sees the same number for longer.
    let extended = post_form(
        &a.url("/genesys/1/service/extend-access"),
        &[
            ("_id", "app-7"),
            ("_resource_group", "DNIS"),
            ("_booking_expiration_timeout", "900"),
        ],
    );
    assert_eq!(extended.status, 200, "{:?}", extended.body);
    assert_eq!(extended.body["_access_number"], held.as_str());
    assert_eq!(extended.body["_expiration_time"], 900);
    let released = post_form(
        &c.url("/genesys/1/service/release-access"),
        &[("_id", "app-7"), ("_resource_group", "DNIS")],
    );
    assert_eq!(released.status, 200, "{:?}", released.body);
    assert_eq!(released.body["_access_number"], held.as_str());

    // Fill the pool through all three nodes: five numbers, five services, no sixth.
    let mut lent = Vec::new();
    for (i, node) in [a, b, c, a, b].into_iter().enumerate() {
        let r = post_form(
            &create_url(node),
            &[("_id", &format!("s{i}")), ("_resource_group", "DNIS")],
        );
        assert_eq!(r.status, 200, "{:?}", r.body);
        lent.push(r.body["_access_number"].as_str().unwrap().to_string());
    }
    lent.sort();
    lent.dedup();
    assert_eq!(lent.len(), 5, "a number lent twice: {lent:?}");
    let refused = post_form(
        &create_url(c),
        &[("_id", "s9"), ("_resource_group", "DNIS")],
    );
    assert_eq!(refused.status, 503, "{:?}", refused.body);
    assert_eq!(refused.body["code"], "no-access-number-available");
    // Every node reports the same occupancy, in /admin/pools and in its metrics.
    let reference = pools(a);
    assert_eq!(reference["groups"][0]["live"], 5);
    for node in [b, c] {
        assert_eq!(pools(node), reference);
    }
    let metric = live_metric(a);
    assert!(metric.ends_with(" 5"), "{metric}");
    for node in [b, c] {
        assert_eq!(live_metric(node), metric);
    }
}

/// The command line, on `data` or on the store `--store` names.
fn cli(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_request-access"))
        .arg("--data")
        .arg(dir.join("node.redb"))
        .arg("--cache-dir")
        .arg(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache"))
        .args(args)
        .env_remove("REQUEST_ACCESS_STORE")
        .output()
        .unwrap()
}

fn json(output: std::process::Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn store_copy_moves_a_nodes_data_file_to_redis() {
    let Some(redis) = RedisServer::start_with(Some("copy-pw")) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // One node on its data file: a reservation with a code, a registration with a TTL.
    let created = json(cli(
        dir.path(),
        &[
            "create",
            "--id",
            "demo-service",
            "--resource-group",
            "DNIS",
            "--provide-code",
        ],
    ));
    json(cli(
        dir.path(),
        &["services", "register", "app-1", "--ttl", "600"],
    ));

    let data = dir.path().join("node.redb");
    let copied = json(cli(
        dir.path(),
        &[
            "store",
            "copy",
            "--from",
            data.to_str().unwrap(),
            "--to",
            &redis.url(),
        ],
    ));
    assert!(copied["copied"].as_u64().unwrap() >= 5, "{copied}");
    assert_eq!(
        copied["to"],
        format!("redis://:***@127.0.0.1:{}/0", redis.port)
    );

    // On Redis: the registration is there, and the reservation matches once.
    let url = redis.url();
    let on_redis = |args: &[&str]| {
        let mut all = vec!["--store", url.as_str()];
        all.extend_from_slice(args);
        cli(dir.path(), &all)
    };
    let listed = json(on_redis(&["services", "list"]));
    assert!(listed.to_string().contains("app-1"), "{listed}");
    let number = created["_access_number"].as_str().unwrap();
    let code = created["_access_code"].as_str().unwrap();
    let matched = json(on_redis(&[
        "match",
        "--access-number",
        number,
        "--access-code",
        code,
    ]));
    assert_eq!(matched["_id"], "demo-service");
    let again = on_redis(&["match", "--access-number", number, "--access-code", code]);
    assert_eq!(again.status.code(), Some(3));
    // A wrong password: one line naming the store without its password, exit 1.
    let wrong = redis.url().replace("copy-pw", "not-the-pw");
    let refused = cli(dir.path(), &["--store", &wrong, "groups"]);
    assert_eq!(refused.status.code(), Some(1));
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("cannot open the state store redis://:***@127.0.0.1"),
        "{message}"
    );
    assert!(!message.contains("pw"), "{message}");
}

#[test]
fn a_redis_outage_is_a_fast_503_and_the_node_recovers_without_a_restart() {
    let Some(redis) = RedisServer::start_with(Some("outage-pw")) else {
        return;
    };
    let nodes = nodes(
        &redis,
        1,
        5,
        "command_timeout_ms = 300\nconnect_timeout_ms = 300\n",
    );
    let node = &nodes[0].1;
    let created = post_form(
        &create_url(node),
        &[("_id", "s1"), ("_resource_group", "DNIS")],
    );
    assert_eq!(created.status, 200, "{:?}", created.body);
    assert_eq!(get(&node.url("/readyz"), None).status, 200);

    redis.kill9();
    for _ in 0..3 {
        let started = Instant::now();
        let failed = post_form(
            &create_url(node),
            &[("_id", "s2"), ("_resource_group", "DNIS")],
        );
        let took = started.elapsed();
        assert_eq!(failed.status, 503, "{:?}", failed.body);
        assert_eq!(failed.body["code"], "state-store-failure");
        assert_eq!(failed.retry_after.as_deref(), Some("1"));
        // The create makes a few store calls, each bounded by 300 ms; far below the
        // 10 s request timeout (generous bounds: the machine is shared).
        assert!(took < Duration::from_secs(4), "took {took:?}");
        let matched = post_form(&match_url(node), &[("_access_number", "5550000")]);
        assert_eq!(matched.status, 503, "{:?}", matched.body);
        assert_eq!(matched.body["code"], "state-store-failure");
    }
    let ready = get(&node.url("/readyz"), None);
    assert_eq!(ready.status, 503, "{:?}", ready.body);
    assert_eq!(get(&node.url("/healthz"), None).status, 200);

    redis.launch();
    let deadline = Instant::now() + Duration::from_secs(15);
    while get(&node.url("/readyz"), None).status != 200 {
        assert!(
            Instant::now() < deadline,
            "not ready again: {}",
            log(node.dir.as_path())
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The reservation acknowledged before the outage is still held; s2 gets another.
    let created2 = post_form(
        &create_url(node),
        &[("_id", "s2"), ("_resource_group", "DNIS")],
    );
    assert_eq!(created2.status, 200, "{:?}", created2.body);
    assert_ne!(
        created2.body["_access_number"],
        created.body["_access_number"]
    );
    assert_eq!(pools(node)["groups"][0]["live"], 2);
    // The store is named in the log, its password never, failures included.
    let log = log(node.dir.as_path());
    assert!(
        log.contains("state store open store=redis://:***@127.0.0.1"),
        "{log}"
    );
    assert!(log.contains("WARN"), "the outage was not logged: {log}");
    assert!(!log.contains("outage-pw"), "{log}");
}

#[test]
fn a_frozen_redis_fails_every_waiting_request_in_bounded_time_not_in_turn() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let nodes = nodes(
        &redis,
        1,
        5,
        "command_timeout_ms = 300\nconnect_timeout_ms = 300\n",
    );
    let node = &nodes[0].1;
    // The server stops answering without closing its connections (a partition, a
    // stalled disk): 16 requests of one group arrive at once.
    redis.freeze();
    let slowest = std::thread::scope(|scope| {
        let requests: Vec<_> = (0..16)
            .map(|i| {
                scope.spawn(move || {
                    let started = Instant::now();
                    let reply = post_form(
                        &create_url(node),
                        &[
                            ("_id", &format!("s{}", i % 10)),
                            ("_resource_group", "DNIS"),
                        ],
                    );
                    assert_eq!(reply.status, 503, "{:?}", reply.body);
                    assert_eq!(reply.body["code"], "state-store-failure");
                    started.elapsed()
                })
            })
            .collect();
        requests
            .into_iter()
            .map(|r| r.join().unwrap())
            .max()
            .unwrap()
    });
    // In turn, one after another, the last would wait 16 x 300 ms and more; each waits
    // at most one timeout for its group's turn, then one for its own store call.
    assert!(slowest < Duration::from_millis(2500), "slowest {slowest:?}");
    redis.thaw();
    let deadline = Instant::now() + Duration::from_secs(15);
    while get(&node.url("/readyz"), None).status != 200 {
        assert!(Instant::now() < deadline, "not ready again");
        std::thread::sleep(Duration::from_millis(100));
    }
    let created = post_form(
        &create_url(node),
        &[("_id", "s1"), ("_resource_group", "DNIS")],
    );
    assert_eq!(created.status, 200, "{:?}", created.body);
}

#[test]
fn on_etcd_an_extension_and_a_sliding_session_are_seen_by_every_node() {
    let Some(etcd) = request_access_testkit::EtcdCluster::start(1) else {
        return;
    };
    let sliding = format!(
        "[store]\nurl = \"{}\"\n[[resource_group]]\nname = \"SESSION\"\n\
         sliding_expiry = true\nnumbers = [\"5559000\"]\n",
        etcd.url()
    );
    let nodes: Vec<(tempfile::TempDir, Server)> = (0..2)
        .map(|_| {
            let dir = tempfile::tempdir().unwrap();
            let server = Server::start(dir.path(), &config(2, 3, &sliding), Some(TOKEN));
            (dir, server)
        })
        .collect();
    let (a, b) = (&nodes[0].1, &nodes[1].1);
    let created = post_form(
        &create_url(a),
        &[
            ("_id", "s0"),
            ("_resource_group", "DNIS"),
            ("_booking_expiration_timeout", "10"),
        ],
    );
    assert_eq!(created.status, 200, "{:?}", created.body);
    let extended = post_form(
        &b.url("/genesys/1/service/extend-access"),
        &[
            ("_id", "s0"),
            ("_resource_group", "DNIS"),
            ("_booking_expiration_timeout", "600"),
        ],
    );
    assert_eq!(extended.status, 200, "{:?}", extended.body);
    assert_eq!(
        extended.body["_access_number"],
        created.body["_access_number"]
    );
    assert_eq!(extended.body["_expiration_time"], 600);

    // A session's calls through either node keep its one number.
    let session = post_form(
        &create_url(a),
        &[("_id", "s1"), ("_resource_group", "SESSION")],
    );
    assert_eq!(session.status, 200, "{:?}", session.body);
    for node in [a, b, a] {
        let call = post_form(&match_url(node), &[("_access_number", "5559000")]);
        assert_eq!(call.body, serde_json::json!({"_id": "s1"}));
    }
    let crowded = post_form(
        &create_url(b),
        &[("_id", "s2"), ("_resource_group", "SESSION")],
    );
    assert_eq!(crowded.status, 503, "{:?}", crowded.body);
}

#[test]
fn on_redis_two_nodes_tell_one_webhook_every_event_once_in_order() {
    use common::webhook::{Receiver, SECRET};
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let receiver = Receiver::start(listener);
    let events = format!(
        "[events]\nwebhook_url = \"http://127.0.0.1:{port}/hooks\"\n\
         webhook_secret = \"{SECRET}\"\nlog_retention = 3600\n"
    );
    let mut nodes = nodes(&redis, 2, 5, &events);
    let (a, b) = (&nodes[0].1, &nodes[1].1);
    let created = post_form(
        &create_url(a),
        &[("_id", "s1"), ("_resource_group", "DNIS")],
    );
    assert_eq!(created.status, 200, "{:?}", created.body);
    let number = created.body["_access_number"].as_str().unwrap().to_string();
    let matched = post_form(&match_url(b), &[("_access_number", &number)]);
    assert_eq!(matched.status, 200, "{:?}", matched.body);
    let stray = post_form(&match_url(a), &[("_access_number", &number)]);
    assert_eq!(stray.status, 404);

    let got = receiver.wait_for(3, Duration::from_secs(20));
    let kinds: Vec<&str> = got.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["reservation.created", "call.matched", "call.unreserved"]
    );
    // One node delivers at a time: nothing came twice.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(receiver.got.lock().unwrap().len(), 3);
    // Either node reads the shared interaction log.
    let log = get(
        &b.url(&format!("/admin/interactions?number={number}")),
        Some(TOKEN),
    );
    assert_eq!(
        log.body["events"].as_array().unwrap().len(),
        3,
        "{:?}",
        log.body
    );

    // The first node dies (kill -9): whichever held the delivery lease, the other
    // delivers what happens next, within a lease (10 s).
    nodes[0].1.child.kill().unwrap();
    nodes[0].1.child.wait().unwrap();
    let b = &nodes[1].1;
    let again = post_form(
        &create_url(b),
        &[("_id", "s2"), ("_resource_group", "DNIS")],
    );
    assert_eq!(again.status, 200, "{:?}", again.body);
    let got = receiver.wait_for(4, Duration::from_secs(30));
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(got[3]["type"], "reservation.created");
    assert_eq!(got[3]["_id"], "s2");
}
