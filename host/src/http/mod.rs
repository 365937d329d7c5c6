//! The HTTP service: the original's wire (`/genesys/1/service/...`), admin routes,
//! metrics, health, and the OpenAPI document. Guest calls run on tokio's blocking pool;
//! the plugin can be swapped while requests continue.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, UNIX_EPOCH};

use axum::Router;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use bytes::Bytes;
use request_access_guest::api::{AccessInfo, Error as ServiceError};
use serde_json::{Map, Value, json};
use subtle::ConstantTimeEq;

use crate::registry::{RegistryError, ServiceEntry};
use crate::runtime::{CallError, PLUGIN_WASM, PluginImage, Runtime};

mod metrics;

pub use metrics::Metrics;
use request_access_wire::{Params, WireError};

/// The OpenAPI document of every route below.
pub const OPENAPI: &str = include_str!("../../openapi.json");

/// Largest plugin accepted by the reload route.
pub const MAX_PLUGIN_BYTES: usize = 64 << 20;

/// Seconds a client is told to wait after an exhausted pool.
pub const EXHAUSTED_RETRY_AFTER_SECONDS: u32 = 5;

/// `ms` since the epoch as RFC 3339 with milliseconds, UTC.
pub fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// Access information as the original wire answers it: `_id`, `_access_number`,
/// `_access_code` (only when one was issued), `_expiration_time`, `_expires_at`.
pub fn access_info_json(service_id: &str, info: &AccessInfo) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("_id".into(), json!(service_id));
    out.insert("_access_number".into(), json!(info.access_number));
    if let Some(code) = &info.access_code {
        out.insert("_access_code".into(), json!(code));
    }
    out.insert("_expiration_time".into(), json!(info.expiration_time));
    out.insert("_expires_at".into(), json!(rfc3339(info.expires_at)));
    out
}

/// One active service, as the admin route and the command line list it.
pub fn service_entry_json(entry: &ServiceEntry) -> Value {
    json!({
        "_id": entry.service_id,
        "static": entry.static_entry,
        "_expires_at": entry.expires_at.map(rfc3339),
    })
}

/// Where the plugin comes from, for start-up and reloads.
#[derive(Debug, Clone, Default)]
pub struct PluginSource {
    /// A `.wasm` file; the embedded plugin when `None`.
    pub path: Option<PathBuf>,
    /// Where compiled code is cached; nothing is cached when `None`.
    pub cache_dir: Option<PathBuf>,
}

impl PluginSource {
    /// Load (and check against the world) the configured plugin.
    pub fn load(&self) -> anyhow::Result<Arc<PluginImage>> {
        match &self.path {
            Some(path) => {
                let wasm = std::fs::read(path)
                    .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
                self.compile(&wasm)
            }
            None => self.compile(PLUGIN_WASM),
        }
    }

    /// Compile `wasm` and check that it targets the `plugin` world.
    pub fn compile(&self, wasm: &[u8]) -> anyhow::Result<Arc<PluginImage>> {
        match &self.cache_dir {
            Some(dir) => PluginImage::cached(wasm, dir),
            None => PluginImage::new(wasm),
        }
        .map_err(|e| anyhow::anyhow!("not a usable request-access plugin: {e:#}"))
    }
}

/// Everything the routes share.
pub struct AppState {
    pub runtime: Arc<Runtime>,
    pub metrics: Metrics,
    pub admin_token: Option<String>,
    pub plugin: PluginSource,
    pub request_timeout: Duration,
    pub max_body_bytes: usize,
    next_request_id: AtomicU64,
}

impl AppState {
    pub fn new(
        runtime: Arc<Runtime>,
        admin_token: Option<String>,
        plugin: PluginSource,
        request_timeout: Duration,
        max_body_bytes: usize,
    ) -> Arc<AppState> {
        let mut metrics = Metrics::new();
        runtime.register_metrics(&mut metrics.registry);
        Arc::new(AppState {
            runtime,
            metrics,
            admin_token: admin_token.filter(|t| !t.is_empty()),
            plugin,
            request_timeout,
            max_body_bytes,
            next_request_id: AtomicU64::new(1),
        })
    }

    /// Swap in the plugin from `wasm`, or from the configured source.
    pub fn reload(&self, wasm: Option<&[u8]>) -> anyhow::Result<()> {
        let image = match wasm {
            Some(bytes) => self.plugin.compile(bytes)?,
            None => self.plugin.load()?,
        };
        self.runtime.reload(image);
        Ok(())
    }
}

/// A refused or failed request: one JSON shape, `{"message", "code", "field"?}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    pub retry_after: Option<u32>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }

    /// Parameter `field` refused: `reason` completes "`field` ...".
    pub fn invalid(field: &str, reason: impl Into<String>) -> Self {
        WireError::invalid(field, reason).into()
    }

    fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl From<CallError> for ApiError {
    fn from(e: CallError) -> Self {
        use StatusCode as S;
        let message = e.to_string();
        match e {
            CallError::Service(ServiceError::InvalidParameter { field, reason }) => {
                ApiError::invalid(&field, reason)
            }
            CallError::Service(ServiceError::UnknownResourceGroup(_)) => ApiError {
                field: Some("_resource_group".into()),
                ..Self::new(S::BAD_REQUEST, "unknown-resource-group", message)
            },
            CallError::Service(ServiceError::ServiceNotActive(_)) => ApiError {
                field: Some("_id".into()),
                ..Self::new(S::FORBIDDEN, "service-not-active", message)
            },
            CallError::Service(ServiceError::NoAccessNumberAvailable(_)) => ApiError {
                retry_after: Some(EXHAUSTED_RETRY_AFTER_SECONDS),
                ..Self::new(
                    S::SERVICE_UNAVAILABLE,
                    "no-access-number-available",
                    message,
                )
            },
            CallError::Service(ServiceError::NoMatch) => {
                Self::new(S::NOT_FOUND, "no-match", message)
            }
            CallError::Service(ServiceError::TooManyAttempts) => {
                Self::new(S::NOT_FOUND, "too-many-attempts", message)
            }
            CallError::Service(ServiceError::RegistryFailure(_)) => {
                Self::new(S::BAD_GATEWAY, "registry-failure", message)
            }
            CallError::Service(ServiceError::StateStoreFailure(_)) => {
                Self::new(S::INTERNAL_SERVER_ERROR, "state-store-failure", message)
            }
            CallError::PluginFault(_) => {
                Self::new(S::INTERNAL_SERVER_ERROR, "plugin-fault", message)
            }
        }
    }
}

impl From<WireError> for ApiError {
    fn from(e: WireError) -> Self {
        ApiError {
            status: StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
            code: e.code,
            message: e.message,
            field: e.field,
            retry_after: None,
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> Self {
        let status = r.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "body-too-large"
        } else {
            "bad-request"
        };
        Self::new(status, code, r.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "message": self.message, "code": self.code });
        if let Some(field) = self.field {
            body["field"] = json!(field);
        }
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

type Answer = Result<Value, ApiError>;

fn content_type(headers: &HeaderMap) -> Option<&[u8]> {
    headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes())
}

/// Run `work` for `route`: deadline, metrics, one log line, a request id header.
async fn handle(
    app: &AppState,
    route: &'static str,
    work: impl Future<Output = Answer>,
) -> Response {
    let started = Instant::now();
    let request_id = app.next_request_id.fetch_add(1, Ordering::Relaxed);
    let answer = match tokio::time::timeout(app.request_timeout, work).await {
        Ok(answer) => answer,
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            format!("no answer within {:?}", app.request_timeout),
        )),
    };
    let took = started.elapsed();
    let (outcome, mut response) = match answer {
        Ok(value) => ("ok", (StatusCode::OK, axum::Json(value)).into_response()),
        Err(e) => (e.code, e.into_response()),
    };
    app.metrics.observe(route, outcome, took);
    // Never log parameters: access codes must not reach the logs.
    tracing::info!(
        request_id,
        route,
        status = response.status().as_u16(),
        outcome,
        latency_us = took.as_micros() as u64,
        "request"
    );
    response
        .headers_mut()
        .insert("x-request-id", HeaderValue::from(request_id));
    response
}

/// Run a plugin call on the blocking pool.
async fn call<T: Send + 'static>(
    app: &AppState,
    work: impl FnOnce(&Runtime) -> Result<T, CallError> + Send + 'static,
) -> Result<T, ApiError> {
    let runtime = app.runtime.clone();
    tokio::task::spawn_blocking(move || work(&runtime))
        .await
        .map_err(|e| ApiError::internal(format!("the call was lost: {e}")))?
        .map_err(ApiError::from)
}

fn pool_health(size: u32, live: u32, free: u32) -> Value {
    json!({
        "size": size,
        "live": live,
        "free": free,
        "utilisation": f64::from(live) / f64::from(size.max(1)),
    })
}

async fn request_access(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    handle(&app, "request-access", async {
        let params = Params::decode(content_type(&headers), body?).await?;
        let request = params.create_request()?;
        let with_health = params.flag("_return_pool_health")?;
        let group = request.resource_group.clone();
        let id = request.service_id.clone();
        let (info, health) = call(&app, move |rt| {
            let info = rt.create(&request)?;
            let health = if with_health {
                Some(rt.pool_status(&group)?)
            } else {
                None
            };
            Ok((info, health))
        })
        .await?;
        let mut out = access_info_json(&id, &info);
        if let Some(s) = health {
            out.insert("_pool_health".into(), pool_health(s.size, s.live, s.free));
        }
        Ok(Value::Object(out))
    })
    .await
}

async fn match_interaction(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    handle(&app, "match-interaction", async {
        let params = Params::decode(content_type(&headers), body?).await?;
        let request = params.match_request()?;
        let multiple = params.flag("_return_multiple_matches")?;
        let matched = call(&app, move |rt| rt.match_access(&request)).await?;
        // With locking, a number belongs to one reservation: at most one match.
        Ok(if multiple {
            json!({ "matches": [{ "_id": matched.service_id }] })
        } else {
            json!({ "_id": matched.service_id })
        })
    })
    .await
}

async fn release_access(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    handle(&app, "release-access", async {
        let params = Params::decode(content_type(&headers), body?).await?;
        let id = params.required_text("_id")?;
        let group = params.required_text("_resource_group")?;
        let (id2, group2) = (id.clone(), group.clone());
        let number = call(&app, move |rt| rt.release(&id2, &group2)).await?;
        Ok(json!({ "_id": id, "_resource_group": group, "_access_number": number }))
    })
    .await
}

fn authorize(app: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &app.admin_token else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "admin-disabled",
            "admin routes are disabled: no admin token is configured",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required",
        ))
    }
}

/// Run a registry operation on the blocking pool (the registry lives in the store).
async fn registry_call<T: Send + 'static>(
    app: &AppState,
    work: impl FnOnce(&crate::registry::Registry) -> Result<T, RegistryError> + Send + 'static,
) -> Result<T, ApiError> {
    let runtime = app.runtime.clone();
    tokio::task::spawn_blocking(move || work(&runtime.services().registry))
        .await
        .map_err(|e| ApiError::internal(format!("the call was lost: {e}")))?
        .map_err(|e| match e {
            RegistryError::Invalid(why) => ApiError::invalid("_id", why),
            other => ApiError::internal(other.to_string()),
        })
}

async fn list_services(State(app): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    handle(&app, "admin-services", async {
        authorize(&app, &headers)?;
        let list = registry_call(&app, |registry| registry.list()).await?;
        let services: Vec<Value> = list.iter().map(service_entry_json).collect();
        Ok(json!({ "services": services }))
    })
    .await
}

async fn register_service(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    handle(&app, "admin-services", async {
        authorize(&app, &headers)?;
        let params = Params::decode(content_type(&headers), body?).await?;
        let id = params.required_text("_id")?;
        let ttl = match params.seconds("_ttl")? {
            Some(0) => return Err(ApiError::invalid("_ttl", "must be positive")),
            ttl => ttl.map(|s| Duration::from_secs(u64::from(s))),
        };
        let id2 = id.clone();
        let registration =
            registry_call(&app, move |registry| registry.register(&id2, ttl)).await?;
        Ok(json!({ "_id": id, "_expires_at": registration.expires_at.map(rfc3339) }))
    })
    .await
}

async fn deregister_service(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    handle(&app, "admin-services", async {
        authorize(&app, &headers)?;
        let id2 = id.clone();
        let existed = registry_call(&app, move |registry| registry.deregister(&id2)).await?;
        if !existed {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not-registered",
                format!("service {id:?} is not registered"),
            ));
        }
        Ok(json!({ "_id": id, "_deregistered": true }))
    })
    .await
}

/// Occupancy of every group; also refreshes the pool gauges.
async fn pools(app: &AppState) -> Result<Vec<(String, Value)>, ApiError> {
    let names: Vec<String> = app
        .runtime
        .services()
        .config
        .groups
        .iter()
        .map(|g| g.name.clone())
        .collect();
    let statuses = call(app, move |rt| {
        names
            .into_iter()
            .map(|name| rt.pool_status(&name).map(|s| (name, s)))
            .collect::<Result<Vec<_>, _>>()
    })
    .await?;
    Ok(statuses
        .into_iter()
        .map(|(name, s)| {
            app.metrics.set_pool(&name, s.size, s.live);
            (name, pool_health(s.size, s.live, s.free))
        })
        .collect())
}

async fn pool_health_route(State(app): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    handle(&app, "admin-pools", async {
        authorize(&app, &headers)?;
        let groups: Vec<Value> = pools(&app)
            .await?
            .into_iter()
            .map(|(name, mut health)| {
                health["name"] = json!(name);
                health
            })
            .collect();
        Ok(json!({ "groups": groups }))
    })
    .await
}

async fn reload_plugin(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    handle(&app, "admin-reload", async {
        authorize(&app, &headers)?;
        let body = body?;
        let app2 = app.clone();
        tokio::task::spawn_blocking(move || {
            app2.reload((!body.is_empty()).then_some(body.as_ref()))
        })
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::invalid("plugin", format!("{e:#}")))?;
        Ok(json!({ "reloaded": true, "reloads": app.runtime.stats().reloads }))
    })
    .await
}

async fn metrics_route(State(app): State<Arc<AppState>>) -> Response {
    // A store failure leaves the last pool values in place; the scrape still answers.
    if let Err(e) = pools(&app).await {
        tracing::warn!(error = %e.message, "pool occupancy unavailable for metrics");
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.encode(),
    )
        .into_response()
}

async fn healthz() -> Response {
    axum::Json(json!({ "status": "alive" })).into_response()
}

async fn readyz(State(app): State<Arc<AppState>>) -> Response {
    let runtime = app.runtime.clone();
    let store_ok = tokio::task::spawn_blocking(move || {
        runtime
            .services()
            .store
            .get(&["readiness-probe".into()])
            .is_ok()
    })
    .await
    .unwrap_or(false);
    if store_ok {
        axum::Json(json!({ "status": "ready" })).into_response()
    } else {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-ready",
            "the state store does not answer",
        )
        .into_response()
    }
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn no_route() -> Response {
    ApiError::new(StatusCode::NOT_FOUND, "no-route", "no such route").into_response()
}

/// Every route of the service.
pub fn router(app: Arc<AppState>) -> Router {
    let limit = app.max_body_bytes;
    Router::new()
        .route("/genesys/1/service/request-access", post(request_access))
        .route(
            "/genesys/1/service/match-interaction",
            post(match_interaction),
        )
        .route("/genesys/1/service/release-access", post(release_access))
        .route("/admin/services", get(list_services).post(register_service))
        .route("/admin/services/{id}", delete(deregister_service))
        .route("/admin/pools", get(pool_health_route))
        .route(
            "/admin/plugin/reload",
            post(reload_plugin).layer(DefaultBodyLimit::max(MAX_PLUGIN_BYTES)),
        )
        .route("/metrics", get(metrics_route))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(openapi))
        .fallback(no_route)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(app)
}

/// Serve until SIGTERM or SIGINT, then let in-flight requests finish. SIGHUP reloads
/// the plugin from its configured source.
pub async fn serve(listener: tokio::net::TcpListener, app: Arc<AppState>) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let app = app.clone();
        let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                let app = app.clone();
                let outcome = tokio::task::spawn_blocking(move || app.reload(None)).await;
                match outcome {
                    Ok(Ok(())) => tracing::info!("plugin reloaded on SIGHUP"),
                    Ok(Err(e)) => {
                        tracing::error!(error = %format!("{e:#}"), "plugin reload failed; the old one keeps serving")
                    }
                    Err(e) => tracing::error!(error = %e, "plugin reload was lost"),
                }
            }
        });
    }
    axum::serve(listener, router(app))
        .with_graceful_shutdown(shutdown_signal())
        .await
}

async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
