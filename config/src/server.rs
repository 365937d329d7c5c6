//! `[server]`: the HTTP service, and each service's request rate on it.

use std::path::PathBuf;
use std::time::Duration;

use crate::file::{DEFAULT_BURST, ServerSection};

/// `[server]`: the HTTP service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// The address to listen on.
    pub listen: String,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Longest a request may take before it is answered 408.
    pub request_timeout: Duration,
    /// Bearer token of the admin routes; they are refused while there is none.
    /// `REQUEST_ACCESS_ADMIN_TOKEN` takes precedence.
    pub admin_token: Option<String>,
    /// The plugin to run and to reload on SIGHUP; the embedded one if unset.
    pub plugin: Option<PathBuf>,
    /// Requests one service (`_id`) may make per minute to this node's service routes
    /// (create, extend, release) before it is answered 429; `None`: no limit.
    pub service_rate_limit: Option<RateLimit>,
}

/// A sustained rate with a burst above it: a token bucket (GCRA).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests per minute, sustained.
    pub per_minute: u32,
    /// Requests allowed at once after a quiet spell.
    pub burst: u32,
}

/// The section's values; a rate without a burst gets [`DEFAULT_BURST`], or the rate if
/// lower.
pub(crate) fn read(section: ServerSection) -> ServerConfig {
    ServerConfig {
        listen: section.listen,
        max_body_bytes: section.max_body_bytes.0 as usize,
        request_timeout: Duration::from_millis(section.request_timeout_ms.0),
        admin_token: section.admin_token,
        plugin: section.plugin,
        service_rate_limit: section.service_rate_limit.map(|limit| RateLimit {
            per_minute: limit.0,
            burst: section
                .service_rate_burst
                .map_or(limit.0.min(DEFAULT_BURST), |b| b.0),
        }),
    }
}
