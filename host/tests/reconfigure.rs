//! The configuration reloaded while the service runs (the admin route and SIGHUP):
//! pools change under live reservations, which keep their number and group; a file that
//! does not load is refused and the running configuration keeps serving; reloads under
//! load fail no request.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;

/// Group `DNIS` with these numbers, services s0..s3 always active.
fn numbers(range: &str) -> String {
    format!(
        "[[resource_group]]\nname = \"DNIS\"\nnumbers = [{range}]\n\
         [registry]\nservices = [\"s0\", \"s1\", \"s2\", \"s3\"]\n"
    )
}

fn reload(s: &Server) -> Reply {
    reply(
        agent()
            .post(&s.url("/admin/config/reload"))
            .header("authorization", &format!("Bearer {TOKEN}"))
            .send_empty()
            .unwrap(),
    )
}

fn hang_up(s: &Server) {
    let sent = Command::new("kill")
        .args(["-HUP", &s.child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

fn dnis(s: &Server) -> serde_json::Value {
    get(&s.url("/admin/pools"), Some(TOKEN)).body["groups"][0].clone()
}

#[test]
fn a_reload_changes_the_pool_and_live_reservations_keep_their_number() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &numbers("\"5550000..5550002\""), Some(TOKEN));
    let held = post_form(
        &create_url(&s),
        &[
            ("_id", "s0"),
            ("_resource_group", "DNIS"),
            ("_provide_code", "true"),
        ],
    );
    assert_eq!(held.body["_access_number"], "5550000");
    let code = held.body["_access_code"].as_str().unwrap().to_string();

    // 5550000 leaves the pool while s0 holds it.
    std::fs::write(
        dir.path().join("config.toml"),
        numbers("\"5550001..5550004\""),
    )
    .unwrap();
    let reloaded = reload(&s);
    assert_eq!(reloaded.status, 200, "{:?}", reloaded.body);
    assert_eq!(reloaded.body["restart_needed"], serde_json::json!([]));
    assert_eq!(dnis(&s)["size"], 4);

    // The caller still gets through, once.
    let dial = [
        ("_access_number", "5550000"),
        ("_access_code", code.as_str()),
    ];
    let matched = post_form(&match_url(&s), &dial);
    assert_eq!(matched.status, 200, "{:?}", matched.body);
    assert_eq!(matched.body["_id"], "s0");
    assert_eq!(post_form(&match_url(&s), &dial).status, 404);
    // The new numbers are lent at once, the removed one never again.
    for id in ["s1", "s2", "s3"] {
        let lent = post_form(&create_url(&s), &[("_id", id), ("_resource_group", "DNIS")]);
        assert_eq!(lent.status, 200, "{:?}", lent.body);
        assert_ne!(lent.body["_access_number"], "5550000");
    }

    // A file that does not load is refused by file, line and key; nothing changes.
    let before = dnis(&s);
    std::fs::write(dir.path().join("config.toml"), numbers("\"abc\"")).unwrap();
    let refused = reload(&s);
    assert_eq!(refused.status, 400);
    assert_eq!(refused.body["code"], "invalid-configuration");
    let message = refused.body["message"].as_str().unwrap();
    assert!(message.contains("config.toml:3"), "{message}");
    assert!(message.contains("numbers"), "{message}");
    assert_eq!(dnis(&s), before);
    hang_up(&s);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(dnis(&s), before, "SIGHUP with a bad file changes nothing");
    assert!(log(dir.path()).contains("configuration reload failed"));
}

#[test]
fn reloads_by_sighup_under_load_fail_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let small = numbers("\"5550000..5550049\"");
    let large = numbers("\"5550000..5550059\"");
    let s = Server::start(dir.path(), &small, Some(TOKEN));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = ["s0", "s1", "s2", "s3"]
        .into_iter()
        .map(|id| {
            let (create, release) = (create_url(&s), s.url("/genesys/1/service/release-access"));
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut calls = 0;
                while !stop.load(Ordering::Relaxed) {
                    let fields = [("_id", id), ("_resource_group", "DNIS")];
                    let created = post_form(&create, &fields);
                    assert_eq!(created.status, 200, "{id}: {:?}", created.body);
                    let released = post_form(&release, &fields);
                    assert_eq!(released.status, 200, "{id}: {:?}", released.body);
                    calls += 2;
                }
                calls
            })
        })
        .collect();
    for round in 0..6 {
        let text = if round % 2 == 0 { &large } else { &small };
        std::fs::write(dir.path().join("config.toml"), text).unwrap();
        hang_up(&s);
        std::thread::sleep(Duration::from_millis(250));
    }
    stop.store(true, Ordering::Relaxed);
    let calls: u32 = clients.into_iter().map(|c| c.join().unwrap()).sum();
    assert!(calls > 50, "only {calls} calls ran during the reloads");
    assert_eq!(
        log(dir.path())
            .matches("configuration reloaded on SIGHUP")
            .count(),
        6
    );
    // The last file (the small pool) is what serves now, and nothing is held.
    assert_eq!(dnis(&s)["size"], 50);
    assert_eq!(dnis(&s)["live"], 0);
}

/// `(size, live, free)` of every group `/admin/pools` reports, by name.
fn pools(s: &Server) -> Vec<(String, u64, u64, u64)> {
    let body = get(&s.url("/admin/pools"), Some(TOKEN)).body;
    body["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            let field = |f: &str| g[f].as_u64().unwrap();
            let name = g["name"].as_str().unwrap().to_string();
            (name, field("size"), field("live"), field("free"))
        })
        .collect()
}

#[test]
fn numbers_added_moved_and_groups_retired_by_a_reload_keep_every_reservation() {
    let dir = tempfile::tempdir().unwrap();
    let before = "[[resource_group]]\nname = \"G\"\nnumbers = [\"5550000..5550001\"]\n\
                  [[resource_group]]\nname = \"H\"\nnumbers = [\"5550009\"]\n\
                  [registry]\nservices = [\"s0\", \"s1\", \"s2\", \"s3\"]\n";
    let s = Server::start(dir.path(), before, Some(TOKEN));
    let create = |id: &str, group: &str, extra: &[(&str, &str)]| {
        let mut fields = vec![("_id", id), ("_resource_group", group)];
        fields.extend_from_slice(extra);
        post_form(&create_url(&s), &fields)
    };
    assert_eq!(create("s0", "G", &[]).body["_access_number"], "5550000");
    let expiring = create("s3", "G", &[("_booking_expiration_timeout", "5")]);
    assert_eq!(expiring.body["_access_number"], "5550001");
    let coded = create("s1", "H", &[("_provide_code", "true")]);
    assert_eq!(coded.body["_access_number"], "5550009");
    let code = coded.body["_access_code"].as_str().unwrap().to_string();

    // 5550002 joins G, 5550000 moves to a new group K while s0 holds it, H retires while
    // s1 holds its only number.
    let after = "[[resource_group]]\nname = \"G\"\nnumbers = [\"5550001..5550002\"]\n\
                 [[resource_group]]\nname = \"K\"\nnumbers = [\"5550000\"]\n\
                 [registry]\nservices = [\"s0\", \"s1\", \"s2\", \"s3\"]\n";
    std::fs::write(dir.path().join("config.toml"), after).unwrap();
    assert_eq!(reload(&s).status, 200);
    // Exact at once: held numbers are never counted free.
    assert_eq!(
        pools(&s),
        [("G".into(), 2, 1, 1), ("K".into(), 1, 1, 0)],
        "s3 holds 5550001 in G, s0 holds 5550000 now in K"
    );
    // K lends the moved number only once s0's reservation has ended.
    let refused = create("s2", "K", &[]);
    assert_eq!(refused.status, 503, "{:?}", refused.body);
    let released = post_form(
        &s.url("/genesys/1/service/release-access"),
        &[("_id", "s0"), ("_resource_group", "G")],
    );
    assert_eq!(released.status, 200, "{:?}", released.body);
    assert_eq!(released.body["_access_number"], "5550000");
    assert_eq!(create("s2", "K", &[]).body["_access_number"], "5550000");
    // The added number is lent at once.
    assert_eq!(create("s0", "G", &[]).body["_access_number"], "5550002");

    // The retired group's caller still gets through, once; then H is unknown.
    let dial = [
        ("_access_number", "5550009"),
        ("_access_code", code.as_str()),
    ];
    let matched = post_form(&match_url(&s), &dial);
    assert_eq!(matched.status, 200, "{:?}", matched.body);
    assert_eq!(matched.body["_id"], "s1");
    assert_eq!(post_form(&match_url(&s), &dial).status, 404);
    let unknown = post_form(
        &s.url("/genesys/1/service/release-access"),
        &[("_id", "s1"), ("_resource_group", "H")],
    );
    assert_eq!(unknown.status, 400, "{:?}", unknown.body);
    assert_eq!(unknown.body["code"], "unknown-resource-group");

    // s3's reservation, made before the change, expires as it would have.
    assert_eq!(pools(&s)[0], ("G".into(), 2, 2, 0));
    std::thread::sleep(Duration::from_millis(5_200));
    assert_eq!(pools(&s)[0], ("G".into(), 2, 1, 1));
    assert_eq!(
        post_form(&match_url(&s), &[("_access_number", "5550001")]).status,
        404
    );
    assert_eq!(create("s3", "G", &[]).body["_access_number"], "5550001");
}
