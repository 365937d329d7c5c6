//! The pieces the load drivers share: a closed-loop HTTP load generator (one
//! keep-alive connection per client, an HDR histogram of latencies), a bare route on
//! the same stack to measure against, and the real service built as
//! `request-access serve` builds it, on any state store.

/// The allocator `request-access serve` runs on, so the drivers measure what it runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::Router;
use axum::extract::Form;
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
use request_access_host::store::StateStore;
use serde_json::{Value, json};
use tokio::net::TcpStream;

/// The resource group every request asks for when the load has one group (the first
/// group otherwise).
pub const GROUP: &str = "G";
/// Its numbers.
pub const NUMBERS: &str = "+15550000000..+15550009999";
/// The most groups a load can spread over (each takes 10,000 numbers of its own).
pub const MAX_GROUPS: usize = 1000;
pub const SERVICE_PATH: &str = "/genesys/1/service/request-access";
pub const BARE_PATH: &str = "/hello";

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Bare,
    Service,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Bare => "bare",
            Target::Service => "service",
        }
    }

    pub fn path(self) -> &'static str {
        match self {
            Target::Bare => BARE_PATH,
            Target::Service => SERVICE_PATH,
        }
    }
}

/// A server on its own runtime; dropping it stops the server.
pub struct Server {
    pub address: SocketAddr,
    pub runtime: tokio::runtime::Runtime,
}

impl Server {
    /// Serve `router` on `127.0.0.1:0` with `axum::serve`, as the service does.
    pub fn start(router: Router) -> anyhow::Result<Server> {
        Server::start_with(async { Ok(router) })
    }

    /// Serve the router `make` builds on the server's own runtime (where a networked
    /// store's connection must live).
    pub fn start_with(
        make: impl Future<Output = anyhow::Result<Router>>,
    ) -> anyhow::Result<Server> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        let router = runtime.block_on(make)?;
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let address = listener.local_addr()?;
        runtime.spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                eprintln!("load: server on {address} failed: {e}");
            }
        });
        Ok(Server { address, runtime })
    }

    pub fn stop(self) {
        self.runtime.shutdown_timeout(Duration::from_secs(2));
    }
}

/// The bare target: read the form body, answer a small JSON object.
pub async fn hello(Form(form): Form<HashMap<String, String>>) -> axum::Json<Value> {
    let id = form.get("_id").cloned().unwrap_or_default();
    axum::Json(json!({
        "_id": id,
        "_access_number": "+15550000000",
        "_access_code": "123456",
        "_expiration_time": 30,
        "_expires_at": "2026-01-01T00:00:00.000Z",
    }))
}

/// The name of group `index` (`G`, then `G1`, `G2`, ...).
pub fn group_name(index: usize) -> String {
    if index == 0 {
        GROUP.into()
    } else {
        format!("{GROUP}{index}")
    }
}

/// The group client `client` asks for when the load spreads over `groups` groups.
pub fn group_of(client: usize, groups: usize) -> String {
    group_name(client % groups.max(1))
}

/// The configuration: `groups` groups (`G`, `G1`, ...) of 10,000 numbers each (group 0's
/// are [`NUMBERS`]), services `load-0..load-{clients-1}`.
pub fn config_text(clients: usize, groups: usize) -> String {
    let mut services = String::new();
    for i in 0..clients {
        if i > 0 {
            services.push_str(", ");
        }
        let _ = write!(services, "\"{}\"", service_id(i));
    }
    let mut text = String::new();
    for index in 0..groups.clamp(1, MAX_GROUPS) {
        let _ = write!(
            text,
            "[[resource_group]]\n\
             name = \"{}\"\n\
             strategy = \"round-robin\"\n\
             numbers = [\"+1555{index:03}0000..+1555{index:03}9999\"]\n\n",
            group_name(index)
        );
    }
    let _ = write!(text, "[registry]\nservices = [{services}]\n");
    text
}

pub fn service_id(client: usize) -> String {
    format!("load-{client}")
}

/// The real service, built as `request-access serve` builds it, on `store`, for
/// `clients` clients spread over `groups` groups.
pub fn service_router(
    clients: usize,
    groups: usize,
    store: Arc<dyn StateStore>,
) -> anyhow::Result<(Router, Arc<Runtime>)> {
    let config = Config::parse(&config_text(clients, groups), "<load configuration>")?;
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
        None,
    );
    Ok((request_access_host::http::router(app), runtime))
}

/// One client's connection.
pub struct Connection {
    pub sender: SendRequest<Full<Bytes>>,
}

impl Connection {
    pub async fn open(address: SocketAddr) -> anyhow::Result<Connection> {
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
    pub async fn post(
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

/// Client `client`'s create, in the group [`group_of`] gives it.
pub fn request_body(client: usize, groups: usize) -> Bytes {
    Bytes::from(format!(
        "_id={}&_resource_group={}&_provide_code=true",
        service_id(client),
        group_of(client, groups)
    ))
}

/// What one client saw.
pub struct ClientTally {
    pub histogram: Histogram<u64>,
    pub requests: u64,
    /// 200 answers over the whole run, warm-up included.
    pub answered: u64,
    pub errors: u64,
    pub first_error: Option<String>,
}

pub fn new_histogram() -> Histogram<u64> {
    // 1 us .. 60 s, three significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// One client's closed loop: requests completed in `[measure_from, until)` are recorded.
pub async fn client_loop(
    address: SocketAddr,
    target: Target,
    (client, groups): (usize, usize),
    measure_from: Instant,
    until: Instant,
) -> ClientTally {
    let body = request_body(client, groups);
    let mut tally = ClientTally {
        histogram: new_histogram(),
        requests: 0,
        answered: 0,
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
            Ok((StatusCode::OK, _)) => {
                tally.answered += 1;
                None
            }
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
pub struct RunResult {
    pub target: Target,
    pub clients: usize,
    pub requests: u64,
    /// 200 answers over the whole run, warm-up included.
    pub answered: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub seconds: f64,
    pub histogram: Histogram<u64>,
}

impl RunResult {
    pub fn throughput(&self) -> f64 {
        self.requests as f64 / self.seconds
    }

    pub fn quantile_ms(&self, q: f64) -> f64 {
        self.histogram.value_at_quantile(q) as f64 / 1000.0
    }

    pub fn max_ms(&self) -> f64 {
        self.histogram.max() as f64 / 1000.0
    }

    pub fn json(&self) -> Value {
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

/// One run: `clients` clients against `target` (spread over `addresses`, their creates
/// over `groups` groups) for `warmup` + `seconds`.
pub fn run(
    generator: &tokio::runtime::Runtime,
    addresses: &[SocketAddr],
    target: Target,
    (clients, groups): (usize, usize),
    warmup: Duration,
    seconds: Duration,
) -> anyhow::Result<RunResult> {
    let start = Instant::now();
    let measure_from = start + warmup;
    let until = measure_from + seconds;
    let tallies = generator.block_on(async {
        let tasks: Vec<_> = (0..clients)
            .map(|client| {
                // Client i talks to node i mod n, as a round-robin balancer would spread
                // long-lived connections.
                let address = addresses[client % addresses.len()];
                tokio::spawn(client_loop(
                    address,
                    target,
                    (client, groups),
                    measure_from,
                    until,
                ))
            })
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
        answered: 0,
        errors: 0,
        first_error: None,
        seconds: seconds.as_secs_f64(),
        histogram: new_histogram(),
    };
    for tally in tallies {
        result.requests += tally.requests;
        result.answered += tally.answered;
        result.errors += tally.errors;
        if result.first_error.is_none() {
            result.first_error = tally.first_error;
        }
        result.histogram.add(&tally.histogram)?;
    }
    Ok(result)
}

/// One request on a fresh connection; the answer must be 200 with `_id` echoed.
pub fn probe(
    generator: &tokio::runtime::Runtime,
    address: SocketAddr,
    target: Target,
) -> anyhow::Result<Value> {
    generator.block_on(async {
        let mut connection = Connection::open(address).await?;
        let (status, body) = connection
            .post(address, target.path(), &request_body(0, 1))
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

/// A load driver's exit code: 0 when every request succeeded (`Ok(true)`), 1 when some
/// failed (`Ok(false)`: a load test that silently counts failures is worthless), 2 when
/// the run could not start or finish (the error goes to stderr after `tool`'s name).
pub fn exit_code(tool: &str, outcome: anyhow::Result<bool>) -> std::process::ExitCode {
    match outcome {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("{tool}: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

pub fn seconds_arg(name: &str, value: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| name == "warmup" || !d.is_zero())
        .with_context(|| format!("--{name} must be a positive number of seconds"))
}
