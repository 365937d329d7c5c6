//! The original's wire: `/genesys/1/service/request-access`, `match-interaction`,
//! `extend-access` and `release-access`. Where `[server]` limits each service's rate,
//! the routes that name a service check it first.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use bytes::Bytes;
use request_access_wire::{Params, answer};

use super::{Answer, AppState, content_type, detached};
use crate::api::Error;
use crate::http::error::ApiError;
use crate::runtime::CallError;

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

pub(in crate::http) async fn request_access(
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

pub(in crate::http) async fn match_interaction(
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

pub(in crate::http) async fn release_access(
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

pub(in crate::http) async fn extend_access(
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
