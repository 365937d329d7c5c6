//! The handlers: the original's wire (`/genesys/1/service/...`), the admin routes,
//! metrics, health and the OpenAPI document. Each plugin call runs as a task of its own
//! on the tokio workers (the guest on a fiber), so a client that goes away does not cut
//! a call short: it finishes, and its answer is dropped.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use request_access_wire::{Params, answer};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::history::History;
use super::limit::ServiceLimiter;
use super::metrics::Metrics;
use super::sizing::{self, Sizing};
use crate::api::{Error, PoolStatus, Strategy};
use crate::plugin::PluginSource;
use crate::runtime::{CallError, Runtime};

/// Everything the routes share.
pub struct AppState {
    /// Runs the plugin.
    pub runtime: Arc<Runtime>,
    /// Request and pool metrics, with the runtime's counters.
    pub metrics: Arc<Metrics>,
    /// The bearer token of the admin routes; they are refused without one.
    pub admin_token: Option<String>,
    /// Where reloads take the plugin from.
    pub plugin: PluginSource,
    /// The longest a request may take.
    pub request_timeout: Duration,
    /// The largest request body.
    pub max_body_bytes: usize,
    /// The configuration file reloads read, if the service was started from one.
    pub config_file: Option<std::path::PathBuf>,
    /// This node's last hour of each group's utilisation, for the operator's page.
    pub history: Arc<History>,
    /// Each service's request rate on the service routes, when `[server]` limits it.
    pub limiter: Option<ServiceLimiter>,
    /// The events this node's tail reads, for `/admin/events` subscribers.
    pub events: crate::events::Stream,
}

impl AppState {
    /// The shared state of a service running `runtime`.
    pub fn new(
        runtime: Arc<Runtime>,
        admin_token: Option<String>,
        plugin: PluginSource,
        request_timeout: Duration,
        max_body_bytes: usize,
        config_file: Option<std::path::PathBuf>,
    ) -> Arc<AppState> {
        let mut metrics = Metrics::new();
        runtime.register_metrics(&mut metrics.registry);
        let limiter = runtime
            .services()
            .config
            .server
            .service_rate_limit
            .map(ServiceLimiter::new);
        Arc::new(AppState {
            runtime,
            metrics: Arc::new(metrics),
            admin_token: admin_token.filter(|t| !t.is_empty()),
            plugin,
            request_timeout,
            max_body_bytes,
            config_file,
            history: Arc::new(History::default()),
            limiter,
            events: crate::events::stream(),
        })
    }

    /// Read the configuration file again and serve it; answers the sections that take a
    /// restart and were left as they were. A file that does not load is refused with
    /// its file, line and key, and the running configuration keeps serving.
    pub fn reload_config(&self) -> anyhow::Result<Vec<&'static str>> {
        let Some(path) = &self.config_file else {
            anyhow::bail!(
                "the service runs the embedded configuration: there is no file to reload"
            );
        };
        let config = request_access_config::Config::load(path)?;
        Ok(self.runtime.reconfigure(config))
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

type Answer = Result<Json<Value>, ApiError>;

/// Admit one request of `service_id` under its rate, if the service routes are limited:
/// refused with 429 and `Retry-After` before any plugin or store call. An id that is not
/// one is refused as the plugin would (so no bucket is kept for it).
fn admit(app: &AppState, service_id: &str) -> Result<(), ApiError> {
    let Some(limiter) = &app.limiter else {
        return Ok(());
    };
    request_access_guest::validate::service_id(service_id)?;
    limiter
        .check(service_id)
        .map_err(|seconds| ApiError::rate_limited(service_id, seconds))
}

fn content_type(headers: &HeaderMap) -> Option<&[u8]> {
    headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes())
}

/// Run `work` (plugin or registry calls) to its end as a task of its own: dropping
/// the request (a client gone, a deadline) does not stop it halfway.
async fn detached<T, E>(
    work: impl Future<Output = Result<T, E>> + Send + 'static,
) -> Result<T, ApiError>
where
    T: Send + 'static,
    E: Into<ApiError> + Send + 'static,
{
    tokio::spawn(work)
        .await
        .map_err(|e| ApiError::internal(format!("the call was lost: {e}")))?
        .map_err(Into::into)
}

pub(super) async fn request_access(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    let params = Params::decode(content_type(&headers), body?).await?;
    let request = params.create_request()?;
    admit(&app, &request.service_id)?;
    let with_health = params.flag("_return_pool_health")?;
    let group = request.resource_group.clone();
    let id = request.service_id.clone();
    let runtime = app.runtime.clone();
    let history = app.history.clone();
    let (placed, health) = detached(async move {
        let placed = runtime.create_placed(&request).await.map_err(|refusal| {
            let now = runtime.services().clock.now_ms();
            if let CallError::Service(Error::NoAccessNumberAvailable(_)) = refusal.error {
                history.exhausted(&request.resource_group, now);
            }
            ApiError::refused(refusal, now)
        })?;
        let now = runtime.services().clock.now_ms();
        let lease = placed.access.expiration_time;
        history.lent(&placed.resource_group, lease, now);
        let health = if with_health {
            Some(runtime.pool_status(&group).await?)
        } else {
            None
        };
        Ok::<_, ApiError>((placed, health))
    })
    .await?;
    Ok(Json(answer::access_info(&id, &placed, health.as_ref())))
}

pub(super) async fn match_interaction(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    let params = Params::decode(content_type(&headers), body?).await?;
    let request = params.match_request()?;
    let multiple = params.flag("_return_multiple_matches")?;
    let runtime = app.runtime.clone();
    let matched = detached(async move { runtime.match_access(&request).await }).await?;
    Ok(Json(answer::matched(&matched.service_id, multiple)))
}

pub(super) async fn release_access(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    let params = Params::decode(content_type(&headers), body?).await?;
    let id = params.required_text("_id")?;
    let group = params.required_text("_resource_group")?;
    admit(&app, &id)?;
    let (runtime, id2, group2) = (app.runtime.clone(), id.clone(), group.clone());
    let number = detached(async move { runtime.release(&id2, &group2).await }).await?;
    Ok(Json(answer::released(&id, &group, &number)))
}

pub(super) async fn extend_access(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    let params = Params::decode(content_type(&headers), body?).await?;
    let request = params.extend_request()?;
    admit(&app, &request.service_id)?;
    let (id, group) = (request.service_id.clone(), request.resource_group.clone());
    let runtime = app.runtime.clone();
    let extended = detached(async move { runtime.extend(&request).await }).await?;
    Ok(Json(answer::extended(&id, &group, &extended)))
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

pub(super) async fn list_services(State(app): State<Arc<AppState>>, headers: HeaderMap) -> Answer {
    authorize(&app, &headers)?;
    let list = app.runtime.services().registry.list().await?;
    Ok(Json(answer::services(list.iter().map(|e| {
        answer::service_entry(&e.service_id, e.static_entry, e.expires_at)
    }))))
}

pub(super) async fn register_service(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    authorize(&app, &headers)?;
    let params = Params::decode(content_type(&headers), body?).await?;
    let id = params.required_text("_id")?;
    let ttl = params
        .seconds("_ttl", 1..=u32::MAX)?
        .map(|s| Duration::from_secs(u64::from(s)));
    let (runtime, id2) = (app.runtime.clone(), id.clone());
    let registration =
        detached(async move { runtime.services().registry.register(&id2, ttl).await }).await?;
    Ok(Json(answer::registered(&id, registration.expires_at)))
}

pub(super) async fn deregister_service(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
    authorize(&app, &headers)?;
    let (runtime, id2) = (app.runtime.clone(), id.clone());
    let existed =
        detached(async move { runtime.services().registry.deregister(&id2).await }).await?;
    if !existed {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not-registered",
            format!("service {id:?} is not registered"),
        ));
    }
    Ok(Json(answer::deregistered(&id)))
}

/// `group`'s sizing from this node's history at `now`, if it has enough of it.
fn sizing_of(app: &AppState, group: &str, now: u64) -> Option<Sizing> {
    let services = app.runtime.services();
    let config = services.config.group(group)?;
    let pool = sizing::Pool {
        size: config.pool.size(),
        seats: config.policy.seats(),
        rest_seconds: config.policy.reuse_cooldown.max(config.policy.match_grace),
        default_lease: config
            .booking_expiration_timeout
            .unwrap_or(services.config.options.booking_expiration_timeout),
    };
    let points = app.history.points(group, now);
    sizing::size(&points, pool, services.config.blocking_target, now)
}

/// Occupancy of every group; also refreshes the pool gauges and the page's history.
async fn pool_statuses(app: &AppState) -> Result<Vec<(String, PoolStatus)>, ApiError> {
    let names: Vec<String> = app
        .runtime
        .services()
        .config
        .groups
        .iter()
        .map(|g| g.name.clone())
        .collect();
    let runtime = app.runtime.clone();
    let statuses = detached(async move {
        let mut statuses = Vec::with_capacity(names.len());
        for name in names {
            let status = runtime.pool_status(&name).await?;
            statuses.push((name, status));
        }
        Ok::<_, CallError>(statuses)
    })
    .await?;
    let now = app.runtime.services().clock.now_ms();
    for (name, s) in &statuses {
        app.metrics.set_pool(name, s.size, s.live);
        app.history
            .counted(name, answer::utilisation(s.size, s.live) as f32, now);
        if let Some(sizing) = sizing_of(app, name, now) {
            app.metrics.set_sizing(name, &sizing);
        }
    }
    Ok(statuses)
}

/// Occupancy of every group, as `/admin/pools` answers it, each with its sizing on this
/// node (`null` until it has a minute of history).
async fn pools(app: &AppState) -> Result<Value, ApiError> {
    let statuses = pool_statuses(app).await?;
    let mut answer = answer::groups(statuses.iter().map(|(name, s)| (name.as_str(), *s)));
    let now = app.runtime.services().clock.now_ms();
    if let Some(groups) = answer["groups"].as_array_mut() {
        for (group, (name, _)) in groups.iter_mut().zip(&statuses) {
            group["sizing"] = json!(sizing_of(app, name, now));
        }
    }
    Ok(answer)
}

pub(super) async fn pool_health(State(app): State<Arc<AppState>>, headers: HeaderMap) -> Answer {
    authorize(&app, &headers)?;
    pools(&app).await.map(Json)
}

/// What the operator's page draws: every group with its occupancy, configuration and
/// this node's last hour, the plugin, the store, and the active services. Never a
/// reservation, an access code or a caller's number.
pub(super) async fn overview(State(app): State<Arc<AppState>>, headers: HeaderMap) -> Answer {
    authorize(&app, &headers)?;
    let statuses = pool_statuses(&app).await?;
    let services = app.runtime.services();
    let now = services.clock.now_ms();
    let groups: Vec<Value> = statuses
        .iter()
        .map(|(name, status)| {
            let mut group = json!({
                "name": name,
                "history": app.history.points(name, now),
                "sizing": sizing_of(&app, name, now),
            });
            if let Some(config) = services.config.group(name) {
                group["strategy"] = json!(match config.strategy {
                    Strategy::RoundRobin => "round-robin",
                    Strategy::Random => "random",
                });
                group["booking_expiration_timeout"] = json!(config.booking_expiration_timeout);
                group["reservations_per_number"] = json!(config.policy.seats());
            }
            if let (Value::Object(group), Value::Object(health)) =
                (&mut group, answer::pool_health(status))
            {
                group.extend(health);
            }
            group
        })
        .collect();

    let started = std::time::Instant::now();
    let probe = services.store.get(&["readiness-probe".into()]).await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let listing = services.clone();
    let active = detached(async move { listing.registry.list().await }).await?;
    let plugin = app.runtime.plugin();
    let stats = app.runtime.stats();
    let seconds_since_epoch = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    };
    Ok(Json(json!({
        "now": now / 1000,
        "groups": groups,
        "plugin": {
            "digest": plugin.digest(),
            "loaded_at": seconds_since_epoch(plugin.loaded_at()),
            "reloads": stats.reloads,
            "faults": stats.faults,
            "instantiations": stats.instantiations,
            "idle_instances": stats.idle_instances,
            "max_idle_instances": app.runtime.limits().max_idle_instances,
            "peak_guest_memory_bytes": stats.peak_guest_memory_bytes,
        },
        "store": {
            "kind": services.store.kind(),
            "healthy": probe.is_ok(),
            "error": probe.err().map(|e| e.to_string()),
            "latency_ms": latency_ms,
        },
        "services": active.iter().map(|e| json!({
            "id": e.service_id,
            "static": e.static_entry,
            "ttl_seconds": e.expires_at.map(|at| at.saturating_sub(now).div_ceil(1000)),
        })).collect::<Vec<_>>(),
    })))
}

/// The operator's page and its assets, embedded so that it works on a closed network.
/// Public: they hold no data, and the page asks for the token before it fetches any.
pub(super) async fn admin_asset(Path(asset): Path<String>) -> Response {
    let (content_type, body) = match asset.as_str() {
        "" | "index.html" => ("text/html; charset=utf-8", ADMIN_PAGE),
        "app.js" => ("text/javascript; charset=utf-8", ADMIN_SCRIPT),
        "app.css" => ("text/css; charset=utf-8", ADMIN_STYLE),
        _ => return no_route().await,
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'self'; style-src 'self'; \
                 connect-src 'self'; img-src 'self'; form-action 'self'; \
                 frame-ancestors 'none'; base-uri 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// `/admin`, as an operator types it: the page is at `/admin/`, whose relative links
/// need the slash.
pub(super) async fn to_admin_page() -> Response {
    axum::response::Redirect::permanent("/admin/").into_response()
}

pub(super) async fn admin_page() -> Response {
    admin_asset(Path(String::new())).await
}

const ADMIN_PAGE: &str = include_str!("admin/index.html");
const ADMIN_SCRIPT: &str = include_str!("admin/app.js");
const ADMIN_STYLE: &str = include_str!("admin/app.css");

pub(super) async fn reload_plugin(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    authorize(&app, &headers)?;
    let body = body?;
    let app2 = app.clone();
    tokio::task::spawn_blocking(move || app2.reload((!body.is_empty()).then_some(body.as_ref())))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::invalid("plugin", format!("{e:#}")))?;
    Ok(Json(
        json!({ "reloaded": true, "reloads": app.runtime.stats().reloads }),
    ))
}

pub(super) async fn reload_config(State(app): State<Arc<AppState>>, headers: HeaderMap) -> Answer {
    authorize(&app, &headers)?;
    let app2 = app.clone();
    let kept = tokio::task::spawn_blocking(move || app2.reload_config())
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid-configuration",
                format!("{e:#}"),
            )
        })?;
    Ok(Json(json!({ "reloaded": true, "restart_needed": kept })))
}

pub(super) async fn metrics(State(app): State<Arc<AppState>>) -> Response {
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

/// Liveness: alive unless the state store has failed for good, which only a restart
/// mends (the service also exits by itself then; see `serve`).
pub(super) async fn healthz(State(app): State<Arc<AppState>>) -> Response {
    match app.runtime.services().store.failure() {
        None => Json(json!({ "status": "alive" })).into_response(),
        Some(why) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store-failed",
            format!("the state store failed and serves nothing until a restart: {why}"),
        )
        .into_response(),
    }
}

pub(super) async fn readyz(State(app): State<Arc<AppState>>) -> Response {
    let store_ok = app
        .runtime
        .services()
        .store
        .get(&["readiness-probe".into()])
        .await
        .is_ok();
    if store_ok {
        Json(json!({ "status": "ready" })).into_response()
    } else {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-ready",
            "the state store does not answer",
        )
        .into_response()
    }
}

pub(super) async fn openapi(State(app): State<Arc<AppState>>) -> Response {
    let services = app.runtime.services();
    let groups = services.config.groups.iter().map(|g| g.name.as_str());
    (
        [(header::CONTENT_TYPE, "application/json")],
        super::openapi_for(groups),
    )
        .into_response()
}

pub(super) async fn no_route() -> Response {
    ApiError::new(StatusCode::NOT_FOUND, "no-route", "no such route").into_response()
}

/// Most events `/admin/interactions` answers.
const MAX_INTERACTIONS: u32 = 1000;

/// What the interaction log holds for a number, oldest first: every reservation made
/// on it and what happened to each, within `[events] log_retention`. Never a code.
pub(super) async fn interactions(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<
        axum::extract::Query<Vec<(String, String)>>,
        axum::extract::rejection::QueryRejection,
    >,
) -> Answer {
    authorize(&app, &headers)?;
    let axum::extract::Query(query) =
        query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad-request", e.body_text()))?;
    // Each parameter once at most, as the wire's parameters are.
    let one = |name: &str| -> Result<Option<&str>, ApiError> {
        let mut values = query
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str());
        let first = values.next();
        match values.next() {
            Some(_) => Err(ApiError::invalid(name, "is given more than once")),
            None => Ok(first),
        }
    };
    let number = one("number")?
        .ok_or_else(|| ApiError::invalid("number", "is mandatory"))?
        .to_string();
    let limit = match one("limit")? {
        None => MAX_INTERACTIONS,
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=MAX_INTERACTIONS).contains(l))
            .ok_or_else(|| ApiError::invalid("limit", format!("must be 1..={MAX_INTERACTIONS}")))?,
    };
    let services = app.runtime.services();
    if services.config.events.log_retention.is_zero() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "log-disabled",
            "the interaction log is off: set [events] log_retention",
        ));
    }
    let digits = request_access_guest::validate::phone_number("number", &number)?;
    let events = crate::journal::interactions(services.store.as_ref(), &digits, limit)
        .await
        .map_err(|e| ApiError::from(CallError::StoreUnavailable(e.to_string())))?;
    Ok(Json(json!({ "number": number, "events": events })))
}

/// `/admin/events`: the events this node reads from the outbox, as Server-Sent Events
/// (`event:` the type, `id:` the event's id, `data:` its JSON), from the moment the
/// subscriber connects. A subscriber too slow for the stream is told how many it missed
/// (`event: lagged`).
pub(super) async fn event_stream(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use tokio::sync::broadcast::error::RecvError;
    authorize(&app, &headers)?;
    if !app.runtime.services().config.events.stream {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "stream-disabled",
            "the event stream is off: set [events] stream = true",
        ));
    }
    let events = app.events.subscribe();
    let stream = futures::stream::unfold(events, |mut events| async move {
        let event = match events.recv().await {
            Ok(text) => {
                let parsed: Value = serde_json::from_str(&text).unwrap_or_default();
                let kind = parsed["type"].as_str().unwrap_or("event").to_string();
                let id = parsed["id"].as_str().unwrap_or_default().to_string();
                Event::default().event(kind).id(id).data(text.as_ref())
            }
            Err(RecvError::Lagged(missed)) => {
                Event::default().event("lagged").data(missed.to_string())
            }
            Err(RecvError::Closed) => return None,
        };
        Some((Ok::<_, std::convert::Infallible>(event), events))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}
