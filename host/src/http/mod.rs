//! The HTTP service: the original's wire (`/genesys/1/service/...`), admin routes,
//! metrics, health, and the OpenAPI document. The plugin can be swapped while requests
//! continue.
//!
//! - `routes`: the handlers and their shared [`AppState`];
//! - `error`: [`ApiError`], the one shape of a refusal;
//! - `layers`: request ids, tracing, the deadline, and each request's metrics and log;
//! - `metrics`: the Prometheus registry;
//! - `limit`: each service's request rate on this node;
//! - `sizing`: each pool's Erlang B blocking and the numbers it needs;
//! - `history`: each group's last hour on this node, for the operator's page
//!   (`/admin/`, embedded from `admin/`).

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};

mod error;
mod history;
mod layers;
mod limit;
mod metrics;
mod routes;
mod sizing;

pub use error::{ApiError, EXHAUSTED_RETRY_AFTER_SECONDS};
pub use layers::REQUEST_ID_HEADER;
pub use metrics::Metrics;
pub use routes::AppState;

/// The OpenAPI document of every route below, for any configuration.
pub const OPENAPI: &str = include_str!("../../openapi.json");

/// The OpenAPI document as a service with these resource groups serves it: the
/// configured names are the only `_resource_group` values it accepts, so the document
/// lists them (a client, or a conformance tool, learns them from it).
pub fn openapi_for<'a>(groups: impl IntoIterator<Item = &'a str>) -> String {
    let mut doc: serde_json::Value =
        serde_json::from_str(OPENAPI).expect("the embedded OpenAPI document is JSON");
    let names: Vec<&str> = groups.into_iter().collect();
    if let Some(group) = doc.pointer_mut("/components/schemas/GroupName") {
        group["enum"] = serde_json::json!(names);
    }
    doc.to_string()
}

/// Largest plugin accepted by the reload route.
pub const MAX_PLUGIN_BYTES: usize = 64 << 20;

/// Every route of the service.
pub fn router(app: Arc<AppState>) -> Router {
    let observer = Arc::new(layers::Observer {
        metrics: app.metrics.clone(),
        timeout: app.request_timeout,
    });
    let api = Router::new()
        .route(
            "/genesys/1/service/request-access",
            post(routes::request_access),
        )
        .route(
            "/genesys/1/service/match-interaction",
            post(routes::match_interaction),
        )
        .route(
            "/genesys/1/service/extend-access",
            post(routes::extend_access),
        )
        .route(
            "/genesys/1/service/release-access",
            post(routes::release_access),
        )
        .route(
            "/admin/services",
            get(routes::list_services).post(routes::register_service),
        )
        .route("/admin/services/{id}", delete(routes::deregister_service))
        .route("/admin/pools", get(routes::pool_health))
        .route("/admin/overview", get(routes::overview))
        .route("/admin/interactions", get(routes::interactions))
        .route(
            "/admin/plugin/reload",
            post(routes::reload_plugin).layer(DefaultBodyLimit::max(MAX_PLUGIN_BYTES)),
        )
        .route("/admin/config/reload", post(routes::reload_config))
        .route_layer(layers::deadline(app.request_timeout))
        .route_layer(axum::middleware::from_fn_with_state(
            observer,
            layers::observe,
        ));
    let request_id = axum::http::HeaderName::from_static(REQUEST_ID_HEADER);
    Router::new()
        .merge(api)
        .route("/metrics", get(routes::metrics))
        // A stream: no deadline.
        .route("/admin/events", get(routes::event_stream))
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz))
        .route("/openapi.json", get(routes::openapi))
        .route("/admin", get(routes::to_admin_page))
        .route("/admin/", get(routes::admin_page))
        .route("/admin/{asset}", get(routes::admin_asset))
        .fallback(routes::no_route)
        .layer(DefaultBodyLimit::max(app.max_body_bytes))
        .with_state(app)
        .layer(layers::trace())
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(
            request_id,
            layers::RequestCounter::default(),
        ))
}

/// Reload on SIGHUP from now on: the configuration file (when the service runs from
/// one) and the plugin. Installed before the service says it listens: until then a
/// SIGHUP would end the process, as is its default.
pub fn reload_on_hangup(app: Arc<AppState>) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                let app = app.clone();
                let outcome = tokio::task::spawn_blocking(move || {
                    let configured = app.config_file.is_some().then(|| app.reload_config());
                    (configured, app.reload(None))
                })
                .await;
                match outcome {
                    Ok((configured, plugin)) => {
                        match configured {
                            Some(Ok(kept)) if kept.is_empty() => {
                                tracing::info!("configuration reloaded on SIGHUP")
                            }
                            Some(Ok(kept)) => tracing::warn!(
                                unchanged = ?kept,
                                "configuration reloaded on SIGHUP; these sections take a restart"
                            ),
                            Some(Err(e)) => tracing::error!(
                                error = %format!("{e:#}"),
                                "configuration reload failed; the running one keeps serving"
                            ),
                            None => {}
                        }
                        match plugin {
                            Ok(()) => tracing::info!("plugin reloaded on SIGHUP"),
                            Err(e) => tracing::error!(
                                error = %format!("{e:#}"),
                                "plugin reload failed; the old one keeps serving"
                            ),
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "reload was lost"),
                }
            }
        });
    }
    #[cfg(not(unix))]
    let _ = app;
    Ok(())
}

/// Why [`serve`] stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// SIGTERM or SIGINT.
    Signal,
    /// The state store failed for good (see [`crate::store::StateStore::failure`]): the
    /// process should exit so that its supervisor restarts it, which reloads the store.
    StoreFailed(String),
}

/// How often [`serve`] asks the store whether it has failed.
const STORE_WATCH: std::time::Duration = std::time::Duration::from_millis(200);

/// Serve until SIGTERM or SIGINT, or until the state store fails for good, then let
/// in-flight requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Arc<AppState>,
) -> std::io::Result<Stopped> {
    let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel();
    let store_failed = {
        let app = app.clone();
        async move {
            let mut ticks = tokio::time::interval(STORE_WATCH);
            loop {
                ticks.tick().await;
                if let Some(why) = app.runtime.services().store.failure() {
                    return why;
                }
            }
        }
    };
    let shutdown = async move {
        let stopped = tokio::select! {
            () = shutdown_signal() => Stopped::Signal,
            why = store_failed => {
                tracing::error!(
                    error = %why,
                    "the state store failed; finishing in-flight requests, then exiting so that \
                     the supervisor restarts the service"
                );
                Stopped::StoreFailed(why)
            }
        };
        let _ = stopped_tx.send(stopped);
    };
    // The events' tail and deliveries, for as long as the service runs.
    let events = tokio::spawn(crate::events::run(app.runtime.clone(), app.events.clone()));
    axum::serve(listener, router(app))
        .with_graceful_shutdown(shutdown)
        .await?;
    events.abort();
    Ok(stopped_rx.await.unwrap_or(Stopped::Signal))
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
