//! `wrk`: the service and its bare route under wrk, a load tool this project did not write.
//!
//! It serves the real service (durable store, one group `G` of 10,000 numbers, services
//! `load-0..load-4095`) and the bare `POST /hello` route on the same stack, as `load`
//! does, and runs `wrk` against each with `bench/wrk/create-match.lua`: creates, each
//! followed by the match of the number and code it answered (which releases the number),
//! so half the requests are creates and half are matches. The bare route gets the same
//! bodies. The result is the ratio of the two throughputs, measured one after the other
//! in one run.
//!
//! ```text
//! cargo run --release -p request-access-bench --bin wrk -- --connections 64 --seconds 5
//! ```
//!
//! stdout gets one JSON object: `{"runs":[{"target":"bare","requests":..,
//! "throughput":..,"errors":..,"p99_ms":..,..},{"target":"service",..}],
//! "ratio":..,"connections":64,"threads":2}`. The exit code is 1 when any request
//! failed (a non-2xx answer, a socket error or a timeout, as wrk counts them) or when the
//! service matched nothing (the script did not do what it says), 2 when the run could not
//! start (no `wrk` on the PATH, say).

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::sync::Arc;

use anyhow::{Context, bail};
use axum::Router;
use axum::routing::post;
use clap::Parser;
use request_access_bench::*;
use request_access_host::store::DurableStore;
use serde_json::{Value, json};

/// Services in the registry: the script walks over them so that a create never replaces
/// a reservation whose match is still to come.
const SERVICES: usize = 4096;

#[derive(Parser)]
#[command(
    name = "wrk",
    about = "Run wrk (creates and matches) against the request-access service and a bare route"
)]
struct Cli {
    /// Open connections (wrk -c).
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// wrk threads (wrk -t).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Seconds per target (wrk -d).
    #[arg(long, default_value_t = 3)]
    seconds: u64,
    /// The wrk Lua script.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/wrk/create-match.lua"))]
    script: PathBuf,
}

fn main() -> ExitCode {
    exit_code("wrk", main_inner())
}

/// `Ok(false)` when some request failed.
fn main_inner() -> anyhow::Result<bool> {
    let cli = Cli::parse();
    if cli.connections == 0 || cli.threads == 0 || cli.threads > cli.connections {
        bail!(
            "--connections and --threads must be positive, with no more threads than connections"
        );
    }
    if cli.seconds == 0 {
        bail!("--seconds must be positive");
    }
    let version = Command::new("wrk")
        .arg("--version")
        .output()
        .context("cannot run wrk (install it: apt-get install wrk)")?;
    let version = String::from_utf8_lossy(&version.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned();

    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let store = Arc::new(
        DurableStore::open(&dir.path().join("request-access.redb"))
            .context("cannot open the durable store")?,
    );
    let (router, _runtime) = service_router(SERVICES, 1, store)?;
    let service = Server::start(router)?;
    let bare = Server::start(Router::new().route(BARE_PATH, post(hello)))?;
    eprintln!(
        "wrk: {version}; service on {}, bare on {}",
        service.address, bare.address
    );

    let mut runs = Vec::new();
    let mut ok = true;
    for (target, server) in [(Target::Bare, &bare), (Target::Service, &service)] {
        let summary = run_wrk(&cli, target, &format!("http://{}", server.address))?;
        let errors = [
            "connect_errors",
            "read_errors",
            "write_errors",
            "status_errors",
            "timeouts",
        ]
        .iter()
        .map(|key| summary[key].as_u64().unwrap_or(0))
        .sum::<u64>();
        let requests = summary["requests"].as_f64().unwrap_or(0.0);
        let seconds = summary["duration_us"].as_f64().unwrap_or(0.0) / 1e6;
        let throughput = if seconds > 0.0 {
            requests / seconds
        } else {
            0.0
        };
        let matches = summary["matches_sent"].as_u64().unwrap_or(0);
        if errors > 0 {
            eprintln!("wrk: {} answered {errors} errors: {summary}", target.name());
            ok = false;
        }
        if matches == 0 {
            eprintln!("wrk: no match was sent to {}: {summary}", target.name());
            ok = false;
        }
        let ms = |key: &str| (summary[key].as_f64().unwrap_or(0.0) / 10.0).round() / 100.0;
        eprintln!(
            "wrk: {:<7} {:>8.0} req/s ({} creates, {matches} matches sent), p50 {} ms, p99 {} ms",
            target.name(),
            throughput,
            summary["creates_sent"],
            ms("p50_us"),
            ms("p99_us"),
        );
        runs.push(json!({
            "target": target.name(),
            "requests": summary["requests"],
            "throughput": throughput.round(),
            "errors": errors,
            "creates_sent": summary["creates_sent"],
            "matches_sent": matches,
            "p50_ms": ms("p50_us"),
            "p90_ms": ms("p90_us"),
            "p99_ms": ms("p99_us"),
            "max_ms": ms("max_us"),
        }));
    }
    service.stop();
    bare.stop();

    let throughput = |run: &Value| run["throughput"].as_f64().unwrap_or(0.0);
    let ratio = if throughput(&runs[0]) > 0.0 {
        throughput(&runs[1]) / throughput(&runs[0])
    } else {
        0.0
    };
    eprintln!("wrk: service/bare throughput = {ratio:.3}");
    println!(
        "{}",
        json!({
            "runs": runs,
            "ratio": (ratio * 1000.0).round() / 1000.0,
            "connections": cli.connections,
            "threads": cli.threads,
            "wrk": version,
        })
    );
    Ok(ok)
}

/// One wrk run against `base`; the summary the script's `done` prints.
fn run_wrk(cli: &Cli, target: Target, base: &str) -> anyhow::Result<Value> {
    let output = Command::new("wrk")
        .arg(format!("-t{}", cli.threads))
        .arg(format!("-c{}", cli.connections))
        .arg(format!("-d{}s", cli.seconds))
        .arg("-s")
        .arg(&cli.script)
        .arg(base)
        .arg("--")
        .arg(target.name())
        .arg(SERVICES.to_string())
        .arg(cli.threads.to_string())
        .output()
        .context("cannot run wrk")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "wrk exited with {}: {stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let line = stdout
        .lines()
        .find_map(|line| line.strip_prefix("wrk-json "))
        .with_context(|| {
            format!(
                "wrk printed no summary (is {} the right script?): {stdout}",
                cli.script.display()
            )
        })?;
    serde_json::from_str(line).with_context(|| format!("wrk's summary is not JSON: {line}"))
}
