//! `[events]`: who is told what happens to reservations (a signed webhook, the
//! `/admin/events` stream), and how long the interaction log keeps it.

use std::time::Duration;

use crate::endpoint::http_url;
use crate::error::{ConfigError, Source};
use crate::file::EventsSection;
use crate::store::redact_url;

/// `[events]`: what happens to reservations, told to the operator's systems (a webhook,
/// the `/admin/events` stream) and kept for a while (the interaction log).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct EventsConfig {
    /// Where each event is POSTed, signed, if anywhere.
    pub webhook: Option<WebhookConfig>,
    /// How long an undelivered event is retried before it is dropped.
    pub retry_for: Duration,
    /// The longest pause between two attempts at one event (they double from 0.25 s).
    pub max_backoff: Duration,
    /// Whether `/admin/events` streams them (Server-Sent Events).
    pub stream: bool,
    /// How long the interaction log keeps each event; zero: no log.
    pub log_retention: Duration,
}

impl EventsConfig {
    /// Whether events go to the outbox the webhook and the stream read.
    pub fn outbox(&self) -> bool {
        self.webhook.is_some() || self.stream
    }

    /// Whether anything keeps events at all.
    pub fn enabled(&self) -> bool {
        self.outbox() || !self.log_retention.is_zero()
    }
}

/// `[events] webhook_url`: the operator's receiver.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// `http://` or `https://`.
    pub url: String,
    /// The HMAC-SHA256 key each delivery is signed with. `REQUEST_ACCESS_WEBHOOK_SECRET`
    /// takes precedence.
    pub secret: String,
    /// Longest one delivery may take.
    pub timeout: Duration,
}

impl std::fmt::Debug for EventsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventsConfig")
            .field(
                "webhook_url",
                &self.webhook.as_ref().map(|w| redact_url(&w.url)),
            )
            .field("retry_for", &self.retry_for)
            .field("max_backoff", &self.max_backoff)
            .field("stream", &self.stream)
            .field("log_retention", &self.log_retention)
            .finish_non_exhaustive()
    }
}

/// The section's values once the webhook's URL is checked and it has a secret:
/// `REQUEST_ACCESS_WEBHOOK_SECRET` when set and not empty, `webhook_secret` otherwise.
pub(crate) fn read(section: EventsSection, source: Source) -> Result<EventsConfig, ConfigError> {
    let webhook = match section.webhook_url {
        None => None,
        Some(url) => {
            let span = url.span();
            let url = http_url(url, "events.webhook_url", source)?;
            let secret = std::env::var("REQUEST_ACCESS_WEBHOOK_SECRET")
                .ok()
                .filter(|s| !s.is_empty())
                .or(section.webhook_secret.filter(|s| !s.is_empty()));
            let Some(secret) = secret else {
                return Err(source.fail(
                    span,
                    "events.webhook_url",
                    "needs events.webhook_secret (or REQUEST_ACCESS_WEBHOOK_SECRET): \
                     deliveries are signed with it"
                        .into(),
                ));
            };
            Some(WebhookConfig {
                url,
                secret,
                timeout: Duration::from_millis(section.webhook_timeout_ms.0),
            })
        }
    };
    Ok(EventsConfig {
        webhook,
        retry_for: Duration::from_secs(section.retry_for.0),
        max_backoff: Duration::from_millis(section.max_backoff_ms.0),
        stream: section.stream,
        log_retention: Duration::from_secs(section.log_retention.0),
    })
}
