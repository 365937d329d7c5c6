//! Group policies through the real binary, as clients meet them: a number resting after
//! its reservation ends (over HTTP and the CLI), and a late call matched within the
//! grace window (over HTTP), `Retry-After` from when a number becomes lendable, a
//! group that lends from its fallback group when exhausted, a sticky group lending a
//! caller their last number again, numbers shared by code (over HTTP and the CLI), and
//! a caller lent a number of their own area code.

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
    // The only number rests 3 s from its release: that is when to come back.
    assert_eq!(refused.retry_after.as_deref(), Some("3"));
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
    let cli = Cli::new(Some(
        "[options]\nreuse_cooldown = 10\nmatch_grace = 20\n\
         [[resource_group]]\nname = \"DNIS\"\nnumbers = [\"5550000\"]\n",
    ));
    let stderr = cli.fails(&["groups"], 1);
    assert!(
        stderr.contains("config.toml:3: options.match_grace: match_grace 20 s exceeds"),
        "{stderr}"
    );
}

const FALLING_BACK: &str = "[[resource_group]]\nname = \"DNIS\"\nfallback_group = \"SHARED\"\n\
                            numbers = [\"5550000\"]\n\
                            [[resource_group]]\nname = \"SHARED\"\n\
                            numbers = [\"5559000..5559001\"]\n\
                            [registry]\nservices = [\"s0\", \"s1\", \"s2\", \"s3\"]\n";

#[test]
fn over_http_an_exhausted_group_lends_from_its_fallback_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), FALLING_BACK, Some(TOKEN));
    let own = create(&s, "s0", &[]);
    assert_eq!(own.status, 200, "{:?}", own.body);
    assert_eq!(own.body["_resource_group"], "DNIS");
    assert_eq!(own.body["_access_number"], "5550000");
    let borrowed = create(&s, "s1", &[("_provide_code", "true")]);
    assert_eq!(borrowed.status, 200, "{:?}", borrowed.body);
    assert_eq!(borrowed.body["_resource_group"], "SHARED");
    assert_eq!(borrowed.body["_access_number"], "5559000");

    // The caller's call lands as any other; the number goes back to SHARED.
    let code = borrowed.body["_access_code"].as_str().unwrap();
    let matched = post_form(
        &match_url(&s),
        &[("_access_number", "5559000"), ("_access_code", code)],
    );
    assert_eq!(matched.status, 200, "{:?}", matched.body);
    assert_eq!(matched.body["_id"], "s1");

    // A service releases what it got from the group it asked for.
    let s2 = create(&s, "s2", &[]);
    assert_eq!(s2.body["_resource_group"], "SHARED");
    let released = post_form(
        &s.url("/genesys/1/service/release-access"),
        &[("_id", "s2"), ("_resource_group", "DNIS")],
    );
    assert_eq!(released.status, 200, "{:?}", released.body);
    assert_eq!(released.body["_access_number"], s2.body["_access_number"]);

    // Everything held for 30 s: both pools are exhausted, and the refusal says when the
    // first reservation expires.
    for id in ["s1", "s2"] {
        let lent = create(&s, id, &[("_booking_expiration_timeout", "30")]);
        assert_eq!(lent.body["_resource_group"], "SHARED");
    }
    let refused = create(&s, "s3", &[]);
    assert_eq!(refused.status, 503, "{:?}", refused.body);
    assert_eq!(refused.body["code"], "no-access-number-available");
    let after: u32 = refused.retry_after.as_deref().unwrap().parse().unwrap();
    assert!((29..=30).contains(&after), "Retry-After {after}");
}

#[test]
fn over_the_cli_a_fallback_lend_names_its_group_and_exhaustion_says_when_to_return() {
    let cli = Cli::new(Some(FALLING_BACK));
    let lend = |id: &str| cli.json(&["create", "--id", id, "--resource-group", "DNIS"]);
    assert_eq!(lend("s0")["_resource_group"], "DNIS");
    assert_eq!(lend("s1")["_resource_group"], "SHARED");
    assert_eq!(lend("s2")["_resource_group"], "SHARED");
    let refused = cli.fails(&["create", "--id", "s3", "--resource-group", "DNIS"], 4);
    assert!(
        refused.contains("no access number available in resource group \"DNIS\"")
            && refused.contains("a number is known to become lendable in "),
        "{refused}"
    );
}

const STICKY: &str = "[[resource_group]]\nname = \"DNIS\"\nsticky = true\nreuse_cooldown = 60\n\
                      numbers = [\"5550000..5550002\"]\n\
                      [registry]\nservices = [\"s0\", \"s1\", \"s2\", \"s3\"]\n";

#[test]
fn over_http_a_sticky_group_lends_a_caller_their_last_number_despite_the_cool_off() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), STICKY, Some(TOKEN));
    let caller = ("_phone_number", "+1 (555) 777-0001");
    let first = create(&s, "s0", &[caller]);
    assert_eq!(first.status, 200, "{:?}", first.body);
    let mine = first.body["_access_number"].clone();
    let matched = post_form(
        &match_url(&s),
        &[("_access_number", mine.as_str().unwrap())],
    );
    assert_eq!(matched.body["_id"], "s0");

    // The number rests for a minute: another caller gets another one...
    let other = create(&s, "s1", &[("_phone_number", "+15557770002")]);
    assert_ne!(other.body["_access_number"], mine);
    // ...but the same caller (the digits compared) gets theirs back at once.
    let again = create(&s, "s2", &[("_phone_number", "+15557770001")]);
    assert_eq!(again.status, 200, "{:?}", again.body);
    assert_eq!(again.body["_access_number"], mine);
    let pools = get(&s.url("/admin/pools"), Some(TOKEN)).body;
    assert_eq!(pools["groups"][0]["free"], 1, "{pools}");
}

#[test]
fn over_the_cli_a_sticky_group_remembers_across_invocations() {
    let cli = Cli::new(Some(STICKY));
    let lend = |id: &str, caller: &str| {
        let args = [
            "create",
            "--id",
            id,
            "--resource-group",
            "DNIS",
            "--phone-number",
            caller,
        ];
        cli.json(&args)["_access_number"].clone()
    };
    let mine = lend("s0", "+15557770001");
    cli.json(&["release", "--id", "s0", "--resource-group", "DNIS"]);
    assert_ne!(lend("s1", "+15557770002"), mine);
    assert_eq!(lend("s2", "+15557770001"), mine);
}

const SHARED: &str = "[[resource_group]]\nname = \"DNIS\"\nreservations_per_number = 3\n\
                      wrong_code_limit = 3\nwrong_code_window = 600\n\
                      numbers = [\"5550000..5550001\"]\n\
                      [registry]\nservices = [\"s0\", \"s1\", \"s2\", \"s3\", \"s4\", \"s5\", \"s6\"]\n";

#[test]
fn over_http_two_shared_numbers_serve_six_services_each_matched_by_its_code() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), SHARED, Some(TOKEN));
    let mut lent = Vec::new();
    for i in 0..6 {
        let id = format!("s{i}");
        let reply = create(&s, &id, &[]);
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        // No `_provide_code`, and no caller to tell it apart: a code all the same.
        let code = reply.body["_access_code"].as_str().unwrap().to_string();
        let number = reply.body["_access_number"].as_str().unwrap().to_string();
        lent.push((id, number, code));
    }
    let on = |n: &str| lent.iter().filter(|(_, number, _)| number == n).count();
    assert_eq!((on("5550000"), on("5550001")), (3, 3));
    let refused = create(&s, "s6", &[]);
    assert_eq!(refused.status, 503, "{:?}", refused.body);
    assert_eq!(free(&s), 0);

    // Each call lands on its own service: the number and the code.
    for (id, number, code) in &lent[..5] {
        let dial = [("_access_number", number.as_str()), ("_access_code", code)];
        let matched = post_form(&match_url(&s), &dial);
        assert_eq!(matched.status, 200, "{:?}", matched.body);
        assert_eq!(&matched.body["_id"], id);
    }
    // A caller named by the create needs no code: the number and the caller's number.
    let known = create(&s, "s6", &[("_phone_number", "+1 555 777 0001")]);
    assert_eq!(known.status, 200, "{:?}", known.body);
    assert!(known.body.get("_access_code").is_none(), "{:?}", known.body);
    let number = known.body["_access_number"].as_str().unwrap();
    let from = |caller: &str| {
        post_form(
            &match_url(&s),
            &[("_access_number", number), ("_phone_number", caller)],
        )
    };
    assert_eq!(from("+15557770002").status, 404);
    let matched = from("+15557770001");
    assert_eq!(matched.status, 200, "{:?}", matched.body);
    assert_eq!(matched.body["_id"], "s6");
}

#[test]
fn over_http_wrong_codes_shut_a_shared_number_without_revoking_anything() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), SHARED, Some(TOKEN));
    let lent = create(&s, "s0", &[]);
    let number = lent.body["_access_number"].as_str().unwrap().to_string();
    let code = lent.body["_access_code"].as_str().unwrap().to_string();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let dial = |code: &str| {
        post_form(
            &match_url(&s),
            &[("_access_number", number.as_str()), ("_access_code", code)],
        )
    };
    assert_eq!(dial(wrong).body["code"], "no-match");
    assert_eq!(dial(wrong).body["code"], "no-match");
    let third = dial(wrong);
    assert_eq!(third.status, 404);
    assert_eq!(third.body["code"], "too-many-attempts");
    // The right code is refused for the rest of the window; the reservation stands.
    assert_eq!(dial(&code).body["code"], "too-many-attempts");
    let pools = get(&s.url("/admin/pools"), Some(TOKEN)).body;
    assert_eq!(pools["groups"][0]["free"], 2, "{pools}");
    let released = post_form(
        &s.url("/genesys/1/service/release-access"),
        &[("_id", "s0"), ("_resource_group", "DNIS")],
    );
    assert_eq!(released.status, 200, "{:?}", released.body);
    // The codes never reach the log.
    drop(s);
    let log = log(dir.path());
    assert!(!log.contains(&code), "the access code is in the log");
}

#[test]
fn over_the_cli_a_shared_number_is_lent_twice_and_matched_by_code() {
    let cli = Cli::new(Some(
        "[[resource_group]]\nname = \"DNIS\"\nreservations_per_number = 2\n\
         numbers = [\"5550000\"]\n[registry]\nservices = [\"s0\", \"s1\", \"s2\"]\n",
    ));
    let lend = |id: &str| cli.json(&["create", "--id", id, "--resource-group", "DNIS"]);
    let (first, second) = (lend("s0"), lend("s1"));
    assert_eq!(first["_access_number"], "5550000");
    assert_eq!(second["_access_number"], "5550000");
    assert_ne!(first["_access_code"], second["_access_code"]);
    let refused = cli.fails(&["create", "--id", "s2", "--resource-group", "DNIS"], 4);
    assert!(refused.contains("no access number available"), "{refused}");
    let code = second["_access_code"].as_str().unwrap();
    let matched = cli.json(&["match", "--access-number", "5550000", "--access-code", code]);
    assert_eq!(matched["_id"], "s1");
    assert_eq!(lend("s2")["_access_number"], "5550000");
}

#[test]
fn over_the_cli_guessable_shared_numbers_are_refused() {
    let cli = Cli::new(Some(
        "[options]\naccess_code_length = 4\n\
         [[resource_group]]\nname = \"DNIS\"\nreservations_per_number = 20\n\
         numbers = [\"5550000\"]\n",
    ));
    let stderr = cli.fails(&["groups"], 1);
    assert!(
        stderr.contains(
            "config.toml:5: resource_group.reservations_per_number: 20 reservations per \
             number with 4-digit codes let a guessed code match with odds of 20 in 10000"
        ),
        "{stderr}"
    );
}

#[test]
fn over_http_a_caller_is_lent_a_number_of_their_own_area_code() {
    let dir = tempfile::tempdir().unwrap();
    let local = "[[resource_group]]\nname = \"DNIS\"\nprefer_caller_prefix = 4\n\
                 numbers = [\"+14155550100..+14155550102\", \"+12125550100..+12125550102\"]\n\
                 [registry]\nservices = [\"s0\", \"s1\", \"s2\", \"s3\"]\n";
    let s = Server::start(dir.path(), local, Some(TOKEN));
    let number = |id: &str, caller: &str| {
        let r = create(&s, id, &[("_phone_number", caller)]);
        assert_eq!(r.status, 200, "{:?}", r.body);
        r.body["_access_number"].as_str().unwrap().to_string()
    };
    // New York callers get 212 numbers although the 415 ones come first on the ring.
    assert!(number("s0", "+1 212 555 0199").starts_with("+1212"));
    assert!(number("s1", "+12125550142").starts_with("+1212"));
    // A San Francisco caller gets a 415 one; a caller from elsewhere, whatever is next.
    assert!(number("s2", "+14155550123").starts_with("+1415"));
    assert!(number("s3", "+13125550123").starts_with("+1"));
}
