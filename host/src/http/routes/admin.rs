//! The admin routes that change what the service serves: the registered services, the
//! plugin and the configuration. Each asks for the admin token first.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use request_access_wire::{Params, answer};
use serde_json::json;

use super::{Answer, AppState, authorize, blocking, content_type, detached};
use crate::http::error::ApiError;

pub(in crate::http) async fn list_services(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Answer {
    authorize(&app, &headers)?;
    let list = app.runtime.services().registry.list().await?;
    Ok(Json(answer::services(list.iter().map(|e| {
        answer::service_entry(&e.service_id, e.static_entry, e.expires_at)
    }))))
}

pub(in crate::http) async fn register_service(
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

pub(in crate::http) async fn deregister_service(
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

pub(in crate::http) async fn reload_plugin(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    authorize(&app, &headers)?;
    let body = body?;
    let app2 = app.clone();
    blocking(move || app2.reload((!body.is_empty()).then_some(body.as_ref())))
        .await?
        .map_err(|e| ApiError::invalid("plugin", format!("{e:#}")))?;
    Ok(Json(
        json!({ "reloaded": true, "reloads": app.runtime.stats().reloads }),
    ))
}

pub(in crate::http) async fn reload_config(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Answer {
    authorize(&app, &headers)?;
    let app2 = app.clone();
    let kept = blocking(move || app2.reload_config()).await?.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid-configuration",
            format!("{e:#}"),
        )
    })?;
    Ok(Json(json!({ "reloaded": true, "restart_needed": kept })))
}
