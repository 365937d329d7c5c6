//! The file's shape as TOML reads it: its sections, each key with its type, and the
//! bounded integers with their ranges and defaults. Nothing here checks one key
//! against another; the section modules do.

use std::path::PathBuf;

use request_access_guest::api::{LeasePolicy, Strategy};
use request_access_guest::validate;
use serde::Deserialize;
use toml::Spanned;

use crate::limits::Limits;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    #[serde(default)]
    pub(crate) options: OptionsSection,
    #[serde(default)]
    pub(crate) resource_group: Vec<GroupSection>,
    #[serde(default)]
    pub(crate) registry: RegistrySection,
    #[serde(default)]
    pub(crate) server: ServerSection,
    #[serde(default)]
    pub(crate) limits: LimitsSection,
    #[serde(default)]
    pub(crate) store: StoreSection,
    #[serde(default)]
    pub(crate) events: EventsSection,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventsSection {
    pub(crate) webhook_url: Option<Spanned<String>>,
    pub(crate) webhook_secret: Option<String>,
    #[serde(default)]
    pub(crate) webhook_timeout_ms: WebhookTimeoutMs,
    #[serde(default)]
    pub(crate) retry_for: RetryFor,
    #[serde(default)]
    pub(crate) max_backoff_ms: MaxBackoffMs,
    #[serde(default)]
    pub(crate) stream: bool,
    #[serde(default)]
    pub(crate) log_retention: LogRetention,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StoreSection {
    pub(crate) url: Option<Spanned<String>>,
    #[serde(default = "default_spanned_prefix")]
    pub(crate) prefix: Spanned<String>,
    #[serde(default)]
    pub(crate) connect_timeout_ms: StoreConnectMs,
    #[serde(default)]
    pub(crate) command_timeout_ms: StoreCommandMs,
    #[serde(default)]
    pub(crate) wait_replicas: WaitReplicas,
    #[serde(default)]
    pub(crate) wait_timeout_ms: StoreWaitMs,
    #[serde(default)]
    pub(crate) accept_weaker_durability: bool,
    pub(crate) tls_ca_file: Option<PathBuf>,
    #[serde(default)]
    pub(crate) etcd_max_txn_ops: EtcdMaxTxnOps,
    #[serde(default)]
    pub(crate) etcd_max_request_bytes: EtcdMaxRequestBytes,
}

pub(crate) fn default_prefix() -> String {
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
pub(crate) struct ServerSection {
    #[serde(default = "default_listen")]
    pub(crate) listen: String,
    #[serde(default)]
    pub(crate) max_body_bytes: BodyBytes,
    #[serde(default)]
    pub(crate) request_timeout_ms: RequestTimeoutMs,
    pub(crate) admin_token: Option<String>,
    pub(crate) plugin: Option<PathBuf>,
    pub(crate) service_rate_limit: Option<ServiceRate>,
    pub(crate) service_rate_burst: Option<ServiceBurst>,
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}

/// A service's burst when the file sets a rate and no burst: ten, or the rate if lower.
pub(crate) const DEFAULT_BURST: u32 = 10;

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
pub(crate) struct LimitsSection {
    #[serde(default)]
    pub(crate) memory_bytes: MemoryBytes,
    #[serde(default)]
    pub(crate) call_deadline_ms: CallDeadlineMs,
    #[serde(default)]
    pub(crate) max_idle_instances: IdleInstances,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct OptionsSection {
    #[serde(default)]
    pub(crate) access_code_length: CodeLength,
    #[serde(default)]
    pub(crate) booking_expiration_timeout: Timeout,
    #[serde(default)]
    pub(crate) max_code_attempts: CodeAttempts,
    pub(crate) reuse_cooldown: Option<Spanned<Cooldown>>,
    pub(crate) match_grace: Option<Spanned<Grace>>,
    pub(crate) sticky: Option<bool>,
    pub(crate) sticky_memory: Option<StickyMemory>,
    pub(crate) wrong_code_limit: Option<WrongCodeLimit>,
    pub(crate) wrong_code_window: Option<WrongCodeWindow>,
    pub(crate) max_lifetime: Option<MaxLifetime>,
    pub(crate) sliding_expiry: Option<bool>,
    pub(crate) blocking_target: Option<Spanned<f64>>,
    pub(crate) prefer_caller_prefix: Option<CallerPrefix>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GroupSection {
    pub(crate) name: Spanned<String>,
    #[serde(default)]
    pub(crate) strategy: StrategyName,
    pub(crate) booking_expiration_timeout: Option<Timeout>,
    pub(crate) reuse_cooldown: Option<Spanned<Cooldown>>,
    pub(crate) match_grace: Option<Spanned<Grace>>,
    pub(crate) fallback_group: Option<Spanned<String>>,
    pub(crate) sticky: Option<bool>,
    pub(crate) sticky_memory: Option<StickyMemory>,
    pub(crate) reservations_per_number: Option<Spanned<Seats>>,
    pub(crate) wrong_code_limit: Option<WrongCodeLimit>,
    pub(crate) wrong_code_window: Option<WrongCodeWindow>,
    pub(crate) max_lifetime: Option<MaxLifetime>,
    pub(crate) sliding_expiry: Option<bool>,
    pub(crate) prefer_caller_prefix: Option<CallerPrefix>,
    pub(crate) numbers: Vec<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegistrySection {
    #[serde(default)]
    pub(crate) services: Vec<Spanned<String>>,
    pub(crate) url: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) timeout_ms: RegistryTimeoutMs,
    #[serde(default)]
    pub(crate) cache_ttl_ms: RegistryCacheMs,
}

/// `strategy`: one of [`Strategy::NAMES`].
#[derive(Deserialize, Clone, Copy)]
#[serde(try_from = "String")]
pub(crate) struct StrategyName(Strategy);

impl Default for StrategyName {
    fn default() -> Self {
        StrategyName(Strategy::RoundRobin)
    }
}

impl TryFrom<String> for StrategyName {
    type Error = String;

    fn try_from(name: String) -> Result<Self, String> {
        Strategy::from_name(&name).map(StrategyName).ok_or_else(|| {
            let names: Vec<String> = Strategy::NAMES
                .iter()
                .map(|(n, _)| format!("`{n}`"))
                .collect();
            format!("strategy: must be {}, got `{name}`", names.join(" or "))
        })
    }
}

impl From<StrategyName> for Strategy {
    fn from(s: StrategyName) -> Strategy {
        s.0
    }
}

/// A bounded integer option; the bounds and the name are in the error message.
macro_rules! bounded_option {
    ($name:ident, $ty:ty, $key:literal, $range:expr, $default:expr) => {
        #[derive(Deserialize, Clone, Copy)]
        #[serde(try_from = "i64")]
        pub(crate) struct $name(pub(crate) $ty);

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
