//! The configuration file (TOML), with the original service's option names: the
//! resource groups and their pools, the registry, the server and the plugin limits.
//! Shared by the reference host and the standalone adapter.
//!
//! Every error names the file, the line and the key. With no file, the embedded
//! `default-config.toml` serves: one group `DNIS` of ten numbers.

#![warn(missing_docs)]

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use request_access_guest::api::Options;

mod endpoint;
mod error;
mod events;
mod file;
mod groups;
mod limits;
mod options;
mod policy;
pub mod pool;
mod registry;
mod server;
mod store;

pub use error::ConfigError;
use error::Source;
pub use events::{EventsConfig, WebhookConfig};
use file::FileConfig;
pub use groups::GroupConfig;
pub use limits::Limits;
pub use options::DEFAULT_BLOCKING_TARGET;
pub use registry::RemoteRegistryConfig;
pub use server::{RateLimit, ServerConfig};
pub use store::{STORE_SCHEMES, StoreConfig, is_server_url, redact_url};

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
        let source = Source::new(text, origin);
        let file: FileConfig = toml::from_str(text).map_err(|e| source.unreadable(e))?;
        // Section by section, in this order: of several mistakes, the first reported
        // stays the same.
        let (groups, by_name) = groups::read(file.resource_group, &file.options, source)?;
        let (static_services, remote_registry) = registry::read(file.registry, source)?;
        let server = server::read(file.server);
        let store = store::read(file.store, source)?;
        let limits = Limits {
            memory_bytes: file.limits.memory_bytes.0 as usize,
            call_deadline: Duration::from_millis(file.limits.call_deadline_ms.0),
            max_idle_instances: file.limits.max_idle_instances.0 as usize,
        };
        let events = events::read(file.events, source)?;
        let blocking_target = options::blocking_target(&file.options, source)?;
        Ok(Config {
            blocking_target,
            options: options::read(&file.options),
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

#[cfg(test)]
mod tests;
