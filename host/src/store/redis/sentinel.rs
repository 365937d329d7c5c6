//! Redis Sentinel: the Redis backend on whichever server the sentinels name primary.
//!
//! `redis-sentinel://[user:password@]host:port[,host:port...]/primary-name[/db]`: the
//! sentinels (port 26379 where none is given), the name they monitor the primary under
//! and the database (0 by default). The user and password are the data servers' (the
//! primary's and its replicas'), percent-encoded as in a `redis://` URL; the sentinels
//! are asked without them. Connections are plain TCP (no TLS).
//!
//! The sentinels are asked in turn (`SENTINEL get-master-addr-by-name`), and the
//! server one names serves only once it reports `role:master` and passes the
//! durability check: a sentinel with a stale view may name a demoted primary, which
//! must not be written to. When a call finds the primary gone (no answer, a closed
//! connection), demoted (`READONLY`) or cut off from its replicas (`NOREPLICAS`, under
//! `min-replicas-to-write`), the store drops its connection, answers every call at once
//! with [`StoreError::Unavailable`], and a background task asks the sentinels again
//! (every 100 ms) until one names a primary, usually the replica they promoted.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::AsyncConnectionConfig;
use request_access_config::{StoreConfig, redact_url};

use super::super::StoreError;
use super::connection::{Link, bounded, response_timeout, vet};

/// The URL scheme of a store found through Sentinel.
pub(super) const SCHEME: &str = "redis-sentinel://";

/// Sentinel's own port, where the URL gives none.
const DEFAULT_PORT: u16 = 26379;

/// The current connection, and where to look for the next one.
pub(super) struct Primary {
    /// `None` while the sentinels are being asked for a lost primary's successor.
    pub(super) link: ArcSwapOption<Link>,
    /// `None` on one server.
    pub(super) sentinels: Option<Sentinels>,
}

impl Primary {
    /// A call on `used` failed as a lost primary does (no answer, a closed connection,
    /// `READONLY`, `NOREPLICAS`). Behind Sentinel, the first such failure drops the
    /// connection, so that calls fail fast until a task has found the primary the
    /// sentinels name.
    pub(super) fn lost(self: &Arc<Self>, used: &Arc<Link>) {
        let (Some(sentinels), Ok(runtime)) =
            (&self.sentinels, tokio::runtime::Handle::try_current())
        else {
            return;
        };
        // Only the first failure on this connection drops it and starts the search.
        let previous = self.link.compare_and_swap(&Some(used.clone()), None);
        if !previous.as_ref().is_some_and(|p| Arc::ptr_eq(p, used)) {
            return;
        }
        tracing::warn!(store = %sentinels.location, "the primary is lost; asking the sentinels for the current one");
        let primary = Arc::downgrade(self);
        runtime.spawn(async move {
            let mut last_error = String::new();
            let started = std::time::Instant::now();
            // Each round asks every sentinel within the timeouts; a dropped store ends it.
            while let Some(primary) = primary.upgrade() {
                let Some(sentinels) = &primary.sentinels else {
                    return;
                };
                match sentinels.find().await {
                    Ok((link, address)) => {
                        primary.link.store(Some(Arc::new(link)));
                        tracing::info!(store = %sentinels.location, primary = %address, after_ms = started.elapsed().as_millis() as u64, "serving on the primary the sentinels name");
                        return;
                    }
                    Err(e) => {
                        let e = e.to_string();
                        if e != last_error {
                            tracing::warn!(store = %sentinels.location, error = %e, "no primary yet");
                            last_error = e;
                        }
                    }
                }
                drop(primary);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    }
}

/// The sentinels of one primary, and how to connect to what they name.
pub(super) struct Sentinels {
    /// `host:port` of each, in the URL's order.
    addresses: Vec<String>,
    /// The name they monitor the primary under.
    name: String,
    /// `user:password@` as written in the URL, or nothing.
    credentials: String,
    db: u32,
    config: StoreConfig,
    /// The URL without its password, for messages.
    pub(super) location: String,
}

impl Sentinels {
    /// The sentinels of a `redis-sentinel://` URL; a malformed one is refused, in words
    /// that never repeat the password.
    pub(super) fn parse(url: &str, config: &StoreConfig) -> Result<Sentinels, StoreError> {
        let location = redact_url(url);
        let malformed = |why: &str| {
            StoreError::Unavailable(format!(
                "{location}: {why} (expected {SCHEME}[user:password@]host:port[,host:port...]\
                 /primary-name[/db])"
            ))
        };
        if config.tls_ca_file.is_some() {
            return Err(malformed(
                "tls_ca_file is set but redis-sentinel:// connects without TLS",
            ));
        }
        let rest = url
            .strip_prefix(SCHEME)
            .ok_or_else(|| malformed("not a Sentinel URL"))?;
        let (authority, path) = rest
            .split_once('/')
            .ok_or_else(|| malformed("no primary name"))?;
        // The last `@` of the authority ends the credentials, as `redact_url` reads it.
        let (credentials, hosts) = match authority.rfind('@') {
            Some(at) => (&authority[..=at], &authority[at + 1..]),
            None => ("", authority),
        };
        let addresses = hosts
            .split(',')
            .map(|host| {
                // An IPv6 address is bracketed, so a port follows the last `:` after `]`.
                let (name, port) = match host.rsplit_once(':') {
                    Some((name, port)) if !host.ends_with(']') => (name, Some(port)),
                    _ => (host, None),
                };
                let bracketed = name.starts_with('[') && name.ends_with(']');
                if name.is_empty()
                    || (name.contains(':') && !bracketed)
                    || name.contains(['/', '?', '#', '@', ' '])
                {
                    return Err(malformed(&format!("bad sentinel address {host:?}")));
                }
                let port = match port {
                    None => DEFAULT_PORT,
                    Some(port) => port
                        .parse::<u16>()
                        .ok()
                        .filter(|p| *p > 0)
                        .ok_or_else(|| malformed(&format!("bad port in {host:?}")))?,
                };
                Ok(format!("{name}:{port}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (name, db) = match path.split_once('/') {
            Some((name, db)) => (
                name,
                db.parse::<u32>()
                    .map_err(|_| malformed(&format!("bad database {db:?}")))?,
            ),
            None => (path, 0),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_graphic() && c != '?') {
            return Err(malformed("bad primary name"));
        }
        Ok(Sentinels {
            addresses,
            name: name.to_string(),
            credentials: credentials.to_string(),
            db,
            config: config.clone(),
            location,
        })
    }

    /// A connection to the primary the first sentinel able to name one names, once it
    /// reports `role:master` and passes the durability check; with its `host:port`.
    pub(super) async fn find(&self) -> Result<(Link, String), StoreError> {
        let mut failures = Vec::new();
        let mut tried = Vec::new();
        for sentinel in &self.addresses {
            let address = match self.ask(sentinel).await {
                Ok(Some(address)) => address,
                Ok(None) => {
                    failures.push(format!("sentinel {sentinel} knows no {:?}", self.name));
                    continue;
                }
                Err(e) => {
                    failures.push(e);
                    continue;
                }
            };
            // Sentinels that agree name the same server: try it once.
            if tried.contains(&address) {
                continue;
            }
            tried.push(address.clone());
            match self.open(&address).await {
                Ok(link) => return Ok((link, address)),
                Err(e) => failures.push(e.detail().to_string()),
            }
        }
        Err(StoreError::Unavailable(format!(
            "{}: no primary: {}",
            self.location,
            failures.join("; ")
        )))
    }

    /// The primary's `host:port` as `sentinel` names it, `None` where it knows no such
    /// name.
    async fn ask(&self, sentinel: &str) -> Result<Option<String>, String> {
        let location = format!("sentinel {sentinel}");
        let failed = |e: redis::RedisError| format!("{location}: {e}");
        let client = redis::Client::open(format!("redis://{sentinel}")).map_err(failed)?;
        let limit = self.config.connect_timeout + self.config.command_timeout;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.config.connect_timeout))
            .set_response_timeout(Some(self.config.command_timeout));
        let answer = bounded(&location, limit, async {
            let mut connection = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(&self.name)
                .query_async::<Option<(String, u16)>>(&mut connection)
                .await
        })
        .await
        .map_err(|e| e.detail().to_string())?
        .map_err(failed)?;
        Ok(answer.map(|(host, port)| {
            // An IPv6 address goes in brackets in a URL.
            if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            }
        }))
    }

    /// A connection to the data server at `address` if it is a primary whose settings
    /// keep what it acknowledges (or weaker durability is accepted).
    async fn open(&self, address: &str) -> Result<Link, StoreError> {
        let url = format!("redis://{}{address}/{}", self.credentials, self.db);
        let location = redact_url(&url);
        let client = super::connection::client(&url, &self.config, &location)?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.config.connect_timeout))
            .set_response_timeout(Some(response_timeout(&self.config)));
        let limit = self.config.connect_timeout + self.config.command_timeout;
        let connection = bounded(
            &location,
            limit,
            client.get_multiplexed_async_connection_with_config(&config),
        )
        .await?
        .map_err(|e| StoreError::Unavailable(format!("{location}: {e}")))?;
        let link = Link::Direct(connection);
        let mut command = redis::cmd("INFO");
        command.arg("replication");
        let info: String = bounded(
            &location,
            self.config.command_timeout,
            command.query_async(&mut link.clone()),
        )
        .await?
        .map_err(|e| StoreError::Unavailable(format!("{location}: {e}")))?;
        if !info.lines().any(|line| line.trim() == "role:master") {
            return Err(StoreError::Unavailable(format!(
                "{location}: named primary but is not (yet) role:master"
            )));
        }
        vet(&link, &self.config, &location).await?;
        Ok(link)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::contract::{self, put};
    use crate::store::{RedisStore, StateStore};
    use request_access_guest::api::CommitOutcome;
    use request_access_testkit::RedisSentinelSet;
    use std::time::Instant;

    fn parse(url: &str) -> Result<Sentinels, String> {
        Sentinels::parse(url, &StoreConfig::default()).map_err(|e| e.to_string())
    }

    #[test]
    fn the_scheme_is_one_the_configuration_accepts() {
        assert!(request_access_config::STORE_SCHEMES.contains(&SCHEME));
    }

    #[test]
    fn urls_name_sentinels_a_primary_and_a_database() {
        let s = parse("redis-sentinel://u:p%40ss@a:1,b,[::1]:3,[::2]/main/2").unwrap();
        assert_eq!(s.addresses, ["a:1", "b:26379", "[::1]:3", "[::2]:26379"]);
        assert_eq!((s.name.as_str(), s.db), ("main", 2));
        assert_eq!(s.credentials, "u:p%40ss@");
        assert_eq!(
            s.location,
            "redis-sentinel://u:***@a:1,b,[::1]:3,[::2]/main/2"
        );
        let s = parse("redis-sentinel://a:1/main").unwrap();
        assert_eq!((s.credentials.as_str(), s.db), ("", 0));
        for (url, why) in [
            ("redis-sentinel://a:1", "no primary name"),
            ("redis-sentinel://a:1/", "bad primary name"),
            ("redis-sentinel://:s3cret@a:x/m", "bad port in \"a:x\""),
            (
                "redis-sentinel://:s3cret@a:1,/m",
                "bad sentinel address \"\"",
            ),
            (
                "redis-sentinel://:s3cret@::1:5/m",
                "bad sentinel address \"::1:5\"",
            ),
            ("redis-sentinel://:s3cret@a:0/m", "bad port in \"a:0\""),
            (
                "redis-sentinel://:s3cret@a:1/m/zero",
                "bad database \"zero\"",
            ),
        ] {
            let e = parse(url).err().expect("refused");
            assert!(e.contains(why), "{url}: {e}");
            assert!(!e.contains("s3cret"), "{e}");
        }
    }

    fn config() -> StoreConfig {
        StoreConfig {
            connect_timeout: Duration::from_millis(300),
            command_timeout: Duration::from_millis(500),
            ..StoreConfig::default()
        }
    }

    #[tokio::test]
    async fn honours_the_store_contract() {
        let Some(set) = RedisSentinelSet::start(1) else {
            return;
        };
        let store = RedisStore::connect(&set.url(), &config()).await.unwrap();
        assert_eq!(store.kind(), "redis-sentinel");
        contract::check(&store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_histories_are_linearizable() {
        let Some(set) = RedisSentinelSet::start(1) else {
            return;
        };
        let store = RedisStore::connect(&set.url(), &config()).await.unwrap();
        contract::check_linearizable(std::sync::Arc::new(store), 4, 150).await;
    }

    #[tokio::test]
    async fn a_primary_with_settings_that_lose_commits_is_refused() {
        let Some(set) = RedisSentinelSet::start(1) else {
            return;
        };
        set.primary()
            .unwrap()
            .cli(&["CONFIG", "SET", "appendfsync", "everysec"]);
        let e = RedisStore::connect(&set.url(), &config())
            .await
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("appendfsync is \"everysec\""), "{e}");
    }

    #[tokio::test]
    async fn a_replica_is_never_taken_for_the_primary() {
        let Some(set) = RedisSentinelSet::start(1) else {
            return;
        };
        let sentinels = Sentinels::parse(&set.url(), &config()).unwrap();
        let replica = set
            .servers()
            .iter()
            .find(|s| s.port != set.primary().unwrap().port)
            .unwrap();
        let e = sentinels
            .open(&format!("127.0.0.1:{}", replica.port))
            .await
            .err()
            .expect("a replica is refused");
        assert!(e.to_string().contains("not (yet) role:master"), "{e}");
    }

    #[tokio::test]
    async fn the_password_appears_in_no_error() {
        let Some(set) = RedisSentinelSet::start(1) else {
            return;
        };
        // The servers have no password: AUTH fails on the primary found.
        let wrong = set.url().replace("://", "://:s3cret-pw@");
        let closed = format!(
            "redis-sentinel://:s3cret-pw@127.0.0.1:{}/{}",
            request_access_testkit::free_port(),
            request_access_testkit::PRIMARY_NAME
        );
        for url in [wrong, closed] {
            let e = RedisStore::connect(&url, &config())
                .await
                .err()
                .expect("refused")
                .to_string();
            assert!(!e.contains("s3cret"), "{e}");
            assert!(e.contains(":***@127.0.0.1"), "{e}");
        }
    }

    /// A server that answers `READONLY` (demoted, its connections left open) is left
    /// for the primary the sentinels name, without a reconnection by hand.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_readonly_answer_sends_the_store_back_to_the_sentinels() {
        let Some(set) = RedisSentinelSet::start(1) else {
            return;
        };
        let store = RedisStore::connect(&set.url(), &config()).await.unwrap();
        let primary = set.primary().unwrap();
        let replica = set
            .servers()
            .iter()
            .find(|s| s.port != primary.port)
            .unwrap();
        let connection = redis::Client::open(replica.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        store.hold(Link::Direct(connection));
        let e = store.commit(&[], &[put("k", b"v")]).await.unwrap_err();
        assert!(
            matches!(&e, StoreError::Unavailable(why) if why.contains("read only replica")),
            "{e}"
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Err(e) = store.commit(&[], &[put("k", b"w")]).await {
            assert!(Instant::now() < deadline, "not back: {e}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            primary
                .cli(&["--raw", "HGET", "request-access:{k}k", "v"])
                .trim(),
            "w"
        );
    }

    /// Four tasks commit (with `WAIT` to one of two replicas) before, through and after
    /// a `kill -9` of the primary: calls fail fast as unavailable while the sentinels
    /// elect, then the same store commits on the promoted replica. Reports how many
    /// acknowledged commits were lost.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failover_fails_fast_then_serves_on_the_promoted_replica() {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let Some(set) = RedisSentinelSet::start(2) else {
            return;
        };
        let store = std::sync::Arc::new(
            RedisStore::connect(
                &set.url(),
                &StoreConfig {
                    wait_replicas: 1,
                    wait_timeout: Duration::from_secs(1),
                    ..config()
                },
            )
            .await
            .unwrap(),
        );
        let killed = std::sync::Arc::new(std::sync::OnceLock::<Instant>::new());
        let (stop, acknowledged_count) = (
            std::sync::Arc::new(AtomicBool::new(false)),
            std::sync::Arc::new(AtomicUsize::new(0)),
        );
        let tasks: Vec<_> = (0..4)
            .map(|task| {
                let (store, killed, stop, count) = (
                    store.clone(),
                    killed.clone(),
                    stop.clone(),
                    acknowledged_count.clone(),
                );
                tokio::spawn(async move {
                    // (acknowledged keys, failures, slowest failure, first success after
                    // the kill, as time after it)
                    let (mut acknowledged, mut failures) = (Vec::new(), 0);
                    let (mut slowest, mut resumed) = (Duration::ZERO, None);
                    for i in 0.. {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let key = format!("t{task}.{i:05}");
                        let started = Instant::now();
                        match store.commit(&[], &[put(&key, key.as_bytes())]).await {
                            Ok(CommitOutcome::Committed(_)) => {
                                if let Some(kill) = killed.get().filter(|k| started > **k) {
                                    resumed.get_or_insert(kill.elapsed());
                                }
                                acknowledged.push(key);
                                count.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(other) => panic!("{other:?}"),
                            Err(e) => {
                                assert!(matches!(e, StoreError::Unavailable(_)), "{e}");
                                failures += 1;
                                slowest = slowest.max(started.elapsed());
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        }
                    }
                    (acknowledged, failures, slowest, resumed)
                })
            })
            .collect();
        let count = || acknowledged_count.load(Ordering::Relaxed);
        let deadline = Instant::now() + Duration::from_secs(30);
        while count() < 200 {
            assert!(Instant::now() < deadline, "a healthy set stalls");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let old = set.kill9_primary();
        killed.set(Instant::now()).unwrap();
        let at_kill = count();
        // Served again: 200 more acknowledged after the kill.
        while count() < at_kill + 200 {
            assert!(
                Instant::now() < deadline + Duration::from_secs(30),
                "no service 30 s after the primary died"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.store(true, Ordering::Relaxed);
        let (mut acknowledged, mut failures, mut slowest, mut resumed) =
            (Vec::new(), 0, Duration::ZERO, Duration::MAX);
        for task in tasks {
            let (a, f, s, r) = task.await.unwrap();
            acknowledged.extend(a);
            failures += f;
            slowest = slowest.max(s);
            resumed = resumed.min(r.unwrap_or(Duration::MAX));
        }
        // The command timeout bounds each call (generously: the machine is shared).
        assert!(slowest < Duration::from_secs(3), "a call took {slowest:?}");
        assert!(failures > 0, "the failover went unnoticed");
        let promoted = set.wait_for_promotion(old, Duration::from_secs(10));
        assert_ne!(promoted.port, old);
        let mut lost = 0;
        for chunk in acknowledged.chunks(64) {
            lost += store
                .get(chunk)
                .await
                .unwrap()
                .iter()
                .filter(|e| e.is_none())
                .count();
        }
        eprintln!(
            "sentinel failover: served again {resumed:?} after kill -9, {failures} calls \
             failed meanwhile (slowest {slowest:?}), {lost} of {} acknowledged commits lost",
            acknowledged.len()
        );
        assert_eq!(lost, 0, "acknowledged commits lost");
    }
}
