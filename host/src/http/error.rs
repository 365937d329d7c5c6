//! The one shape of a refused or failed request: `{"message", "code", "field"?}`, with
//! the status each cause maps to.

use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use request_access_guest::api::Error as ServiceError;
use request_access_wire::WireError;
use serde_json::json;

use crate::registry::RegistryError;
use crate::runtime::{CallError, Refusal};

/// Seconds a client is told to wait after an exhausted pool when the plugin does not
/// say when a number becomes lendable (a plugin built against 0.1.0).
pub const EXHAUSTED_RETRY_AFTER_SECONDS: u32 = 5;
/// `Retry-After` when the state store does not answer: reconnection is attempted at
/// once, so a retry soon is likely to succeed.
pub const STORE_RETRY_AFTER_SECONDS: u32 = 1;

/// A refused or failed request.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable, machine-readable code.
    pub code: &'static str,
    /// What a person reads.
    pub message: String,
    /// The parameter refused, if one was.
    pub field: Option<String>,
    /// `Retry-After`, in seconds.
    pub retry_after: Option<u32>,
}

/// The outcome of a request, left on its response for the metrics and the log.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outcome(pub &'static str);

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }

    /// Parameter `field` refused: `reason` completes "`field` ...".
    pub fn invalid(field: &str, reason: impl Into<String>) -> Self {
        WireError::invalid(field, reason).into()
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        use StatusCode as S;
        let message = e.to_string();
        match e {
            ServiceError::InvalidParameter { field, reason } => ApiError::invalid(&field, reason),
            ServiceError::UnknownResourceGroup(_) => ApiError {
                field: Some("_resource_group".into()),
                ..Self::new(S::BAD_REQUEST, "unknown-resource-group", message)
            },
            ServiceError::ServiceNotActive(_) => ApiError {
                field: Some("_id".into()),
                ..Self::new(S::FORBIDDEN, "service-not-active", message)
            },
            ServiceError::NoAccessNumberAvailable(_) => ApiError {
                retry_after: Some(EXHAUSTED_RETRY_AFTER_SECONDS),
                ..Self::new(
                    S::SERVICE_UNAVAILABLE,
                    "no-access-number-available",
                    message,
                )
            },
            ServiceError::NoMatch => Self::new(S::NOT_FOUND, "no-match", message),
            ServiceError::TooManyAttempts => Self::new(S::NOT_FOUND, "too-many-attempts", message),
            ServiceError::RegistryFailure(_) => {
                Self::new(S::BAD_GATEWAY, "registry-failure", message)
            }
            ServiceError::StateStoreFailure(_) => {
                Self::new(S::INTERNAL_SERVER_ERROR, "state-store-failure", message)
            }
        }
    }
}

impl From<CallError> for ApiError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Service(e) => e.into(),
            fault @ CallError::PluginFault(_) => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "plugin-fault",
                fault.to_string(),
            ),
            // Transient: the same request succeeds once the store answers again.
            outage @ CallError::StoreUnavailable(_) => ApiError {
                retry_after: Some(STORE_RETRY_AFTER_SECONDS),
                ..Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "state-store-failure",
                    outage.to_string(),
                )
            },
            unsupported @ CallError::Unsupported(_) => Self::new(
                StatusCode::NOT_IMPLEMENTED,
                "not-supported",
                unsupported.to_string(),
            ),
        }
    }
}

impl ApiError {
    /// `service_id` is over its request rate: it may ask again in `seconds`.
    pub(crate) fn rate_limited(service_id: &str, seconds: u32) -> Self {
        ApiError {
            field: Some("_id".into()),
            retry_after: Some(seconds),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                format!("service {service_id:?} is over its request rate: retry in {seconds} s"),
            )
        }
    }

    /// A refused create, with `Retry-After` from when the plugin says the exhausted pool
    /// lends again (whole seconds from `now`, rounded up, at least 1).
    pub(crate) fn refused(refusal: Refusal, now: u64) -> Self {
        let seconds = refusal.retry_after_seconds(now);
        let mut error = ApiError::from(refusal.error);
        if let Some(seconds) = seconds {
            error.retry_after = Some(u32::try_from(seconds).unwrap_or(u32::MAX));
        }
        error
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::Invalid(e) => e.into(),
            other => ApiError::internal(other.to_string()),
        }
    }
}

impl From<WireError> for ApiError {
    fn from(e: WireError) -> Self {
        ApiError {
            status: StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
            code: e.code,
            message: e.message,
            field: e.field,
            retry_after: None,
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> Self {
        let status = r.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "body-too-large"
        } else {
            "bad-request"
        };
        Self::new(status, code, r.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "message": self.message, "code": self.code });
        if let Some(field) = self.field {
            body["field"] = json!(field);
        }
        let mut response = (self.status, axum::Json(body)).into_response();
        response.extensions_mut().insert(Outcome(self.code));
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
