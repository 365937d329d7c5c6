//! The configuration as the file gives it: defaults, keys, and the refusals' texts.

use std::time::Duration;

use request_access_guest::api::{LeasePolicy, Policy, Strategy};

use super::*;

fn error(text: &str) -> String {
    Config::parse(text, "c.toml").unwrap_err().to_string()
}

#[test]
fn the_embedded_default_has_one_group_of_ten() {
    let c = Config::embedded();
    assert_eq!(c.groups.len(), 1);
    let dnis = c.group("DNIS").unwrap();
    assert_eq!(dnis.pool.size(), 10);
    assert_eq!(dnis.strategy, Strategy::RoundRobin);
    assert_eq!(c.options.access_code_length, 6);
    assert_eq!(c.options.max_code_attempts, 5);
}

#[test]
fn defaults_apply_to_missing_options() {
    let c = Config::parse(
        "[[resource_group]]\nname = \"G\"\nnumbers = [\"5551000\"]\n",
        "c",
    )
    .unwrap();
    assert_eq!(c.options.access_code_length, 6);
    assert_eq!(c.options.booking_expiration_timeout, 30);
    assert_eq!(c.options.max_code_attempts, 5);
    assert_eq!(c.group("G").unwrap().booking_expiration_timeout, None);
}

#[test]
fn the_documented_example_parses() {
    let c = Config::parse(
        r#"
[options]
access_code_length = 6
booking_expiration_timeout = 60
max_code_attempts = 5

[[resource_group]]
name = "DNIS"
strategy = "round-robin"
booking_expiration_timeout = 30
numbers = ["+18005550100..+18005550199", "+18005550300"]

[registry]
services = ["static-service-1"]
"#,
        "c",
    )
    .unwrap();
    assert_eq!(c.group("DNIS").unwrap().pool.size(), 101);
    assert_eq!(
        c.group("DNIS").unwrap().booking_expiration_timeout,
        Some(30)
    );
    assert!(c.static_services.contains("static-service-1"));
}

#[test]
fn errors_name_file_line_and_key() {
    let e = error("[options]\n\naccess_code_length = 3\n");
    assert!(e.starts_with("c.toml:3:"), "{e}");
    assert!(
        e.contains("access_code_length must be 4..=12, got 3"),
        "{e}"
    );

    let e = error("[options]\nbooking_expiration_timeout = 1801\n");
    assert!(
        e.starts_with("c.toml:2:") && e.contains("booking_expiration_timeout"),
        "{e}"
    );

    let e = error("[options]\ncolour = 1\n");
    assert!(e.starts_with("c.toml:2:") && e.contains("colour"), "{e}");

    let e =
        error("[[resource_group]]\nname = \"G\"\nstrategy = \"lifo\"\nnumbers = [\"5551000\"]\n");
    assert!(e.starts_with("c.toml:3:") && e.contains("lifo"), "{e}");
    assert!(
        e.contains("strategy") && e.contains("`round-robin` or `random`"),
        "{e}"
    );

    // The endpoints the service calls out to are http(s) URLs, each refused by its key.
    let e = error("[registry]\nurl = \"ftp://registry\"\n");
    assert!(
        e.starts_with("c.toml:2:") && e.contains("registry.url: must be an http:// or https://"),
        "{e}"
    );
    let e = error("[events]\nwebhook_url = \"file:///tmp/x\"\nwebhook_secret = \"s\"\n");
    assert!(
        e.starts_with("c.toml:2:")
            && e.contains("events.webhook_url: must be an http:// or https://"),
        "{e}"
    );

    let e = error("[[resource_group]]\nname = \"G\"\nnumbers = [\n  \"5551000\",\n  \"55x\",\n]\n");
    assert!(
        e.starts_with("c.toml:5:") && e.contains("resource_group.numbers"),
        "{e}"
    );

    let e = error("[[resource_group]]\nname = \"G\"\nnumbers = []\n");
    assert!(e.contains("at least one number"), "{e}");
}

#[test]
fn a_number_belongs_to_one_group_once() {
    let e = error(
        "[[resource_group]]\nname = \"A\"\nnumbers = [\"5551000..5551009\"]\n\
             [[resource_group]]\nname = \"B\"\nnumbers = [\"5551009\"]\n",
    );
    assert!(e.starts_with("c.toml:6:") && e.contains("overlaps"), "{e}");
    let e = error(
        "[[resource_group]]\nname = \"A\"\nnumbers = [\"5551000\"]\n\
             [[resource_group]]\nname = \"A\"\nnumbers = [\"5551001\"]\n",
    );
    assert!(e.contains("defined twice"), "{e}");
}

#[test]
fn the_store_section_defaults_to_the_data_file() {
    let c = Config::embedded();
    assert_eq!(c.store, StoreConfig::default());
    assert_eq!(c.store.url, None);
    let c = Config::parse(
        "[store]\nurl = \"redis://u:secret@10.0.0.1:6379/2\"\nprefix = \"east:\"\n\
             command_timeout_ms = 250\nwait_replicas = 1\n",
        "c.toml",
    )
    .unwrap();
    assert_eq!(
        c.store.url.as_deref(),
        Some("redis://u:secret@10.0.0.1:6379/2")
    );
    assert_eq!(c.store.prefix, "east:");
    assert_eq!(c.store.command_timeout, Duration::from_millis(250));
    assert_eq!(c.store.wait_replicas, 1);
    assert!(!format!("{:?}", c.store).contains("secret"));
}

#[test]
fn a_bad_store_section_is_refused_without_echoing_the_url() {
    let e = error("[store]\nurl = \"http://u:secret@host/\"\n");
    assert!(
        e.starts_with("c.toml:2: store.url: must be a redis://"),
        "{e}"
    );
    assert!(!e.contains("secret"), "{e}");
    let e = error("[store]\nprefix = \"{tag}\"\n");
    assert!(e.contains("store.prefix"), "{e}");
    let e = error("[store]\ncommand_timeout_ms = 0\n");
    assert!(
        e.contains("command_timeout_ms must be 10..=60000, got 0"),
        "{e}"
    );
}

#[test]
fn passwords_are_redacted_from_urls() {
    assert_eq!(redact_url("redis://u:pw@h:1/0"), "redis://u:***@h:1/0");
    assert_eq!(redact_url("rediss://:pw@h:1"), "rediss://:***@h:1");
    assert_eq!(redact_url("redis://pw@h"), "redis://***@h");
    assert_eq!(redact_url("redis://h:1/0"), "redis://h:1/0");
    assert_eq!(redact_url("redis://u:p@ss@h/0"), "redis://u:***@h/0");
    assert_eq!(
        redact_url("redis-sentinel://u:pw@h1:26379,h2:26379/main/0"),
        "redis-sentinel://u:***@h1:26379,h2:26379/main/0"
    );
    assert_eq!(
        redact_url("redis-sentinel://:pw@h1,h2/main"),
        "redis-sentinel://:***@h1,h2/main"
    );
}

#[test]
fn cool_off_and_grace_come_from_the_group_or_the_options() {
    let c = Config::parse(
        "[options]\nreuse_cooldown = 60\nmatch_grace = 10\n\
             [[resource_group]]\nname = \"A\"\nnumbers = [\"5551000\"]\n\
             [[resource_group]]\nname = \"B\"\nreuse_cooldown = 0\nmatch_grace = 0\n\
             numbers = [\"5551001\"]\n",
        "c.toml",
    )
    .unwrap();
    let policy = |g: &str| c.group(g).unwrap().policy.clone();
    assert_eq!(
        policy("A"),
        Policy {
            reuse_cooldown: 60,
            match_grace: 10,
            ..Policy::WHOLE
        }
    );
    assert_eq!(policy("B"), Policy::default());
    let c = Config::parse(
        "[[resource_group]]\nname = \"A\"\nnumbers = [\"5551000\"]\n",
        "c",
    )
    .unwrap();
    assert_eq!(c.group("A").unwrap().policy, Policy::default());
}

#[test]
fn shared_numbers_take_their_limits_from_the_group_or_the_options() {
    let c = Config::parse(
        "[options]\nwrong_code_limit = 20\n\
             [[resource_group]]\nname = \"A\"\nreservations_per_number = 10\n\
             numbers = [\"5551000\"]\n\
             [[resource_group]]\nname = \"B\"\nreservations_per_number = 5\n\
             wrong_code_limit = 3\nwrong_code_window = 60\nnumbers = [\"5551001\"]\n\
             [[resource_group]]\nname = \"C\"\nnumbers = [\"5551002\"]\n",
        "c.toml",
    )
    .unwrap();
    let policy = |g: &str| c.group(g).unwrap().policy.clone();
    let limits = |p: Policy| {
        (
            p.reservations_per_number,
            p.wrong_code_limit,
            p.wrong_code_window,
        )
    };
    assert_eq!(limits(policy("A")), (10, 20, 3600));
    assert_eq!(limits(policy("B")), (5, 3, 60));
    // Numbers lent whole: no wrong-code window, and the 0.1.0 policy.
    assert_eq!(policy("C"), Policy::WHOLE);
    // The fingerprint changes with the count, so that a new count builds a new ring.
    let a = c.group("A").unwrap();
    assert_ne!(a.info().pool_id, a.pool.id());
    assert_eq!(
        c.group("C").unwrap().info().pool_id,
        c.group("C").unwrap().pool.id()
    );
    let e = error(
        "[[resource_group]]\nname = \"A\"\nreservations_per_number = 101\nnumbers = [\"5551000\"]\n",
    );
    assert!(
        e.contains("reservations_per_number must be 1..=100, got 101"),
        "{e}"
    );
    let e = error("[options]\nwrong_code_window = 0\n");
    assert!(
        e.contains("wrong_code_window must be 1..=86400, got 0"),
        "{e}"
    );
}

#[test]
fn guessing_odds_above_one_in_a_thousand_are_refused() {
    let shared = |length: u8, seats: u32| {
        format!(
            "[options]\naccess_code_length = {length}\n\
                 [[resource_group]]\nname = \"A\"\nreservations_per_number = {seats}\n\
                 numbers = [\"5551000\"]\n"
        )
    };
    // 10 codes of 4 digits: 1 in 1,000, the most allowed.
    assert!(Config::parse(&shared(4, 10), "c.toml").is_ok());
    assert_eq!(
        error(&shared(4, 11)),
        "c.toml:5: resource_group.reservations_per_number: 11 reservations per number \
             with 4-digit codes let a guessed code match with odds of 11 in 10000 per \
             attempt, above 1 in 1000: lower it or raise options.access_code_length"
    );
    assert!(Config::parse(&shared(6, 100), "c.toml").is_ok());
    let e = error(
        "[[resource_group]]\nname = \"A\"\nsticky = true\nreservations_per_number = 2\n\
             numbers = [\"5551000\"]\n",
    );
    assert!(
        e.contains(
            "c.toml:4: resource_group.reservations_per_number: group \"A\" cannot be sticky"
        ),
        "{e}"
    );
}

#[test]
fn sticky_groups_remember_for_their_own_or_the_global_memory() {
    let c = Config::parse(
        "[options]\nsticky_memory = 3600\n\
             [[resource_group]]\nname = \"A\"\nsticky = true\nnumbers = [\"5551000\"]\n\
             [[resource_group]]\nname = \"B\"\nsticky = true\nsticky_memory = 60\n\
             numbers = [\"5551001\"]\n\
             [[resource_group]]\nname = \"C\"\nnumbers = [\"5551002\"]\n\
             [[resource_group]]\nname = \"D\"\nsticky = true\nnumbers = [\"5551003\"]\n",
        "c.toml",
    )
    .unwrap();
    let memory = |g: &str| c.group(g).unwrap().policy.sticky_memory;
    assert_eq!((memory("A"), memory("B"), memory("C")), (3600, 60, 0));
    let c = Config::parse(
        "[[resource_group]]\nname = \"D\"\nsticky = true\nnumbers = [\"5551003\"]\n",
        "c.toml",
    )
    .unwrap();
    assert_eq!(
        c.group("D").unwrap().policy.sticky_memory,
        86_400,
        "one day by default"
    );
    let e = error("[options]\nsticky_memory = 59\n");
    assert!(
        e.contains("sticky_memory must be 60..=2592000, got 59"),
        "{e}"
    );
    let e = error("[[resource_group]]\nname = \"A\"\nsticky = \"yes\"\nnumbers = [\"5551000\"]\n");
    assert!(e.starts_with("c.toml:3:"), "{e}");
}

#[test]
fn a_fallback_group_must_exist_and_go_one_hop() {
    let groups = |a: &str, b: &str, c: &str| {
        format!(
            "[[resource_group]]\nname = \"A\"\n{a}numbers = [\"5551000\"]\n\
                 [[resource_group]]\nname = \"B\"\n{b}numbers = [\"5551001\"]\n\
                 [[resource_group]]\nname = \"C\"\n{c}numbers = [\"5551002\"]\n"
        )
    };
    let c = Config::parse(
        &groups("fallback_group = \"B\"\n", "", "fallback_group = \"B\"\n"),
        "c.toml",
    )
    .unwrap();
    assert_eq!(
        c.group("A").unwrap().policy.fallback_group.as_deref(),
        Some("B")
    );
    assert_eq!(c.group("B").unwrap().policy.fallback_group, None);
    let e = error(&groups("fallback_group = \"Z\"\n", "", ""));
    assert_eq!(
        e,
        "c.toml:3: resource_group.fallback_group: group \"A\" falls back to \"Z\", which \
             is not configured"
    );
    let e = error(&groups("", "fallback_group = \"B\"\n", ""));
    assert!(
        e.starts_with(
            "c.toml:6: resource_group.fallback_group: group \"B\" cannot fall back to itself"
        ),
        "{e}"
    );
    // A chain, and a cycle, are both a fallback group with a fallback of its own.
    let e = error(&groups(
        "fallback_group = \"B\"\n",
        "fallback_group = \"C\"\n",
        "",
    ));
    assert!(e.starts_with("c.toml:3: resource_group.fallback_group: group \"A\" falls back to \"B\", which falls back to \"C\""), "{e}");
    let e = error(&groups(
        "fallback_group = \"B\"\n",
        "fallback_group = \"A\"\n",
        "",
    ));
    assert!(
        e.contains("a fallback group cannot have one (one hop)"),
        "{e}"
    );
}

#[test]
fn a_grace_window_longer_than_the_cool_off_is_refused_where_it_is_set() {
    let e = error(
        "[[resource_group]]\nname = \"A\"\nreuse_cooldown = 5\nmatch_grace = 6\n\
             numbers = [\"5551000\"]\n",
    );
    assert!(
        e.starts_with("c.toml:4: resource_group.match_grace: match_grace 6 s exceeds"),
        "{e}"
    );
    let e = error(
        "[options]\nmatch_grace = 30\nreuse_cooldown = 60\n\
             [[resource_group]]\nname = \"A\"\nreuse_cooldown = 20\n\
             numbers = [\"5551000\"]\n",
    );
    assert!(
        e.starts_with("c.toml:6: resource_group.reuse_cooldown:"),
        "{e}"
    );
    let e = error(
        "[options]\nmatch_grace = 30\n[[resource_group]]\nname = \"A\"\n\
             numbers = [\"5551000\"]\n",
    );
    assert!(e.starts_with("c.toml:2: options.match_grace:"), "{e}");
    let e = error("[options]\nreuse_cooldown = 86401\n");
    assert!(
        e.contains("reuse_cooldown must be 0..=86400, got 86401"),
        "{e}"
    );
}

#[test]
fn a_service_rate_has_a_burst_and_bad_ones_name_their_key() {
    let rate = |text: &str| {
        Config::parse(text, "c.toml")
            .unwrap()
            .server
            .service_rate_limit
    };
    assert_eq!(rate(""), None);
    assert_eq!(
        rate("[server]\nservice_rate_limit = 120\n"),
        Some(RateLimit {
            per_minute: 120,
            burst: 10
        })
    );
    assert_eq!(
        rate("[server]\nservice_rate_limit = 3\n").map(|r| r.burst),
        Some(3)
    );
    assert_eq!(
        rate("[server]\nservice_rate_limit = 60\nservice_rate_burst = 30\n").map(|r| r.burst),
        Some(30)
    );
    let e = error("[server]\nservice_rate_limit = 0\n");
    assert!(
        e.contains("c.toml:2") && e.contains("service_rate_limit must be 1..=1000000, got 0"),
        "{e}"
    );
}

#[test]
fn the_lease_policy_comes_from_the_group_then_the_options() {
    let c = Config::parse(
        "[options]\nmax_lifetime = 7200\n\
             [[resource_group]]\nname = \"A\"\nsliding_expiry = true\nnumbers = [\"5551000\"]\n\
             [[resource_group]]\nname = \"B\"\nmax_lifetime = 1800\nnumbers = [\"5551001\"]\n",
        "c.toml",
    )
    .unwrap();
    let lease = |g: &str| c.group(g).unwrap().lease;
    assert_eq!(
        lease("A"),
        LeasePolicy {
            max_lifetime: 7200,
            sliding_expiry: true
        }
    );
    assert_eq!(
        lease("B"),
        LeasePolicy {
            max_lifetime: 1800,
            sliding_expiry: false
        }
    );
    let e = error("[options]\nmax_lifetime = 600\n");
    assert!(
        e.contains("max_lifetime must be 1800..=604800, got 600"),
        "{e}"
    );
}

#[test]
fn the_blocking_target_is_a_share_of_creates() {
    let target = |text: &str| Config::parse(text, "c.toml").map(|c| c.blocking_target);
    assert_eq!(target("").unwrap(), DEFAULT_BLOCKING_TARGET);
    assert_eq!(target("[options]\nblocking_target = 0.01\n").unwrap(), 0.01);
    for bad in ["0.0", "0.7", "-1.0"] {
        let e = error(&format!("[options]\nblocking_target = {bad}\n"));
        assert!(e.contains("c.toml:2: options.blocking_target"), "{e}");
    }
}
