//! `shared`: the service on a shared Redis and on a shared etcd cluster against the
//! embedded durable store, in one run.
//!
//! It starts its own `redis-server` (loopback, a temporary directory, the append-only
//! file synced on every write, as the README recommends) and its own three-member etcd
//! cluster (loopback, every member's data in a temporary directory), then, for each
//! client count: the service on the durable store (one node, the baseline), then, for
//! each shared store, with each node count (every node a full service with its own
//! connection, clients spread over the nodes), all driven by the same closed-loop
//! generator as `load`. It also counts the store calls (each a network round trip on
//! Redis and on etcd) of a lone `create`, `match` and `release`, and reads Redis's own
//! time per create from `INFO commandstats`. `--stores` picks the shared stores (default
//! `redis,etcd`); the durable baseline always runs.
//!
//! ```text
//! cargo run --release -p request-access-bench --bin shared -- --clients 64 --nodes 1,3
//! ```
//!
//! stdout gets one JSON object: `{"round_trips":{"create":..,"match":..,"release":..},
//! "etcd_round_trips":{"create":..,"match":..,"release":..},
//! "runs":[{"clients":64,"store":"durable","nodes":1,"throughput":..,"p99_ms":..},
//! {"clients":64,"store":"redis","nodes":1,"throughput":..,"over_durable":..,
//! "store_calls_per_create":..,"redis_usec_per_create":..,"ceiling_creates_per_s":..},..,
//! {"clients":64,"store":"etcd","nodes":1,"throughput":..,"over_durable":..,
//! "store_calls_per_create":..},..]}` (`round_trips` is Redis's; a store left out of
//! `--stores` has no round trips and no runs). The exit code is 1 when any request
//! failed.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use clap::Parser;
use request_access_bench::*;
use request_access_host::api::{
    CommitOutcome, CreateRequest, Entry, MatchRequest, Mutation, Precondition,
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

/// A store that counts the calls reaching it into `calls` (shared by every node of a
/// run): on Redis and etcd, each is a round trip.
struct Counting {
    inner: Arc<dyn StateStore>,
    calls: Arc<AtomicU64>,
}

#[async_trait::async_trait]
impl StateStore for Counting {
    async fn get(&self, keys: &[String]) -> Result<Vec<Option<Entry>>, StoreError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.get(keys).await
    }

    async fn scan(&self, start: &str, end: &str, limit: u32) -> Result<Vec<Entry>, StoreError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.scan(start, end, limit).await
    }

    async fn commit(
        &self,
        preconditions: &[Precondition],
        mutations: &[Mutation],
    ) -> Result<CommitOutcome, StoreError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.commit(preconditions, mutations).await
    }

    fn is_remote(&self) -> bool {
        self.inner.is_remote()
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
        let calls = Arc::new(AtomicU64::new(0));
        let counting = Arc::new(Counting {
            inner: store.connect(url, "round-trips:").await?,
            calls: calls.clone(),
        });
        let (_, runtime) = service_router(100, counting)?;
        let counted = || calls.load(Ordering::Relaxed);
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

fn main() -> ExitCode {
    match main_inner() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("shared: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn main_inner() -> anyhow::Result<bool> {
    let cli = Cli::parse();
    let seconds = seconds_arg("seconds", cli.seconds)?;
    let warmup = seconds_arg("warmup", cli.warmup)?;
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
    }
    let generator = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let dir = tempfile::tempdir()?;
    let mut runs = Vec::new();
    let mut failed = false;
    for (set, &clients) in cli.clients.iter().enumerate() {
        let durable_store: Arc<dyn StateStore> =
            Arc::new(DurableStore::open(&dir.path().join(format!("{set}.redb")))?);
        let (router, _) = service_router(clients, durable_store)?;
        let durable = Server::start(router)?;
        probe(&generator, durable.address, Target::Service)?;
        let baseline = run(
            &generator,
            &[durable.address],
            Target::Service,
            clients,
            warmup,
            seconds,
        )?;
        durable.stop();
        failed |= baseline.errors > 0;
        eprintln!(
            "shared: {clients} clients, durable: {:.0} creates/s, p99 {:.2} ms",
            baseline.throughput(),
            baseline.quantile_ms(0.99)
        );
        runs.push(json!({
            "clients": clients, "store": "durable", "nodes": 1,
            "throughput": baseline.throughput().round(),
            "p99_ms": baseline.quantile_ms(0.99),
            "errors": baseline.errors,
        }));
        for (store, url) in &shared {
            let (store, name) = (*store, store.name());
            for &nodes in &cli.nodes {
                let prefix = format!("run-{clients}-{nodes}:");
                let calls = Arc::new(AtomicU64::new(0));
                let servers = (0..nodes)
                    .map(|_| {
                        let (url, prefix, calls) = (url.clone(), prefix.clone(), calls.clone());
                        Server::start_with(async move {
                            // Each node its own connection, all counted together.
                            let store = Counting {
                                inner: store.connect(&url, &prefix).await?,
                                calls,
                            };
                            Ok(service_router(clients, Arc::new(store))?.0)
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
                let (calls_before, usec_before) = (calls.load(Ordering::Relaxed), redis_time());
                let result = run(
                    &generator,
                    &addresses,
                    Target::Service,
                    clients,
                    warmup,
                    seconds,
                )?;
                let calls = calls.load(Ordering::Relaxed) - calls_before;
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
                    "shared: {clients} clients, {name} x{nodes}: {:.0} creates/s ({over:.3} of durable), \
                     p99 {:.2} ms, {:.1} store calls{} per create",
                    result.throughput(),
                    result.quantile_ms(0.99),
                    calls as f64 / creates,
                    usec_per_create
                        .map(|usec| format!(" and {usec:.0} us of Redis"))
                        .unwrap_or_default(),
                );
                if let Some(error) = &result.first_error {
                    eprintln!("         first error: {error}");
                }
                let mut entry = json!({
                    "clients": clients, "store": name, "nodes": nodes,
                    "throughput": result.throughput().round(),
                    "over_durable": (over * 1000.0).round() / 1000.0,
                    "p99_ms": result.quantile_ms(0.99),
                    "errors": result.errors,
                    "store_calls_per_create": (calls as f64 / creates * 10.0).round() / 10.0,
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
    generator.shutdown_timeout(std::time::Duration::from_secs(2));
    out.insert("runs".into(), runs.into());
    println!("{}", Value::Object(out));
    Ok(!failed)
}
