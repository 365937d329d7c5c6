//! `request-access`: the command-line front end of the reference host.
//!
//! ```text
//! cargo run --release -- create --id demo-service --resource-group DNIS --provide-code
//! cargo run --release -- match --access-number +18005550100 --access-code 123456
//! ```
//!
//! Success prints one JSON object on stdout with the original wire's keys. Failure prints
//! one line on stderr and exits with: 2 invalid input (unknown resource group included),
//! 3 service not active / no match / reservation revoked, 4 pool exhausted, 1 anything
//! else. State persists across invocations in the `--data` file.

/// mimalloc rather than the system allocator: a create allocates and frees across tokio's
/// worker threads, and glibc's malloc was the largest part of its CPU a crate could cut
/// (`bench/profile`: 84.8 -> 65.7 µs per create, BENCHMARKS.md section 4).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use request_access_host::api::{CreateRequest, Error as ServiceError, ExtendRequest, MatchRequest};
use request_access_host::clock::SystemClock;
use request_access_host::config::Config;
use request_access_host::config::redact_url;
use request_access_host::http::{AppState, Stopped};
use request_access_host::plugin::{
    PLUGIN_WASM, PluginSource, STANDALONE_WASM, WIT_PACKAGE, WIT_PACKAGE_NAME,
};
use request_access_host::registry::RegistryError;
use request_access_host::runtime::{CallError, Runtime};
use request_access_host::services::Services;
use request_access_host::store::{self, StateStore};
use request_access_wire::answer;
use serde_json::{Value, json};

#[derive(Parser)]
#[command(
    name = "request-access",
    version,
    about = "Lend access numbers to services and match incoming calls back to them"
)]
struct Cli {
    /// Configuration file (TOML). Without one, the embedded default serves: one group
    /// `DNIS` of ten numbers and the always-active service `demo-service`.
    #[arg(long, global = true, env = "REQUEST_ACCESS_CONFIG")]
    config: Option<PathBuf>,
    /// The durable state file (created if missing), used unless a shared store is named.
    #[arg(
        long,
        global = true,
        env = "REQUEST_ACCESS_DATA",
        default_value = "request-access.redb"
    )]
    data: PathBuf,
    /// A shared state store, `redis://[user:password@]host:port/db` (or `rediss://`),
    /// instead of the data file; overrides `[store] url`.
    #[arg(
        long,
        global = true,
        env = "REQUEST_ACCESS_STORE",
        hide_env_values = true
    )]
    store: Option<String>,
    /// Where compiled plugin code is kept between invocations (default:
    /// `$XDG_CACHE_HOME/request-access` or `~/.cache/request-access`).
    #[arg(long, global = true, env = "REQUEST_ACCESS_CACHE")]
    cache_dir: Option<PathBuf>,
    /// Compile the plugin afresh and cache nothing.
    #[arg(long, global = true)]
    no_cache: bool,
    #[command(subcommand)]
    command: Command,
}

/// `$XDG_CACHE_HOME/request-access`, else `$HOME/.cache/request-access`.
fn default_cache_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|base| base.join("request-access"))
}

#[derive(Subcommand)]
enum Command {
    /// Reserve an access number (and optionally an access code) for a service.
    Create {
        /// `_id`: the service; it must be active.
        #[arg(long)]
        id: String,
        /// `_resource_group`: the pool to take the number from.
        #[arg(long)]
        resource_group: String,
        /// `_provide_code`: also issue an access code.
        #[arg(long)]
        provide_code: bool,
        /// `_phone_number`: the caller's number, tied to the reservation.
        #[arg(long)]
        phone_number: Option<String>,
        /// `_booking_expiration_timeout`: seconds, 5..=1800.
        #[arg(long)]
        booking_expiration_timeout: Option<u32>,
    },
    /// Match an incoming call to its reservation (and release it).
    Match {
        /// `_access_number`: the dialled number.
        #[arg(long)]
        access_number: String,
        /// `_access_code`: the code the caller typed in.
        #[arg(long)]
        access_code: Option<String>,
        /// `_phone_number`: the caller's number.
        #[arg(long)]
        phone_number: Option<String>,
    },
    /// Keep a service's live reservation for longer, with the same number.
    Extend {
        #[arg(long)]
        id: String,
        #[arg(long)]
        resource_group: String,
        /// `_booking_expiration_timeout`: seconds from now, 5..=1800 (the group's value,
        /// then the global option, when absent).
        #[arg(long)]
        booking_expiration_timeout: Option<u32>,
    },
    /// Give a service's reservation back before it expires.
    Release {
        #[arg(long)]
        id: String,
        #[arg(long)]
        resource_group: String,
    },
    /// Manage the registered services.
    #[command(subcommand)]
    Services(ServicesCommand),
    /// Per group: its size, live reservations and free numbers.
    Groups,
    /// What the interaction log holds for a number (`[events] log_retention`): each
    /// reservation made on it and what happened to it, oldest first; never a code.
    Interactions {
        /// The number, in any formatting.
        #[arg(long)]
        number: String,
    },
    /// Write the standalone component (the plugin composed with the WASI-only adapter)
    /// for generic hosts: `wasmtime run --dir STATE::/state --invoke 'create(...)' FILE`.
    ExportStandalone {
        /// Where to write it.
        #[arg(default_value = "request-access-standalone.wasm")]
        output: PathBuf,
    },
    /// Write the plugin component (the `plugin` world: it imports the registry, the clock,
    /// the resource groups and the reservation state) for hosts that provide those imports
    /// themselves.
    ExportPlugin {
        /// Where to write it.
        #[arg(default_value = "request-access-plugin.wasm")]
        output: PathBuf,
    },
    /// Write the contract as a binary WIT package (what `wasm-tools component wit --wasm`
    /// writes), to generate bindings from or to publish.
    ExportWit {
        /// Where to write it.
        #[arg(default_value = "request-access.wit.wasm")]
        output: PathBuf,
        /// Write it into this directory in the layout of a `wkg` local registry
        /// (`ROOT/contact-center/request-access/VERSION.wasm`) instead.
        #[arg(long, value_name = "ROOT", conflicts_with = "output")]
        wkg_root: Option<PathBuf>,
    },
    /// Exit 0 if the service at URL answers 200 within 2 s, else 1: a container's health
    /// check, with no curl in the image.
    Healthcheck {
        /// The readiness endpoint to ask.
        #[arg(long, default_value = "http://127.0.0.1:8080/readyz")]
        url: String,
    },
    /// Move the state between stores.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Serve the HTTP API until SIGTERM or SIGINT (SIGHUP reloads the configuration file and the plugin).
    Serve {
        /// Address to listen on (default: `[server] listen`, 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<String>,
        /// Run this `.wasm` plugin instead of the embedded one.
        #[arg(long)]
        plugin: Option<PathBuf>,
        /// Log JSON lines instead of text.
        #[arg(long)]
        json_logs: bool,
    },
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Copy every reservation and registration from one store into another (for
    /// example from a node's data file into a shared Redis). Run it while no service
    /// writes to either.
    Copy {
        /// A data file or a `redis://` URL.
        #[arg(long)]
        from: String,
        /// A data file or a `redis://` URL.
        #[arg(long)]
        to: String,
    },
    /// Check the data file (`--data`) without serving it: redb's integrity check (which
    /// repairs what it can), the log beside it, and every entry read. It needs the file
    /// to itself: stop the service first.
    Check,
}

#[derive(Subcommand)]
enum ServicesCommand {
    /// Register a service (active until deregistered, or for --ttl seconds).
    Register {
        id: String,
        #[arg(long)]
        ttl: Option<u64>,
    },
    /// Remove a registration.
    Deregister { id: String },
    /// List the active services.
    List,
}

/// A failure and the exit code that documents it.
struct Failure {
    code: u8,
    message: String,
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure {
            code: 1,
            message: format!("{e:#}"),
        }
    }
}

impl From<CallError> for Failure {
    fn from(e: CallError) -> Self {
        let code = match &e {
            CallError::Service(ServiceError::InvalidParameter { .. })
            | CallError::Service(ServiceError::UnknownResourceGroup(_)) => 2,
            CallError::Service(ServiceError::ServiceNotActive(_))
            | CallError::Service(ServiceError::NoMatch)
            | CallError::Service(ServiceError::TooManyAttempts) => 3,
            CallError::Service(ServiceError::NoAccessNumberAvailable(_)) => 4,
            _ => 1,
        };
        Failure {
            code,
            message: e.to_string(),
        }
    }
}

fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    Ok(match &cli.config {
        Some(path) => Config::load(path)?,
        None => Config::embedded(),
    })
}

/// Where the state lives: `--store`, else `[store] url`, else the `--data` file.
fn store_location(cli: &Cli, config: &Config) -> String {
    cli.store
        .clone()
        .or_else(|| config.store.url.clone())
        .unwrap_or_else(|| cli.data.display().to_string())
}

/// The store at `location`, with an error that names it (without a password).
async fn open_store(location: &str, config: &Config) -> anyhow::Result<Arc<dyn StateStore>> {
    let opened = store::open(location, &config.store).await.map_err(|e| {
        // A data file's errors name the file and what to do; a server's get its URL.
        match request_access_host::config::is_server_url(location) {
            true => anyhow::anyhow!(
                "cannot open the state store {}: {}",
                redact_url(location),
                e.detail()
            ),
            false => anyhow::anyhow!("{}", e.detail()),
        }
    })?;
    tracing::info!(store = %redact_url(location), "state store open");
    Ok(opened)
}

/// The runtime every command works on, and where its plugin came from. Async: a
/// shared store's connection lives on the runtime that opens it.
async fn open(
    cli: &Cli,
    plugin_override: Option<PathBuf>,
) -> anyhow::Result<(Runtime, PluginSource)> {
    let config = load_config(cli)?;
    let store = open_store(&store_location(cli, &config), &config).await?;
    let source = PluginSource {
        path: plugin_override.or_else(|| config.server.plugin.clone()),
        cache_dir: if cli.no_cache {
            None
        } else {
            cli.cache_dir.clone().or_else(default_cache_dir)
        },
    };
    let image = source.load().context("cannot load the plugin")?;
    let limits = config.limits.clone();
    let services = Arc::new(Services::new(config, store, Arc::new(SystemClock)));
    Ok((Runtime::new(image, services, limits), source))
}

/// `serve`'s exit code when the state store failed for good (EX_TEMPFAIL: a restart
/// mends it), so that a supervisor restarts the service.
const EXIT_STORE_FAILED: u8 = 75;

fn serve(
    cli: &Cli,
    listen: Option<String>,
    plugin: Option<PathBuf>,
    json_logs: bool,
) -> Result<(), Failure> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if json_logs {
        logs.json().init();
    } else {
        logs.init();
    }
    let started = std::time::Instant::now();
    let stopped = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(async move {
            let (runtime, source) = open(cli, plugin).await?;
            let server = runtime.services().config.server.clone();
            let admin_token = std::env::var("REQUEST_ACCESS_ADMIN_TOKEN")
                .ok()
                .or(server.admin_token.clone());
            let app = AppState::new(
                Arc::new(runtime),
                admin_token,
                source,
                server.request_timeout,
                server.max_body_bytes,
                cli.config.clone(),
            );
            let listen = listen.unwrap_or(server.listen);
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            let address = listener.local_addr()?;
            tracing::info!(%address, startup_ms = started.elapsed().as_millis() as u64, "serving");
            request_access_host::http::reload_on_hangup(app.clone())?;
            // The one line on stdout: where to reach the service.
            println!("listening on {address}");
            Ok::<_, anyhow::Error>(request_access_host::http::serve(listener, app).await?)
        })?;
    tracing::info!("stopped; the state store is closed");
    match stopped {
        Stopped::Signal => Ok(()),
        Stopped::StoreFailed(why) => Err(Failure {
            code: EXIT_STORE_FAILED,
            message: format!(
                "the state store failed ({why}); in-flight requests were answered and the \
                 service stopped: restart it to reload the state from disk"
            ),
        }),
    }
}

fn run(cli: Cli) -> Result<Value, Failure> {
    if let Command::Serve {
        listen,
        plugin,
        json_logs,
    } = &cli.command
    {
        serve(&cli, listen.clone(), plugin.clone(), *json_logs)?;
        return Ok(Value::Null);
    }
    match &cli.command {
        Command::ExportStandalone { output } => return export(output, STANDALONE_WASM),
        Command::ExportPlugin { output } => return export(output, PLUGIN_WASM),
        Command::ExportWit { output, wkg_root } => {
            let output = match wkg_root {
                Some(root) => wkg_path(root)?,
                None => output.clone(),
            };
            let mut written = export(&output, WIT_PACKAGE)?;
            written["package"] = json!(WIT_PACKAGE_NAME);
            return Ok(written);
        }
        Command::Healthcheck { url } => return healthcheck(url),
        _ => {}
    }
    // One command, one thread: the calls await on a runtime of their own.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(async {
            match &cli.command {
                Command::Store(StoreCommand::Copy { from, to }) => {
                    return copy(&cli, from, to).await;
                }
                Command::Store(StoreCommand::Check) => return check(&cli),
                _ => {}
            }
            let (runtime, _) = open(&cli, None).await?;
            command(runtime, cli.command).await
        })
}

/// `store copy`: every entry of `from` into `to`.
async fn copy(cli: &Cli, from: &str, to: &str) -> Result<Value, Failure> {
    let config = load_config(cli)?;
    let source = open_store(from, &config).await?;
    let target = open_store(to, &config).await?;
    let copied = store::copy_state(source.as_ref(), target.as_ref())
        .await
        .map_err(anyhow::Error::from)
        .with_context(|| format!("cannot copy {} to {}", redact_url(from), redact_url(to)))?;
    Ok(json!({ "copied": copied, "from": redact_url(from), "to": redact_url(to) }))
}

/// `store check`: the `--data` file, checked.
fn check(cli: &Cli) -> Result<Value, Failure> {
    let report =
        store::DurableStore::check(&cli.data).map_err(|e| anyhow::anyhow!("{}", e.detail()))?;
    let mut answer = json!({ "file": cli.data, "sound": true });
    if let (Value::Object(answer), Ok(Value::Object(report))) =
        (&mut answer, serde_json::to_value(report))
    {
        answer.extend(report);
    }
    Ok(answer)
}

/// Run one command other than `serve` and `export-standalone`.
/// Write `bytes` to `output`.
fn export(output: &std::path::Path, bytes: &[u8]) -> Result<Value, Failure> {
    std::fs::write(output, bytes).with_context(|| format!("cannot write {}", output.display()))?;
    Ok(json!({ "written": output, "bytes": bytes.len() }))
}

/// Where a `wkg` local registry rooted at `root` keeps the contract's package:
/// `root/{namespace}/{name}/{version}.wasm` (the directories made).
fn wkg_path(root: &std::path::Path) -> Result<PathBuf, Failure> {
    let (namespace, rest) = WIT_PACKAGE_NAME
        .split_once(':')
        .context("the package name has a namespace")?;
    let (name, version) = rest.split_once('@').context("the package has a version")?;
    let dir = root.join(namespace).join(name);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir.join(format!("{version}.wasm")))
}

/// `healthcheck`: 200 from `url` within 2 s, or a failure naming what went wrong.
fn healthcheck(url: &str) -> Result<Value, Failure> {
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(2)))
        .http_status_as_error(false)
        .build()
        .new_agent();
    let response = agent
        .get(url)
        .call()
        .with_context(|| format!("{url} did not answer"))?;
    match response.status().as_u16() {
        200 => Ok(json!({ "url": url, "status": 200 })),
        status => Err(anyhow::anyhow!("{url} answered {status}").into()),
    }
}

async fn command(runtime: Runtime, command: Command) -> Result<Value, Failure> {
    let services = runtime.services().clone();
    Ok(match command {
        Command::Serve { .. }
        | Command::ExportStandalone { .. }
        | Command::ExportPlugin { .. }
        | Command::ExportWit { .. }
        | Command::Healthcheck { .. }
        | Command::Store(_) => unreachable!("handled above"),
        Command::Create {
            id,
            resource_group,
            provide_code,
            phone_number,
            booking_expiration_timeout,
        } => {
            let placed = runtime
                .create_placed(&CreateRequest {
                    service_id: id.clone(),
                    resource_group,
                    provide_code,
                    phone_number,
                    booking_expiration_timeout,
                })
                .await
                .map_err(|refusal| {
                    let seconds = refusal.retry_after_seconds(services.clock.now_ms());
                    let mut failure = Failure::from(refusal.error);
                    if let Some(seconds) = seconds {
                        failure.message +=
                            &format!("; a number is known to become lendable in {seconds} s");
                    }
                    failure
                })?;
            answer::access_info(&id, &placed, None)
        }
        Command::Match {
            access_number,
            access_code,
            phone_number,
        } => {
            let matched = runtime
                .match_access(&MatchRequest {
                    access_number,
                    access_code,
                    phone_number,
                })
                .await?;
            answer::matched(&matched.service_id, false)
        }
        Command::Extend {
            id,
            resource_group,
            booking_expiration_timeout,
        } => {
            let request = ExtendRequest {
                service_id: id.clone(),
                resource_group: resource_group.clone(),
                booking_expiration_timeout,
            };
            let extended = runtime.extend(&request).await?;
            answer::extended(&id, &resource_group, &extended)
        }
        Command::Release { id, resource_group } => {
            let number = runtime.release(&id, &resource_group).await?;
            answer::released(&id, &resource_group, &number)
        }
        Command::Services(ServicesCommand::Register { id, ttl }) => {
            let registration = services
                .registry
                .register(&id, ttl.map(Duration::from_secs))
                .await
                .map_err(|e| Failure {
                    code: if matches!(e, RegistryError::Invalid(_)) {
                        2
                    } else {
                        1
                    },
                    message: format!("cannot register {id:?}: {e}"),
                })?;
            answer::registered(&id, registration.expires_at)
        }
        Command::Services(ServicesCommand::Deregister { id }) => {
            if !services
                .registry
                .deregister(&id)
                .await
                .map_err(anyhow::Error::from)?
            {
                return Err(Failure {
                    code: 3,
                    message: format!("service {id:?} is not registered"),
                });
            }
            answer::deregistered(&id)
        }
        Command::Services(ServicesCommand::List) => {
            let list = services
                .registry
                .list()
                .await
                .map_err(anyhow::Error::from)?;
            answer::services(
                list.iter()
                    .map(|e| answer::service_entry(&e.service_id, e.static_entry, e.expires_at)),
            )
        }
        Command::Groups => {
            let mut statuses = Vec::new();
            for group in &services.config.groups {
                statuses.push((group.name.as_str(), runtime.pool_status(&group.name).await?));
            }
            answer::groups(statuses)
        }
        Command::Interactions { number } => {
            if services.config.events.log_retention.is_zero() {
                return Err(Failure {
                    code: 2,
                    message: "the interaction log is off: set [events] log_retention".into(),
                });
            }
            let digits = request_access_guest::validate::phone_number("number", &number)
                .map_err(|e| Failure::from(CallError::Service(e)))?;
            let events =
                request_access_host::journal::interactions(services.store.as_ref(), &digits, 1000)
                    .await
                    .map_err(|e| Failure {
                        code: 1,
                        message: format!("cannot read the interaction log: {e}"),
                    })?;
            serde_json::json!({ "number": number, "events": events })
        }
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(Value::Null) => ExitCode::SUCCESS,
        Ok(value) => {
            println!("{value}");
            ExitCode::SUCCESS
        }
        Err(failure) => {
            eprintln!("request-access: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}
