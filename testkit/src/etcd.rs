//! A real etcd cluster of its own: members on free loopback ports, data in a temporary
//! directory, each stopped by its pid.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::{free_port, tool, tool_answering};

/// One member: its ports and, while it runs, its process.
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    process: Mutex<Option<Child>>,
}

/// An etcd cluster (Debian's `etcd-server`), with the settings a production cluster
/// for this service uses: a bounded history (auto-compaction), fast elections for the
/// tests (100 ms heartbeats, 1 s election timeout).
pub struct EtcdCluster {
    dir: tempfile::TempDir,
    members: Vec<Member>,
    /// Extra flags every member starts with.
    flags: Vec<String>,
}

impl EtcdCluster {
    /// `size` members, once the cluster has a leader; `None` where `etcd` is not
    /// installed (see [`tool`]).
    pub fn start(size: usize) -> Option<EtcdCluster> {
        EtcdCluster::start_with(size, &[])
    }

    /// [`EtcdCluster::start`], every member also given `flags` (`--max-txn-ops=...`).
    pub fn start_with(size: usize, flags: &[&str]) -> Option<EtcdCluster> {
        tool("etcd")?;
        tool_answering("etcdctl", &["version"])?;
        let cluster = EtcdCluster {
            dir: tempfile::tempdir().expect("a temporary directory"),
            members: (0..size)
                .map(|i| Member {
                    name: format!("m{i}"),
                    client_port: free_port(),
                    peer_port: free_port(),
                    process: Mutex::new(None),
                })
                .collect(),
            flags: flags.iter().map(|f| f.to_string()).collect(),
        };
        for i in 0..size {
            cluster.launch(i);
        }
        cluster.wait_for_leader(Duration::from_secs(30));
        Some(cluster)
    }

    /// `etcd://127.0.0.1:a,127.0.0.1:b,...`: every member.
    pub fn url(&self) -> String {
        format!("etcd://{}", self.endpoints())
    }

    /// `127.0.0.1:a,127.0.0.1:b,...`, as `etcdctl --endpoints` takes them.
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.client_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Where the members keep their data and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn log(&self, i: usize) -> PathBuf {
        self.dir
            .path()
            .join(format!("{}.log", self.members[i].name))
    }

    /// Start member `i` (again: it rejoins with its data directory).
    pub fn launch(&self, i: usize) {
        let m = &self.members[i];
        let peers: Vec<String> = self
            .members
            .iter()
            .map(|p| format!("{}=http://127.0.0.1:{}", p.name, p.peer_port))
            .collect();
        let client = format!("http://127.0.0.1:{}", m.client_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log(i))
            .expect("the member's log");
        let child = Command::new("etcd")
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(self.dir.path().join(&m.name))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &peers.join(",")])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", "request-access-test"])
            .args(["--heartbeat-interval", "100", "--election-timeout", "1000"])
            .args(["--auto-compaction-mode", "revision"])
            .args(["--auto-compaction-retention", "10000"])
            .args(&self.flags)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the log"))
            .stderr(log)
            .spawn()
            .expect("etcd runs");
        *m.process.lock().unwrap() = Some(child);
    }

    fn pid(&self, i: usize) -> Option<String> {
        self.members[i]
            .process
            .lock()
            .unwrap()
            .as_ref()
            .map(|c| c.id().to_string())
    }

    /// `kill -9` member `i`, by its pid, and reap it.
    pub fn kill9(&self, i: usize) {
        if let Some(mut child) = self.members[i].process.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freeze member `i` (SIGSTOP): its connections stay open and nothing answers.
    pub fn freeze(&self, i: usize) {
        if let Some(pid) = self.pid(i) {
            let _ = Command::new("kill").args(["-STOP", &pid]).status();
        }
    }

    /// Let a frozen member go on (SIGCONT).
    pub fn thaw(&self, i: usize) {
        if let Some(pid) = self.pid(i) {
            let _ = Command::new("kill").args(["-CONT", &pid]).status();
        }
    }

    /// Each running member's `etcdctl endpoint status`, as JSON.
    fn statuses(&self) -> Vec<(usize, serde_json::Value)> {
        (0..self.members.len())
            .filter(|i| self.pid(*i).is_some())
            .filter_map(|i| {
                let out = self
                    .etcdctl(&[
                        "--endpoints",
                        &format!("127.0.0.1:{}", self.members[i].client_port),
                        "--command-timeout",
                        "1s",
                        "endpoint",
                        "status",
                        "-w",
                        "json",
                    ])
                    .ok()?;
                let all: serde_json::Value = serde_json::from_str(&out).ok()?;
                Some((i, all.get(0)?.get("Status")?.clone()))
            })
            .collect()
    }

    /// The member that leads now, as running members see it.
    pub fn leader(&self) -> Option<usize> {
        self.statuses().into_iter().find_map(|(i, status)| {
            let me = status["header"]["member_id"].as_u64()?;
            (me != 0 && status["leader"].as_u64() == Some(me)).then_some(i)
        })
    }

    /// Wait until a running member leads, and return it.
    pub fn wait_for_leader(&self, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            if let Some(i) = self.leader() {
                return i;
            }
            assert!(
                Instant::now() < deadline,
                "the etcd cluster elected no leader: {}",
                (0..self.members.len())
                    .map(|i| std::fs::read_to_string(self.log(i)).unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join("\n")
                    .lines()
                    .rev()
                    .take(30)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `etcdctl` against the whole cluster (unless `args` names endpoints): its output,
    /// or its error output when it fails.
    pub fn etcdctl(&self, args: &[&str]) -> Result<String, String> {
        let mut command = Command::new("etcdctl");
        if !args.contains(&"--endpoints") {
            command.args(["--endpoints", &self.endpoints()]);
        }
        let out = command
            .args(args)
            .env("ETCDCTL_API", "3")
            .output()
            .expect("etcdctl runs");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.thaw(i);
            self.kill9(i);
        }
    }
}
