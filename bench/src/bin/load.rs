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

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::Router;
use axum::extract::Form;
use axum::routing::post;
use clap::Parser;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use request_access_host::clock::SystemClock;
use request_access_host::config::Config;
use request_access_host::http::AppState;
use request_access_host::plugin::PluginSource;
use request_access_host::runtime::{PluginImage, Runtime};
use request_access_host::services::Services;
use request_access_host::store::{DurableStore, MemoryStore, StateStore};
use serde_json::{Value, json};
use tokio::net::TcpStream;

/// The resource group every request asks for.
const GROUP: &str = "G";
/// Its numbers.
const NUMBERS: &str = "+15550000000..+15550009999";
const SERVICE_PATH: &str = "/genesys/1/service/request-access";
const BARE_PATH: &str = "/hello";

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

#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Bare,
    Service,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Bare => "bare",
            Target::Service => "service",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Target::Bare => BARE_PATH,
            Target::Service => SERVICE_PATH,
        }
    }
}

/// A server on its own runtime; dropping it stops the server.
struct Server {
    address: SocketAddr,
    runtime: tokio::runtime::Runtime,
}

impl Server {
    /// Serve `router` on `127.0.0.1:0` with `axum::serve`, as the service does.
    fn start(router: Router) -> anyhow::Result<Server> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let address = listener.local_addr()?;
        runtime.spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                eprintln!("load: server on {address} failed: {e}");
            }
        });
        Ok(Server { address, runtime })
    }

    fn stop(self) {
        self.runtime.shutdown_timeout(Duration::from_secs(2));
    }
}

/// The bare target: read the form body, answer a small JSON object.
async fn hello(Form(form): Form<HashMap<String, String>>) -> axum::Json<Value> {
    let id = form.get("_id").cloned().unwrap_or_default();
    axum::Json(json!({
        "_id": id,
        "_access_number": "+15550000000",
        "_access_code": "123456",
        "_expiration_time": 30,
        "_expires_at": "2026-01-01T00:00:00.000Z",
    }))
}

/// The configuration: group `G` of 10,000 numbers, services `load-0..load-{clients-1}`.
fn config_text(clients: usize) -> String {
    let mut services = String::new();
    for i in 0..clients {
        if i > 0 {
            services.push_str(", ");
        }
        let _ = write!(services, "\"{}\"", service_id(i));
    }
    format!(
        "[[resource_group]]\n\
         name = \"{GROUP}\"\n\
         strategy = \"round-robin\"\n\
         numbers = [\"{NUMBERS}\"]\n\
         \n\
         [registry]\n\
         services = [{services}]\n"
    )
}

fn service_id(client: usize) -> String {
    format!("load-{client}")
}

/// The real service, built as `request-access serve` builds it, with its durable store
/// in `dir`.
fn service_router(
    clients: usize,
    store: StoreKind,
    dir: &std::path::Path,
) -> anyhow::Result<(Router, Arc<Runtime>)> {
    let config = Config::parse(&config_text(clients), "<load configuration>")?;
    let store: Arc<dyn StateStore> = match store {
        StoreKind::Durable => Arc::new(
            DurableStore::open(&dir.join("request-access.redb"))
                .context("cannot open the durable store")?,
        ),
        StoreKind::Memory => Arc::new(MemoryStore::new()),
    };
    let image = PluginImage::embedded().map_err(|e| anyhow::anyhow!("{e:#}"))?;
    let limits = config.limits.clone();
    let services = Arc::new(Services::new(config, store, Arc::new(SystemClock)));
    let runtime = Arc::new(Runtime::new(image, services, limits));
    let server = runtime.services().config.server.clone();
    let app = AppState::new(
        runtime.clone(),
        None,
        PluginSource::default(),
        server.request_timeout,
        server.max_body_bytes,
    );
    Ok((request_access_host::http::router(app), runtime))
}

/// One client's connection.
struct Connection {
    sender: SendRequest<Full<Bytes>>,
}

impl Connection {
    async fn open(address: SocketAddr) -> anyhow::Result<Connection> {
        let stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Connection { sender })
    }

    /// Send one request and read the whole answer.
    async fn post(
        &mut self,
        address: SocketAddr,
        path: &str,
        body: &Bytes,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        self.sender.ready().await?;
        let request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::HOST, address.to_string())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Full::new(body.clone()))?;
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

fn request_body(client: usize) -> Bytes {
    Bytes::from(format!(
        "_id={}&_resource_group={GROUP}&_provide_code=true",
        service_id(client)
    ))
}

/// What one client saw.
struct ClientTally {
    histogram: Histogram<u64>,
    requests: u64,
    errors: u64,
    first_error: Option<String>,
}

fn new_histogram() -> Histogram<u64> {
    // 1 us .. 60 s, three significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// One client's closed loop: requests completed in `[measure_from, until)` are recorded.
async fn client_loop(
    address: SocketAddr,
    target: Target,
    client: usize,
    measure_from: Instant,
    until: Instant,
) -> ClientTally {
    let body = request_body(client);
    let mut tally = ClientTally {
        histogram: new_histogram(),
        requests: 0,
        errors: 0,
        first_error: None,
    };
    let mut connection = None;
    while Instant::now() < until {
        let conn = match &mut connection {
            Some(conn) => conn,
            None => match Connection::open(address).await {
                Ok(conn) => connection.insert(conn),
                Err(e) => {
                    // The server is gone: no point in looping on it.
                    tally.errors += 1;
                    tally
                        .first_error
                        .get_or_insert(format!("cannot connect: {e:#}"));
                    break;
                }
            },
        };
        let started = Instant::now();
        let outcome = conn.post(address, target.path(), &body).await;
        let done = Instant::now();
        let failure = match outcome {
            Ok((StatusCode::OK, _)) => None,
            Ok((status, body)) => Some(format!(
                "{status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            )),
            Err(e) => {
                connection = None;
                Some(format!("{e:#}"))
            }
        };
        if let Some(failure) = failure {
            tally.errors += 1;
            tally.first_error.get_or_insert(failure);
        }
        if done >= measure_from && done < until {
            tally.requests += 1;
            let micros =
                u64::try_from(done.duration_since(started).as_micros()).unwrap_or(u64::MAX);
            tally.histogram.saturating_record(micros.max(1));
        }
    }
    tally
}

/// The outcome of one run.
struct RunResult {
    target: Target,
    clients: usize,
    requests: u64,
    errors: u64,
    first_error: Option<String>,
    seconds: f64,
    histogram: Histogram<u64>,
}

impl RunResult {
    fn throughput(&self) -> f64 {
        self.requests as f64 / self.seconds
    }

    fn quantile_ms(&self, q: f64) -> f64 {
        self.histogram.value_at_quantile(q) as f64 / 1000.0
    }

    fn max_ms(&self) -> f64 {
        self.histogram.max() as f64 / 1000.0
    }

    fn json(&self) -> Value {
        let round = |x: f64| (x * 1000.0).round() / 1000.0;
        json!({
            "target": self.target.name(),
            "clients": self.clients,
            "requests": self.requests,
            "errors": self.errors,
            "seconds": self.seconds,
            "throughput": round(self.throughput()),
            "p50_ms": round(self.quantile_ms(0.50)),
            "p90_ms": round(self.quantile_ms(0.90)),
            "p99_ms": round(self.quantile_ms(0.99)),
            "max_ms": round(self.max_ms()),
        })
    }
}

/// One run: `clients` clients against `target` for `warmup` + `seconds`.
fn run(
    generator: &tokio::runtime::Runtime,
    address: SocketAddr,
    target: Target,
    clients: usize,
    warmup: Duration,
    seconds: Duration,
) -> anyhow::Result<RunResult> {
    let start = Instant::now();
    let measure_from = start + warmup;
    let until = measure_from + seconds;
    let tallies = generator.block_on(async {
        let tasks: Vec<_> = (0..clients)
            .map(|client| tokio::spawn(client_loop(address, target, client, measure_from, until)))
            .collect();
        let mut tallies = Vec::with_capacity(clients);
        for task in tasks {
            tallies.push(task.await?);
        }
        Ok::<_, anyhow::Error>(tallies)
    })?;
    let mut result = RunResult {
        target,
        clients,
        requests: 0,
        errors: 0,
        first_error: None,
        seconds: seconds.as_secs_f64(),
        histogram: new_histogram(),
    };
    for tally in tallies {
        result.requests += tally.requests;
        result.errors += tally.errors;
        if result.first_error.is_none() {
            result.first_error = tally.first_error;
        }
        result.histogram.add(&tally.histogram)?;
    }
    Ok(result)
}

/// One request on a fresh connection; the answer must be 200 with `_id` echoed.
fn probe(
    generator: &tokio::runtime::Runtime,
    address: SocketAddr,
    target: Target,
) -> anyhow::Result<Value> {
    generator.block_on(async {
        let mut connection = Connection::open(address).await?;
        let (status, body) = connection
            .post(address, target.path(), &request_body(0))
            .await?;
        let text = String::from_utf8_lossy(&body);
        if status != StatusCode::OK {
            bail!("{} answered {status}: {text}", target.name());
        }
        let value: Value = serde_json::from_slice(&body)
            .with_context(|| format!("{} answered no JSON: {text}", target.name()))?;
        if value["_id"] != json!(service_id(0)) {
            bail!("{} answered an unexpected object: {text}", target.name());
        }
        Ok(value)
    })
}

fn seconds_arg(name: &str, value: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| name == "warmup" || !d.is_zero())
        .with_context(|| format!("--{name} must be a positive number of seconds"))
}

fn main() -> ExitCode {
    match main_inner() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("load: {e:#}");
            ExitCode::from(2)
        }
    }
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
    let (service_router, service_runtime) = service_router(max_clients, cli.store, dir.path())?;
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
            let result = run(&generator, server.address, target, clients, warmup, seconds)?;
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
