//! `shared`: the service on a shared Redis against the embedded durable store, in one
//! run.
//!
//! It starts its own `redis-server` (loopback, a temporary directory, the append-only
//! file synced on every write, as the README recommends), then, for each client count:
//! the service on the durable store (one node, the baseline), then on Redis with one
//! node, then with each further node count (every node a full service with its own
//! connection, clients spread over the nodes), all driven by the same closed-loop
//! generator as `load`. It also counts the store calls (each a network round trip on
//! Redis) of a lone `create`, `match` and `release`, and reads Redis's own time per
//! create from `INFO commandstats`.
//!
//! ```text
//! cargo run --release -p request-access-bench --bin shared -- --clients 64 --nodes 1,3
//! ```
//!
//! stdout gets one JSON object: `{"round_trips":{"create":..,"match":..,"release":..},
//! "runs":[{"clients":64,"store":"durable","nodes":1,"throughput":..,"p99_ms":..},
//! {"clients":64,"store":"redis","nodes":1,"throughput":..,"over_durable":..,
//! "store_calls_per_create":..,"redis_usec_per_create":..,"ceiling_creates_per_s":..},..]}`.
//! The exit code is 1 when any request failed.

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
use request_access_host::store::{DurableStore, RedisStore, StateStore, StoreError};
use request_access_testkit::RedisServer;
use serde_json::{Value, json};

#[derive(Parser)]
#[command(
    name = "shared",
    about = "The service on a shared Redis against the durable store"
)]
struct Cli {
    /// Concurrent clients, one set of runs per value.
    #[arg(long, value_delimiter = ',', default_value = "64")]
    clients: Vec<usize>,
    /// Service nodes sharing the Redis, one run per value.
    #[arg(long, value_delimiter = ',', default_value = "1,3")]
    nodes: Vec<usize>,
    /// Measured seconds per run.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Warm-up seconds per run, not recorded.
    #[arg(long, default_value_t = 0.5)]
    warmup: f64,
}

/// A store that counts the calls reaching it into `calls` (shared by every node of a
/// run): on Redis, each is a round trip.
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

fn redis_config(prefix: &str) -> StoreConfig {
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

/// Store calls of a lone create, match and release, averaged over 100 of each.
fn round_trips(redis: &RedisServer) -> anyhow::Result<Value> {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    tokio.block_on(async {
        let calls = Arc::new(AtomicU64::new(0));
        let counting = Arc::new(Counting {
            inner: Arc::new(
                RedisStore::connect(&redis.url(), &redis_config("round-trips:")).await?,
            ),
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
    let redis = RedisServer::start().context("redis-server is not installed")?;
    let round_trips = round_trips(&redis)?;
    eprintln!("shared: store calls per lone call: {round_trips}");
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
        for &nodes in &cli.nodes {
            let prefix = format!("run-{clients}-{nodes}:");
            let calls = Arc::new(AtomicU64::new(0));
            let servers = (0..nodes)
                .map(|_| {
                    let url = redis.url();
                    let (prefix, calls) = (prefix.clone(), calls.clone());
                    Server::start_with(async move {
                        // Each node its own connection, all counted together.
                        let store = Counting {
                            inner: Arc::new(
                                RedisStore::connect(&url, &redis_config(&prefix)).await?,
                            ),
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
            let (calls_before, usec_before) = (calls.load(Ordering::Relaxed), redis_usec(&redis));
            let result = run(
                &generator,
                &addresses,
                Target::Service,
                clients,
                warmup,
                seconds,
            )?;
            let calls = calls.load(Ordering::Relaxed) - calls_before;
            let usec = redis_usec(&redis) - usec_before;
            for server in servers {
                server.stop();
            }
            failed |= result.errors > 0;
            let creates = result.answered.max(1) as f64;
            let usec_per_create = usec as f64 / creates;
            let over = result.throughput() / baseline.throughput().max(1.0);
            eprintln!(
                "shared: {clients} clients, redis x{nodes}: {:.0} creates/s ({over:.3} of durable), \
                 p99 {:.2} ms, {:.1} store calls and {usec_per_create:.0} us of Redis per create",
                result.throughput(),
                result.quantile_ms(0.99),
                calls as f64 / creates,
            );
            if let Some(error) = &result.first_error {
                eprintln!("         first error: {error}");
            }
            runs.push(json!({
                "clients": clients, "store": "redis", "nodes": nodes,
                "throughput": result.throughput().round(),
                "over_durable": (over * 1000.0).round() / 1000.0,
                "p99_ms": result.quantile_ms(0.99),
                "errors": result.errors,
                "store_calls_per_create": (calls as f64 / creates * 10.0).round() / 10.0,
                "redis_usec_per_create": usec_per_create.round(),
                "ceiling_creates_per_s": (1e6 / usec_per_create.max(1.0)).round(),
            }));
        }
    }
    generator.shutdown_timeout(std::time::Duration::from_secs(2));
    println!("{}", json!({ "round_trips": round_trips, "runs": runs }));
    Ok(!failed)
}
