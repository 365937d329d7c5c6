//! `load`: an HTTP load driver for the request-access service.
//!
//! It measures `POST /genesys/1/service/request-access` of the real service against a
//! bare `POST /hello` route served by the same HTTP stack (axum 0.8 on hyper and tokio),
//! both driven by the same closed-loop load generator at several concurrency levels.
//! The bare route reads the form body and answers a small JSON object, like the real
//! route, so the difference between the two is what the service itself costs per
//! request: decoding, the blocking-pool hop, the WebAssembly call, the durable store's
//! fsynced commit, metrics and the answer. The result is the ratio of the two
//! throughputs, measured side by side in one run (for each client count, the bare
//! target first and then the service, so drift of this shared machine stays out of the
//! ratio); the absolute numbers are noisy.
//!
//! Everything runs in this one process, so nothing but this binary is needed and the
//! service is exactly the one `request-access serve` builds (same configuration parser,
//! durable store, embedded plugin, runtime, application state and router), minus its
//! log subscriber: the per-request log line is not written. Each server runs on its own
//! multi-threaded tokio runtime, and the generator on a third one, so the generator
//! never steals the servers' worker threads (they still share the machine's cores).
//!
//! The service gets a fresh durable store in a temporary directory, one resource group
//! `G` of 10,000 numbers, and one always-active service per client (`load-0`,
//! `load-1`, ...). Client `i` keeps one HTTP/1.1 connection open and, in a closed loop,
//! sends `_id=load-{i}&_resource_group=G&_provide_code=true`: each create replaces that
//! client's own reservation, so the pool's occupancy stays at one number per client.
//! A warm-up period is run and discarded before the measured period; latencies go to an
//! HDR histogram (microseconds, three significant digits).
//!
//! ```text
//! cargo run --release -p request-access-bench --bin load -- --clients 1,16,64
//! cargo run --release -p request-access-bench --bin load -- --clients 64 --seconds 10 --warmup 2
//! cargo run --release -p request-access-bench --bin load -- --clients 1,64 --store memory
//! ```
//!
//! `--store memory` swaps the durable store for the in-memory one, to tell the disk's
//! share (each create waits for a group-flushed fsync) from the rest of the service's cost.
//!
//! stderr gets a table; stdout exactly one JSON object:
//! `{"runs":[{"target":"bare","clients":1,"requests":..,"errors":0,"throughput":..,
//! "p50_ms":..,"p90_ms":..,"p99_ms":..,"max_ms":..},{"target":"service",..},..],
//! "ratios":[{"clients":1,"throughput":..},..],"store":"durable",..}`. `requests`
//! counts the answers received during the measured period, `throughput` is that per
//! second, `errors` counts non-200 answers and transport failures over the whole run
//! (warm-up included). The exit code is 1 when any request failed (2 when the run could
//! not start): a load test that silently counts failures is worthless.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::Router;
use axum::routing::post;
use clap::Parser;
use request_access_bench::*;
use request_access_host::store::{DurableStore, MemoryStore, StateStore};
use serde_json::json;

#[derive(Parser)]
#[command(
    name = "load",
    about = "Load the request-access HTTP service and a bare route on the same stack, side by side"
)]
struct Cli {
    /// Concurrent clients (one keep-alive connection each), one run per value.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    clients: Vec<usize>,
    /// Measured seconds per run.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Warm-up seconds per run, not recorded.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// The service's state store: `durable` (redb, commits group-flushed with fsync: the service's
    /// default) or `memory` (to see what the service costs without the disk).
    #[arg(long, value_enum, default_value_t = StoreKind::Durable)]
    store: StoreKind,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum StoreKind {
    Durable,
    Memory,
}

impl StoreKind {
    fn name(self) -> &'static str {
        match self {
            StoreKind::Durable => "durable",
            StoreKind::Memory => "memory",
        }
    }
}

/// The service's store for this run, in `dir` when it is the durable one.
fn open_store(store: StoreKind, dir: &std::path::Path) -> anyhow::Result<Arc<dyn StateStore>> {
    Ok(match store {
        StoreKind::Durable => Arc::new(
            DurableStore::open(&dir.join("request-access.redb"))
                .context("cannot open the durable store")?,
        ),
        StoreKind::Memory => Arc::new(MemoryStore::new()),
    })
}

fn main() -> ExitCode {
    exit_code("load", main_inner())
}

/// `Ok(false)` when some request failed.
fn main_inner() -> anyhow::Result<bool> {
    let cli = Cli::parse();
    if cli.clients.is_empty() || cli.clients.contains(&0) {
        bail!("--clients must list positive numbers");
    }
    let seconds = seconds_arg("seconds", cli.seconds)?;
    let warmup = seconds_arg("warmup", cli.warmup)?;
    let max_clients = cli.clients.iter().copied().max().unwrap_or(1);
    let wall = Instant::now();

    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let started = Instant::now();
    let (service_router, service_runtime) =
        service_router(max_clients, 1, open_store(cli.store, dir.path())?)?;
    let service = Server::start(service_router)?;
    let bare = Server::start(Router::new().route(BARE_PATH, post(hello)))?;
    eprintln!(
        "load: service on {} ({} store, ready in {} ms), bare on {}; {} cores",
        service.address,
        cli.store.name(),
        started.elapsed().as_millis(),
        bare.address,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );

    let generator = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    probe(&generator, bare.address, Target::Bare)?;
    let sample = probe(&generator, service.address, Target::Service)?;
    eprintln!("load: the service answers e.g. {sample}");

    eprintln!(
        "load: {warmup:?} warm-up + {seconds:?} measured per run\n\
         {:<8} {:>7} {:>9} {:>6} {:>10} {:>8} {:>8} {:>8} {:>8}",
        "target", "clients", "requests", "errors", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms"
    );
    let mut results = Vec::new();
    let mut ratios = Vec::new();
    for &clients in &cli.clients {
        let mut pair = Vec::new();
        for (target, server) in [(Target::Bare, &bare), (Target::Service, &service)] {
            let result = run(
                &generator,
                &[server.address],
                target,
                (clients, 1),
                warmup,
                seconds,
            )?;
            eprintln!(
                "{:<8} {:>7} {:>9} {:>6} {:>10.0} {:>8.3} {:>8.3} {:>8.3} {:>8.3}",
                target.name(),
                clients,
                result.requests,
                result.errors,
                result.throughput(),
                result.quantile_ms(0.50),
                result.quantile_ms(0.90),
                result.quantile_ms(0.99),
                result.max_ms(),
            );
            if let Some(error) = &result.first_error {
                eprintln!("         first error: {error}");
            }
            pair.push(result.throughput());
            results.push(result);
        }
        let ratio = if pair[0] > 0.0 {
            pair[1] / pair[0]
        } else {
            0.0
        };
        eprintln!(
            "{:<8} {clients:>7} service/bare throughput = {ratio:.3}",
            "ratio"
        );
        ratios.push(
            json!({ "clients": clients, "throughput": (ratio * 10_000.0).round() / 10_000.0 }),
        );
    }

    generator.shutdown_timeout(Duration::from_secs(2));
    bare.stop();
    service.stop();
    let pool = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(service_runtime.pool_status(GROUP))
        .map_err(|e| anyhow::anyhow!("pool status: {e}"))?;
    eprintln!(
        "load: pool {GROUP}: {} live of {} ({} free); wall time {:.1} s",
        pool.live,
        pool.size,
        pool.free,
        wall.elapsed().as_secs_f64()
    );
    drop(service_runtime);
    drop(dir);

    let failed = results.iter().any(|r| r.errors > 0);
    let output = json!({
        "runs": results.iter().map(RunResult::json).collect::<Vec<_>>(),
        "ratios": ratios,
        "store": cli.store.name(),
        "seconds": seconds.as_secs_f64(),
        "warmup": warmup.as_secs_f64(),
        "pool": { "size": pool.size, "live": pool.live, "free": pool.free },
        "wall_seconds": (wall.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    });
    println!("{output}");
    if failed {
        eprintln!("load: some requests failed (see `errors`)");
    }
    Ok(!failed)
}
