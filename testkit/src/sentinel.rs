//! A Redis primary with replicas, watched by three `redis-sentinel` processes, each on a
//! free loopback port in a temporary directory of its own, stopped by pid.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::{RedisServer, free_port, signal_pid_file, tool};

/// The name the sentinels monitor the primary under.
pub const PRIMARY_NAME: &str = "ra-primary";

/// One `redis-sentinel` process.
struct SentinelProcess {
    port: u16,
    dir: tempfile::TempDir,
}

impl SentinelProcess {
    /// Start one monitoring `primary` (quorum 2, down after 1 s), and wait until it
    /// answers.
    fn start(primary: u16) -> SentinelProcess {
        let sentinel = SentinelProcess {
            port: free_port(),
            dir: tempfile::tempdir().expect("a temporary directory"),
        };
        let dir = sentinel.dir.path();
        // The sentinel rewrites this file as it learns the set, so it lives in its dir.
        let config = dir.join("sentinel.conf");
        std::fs::write(
            &config,
            format!(
                "port {port}\nbind 127.0.0.1\ndaemonize yes\npidfile {dir}/sentinel.pid\n\
                 logfile {dir}/sentinel.log\ndir {dir}\nsentinel resolve-hostnames no\n\
                 sentinel monitor {PRIMARY_NAME} 127.0.0.1 {primary} 2\n\
                 sentinel down-after-milliseconds {PRIMARY_NAME} 1000\n\
                 sentinel failover-timeout {PRIMARY_NAME} 5000\n\
                 sentinel parallel-syncs {PRIMARY_NAME} 1\n",
                port = sentinel.port,
                dir = dir.display(),
            ),
        )
        .expect("the sentinel's configuration is written");
        let status = Command::new("redis-sentinel")
            .arg(&config)
            .status()
            .expect("redis-sentinel runs");
        assert!(status.success(), "redis-sentinel did not start: {status}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !sentinel.cli(&["PING"]).contains("PONG") {
            assert!(
                Instant::now() < deadline,
                "redis-sentinel on port {} does not answer: {}",
                sentinel.port,
                sentinel.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        sentinel
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sentinel.log")).unwrap_or_default()
    }

    /// The port of the primary it names now, if it names one.
    fn primary_port(&self) -> Option<u16> {
        let answer = self.cli(&["SENTINEL", "get-master-addr-by-name", PRIMARY_NAME]);
        answer.lines().nth(1)?.trim().parse().ok()
    }

    /// `SENTINEL master NAME` as field, value pairs.
    fn master_fields(&self) -> Vec<(String, String)> {
        let answer = self.cli(&["SENTINEL", "master", PRIMARY_NAME]);
        let lines: Vec<&str> = answer.lines().collect();
        lines
            .chunks(2)
            .filter_map(|pair| match pair {
                [field, value] => Some((field.to_string(), value.to_string())),
                _ => None,
            })
            .collect()
    }
}

impl Drop for SentinelProcess {
    fn drop(&mut self) {
        signal_pid_file(&self.dir.path().join("sentinel.pid"), "-KILL");
    }
}

/// A primary, its replicas (append-only file synced on every write, as
/// [`RedisServer`]) and three sentinels with a quorum of two, on loopback. The
/// sentinels declare a silent primary down after 1 s and may fail over again after 5 s.
pub struct RedisSentinelSet {
    servers: Vec<RedisServer>,
    sentinels: Vec<SentinelProcess>,
}

impl RedisSentinelSet {
    /// A primary, `replicas` replicas and three sentinels, once every sentinel knows
    /// the replicas and the other sentinels (so that a failover can be agreed); `None`
    /// where `redis-server` or `redis-sentinel` is not installed (see [`tool`]).
    pub fn start(replicas: usize) -> Option<RedisSentinelSet> {
        tool("redis-sentinel")?;
        let primary = RedisServer::start()?;
        let mut servers = vec![];
        for _ in 0..replicas {
            servers.push(RedisServer::start_replica_of(&primary));
        }
        servers.insert(0, primary);
        let sentinels = (0..3)
            .map(|_| SentinelProcess::start(servers[0].port))
            .collect();
        let set = RedisSentinelSet { servers, sentinels };
        // Sentinels find each other through the primary every 2 s.
        let deadline = Instant::now() + Duration::from_secs(30);
        for sentinel in &set.sentinels {
            loop {
                let fields = sentinel.master_fields();
                let field = |name: &str| {
                    fields
                        .iter()
                        .find(|(f, _)| f == name)
                        .map(|(_, v)| v.as_str())
                };
                if field("num-slaves") == Some(&replicas.to_string())
                    && field("num-other-sentinels") == Some("2")
                {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the sentinels did not learn the set: {fields:?}\n{}",
                    sentinel.log()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Some(set)
    }

    /// `redis-sentinel://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3/NAME/0`.
    pub fn url(&self) -> String {
        let sentinels: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        format!("redis-sentinel://{}/{PRIMARY_NAME}/0", sentinels.join(","))
    }

    /// The data servers, the first started as the primary.
    pub fn servers(&self) -> &[RedisServer] {
        &self.servers
    }

    /// The server the first answering sentinel names as the primary.
    pub fn primary(&self) -> Option<&RedisServer> {
        let port = self
            .sentinels
            .iter()
            .find_map(SentinelProcess::primary_port)?;
        self.servers.iter().find(|s| s.port == port)
    }

    /// `kill -9` of the current primary; answers its port.
    pub fn kill9_primary(&self) -> u16 {
        let primary = self.primary().expect("the sentinels name a primary");
        primary.kill9();
        primary.port
    }

    /// Wait until the sentinels name a primary other than the one on `old` and that
    /// server reports `role:master`; panics past `within`.
    pub fn wait_for_promotion(&self, old: u16, within: Duration) -> &RedisServer {
        let deadline = Instant::now() + within;
        loop {
            let promoted = self
                .sentinels
                .iter()
                .filter_map(SentinelProcess::primary_port)
                .find(|port| *port != old)
                .and_then(|port| self.servers.iter().find(|s| s.port == port))
                .filter(|s| s.cli(&["INFO", "replication"]).contains("role:master"));
            if let Some(server) = promoted {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "no replica promoted within {within:?}: {}",
                self.sentinels[0].log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for RedisSentinelSet {
    fn drop(&mut self) {
        // The sentinels first, so that they reconfigure nothing while the servers stop.
        self.sentinels.clear();
    }
}
