//! Hostile input over HTTP and the command line: every bad request gets its specific
//! 4xx (or exit code) and message, and none changes any state.

mod common;

use common::*;
use serde_json::Value;

/// One bad request: route, content type, body, expected status, code and field.
struct Case {
    route: &'static str,
    content_type: &'static str,
    body: Vec<u8>,
    status: u16,
    code: &'static str,
    field: Option<&'static str>,
    token: Option<&'static str>,
}

fn form(
    route: &'static str,
    body: &str,
    status: u16,
    code: &'static str,
    field: Option<&'static str>,
) -> Case {
    let form = "application/x-www-form-urlencoded";
    raw(route, form, body.as_bytes(), status, code, field)
}

fn raw(
    route: &'static str,
    content_type: &'static str,
    body: &[u8],
    status: u16,
    code: &'static str,
    field: Option<&'static str>,
) -> Case {
    Case {
        route,
        content_type,
        body: body.to_vec(),
        status,
        code,
        field,
        token: None,
    }
}

const CREATE: &str = "/genesys/1/service/request-access";
const MATCH: &str = "/genesys/1/service/match-interaction";
const RELEASE: &str = "/genesys/1/service/release-access";
const ADMIN: &str = "/admin/services";

fn cases() -> Vec<Case> {
    let timeout = |v: &str| {
        form(
            CREATE,
            &format!("_id=s0&_resource_group=DNIS&_booking_expiration_timeout={v}"),
            400,
            "invalid-parameter",
            Some("_booking_expiration_timeout"),
        )
    };
    let id = |v: &str| {
        form(
            CREATE,
            &format!("_id={v}&_resource_group=DNIS"),
            400,
            "invalid-parameter",
            Some("_id"),
        )
    };
    let phone = |v: &str| {
        form(
            CREATE,
            &format!("_id=s0&_resource_group=DNIS&_phone_number={v}"),
            400,
            "invalid-parameter",
            Some("_phone_number"),
        )
    };
    let multipart = |body: &str| {
        raw(
            CREATE,
            "multipart/form-data; boundary=B",
            body.as_bytes(),
            400,
            "bad-request",
            None,
        )
    };
    let cases = vec![
        // Missing and duplicated parameters.
        form(CREATE, "_resource_group=DNIS", 400, "invalid-parameter", Some("_id")),
        form(CREATE, "_id=s0", 400, "invalid-parameter", Some("_resource_group")),
        form(CREATE, "", 400, "invalid-parameter", Some("_id")),
        form(CREATE, "_id=s0&_id=s1&_resource_group=DNIS", 400, "invalid-parameter", Some("_id")),
        form(CREATE, "_id=s0&_resource_group=DNIS&_resource_group=DNIS", 400, "invalid-parameter", Some("_resource_group")),
        form(CREATE, "_id=s0&_resource_group=DNIS&_provide_code=true&_provide_code=false", 400, "invalid-parameter", Some("_provide_code")),
        // Wrong types.
        form(CREATE, "_id=s0&_resource_group=DNIS&_provide_code=maybe", 400, "invalid-parameter", Some("_provide_code")),
        form(CREATE, "_id=s0&_resource_group=DNIS&_provide_code=1", 400, "invalid-parameter", Some("_provide_code")),
        form(CREATE, "_id=s0&_resource_group=DNIS&_provide_code=", 400, "invalid-parameter", Some("_provide_code")),
        timeout("-1"),
        timeout("4"),
        timeout("0"),
        timeout("1801"),
        timeout("3.5"),
        timeout("1e9"),
        timeout(""),
        timeout("thirty"),
        timeout("%2030"),
        timeout("99999999999999999999"),
        // Bad ids: empty, oversized, control characters, padding, non-UTF-8.
        id(""),
        id(&"x".repeat(257)),
        id("s0%07"),
        id("s0%0A"),
        id("%20s0"),
        id("s0%00"),
        raw(CREATE, "application/x-www-form-urlencoded", b"_id=s%FF0&_resource_group=DNIS", 400, "invalid-parameter", Some("_id")),
        raw(CREATE, "application/x-www-form-urlencoded", b"_id=s\xff0&_resource_group=DNIS", 400, "invalid-parameter", Some("_id")),
        form(CREATE, "_id=s0&_resource_group=%1B[31m", 400, "invalid-parameter", Some("_resource_group")),
        // Look-alikes are other ids or other numbers, never the real ones.
        form(CREATE, "_id=s%D0%BE&_resource_group=DNIS", 403, "service-not-active", Some("_id")), // Cyrillic o
        form(CREATE, "_id=s0&_resource_group=DN%C4%B0S", 400, "unknown-resource-group", Some("_resource_group")),
        phone("%EF%BC%95551234567"), // fullwidth 5
        phone("+1%E2%80%91555%E2%80%911234"), // non-breaking hyphens
        phone("555-CALL-NOW"),
        phone("12"),
        phone(&"1".repeat(16)),
        phone(&format!("+1{}", " ".repeat(40))),
        // Unknown or inactive.
        form(CREATE, "_id=s0&_resource_group=NOPE", 400, "unknown-resource-group", Some("_resource_group")),
        form(CREATE, "_id=stranger&_resource_group=DNIS", 403, "service-not-active", Some("_id")),
        // Content types and malformed bodies.
        raw(CREATE, "text/plain", b"_id=s0&_resource_group=DNIS", 415, "unsupported-media-type", None),
        raw(CREATE, "application/xml", b"<_id>s0</_id>", 415, "unsupported-media-type", None),
        raw(CREATE, "", b"_id=s0", 415, "unsupported-media-type", None),
        raw(CREATE, "application/json", b"{\"_id\": \"s0\",", 400, "bad-request", None),
        raw(CREATE, "application/json", b"[\"s0\"]", 400, "bad-request", None),
        raw(CREATE, "application/json", b"{\"_id\": 7, \"_resource_group\": \"DNIS\"}", 400, "invalid-parameter", Some("_id")),
        raw(CREATE, "application/json", b"{\"_id\": {\"x\": 1}, \"_resource_group\": \"DNIS\"}", 400, "invalid-parameter", Some("_id")),
        raw(CREATE, "application/json", b"{\"_id\": \"s0\", \"_resource_group\": \"DNIS\", \"_provide_code\": \"yes\"}", 400, "invalid-parameter", Some("_provide_code")),
        raw(CREATE, "application/json", b"{\"_id\": \"s0\", \"_resource_group\": \"DNIS\", \"_booking_expiration_timeout\": 30.5}", 400, "invalid-parameter", Some("_booking_expiration_timeout")),
        raw(CREATE, "multipart/form-data", b"--B\r\n", 400, "bad-request", None),
        multipart("--B\r\nContent-Disposition: form-data; name=\"_id\"\r\n\r\ns0"),
        raw(CREATE, "multipart/form-data; boundary=B", b"--B\r\nContent-Disposition: form-data; name=\"_id\"; filename=\"x.txt\"\r\n\r\ns0\r\n--B--\r\n", 400, "invalid-parameter", Some("_id")),
        raw(CREATE, "application/x-www-form-urlencoded", &vec![b'a'; 70_000], 413, "body-too-large", None),
        // match-interaction and release.
        form(MATCH, "_access_code=123456", 400, "invalid-parameter", Some("_access_number")),
        form(MATCH, "_access_number=DNIS-ONE", 400, "invalid-parameter", Some("_access_number")),
        form(MATCH, "_access_number=5550000&_access_code=12ab56", 400, "invalid-parameter", Some("_access_code")),
        form(MATCH, &format!("_access_number=5550000&_access_code={}", "1".repeat(13)), 400, "invalid-parameter", Some("_access_code")),
        form(MATCH, "_access_number=5550000&_phone_number=nobody", 400, "invalid-parameter", Some("_phone_number")),
        form(MATCH, "_access_number=5550000&_return_multiple_matches=perhaps", 400, "invalid-parameter", Some("_return_multiple_matches")),
        form(MATCH, "_access_number=5550000&_access_number=5550001", 400, "invalid-parameter", Some("_access_number")),
        form(MATCH, "_access_number=5559999", 404, "no-match", None),
        form(RELEASE, "_resource_group=DNIS", 400, "invalid-parameter", Some("_id")),
        form(RELEASE, "_id=s0", 400, "invalid-parameter", Some("_resource_group")),
        form(RELEASE, "_id=s1&_resource_group=DNIS", 404, "no-match", None),
        // Admin routes.
        form(ADMIN, "_id=new-one", 401, "unauthorized", None),
        Case { token: Some("wrong-token"), ..form(ADMIN, "_id=new-one", 401, "unauthorized", None) },
        Case { token: Some(TOKEN), ..form(ADMIN, "_id=", 400, "invalid-parameter", Some("_id")) },
        Case { token: Some(TOKEN), ..form(ADMIN, "_id=new-one&_ttl=0", 400, "invalid-parameter", Some("_ttl")) },
        Case { token: Some(TOKEN), ..form(ADMIN, "_id=new-one&_ttl=soon", 400, "invalid-parameter", Some("_ttl")) },
        Case { token: Some(TOKEN), ..form(ADMIN, "_id=new-one&_ttl=", 400, "invalid-parameter", Some("_ttl")) },
        Case { token: Some(TOKEN), ..form(ADMIN, "_id=new-one&_ttl=-5", 400, "invalid-parameter", Some("_ttl")) },
        Case { token: Some(TOKEN), ..form(ADMIN, "_id=new-one&_ttl=4294967296", 400, "invalid-parameter", Some("_ttl")) },
        // A made-up name is echoed escaped: `\u{84}\u{82}\u{12}`.
        raw(CREATE, "application/json", br#"{"_id":"s0","_resource_group":"DNIS","\u0084\u0082\u0012":[1]}"#, 400, "invalid-parameter", Some("\\u{84}\\u{82}\\u{12}")),
        Case { token: Some(TOKEN), ..form(ADMIN, "_id=new%0Aone", 400, "invalid-parameter", Some("_id")) },
    ];
    cases
}

fn state(s: &Server) -> (Value, Value) {
    (
        get(&s.url("/admin/pools"), Some(TOKEN)).body,
        get(&s.url("/admin/services"), Some(TOKEN)).body,
    )
}

#[test]
fn every_bad_http_request_gets_its_4xx_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &config(10, 2, ""), Some(TOKEN));
    // Something to lose: one live reservation with a code.
    let held = post_form(
        &create_url(&s),
        &[
            ("_id", "s0"),
            ("_resource_group", "DNIS"),
            ("_provide_code", "true"),
        ],
    );
    assert_eq!(held.status, 200);
    let before = state(&s);
    let cases = cases();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    eprintln!("{} hostile requests", cases.len());
    for (i, case) in cases.iter().enumerate() {
        let mut request = agent().post(&s.url(case.route));
        if !case.content_type.is_empty() {
            request = request.header("content-type", case.content_type);
        }
        if let Some(token) = case.token {
            request = request.header("authorization", &format!("Bearer {token}"));
        }
        let r = reply(request.send(&case.body[..]).unwrap());
        let what = format!(
            "case {i} {} {:?}: {:?}",
            case.route,
            String::from_utf8_lossy(&case.body[..case.body.len().min(80)]),
            r.body
        );
        assert_eq!(r.status, case.status, "{what}");
        assert_eq!(r.body["code"], case.code, "{what}");
        assert_eq!(r.body["field"].as_str(), case.field, "{what}");
        assert!(
            r.body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}"
        );
        assert_eq!(state(&s), before, "{what} changed the state");
    }
    // Each number of seconds is refused with its own bounds.
    let ttl = reply(
        agent()
            .post(&s.url(ADMIN))
            .header("authorization", &format!("Bearer {TOKEN}"))
            .send_form([("_id", "new-one"), ("_ttl", "-5")])
            .unwrap(),
    );
    assert_eq!(
        ttl.body["message"],
        "_ttl must be a whole number of seconds, 1..=4294967295"
    );
    // The reservation made before is intact.
    let code = held.body["_access_code"].as_str().unwrap();
    let matched = post_form(
        &match_url(&s),
        &[("_access_number", "5550000"), ("_access_code", code)],
    );
    assert_eq!(
        (matched.status, matched.body["_id"].as_str()),
        (200, Some("s0"))
    );
}

#[test]
fn every_bad_command_line_gets_exit_code_2_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.toml"), config(10, 2, "")).unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_request-access"))
            .arg("--config")
            .arg(dir.path().join("config.toml"))
            .arg("--data")
            .arg(dir.path().join("state.redb"))
            .arg("--cache-dir")
            .arg(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache"))
            .args(args)
            .output()
            .unwrap()
    };
    assert!(
        run(&["create", "--id", "s0", "--resource-group", "DNIS"])
            .status
            .success()
    );
    let groups = || String::from_utf8(run(&["groups"]).stdout).unwrap();
    let before = groups();
    for args in [
        &["create", "--id", "", "--resource-group", "DNIS"][..],
        &["create", "--id", "s1\u{7}", "--resource-group", "DNIS"],
        &["create", "--id", "s1", "--resource-group", "NOPE"],
        &[
            "create",
            "--id",
            "s1",
            "--resource-group",
            "DNIS",
            "--booking-expiration-timeout",
            "4",
        ],
        &[
            "create",
            "--id",
            "s1",
            "--resource-group",
            "DNIS",
            "--booking-expiration-timeout",
            "-1",
        ],
        &[
            "create",
            "--id",
            "s1",
            "--resource-group",
            "DNIS",
            "--booking-expiration-timeout",
            "3.5",
        ],
        &[
            "create",
            "--id",
            "s1",
            "--resource-group",
            "DNIS",
            "--phone-number",
            "555-CALL-NOW",
        ],
        &[
            "create",
            "--id",
            "s1",
            "--resource-group",
            "DNIS",
            "--phone-number",
            "\u{ff15}551234567",
        ],
        &["create", "--id", "s1"],
        &["match", "--access-number", "DNIS-ONE"],
        &[
            "match",
            "--access-number",
            "5550000",
            "--access-code",
            "12ab",
        ],
        &["release", "--id", "", "--resource-group", "DNIS"],
        &["services", "register", "bad\nid"],
        &["frobnicate"],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(!out.stderr.is_empty() && out.stdout.is_empty(), "{args:?}");
        assert_eq!(groups(), before, "{args:?} changed the state");
    }
}

#[test]
fn no_access_code_reaches_the_logs_even_at_trace_level() {
    let dir = tempfile::tempdir().unwrap();
    // Twelve-digit codes: no timestamp or counter in a log line can match one by chance.
    let text = config(10, 5, "[options]\naccess_code_length = 12\n");
    let s = Server::start_with_log_level(dir.path(), &text, Some(TOKEN), "trace");
    let mut codes = Vec::new();
    for i in 0..5 {
        let created = post_form(
            &create_url(&s),
            &[
                ("_id", &format!("s{i}")),
                ("_resource_group", "DNIS"),
                ("_provide_code", "true"),
            ],
        );
        assert_eq!(created.status, 200);
        let number = created.body["_access_number"].as_str().unwrap().to_string();
        let code = created.body["_access_code"].as_str().unwrap().to_string();
        // A wrong code (a neighbour of the real one), then the right one, as a caller would.
        let wrong: String = code.chars().rev().collect();
        post_form(
            &match_url(&s),
            &[("_access_number", &number), ("_access_code", &wrong)],
        );
        if i % 2 == 0 {
            let m = post_form(
                &match_url(&s),
                &[("_access_number", &number), ("_access_code", &code)],
            );
            assert_eq!(m.status, 200);
        }
        codes.push(code);
        codes.push(wrong);
    }
    get(&s.url("/metrics"), None);
    get(&s.url("/admin/pools"), Some(TOKEN));
    drop(s);
    let logs = log(dir.path());
    assert!(logs.lines().count() > 20, "trace logging was on:\n{logs}");
    for code in &codes {
        assert!(
            !logs.contains(code.as_str()),
            "an access code is in the logs"
        );
    }
}
