//! Helpers shared by the HTTP tests: the real binary on an ephemeral loopback port and
//! a blocking HTTP client that never treats a status as an error.
#![allow(dead_code)] // each test file uses its own subset

pub mod holdings;
pub mod webhook;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const TOKEN: &str = "test-admin-token";

/// A pool of `size` numbers, round-robin, services s0..s{services} always active.
pub fn config(size: u32, services: u32, extra: &str) -> String {
    let ids: Vec<String> = (0..services).map(|i| format!("\"s{i}\"")).collect();
    format!(
        "[[resource_group]]\nname = \"DNIS\"\nnumbers = [\"5550000..{}\"]\n\
         [registry]\nservices = [{}]\n{extra}",
        5_550_000 + size - 1,
        ids.join(",")
    )
}

pub struct Server {
    pub child: Child,
    pub base: String,
    pub dir: PathBuf,
    /// Time from spawning the process to its "listening" line.
    pub startup: Duration,
}

impl Server {
    /// Start `request-access serve` on an ephemeral port with `config` in `dir`.
    pub fn start(dir: &Path, config: &str, token: Option<&str>) -> Server {
        Server::start_with_log_level(dir, config, token, "info")
    }

    /// Start on a given `address` (to restart where clients expect the server).
    pub fn start_on(dir: &Path, config: &str, address: &str) -> Server {
        Server::launch(dir, config, None, "info", address)
    }

    pub fn start_with_log_level(
        dir: &Path,
        config: &str,
        token: Option<&str>,
        level: &str,
    ) -> Server {
        Server::launch(dir, config, token, level, "127.0.0.1:0")
    }

    fn launch(dir: &Path, config: &str, token: Option<&str>, level: &str, address: &str) -> Server {
        std::fs::write(dir.join("config.toml"), config).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_request-access"));
        cmd.arg("--config")
            .arg(dir.join("config.toml"))
            .arg("--data")
            .arg(dir.join("state.redb"))
            .arg("--cache-dir")
            .arg(Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache"))
            .args(["serve", "--listen", address])
            .env("RUST_LOG", level)
            .env_remove("REQUEST_ACCESS_ADMIN_TOKEN")
            .stdout(Stdio::piped())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join("server.log"))
                    .unwrap(),
            );
        if let Some(token) = token {
            cmd.env("REQUEST_ACCESS_ADMIN_TOKEN", token);
        }
        let started = Instant::now();
        let mut child = cmd.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let address = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}: {}", log(dir)));
        Server {
            base: format!("http://{address}"),
            child,
            dir: dir.to_path_buf(),
            startup: started.elapsed(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// SIGTERM, and the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        self.child.wait().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .new_agent()
}

/// Status, headers we care about, and the JSON body (Null when it is not JSON).
pub struct Reply {
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: Value,
}

pub fn reply(mut r: ureq::http::Response<ureq::Body>) -> Reply {
    let status = r.status().as_u16();
    let retry_after = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let text = r.body_mut().read_to_string().unwrap_or_default();
    Reply {
        status,
        retry_after,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
    }
}

pub fn post_form(url: &str, fields: &[(&str, &str)]) -> Reply {
    reply(agent().post(url).send_form(fields.iter().copied()).unwrap())
}

pub fn post_raw(url: &str, content_type: &str, body: &str) -> Reply {
    reply(
        agent()
            .post(url)
            .header("content-type", content_type)
            .send(body)
            .unwrap(),
    )
}

pub fn get(url: &str, token: Option<&str>) -> Reply {
    let mut request = agent().get(url);
    if let Some(t) = token {
        request = request.header("authorization", &format!("Bearer {t}"));
    }
    reply(request.call().unwrap())
}

pub fn create_url(s: &Server) -> String {
    s.url("/genesys/1/service/request-access")
}

pub fn match_url(s: &Server) -> String {
    s.url("/genesys/1/service/match-interaction")
}

/// The command line on a data file (and configuration, if given) of its own directory.
pub struct Cli {
    pub dir: tempfile::TempDir,
}

impl Cli {
    pub fn new(config: Option<&str>) -> Cli {
        let dir = tempfile::tempdir().unwrap();
        if let Some(text) = config {
            std::fs::write(dir.path().join("config.toml"), text).unwrap();
        }
        Cli { dir }
    }

    pub fn run(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_request-access"));
        cmd.arg("--data").arg(self.dir.path().join("state.redb"));
        let config = self.dir.path().join("config.toml");
        if Path::new(&config).exists() {
            cmd.arg("--config").arg(config);
        }
        cmd.arg("--cache-dir").arg(self.dir.path().join("cache"));
        cmd.env_remove("REQUEST_ACCESS_CONFIG")
            .env_remove("REQUEST_ACCESS_DATA")
            .args(args)
            .output()
            .unwrap()
    }

    /// Run, expect success, parse the one JSON object printed.
    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(text.lines().count(), 1, "one line: {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// Run, expect failure with `code`, answer the one stderr line.
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {out:?}");
        assert!(out.stdout.is_empty());
        let text = String::from_utf8(out.stderr).unwrap();
        assert_eq!(text.lines().count(), 1, "one line: {text}");
        text
    }
}
