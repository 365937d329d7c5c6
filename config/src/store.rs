//! `[store]`: where the state lives when it is shared, the URL schemes of the shared
//! stores, and how a URL's password is kept out of messages and logs.

use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use crate::error::{ConfigError, Source};
use crate::file::{
    EtcdMaxRequestBytes, EtcdMaxTxnOps, StoreCommandMs, StoreConnectMs, StoreSection, StoreWaitMs,
    default_prefix,
};

/// `[store]`: a shared state store (Redis, Redis Sentinel or etcd) instead of the
/// embedded data file.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// `redis://[user:password@]host:port/db`, `rediss://...`,
    /// `redis-sentinel://[user:password@]host:port,host:port/primary-name[/db]` (the
    /// password is the data servers') or `etcd://host:port,...`; the
    /// embedded data file serves when unset. `--store` and `REQUEST_ACCESS_STORE` take
    /// precedence.
    pub url: Option<String>,
    /// Prepended to every key in the shared store, so that several deployments share one
    /// Redis or one etcd cluster.
    pub prefix: String,
    /// Longest a connection attempt may take.
    pub connect_timeout: Duration,
    /// Longest one store call may take before it fails (and the request with 503).
    pub command_timeout: Duration,
    /// Replicas that must acknowledge each commit (Redis `WAIT`) before it is
    /// acknowledged; 0 waits for none.
    pub wait_replicas: u32,
    /// Longest a commit waits for those replicas.
    pub wait_timeout: Duration,
    /// Start even where the server's settings could lose an acknowledged reservation.
    pub accept_weaker_durability: bool,
    /// The certificate authority (PEM) a `rediss://` server's certificate must chain
    /// to; the system's trusted roots when unset.
    pub tls_ca_file: Option<PathBuf>,
    /// Most operations one etcd transaction may hold: the cluster's `--max-txn-ops`.
    /// A commit needing more is refused whole, naming both settings.
    pub etcd_max_txn_ops: u32,
    /// Largest request the etcd cluster accepts: its `--max-request-bytes`.
    pub etcd_max_request_bytes: u32,
}

/// The URL's password never reaches a log, so neither does `Debug`.
impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("url", &self.url.as_deref().map(redact_url))
            .field("prefix", &self.prefix)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("wait_replicas", &self.wait_replicas)
            .field("wait_timeout", &self.wait_timeout)
            .field("accept_weaker_durability", &self.accept_weaker_durability)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("etcd_max_txn_ops", &self.etcd_max_txn_ops)
            .field("etcd_max_request_bytes", &self.etcd_max_request_bytes)
            .finish()
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: None,
            prefix: default_prefix(),
            connect_timeout: Duration::from_millis(StoreConnectMs::default().0),
            command_timeout: Duration::from_millis(StoreCommandMs::default().0),
            wait_replicas: 0,
            wait_timeout: Duration::from_millis(StoreWaitMs::default().0),
            accept_weaker_durability: false,
            tls_ca_file: None,
            etcd_max_txn_ops: EtcdMaxTxnOps::default().0,
            etcd_max_request_bytes: EtcdMaxRequestBytes::default().0,
        }
    }
}

/// The URL schemes of the shared stores: one Redis primary (`redis://`, `rediss://`
/// with TLS), a primary found through Redis Sentinel (`redis-sentinel://`) and an etcd
/// cluster (`etcd://`).
pub const STORE_SCHEMES: [&str; 4] = ["redis://", "rediss://", "redis-sentinel://", "etcd://"];

/// Whether `location` names a store server (see [`STORE_SCHEMES`]) rather than a data
/// file.
pub fn is_server_url(location: &str) -> bool {
    STORE_SCHEMES
        .iter()
        .any(|scheme| location.starts_with(scheme))
}

/// `url` with its password replaced by `***`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or("");
            let hidden = if rest[..at].contains(':') {
                format!("{user}:***")
            } else {
                // `redis://password@host` is how some clients spell a password alone.
                "***".to_string()
            };
            format!("{scheme}://{hidden}{}", &rest[at..])
        }
        None => url.to_string(),
    }
}

/// The section's values once its URL and prefix are checked.
pub(crate) fn read(section: StoreSection, source: Source) -> Result<StoreConfig, ConfigError> {
    if let Some(url) = &section.url
        && !is_server_url(url.get_ref())
    {
        // Not echoed: a URL may carry a password.
        return Err(source.fail(
            url.span(),
            "store.url",
            "must be a redis://, rediss://, redis-sentinel:// or etcd:// URL".into(),
        ));
    }
    let prefix = section.prefix.get_ref();
    if prefix.len() > 64 || prefix.contains(['{', '}']) || prefix.chars().any(char::is_control) {
        return Err(source.fail(
            section.prefix.span(),
            "store.prefix",
            "must be at most 64 bytes, without braces (they mark Redis hash tags) \
             or control characters"
                .into(),
        ));
    }
    Ok(StoreConfig {
        url: section.url.map(Spanned::into_inner),
        prefix: section.prefix.into_inner(),
        connect_timeout: Duration::from_millis(section.connect_timeout_ms.0),
        command_timeout: Duration::from_millis(section.command_timeout_ms.0),
        wait_replicas: section.wait_replicas.0,
        wait_timeout: Duration::from_millis(section.wait_timeout_ms.0),
        accept_weaker_durability: section.accept_weaker_durability,
        tls_ca_file: section.tls_ca_file,
        etcd_max_txn_ops: section.etcd_max_txn_ops.0,
        etcd_max_request_bytes: section.etcd_max_request_bytes.0,
    })
}
