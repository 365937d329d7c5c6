//! Damaged files and failing disks, as an operator meets them, through the binary: a
//! data file cut short or filled with noise is one line naming the file, what is wrong
//! and what to do (never a panic), `store check` says whether a file is sound, a data
//! file held by a running service names what to use instead, and a store that fails to
//! write fails liveness and stops the service with its own exit code, after which a
//! restart has every acknowledged reservation.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use request_access_host::api::{CommitOutcome, Entry, Mutation, Precondition};
use request_access_host::store::{MemoryStore, StateStore, StoreError};

fn binary(dir: &Path, data: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_request-access"))
        .arg("--data")
        .arg(dir.join(data))
        .arg("--cache-dir")
        .arg(Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache"))
        .args(args)
        .env_remove("REQUEST_ACCESS_INJECT_WRITE_FAILURE_AFTER")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The command's one line on stderr, after checking it failed with `code`.
fn one_line_failure(out: &Output, code: i32) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    stderr.trim_end().to_string()
}

/// A real data file holding one reservation.
fn good_file(dir: &Path) -> Vec<u8> {
    let out = binary(
        dir,
        "good.redb",
        &["create", "--id", "demo-service", "--resource-group", "DNIS"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(dir.join("good.redb")).unwrap()
}

#[test]
fn a_damaged_data_file_is_one_line_naming_it_and_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let good = good_file(dir.path());
    let checked = binary(dir.path(), "good.redb", &["store", "check"]);
    assert!(checked.status.success());
    let report: serde_json::Value = serde_json::from_slice(&checked.stdout).unwrap();
    assert_eq!(report["sound"], true, "{report}");
    assert_eq!(report["intact"], true, "{report}");
    assert!(report["keys"].as_u64().unwrap() >= 3, "{report}");

    // Cut short, as a partial copy or a full disk during a restore leaves it.
    std::fs::write(dir.path().join("trunc.redb"), &good[..3000]).unwrap();
    for args in [
        &["groups"][..],
        &["store", "check"],
        &["serve", "--listen", "127.0.0.1:0"],
    ] {
        let line = one_line_failure(&binary(dir.path(), "trunc.redb", args), 1);
        assert!(
            line.contains("trunc.redb: the data file is damaged (")
                && line.ends_with(
                    "restore it from a backup, or move it aside to start with an empty state"
                ),
            "{args:?}: {line}"
        );
    }
    // Noise.
    let noise: Vec<u8> = (0..5000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(dir.path().join("noise.redb"), noise).unwrap();
    let line = one_line_failure(&binary(dir.path(), "noise.redb", &["groups"]), 1);
    assert!(
        line.contains("noise.redb: the data file is damaged"),
        "{line}"
    );
    // An empty file is a new store; a missing one too, except to `store check`.
    std::fs::write(dir.path().join("empty.redb"), b"").unwrap();
    assert!(
        binary(dir.path(), "empty.redb", &["groups"])
            .status
            .success()
    );
    let line = one_line_failure(&binary(dir.path(), "missing.redb", &["store", "check"]), 1);
    assert!(
        line.contains("missing.redb: cannot open the data file"),
        "{line}"
    );
}

#[test]
fn a_data_file_held_by_a_running_service_names_what_to_use_instead() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &config(10, 2, ""), Some(TOKEN));
    for args in [&["groups"][..], &["store", "check"]] {
        let line = one_line_failure(&binary(dir.path(), "state.redb", args), 1);
        assert!(
            line.contains("state.redb: the data file is in use by another process")
                && line.contains("/admin/pools")
                && line.contains("--store redis://"),
            "{line}"
        );
    }
    s.terminate();
}

#[test]
fn a_store_that_fails_to_write_stops_the_service_for_its_supervisor_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(10, 8, "");
    std::fs::write(dir.path().join("config.toml"), &config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_request-access"))
        .arg("--config")
        .arg(dir.path().join("config.toml"))
        .arg("--data")
        .arg(dir.path().join("state.redb"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        // The fifth write fails as a full disk would.
        .env("REQUEST_ACCESS_INJECT_WRITE_FAILURE_AFTER", "4")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    let base = format!(
        "http://{}",
        line.trim().strip_prefix("listening on ").unwrap()
    );
    let url = format!("{base}/genesys/1/service/request-access");
    let mut acknowledged = Vec::new();
    for i in 0..8 {
        let reply = post_form(
            &url,
            &[("_id", &format!("s{i}")), ("_resource_group", "DNIS")],
        );
        match reply.status {
            200 => acknowledged.push(reply.body["_access_number"].as_str().unwrap().to_string()),
            // The write that failed: refused, and the service stops.
            503 => {
                assert_eq!(
                    reply.body["code"], "state-store-failure",
                    "{:?}",
                    reply.body
                );
                break;
            }
            other => panic!("{other}: {:?}", reply.body),
        }
    }
    assert_eq!(acknowledged.len(), 4);

    // It stops by itself, with the code a supervisor restarts on.
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("the service kept running on a failed store");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(75));
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.contains("the state store failed (")
            && stderr.contains("No space left on device")
            && stderr.contains("restart it to reload the state from disk"),
        "{stderr}"
    );

    // Restarted (as the supervisor does): every acknowledged reservation is there.
    let s = Server::start(dir.path(), &config, Some(TOKEN));
    for number in &acknowledged {
        let matched = post_form(&match_url(&s), &[("_access_number", number)]);
        assert_eq!(matched.status, 200, "{number}: {:?}", matched.body);
    }
}

/// A store whose disk has failed: it answers nothing, and says so.
struct Failed(MemoryStore);

#[async_trait::async_trait]
impl StateStore for Failed {
    async fn get(&self, keys: &[String]) -> Result<Vec<Option<Entry>>, StoreError> {
        self.0.get(keys).await
    }
    async fn scan(&self, start: &str, end: &str, limit: u32) -> Result<Vec<Entry>, StoreError> {
        self.0.scan(start, end, limit).await
    }
    async fn commit(
        &self,
        preconditions: &[Precondition],
        mutations: &[Mutation],
    ) -> Result<CommitOutcome, StoreError> {
        self.0.commit(preconditions, mutations).await
    }
    fn failure(&self) -> Option<String> {
        Some("No space left on device (a test)".into())
    }
}

#[test]
fn liveness_fails_while_the_store_has_failed_and_serving_stops() {
    use request_access_host::clock::SystemClock;
    use request_access_host::config::Config;
    use request_access_host::http::{self, AppState, Stopped};
    use request_access_host::plugin::{PluginImage, PluginSource};
    use request_access_host::runtime::{Limits, Runtime};
    use request_access_host::services::Services;

    let services = Services::new(
        Config::embedded(),
        Arc::new(Failed(MemoryStore::new())),
        Arc::new(SystemClock),
    );
    let runtime = Runtime::new(
        PluginImage::embedded().unwrap(),
        Arc::new(services),
        Limits::default(),
    );
    let app = AppState::new(
        Arc::new(runtime),
        None,
        PluginSource::default(),
        Duration::from_secs(10),
        65_536,
        None,
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    // Liveness says why, for a probe to restart the process.
    let probe = axum::http::Request::get("/healthz")
        .body(axum::body::Body::empty())
        .unwrap();
    let reply = rt
        .block_on(tower::ServiceExt::oneshot(http::router(app.clone()), probe))
        .unwrap();
    assert_eq!(reply.status(), 503);
    let body = rt
        .block_on(http_body_util::BodyExt::collect(reply.into_body()))
        .unwrap()
        .to_bytes();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["code"], "store-failed");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .ends_with("until a restart: No space left on device (a test)"),
        "{body}"
    );

    // And serving stops by itself, saying why.
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let stopped = rt.block_on(http::serve(listener, app)).unwrap();
    assert_eq!(
        stopped,
        Stopped::StoreFailed("No space left on device (a test)".into())
    );
}
