//! The host's own keys in the state store, and how the registrations are encoded in
//! them. A leaf: it depends on no other module of the host, so the registry (which reads
//! and writes registrations) and the durable store (which migrates a legacy table of
//! them) both use it without depending on each other.
//!
//! A registration is the key `{HOST_KEY_PREFIX}service{SEP}{id}`, holding its expiry
//! (8 bytes, little endian, ms since the epoch) or nothing for none.

/// Keys that start with this character belong to the host (the registrations, see
/// [`crate::registry`]); the plugin may neither read nor write them. Validation keeps
/// control characters out of every id, and the plugin's keys start with a letter.
pub const HOST_KEY_PREFIX: char = '\u{1e}';

/// Where the registrations start in the key space; they end before [`REGISTRATIONS_END`].
pub(crate) const REGISTRATIONS: &str = "\u{1e}service\u{1f}";
/// The first key after every registration (`U+001F` + 1 = `U+0020`).
pub(crate) const REGISTRATIONS_END: &str = "\u{1e}service ";

/// A registered service: active until `expires_at` (ms since the epoch), or for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registration {
    /// When the registration runs out; `None` for never.
    pub expires_at: Option<u64>,
}

/// The key and value that store `registration` for `service_id`.
pub(crate) fn registration_entry(
    service_id: &str,
    registration: Registration,
) -> (String, Vec<u8>) {
    debug_assert!(REGISTRATIONS.starts_with(HOST_KEY_PREFIX));
    let value = registration
        .expires_at
        .map_or_else(Vec::new, |at| at.to_le_bytes().to_vec());
    (registration_key(service_id), value)
}

/// The key that stores the registration of `service_id`.
pub(crate) fn registration_key(service_id: &str) -> String {
    format!("{REGISTRATIONS}{service_id}")
}

/// The registration a stored value encodes; `Err` says what is wrong with it.
pub(crate) fn decode_registration(value: &[u8]) -> Result<Registration, String> {
    let expires_at = match value {
        [] => None,
        bytes => {
            Some(u64::from_le_bytes(bytes.try_into().map_err(|_| {
                format!("a registration of {} bytes", bytes.len())
            })?))
        }
    };
    Ok(Registration { expires_at })
}
