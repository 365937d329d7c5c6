//! The rule for an HTTP endpoint the service calls out to: the remote registry
//! (`[registry] url`) and the webhook (`[events] webhook_url`).

use toml::Spanned;

use crate::error::{ConfigError, Source};

/// `url` (the value of `key`), if it is an `http://` or `https://` URL.
pub(crate) fn http_url(
    url: Spanned<String>,
    key: &str,
    source: Source,
) -> Result<String, ConfigError> {
    let text = url.get_ref();
    if text.starts_with("http://") || text.starts_with("https://") {
        Ok(url.into_inner())
    } else {
        Err(source.fail(url.span(), key, "must be an http:// or https:// URL".into()))
    }
}
