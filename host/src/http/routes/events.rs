//! What happens to reservations, for the operator: the interaction log
//! (`/admin/interactions`) and the live stream (`/admin/events`).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Answer, AppState, authorize};
use crate::http::error::ApiError;
use crate::runtime::CallError;

/// Most events `/admin/interactions` answers.
const MAX_INTERACTIONS: u32 = 1000;

/// What the interaction log holds for a number, oldest first: every reservation made
/// on it and what happened to each, within `[events] log_retention`. Never a code.
pub(in crate::http) async fn interactions(
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
pub(in crate::http) async fn event_stream(
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
