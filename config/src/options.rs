//! `[options]`'s own values: the code length, the default timeout, the attempts and
//! the blocking target. The ones a group may override are read with the group's
//! policy (`policy.rs`).

use request_access_guest::api::Options;

use crate::error::{ConfigError, Source};
use crate::file::OptionsSection;

/// A pool is sized for one create in a thousand to find it exhausted.
pub const DEFAULT_BLOCKING_TARGET: f64 = 0.001;

/// The options the plugin sees (`resource-groups.options`).
pub(crate) fn read(section: &OptionsSection) -> Options {
    Options {
        access_code_length: section.access_code_length.0,
        booking_expiration_timeout: section.booking_expiration_timeout.0,
        max_code_attempts: section.max_code_attempts.0,
    }
}

/// `blocking_target`: above 0 and at most 0.5; [`DEFAULT_BLOCKING_TARGET`] when unset.
pub(crate) fn blocking_target(
    section: &OptionsSection,
    source: Source,
) -> Result<f64, ConfigError> {
    match &section.blocking_target {
        None => Ok(DEFAULT_BLOCKING_TARGET),
        Some(t) if *t.get_ref() > 0.0 && *t.get_ref() <= 0.5 => Ok(*t.get_ref()),
        Some(t) => Err(source.fail(
            t.span(),
            "options.blocking_target",
            format!(
                "blocking_target must be above 0 and at most 0.5, got {}",
                t.get_ref()
            ),
        )),
    }
}
