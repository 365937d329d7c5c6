//! `[registry]`: the services that are always active, and another system that knows
//! which others are.

use std::collections::HashSet;
use std::time::Duration;

use request_access_guest::validate;

use crate::endpoint::http_url;
use crate::error::{ConfigError, Source, error_reason};
use crate::file::RegistrySection;

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

/// The static services, each a valid service id, and the remote registry, if any.
pub(crate) fn read(
    section: RegistrySection,
    source: Source,
) -> Result<(HashSet<String>, Option<RemoteRegistryConfig>), ConfigError> {
    let mut static_services = HashSet::new();
    for id in section.services {
        validate::service_id(id.get_ref())
            .map_err(|e| source.fail(id.span(), "registry.services", error_reason(e)))?;
        static_services.insert(id.into_inner());
    }

    let remote_registry = match section.url {
        None => None,
        Some(url) => {
            let url = http_url(url, "registry.url", source)?;
            Some(RemoteRegistryConfig {
                url,
                timeout: Duration::from_millis(section.timeout_ms.0),
                cache_ttl: Duration::from_millis(section.cache_ttl_ms.0),
            })
        }
    };
    Ok((static_services, remote_registry))
}
