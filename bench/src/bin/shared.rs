//! `shared`: the service on a shared Redis and on a shared etcd cluster against the
//! embedded durable store, in one run.
//!
//! It starts its own `redis-server` (loopback, a temporary directory, the append-only
//! file synced on every write, as the README recommends) and its own three-member etcd
//! cluster (loopback, every member's data in a temporary directory). First, with no
//! service in the way, what each store itself carries: 64 concurrent one-key commits,
//! then 64 concurrent one-key gets, one second each. Then, for each client count and
//! each group count (the clients' creates spread over that many groups): the service on
//! the durable store (one node, the baseline), then, for each shared store, with each
//! node count (every node a full service with its own connection, clients spread over
//! the nodes), all driven by the same closed-loop generator as `load`. It also counts
//! the store calls (each a network round trip on Redis and on etcd) of a lone `create`,
//! `match` and `release`, and reads Redis's own time per create from `INFO
//! commandstats`. `--stores` picks the shared stores (default `redis,etcd`); the durable
//! baseline always runs.
//!
//! ```text
//! cargo run --release -p request-access-bench --bin shared -- --clients 64 --nodes 1,3
//! ```
//!
//! stdout gets one JSON object: `{"round_trips":{"create":..,"match":..,"release":..},
//! "etcd_round_trips":{"create":..,"match":..,"release":..},
//! "store_ceilings":{"redis":{"commits_per_s":..,"gets_per_s":..},"etcd":{..}},
//! "runs":[{"clients":64,"groups":1,"store":"durable","nodes":1,"throughput":..,"p99_ms":..},
//! {"clients":64,"groups":1,"store":"redis","nodes":1,"throughput":..,"over_durable":..,
//! "store_calls_per_create":..,"commits_per_create":..,"redis_usec_per_create":..,
//! "ceiling_creates_per_s":..},..,
//! {"clients":64,"groups":1,"store":"etcd","nodes":1,"throughput":..,"over_durable":..,
//! "store_calls_per_create":..,"commits_per_create":..},..]}` (`round_trips` is Redis's;
//! a store left out of `--stores` has no round trips, no ceiling and no runs). The exit
//! code is 1 when any request failed, after the whole JSON object is written.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use request_access_bench::*;
use request_access_host::api::{
    CommitOutcome, CreateRequest, Entry, KeyRange, MatchRequest, Mutation, Precondition, Snapshot,
};
use request_access_host::config::StoreConfig;
use request_access_host::store::{DurableStore, EtcdStore, RedisStore, StateStore, StoreError};
use request_access_testkit::{EtcdCluster, RedisServer};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(
    name = "shared",
    about = "The service on a shared Redis and etcd against the durable store"
)]
struct Cli {
    /// Concurrent clients, one set of runs per value.
    #[arg(long, value_delimiter = ',', default_value = "64")]
    clients: Vec<usize>,
    /// Shared stores to measure against the durable store.
    #[arg(long, value_delimiter = ',', default_value = "redis,etcd")]
    stores: Vec<Shared>,
    /// Groups the clients' creates spread over, one set of runs per value (a value above
    /// the client count is skipped).
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    groups: Vec<usize>,
    /// Service nodes sharing the store, one run per value.
    #[arg(long, value_delimiter = ',', default_value = "1,3")]
    nodes: Vec<usize>,
    /// Measured seconds per run.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Warm-up seconds per run, not recorded.
    #[arg(long, default_value_t = 0.5)]
    warmup: f64,
}

/// A shared store.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Shared {
    Redis,
    Etcd,
}

impl Shared {
    fn name(self) -> &'static str {
        match self {
            Shared::Redis => "redis",
            Shared::Etcd => "etcd",
        }
    }

    /// A new connection to the store at `url`, its keys under `prefix`.
    async fn connect(self, url: &str, prefix: &str) -> anyhow::Result<Arc<dyn StateStore>> {
        let config = store_config(prefix);
        Ok(match self {
            Shared::Redis => Arc::new(RedisStore::connect(url, &config).await?),
            Shared::Etcd => Arc::new(EtcdStore::connect(url, &config).await?),
        })
    }
}

/// Store calls counted (shared by every node of a run): on Redis and etcd, each is a
/// round trip.
#[derive(Default)]
struct Calls {
    all: AtomicU64,
    commits: AtomicU64,
}

impl Calls {
    fn read(&self) -> (u64, u64) {
        (
            self.all.load(Ordering::Relaxed),
            self.commits.load(Ordering::Relaxed),
        )
    }
}

/// A store that counts the calls reaching it into `calls`.
struct Counting {
    inner: Arc<dyn StateStore>,
    calls: Arc<Calls>,
}

#[async_trait::async_trait]
impl StateStore for Counting {
    async fn get(&self, keys: &[String]) -> Result<Vec<Option<Entry>>, StoreError> {
        self.calls.all.fetch_add(1, Ordering::Relaxed);
        self.inner.get(keys).await
    }

    async fn scan(&self, start: &str, end: &str, limit: u32) -> Result<Vec<Entry>, StoreError> {
        self.calls.all.fetch_add(1, Ordering::Relaxed);
        self.inner.scan(start, end, limit).await
    }

    // Forwarded as one call: the backends answer it in one round trip (the trait's
    // default would count, and make, a get and a scan).
    async fn read(&self, keys: &[String], ranges: &[KeyRange]) -> Result<Snapshot, StoreError> {
        self.calls.all.fetch_add(1, Ordering::Relaxed);
        self.inner.read(keys, ranges).await
    }

    async fn commit(
        &self,
        preconditions: &[Precondition],
        mutations: &[Mutation],
    ) -> Result<CommitOutcome, StoreError> {
        self.calls.all.fetch_add(1, Ordering::Relaxed);
        self.calls.commits.fetch_add(1, Ordering::Relaxed);
        self.inner.commit(preconditions, mutations).await
    }

    fn is_remote(&self) -> bool {
        self.inner.is_remote()
    }

    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
}

fn store_config(prefix: &str) -> StoreConfig {
    StoreConfig {
        prefix: prefix.into(),
        ..StoreConfig::default()
    }
}

/// Redis's own time so far in the commands the service sends, in microseconds (`INFO
/// commandstats`). Only the top-level commands: the script calls' time already holds
/// that of the commands they run, which commandstats lists again on their own lines.
fn redis_usec(redis: &RedisServer) -> u64 {
    const SENT: [&str; 5] = ["evalsha", "evalsha_ro", "eval", "script", "wait"];
    redis
        .cli(&["INFO", "commandstats"])
        .lines()
        .filter_map(|line| {
            let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            if !SENT.contains(&name) {
                return None;
            }
            stats
                .split("usec=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// Store calls of a lone create, match and release on the store at `url`, averaged over
/// 100 of each.
fn round_trips(store: Shared, url: &str) -> anyhow::Result<Value> {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    tokio.block_on(async {
        let calls = Arc::new(Calls::default());
        let counting = Arc::new(Counting {
            inner: store.connect(url, "round-trips:").await?,
            calls: calls.clone(),
        });
        let (_, runtime) = service_router(100, 1, counting)?;
        let counted = || calls.read().0;
        let (mut create, mut matched, mut release) = (0, 0, 0);
        for i in 0..100 {
            let request = CreateRequest {
                service_id: service_id(i),
                resource_group: GROUP.into(),
                provide_code: true,
                phone_number: None,
                booking_expiration_timeout: None,
            };
            let before = counted();
            let info = runtime.create(&request).await?;
            create += counted() - before;
            let before = counted();
            runtime
                .match_access(&MatchRequest {
                    access_number: info.access_number,
                    access_code: info.access_code,
                    phone_number: None,
                })
                .await?;
            matched += counted() - before;
            runtime.create(&request).await?;
            let before = counted();
            runtime.release(&service_id(i), GROUP).await?;
            release += counted() - before;
        }
        Ok(json!({
            "create": create as f64 / 100.0,
            "match": matched as f64 / 100.0,
            "release": release as f64 / 100.0,
        }))
    })
}

/// Concurrent tasks of [`store_ceiling`].
const CEILING_TASKS: usize = 64;

/// What the store at `url` itself carries: one-key commits per second, then one-key
/// gets per second, from [`CEILING_TASKS`] concurrent tasks for `seconds` each. Each
/// task commits a key no other task touches, on the condition that it is absent (the
/// first time) or still at the revision the task last wrote, as a create's commit checks
/// the keys it read; the gets read those keys.
fn store_ceiling(store: Shared, url: &str, seconds: Duration) -> anyhow::Result<Value> {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    tokio.block_on(async {
        let store = store.connect(url, "ceiling:").await?;
        let key = |task: usize| format!("ceiling:task-{task}");
        let commits_per_s = per_second(seconds, |task, until| {
            let (store, key) = (store.clone(), key(task));
            async move {
                let mut revision = None;
                let mut done = 0u64;
                while Instant::now() < until {
                    let precondition = Precondition {
                        key: key.clone(),
                        revision,
                    };
                    let put = Mutation::Put(key.clone(), vec![b'x'; 100]);
                    match store.commit(&[precondition], &[put]).await? {
                        CommitOutcome::Committed(at) => revision = Some(at),
                        CommitOutcome::Conflict(key) => {
                            anyhow::bail!("{key}, written by one task only, conflicted")
                        }
                    }
                    done += 1;
                }
                Ok(done)
            }
        })
        .await?;
        let gets_per_s = per_second(seconds, |task, until| {
            let (store, keys) = (store.clone(), vec![key(task)]);
            async move {
                let mut done = 0u64;
                while Instant::now() < until {
                    if store.get(&keys).await?[0].is_none() {
                        anyhow::bail!("{} vanished after its commits", keys[0]);
                    }
                    done += 1;
                }
                Ok(done)
            }
        })
        .await?;
        Ok(json!({
            "commits_per_s": commits_per_s.round(),
            "gets_per_s": gets_per_s.round(),
        }))
    })
}

/// [`CEILING_TASKS`] tasks of `task`, each given its index and the instant to stop at
/// (`seconds` from now) and answering how many calls it completed: their sum per second.
async fn per_second<F, T>(seconds: Duration, task: T) -> anyhow::Result<f64>
where
    T: Fn(usize, Instant) -> F,
    F: Future<Output = anyhow::Result<u64>> + Send + 'static,
{
    let started = Instant::now();
    let until = started + seconds;
    let tasks: Vec<_> = (0..CEILING_TASKS)
        .map(|i| tokio::spawn(task(i, until)))
        .collect();
    let mut done = 0;
    for handle in tasks {
        done += handle.await??;
    }
    Ok(done as f64 / started.elapsed().as_secs_f64())
}

fn main() -> ExitCode {
    exit_code("shared", main_inner())
}

fn main_inner() -> anyhow::Result<bool> {
    let cli = Cli::parse();
    let seconds = seconds_arg("seconds", cli.seconds)?;
    let warmup = seconds_arg("warmup", cli.warmup)?;
    for (name, values) in [
        ("clients", &cli.clients),
        ("groups", &cli.groups),
        ("nodes", &cli.nodes),
    ] {
        if values.is_empty() || values.contains(&0) {
            bail!("--{name} must list positive numbers");
        }
    }
    if let Some(groups) = cli.groups.iter().find(|&&g| g > MAX_GROUPS) {
        bail!("--groups {groups} is over {MAX_GROUPS}");
    }
    let wants = |store| cli.stores.contains(&store);
    let redis = if wants(Shared::Redis) {
        Some(RedisServer::start().context("redis-server is not installed")?)
    } else {
        None
    };
    let etcd = if wants(Shared::Etcd) {
        Some(EtcdCluster::start(3).context("etcd (or etcdctl) is not installed")?)
    } else {
        None
    };
    // The shared stores in order, each with its URL.
    let shared: Vec<(Shared, String)> = [
        redis.as_ref().map(|r| (Shared::Redis, r.url())),
        etcd.as_ref().map(|e| (Shared::Etcd, e.url())),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut out = serde_json::Map::new();
    let mut ceilings = serde_json::Map::new();
    for (store, url) in &shared {
        let trips = round_trips(*store, url)?;
        eprintln!(
            "shared: store calls per lone call on {}: {trips}",
            store.name()
        );
        let key = match store {
            Shared::Redis => "round_trips",
            Shared::Etcd => "etcd_round_trips",
        };
        out.insert(key.into(), trips);
        let ceiling = store_ceiling(*store, url, Duration::from_secs(1))?;
        eprintln!(
            "shared: {} itself, {CEILING_TASKS} tasks: {ceiling}",
            store.name()
        );
        ceilings.insert(store.name().into(), ceiling);
    }
    if !ceilings.is_empty() {
        out.insert("store_ceilings".into(), ceilings.into());
    }
    let generator = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let dir = tempfile::tempdir()?;
    let mut runs = Vec::new();
    let mut failed = false;
    let sets = cli.clients.iter().flat_map(|&clients| {
        cli.groups
            .iter()
            .filter(move |&&groups| groups <= clients)
            .map(move |&groups| (clients, groups))
    });
    for (set, (clients, groups)) in sets.enumerate() {
        let load = format!("{clients} clients, {groups} group{}", plural(groups));
        let durable_store: Arc<dyn StateStore> =
            Arc::new(DurableStore::open(&dir.path().join(format!("{set}.redb")))?);
        let (router, _) = service_router(clients, groups, durable_store)?;
        let durable = Server::start(router)?;
        probe(&generator, durable.address, Target::Service)?;
        let baseline = run(
            &generator,
            &[durable.address],
            Target::Service,
            (clients, groups),
            warmup,
            seconds,
        )?;
        durable.stop();
        failed |= baseline.errors > 0;
        eprintln!(
            "shared: {load}, durable: {:.0} creates/s, p99 {:.2} ms",
            baseline.throughput(),
            baseline.quantile_ms(0.99)
        );
        runs.push(json!({
            "clients": clients, "groups": groups, "store": "durable", "nodes": 1,
            "throughput": baseline.throughput().round(),
            "p99_ms": baseline.quantile_ms(0.99),
            "errors": baseline.errors,
        }));
        for (store, url) in &shared {
            let (store, name) = (*store, store.name());
            for &nodes in &cli.nodes {
                let prefix = format!("run-{set}-{nodes}:");
                let calls = Arc::new(Calls::default());
                let servers = (0..nodes)
                    .map(|_| {
                        let (url, prefix, calls) = (url.clone(), prefix.clone(), calls.clone());
                        Server::start_with(async move {
                            // Each node its own connection, all counted together.
                            let store = Counting {
                                inner: store.connect(&url, &prefix).await?,
                                calls,
                            };
                            Ok(service_router(clients, groups, Arc::new(store))?.0)
                        })
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let addresses: Vec<_> = servers.iter().map(|s| s.address).collect();
                for &address in &addresses {
                    probe(&generator, address, Target::Service)?;
                }
                let redis_time = || {
                    redis
                        .as_ref()
                        .filter(|_| store == Shared::Redis)
                        .map(redis_usec)
                };
                let (before, usec_before) = (calls.read(), redis_time());
                let result = run(
                    &generator,
                    &addresses,
                    Target::Service,
                    (clients, groups),
                    warmup,
                    seconds,
                )?;
                let after = calls.read();
                let (calls, commits) = (after.0 - before.0, after.1 - before.1);
                let usec = redis_time()
                    .zip(usec_before)
                    .map(|(after, before)| after - before);
                for server in servers {
                    server.stop();
                }
                failed |= result.errors > 0;
                let creates = result.answered.max(1) as f64;
                let over = result.throughput() / baseline.throughput().max(1.0);
                let usec_per_create = usec.map(|usec| usec as f64 / creates);
                eprintln!(
                    "shared: {load}, {name} x{nodes}: {:.0} creates/s ({over:.3} of durable), \
                     p99 {:.2} ms, {:.1} store calls ({:.1} commits){} per create",
                    result.throughput(),
                    result.quantile_ms(0.99),
                    calls as f64 / creates,
                    commits as f64 / creates,
                    usec_per_create
                        .map(|usec| format!(" and {usec:.0} us of Redis"))
                        .unwrap_or_default(),
                );
                if let Some(error) = &result.first_error {
                    eprintln!("         {} errors, the first: {error}", result.errors);
                }
                let tenths = |x: f64| (x * 10.0).round() / 10.0;
                let mut entry = json!({
                    "clients": clients, "groups": groups, "store": name, "nodes": nodes,
                    "throughput": result.throughput().round(),
                    "over_durable": (over * 1000.0).round() / 1000.0,
                    "p99_ms": result.quantile_ms(0.99),
                    "errors": result.errors,
                    "store_calls_per_create": tenths(calls as f64 / creates),
                    "commits_per_create": tenths(commits as f64 / creates),
                });
                if let Some(usec_per_create) = usec_per_create {
                    entry["redis_usec_per_create"] = usec_per_create.round().into();
                    entry["ceiling_creates_per_s"] =
                        (1e6 / usec_per_create.max(1.0)).round().into();
                }
                runs.push(entry);
            }
        }
    }
    generator.shutdown_timeout(Duration::from_secs(2));
    out.insert("runs".into(), runs.into());
    println!("{}", Value::Object(out));
    Ok(!failed)
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use request_access_host::store::MemoryStore;

    /// The round-trip figures count what the backend is asked: a `read` of keys and a
    /// range is one call (one round trip on Redis and etcd), not a get and a scan.
    #[test]
    fn a_read_counts_as_one_store_call() {
        let calls = Arc::new(Calls::default());
        let counting = Counting {
            inner: Arc::new(MemoryStore::new()),
            calls: calls.clone(),
        };
        let range = KeyRange {
            start: "a".into(),
            end: "z".into(),
            limit: 10,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let snapshot = runtime
            .block_on(counting.read(&["k".into()], &[range]))
            .unwrap();
        assert_eq!(snapshot.entries.len(), 1);
        assert_eq!(snapshot.ranges.len(), 1);
        assert_eq!(calls.read(), (1, 0));
    }
}
