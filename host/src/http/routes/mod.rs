//! The handlers: the original's wire (`/genesys/1/service/...`), the admin routes,
//! metrics, health and the OpenAPI document. Each plugin call runs as a task of its own
//! on the tokio workers (the guest on a fiber), so a client that goes away does not cut
//! a call short: it finishes, and its answer is dropped.
//!
//! - `genesys`: the original's wire (create, match, extend, release);
//! - `admin`: the registered services, and the plugin and configuration reloads;
//! - `pools`: `/admin/pools` and `/admin/overview`;
//! - `events`: the interaction log and the event stream;
//! - `page`: the operator's page and its assets;
//! - `probes`: metrics, health, readiness, the OpenAPI document and the fallback.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::http::{HeaderMap, StatusCode, header};
use serde_json::Value;
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::history::History;
use super::limit::ServiceLimiter;
use super::metrics::Metrics;
use crate::plugin::PluginSource;
use crate::runtime::Runtime;

mod admin;
mod events;
mod genesys;
mod page;
mod pools;
mod probes;

pub(super) use admin::{
    deregister_service, list_services, register_service, reload_config, reload_plugin,
};
pub(super) use events::{event_stream, interactions};
pub(super) use genesys::{extend_access, match_interaction, release_access, request_access};
pub(super) use page::{admin_asset, admin_page, to_admin_page};
pub(super) use pools::{overview, pool_health};
pub(super) use probes::{healthz, metrics, no_route, openapi, readyz};

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

/// What a JSON route answers: its body, or the one shape of a refusal.
type Answer = Result<Json<Value>, ApiError>;

/// The request's `Content-Type`, as the wire's decoder takes it.
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

/// Run `work` (a plugin compiled, a file read) on tokio's blocking threads; a panic in
/// it answers 500.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// Admit an admin request: 403 while no admin token is configured, 401 without the
/// right bearer token (compared in constant time).
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
