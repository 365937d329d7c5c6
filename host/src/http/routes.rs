//! The handlers: the original's wire (`/genesys/1/service/...`), the admin routes,
//! metrics, health and the OpenAPI document. Guest calls run on tokio's blocking pool.

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

use super::OPENAPI;
use super::error::ApiError;
use super::metrics::Metrics;
use crate::plugin::PluginSource;
use crate::registry::{Registry, RegistryError};
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
}

impl AppState {
    /// The shared state of a service running `runtime`.
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
            metrics: Arc::new(metrics),
            admin_token: admin_token.filter(|t| !t.is_empty()),
            plugin,
            request_timeout,
            max_body_bytes,
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

type Answer = Result<Json<Value>, ApiError>;

fn content_type(headers: &HeaderMap) -> Option<&[u8]> {
    headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes())
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

/// Run a registry operation on the blocking pool (the registry lives in the store).
async fn registry_call<T: Send + 'static>(
    app: &AppState,
    work: impl FnOnce(&Registry) -> Result<T, RegistryError> + Send + 'static,
) -> Result<T, ApiError> {
    let runtime = app.runtime.clone();
    tokio::task::spawn_blocking(move || work(&runtime.services().registry))
        .await
        .map_err(|e| ApiError::internal(format!("the call was lost: {e}")))?
        .map_err(ApiError::from)
}

pub(super) async fn request_access(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
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
    Ok(Json(answer::access_info(&id, &info, health.as_ref())))
}

pub(super) async fn match_interaction(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    let params = Params::decode(content_type(&headers), body?).await?;
    let request = params.match_request()?;
    let multiple = params.flag("_return_multiple_matches")?;
    let matched = call(&app, move |rt| rt.match_access(&request)).await?;
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
    let (id2, group2) = (id.clone(), group.clone());
    let number = call(&app, move |rt| rt.release(&id2, &group2)).await?;
    Ok(Json(answer::released(&id, &group, &number)))
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
    let list = registry_call(&app, |registry| registry.list()).await?;
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
        .seconds("_ttl")?
        .map(|s| Duration::from_secs(u64::from(s)));
    let id2 = id.clone();
    let registration = registry_call(&app, move |registry| registry.register(&id2, ttl)).await?;
    Ok(Json(answer::registered(&id, registration.expires_at)))
}

pub(super) async fn deregister_service(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
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
    Ok(Json(answer::deregistered(&id)))
}

/// Occupancy of every group; also refreshes the pool gauges.
async fn pools(app: &AppState) -> Result<Value, ApiError> {
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
    for (name, s) in &statuses {
        app.metrics.set_pool(name, s.size, s.live);
    }
    Ok(answer::groups(
        statuses.iter().map(|(name, s)| (name.as_str(), *s)),
    ))
}

pub(super) async fn pool_health(State(app): State<Arc<AppState>>, headers: HeaderMap) -> Answer {
    authorize(&app, &headers)?;
    pools(&app).await.map(Json)
}

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

pub(super) async fn healthz() -> Response {
    Json(json!({ "status": "alive" })).into_response()
}

pub(super) async fn readyz(State(app): State<Arc<AppState>>) -> Response {
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

pub(super) async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

pub(super) async fn no_route() -> Response {
    ApiError::new(StatusCode::NOT_FOUND, "no-route", "no such route").into_response()
}
