//! The operator's page (`/admin/`) and its data (`/admin/overview`): behind the admin
//! token, matching `/admin/pools`, marking exhaustion, and free of reservation details;
//! then in a real browser, headless Chromium (Debian's `chromium`, installed by
//! `.ci/run`), from the login form to a full pool, with a screenshot of the page under
//! load saved as an artifact.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use regex::Regex;
use serde_json::Value;

const GROUPS: &str = "[[resource_group]]\nname = \"DNIS\"\nnumbers = [\"5550000..5550009\"]\n\
                      [[resource_group]]\nname = \"SMALL\"\nstrategy = \"random\"\n\
                      booking_expiration_timeout = 120\nnumbers = [\"5551000..5551001\"]\n\
                      [[resource_group]]\nname = \"SHARED\"\nreservations_per_number = 3\n\
                      numbers = [\"5552000\"]\n\
                      [registry]\nservices = [\"s0\", \"s1\", \"s2\", \"s3\", \"s4\"]\n";

fn overview(s: &Server, token: Option<&str>) -> Reply {
    get(&s.url("/admin/overview"), token)
}

fn create(s: &Server, id: &str, group: &str) -> Reply {
    post_form(
        &create_url(s),
        &[
            ("_id", id),
            ("_resource_group", group),
            ("_provide_code", "true"),
        ],
    )
}

/// Some reservations (codes kept), and SMALL driven to exhaustion: answers the codes.
fn load(s: &Server) -> Vec<String> {
    let mut codes = Vec::new();
    for (id, group) in [
        ("s0", "DNIS"),
        ("s1", "SMALL"),
        ("s2", "SMALL"),
        ("s3", "SHARED"),
    ] {
        let lent = create(s, id, group);
        assert_eq!(lent.status, 200, "{:?}", lent.body);
        codes.push(lent.body["_access_code"].as_str().unwrap().to_string());
    }
    let refused = create(s, "s4", "SMALL");
    assert_eq!(refused.status, 503, "{:?}", refused.body);
    codes
}

#[test]
fn the_overview_is_behind_the_token_matches_the_pools_and_holds_no_reservation() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), GROUPS, Some(TOKEN));
    assert_eq!(overview(&s, None).status, 401);
    assert_eq!(overview(&s, Some("wrong")).status, 401);
    let codes = load(&s);
    let registered = post_form(
        &s.url("/admin/services"),
        &[("_id", "visiting"), ("_ttl", "600")],
    );
    // The registration route wants the token too.
    assert_eq!(registered.status, 401);
    let registered = {
        let request = ureq::http::Request::builder()
            .method("POST")
            .uri(s.url("/admin/services"))
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("_id=visiting&_ttl=600".to_string())
            .unwrap();
        reply(agent().run(request).unwrap())
    };
    assert_eq!(registered.status, 200, "{:?}", registered.body);

    let answer = overview(&s, Some(TOKEN));
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let body = answer.body;
    let pools = get(&s.url("/admin/pools"), Some(TOKEN)).body;
    for (group, pool) in body["groups"]
        .as_array()
        .unwrap()
        .iter()
        .zip(pools["groups"].as_array().unwrap())
    {
        for key in ["name", "size", "live", "free", "utilisation"] {
            assert_eq!(group[key], pool[key], "{key} of {group}");
        }
    }
    let small = &body["groups"][1];
    assert_eq!(
        (&small["strategy"], &small["booking_expiration_timeout"]),
        (&Value::from("random"), &Value::from(120))
    );
    assert_eq!(small["free"], 0);
    let last = small["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (&last["utilisation"], &last["exhausted"]),
        (&Value::from(1.0), &Value::from(1))
    );
    assert_eq!(body["groups"][2]["reservations_per_number"], 3);
    assert_eq!(body["groups"][0]["history"][0]["exhausted"], 0);

    let digest = body["plugin"]["digest"].as_str().unwrap();
    assert!(
        Regex::new("^sha256:[0-9a-f]{64}$")
            .unwrap()
            .is_match(digest),
        "{digest}"
    );
    assert_eq!(body["plugin"]["reloads"], 0);
    assert_eq!(body["plugin"]["faults"], 0);
    assert!(body["plugin"]["idle_instances"].as_u64().unwrap() >= 1);
    assert_eq!(body["store"]["kind"], "redb");
    assert_eq!(body["store"]["healthy"], true);
    let services = body["services"].as_array().unwrap();
    let visiting = services.iter().find(|e| e["id"] == "visiting").unwrap();
    let ttl = visiting["ttl_seconds"].as_u64().unwrap();
    assert!((590..=600).contains(&ttl), "{ttl}");
    let s0 = services.iter().find(|e| e["id"] == "s0").unwrap();
    assert_eq!(
        (&s0["static"], &s0["ttl_seconds"]),
        (&Value::from(true), &Value::Null)
    );

    // Nothing of a reservation: no code, no number lent, no caller.
    let text = body.to_string();
    for code in &codes {
        assert!(!text.contains(code.as_str()), "a code is in the overview");
    }
    assert!(
        !text.contains("5550000") && !text.contains("5551000"),
        "{text}"
    );

    // The page itself is public (it holds no data), embedded, and locked down.
    let page = agent().get(&s.url("/admin/")).call().unwrap();
    assert_eq!(page.status(), 200);
    let headers = page.headers();
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    let script = agent().get(&s.url("/admin/app.js")).call().unwrap();
    assert!(
        script.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert_eq!(get(&s.url("/admin/nothing"), None).status, 404);
    // Typed without the slash, the address leads to the page.
    let typed = agent()
        .get(&s.url("/admin"))
        .config()
        .max_redirects(0)
        .build()
        .call()
        .unwrap();
    assert_eq!(typed.status(), 308);
    assert_eq!(typed.headers()["location"], "/admin/");
}

/// Headless Chromium with a profile of its own, stopped by its pid if it overruns.
struct Chromium {
    program: String,
    profile: tempfile::TempDir,
}

impl Chromium {
    fn new() -> Option<Chromium> {
        let program = request_access_testkit::tool("chromium")?;
        Some(Chromium {
            program,
            profile: tempfile::tempdir().unwrap(),
        })
    }

    /// Load `url`, let its scripts run (fetches included), and answer the DOM; or, with
    /// `screenshot`, write a PNG of the page there.
    fn run(&self, url: &str, screenshot: Option<&Path>) -> String {
        let mut command = Command::new(&self.program);
        command
            .arg("--headless")
            // Tests run as root in CI containers, where the sandbox cannot start.
            .args(["--no-sandbox", "--disable-gpu", "--no-first-run"])
            .arg(format!("--user-data-dir={}", self.profile.path().display()))
            .args(["--virtual-time-budget=4000", "--window-size=1280,900"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        match screenshot {
            Some(path) => command.arg(format!("--screenshot={}", path.display())),
            None => command.arg("--dump-dom"),
        };
        let mut child = command.arg(url).spawn().unwrap();
        let started = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chromium did not finish {url} in 60 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut dom = String::new();
        std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut dom).unwrap();
        dom
    }
}

/// The size, live and free cells of `group`'s row in the page's DOM.
fn row(dom: &str, group: &str) -> Option<(u64, u64, u64)> {
    let pattern = format!(
        r#"<tr data-group="{group}">.*?<td class="num size">(\d+)</td><td class="num live">(\d+)</td><td class="num free">(\d+)</td>"#
    );
    let found = Regex::new(&pattern).unwrap().captures(dom)?;
    let cell = |i: usize| found[i].parse().unwrap();
    Some((cell(1), cell(2), cell(3)))
}

/// The `<tr>` of `group`, up to the next row.
fn row_html<'a>(dom: &'a str, group: &str) -> &'a str {
    let start = dom.find(&format!(r#"<tr data-group="{group}">"#)).unwrap();
    let end = dom[start..].find("</tr>").unwrap();
    &dom[start..start + end]
}

#[test]
fn in_a_browser_the_page_asks_for_the_token_and_then_shows_the_pools() {
    let Some(chromium) = Chromium::new() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), GROUPS, Some(TOKEN));

    // No token yet: the login form, and nothing else.
    let dom = chromium.run(&s.url("/admin/"), None);
    assert!(dom.contains(r#"<section id="login">"#), "{dom}");
    assert!(
        dom.contains(r#"<section id="dashboard" hidden="">"#),
        "{dom}"
    );
    assert!(dom.contains(r#"id="login-form""#));

    // A wrong token: the form again, saying why.
    let dom = chromium.run(&s.url("/admin/#token=wrong"), None);
    assert!(
        dom.contains("The service refused this token (401 unauthorized)"),
        "{dom}"
    );
    assert!(dom.contains(r#"<section id="dashboard" hidden="">"#));

    // The right token, after SMALL ran out: every group's row as /admin/pools has it,
    // SMALL full and marked, and no code anywhere in the page.
    let codes = load(&s);
    let url = s.url(&format!("/admin/#token={TOKEN}"));
    let dom = chromium.run(&url, None);
    assert!(dom.contains(r#"<section id="login" hidden="">"#), "{dom}");
    let pools = get(&s.url("/admin/pools"), Some(TOKEN)).body;
    for pool in pools["groups"].as_array().unwrap() {
        let name = pool["name"].as_str().unwrap();
        let figures = |key: &str| pool[key].as_u64().unwrap();
        assert_eq!(
            row(&dom, name),
            Some((figures("size"), figures("live"), figures("free"))),
            "{name} in {dom}"
        );
    }
    let small = row_html(&dom, "SMALL");
    assert!(
        small.contains(r#"<span class="badge">full</span>"#),
        "{small}"
    );
    assert!(small.contains(r#"class="exhausted-mark""#), "{small}");
    assert!(!row_html(&dom, "DNIS").contains("exhausted-mark"));
    assert!(dom.contains(r#"<tr data-service="s0">"#));
    assert!(dom.contains("sha256:"), "the plugin's digest");
    for code in &codes {
        assert!(
            !dom.contains(code.as_str()),
            "an access code is in the page"
        );
    }

    // A screenshot of the page while creates, matches and refusals keep coming.
    let busy = Arc::new(AtomicBool::new(true));
    let traffic = {
        let (busy, base) = (busy.clone(), s.base.clone());
        std::thread::spawn(move || {
            let mut i = 0u32;
            while busy.load(Ordering::Relaxed) {
                let id = format!("s{}", i % 4);
                let url = format!("{base}/genesys/1/service/request-access");
                post_form(&url, &[("_id", &id), ("_resource_group", "DNIS")]);
                post_form(&url, &[("_id", "s4"), ("_resource_group", "SMALL")]);
                i += 1;
            }
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let shot = screenshot_path();
    chromium.run(&url, Some(&shot));
    busy.store(false, Ordering::Relaxed);
    traffic.join().unwrap();
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "{}",
        shot.display()
    );
    println!("screenshot: {}", shot.display());
}

/// Where the screenshot is kept: `target/test-artifacts/admin-page.png`.
fn screenshot_path() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("admin-page.png")
}
