//! The `request-access` binary: output shape, exit codes, and state that persists
//! across invocations through the data file.

mod common;

use common::Cli;

#[test]
fn create_and_match_on_the_embedded_default_persist_across_invocations() {
    let cli = Cli::new(None);
    let first = cli.json(&[
        "create",
        "--id",
        "demo-service",
        "--resource-group",
        "DNIS",
        "--provide-code",
    ]);
    assert_eq!(first["_id"], "demo-service");
    assert_eq!(first["_access_number"], "+18005550100");
    assert_eq!(first["_expiration_time"], 30);
    assert_eq!(first["_access_code"].as_str().unwrap().len(), 6);
    assert!(first["_expires_at"].as_str().unwrap().ends_with('Z'));

    cli.json(&["services", "register", "app-2", "--ttl", "600"]);
    let second = cli.json(&["create", "--id", "app-2", "--resource-group", "DNIS"]);
    assert_eq!(
        second["_access_number"], "+18005550101",
        "saw the first reservation"
    );
    assert!(second.get("_access_code").is_none(), "no code unless asked");

    let groups = cli.json(&["groups"]);
    assert_eq!(groups["groups"][0]["live"], 2);
    assert_eq!(groups["groups"][0]["free"], 8);

    let code = first["_access_code"].as_str().unwrap();
    let matched = cli.json(&[
        "match",
        "--access-number",
        "+18005550100",
        "--access-code",
        code,
    ]);
    assert_eq!(matched, serde_json::json!({ "_id": "demo-service" }));
    cli.fails(
        &[
            "match",
            "--access-number",
            "+18005550100",
            "--access-code",
            code,
        ],
        3,
    );

    let extended = cli.json(&[
        "extend",
        "--id",
        "app-2",
        "--resource-group",
        "DNIS",
        "--booking-expiration-timeout",
        "900",
    ]);
    assert_eq!(extended["_access_number"], "+18005550101");
    assert_eq!(extended["_expiration_time"], 900);
    assert_eq!(extended["_lifetime_capped"], false);
    // Nothing to extend: the same exit code as a match that finds nothing.
    cli.fails(&["extend", "--id", "nobody", "--resource-group", "DNIS"], 3);

    let released = cli.json(&["release", "--id", "app-2", "--resource-group", "DNIS"]);
    assert_eq!(released["_access_number"], "+18005550101");
    assert_eq!(cli.json(&["groups"])["groups"][0]["live"], 0);
}

#[test]
fn failures_exit_with_their_documented_codes() {
    let cli = Cli::new(Some(
        "[[resource_group]]\nname = \"ONE\"\nnumbers = [\"5551000\"]\n\
         [registry]\nservices = [\"a\", \"b\"]\n",
    ));
    let bad_timeout = cli.fails(
        &[
            "create",
            "--id",
            "a",
            "--resource-group",
            "ONE",
            "--booking-expiration-timeout",
            "4",
        ],
        2,
    );
    assert!(
        bad_timeout.contains("_booking_expiration_timeout"),
        "{bad_timeout}"
    );
    assert!(
        cli.fails(&["create", "--id", "a", "--resource-group", "TWO"], 2)
            .contains("unknown resource group")
    );
    cli.fails(
        &[
            "create",
            "--id",
            "a",
            "--resource-group",
            "ONE",
            "--phone-number",
            "x",
        ],
        2,
    );
    assert!(
        cli.fails(&["create", "--id", "zed", "--resource-group", "ONE"], 3)
            .contains("not active")
    );
    cli.json(&["create", "--id", "a", "--resource-group", "ONE"]);
    assert!(
        cli.fails(&["create", "--id", "b", "--resource-group", "ONE"], 4)
            .contains("no access number available")
    );
    cli.fails(&["match", "--access-number", "5559999"], 3);
    cli.fails(&["release", "--id", "b", "--resource-group", "ONE"], 3);
    cli.fails(&["services", "deregister", "never-registered"], 3);
}

#[test]
fn services_register_list_and_deregister() {
    let cli = Cli::new(None);
    cli.json(&["services", "register", "app-1"]);
    let listed = cli.json(&["services", "list"]);
    let ids: Vec<&str> = listed["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["app-1", "demo-service"]);
    assert_eq!(
        cli.json(&["services", "deregister", "app-1"])["_deregistered"],
        true
    );
    cli.fails(&["create", "--id", "app-1", "--resource-group", "DNIS"], 3);
    cli.fails(&["services", "register", ""], 2);
}

#[test]
fn the_compiled_plugin_is_cached_and_a_damaged_cache_is_recompiled() {
    let cli = Cli::new(None);
    cli.json(&["groups"]);
    let cache = cli.dir.path().join("cache");
    let cached: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert!(cached[0].extension().is_some_and(|e| e == "cwasm"));
    std::fs::write(&cached[0], b"not compiled code").unwrap();
    assert_eq!(cli.json(&["groups"])["groups"][0]["size"], 10);
    assert!(std::fs::read(&cached[0]).unwrap().len() > 1000, "rewritten");
}

#[test]
fn a_bad_configuration_names_file_line_and_key() {
    let cli = Cli::new(Some("[options]\naccess_code_length = 20\n"));
    let message = cli.fails(&["groups"], 1);
    assert!(message.contains("config.toml:2:"), "{message}");
    assert!(message.contains("access_code_length"), "{message}");
}

#[test]
fn export_standalone_writes_the_composed_component() {
    let cli = Cli::new(None);
    let path = cli.dir.path().join("standalone.wasm");
    let out = cli.json(&["export-standalone", path.to_str().unwrap()]);
    let written = std::fs::read(&path).unwrap();
    assert_eq!(written, request_access_host::runtime::STANDALONE_WASM);
    assert_eq!(out["bytes"], written.len());
    assert_eq!(&written[..4], b"\0asm");
}

/// Groups `G` and `H` with these number lists, services `a`..`d` always active.
fn pools(g: &str, h: Option<&str>) -> String {
    let mut text = format!(
        "[registry]\nservices = [\"a\", \"b\", \"c\", \"d\"]\n\
         [[resource_group]]\nname = \"G\"\nnumbers = [{g}]\n"
    );
    if let Some(h) = h {
        text += &format!("[[resource_group]]\nname = \"H\"\nnumbers = [{h}]\n");
    }
    text
}

impl Cli {
    fn configure(&self, text: &str) {
        std::fs::write(self.dir.path().join("config.toml"), text).unwrap();
    }

    /// `(size, live, free)` of `group` as `groups` reports it.
    fn status(&self, group: &str) -> (u64, u64, u64) {
        let groups = self.json(&["groups"]);
        let row = groups["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["name"] == group)
            .unwrap_or_else(|| panic!("{group} in {groups}"))
            .clone();
        let field = |f: &str| row[f].as_u64().unwrap();
        (field("size"), field("live"), field("free"))
    }
}

#[test]
fn a_live_reservation_outlives_changes_to_its_pool() {
    // A number removed from its group while held: the caller still gets through, once.
    let cli = Cli::new(Some(&pools("\"+15550000001..+15550000003\"", None)));
    let a = cli.json(&[
        "create",
        "--id",
        "a",
        "--resource-group",
        "G",
        "--provide-code",
    ]);
    assert_eq!(a["_access_number"], "+15550000001");
    let code = a["_access_code"].as_str().unwrap();
    let b = cli.json(&["create", "--id", "b", "--resource-group", "G"]);
    assert_eq!(b["_access_number"], "+15550000002");
    cli.configure(&pools("\"+15550000002..+15550000005\"", None));
    // Right after the change: b's number is held, a's no longer counts, two were added.
    assert_eq!(cli.status("G"), (4, 1, 3));
    let dial = [
        "match",
        "--access-number",
        "+15550000001",
        "--access-code",
        code,
    ];
    assert_eq!(cli.json(&dial), serde_json::json!({ "_id": "a" }));
    cli.fails(&dial, 3);
    // ... and the removed number is never lent again.
    for id in ["c", "d"] {
        let lent = cli.json(&["create", "--id", id, "--resource-group", "G"]);
        assert_ne!(lent["_access_number"], "+15550000001", "{id}");
    }
    assert_eq!(cli.status("G"), (4, 3, 1));

    // A number moved to another group while held: its old group releases it.
    let cli = Cli::new(Some(&pools(
        "\"+15550000001\", \"+15550000002\"",
        Some("\"+15550000003\""),
    )));
    let a = cli.json(&["create", "--id", "a", "--resource-group", "G"]);
    assert_eq!(a["_access_number"], "+15550000001");
    cli.configure(&pools(
        "\"+15550000002\"",
        Some("\"+15550000001\", \"+15550000003\""),
    ));
    assert_eq!(cli.status("G"), (1, 0, 1));
    assert_eq!(cli.status("H"), (2, 1, 1), "the moved number is held");
    // Its new group lends it only once the old reservation has ended.
    let b = cli.json(&["create", "--id", "b", "--resource-group", "H"]);
    assert_eq!(b["_access_number"], "+15550000003");
    cli.fails(&["create", "--id", "c", "--resource-group", "H"], 4);
    let released = cli.json(&["release", "--id", "a", "--resource-group", "G"]);
    assert_eq!(released["_access_number"], "+15550000001");
    let c = cli.json(&["create", "--id", "c", "--resource-group", "H"]);
    assert_eq!(c["_access_number"], "+15550000001");
    assert_eq!(cli.status("H"), (2, 2, 0));

    // Numbers added while a reservation made before runs out: it expires on time.
    let cli = Cli::new(Some(&pools("\"+15550000001..+15550000002\"", None)));
    let short = [
        "create",
        "--id",
        "a",
        "--resource-group",
        "G",
        "--booking-expiration-timeout",
        "5",
    ];
    assert_eq!(cli.json(&short)["_access_number"], "+15550000001");
    cli.configure(&pools("\"+15550000001..+15550000004\"", None));
    assert_eq!(cli.status("G"), (4, 1, 3));
    std::thread::sleep(std::time::Duration::from_millis(5_200));
    assert_eq!(cli.status("G"), (4, 0, 4));
    cli.fails(&["match", "--access-number", "+15550000001"], 3);

    // A retired group's reservations still match and release; then it is unknown.
    let cli = Cli::new(Some(&pools(
        "\"+15550000001\"",
        Some("\"+15550000008..+15550000009\""),
    )));
    let a = cli.json(&["create", "--id", "a", "--resource-group", "H"]);
    let b = cli.json(&[
        "create",
        "--id",
        "b",
        "--resource-group",
        "H",
        "--provide-code",
    ]);
    cli.configure(&pools("\"+15550000001\"", None));
    let number = b["_access_number"].as_str().unwrap();
    let code = b["_access_code"].as_str().unwrap();
    let dial = ["match", "--access-number", number, "--access-code", code];
    assert_eq!(cli.json(&dial), serde_json::json!({ "_id": "b" }));
    let released = cli.json(&["release", "--id", "a", "--resource-group", "H"]);
    assert_eq!(released["_access_number"], a["_access_number"]);
    let gone = cli.fails(&["release", "--id", "a", "--resource-group", "H"], 2);
    assert!(gone.contains("unknown resource group"), "{gone}");
}

#[test]
fn a_released_number_rests_for_the_cool_off_across_invocations() {
    let cli = Cli::new(Some(
        "[[resource_group]]\nname = \"G\"\nreuse_cooldown = 3\nnumbers = [\"+15550000001\"]\n\
         [registry]\nservices = [\"a\", \"b\"]\n",
    ));
    cli.json(&["create", "--id", "a", "--resource-group", "G"]);
    let released = cli.json(&["release", "--id", "a", "--resource-group", "G"]);
    assert_eq!(released["_access_number"], "+15550000001");
    assert_eq!(cli.status("G"), (1, 1, 0), "resting counts as not free");
    let refused = cli.fails(&["create", "--id", "b", "--resource-group", "G"], 4);
    assert!(refused.contains("no access number available"), "{refused}");
    std::thread::sleep(std::time::Duration::from_millis(3_100));
    assert_eq!(cli.status("G"), (1, 0, 1));
    let lent = cli.json(&["create", "--id", "b", "--resource-group", "G"]);
    assert_eq!(lent["_access_number"], "+15550000001");
}
