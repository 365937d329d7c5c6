//! What monitors and tools ask for: `/metrics`, `/healthz`, `/readyz`,
//! `/openapi.json`, and the answer where no route matches. None asks for a token.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use super::pools::pools;
use crate::http::error::ApiError;

pub(in crate::http) async fn metrics(State(app): State<Arc<AppState>>) -> Response {
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
pub(in crate::http) async fn healthz(State(app): State<Arc<AppState>>) -> Response {
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

pub(in crate::http) async fn readyz(State(app): State<Arc<AppState>>) -> Response {
    let store_ok = app.runtime.services().store_answers().await.is_ok();
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

pub(in crate::http) async fn openapi(State(app): State<Arc<AppState>>) -> Response {
    let services = app.runtime.services();
    let groups = services.config.groups.iter().map(|g| g.name.as_str());
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::http::openapi_for(groups),
    )
        .into_response()
}

pub(in crate::http) async fn no_route() -> Response {
    ApiError::new(StatusCode::NOT_FOUND, "no-route", "no such route").into_response()
}
