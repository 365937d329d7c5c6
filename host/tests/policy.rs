//! Group policies through the real binary, as clients meet them: a number resting after
//! its reservation ends (over HTTP and the CLI), and a late call matched within the
//! grace window (over HTTP).

mod common;

use std::time::Duration;

use common::*;

const RESTING: &str = "[[resource_group]]\nname = \"DNIS\"\nreuse_cooldown = 3\n\
                       match_grace = 2\nnumbers = [\"5550000\"]\n\
                       [registry]\nservices = [\"s0\", \"s1\"]\n";

fn create(s: &Server, id: &str, extra: &[(&str, &str)]) -> Reply {
    let mut fields = vec![("_id", id), ("_resource_group", "DNIS")];
    fields.extend_from_slice(extra);
    post_form(&create_url(s), &fields)
}

fn free(s: &Server) -> serde_json::Value {
    get(&s.url("/admin/pools"), Some(TOKEN)).body["groups"][0]["free"].clone()
}

#[test]
fn over_http_a_released_number_rests_and_a_late_call_still_matches() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), RESTING, Some(TOKEN));
    assert_eq!(create(&s, "s0", &[]).status, 200);
    let released = post_form(
        &s.url("/genesys/1/service/release-access"),
        &[("_id", "s0"), ("_resource_group", "DNIS")],
    );
    assert_eq!(released.status, 200);
    assert_eq!(free(&s), 0, "resting is not free");
    let refused = create(&s, "s1", &[]);
    assert_eq!(refused.status, 503, "{:?}", refused.body);
    assert_eq!(refused.body["code"], "no-access-number-available");
    std::thread::sleep(Duration::from_millis(3_100));
    assert_eq!(free(&s), 1);
    let lent = create(&s, "s1", &[("_booking_expiration_timeout", "5")]);
    assert_eq!(lent.status, 200, "{:?}", lent.body);

    // The caller dialled in time; the call arrives a second after the expiry.
    std::thread::sleep(Duration::from_millis(6_000));
    let dial = [("_access_number", "5550000")];
    let matched = post_form(&match_url(&s), &dial);
    assert_eq!(matched.status, 200, "{:?}", matched.body);
    assert_eq!(matched.body["_id"], "s1");
    assert_eq!(post_form(&match_url(&s), &dial).status, 404);
}

#[test]
fn over_http_a_call_after_the_grace_window_does_not_match() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), RESTING, Some(TOKEN));
    let lent = create(&s, "s0", &[("_booking_expiration_timeout", "5")]);
    assert_eq!(lent.status, 200);
    std::thread::sleep(Duration::from_millis(7_500));
    let late = post_form(&match_url(&s), &[("_access_number", "5550000")]);
    assert_eq!(late.status, 404, "{:?}", late.body);
}

#[test]
fn a_configuration_whose_grace_outlasts_its_cool_off_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = "[options]\nreuse_cooldown = 10\nmatch_grace = 20\n\
                [[resource_group]]\nname = \"DNIS\"\nnumbers = [\"5550000\"]\n";
    std::fs::write(dir.path().join("config.toml"), text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_request-access"))
        .arg("--config")
        .arg(dir.path().join("config.toml"))
        .arg("--data")
        .arg(dir.path().join("state.redb"))
        .arg("groups")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("config.toml:3: options.match_grace: match_grace 20 s exceeds"),
        "{stderr}"
    );
}
