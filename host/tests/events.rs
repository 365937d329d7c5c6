//! Events to the operator's systems, through the real binary: a signed webhook to a real
//! HTTP receiver on a loopback port (one that answers, one that is down and comes back,
//! one too slow to answer in time), the `/admin/events` stream read as a browser's
//! EventSource reads it, and the interaction log over HTTP and the CLI. No call waits
//! for a receiver, and no event is lost while it comes back within the retry window.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::webhook::{Receiver, SECRET};
use common::*;
use request_access_host::events::signature;
use serde_json::Value;

fn config(port: u16, extra: &str) -> String {
    common::config(
        3,
        3,
        &format!(
            "[events]\nwebhook_url = \"http://127.0.0.1:{port}/hooks\"\n\
             webhook_secret = \"{SECRET}\"\nwebhook_timeout_ms = 500\nstream = true\n\
             log_retention = 3600\nmax_backoff_ms = 1000\n{extra}"
        ),
    )
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

fn create(s: &Server, id: &str) -> Reply {
    post_form(
        &create_url(s),
        &[
            ("_id", id),
            ("_resource_group", "DNIS"),
            ("_provide_code", "true"),
            ("_phone_number", "+14155550123"),
        ],
    )
}

#[test]
fn every_event_reaches_the_webhook_signed_in_order_and_the_log_keeps_it() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let receiver = Receiver::start(listener);
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &config(port, ""), Some(TOKEN));

    let created = create(&s, "s0");
    assert_eq!(created.status, 200, "{:?}", created.body);
    let number = created.body["_access_number"].as_str().unwrap().to_string();
    let code = created.body["_access_code"].as_str().unwrap().to_string();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    post_form(
        &match_url(&s),
        &[("_access_number", &number), ("_access_code", wrong)],
    );
    let matched = post_form(
        &match_url(&s),
        &[("_access_number", &number), ("_access_code", &code)],
    );
    assert_eq!(matched.status, 200);
    // The caller who dials a number nobody holds is the one who is misrouted.
    let stray = post_form(
        &match_url(&s),
        &[
            ("_access_number", "5550002"),
            ("_phone_number", "+14155559999"),
        ],
    );
    assert_eq!(stray.status, 404);

    let events = receiver.wait_for(4, Duration::from_secs(20));
    assert_eq!(
        types(&events),
        [
            "reservation.created",
            "call.wrong_code",
            "call.matched",
            "call.unreserved"
        ],
        "{events:?}"
    );
    assert_eq!(events[0]["_id"], "s0");
    assert_eq!(events[0]["_access_number"], number.as_str());
    assert_eq!(events[0]["caller"], "14155550123");
    assert_eq!(events[3]["_access_number"], "5550002");
    assert_eq!(events[3]["_resource_group"], "DNIS");
    assert_eq!(events[3]["caller"], "14155559999");
    for delivery in receiver.got.lock().unwrap().iter() {
        let timestamp: u64 = delivery.timestamp.parse().unwrap();
        assert_eq!(
            delivery.signature,
            signature(SECRET, timestamp, delivery.body.as_bytes())
        );
        assert!(
            !delivery.body.contains(&code),
            "a code in {}",
            delivery.body
        );
    }

    // The interaction log: what happened to the number, over HTTP and the CLI.
    let log = get(
        &s.url(&format!("/admin/interactions?number={number}")),
        Some(TOKEN),
    );
    assert_eq!(log.status, 200, "{:?}", log.body);
    let logged: Vec<Value> = log.body["events"].as_array().unwrap().clone();
    assert_eq!(
        types(&logged),
        ["reservation.created", "call.wrong_code", "call.matched"]
    );
    assert!(!log.body.to_string().contains(&code));
    let refused = get(&s.url("/admin/interactions?number=abc"), Some(TOKEN));
    assert_eq!(
        (refused.status, refused.body["field"].as_str()),
        (400, Some("number"))
    );
    let unauthorized = get(
        &s.url(&format!("/admin/interactions?number={number}")),
        None,
    );
    assert_eq!(unauthorized.status, 401);
}

#[test]
fn a_receiver_that_is_down_then_slow_slows_no_call_and_loses_no_event() {
    // A port nobody listens on yet.
    let port = {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &config(port, ""), Some(TOKEN));
    // Six creates and releases while the receiver is down: each answered at once.
    let mut slowest = Duration::ZERO;
    for round in 0..3 {
        for id in ["s0", "s1"] {
            let started = Instant::now();
            assert_eq!(create(&s, id).status, 200, "round {round}");
            slowest = slowest.max(started.elapsed());
        }
    }
    assert!(
        slowest < Duration::from_secs(2),
        "a create took {slowest:?}"
    );
    std::thread::sleep(Duration::from_secs(3));

    // It comes back, too slow at first (every delivery times out and is retried), then
    // answering: every event arrives, in order, none twice once repeats are told apart.
    let receiver = Receiver::start(TcpListener::bind(("127.0.0.1", port)).unwrap());
    receiver.delay_ms.store(1500, Ordering::Relaxed);
    let started = Instant::now();
    assert_eq!(create(&s, "s2").status, 200);
    assert!(started.elapsed() < Duration::from_secs(2));
    std::thread::sleep(Duration::from_secs(3));
    receiver.delay_ms.store(0, Ordering::Relaxed);
    let events = receiver.wait_for(11, Duration::from_secs(60));
    let expected: Vec<&str> = std::iter::once("reservation.created")
        .chain(std::iter::once("reservation.created"))
        .chain((0..2).flat_map(|_| ["reservation.replaced", "reservation.created"]))
        .chain((0..2).flat_map(|_| ["reservation.replaced", "reservation.created"]))
        .chain(std::iter::once("reservation.created"))
        .collect();
    assert_eq!(types(&events), expected, "{events:?}");
    // The slow spell made deliveries time out, and they were made again.
    assert!(receiver.got.lock().unwrap().len() > events.len());
    let ids: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "delivered in the order they happened");
}

#[test]
fn the_event_stream_shows_what_happens_as_an_event_source_reads_it() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &config(port, ""), Some(TOKEN));
    let address = s.base.strip_prefix("http://").unwrap().to_string();
    let mut stream = TcpStream::connect(&address).unwrap();
    write!(
        stream,
        "GET /admin/events HTTP/1.1\r\nhost: {address}\r\nauthorization: Bearer {TOKEN}\r\n\
         accept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    assert!(status.contains("200"), "{status}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(create(&s, "s1").status, 200);
    let released = post_form(
        &s.url("/genesys/1/service/release-access"),
        &[("_id", "s1"), ("_resource_group", "DNIS")],
    );
    assert_eq!(released.status, 200);
    let mut seen = Vec::new();
    let mut line = String::new();
    while seen.len() < 2 {
        line.clear();
        if reader.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if let Some(kind) = line.trim().strip_prefix("event: ") {
            seen.push(kind.to_string());
        }
    }
    assert_eq!(seen, ["reservation.created", "reservation.released"]);

    // Without a token, no stream.
    assert_eq!(get(&s.url("/admin/events"), None).status, 401);
}

#[test]
fn the_cli_reads_the_interaction_log() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cli = Cli::new(Some(&config(port, "")));
    let created = cli.json(&["create", "--id", "s0", "--resource-group", "DNIS"]);
    let number = created["_access_number"].as_str().unwrap();
    cli.json(&["release", "--id", "s0", "--resource-group", "DNIS"]);
    let log = cli.json(&["interactions", "--number", number]);
    assert_eq!(
        types(log["events"].as_array().unwrap()),
        ["reservation.created", "reservation.released"]
    );
    let off = Cli::new(Some(&common::config(3, 3, "")));
    let why = off.fails(&["interactions", "--number", "5550000"], 2);
    assert!(why.contains("log_retention"), "{why}");
}
