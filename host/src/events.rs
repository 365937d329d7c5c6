//! Telling the operator's systems what happens to reservations: the events the plugin
//! reports with its commits, read back from the outbox ([`crate::journal`]) and
//!
//! - POSTed to `[events] webhook_url`, one at a time and in order, signed with HMAC-SHA256
//!   over `{timestamp}.{body}`, retried with exponential backoff (0.25 s doubling to
//!   `max_backoff_ms`, 30 s by default) for `retry_for`, then dropped and logged. One node of a cluster delivers (it holds a
//!   lease in the store, renewed every tick); the others take over within a lease when it
//!   stops. The position delivered is kept in the store, advanced after each
//!   acknowledged delivery: a node that dies mid-delivery leaves the event to be
//!   delivered again (at least once; the `id` tells a repeat).
//! - streamed to `/admin/events` subscribers of every node, from each node's own tail.
//!
//! Calls never wait for any of it: they only add the outbox keys to their commit.
//! Events are read once they are [`SETTLE`] old, so that a commit that took its instant
//! before another's but landed after it is not passed over.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use request_access_guest::api::{Entry, Mutation, Precondition};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::broadcast;

use crate::config::WebhookConfig;
use crate::journal;
use crate::runtime::Runtime;
use crate::store::StoreError;

/// How old an outbox event must be before it is read: more than a commit takes to land.
pub const SETTLE: Duration = Duration::from_secs(2);
/// How often the outbox is read.
const TICK: Duration = Duration::from_millis(250);
/// How long a node's delivery lease lasts unless renewed.
const LEASE: Duration = Duration::from_secs(10);
/// How long the outbox keeps events past their delivery, for the streams' tails.
const STREAM_KEEP: Duration = Duration::from_secs(60);
/// How often old events are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(30);

/// The key of the delivery lease: the node holding it and until when.
const LEASE_KEY: &str = "\u{1e}evk";
/// The key of the last outbox key the webhook acknowledged.
const CURSOR_KEY: &str = "\u{1e}evc";

/// The header carrying `sha256=` and the hex HMAC of `{timestamp}.{body}`.
pub const SIGNATURE_HEADER: &str = "x-request-access-signature";
/// The header carrying the delivery's Unix time in seconds, signed with the body.
pub const TIMESTAMP_HEADER: &str = "x-request-access-timestamp";
/// The header carrying the event's `id`.
pub const EVENT_ID_HEADER: &str = "x-request-access-event-id";

/// The events of this node's tail, for `/admin/events` subscribers.
pub type Stream = broadcast::Sender<Arc<str>>;

/// A stream with room for a burst of events per slow subscriber.
pub fn stream() -> Stream {
    broadcast::channel(1024).0
}

/// `sha256=` and the hex HMAC-SHA256 of `{timestamp}.{body}` under `secret`: what a
/// receiver recomputes, and compares in constant time, to trust a delivery.
pub fn signature(secret: &str, timestamp: u64, body: &[u8]) -> String {
    let timestamp = timestamp.to_string();
    let hex = hmac_hex(secret, &[timestamp.as_bytes(), b".", body]);
    format!("sha256={hex}")
}

/// The hex HMAC-SHA256 of `parts`, one after the other, under `secret`.
fn hmac_hex(secret: &str, parts: &[&[u8]]) -> String {
    // HMAC takes a key of any length: this cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A random number for this node, told apart from the others' (not a secret).
fn node_id() -> u64 {
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

/// What the delivering node remembers between ticks.
struct Delivery {
    node: u64,
    /// The event being retried, its attempts, and when the next one is due.
    retrying: Option<(String, u32, Instant)>,
    last_prune: Option<Instant>,
}

/// Run the tail and, where a webhook is configured, the deliveries, until the process
/// ends. Spawned by [`crate::http::serve`].
pub async fn run(runtime: Arc<Runtime>, stream: Stream) {
    let mut tail = journal::outbox_at(
        runtime
            .services()
            .clock
            .now_ms()
            .saturating_sub(millis(SETTLE)),
    );
    let mut delivery = Delivery {
        node: node_id(),
        retrying: None,
        last_prune: None,
    };
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let services = runtime.services();
        if !services.config.events.outbox() && services.config.events.log_retention.is_zero() {
            continue;
        }
        if services.config.events.stream
            && let Err(e) = follow(&runtime, &stream, &mut tail).await
        {
            tracing::warn!(error = %e, "the event stream could not read the outbox");
        }
        if let Err(e) = deliver(&runtime, &mut delivery).await {
            tracing::warn!(error = %e, "events could not be delivered or pruned");
        }
    }
}

/// Send the outbox's settled events after `tail` to this node's subscribers.
async fn follow(runtime: &Runtime, stream: &Stream, tail: &mut String) -> Result<(), StoreError> {
    let services = runtime.services();
    let until = journal::outbox_at(services.clock.now_ms().saturating_sub(millis(SETTLE)));
    loop {
        let start = format!("{tail}\0");
        let page = services.store.scan(&start, &until, 256).await?;
        for entry in &page {
            if let Ok(text) = std::str::from_utf8(&entry.value) {
                // No subscriber: nothing to do.
                let _ = stream.send(Arc::from(text));
            }
            *tail = entry.key.clone();
        }
        if page.len() < 256 {
            return Ok(());
        }
    }
}

/// The entry at `key`, if any (a store answering no entry at all counts as none).
async fn entry(runtime: &Runtime, key: &str) -> Result<Option<Entry>, StoreError> {
    let found = runtime.services().store.get(&[key.to_string()]).await?;
    Ok(found.into_iter().next().flatten())
}

/// Hold the delivery lease, if no other node does. Renewed once half of it has run, so
/// that holding it costs a commit every few seconds, not every tick.
async fn hold_lease(runtime: &Runtime, node: u64) -> Result<bool, StoreError> {
    let services = runtime.services();
    let now = services.clock.now_ms();
    let current = entry(runtime, LEASE_KEY).await?;
    let lease = current
        .as_ref()
        .and_then(|e| serde_json::from_slice::<Value>(&e.value).ok());
    let until = lease
        .as_ref()
        .and_then(|l| l["until"].as_u64())
        .unwrap_or(0);
    let ours = lease
        .as_ref()
        .is_some_and(|l| l["node"].as_u64() == Some(node));
    match (ours, until > now) {
        (false, true) => return Ok(false),
        (true, true) if until - now > millis(LEASE) / 2 => return Ok(true),
        _ => {}
    }
    let lease = json!({ "node": node, "until": now + millis(LEASE) });
    let precondition = Precondition {
        key: LEASE_KEY.to_string(),
        revision: current.map(|e| e.revision),
    };
    let put = Mutation::Put(LEASE_KEY.to_string(), lease.to_string().into_bytes());
    Ok(matches!(
        services.store.commit(&[precondition], &[put]).await?,
        request_access_guest::api::CommitOutcome::Committed(_)
    ))
}

/// Deliver the settled events after the cursor to the webhook, and prune what is done
/// with, if this node holds the lease.
async fn deliver(runtime: &Runtime, delivery: &mut Delivery) -> Result<(), StoreError> {
    if !hold_lease(runtime, delivery.node).await? {
        delivery.retrying = None;
        return Ok(());
    }
    let services = runtime.services();
    let now = services.clock.now_ms();
    let cursor = entry(runtime, CURSOR_KEY).await?;
    let delivered = cursor
        .as_ref()
        .map(|e| String::from_utf8_lossy(&e.value).into_owned());
    if let Some(webhook) = services.config.events.webhook.clone() {
        let start = match &delivered {
            Some(key) => format!("{key}\0"),
            None => journal::OUTBOX.to_string(),
        };
        let until = journal::outbox_at(now.saturating_sub(millis(SETTLE)));
        let mut revision = cursor.as_ref().map(|e| e.revision);
        for event in services.store.scan(&start, &until, 32).await? {
            let age = now.saturating_sub(journal::committed_at(&event.key).unwrap_or(now));
            let gave_up = age > millis(services.config.events.retry_for);
            if !gave_up {
                match &delivery.retrying {
                    Some((key, _, next)) if *key == event.key && Instant::now() < *next => {
                        return Ok(());
                    }
                    _ => {}
                }
                if let Err(why) = post(&webhook, event.value.clone()).await {
                    let attempts = match &delivery.retrying {
                        Some((key, n, _)) if *key == event.key => n + 1,
                        _ => {
                            tracing::warn!(error = %why, url = %crate::config::redact_url(&webhook.url),
                                "the webhook did not take an event; retrying");
                            1
                        }
                    };
                    let pause = (TICK * 2u32.saturating_pow(attempts - 1))
                        .min(services.config.events.max_backoff);
                    delivery.retrying = Some((event.key, attempts, Instant::now() + pause));
                    return Ok(());
                }
            } else {
                tracing::warn!(
                    event = %String::from_utf8_lossy(&event.value),
                    "an event was not delivered within retry_for and is dropped"
                );
            }
            delivery.retrying = None;
            let precondition = Precondition {
                key: CURSOR_KEY.to_string(),
                revision,
            };
            let put = Mutation::Put(CURSOR_KEY.to_string(), event.key.clone().into_bytes());
            match services.store.commit(&[precondition], &[put]).await? {
                request_access_guest::api::CommitOutcome::Committed(r) => revision = Some(r),
                // Another node delivers now.
                request_access_guest::api::CommitOutcome::Conflict(_) => return Ok(()),
            }
        }
    }
    if delivery
        .last_prune
        .is_none_or(|at| at.elapsed() >= PRUNE_EVERY)
    {
        delivery.last_prune = Some(Instant::now());
        let kept_for_streams = now.saturating_sub(millis(STREAM_KEEP));
        // Undelivered events stay for the webhook; delivered ones for the streams.
        let before = match (&services.config.events.webhook, &delivered) {
            (Some(_), Some(key)) => journal::committed_at(key)
                .unwrap_or(0)
                .min(kept_for_streams),
            (Some(_), None) => 0,
            (None, _) => kept_for_streams,
        };
        journal::prune(services.store.as_ref(), &services.config, now, before).await?;
    }
    Ok(())
}

/// POST one event's JSON to the webhook: `Ok` on a 2xx answer.
async fn post(webhook: &WebhookConfig, body: Vec<u8>) -> Result<(), String> {
    let webhook = webhook.clone();
    tokio::task::spawn_blocking(move || {
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let id = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["id"].as_str().map(String::from))
            .unwrap_or_default();
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(webhook.timeout))
            .http_status_as_error(false)
            .build()
            .new_agent();
        let answer = agent
            .post(&webhook.url)
            .header("content-type", "application/json")
            .header(
                SIGNATURE_HEADER,
                &signature(&webhook.secret, timestamp, &body),
            )
            .header(TIMESTAMP_HEADER, &timestamp.to_string())
            .header(EVENT_ID_HEADER, &id)
            .send(&body[..])
            .map_err(|e| e.to_string())?;
        match answer.status().as_u16() {
            200..=299 => Ok(()),
            status => Err(format!("answered {status}")),
        }
    })
    .await
    .map_err(|e| e.to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_hmac_sha256_of_timestamp_dot_body() {
        // RFC 4231, test case 2.
        assert_eq!(
            hmac_hex("Jefe", &[b"what do ya want ", b"for nothing?"]),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let sig = signature("Jefe", 1_767_225_600, b"{}");
        assert_eq!(
            sig,
            format!("sha256={}", hmac_hex("Jefe", &[b"1767225600.{}"]))
        );
        assert_ne!(sig, signature("Jefe", 1_767_225_601, b"{}"));
        assert_ne!(sig, signature("other", 1_767_225_600, b"{}"));
    }
}
