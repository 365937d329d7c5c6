//! `startup`: the time from starting `request-access serve` to its first served request,
//! with and without the on-disk cache of the compiled component.
//!
//! Each run starts the release binary on its embedded defaults with a fresh state file,
//! waits for its `listening on` line, then posts one create until it is answered 200;
//! the run's time is from spawning the process to that answer. "Cached" runs share a
//! cache directory that an unmeasured run filled first. The median of the runs is
//! reported.
//!
//! ```text
//! cargo build --release -p request-access-host -p request-access-bench
//! target/release/startup --runs 5
//! ```
//!
//! stdout: one JSON object, `{"no_cache_ms":..,"cache_ms":..,"runs":..}`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::json;

#[derive(Parser)]
#[command(
    name = "startup",
    about = "Time from process start to the first served request"
)]
struct Cli {
    /// Measured runs per mode.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// The `request-access` binary; by default the one next to this program.
    #[arg(long)]
    binary: Option<PathBuf>,
}

/// Kills the service when the run ends, however it ends.
struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn one_run(binary: &Path, scratch: &Path, cache: Option<&Path>) -> anyhow::Result<Duration> {
    let data = tempfile::tempdir_in(scratch)?;
    let mut command = Command::new(binary);
    command.arg("--data").arg(data.path().join("state.redb"));
    match cache {
        Some(dir) => command.arg("--cache-dir").arg(dir),
        None => command.arg("--no-cache"),
    };
    command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let started = Instant::now();
    let mut service = Service(
        command
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?,
    );
    let stdout = service.0.stdout.take().context("no stdout")?;
    let mut address = None;
    for line in BufReader::new(stdout).lines() {
        if let Some(a) = line?.strip_prefix("listening on ") {
            address = Some(a.to_string());
            break;
        }
    }
    let address = address.context("the service exited before listening")?;
    let url = format!("http://{address}/genesys/1/service/request-access");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let answer = agent
        .post(&url)
        .send_form([("_id", "demo-service"), ("_resource_group", "DNIS")])
        .context("the first request failed")?;
    let elapsed = started.elapsed();
    if answer.status() != 200 {
        bail!("the first request was answered {}", answer.status());
    }
    Ok(elapsed)
}

fn median_ms(mut runs: Vec<Duration>) -> f64 {
    runs.sort();
    let ms = runs[runs.len() / 2].as_secs_f64() * 1000.0;
    (ms * 10.0).round() / 10.0
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let binary = match cli.binary {
        Some(path) => path,
        None => std::env::current_exe()?
            .parent()
            .context("no directory around this program")?
            .join("request-access"),
    };
    let scratch = tempfile::tempdir()?;
    let cache = scratch.path().join("cache");

    let mut no_cache = Vec::new();
    let mut cached = Vec::new();
    one_run(&binary, scratch.path(), Some(&cache))?; // fills the cache
    for _ in 0..cli.runs {
        no_cache.push(one_run(&binary, scratch.path(), None)?);
        cached.push(one_run(&binary, scratch.path(), Some(&cache))?);
    }
    let ms = |runs: &[Duration]| -> Vec<f64> {
        runs.iter()
            .map(|d| (d.as_secs_f64() * 10_000.0).round() / 10.0)
            .collect()
    };
    let output = json!({
        "no_cache_ms": median_ms(no_cache.clone()),
        "cache_ms": median_ms(cached.clone()),
        "runs": { "no_cache_ms": ms(&no_cache), "cache_ms": ms(&cached) },
    });
    eprintln!(
        "startup: first request served after {} ms without the cache, {} ms with it (medians of {})",
        output["no_cache_ms"], output["cache_ms"], cli.runs
    );
    println!("{output}");
    Ok(())
}
