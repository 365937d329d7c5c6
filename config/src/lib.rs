//! The configuration file (TOML), with the original service's option names: the
//! resource groups and their pools, the registry, the server and the plugin limits.
//! Shared by the reference host and the standalone adapter.
//!
//! Every error names the file, the line and the key. With no file, the embedded
//! `default-config.toml` serves: one group `DNIS` of ten numbers.

#![warn(missing_docs)]

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use request_access_guest::api::{Group, LeasePolicy, Options, Policy, Strategy};
use request_access_guest::validate;
use serde::Deserialize;
use toml::Spanned;

pub mod pool;

use crate::pool::{Pool, Segment, parse_spec};

/// Limits on the guest, with safe defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Most linear memory one instance may grow to.
    pub memory_bytes: usize,
    /// Longest one call may run before it is interrupted.
    pub call_deadline: Duration,
    /// Warm instances kept between calls. The HTTP service runs one call per request in
    /// flight, and a durable commit holds its instance until the fsync, so this should
    /// cover the concurrent requests expected: past it, calls pay for a fresh instance
    /// (about 3.5x a warm call). Each costs about 1.3 MiB of linear memory.
    pub max_idle_instances: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 32 << 20,
            call_deadline: Duration::from_millis(500),
            max_idle_instances: 64,
        }
    }
}

/// The configuration used when no file is given.
pub const DEFAULT_CONFIG: &str = include_str!("../default-config.toml");

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[options]`: code length, default timeout, attempts.
    pub options: Options,
    /// `[options] blocking_target`: the share of creates a pool may refuse for want of a
    /// number, which its sizing counts the numbers needed for (Erlang B).
    pub blocking_target: f64,
    /// Groups in file order.
    pub groups: Vec<GroupConfig>,
    /// Services that are always active.
    pub static_services: HashSet<String>,
    /// Another system that knows which services are active, if any.
    pub remote_registry: Option<RemoteRegistryConfig>,
    /// `[server]`.
    pub server: ServerConfig,
    /// `[limits]`: what each plugin call may use.
    pub limits: Limits,
    /// `[store]`: where the state lives when it is shared.
    pub store: StoreConfig,
    /// `[events]`: who is told what happens to reservations, and what is kept.
    pub events: EventsConfig,
    by_name: HashMap<String, usize>,
}

/// `[registry] url = ...`: ask `GET {url}?id={service id}` whether a service is active.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteRegistryConfig {
    /// `GET {url}?id=ID` answers `{"active": bool}`.
    pub url: String,
    /// The longest a question may take.
    pub timeout: Duration,
    /// How long an answer is reused.
    pub cache_ttl: Duration,
}

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

#[derive(Debug, Clone)]
/// One `[[resource_group]]`.
pub struct GroupConfig {
    /// Its name (`_resource_group`).
    pub name: String,
    /// How it picks a free number.
    pub strategy: Strategy,
    /// Its own timeout, overriding `[options]`.
    pub booking_expiration_timeout: Option<u32>,
    /// Its numbers.
    pub pool: Pool,
    /// Its cool-off and grace window (its own, or `[options]`'s).
    pub policy: Policy,
    /// How long its reservations may be kept, and whether a match keeps them.
    pub lease: LeasePolicy,
}

impl GroupConfig {
    /// The group as the plugin sees it (`resource-groups.group`).
    pub fn info(&self) -> Group {
        Group {
            name: self.name.clone(),
            strategy: self.strategy,
            booking_expiration_timeout: self.booking_expiration_timeout,
            size: self.pool.size(),
            pool_id: self.pool_id(),
        }
    }

    /// The fingerprint of the pool definition: of the numbers and, when they are shared,
    /// of how many reservations each carries, so that changing that builds a new ring
    /// (numbers lent whole keep the fingerprint of their list alone).
    fn pool_id(&self) -> u64 {
        match self.policy.reservations_per_number {
            0 | 1 => self.pool.id(),
            // One FNV-1a step more, over the count.
            seats => (self.pool.id() ^ u64::from(seats)).wrapping_mul(0x0100_0000_01b3),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
/// A refused configuration: the file, the line, the key and why.
pub struct ConfigError(String);

impl Config {
    /// The group named `name`.
    pub fn group(&self, name: &str) -> Option<&GroupConfig> {
        self.by_name.get(name).map(|&i| &self.groups[i])
    }

    /// The embedded default.
    pub fn embedded() -> Config {
        Config::parse(DEFAULT_CONFIG, "<embedded default>")
            .expect("the embedded default configuration is valid")
    }

    /// Read and check the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("{}: cannot read: {e}", path.display())))?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Parse `text`; `origin` names it in error messages.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let file: FileConfig = toml::from_str(text).map_err(|e| {
            let at = e
                .span()
                .map(|s| format!(":{}", line_of(text, s.start)))
                .unwrap_or_default();
            ConfigError(format!("{origin}{at}: {}", e.message().trim_end()))
        })?;
        let fail = |span: Range<usize>, key: &str, why: String| {
            ConfigError(format!(
                "{origin}:{}: {key}: {why}",
                line_of(text, span.start)
            ))
        };

        let mut groups = Vec::new();
        let mut by_name = HashMap::new();
        let mut all_segments: Vec<(Segment, String, Range<usize>)> = Vec::new();
        let mut fallbacks = Vec::new();
        for group in file.resource_group {
            let name = group.name.get_ref().clone();
            validate::resource_group(&name)
                .map_err(|e| fail(group.name.span(), "resource_group.name", error_reason(e)))?;
            if by_name.insert(name.clone(), groups.len()).is_some() {
                return Err(fail(
                    group.name.span(),
                    "resource_group.name",
                    format!("group {name:?} is defined twice"),
                ));
            }
            let mut segments = Vec::with_capacity(group.numbers.len());
            for spec in &group.numbers {
                let segment = parse_spec(spec.get_ref())
                    .map_err(|why| fail(spec.span(), "resource_group.numbers", why))?;
                all_segments.push((segment.clone(), name.clone(), spec.span()));
                segments.push(segment);
            }
            let pool = Pool::new(segments)
                .map_err(|why| fail(group.name.span(), "resource_group.numbers", why))?;
            let cooldown = group
                .reuse_cooldown
                .as_ref()
                .or(file.options.reuse_cooldown.as_ref())
                .map_or(0, |c| c.get_ref().0);
            let grace = group
                .match_grace
                .as_ref()
                .or(file.options.match_grace.as_ref());
            if let Some(grace) = grace.filter(|g| g.get_ref().0 > cooldown) {
                // A late call matched after its number was lent again would reach the
                // wrong service: the grace window must end before the number is reused.
                let (span, key) = match (&group.match_grace, &group.reuse_cooldown) {
                    (Some(g), _) => (g.span(), "resource_group.match_grace"),
                    (None, Some(c)) => (c.span(), "resource_group.reuse_cooldown"),
                    (None, None) => (grace.span(), "options.match_grace"),
                };
                return Err(fail(
                    span,
                    key,
                    format!(
                        "match_grace {} s exceeds group {name:?}'s reuse_cooldown of {cooldown} \
                         s: a late call could be matched after its number was lent again",
                        grace.get_ref().0
                    ),
                ));
            }
            let grace = grace.map_or(0, |g| g.get_ref().0);
            let sticky = group.sticky.or(file.options.sticky).unwrap_or(false);
            let sticky_memory = match sticky {
                true => {
                    group
                        .sticky_memory
                        .or(file.options.sticky_memory)
                        .unwrap_or_default()
                        .0
                }
                false => 0,
            };
            let seats = group
                .reservations_per_number
                .as_ref()
                .map_or(1, |n| n.get_ref().0);
            if let Some(n) = group.reservations_per_number.as_ref().filter(|_| seats > 1) {
                let length = file.options.access_code_length.0;
                // N live codes of L digits: a guessed code matches one with odds N / 10^L.
                if u64::from(seats) * 1000 > 10u64.pow(u32::from(length)) {
                    return Err(fail(
                        n.span(),
                        "resource_group.reservations_per_number",
                        format!(
                            "{seats} reservations per number with {length}-digit codes let a \
                             guessed code match with odds of {seats} in {} per attempt, above 1 \
                             in 1000: lower it or raise options.access_code_length",
                            10u64.pow(u32::from(length))
                        ),
                    ));
                }
                if sticky {
                    return Err(fail(
                        n.span(),
                        "resource_group.reservations_per_number",
                        format!(
                            "group {name:?} cannot be sticky and share its numbers: set \
                             sticky = false in it"
                        ),
                    ));
                }
            }
            let (wrong_code_limit, wrong_code_window) = match seats > 1 {
                true => (
                    group
                        .wrong_code_limit
                        .or(file.options.wrong_code_limit)
                        .unwrap_or_default()
                        .0,
                    group
                        .wrong_code_window
                        .or(file.options.wrong_code_window)
                        .unwrap_or_default()
                        .0,
                ),
                false => (0, 0),
            };
            if let Some(fallback) = &group.fallback_group {
                fallbacks.push((name.clone(), fallback.clone()));
            }
            let lease = LeasePolicy {
                max_lifetime: group
                    .max_lifetime
                    .or(file.options.max_lifetime)
                    .unwrap_or_default()
                    .0,
                sliding_expiry: group
                    .sliding_expiry
                    .or(file.options.sliding_expiry)
                    .unwrap_or(false),
            };
            groups.push(GroupConfig {
                name,
                strategy: group.strategy.into(),
                booking_expiration_timeout: group.booking_expiration_timeout.map(|t| t.0),
                pool,
                policy: Policy {
                    reuse_cooldown: cooldown,
                    match_grace: grace,
                    fallback_group: group.fallback_group.map(Spanned::into_inner),
                    sticky_memory,
                    reservations_per_number: seats,
                    wrong_code_limit,
                    wrong_code_window,
                    prefer_caller_prefix: group
                        .prefer_caller_prefix
                        .or(file.options.prefer_caller_prefix)
                        .map_or(0, |p| p.0),
                },
                lease,
            });
        }
        // One hop: a fallback group lends from its own pool only, so no request is sent
        // round a cycle or down a chain the reader of one group's entry cannot see.
        for (name, fallback) in &fallbacks {
            let target = fallback.get_ref();
            let why = if target == name {
                Some(format!("group {name:?} cannot fall back to itself"))
            } else if let Some(&i) = by_name.get(target) {
                groups[i].policy.fallback_group.as_ref().map(|further| {
                    format!(
                        "group {name:?} falls back to {target:?}, which falls back to \
                         {further:?}: a fallback group cannot have one (one hop)"
                    )
                })
            } else {
                Some(format!(
                    "group {name:?} falls back to {target:?}, which is not configured"
                ))
            };
            if let Some(why) = why {
                return Err(fail(fallback.span(), "resource_group.fallback_group", why));
            }
        }

        // With locking, a number is lent to one service at a time: it may belong to one
        // group only, and appear once.
        all_segments.sort_by_key(|(s, _, _)| (s.width, s.first));
        for pair in all_segments.windows(2) {
            let ((a, group_a, _), (b, group_b, span_b)) = (&pair[0], &pair[1]);
            if a.overlaps(b) {
                return Err(fail(
                    span_b.clone(),
                    "resource_group.numbers",
                    format!(
                        "{} (group {group_b:?}) overlaps {} (group {group_a:?}): a number may \
                         belong to one group once",
                        b.describe(),
                        a.describe()
                    ),
                ));
            }
        }

        let mut static_services = HashSet::new();
        for id in file.registry.services {
            validate::service_id(id.get_ref())
                .map_err(|e| fail(id.span(), "registry.services", error_reason(e)))?;
            static_services.insert(id.into_inner());
        }

        let remote_registry = match file.registry.url {
            None => None,
            Some(url) => {
                if !(url.get_ref().starts_with("http://") || url.get_ref().starts_with("https://"))
                {
                    return Err(fail(
                        url.span(),
                        "registry.url",
                        "must be an http:// or https:// URL".into(),
                    ));
                }
                Some(RemoteRegistryConfig {
                    url: url.into_inner(),
                    timeout: Duration::from_millis(file.registry.timeout_ms.0),
                    cache_ttl: Duration::from_millis(file.registry.cache_ttl_ms.0),
                })
            }
        };
        let server = ServerConfig {
            listen: file.server.listen,
            max_body_bytes: file.server.max_body_bytes.0 as usize,
            request_timeout: Duration::from_millis(file.server.request_timeout_ms.0),
            admin_token: file.server.admin_token,
            plugin: file.server.plugin,
            service_rate_limit: file.server.service_rate_limit.map(|limit| RateLimit {
                per_minute: limit.0,
                burst: file
                    .server
                    .service_rate_burst
                    .map_or(limit.0.min(DEFAULT_BURST), |b| b.0),
            }),
        };
        let store = {
            let section = file.store;
            if let Some(url) = &section.url
                && !is_server_url(url.get_ref())
            {
                // Not echoed: a URL may carry a password.
                return Err(fail(
                    url.span(),
                    "store.url",
                    "must be a redis://, rediss://, redis-sentinel:// or etcd:// URL".into(),
                ));
            }
            let prefix = section.prefix.get_ref();
            if prefix.len() > 64
                || prefix.contains(['{', '}'])
                || prefix.chars().any(char::is_control)
            {
                return Err(fail(
                    section.prefix.span(),
                    "store.prefix",
                    "must be at most 64 bytes, without braces (they mark Redis hash tags) \
                     or control characters"
                        .into(),
                ));
            }
            StoreConfig {
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
            }
        };
        let limits = Limits {
            memory_bytes: file.limits.memory_bytes.0 as usize,
            call_deadline: Duration::from_millis(file.limits.call_deadline_ms.0),
            max_idle_instances: file.limits.max_idle_instances.0 as usize,
        };

        let events = {
            let section = file.events;
            let webhook = match section.webhook_url {
                None => None,
                Some(url) => {
                    let text = url.get_ref();
                    if !(text.starts_with("http://") || text.starts_with("https://")) {
                        return Err(fail(
                            url.span(),
                            "events.webhook_url",
                            "must be an http:// or https:// URL".into(),
                        ));
                    }
                    let secret = std::env::var("REQUEST_ACCESS_WEBHOOK_SECRET")
                        .ok()
                        .filter(|s| !s.is_empty())
                        .or(section.webhook_secret.filter(|s| !s.is_empty()));
                    let Some(secret) = secret else {
                        return Err(fail(
                            url.span(),
                            "events.webhook_url",
                            "needs events.webhook_secret (or REQUEST_ACCESS_WEBHOOK_SECRET): \
                             deliveries are signed with it"
                                .into(),
                        ));
                    };
                    Some(WebhookConfig {
                        url: url.into_inner(),
                        secret,
                        timeout: Duration::from_millis(section.webhook_timeout_ms.0),
                    })
                }
            };
            EventsConfig {
                webhook,
                retry_for: Duration::from_secs(section.retry_for.0),
                max_backoff: Duration::from_millis(section.max_backoff_ms.0),
                stream: section.stream,
                log_retention: Duration::from_secs(section.log_retention.0),
            }
        };
        let blocking_target = match &file.options.blocking_target {
            None => DEFAULT_BLOCKING_TARGET,
            Some(t) if *t.get_ref() > 0.0 && *t.get_ref() <= 0.5 => *t.get_ref(),
            Some(t) => {
                return Err(fail(
                    t.span(),
                    "options.blocking_target",
                    format!(
                        "blocking_target must be above 0 and at most 0.5, got {}",
                        t.get_ref()
                    ),
                ));
            }
        };
        Ok(Config {
            blocking_target,
            options: Options {
                access_code_length: file.options.access_code_length.0,
                booking_expiration_timeout: file.options.booking_expiration_timeout.0,
                max_code_attempts: file.options.max_code_attempts.0,
            },
            groups,
            static_services,
            remote_registry,
            server,
            limits,
            store,
            events,
            by_name,
        })
    }
}

fn error_reason(e: request_access_guest::api::Error) -> String {
    match e {
        request_access_guest::api::Error::InvalidParameter { reason, .. } => reason,
        other => other.to_string(),
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    options: OptionsSection,
    #[serde(default)]
    resource_group: Vec<GroupSection>,
    #[serde(default)]
    registry: RegistrySection,
    #[serde(default)]
    server: ServerSection,
    #[serde(default)]
    limits: LimitsSection,
    #[serde(default)]
    store: StoreSection,
    #[serde(default)]
    events: EventsSection,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct EventsSection {
    webhook_url: Option<Spanned<String>>,
    webhook_secret: Option<String>,
    #[serde(default)]
    webhook_timeout_ms: WebhookTimeoutMs,
    #[serde(default)]
    retry_for: RetryFor,
    #[serde(default)]
    max_backoff_ms: MaxBackoffMs,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    log_retention: LogRetention,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreSection {
    url: Option<Spanned<String>>,
    #[serde(default = "default_spanned_prefix")]
    prefix: Spanned<String>,
    #[serde(default)]
    connect_timeout_ms: StoreConnectMs,
    #[serde(default)]
    command_timeout_ms: StoreCommandMs,
    #[serde(default)]
    wait_replicas: WaitReplicas,
    #[serde(default)]
    wait_timeout_ms: StoreWaitMs,
    #[serde(default)]
    accept_weaker_durability: bool,
    tls_ca_file: Option<PathBuf>,
    #[serde(default)]
    etcd_max_txn_ops: EtcdMaxTxnOps,
    #[serde(default)]
    etcd_max_request_bytes: EtcdMaxRequestBytes,
}

fn default_prefix() -> String {
    "request-access:".into()
}

fn default_spanned_prefix() -> Spanned<String> {
    Spanned::new(0..0, default_prefix())
}

impl Default for StoreSection {
    fn default() -> Self {
        StoreSection {
            url: None,
            prefix: default_spanned_prefix(),
            connect_timeout_ms: StoreConnectMs::default(),
            command_timeout_ms: StoreCommandMs::default(),
            wait_replicas: WaitReplicas::default(),
            wait_timeout_ms: StoreWaitMs::default(),
            accept_weaker_durability: false,
            tls_ca_file: None,
            etcd_max_txn_ops: EtcdMaxTxnOps::default(),
            etcd_max_request_bytes: EtcdMaxRequestBytes::default(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerSection {
    #[serde(default = "default_listen")]
    listen: String,
    #[serde(default)]
    max_body_bytes: BodyBytes,
    #[serde(default)]
    request_timeout_ms: RequestTimeoutMs,
    admin_token: Option<String>,
    plugin: Option<PathBuf>,
    service_rate_limit: Option<ServiceRate>,
    service_rate_burst: Option<ServiceBurst>,
}

/// A service's burst when the file sets a rate and no burst: ten, or the rate if lower.
const DEFAULT_BURST: u32 = 10;

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            listen: default_listen(),
            max_body_bytes: BodyBytes::default(),
            request_timeout_ms: RequestTimeoutMs::default(),
            admin_token: None,
            plugin: None,
            service_rate_limit: None,
            service_rate_burst: None,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LimitsSection {
    #[serde(default)]
    memory_bytes: MemoryBytes,
    #[serde(default)]
    call_deadline_ms: CallDeadlineMs,
    #[serde(default)]
    max_idle_instances: IdleInstances,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct OptionsSection {
    #[serde(default)]
    access_code_length: CodeLength,
    #[serde(default)]
    booking_expiration_timeout: Timeout,
    #[serde(default)]
    max_code_attempts: CodeAttempts,
    reuse_cooldown: Option<Spanned<Cooldown>>,
    match_grace: Option<Spanned<Grace>>,
    sticky: Option<bool>,
    sticky_memory: Option<StickyMemory>,
    wrong_code_limit: Option<WrongCodeLimit>,
    wrong_code_window: Option<WrongCodeWindow>,
    max_lifetime: Option<MaxLifetime>,
    sliding_expiry: Option<bool>,
    blocking_target: Option<Spanned<f64>>,
    prefer_caller_prefix: Option<CallerPrefix>,
}

/// A pool is sized for one create in a thousand to find it exhausted.
pub const DEFAULT_BLOCKING_TARGET: f64 = 0.001;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupSection {
    name: Spanned<String>,
    #[serde(default)]
    strategy: StrategyName,
    booking_expiration_timeout: Option<Timeout>,
    reuse_cooldown: Option<Spanned<Cooldown>>,
    match_grace: Option<Spanned<Grace>>,
    fallback_group: Option<Spanned<String>>,
    sticky: Option<bool>,
    sticky_memory: Option<StickyMemory>,
    reservations_per_number: Option<Spanned<Seats>>,
    wrong_code_limit: Option<WrongCodeLimit>,
    wrong_code_window: Option<WrongCodeWindow>,
    max_lifetime: Option<MaxLifetime>,
    sliding_expiry: Option<bool>,
    prefer_caller_prefix: Option<CallerPrefix>,
    numbers: Vec<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RegistrySection {
    #[serde(default)]
    services: Vec<Spanned<String>>,
    url: Option<Spanned<String>>,
    #[serde(default)]
    timeout_ms: RegistryTimeoutMs,
    #[serde(default)]
    cache_ttl_ms: RegistryCacheMs,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
enum StrategyName {
    #[default]
    RoundRobin,
    Random,
}

impl From<StrategyName> for Strategy {
    fn from(s: StrategyName) -> Strategy {
        match s {
            StrategyName::RoundRobin => Strategy::RoundRobin,
            StrategyName::Random => Strategy::Random,
        }
    }
}

/// A bounded integer option; the bounds and the name are in the error message.
macro_rules! bounded_option {
    ($name:ident, $ty:ty, $key:literal, $range:expr, $default:expr) => {
        #[derive(Deserialize, Clone, Copy)]
        #[serde(try_from = "i64")]
        struct $name($ty);

        impl Default for $name {
            fn default() -> Self {
                $name($default)
            }
        }

        impl TryFrom<i64> for $name {
            type Error = String;
            fn try_from(value: i64) -> Result<Self, String> {
                let range = $range;
                <$ty>::try_from(value)
                    .ok()
                    .filter(|v| range.contains(v))
                    .map($name)
                    .ok_or_else(|| {
                        format!(
                            "{} must be {}..={}, got {value}",
                            $key,
                            range.start(),
                            range.end()
                        )
                    })
            }
        }
    };
}

bounded_option!(CodeLength, u8, "access_code_length", 4..=12, 6);
bounded_option!(
    Timeout,
    u32,
    "booking_expiration_timeout",
    validate::TIMEOUT_RANGE,
    30
);
bounded_option!(CodeAttempts, u32, "max_code_attempts", 1..=100, 5);
bounded_option!(Cooldown, u32, "reuse_cooldown", 0..=86_400, 0);
bounded_option!(Grace, u32, "match_grace", 0..=3_600, 0);
bounded_option!(StickyMemory, u32, "sticky_memory", 60..=2_592_000, 86_400);
// Each number's reservations are one stored value, rewritten by every create and match
// on it: a hundred keep it within a few kilobytes.
bounded_option!(Seats, u32, "reservations_per_number", 1..=100, 1);
bounded_option!(WrongCodeLimit, u32, "wrong_code_limit", 1..=1000, 10);
bounded_option!(WrongCodeWindow, u32, "wrong_code_window", 1..=86_400, 3_600);
// At least the longest booking, so that no create outlives it; at most a week.
bounded_option!(
    MaxLifetime,
    u32,
    "max_lifetime",
    1_800..=604_800,
    LeasePolicy::DEFAULT_MAX_LIFETIME
);
// E.164 numbers have at most 15 digits.
bounded_option!(CallerPrefix, u32, "prefer_caller_prefix", 0..=15, 0);
bounded_option!(
    WebhookTimeoutMs,
    u64,
    "webhook_timeout_ms",
    100..=60_000,
    5_000
);
bounded_option!(RetryFor, u64, "retry_for", 1..=604_800, 3_600);
bounded_option!(MaxBackoffMs, u64, "max_backoff_ms", 250..=600_000, 30_000);
bounded_option!(LogRetention, u64, "log_retention", 0..=2_592_000, 0);
bounded_option!(ServiceRate, u32, "service_rate_limit", 1..=1_000_000, 60);
bounded_option!(
    ServiceBurst,
    u32,
    "service_rate_burst",
    1..=100_000,
    DEFAULT_BURST
);
bounded_option!(BodyBytes, u64, "max_body_bytes", 1024..=16 << 20, 64 << 10);
bounded_option!(
    RequestTimeoutMs,
    u64,
    "request_timeout_ms",
    10..=600_000,
    10_000
);
bounded_option!(
    MemoryBytes,
    u64,
    "memory_bytes",
    1 << 20..=4 << 30,
    Limits::default().memory_bytes as u64
);
bounded_option!(
    CallDeadlineMs,
    u64,
    "call_deadline_ms",
    1..=60_000,
    Limits::default().call_deadline.as_millis() as u64
);
bounded_option!(
    IdleInstances,
    u64,
    "max_idle_instances",
    0..=1024,
    Limits::default().max_idle_instances as u64
);
bounded_option!(RegistryTimeoutMs, u64, "timeout_ms", 1..=60_000, 500);
bounded_option!(RegistryCacheMs, u64, "cache_ttl_ms", 0..=3_600_000, 5_000);
bounded_option!(
    StoreConnectMs,
    u64,
    "connect_timeout_ms",
    10..=60_000,
    1_000
);
bounded_option!(
    StoreCommandMs,
    u64,
    "command_timeout_ms",
    10..=60_000,
    1_000
);
bounded_option!(WaitReplicas, u32, "wait_replicas", 0..=16, 0);
bounded_option!(StoreWaitMs, u64, "wait_timeout_ms", 1..=60_000, 100);
// etcd's own defaults: 128 operations and 1.5 MiB per request.
bounded_option!(EtcdMaxTxnOps, u32, "etcd_max_txn_ops", 3..=100_000, 128);
bounded_option!(
    EtcdMaxRequestBytes,
    u32,
    "etcd_max_request_bytes",
    65_536..=1_073_741_824,
    1_572_864
);

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        Config::parse(text, "c.toml").unwrap_err().to_string()
    }

    #[test]
    fn the_embedded_default_has_one_group_of_ten() {
        let c = Config::embedded();
        assert_eq!(c.groups.len(), 1);
        let dnis = c.group("DNIS").unwrap();
        assert_eq!(dnis.pool.size(), 10);
        assert_eq!(dnis.strategy, Strategy::RoundRobin);
        assert_eq!(c.options.access_code_length, 6);
        assert_eq!(c.options.max_code_attempts, 5);
    }

    #[test]
    fn defaults_apply_to_missing_options() {
        let c = Config::parse(
            "[[resource_group]]\nname = \"G\"\nnumbers = [\"5551000\"]\n",
            "c",
        )
        .unwrap();
        assert_eq!(c.options.access_code_length, 6);
        assert_eq!(c.options.booking_expiration_timeout, 30);
        assert_eq!(c.options.max_code_attempts, 5);
        assert_eq!(c.group("G").unwrap().booking_expiration_timeout, None);
    }

    #[test]
    fn the_documented_example_parses() {
        let c = Config::parse(
            r#"
[options]
access_code_length = 6
booking_expiration_timeout = 60
max_code_attempts = 5

[[resource_group]]
name = "DNIS"
strategy = "round-robin"
booking_expiration_timeout = 30
numbers = ["+18005550100..+18005550199", "+18005550300"]

[registry]
services = ["static-service-1"]
"#,
            "c",
        )
        .unwrap();
        assert_eq!(c.group("DNIS").unwrap().pool.size(), 101);
        assert_eq!(
            c.group("DNIS").unwrap().booking_expiration_timeout,
            Some(30)
        );
        assert!(c.static_services.contains("static-service-1"));
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let e = error("[options]\n\naccess_code_length = 3\n");
        assert!(e.starts_with("c.toml:3:"), "{e}");
        assert!(
            e.contains("access_code_length must be 4..=12, got 3"),
            "{e}"
        );

        let e = error("[options]\nbooking_expiration_timeout = 1801\n");
        assert!(
            e.starts_with("c.toml:2:") && e.contains("booking_expiration_timeout"),
            "{e}"
        );

        let e = error("[options]\ncolour = 1\n");
        assert!(e.starts_with("c.toml:2:") && e.contains("colour"), "{e}");

        let e = error(
            "[[resource_group]]\nname = \"G\"\nstrategy = \"lifo\"\nnumbers = [\"5551000\"]\n",
        );
        assert!(e.starts_with("c.toml:3:") && e.contains("lifo"), "{e}");

        let e =
            error("[[resource_group]]\nname = \"G\"\nnumbers = [\n  \"5551000\",\n  \"55x\",\n]\n");
        assert!(
            e.starts_with("c.toml:5:") && e.contains("resource_group.numbers"),
            "{e}"
        );

        let e = error("[[resource_group]]\nname = \"G\"\nnumbers = []\n");
        assert!(e.contains("at least one number"), "{e}");
    }

    #[test]
    fn a_number_belongs_to_one_group_once() {
        let e = error(
            "[[resource_group]]\nname = \"A\"\nnumbers = [\"5551000..5551009\"]\n\
             [[resource_group]]\nname = \"B\"\nnumbers = [\"5551009\"]\n",
        );
        assert!(e.starts_with("c.toml:6:") && e.contains("overlaps"), "{e}");
        let e = error(
            "[[resource_group]]\nname = \"A\"\nnumbers = [\"5551000\"]\n\
             [[resource_group]]\nname = \"A\"\nnumbers = [\"5551001\"]\n",
        );
        assert!(e.contains("defined twice"), "{e}");
    }

    #[test]
    fn the_store_section_defaults_to_the_data_file() {
        let c = Config::embedded();
        assert_eq!(c.store, StoreConfig::default());
        assert_eq!(c.store.url, None);
        let c = Config::parse(
            "[store]\nurl = \"redis://u:secret@10.0.0.1:6379/2\"\nprefix = \"east:\"\n\
             command_timeout_ms = 250\nwait_replicas = 1\n",
            "c.toml",
        )
        .unwrap();
        assert_eq!(
            c.store.url.as_deref(),
            Some("redis://u:secret@10.0.0.1:6379/2")
        );
        assert_eq!(c.store.prefix, "east:");
        assert_eq!(c.store.command_timeout, Duration::from_millis(250));
        assert_eq!(c.store.wait_replicas, 1);
        assert!(!format!("{:?}", c.store).contains("secret"));
    }

    #[test]
    fn a_bad_store_section_is_refused_without_echoing_the_url() {
        let e = error("[store]\nurl = \"http://u:secret@host/\"\n");
        assert!(
            e.starts_with("c.toml:2: store.url: must be a redis://"),
            "{e}"
        );
        assert!(!e.contains("secret"), "{e}");
        let e = error("[store]\nprefix = \"{tag}\"\n");
        assert!(e.contains("store.prefix"), "{e}");
        let e = error("[store]\ncommand_timeout_ms = 0\n");
        assert!(
            e.contains("command_timeout_ms must be 10..=60000, got 0"),
            "{e}"
        );
    }

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(redact_url("redis://u:pw@h:1/0"), "redis://u:***@h:1/0");
        assert_eq!(redact_url("rediss://:pw@h:1"), "rediss://:***@h:1");
        assert_eq!(redact_url("redis://pw@h"), "redis://***@h");
        assert_eq!(redact_url("redis://h:1/0"), "redis://h:1/0");
        assert_eq!(redact_url("redis://u:p@ss@h/0"), "redis://u:***@h/0");
        assert_eq!(
            redact_url("redis-sentinel://u:pw@h1:26379,h2:26379/main/0"),
            "redis-sentinel://u:***@h1:26379,h2:26379/main/0"
        );
        assert_eq!(
            redact_url("redis-sentinel://:pw@h1,h2/main"),
            "redis-sentinel://:***@h1,h2/main"
        );
    }

    #[test]
    fn cool_off_and_grace_come_from_the_group_or_the_options() {
        let c = Config::parse(
            "[options]\nreuse_cooldown = 60\nmatch_grace = 10\n\
             [[resource_group]]\nname = \"A\"\nnumbers = [\"5551000\"]\n\
             [[resource_group]]\nname = \"B\"\nreuse_cooldown = 0\nmatch_grace = 0\n\
             numbers = [\"5551001\"]\n",
            "c.toml",
        )
        .unwrap();
        let policy = |g: &str| c.group(g).unwrap().policy.clone();
        assert_eq!(
            policy("A"),
            Policy {
                reuse_cooldown: 60,
                match_grace: 10,
                ..Policy::WHOLE
            }
        );
        assert_eq!(policy("B"), Policy::default());
        let c = Config::parse(
            "[[resource_group]]\nname = \"A\"\nnumbers = [\"5551000\"]\n",
            "c",
        )
        .unwrap();
        assert_eq!(c.group("A").unwrap().policy, Policy::default());
    }

    #[test]
    fn shared_numbers_take_their_limits_from_the_group_or_the_options() {
        let c = Config::parse(
            "[options]\nwrong_code_limit = 20\n\
             [[resource_group]]\nname = \"A\"\nreservations_per_number = 10\n\
             numbers = [\"5551000\"]\n\
             [[resource_group]]\nname = \"B\"\nreservations_per_number = 5\n\
             wrong_code_limit = 3\nwrong_code_window = 60\nnumbers = [\"5551001\"]\n\
             [[resource_group]]\nname = \"C\"\nnumbers = [\"5551002\"]\n",
            "c.toml",
        )
        .unwrap();
        let policy = |g: &str| c.group(g).unwrap().policy.clone();
        let limits = |p: Policy| {
            (
                p.reservations_per_number,
                p.wrong_code_limit,
                p.wrong_code_window,
            )
        };
        assert_eq!(limits(policy("A")), (10, 20, 3600));
        assert_eq!(limits(policy("B")), (5, 3, 60));
        // Numbers lent whole: no wrong-code window, and the 0.1.0 policy.
        assert_eq!(policy("C"), Policy::WHOLE);
        // The fingerprint changes with the count, so that a new count builds a new ring.
        let a = c.group("A").unwrap();
        assert_ne!(a.info().pool_id, a.pool.id());
        assert_eq!(
            c.group("C").unwrap().info().pool_id,
            c.group("C").unwrap().pool.id()
        );
        let e = error(
            "[[resource_group]]\nname = \"A\"\nreservations_per_number = 101\nnumbers = [\"5551000\"]\n",
        );
        assert!(
            e.contains("reservations_per_number must be 1..=100, got 101"),
            "{e}"
        );
        let e = error("[options]\nwrong_code_window = 0\n");
        assert!(
            e.contains("wrong_code_window must be 1..=86400, got 0"),
            "{e}"
        );
    }

    #[test]
    fn guessing_odds_above_one_in_a_thousand_are_refused() {
        let shared = |length: u8, seats: u32| {
            format!(
                "[options]\naccess_code_length = {length}\n\
                 [[resource_group]]\nname = \"A\"\nreservations_per_number = {seats}\n\
                 numbers = [\"5551000\"]\n"
            )
        };
        // 10 codes of 4 digits: 1 in 1,000, the most allowed.
        assert!(Config::parse(&shared(4, 10), "c.toml").is_ok());
        assert_eq!(
            error(&shared(4, 11)),
            "c.toml:5: resource_group.reservations_per_number: 11 reservations per number \
             with 4-digit codes let a guessed code match with odds of 11 in 10000 per \
             attempt, above 1 in 1000: lower it or raise options.access_code_length"
        );
        assert!(Config::parse(&shared(6, 100), "c.toml").is_ok());
        let e = error(
            "[[resource_group]]\nname = \"A\"\nsticky = true\nreservations_per_number = 2\n\
             numbers = [\"5551000\"]\n",
        );
        assert!(
            e.contains(
                "c.toml:4: resource_group.reservations_per_number: group \"A\" cannot be sticky"
            ),
            "{e}"
        );
    }

    #[test]
    fn sticky_groups_remember_for_their_own_or_the_global_memory() {
        let c = Config::parse(
            "[options]\nsticky_memory = 3600\n\
             [[resource_group]]\nname = \"A\"\nsticky = true\nnumbers = [\"5551000\"]\n\
             [[resource_group]]\nname = \"B\"\nsticky = true\nsticky_memory = 60\n\
             numbers = [\"5551001\"]\n\
             [[resource_group]]\nname = \"C\"\nnumbers = [\"5551002\"]\n\
             [[resource_group]]\nname = \"D\"\nsticky = true\nnumbers = [\"5551003\"]\n",
            "c.toml",
        )
        .unwrap();
        let memory = |g: &str| c.group(g).unwrap().policy.sticky_memory;
        assert_eq!((memory("A"), memory("B"), memory("C")), (3600, 60, 0));
        let c = Config::parse(
            "[[resource_group]]\nname = \"D\"\nsticky = true\nnumbers = [\"5551003\"]\n",
            "c.toml",
        )
        .unwrap();
        assert_eq!(
            c.group("D").unwrap().policy.sticky_memory,
            86_400,
            "one day by default"
        );
        let e = error("[options]\nsticky_memory = 59\n");
        assert!(
            e.contains("sticky_memory must be 60..=2592000, got 59"),
            "{e}"
        );
        let e =
            error("[[resource_group]]\nname = \"A\"\nsticky = \"yes\"\nnumbers = [\"5551000\"]\n");
        assert!(e.starts_with("c.toml:3:"), "{e}");
    }

    #[test]
    fn a_fallback_group_must_exist_and_go_one_hop() {
        let groups = |a: &str, b: &str, c: &str| {
            format!(
                "[[resource_group]]\nname = \"A\"\n{a}numbers = [\"5551000\"]\n\
                 [[resource_group]]\nname = \"B\"\n{b}numbers = [\"5551001\"]\n\
                 [[resource_group]]\nname = \"C\"\n{c}numbers = [\"5551002\"]\n"
            )
        };
        let c = Config::parse(
            &groups("fallback_group = \"B\"\n", "", "fallback_group = \"B\"\n"),
            "c.toml",
        )
        .unwrap();
        assert_eq!(
            c.group("A").unwrap().policy.fallback_group.as_deref(),
            Some("B")
        );
        assert_eq!(c.group("B").unwrap().policy.fallback_group, None);
        let e = error(&groups("fallback_group = \"Z\"\n", "", ""));
        assert_eq!(
            e,
            "c.toml:3: resource_group.fallback_group: group \"A\" falls back to \"Z\", which \
             is not configured"
        );
        let e = error(&groups("", "fallback_group = \"B\"\n", ""));
        assert!(
            e.starts_with(
                "c.toml:6: resource_group.fallback_group: group \"B\" cannot fall back to itself"
            ),
            "{e}"
        );
        // A chain, and a cycle, are both a fallback group with a fallback of its own.
        let e = error(&groups(
            "fallback_group = \"B\"\n",
            "fallback_group = \"C\"\n",
            "",
        ));
        assert!(e.starts_with("c.toml:3: resource_group.fallback_group: group \"A\" falls back to \"B\", which falls back to \"C\""), "{e}");
        let e = error(&groups(
            "fallback_group = \"B\"\n",
            "fallback_group = \"A\"\n",
            "",
        ));
        assert!(
            e.contains("a fallback group cannot have one (one hop)"),
            "{e}"
        );
    }

    #[test]
    fn a_grace_window_longer_than_the_cool_off_is_refused_where_it_is_set() {
        let e = error(
            "[[resource_group]]\nname = \"A\"\nreuse_cooldown = 5\nmatch_grace = 6\n\
             numbers = [\"5551000\"]\n",
        );
        assert!(
            e.starts_with("c.toml:4: resource_group.match_grace: match_grace 6 s exceeds"),
            "{e}"
        );
        let e = error(
            "[options]\nmatch_grace = 30\nreuse_cooldown = 60\n\
             [[resource_group]]\nname = \"A\"\nreuse_cooldown = 20\n\
             numbers = [\"5551000\"]\n",
        );
        assert!(
            e.starts_with("c.toml:6: resource_group.reuse_cooldown:"),
            "{e}"
        );
        let e = error(
            "[options]\nmatch_grace = 30\n[[resource_group]]\nname = \"A\"\n\
             numbers = [\"5551000\"]\n",
        );
        assert!(e.starts_with("c.toml:2: options.match_grace:"), "{e}");
        let e = error("[options]\nreuse_cooldown = 86401\n");
        assert!(
            e.contains("reuse_cooldown must be 0..=86400, got 86401"),
            "{e}"
        );
    }

    #[test]
    fn a_service_rate_has_a_burst_and_bad_ones_name_their_key() {
        let rate = |text: &str| {
            Config::parse(text, "c.toml")
                .unwrap()
                .server
                .service_rate_limit
        };
        assert_eq!(rate(""), None);
        assert_eq!(
            rate("[server]\nservice_rate_limit = 120\n"),
            Some(RateLimit {
                per_minute: 120,
                burst: 10
            })
        );
        assert_eq!(
            rate("[server]\nservice_rate_limit = 3\n").map(|r| r.burst),
            Some(3)
        );
        assert_eq!(
            rate("[server]\nservice_rate_limit = 60\nservice_rate_burst = 30\n").map(|r| r.burst),
            Some(30)
        );
        let e = error("[server]\nservice_rate_limit = 0\n");
        assert!(
            e.contains("c.toml:2") && e.contains("service_rate_limit must be 1..=1000000, got 0"),
            "{e}"
        );
    }

    #[test]
    fn the_lease_policy_comes_from_the_group_then_the_options() {
        let c = Config::parse(
            "[options]\nmax_lifetime = 7200\n\
             [[resource_group]]\nname = \"A\"\nsliding_expiry = true\nnumbers = [\"5551000\"]\n\
             [[resource_group]]\nname = \"B\"\nmax_lifetime = 1800\nnumbers = [\"5551001\"]\n",
            "c.toml",
        )
        .unwrap();
        let lease = |g: &str| c.group(g).unwrap().lease;
        assert_eq!(
            lease("A"),
            LeasePolicy {
                max_lifetime: 7200,
                sliding_expiry: true
            }
        );
        assert_eq!(
            lease("B"),
            LeasePolicy {
                max_lifetime: 1800,
                sliding_expiry: false
            }
        );
        let e = error("[options]\nmax_lifetime = 600\n");
        assert!(
            e.contains("max_lifetime must be 1800..=604800, got 600"),
            "{e}"
        );
    }

    #[test]
    fn the_blocking_target_is_a_share_of_creates() {
        let target = |text: &str| Config::parse(text, "c.toml").map(|c| c.blocking_target);
        assert_eq!(target("").unwrap(), DEFAULT_BLOCKING_TARGET);
        assert_eq!(target("[options]\nblocking_target = 0.01\n").unwrap(), 0.01);
        for bad in ["0.0", "0.7", "-1.0"] {
            let e = error(&format!("[options]\nblocking_target = {bad}\n"));
            assert!(e.contains("c.toml:2: options.blocking_target"), "{e}");
        }
    }
}
