//! What the tests need from outside the project: external tools, found or skipped, a
//! real `redis-server` on a free loopback port in a temporary directory, stopped by its
//! pid (or a primary, replicas and sentinels: [`RedisSentinelSet`]), and a real etcd
//! cluster the same way ([`EtcdCluster`]).
#![warn(missing_docs)]

mod etcd;
mod sentinel;

pub use etcd::EtcdCluster;
pub use sentinel::{PRIMARY_NAME, RedisSentinelSet};

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The external tool `name`, or `None` (and the test is skipped) where it is not
/// installed, unless `REQUEST_ACCESS_REQUIRE_TOOLS` is set, as in CI.
pub fn tool(name: &str) -> Option<String> {
    tool_answering(name, &["--version"])
}

/// [`tool`], for a tool that tells its version to other arguments than `--version`
/// (`openssl version`).
pub fn tool_answering(name: &str, version_args: &[&str]) -> Option<String> {
    let found = Command::new(name)
        .args(version_args)
        .output()
        .is_ok_and(|o| o.status.success());
    match (found, std::env::var_os("REQUEST_ACCESS_REQUIRE_TOOLS")) {
        (true, _) => Some(name.to_string()),
        (false, Some(_)) => {
            panic!("{name} is required (REQUEST_ACCESS_REQUIRE_TOOLS) but not installed")
        }
        (false, None) => {
            eprintln!("skipped: {name} is not installed (.ci/run installs it)");
            None
        }
    }
}

/// A tool `.ci/run` installs into a directory of its own (an npm prefix, a Python
/// virtual environment), pinned: the directory named by `env_var`, else
/// `~/.cache/request-access/{default_dir}`, where `program` (a path inside it) must
/// exist. `None` (and the test is skipped) where it does not, unless
/// `REQUEST_ACCESS_REQUIRE_TOOLS` is set.
pub fn installed_tool(env_var: &str, default_dir: &str, program: &str) -> Option<PathBuf> {
    let dir = std::env::var_os(env_var).map(PathBuf::from).or_else(|| {
        std::env::var_os("HOME").map(|h| {
            PathBuf::from(h)
                .join(".cache/request-access")
                .join(default_dir)
        })
    });
    if let Some(dir) = dir.as_ref().filter(|d| d.join(program).exists()) {
        return Some(dir.clone());
    }
    let place = dir.map_or_else(|| format!("${env_var}"), |d| d.display().to_string());
    if std::env::var_os("REQUEST_ACCESS_REQUIRE_TOOLS").is_some() {
        panic!("{program} is required (REQUEST_ACCESS_REQUIRE_TOOLS) but not in {place}");
    }
    eprintln!("skipped: {program} is not installed in {place} (.ci/run installs it)");
    None
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A `redis-server` of its own: loopback only, append-only file synced on every write,
/// no eviction, in a temporary directory that it leaves with it.
pub struct RedisServer {
    /// Where it listens.
    pub port: u16,
    dir: tempfile::TempDir,
    password: Option<String>,
    /// The primary's port, for a replica.
    replica_of: Option<u16>,
    /// Whether it speaks TLS only (with `ca.pem`, `server.pem` in its directory).
    tls: bool,
}

impl RedisServer {
    /// Start one, or `None` where `redis-server` is not installed (see [`tool`]).
    pub fn start() -> Option<RedisServer> {
        RedisServer::start_with(None)
    }

    /// Start one that requires `password` (the default user's).
    pub fn start_with(password: Option<&str>) -> Option<RedisServer> {
        tool("redis-server")?;
        let server = RedisServer {
            port: free_port(),
            dir: tempfile::tempdir().expect("a temporary directory"),
            password: password.map(str::to_string),
            replica_of: None,
            tls: false,
        };
        server.launch();
        Some(server)
    }

    /// One that speaks TLS only, with a certificate for 127.0.0.1 issued by a
    /// certificate authority of its own (`ca.pem` in [`RedisServer::dir`]), made with
    /// the `openssl` command; `None` where `redis-server` or `openssl` is missing.
    pub fn start_tls() -> Option<RedisServer> {
        tool("redis-server")?;
        tool_answering("openssl", &["version"])?;
        let server = RedisServer {
            port: free_port(),
            dir: tempfile::tempdir().expect("a temporary directory"),
            password: None,
            replica_of: None,
            tls: true,
        };
        let dir = server.dir.path();
        std::fs::write(dir.join("san.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
        for args in [
            "req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=test-ca",
            "req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1",
            "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem \
             -days 2 -extfile san.cnf",
        ] {
            let out = Command::new("openssl")
                .args(args.split_whitespace())
                .current_dir(dir)
                .output()
                .expect("openssl runs");
            assert!(
                out.status.success(),
                "openssl {args}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        server.launch();
        Some(server)
    }

    /// A replica of `primary` (which has no password), once it has synchronised.
    pub fn start_replica_of(primary: &RedisServer) -> RedisServer {
        let server = RedisServer {
            port: free_port(),
            dir: tempfile::tempdir().expect("a temporary directory"),
            password: None,
            replica_of: Some(primary.port),
            tls: false,
        };
        server.launch();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !server
            .cli(&["INFO", "replication"])
            .contains("master_link_status:up")
        {
            assert!(Instant::now() < deadline, "the replica did not synchronise");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// `redis://[:password@]127.0.0.1:port/0`, `rediss://` for TLS.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        match &self.password {
            Some(p) => format!("{scheme}://:{p}@127.0.0.1:{}/0", self.port),
            None => format!("{scheme}://127.0.0.1:{}/0", self.port),
        }
    }

    /// Its working directory (the append-only file, the log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.path().join("redis.pid")
    }

    /// Start (again) on the same port and directory, so it reloads its append-only
    /// file, and wait until it answers.
    pub fn launch(&self) {
        let mut command = Command::new("redis-server");
        if self.tls {
            let dir = self.dir.path();
            command
                .args(["--port", "0", "--tls-port", &self.port.to_string()])
                .arg("--tls-cert-file")
                .arg(dir.join("server.pem"))
                .arg("--tls-key-file")
                .arg(dir.join("server.key"))
                .arg("--tls-ca-cert-file")
                .arg(dir.join("ca.pem"))
                .args(["--tls-auth-clients", "no"]);
        } else {
            command.args(["--port", &self.port.to_string()]);
        }
        command
            .args(["--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .args(["--maxmemory-policy", "noeviction", "--daemonize", "yes"])
            // A replica synchronises at once rather than after the default 5 s.
            .args(["--repl-diskless-sync-delay", "0"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--pidfile")
            .arg(self.pid_file())
            .arg("--logfile")
            .arg(self.dir.path().join("redis.log"));
        if let Some(p) = &self.password {
            command.args(["--requirepass", p]);
        }
        if let Some(primary) = self.replica_of {
            command.args(["--replicaof", "127.0.0.1", &primary.to_string()]);
        }
        let status = command.status().expect("redis-server runs");
        assert!(status.success(), "redis-server did not start: {status}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.answers() {
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} does not answer: {}",
                self.port,
                std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether it answers PING (with the password's AUTH first, if any). A server still
    /// loading its append-only file answers `-LOADING`, which is not an answer yet.
    pub fn answers(&self) -> bool {
        if self.tls {
            return self.cli(&["PING"]).contains("PONG");
        }
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut request = String::new();
        if let Some(p) = &self.password {
            request.push_str(&format!("AUTH {p}\r\n"));
        }
        request.push_str("PING\r\n");
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut answer = Vec::new();
        let mut buf = [0u8; 256];
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&answer).contains("PONG")
                || String::from_utf8_lossy(&answer).contains("-")
            {
                break;
            }
        }
        String::from_utf8_lossy(&answer).contains("+PONG")
    }

    fn pid(&self) -> Option<String> {
        read_pid(&self.pid_file())
    }

    /// Send `signal` to it by its pid and wait until it has gone.
    fn signal(&self, signal: &str) {
        signal_pid_file(&self.pid_file(), signal);
    }

    /// `kill -9`: gone without a chance to write anything more.
    pub fn kill9(&self) {
        self.signal("-KILL");
    }

    /// Freeze it (SIGSTOP): connections stay open and nothing answers, as in a network
    /// partition or a server stalled on a slow disk.
    pub fn freeze(&self) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill").args(["-STOP", &pid]).status();
        }
    }

    /// Let a frozen server go on (SIGCONT).
    pub fn thaw(&self) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill").args(["-CONT", &pid]).status();
        }
    }

    /// A clean stop (SIGTERM).
    pub fn stop(&self) {
        self.signal("-TERM");
    }

    /// `redis-cli` against it, for what the tests check on the server itself.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut command = Command::new("redis-cli");
        command.args(["-p", &self.port.to_string()]);
        if self.tls {
            command
                .arg("--tls")
                .arg("--cacert")
                .arg(self.dir.path().join("ca.pem"));
        }
        if let Some(p) = &self.password {
            command.args(["-a", p, "--no-auth-warning"]);
        }
        let out = command.args(args).output().expect("redis-cli runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.thaw();
        self.signal("-KILL");
    }
}

/// The pid a daemon wrote to `pid_file`, if it is there.
fn read_pid(pid_file: &Path) -> Option<String> {
    std::fs::read_to_string(pid_file)
        .ok()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
}

/// Send `signal` to the daemon whose pid is in `pid_file` and wait until it has gone.
fn signal_pid_file(pid_file: &Path, signal: &str) {
    let Some(pid) = read_pid(pid_file) else {
        return;
    };
    let _ = Command::new("kill").args([signal, &pid]).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        // A zombie's /proc entry stays until its parent reaps it; a daemon has detached
        // itself, so init reaps it.
        if std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z ")) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = std::fs::remove_file(pid_file);
}
