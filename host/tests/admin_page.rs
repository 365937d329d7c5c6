//! The operator's page (`/admin/`) and its data (`/admin/overview`): behind the admin
//! token, matching `/admin/pools`, marking exhaustion, and free of reservation details;
//! then in a real browser, headless Chromium (Debian's `chromium`, installed by
//! `.ci/run`): typed into as an operator does (over the DevTools protocol), and loaded
//! for its DOM, from the login form to a full pool, with a screenshot of the page under
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

/// Chromium driven over the DevTools protocol, to do what a person does: type, click,
/// reload. Stopped by its pid when dropped.
struct DevTools {
    child: std::process::Child,
    socket: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>,
    session: String,
    next_id: u64,
    _profile: tempfile::TempDir,
}

impl DevTools {
    /// A headless Chromium with one tab open on `url`.
    fn open(program: &str, url: &str) -> DevTools {
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(program)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
            ])
            .arg("--remote-debugging-port=0")
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // It says where its DevTools endpoint listens on stderr; the rest is drained.
        let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        let endpoint = loop {
            let mut line = String::new();
            let read = std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
            assert!(read > 0, "chromium exited before listening");
            if let Some(ws) = line.trim().strip_prefix("DevTools listening on ") {
                break ws.to_string();
            }
        };
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        let (socket, _) = tungstenite::connect(endpoint.as_str()).unwrap();
        if let tungstenite::stream::MaybeTlsStream::Plain(stream) = socket.get_ref() {
            stream
                .set_read_timeout(Some(Duration::from_secs(30)))
                .unwrap();
        }
        let mut tools = DevTools {
            child,
            socket,
            session: String::new(),
            next_id: 0,
            _profile: profile,
        };
        let target = tools.call(
            false,
            "Target.createTarget",
            serde_json::json!({ "url": url }),
        );
        let attached = tools.call(
            false,
            "Target.attachToTarget",
            serde_json::json!({ "targetId": target["targetId"], "flatten": true }),
        );
        tools.session = attached["sessionId"].as_str().unwrap().to_string();
        tools
    }

    /// Send `method` (to the tab if `in_tab`, else to the browser) and answer its result.
    fn call(&mut self, in_tab: bool, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = serde_json::json!({ "id": id, "method": method, "params": params });
        if in_tab {
            message["sessionId"] = Value::from(self.session.clone());
        }
        self.socket
            .send(tungstenite::Message::Text(message.to_string().into()))
            .unwrap();
        loop {
            if let tungstenite::Message::Text(text) = self.socket.read().unwrap() {
                let answer: Value = serde_json::from_str(text.as_str()).unwrap();
                if answer["id"] == id {
                    assert!(answer.get("error").is_none(), "{method}: {answer}");
                    return answer["result"].clone();
                }
            }
        }
    }

    /// The value of `expression` in the tab.
    fn eval(&mut self, expression: &str) -> Value {
        let params = serde_json::json!({
            "expression": expression,
            "returnByValue": true,
            "awaitPromise": true,
        });
        let result = self.call(true, "Runtime.evaluate", params);
        assert!(
            result.get("exceptionDetails").is_none(),
            "{expression}: {result}"
        );
        result["result"]["value"].clone()
    }

    /// Wait (15 s at most) until `condition` holds in the tab (a condition that throws,
    /// on a page still loading, does not hold).
    fn wait_for(&mut self, condition: &str, what: &str) {
        let started = Instant::now();
        let guarded = format!(
            "(() => {{ try {{ return ({condition}) === true; }} catch (e) {{ return false; }} }})()"
        );
        while self.eval(&guarded) != Value::Bool(true) {
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "never saw {what}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Type `text` into the field `selector`, as keystrokes do, and press its form's button.
    fn submit(&mut self, selector: &str, text: &str) {
        self.eval(&format!(
            "document.querySelector('{selector}').value = ''; \
             document.querySelector('{selector}').focus()"
        ));
        self.call(
            true,
            "Input.insertText",
            serde_json::json!({ "text": text }),
        );
        self.eval(&format!(
            "document.querySelector('{selector}').form.querySelector('button').click()"
        ));
    }
}

impl Drop for DevTools {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn in_a_browser_an_operator_types_the_token_and_the_tab_keeps_it() {
    let Some(program) = request_access_testkit::tool("chromium") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), GROUPS, Some(TOKEN));
    load(&s);
    let mut page = DevTools::open(&program, &s.url("/admin/"));
    let shown = |id: &str| format!("!document.getElementById('{id}').hidden");
    page.wait_for(
        &format!("document.readyState === 'complete' && {}", shown("login")),
        "the login form",
    );
    assert_eq!(page.eval(&shown("dashboard")), false);

    page.submit("#token", "wrong");
    page.wait_for(&shown("login-error"), "the refusal");
    assert_eq!(
        page.eval("document.getElementById('login-error').textContent"),
        "The service refused this token (401 unauthorized): check [server] admin_token and try again."
    );
    assert_eq!(page.eval(&shown("dashboard")), false);

    let rows = "document.querySelectorAll('#groups tbody tr').length === 3";
    page.submit("#token", TOKEN);
    page.wait_for(rows, "the pools");
    assert_eq!(page.eval(&shown("login")), false);
    assert_eq!(page.eval("document.getElementById('token').value"), "");
    // Kept for this tab only.
    assert_eq!(
        page.eval("sessionStorage.getItem('request-access-admin-token')"),
        TOKEN
    );
    assert_eq!(page.eval("localStorage.length"), 0);
    let small = "document.querySelector('tr[data-group=\"SMALL\"] td.free').textContent";
    assert_eq!(page.eval(small), "0");

    // A reload keeps the tab logged in; forgetting the token brings the form back.
    page.eval("window.beforeReload = true");
    page.call(true, "Page.reload", serde_json::json!({}));
    page.wait_for(
        &format!("window.beforeReload === undefined && {rows}"),
        "the pools after a reload",
    );
    page.eval("document.getElementById('logout').click()");
    page.wait_for(&shown("login"), "the form after forgetting the token");
    assert_eq!(page.eval(&shown("dashboard")), false);
    assert_eq!(page.eval("sessionStorage.length"), 0);
}
