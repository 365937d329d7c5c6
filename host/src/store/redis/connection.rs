//! Connections to a Redis server: the client (with TLS), the link calls go through,
//! the bound on every call, and the check that the server keeps what it acknowledges.

use std::time::Duration;

use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::{RedisFuture, Value};
use request_access_config::StoreConfig;

use super::super::StoreError;

/// The server settings under which an acknowledged commit survives a crash of Redis,
/// as (setting, required value, what goes wrong otherwise).
const DURABLE_SETTINGS: [(&str, &str, &str); 3] = [
    (
        "appendonly",
        "yes",
        "without the append-only file a crash loses every reservation since the last snapshot",
    ),
    (
        "appendfsync",
        "always",
        "acknowledged commits not yet synced are lost when the machine fails",
    ),
    (
        "maxmemory-policy",
        "noeviction",
        "under memory pressure Redis deletes keys, reservations included, without telling anyone",
    ),
];

/// A connection to the primary. On one server, a manager that reconnects by itself;
/// behind Sentinel, one plain connection that never does: the same address may by then
/// be a demoted primary, so a lost connection is replaced only by one to the server the
/// sentinels name ([`Primary::lost`](super::sentinel::Primary::lost)).
#[derive(Clone)]
pub(super) enum Link {
    Managed(ConnectionManager),
    Direct(MultiplexedConnection),
}

impl ConnectionLike for Link {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> RedisFuture<'a, Value> {
        match self {
            Link::Managed(c) => c.req_packed_command(cmd),
            Link::Direct(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Link::Managed(c) => c.req_packed_commands(pipeline, offset, count),
            Link::Direct(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Link::Managed(c) => c.get_db(),
            Link::Direct(c) => c.get_db(),
        }
    }
}

/// The client for `url` (with `config`'s certificate authority for `rediss://`).
pub(super) fn client(
    url: &str,
    config: &StoreConfig,
    location: &str,
) -> Result<redis::Client, StoreError> {
    let unusable = |e: redis::RedisError| StoreError::Unavailable(format!("{location}: {e}"));
    match &config.tls_ca_file {
        Some(ca) => {
            let root = std::fs::read(ca).map_err(|e| {
                StoreError::Unavailable(format!(
                    "{location}: cannot read tls_ca_file {}: {e}",
                    ca.display()
                ))
            })?;
            let certificates = redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(root),
            };
            redis::Client::build_with_tls(url, certificates).map_err(unusable)
        }
        None => redis::Client::open(url).map_err(unusable),
    }
}

/// The longest one command may take on a connection: `WAIT` holds its answer up to its
/// own timeout, on top of the command's.
pub(super) fn response_timeout(config: &StoreConfig) -> Duration {
    if config.wait_replicas > 0 {
        config.command_timeout + config.wait_timeout
    } else {
        config.command_timeout
    }
}

/// Refuse a server whose settings could lose an acknowledged commit (see
/// [`durability_problems`]), unless `config` accepts weaker durability (then logged).
pub(super) async fn vet(
    link: &Link,
    config: &StoreConfig,
    location: &str,
) -> Result<(), StoreError> {
    let problems = durability_problems(link, config.command_timeout, location).await?;
    if problems.is_empty() {
        return Ok(());
    }
    let list = problems.join("; ");
    if !config.accept_weaker_durability {
        return Err(StoreError::Unavailable(format!(
            "{location}: refused, it could lose acknowledged reservations: {list} (set [store] \
             accept_weaker_durability = true to start anyway)"
        )));
    }
    tracing::warn!(store = %location, problems = %list, "weaker durability accepted");
    Ok(())
}

/// Where each of the server's settings would let an acknowledged commit be lost, in
/// words; a server that refuses `CONFIG GET` (some managed services do) is reported
/// once, as unchecked.
pub(super) async fn durability_problems(
    link: &Link,
    limit: Duration,
    location: &str,
) -> Result<Vec<String>, StoreError> {
    let mut problems = Vec::new();
    for (setting, wanted, otherwise) in DURABLE_SETTINGS {
        let mut command = redis::cmd("CONFIG");
        command.arg("GET").arg(setting);
        let answer: Result<Vec<String>, _> =
            bounded(location, limit, command.query_async(&mut link.clone())).await?;
        match answer {
            Ok(pair) => {
                let value = pair.get(1).map(String::as_str).unwrap_or("");
                if value != wanted {
                    problems.push(format!(
                        "{setting} is {value:?}, not {wanted:?}: {otherwise}"
                    ));
                }
            }
            Err(e) => {
                tracing::warn!(store = %location, error = %e, "cannot read the server's settings; durability unchecked");
                break;
            }
        }
    }
    Ok(problems)
}

/// `future` within `limit`; a timeout or a lost connection is
/// [`StoreError::Unavailable`], naming the server as `location` (without its password).
pub(super) async fn bounded<T>(
    location: &str,
    limit: Duration,
    future: impl Future<Output = redis::RedisResult<T>>,
) -> Result<redis::RedisResult<T>, StoreError> {
    let late = || {
        StoreError::Unavailable(format!(
            "{location}: no answer within {} ms",
            limit.as_millis()
        ))
    };
    // The connection's own response timeout (the same limit) fires first and has it
    // reconnect, which matters when a server stops answering without closing the
    // connection; this one is the backstop.
    match tokio::time::timeout(limit + Duration::from_millis(100), future).await {
        Err(_) => Err(late()),
        Ok(Err(e)) if e.is_timeout() => Err(late()),
        Ok(Err(e)) if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() => {
            Err(StoreError::Unavailable(format!("{location}: {e}")))
        }
        Ok(answer) => Ok(answer),
    }
}

/// A connection manager for the one server at `url`.
pub(super) async fn manage(
    url: &str,
    config: &StoreConfig,
    location: &str,
) -> Result<ConnectionManager, StoreError> {
    let manager_config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(config.connect_timeout))
        .set_response_timeout(Some(response_timeout(config)))
        // Reconnection happens in the background; a call never waits for more than
        // one attempt, the command timeout bounding it anyway.
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(config.connect_timeout);
    tokio::time::timeout(
        config.connect_timeout + config.command_timeout,
        ConnectionManager::new_with_config(client(url, config, location)?, manager_config),
    )
    .await
    .map_err(|_| {
        StoreError::Unavailable(format!(
            "{location}: no connection within {} ms",
            config.connect_timeout.as_millis()
        ))
    })?
    .map_err(|e| StoreError::Unavailable(format!("{location}: {e}")))
}
