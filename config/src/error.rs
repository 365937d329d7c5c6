//! [`ConfigError`], the one shape of a refused configuration, and how every refusal
//! comes to name the file, the line and the key.

use std::ops::Range;

/// A refused configuration: the file, the line, the key and why.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub(crate) String);

/// The text being parsed and the name it goes by in messages (`origin`): where every
/// refusal points.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Source<'a> {
    origin: &'a str,
    text: &'a str,
}

impl<'a> Source<'a> {
    /// `text`, known as `origin` in error messages.
    pub(crate) fn new(text: &'a str, origin: &'a str) -> Self {
        Source { origin, text }
    }

    /// A file TOML does not read into the file's shape: `origin:line: why`, TOML's
    /// message naming the key.
    pub(crate) fn unreadable(&self, e: toml::de::Error) -> ConfigError {
        let at = e
            .span()
            .map(|s| format!(":{}", line_of(self.text, s.start)))
            .unwrap_or_default();
        ConfigError(format!("{}{at}: {}", self.origin, e.message().trim_end()))
    }

    /// A value refused at `span`: `origin:line: key: why`.
    pub(crate) fn fail(&self, span: Range<usize>, key: &str, why: String) -> ConfigError {
        ConfigError(format!(
            "{}:{}: {key}: {why}",
            self.origin,
            line_of(self.text, span.start)
        ))
    }
}

/// The reason alone of a refusal by the guest's validation, for [`Source::fail`] to
/// place.
pub(crate) fn error_reason(e: request_access_guest::api::Error) -> String {
    match e {
        request_access_guest::api::Error::InvalidParameter { reason, .. } => reason,
        other => other.to_string(),
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}
