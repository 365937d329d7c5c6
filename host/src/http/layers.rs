//! What every API route gets, as tower layers: a request id (`x-request-id`, kept when
//! the client sends one), a tracing span, a deadline, and the metrics and log line of
//! its outcome.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::request_id::{MakeRequestId, RequestId};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use super::error::{ApiError, Outcome};
use super::metrics::Metrics;

/// The header that carries the request id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Request ids from a counter: short, ordered, unique within a process.
#[derive(Clone, Default)]
pub struct RequestCounter(Arc<AtomicU64>);

impl MakeRequestId for RequestCounter {
    fn make_request_id<B>(&mut self, _request: &axum::http::Request<B>) -> Option<RequestId> {
        let id = self.0.fetch_add(1, Ordering::Relaxed) + 1;
        Some(RequestId::new(HeaderValue::from(id)))
    }
}

/// A span per request with its method, path (never the query) and id.
pub fn trace()
-> TraceLayer<SharedClassifier<ServerErrorsAsFailures>, impl Fn(&Request) -> tracing::Span + Clone>
{
    TraceLayer::new_for_http().make_span_with(|request: &Request| {
        tracing::debug_span!(
            "request",
            method = %request.method(),
            path = request.uri().path(),
            request_id = request_id(request),
        )
    })
}

/// Answer 408 once `limit` has passed (the body is filled in by [`observe`]).
pub fn deadline(limit: Duration) -> TimeoutLayer {
    TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, limit)
}

fn request_id(request: &Request) -> &str {
    request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// The name of a route in metrics and logs.
fn route_name(path: &str) -> &'static str {
    match path {
        "/genesys/1/service/request-access" => "request-access",
        "/genesys/1/service/match-interaction" => "match-interaction",
        "/genesys/1/service/release-access" => "release-access",
        "/admin/services" | "/admin/services/{id}" => "admin-services",
        "/admin/pools" => "admin-pools",
        "/admin/plugin/reload" => "admin-reload",
        _ => "other",
    }
}

/// What the route layers need: the metrics, and the deadline to name in a 408.
pub struct Observer {
    /// Where outcomes and latencies go.
    pub metrics: Arc<Metrics>,
    /// The request deadline.
    pub timeout: Duration,
}

/// Count the request by route and outcome, time it, and log one line; never a
/// parameter, so no access code reaches the logs. The line is at DEBUG for an ordinary
/// answer (outcomes and latencies are in the metrics; a busy service would otherwise
/// write a line per request), at WARN for what an operator must see: plugin faults,
/// store and registry failures, internal errors.
pub async fn observe(
    State(observer): State<Arc<Observer>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("other", |p| route_name(p.as_str()));
    let request_id = request_id(&request).to_string();
    let mut response = next.run(request).await;
    let took = started.elapsed();
    let outcome = match response.extensions().get::<Outcome>() {
        Some(Outcome(code)) => code,
        None if response.status() == StatusCode::REQUEST_TIMEOUT => {
            // The deadline layer answers with an empty body: give it the errors' shape.
            response = ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                format!("no answer within {:?}", observer.timeout),
            )
            .into_response();
            "timeout"
        }
        None if response.status().is_success() => "ok",
        None => "rejected",
    };
    observer.metrics.observe(route, outcome, took);
    let status = response.status().as_u16();
    let latency_us = took.as_micros() as u64;
    if matches!(
        outcome,
        "plugin-fault" | "state-store-failure" | "registry-failure" | "internal"
    ) {
        tracing::warn!(
            request_id,
            route,
            status,
            outcome,
            latency_us,
            "request failed"
        );
    } else {
        tracing::debug!(request_id, route, status, outcome, latency_us, "request");
    }
    response
}
