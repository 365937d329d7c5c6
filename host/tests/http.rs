//! The HTTP service, through the real binary on a loopback port and a real HTTP client:
//! every route and content type, every error status, the admin token, metrics, the
//! OpenAPI document, a `kill -9` in a stream of creates, and a plugin swap under load.

mod common;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::*;

#[test]
fn every_content_type_reaches_create_with_the_original_wire_shape() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &config(10, 5, ""), None);

    let form = post_form(
        &create_url(&s),
        &[
            ("_id", "s0"),
            ("_resource_group", "DNIS"),
            ("_provide_code", "true"),
        ],
    );
    assert_eq!(form.status, 200, "{:?}", form.body);
    assert_eq!(form.body["_id"], "s0");
    assert_eq!(form.body["_access_number"], "5550000");
    assert_eq!(form.body["_expiration_time"], 30);
    assert_eq!(form.body["_access_code"].as_str().unwrap().len(), 6);
    assert!(form.body["_expires_at"].as_str().unwrap().ends_with('Z'));

    let json = post_raw(
        &create_url(&s),
        "application/json",
        r#"{"_id":"s1","_resource_group":"DNIS","_booking_expiration_timeout":"45","_return_pool_health":true}"#,
    );
    assert_eq!(json.status, 200, "{:?}", json.body);
    assert_eq!(json.body["_expiration_time"], 45);
    assert!(json.body.get("_access_code").is_none());
    assert_eq!(json.body["_pool_health"]["live"], 2);

    let boundary = "XyZ";
    let multipart = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"_id\"\r\n\r\ns2\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"_resource_group\"\r\n\r\nDNIS\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"_provide_code\"\r\n\r\nfalse\r\n\
         --{boundary}--\r\n"
    );
    let mp = post_raw(
        &create_url(&s),
        &format!("multipart/form-data; boundary={boundary}"),
        &multipart,
    );
    assert_eq!(mp.status, 200, "{:?}", mp.body);
    assert_eq!(mp.body["_access_number"], "5550002");

    // Match, with and without the multiple-matches shape; the second match is a 404.
    let code = form.body["_access_code"].as_str().unwrap();
    let m = post_form(
        &match_url(&s),
        &[("_access_number", "5550000"), ("_access_code", code)],
    );
    assert_eq!(
        (m.status, &m.body),
        (200, &serde_json::json!({"_id": "s0"}))
    );
    let again = post_form(
        &match_url(&s),
        &[("_access_number", "5550000"), ("_access_code", code)],
    );
    assert_eq!(
        (again.status, again.body["code"].as_str()),
        (404, Some("no-match"))
    );
    let many = post_raw(
        &match_url(&s),
        "application/json",
        r#"{"_access_number":"5550001","_return_multiple_matches":true}"#,
    );
    assert_eq!(many.body, serde_json::json!({"matches": [{"_id": "s1"}]}));

    let released = post_form(
        &s.url("/genesys/1/service/release-access"),
        &[("_id", "s2"), ("_resource_group", "DNIS")],
    );
    assert_eq!(released.body["_access_number"], "5550002");
    let twice = post_form(
        &s.url("/genesys/1/service/release-access"),
        &[("_id", "s2"), ("_resource_group", "DNIS")],
    );
    assert_eq!(twice.status, 404);
}

#[test]
fn every_error_has_its_status_and_one_json_shape() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        dir.path(),
        &config(1, 3, "[server]\nmax_body_bytes = 2048\n"),
        None,
    );
    let cases: Vec<(Reply, u16, &str, Option<&str>)> = vec![
        (
            post_form(&create_url(&s), &[("_resource_group", "DNIS")]),
            400,
            "invalid-parameter",
            Some("_id"),
        ),
        (
            post_form(
                &create_url(&s),
                &[
                    ("_id", "s0"),
                    ("_resource_group", "DNIS"),
                    ("_booking_expiration_timeout", "1801"),
                ],
            ),
            400,
            "invalid-parameter",
            Some("_booking_expiration_timeout"),
        ),
        (
            post_form(
                &create_url(&s),
                &[
                    ("_id", "s0"),
                    ("_resource_group", "DNIS"),
                    ("_provide_code", "maybe"),
                ],
            ),
            400,
            "invalid-parameter",
            Some("_provide_code"),
        ),
        (
            post_form(
                &create_url(&s),
                &[("_id", "s0"), ("_resource_group", "NOPE")],
            ),
            400,
            "unknown-resource-group",
            Some("_resource_group"),
        ),
        (
            post_form(
                &create_url(&s),
                &[("_id", "who"), ("_resource_group", "DNIS")],
            ),
            403,
            "service-not-active",
            Some("_id"),
        ),
        (
            post_raw(&create_url(&s), "text/plain", "_id=s0"),
            415,
            "unsupported-media-type",
            None,
        ),
        (
            post_raw(&create_url(&s), "application/json", "{"),
            400,
            "bad-request",
            None,
        ),
        (
            post_raw(
                &create_url(&s),
                "application/x-www-form-urlencoded",
                &"a".repeat(4096),
            ),
            413,
            "body-too-large",
            None,
        ),
        (
            post_form(&match_url(&s), &[("_access_code", "1")]),
            400,
            "invalid-parameter",
            Some("_access_number"),
        ),
        (
            post_form(&match_url(&s), &[("_access_number", "5559999")]),
            404,
            "no-match",
            None,
        ),
        (get(&s.url("/no/such/route"), None), 404, "no-route", None),
    ];
    for (i, (r, status, code, field)) in cases.into_iter().enumerate() {
        assert_eq!(r.status, status, "case {i}: {:?}", r.body);
        assert_eq!(r.body["code"], code, "case {i}: {:?}", r.body);
        assert!(
            r.body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "case {i}"
        );
        assert_eq!(r.body["field"].as_str(), field, "case {i}");
    }

    // An exhausted pool is 503 with Retry-After: when the only reservation, booked for
    // the default 30 s, expires.
    assert_eq!(
        post_form(
            &create_url(&s),
            &[("_id", "s0"), ("_resource_group", "DNIS")]
        )
        .status,
        200
    );
    let full = post_form(
        &create_url(&s),
        &[("_id", "s1"), ("_resource_group", "DNIS")],
    );
    assert_eq!(
        (full.status, full.body["code"].as_str()),
        (503, Some("no-access-number-available"))
    );
    let after: u32 = full.retry_after.as_deref().unwrap().parse().unwrap();
    assert!((29..=30).contains(&after), "Retry-After {after}");
}

#[test]
fn admin_routes_need_the_bearer_token() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &config(10, 1, ""), Some(TOKEN));
    assert_eq!(get(&s.url("/admin/services"), None).status, 401);
    assert_eq!(get(&s.url("/admin/services"), Some("wrong")).status, 401);
    assert_eq!(get(&s.url("/admin/pools"), None).status, 401);

    let register = reply(
        agent()
            .post(&s.url("/admin/services"))
            .header("authorization", &format!("Bearer {TOKEN}"))
            .send_form([("_id", "app-1"), ("_ttl", "600")])
            .unwrap(),
    );
    assert_eq!(register.status, 200, "{:?}", register.body);
    assert!(register.body["_expires_at"].is_string());
    let listed = get(&s.url("/admin/services"), Some(TOKEN));
    let ids: Vec<&str> = listed.body["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["app-1", "s0"]);
    assert_eq!(
        post_form(
            &create_url(&s),
            &[("_id", "app-1"), ("_resource_group", "DNIS")]
        )
        .status,
        200
    );
    let pools = get(&s.url("/admin/pools"), Some(TOKEN));
    assert_eq!(pools.body["groups"][0]["live"], 1);
    assert_eq!(pools.body["groups"][0]["utilisation"], 0.1);

    let unauthorized_delete = reply(
        agent()
            .delete(&s.url("/admin/services/app-1"))
            .call()
            .unwrap(),
    );
    assert_eq!(unauthorized_delete.status, 401);
    let delete = |id: &str| {
        reply(
            agent()
                .delete(&s.url(&format!("/admin/services/{id}")))
                .header("authorization", &format!("Bearer {TOKEN}"))
                .call()
                .unwrap(),
        )
    };
    assert_eq!(delete("app-1").status, 200);
    assert_eq!(delete("app-1").status, 404);
    assert_eq!(
        post_form(
            &create_url(&s),
            &[("_id", "app-1"), ("_resource_group", "DNIS")]
        )
        .status,
        403
    );
    drop(s);

    // Without a configured token the admin routes are closed to everyone.
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &config(10, 1, ""), None);
    assert_eq!(get(&s.url("/admin/services"), Some("")).status, 403);
}

#[test]
fn metrics_health_and_the_openapi_document_cover_the_real_routes() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &config(10, 2, ""), Some(TOKEN));
    post_form(
        &create_url(&s),
        &[("_id", "s0"), ("_resource_group", "DNIS")],
    );
    post_form(
        &create_url(&s),
        &[
            ("_id", "s0"),
            ("_resource_group", "DNIS"),
            ("_booking_expiration_timeout", "1"),
        ],
    );
    post_form(&match_url(&s), &[("_access_number", "5559999")]);

    let metrics = reply(agent().get(&s.url("/metrics")).call().unwrap());
    assert_eq!(metrics.status, 200);
    let text = {
        let mut r = agent().get(&s.url("/metrics")).call().unwrap();
        r.body_mut().read_to_string().unwrap()
    };
    for expected in [
        r#"request_access_http_requests_total{route="request-access",outcome="ok"} 1"#,
        r#"request_access_http_requests_total{route="request-access",outcome="invalid-parameter"} 1"#,
        r#"request_access_http_requests_total{route="match-interaction",outcome="no-match"} 1"#,
        r#"request_access_http_request_duration_seconds_count{route="request-access"} 2"#,
        r#"request_access_pool_size{group="DNIS"} 10"#,
        r#"request_access_pool_live{group="DNIS"} 1"#,
        r#"request_access_pool_utilisation{group="DNIS"} 0.1"#,
        "request_access_plugin_instantiations_total ",
        "request_access_plugin_faults_total 0",
        "request_access_plugin_reloads_total 0",
    ] {
        assert!(text.contains(expected), "{expected} missing from\n{text}");
    }
    assert_eq!(get(&s.url("/healthz"), None).status, 200);
    assert_eq!(get(&s.url("/readyz"), None).body["status"], "ready");

    // Every documented route exists (anything but the router's own 404/405).
    let doc = get(&s.url("/openapi.json"), None).body;
    assert_eq!(doc["openapi"], "3.1.0");
    // The configured groups are the only valid `_resource_group` values.
    assert_eq!(
        doc["components"]["schemas"]["GroupName"]["enum"],
        serde_json::json!(["DNIS"])
    );
    let paths = doc["paths"].as_object().unwrap();
    assert_eq!(paths.len(), 19);
    for (path, methods) in paths {
        for method in methods.as_object().unwrap().keys() {
            let url = s.url(&path.replace("{id}", "nobody").replace("{asset}", "app.js"));
            let request = ureq::http::Request::builder()
                .method(method.to_uppercase().as_str())
                .uri(&url)
                .body(())
                .unwrap();
            let r = reply(agent().run(request).unwrap());
            assert_ne!(r.status, 405, "{method} {path}");
            assert_ne!(r.body["code"], "no-route", "{method} {path}");
        }
    }
}

/// A fake registry on loopback: `remote-ok` is active, anything else unknown (404).
fn fake_registry() -> (String, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/services", listener.local_addr().unwrap());
    let broken = Arc::new(AtomicBool::new(false));
    let flag = broken.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 2048];
            let n = stream.read(&mut buf).unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]);
            let (status, body) = if flag.load(Ordering::SeqCst) {
                ("500 Internal Server Error", "{}")
            } else if request.starts_with("GET /services?id=remote-ok ") {
                ("200 OK", r#"{"active":true}"#)
            } else {
                ("404 Not Found", "{}")
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, broken)
}

#[test]
fn a_remote_registry_decides_for_services_this_host_does_not_know() {
    let (url, broken) = fake_registry();
    let dir = tempfile::tempdir().unwrap();
    let extra = format!("url = \"{url}\"\ncache_ttl_ms = 0\n");
    let text = config(10, 1, "").replace("[registry]\n", &format!("[registry]\n{extra}"));
    let s = Server::start(dir.path(), &text, None);
    let create = |id: &str| post_form(&create_url(&s), &[("_id", id), ("_resource_group", "DNIS")]);
    assert_eq!(create("remote-ok").status, 200);
    assert_eq!(create("remote-unknown").status, 403);
    assert_eq!(create("s0").status, 200, "static services need no remote");
    broken.store(true, Ordering::SeqCst);
    let failing = create("remote-ok");
    assert_eq!(
        (failing.status, failing.body["code"].as_str()),
        (502, Some("registry-failure"))
    );
}

#[test]
fn a_kill_9_mid_stream_loses_no_acknowledged_reservation() {
    let dir = tempfile::tempdir().unwrap();
    let text = config(400, 400, "");
    let s = Server::start(dir.path(), &text, None);
    let url = create_url(&s);
    let acknowledged: Arc<std::sync::Mutex<Vec<(String, String, String)>>> = Arc::default();
    let writer = {
        let acknowledged = acknowledged.clone();
        std::thread::spawn(move || {
            for i in 0..400 {
                let id = format!("s{i}");
                let Ok(r) = agent().post(&url).send_form([
                    ("_id", id.as_str()),
                    ("_resource_group", "DNIS"),
                    ("_provide_code", "true"),
                ]) else {
                    return; // the server is gone
                };
                let r = reply(r);
                if r.status != 200 {
                    return;
                }
                acknowledged.lock().unwrap().push((
                    id,
                    r.body["_access_number"].as_str().unwrap().to_string(),
                    r.body["_access_code"].as_str().unwrap().to_string(),
                ));
            }
        })
    };
    while acknowledged.lock().unwrap().len() < 30 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut s = s;
    s.child.kill().unwrap(); // SIGKILL, mid-stream
    s.child.wait().unwrap();
    writer.join().unwrap();
    drop(s);
    let acked = acknowledged.lock().unwrap().clone();
    assert!(
        acked.len() >= 30 && acked.len() < 400,
        "{} acknowledged",
        acked.len()
    );

    let s = Server::start(dir.path(), &text, None);
    eprintln!("restart to first listen: {:?}", s.startup);
    let numbers: HashSet<&str> = acked.iter().map(|(_, n, _)| n.as_str()).collect();
    assert_eq!(
        numbers.len(),
        acked.len(),
        "no number was lent twice before the kill"
    );
    // New reservations avoid every acknowledged number...
    for i in 0..20 {
        let fresh = post_form(
            &create_url(&s),
            &[
                ("_id", &format!("s{}", 399 - i)),
                ("_resource_group", "DNIS"),
            ],
        );
        assert_eq!(fresh.status, 200);
        assert!(!numbers.contains(fresh.body["_access_number"].as_str().unwrap()));
    }
    // ...and every acknowledged one still matches, with its code, to its service.
    for (id, number, code) in &acked {
        let m = post_form(
            &match_url(&s),
            &[("_access_number", number), ("_access_code", code)],
        );
        assert_eq!(
            (m.status, m.body["_id"].as_str()),
            (200, Some(id.as_str())),
            "{number}"
        );
    }
}

#[test]
fn the_plugin_is_swapped_under_load_without_a_failed_request() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &config(1000, 8, ""), Some(TOKEN));
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let served = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..4)
        .map(|t| {
            let (stop, failures, served) = (stop.clone(), failures.clone(), served.clone());
            let (create, matching) = (create_url(&s), match_url(&s));
            std::thread::spawn(move || {
                let id = format!("s{t}");
                while !stop.load(Ordering::SeqCst) {
                    let c = post_form(
                        &create,
                        &[
                            ("_id", &id),
                            ("_resource_group", "DNIS"),
                            ("_provide_code", "true"),
                        ],
                    );
                    if c.status != 200 {
                        failures.fetch_add(1, Ordering::SeqCst);
                        continue;
                    }
                    let number = c.body["_access_number"].as_str().unwrap();
                    let code = c.body["_access_code"].as_str().unwrap();
                    let m = post_form(
                        &matching,
                        &[("_access_number", number), ("_access_code", code)],
                    );
                    if m.status != 200 || m.body["_id"] != id.as_str() {
                        failures.fetch_add(1, Ordering::SeqCst);
                    }
                    served.fetch_add(2, Ordering::SeqCst);
                }
            })
        })
        .collect();
    let reload = |body: &[u8]| {
        reply(
            agent()
                .post(&s.url("/admin/plugin/reload"))
                .header("authorization", &format!("Bearer {TOKEN}"))
                .header("content-type", "application/wasm")
                .send(body)
                .unwrap(),
        )
    };
    for round in 0..6 {
        std::thread::sleep(Duration::from_millis(150));
        let wasm: &[u8] = if round % 2 == 0 {
            b""
        } else {
            request_access_host::runtime::PLUGIN_WASM
        };
        let r = reload(wasm);
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    // Something that is not a plugin is refused, and the running one keeps serving.
    let refused = reload(b"\0asm not really");
    assert_eq!(refused.status, 400);
    std::thread::sleep(Duration::from_millis(150));
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().unwrap();
    }
    assert_eq!(failures.load(Ordering::SeqCst), 0, "{}", log(&s.dir));
    assert!(served.load(Ordering::SeqCst) > 50);
    let metrics = {
        let mut r = agent().get(&s.url("/metrics")).call().unwrap();
        r.body_mut().read_to_string().unwrap()
    };
    assert!(
        metrics.contains("request_access_plugin_reloads_total 6"),
        "{metrics}"
    );
    // Every reservation was matched and released: nothing lost, nothing left over.
    assert_eq!(
        get(&s.url("/admin/pools"), Some(TOKEN)).body["groups"][0]["live"],
        0
    );
}

#[test]
fn sigterm_stops_cleanly_and_leaves_a_store_that_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &config(10, 1, ""), None);
    assert_eq!(
        post_form(
            &create_url(&s),
            &[("_id", "s0"), ("_resource_group", "DNIS")]
        )
        .status,
        200
    );
    let status = s.terminate();
    assert!(status.success(), "{status:?}");
    assert!(log(dir.path()).contains("the state store is closed"));
    let s = Server::start(dir.path(), &config(10, 1, ""), Some(TOKEN));
    assert_eq!(
        get(&s.url("/admin/pools"), Some(TOKEN)).body["groups"][0]["live"],
        1
    );
}

#[test]
fn wrong_codes_over_http_revoke_the_reservation_at_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        dir.path(),
        &config(10, 1, "[options]\nmax_code_attempts = 3\n"),
        Some(TOKEN),
    );
    let created = post_form(
        &create_url(&s),
        &[
            ("_id", "s0"),
            ("_resource_group", "DNIS"),
            ("_provide_code", "true"),
        ],
    );
    let number = created.body["_access_number"].as_str().unwrap().to_string();
    let code = created.body["_access_code"].as_str().unwrap().to_string();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let attempt = |c: &str| {
        post_form(
            &match_url(&s),
            &[("_access_number", &number), ("_access_code", c)],
        )
    };
    for _ in 0..2 {
        let r = attempt(wrong);
        assert_eq!((r.status, r.body["code"].as_str()), (404, Some("no-match")));
    }
    let revoked = attempt(wrong);
    assert_eq!(
        (revoked.status, revoked.body["code"].as_str()),
        (404, Some("too-many-attempts"))
    );
    // Revoked: the right code no longer matches, and the number is back in the pool.
    let late = attempt(&code);
    assert_eq!(
        (late.status, late.body["code"].as_str()),
        (404, Some("no-match"))
    );
    assert_eq!(
        get(&s.url("/admin/pools"), Some(TOKEN)).body["groups"][0]["live"],
        0
    );
}

#[test]
fn sighup_reloads_the_plugin_and_the_service_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &config(10, 1, ""), None);
    let reloads = || {
        let mut r = agent().get(&s.url("/metrics")).call().unwrap();
        let text = r.body_mut().read_to_string().unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("request_access_plugin_reloads_total "))
            .map(str::to_string)
    };
    assert_eq!(reloads().as_deref(), Some("0"));
    std::process::Command::new("kill")
        .args(["-HUP", &s.child.id().to_string()])
        .status()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while reloads().as_deref() != Some("1") {
        assert!(
            std::time::Instant::now() < deadline,
            "no reload after SIGHUP: {}",
            log(&s.dir)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let created = post_form(
        &create_url(&s),
        &[("_id", "s0"), ("_resource_group", "DNIS")],
    );
    assert_eq!(created.status, 200);
}

#[test]
fn a_page_heartbeat_extends_its_reservation_over_http_and_a_sliding_group_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let sliding = "[[resource_group]]\nname = \"SESSION\"\nsliding_expiry = true\n\
                   numbers = [\"5559000\"]\n";
    let s = Server::start(dir.path(), &config(2, 3, sliding), None);
    let extend_url = s.url("/genesys/1/service/extend-access");
    let created = post_form(
        &create_url(&s),
        &[
            ("_id", "s0"),
            ("_resource_group", "DNIS"),
            ("_booking_expiration_timeout", "10"),
        ],
    );
    assert_eq!(created.status, 200, "{:?}", created.body);
    let number = created.body["_access_number"].as_str().unwrap().to_string();

    let extended = post_raw(
        &extend_url,
        "application/json",
        r#"{"_id":"s0","_resource_group":"DNIS","_booking_expiration_timeout":600}"#,
    );
    assert_eq!(extended.status, 200, "{:?}", extended.body);
    assert_eq!(extended.body["_access_number"], number.as_str());
    assert_eq!(extended.body["_expiration_time"], 600);
    assert_eq!(extended.body["_lifetime_capped"], false);
    assert!(
        extended.body["_expires_at"].as_str().unwrap()
            > created.body["_expires_at"].as_str().unwrap()
    );

    // Refusals name their field or their cause, as every route's do.
    let short = post_form(
        &extend_url,
        &[
            ("_id", "s0"),
            ("_resource_group", "DNIS"),
            ("_booking_expiration_timeout", "4"),
        ],
    );
    assert_eq!(
        (short.status, short.body["field"].as_str()),
        (400, Some("_booking_expiration_timeout"))
    );
    let nameless = post_form(&extend_url, &[("_resource_group", "DNIS")]);
    assert_eq!(
        (nameless.status, nameless.body["field"].as_str()),
        (400, Some("_id"))
    );
    let unknown = post_form(&extend_url, &[("_id", "s0"), ("_resource_group", "NOPE")]);
    assert_eq!(
        (unknown.status, unknown.body["code"].as_str()),
        (400, Some("unknown-resource-group"))
    );
    let none_held = post_form(&extend_url, &[("_id", "s1"), ("_resource_group", "DNIS")]);
    assert_eq!(
        (none_held.status, none_held.body["code"].as_str()),
        (404, Some("no-match"))
    );

    // A sliding group: each matched call keeps the number for the session.
    let session = post_form(
        &create_url(&s),
        &[("_id", "s1"), ("_resource_group", "SESSION")],
    );
    assert_eq!(session.status, 200, "{:?}", session.body);
    for _ in 0..2 {
        let call = post_form(&match_url(&s), &[("_access_number", "5559000")]);
        assert_eq!(
            (call.status, &call.body),
            (200, &serde_json::json!({"_id": "s1"}))
        );
    }
    let crowded = post_form(
        &create_url(&s),
        &[("_id", "s2"), ("_resource_group", "SESSION")],
    );
    assert_eq!(
        (crowded.status, crowded.body["code"].as_str()),
        (503, Some("no-access-number-available"))
    );
    let released = post_form(
        &s.url("/genesys/1/service/release-access"),
        &[("_id", "s1"), ("_resource_group", "SESSION")],
    );
    assert_eq!(released.body["_access_number"], "5559000");
}

#[test]
fn a_service_over_its_rate_is_answered_429_with_retry_after_and_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let limited = "[server]\nservice_rate_limit = 2\nservice_rate_burst = 2\n";
    let s = Server::start(dir.path(), &config(10, 3, limited), None);
    let ask = |id: &str| post_form(&create_url(&s), &[("_id", id), ("_resource_group", "DNIS")]);
    assert_eq!(ask("s0").status, 200);
    assert_eq!(ask("s0").status, 200);
    let refused = ask("s0");
    assert_eq!(
        (
            refused.status,
            refused.body["code"].as_str(),
            refused.body["field"].as_str()
        ),
        (429, Some("rate-limited"), Some("_id"))
    );
    // Two a minute: the next in about thirty seconds.
    let wait: u64 = refused.retry_after.as_deref().unwrap().parse().unwrap();
    assert!((1..=30).contains(&wait), "{wait}");
    // Extensions and releases count too; other services and matches do not.
    let extend = post_form(
        &s.url("/genesys/1/service/extend-access"),
        &[("_id", "s0"), ("_resource_group", "DNIS")],
    );
    assert_eq!(extend.status, 429);
    // Refused before the plugin: nothing changed, s0 still holds the one number it has.
    let other = post_form(
        &create_url(&s),
        &[
            ("_id", "s1"),
            ("_resource_group", "DNIS"),
            ("_return_pool_health", "true"),
        ],
    );
    assert_eq!(other.status, 200, "{:?}", other.body);
    assert_eq!(other.body["_pool_health"]["live"], 2);
    // The contact center's calls are never limited: each is answered on its merits.
    let number = ask("s2").body["_access_number"]
        .as_str()
        .unwrap()
        .to_string();
    let statuses: Vec<u16> = (0..5)
        .map(|_| post_form(&match_url(&s), &[("_access_number", &number)]).status)
        .collect();
    assert_eq!(statuses, [200, 404, 404, 404, 404]);
}
