//! Validation of request parameters. Every function names the wire field it checks, so
//! a caller learns which parameter was refused and why.

use crate::api::Error;

/// Longest accepted service id, in characters (Unicode scalar values, what JSON
/// Schema's `maxLength` counts, so the OpenAPI document can state the rule exactly).
pub const MAX_SERVICE_ID_CHARS: usize = 256;
/// Longest accepted resource-group name, in characters.
pub const MAX_GROUP_NAME_CHARS: usize = 128;
/// Bounds of `_booking_expiration_timeout`, in seconds.
pub const TIMEOUT_RANGE: std::ops::RangeInclusive<u32> = 5..=1800;
/// Bounds of the digit count of a phone number (E.164 allows at most 15).
pub const PHONE_DIGITS: std::ops::RangeInclusive<usize> = 3..=15;
/// Longest accepted phone number as written, formatting and surrounding white space
/// included.
pub const MAX_PHONE_CHARS: usize = 32;
/// Longest accepted access code in a match request.
pub const MAX_ACCESS_CODE_DIGITS: usize = 12;
/// What a network puts in the caller-number field when the caller hides it.
const HIDDEN_CALLER_MARKERS: [&str; 6] = [
    "anonymous",
    "unknown",
    "restricted",
    "private",
    "unavailable",
    "withheld",
];

/// An identifier (`_id`, `_resource_group`): non-empty, bounded, printable, and without
/// surrounding white space (which would make two ids look alike).
pub fn identifier(field: &str, value: &str, max_chars: usize) -> Result<(), Error> {
    if value.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    let chars = value.chars().count();
    if chars > max_chars {
        return Err(Error::invalid(
            field,
            format!("must be at most {max_chars} characters, got {chars}"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::invalid(field, "must not contain control characters"));
    }
    if value.trim() != value {
        return Err(Error::invalid(
            field,
            "must not start or end with white space",
        ));
    }
    Ok(())
}

/// `_id`.
pub fn service_id(value: &str) -> Result<(), Error> {
    identifier("_id", value, MAX_SERVICE_ID_CHARS)
}

/// `_resource_group`.
pub fn resource_group(value: &str) -> Result<(), Error> {
    identifier("_resource_group", value, MAX_GROUP_NAME_CHARS)
}

/// Seconds a reservation lasts: the request's `_booking_expiration_timeout`, else its
/// group's, else the global one.
pub fn lease_seconds(asked: Option<u32>, group: Option<u32>, global: u32) -> u32 {
    asked.or(group).unwrap_or(global)
}

/// `_booking_expiration_timeout`.
pub fn booking_timeout(value: Option<u32>) -> Result<(), Error> {
    match value {
        Some(seconds) if !TIMEOUT_RANGE.contains(&seconds) => Err(Error::invalid(
            "_booking_expiration_timeout",
            format!(
                "must be {}..={} seconds, got {seconds}",
                TIMEOUT_RANGE.start(),
                TIMEOUT_RANGE.end()
            ),
        )),
        _ => Ok(()),
    }
}

/// The digits of `number`, in order: what numbers are compared by (`+1 (800) 555-0100`
/// is `18005550100`).
pub fn digits(number: &str) -> String {
    number.chars().filter(char::is_ascii_digit).collect()
}

/// A phone number as people write it: an optional leading `+`, digits, and the usual
/// formatting characters (space, `-`, `.`, parentheses). Answers its digits, which is
/// what numbers are compared by.
pub fn phone_number(field: &str, value: &str) -> Result<String, Error> {
    if value.chars().count() > MAX_PHONE_CHARS {
        return Err(Error::invalid(
            field,
            format!("must be at most {MAX_PHONE_CHARS} characters"),
        ));
    }
    let body = value.strip_prefix('+').unwrap_or(value);
    if let Some(bad) = body
        .chars()
        .find(|c| !(c.is_ascii_digit() || matches!(c, ' ' | '-' | '.' | '(' | ')')))
    {
        return Err(Error::invalid(
            field,
            format!("must be a phone number: unexpected character {bad:?}"),
        ));
    }
    let digits = digits(body);
    if !PHONE_DIGITS.contains(&digits.len()) {
        return Err(Error::invalid(
            field,
            format!(
                "must have {}..={} digits, got {}",
                PHONE_DIGITS.start(),
                PHONE_DIGITS.end(),
                digits.len()
            ),
        ));
    }
    Ok(digits)
}

/// The caller's number in a match request: a hidden caller id (`anonymous`, `private`,
/// ..., or an empty value) counts as no number at all.
pub fn caller_number(value: Option<&str>) -> Result<Option<String>, Error> {
    if value.is_some_and(|v| v.chars().count() > MAX_PHONE_CHARS) {
        return Err(Error::invalid(
            "_phone_number",
            format!("must be at most {MAX_PHONE_CHARS} characters"),
        ));
    }
    match value.map(str::trim) {
        None => Ok(None),
        Some(v)
            if v.is_empty()
                || HIDDEN_CALLER_MARKERS
                    .iter()
                    .any(|m| v.eq_ignore_ascii_case(m)) =>
        {
            Ok(None)
        }
        Some(v) => phone_number("_phone_number", v).map(Some),
    }
}

/// `_access_code` in a match request: digits only. A code of the wrong length is not
/// malformed, just wrong.
pub fn access_code(value: &str) -> Result<(), Error> {
    if value.is_empty() || value.len() > MAX_ACCESS_CODE_DIGITS {
        return Err(Error::invalid(
            "_access_code",
            format!("must be 1..={MAX_ACCESS_CODE_DIGITS} digits"),
        ));
    }
    if !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::invalid("_access_code", "must contain digits only"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(e: Error) -> String {
        match e {
            Error::InvalidParameter { field, .. } => field,
            other => panic!("expected invalid-parameter, got {other:?}"),
        }
    }

    #[test]
    fn identifiers_refuse_empty_oversized_control_and_padded() {
        assert_eq!(field_of(service_id("").unwrap_err()), "_id");
        assert!(service_id(&"a".repeat(MAX_SERVICE_ID_CHARS)).is_ok());
        assert!(service_id(&"a".repeat(MAX_SERVICE_ID_CHARS + 1)).is_err());
        // Characters, not bytes: the longest id of four-byte characters is accepted.
        assert!(service_id(&"\u{1F4DE}".repeat(MAX_SERVICE_ID_CHARS)).is_ok());
        assert!(service_id("a\u{0}b").is_err());
        assert!(service_id("a\nb").is_err());
        assert!(service_id(" a").is_err());
        assert!(service_id("svc one/é").is_ok());
        assert_eq!(field_of(resource_group("").unwrap_err()), "_resource_group");
    }

    #[test]
    fn timeout_bounds_are_inclusive() {
        assert!(booking_timeout(None).is_ok());
        assert!(booking_timeout(Some(5)).is_ok());
        assert!(booking_timeout(Some(1800)).is_ok());
        assert!(booking_timeout(Some(4)).is_err());
        assert!(booking_timeout(Some(1801)).is_err());
        assert!(booking_timeout(Some(0)).is_err());
    }

    #[test]
    fn phone_numbers_compare_by_digits() {
        assert_eq!(
            phone_number("f", "+1 (800) 555-0100").unwrap(),
            "18005550100"
        );
        assert_eq!(phone_number("f", "800.555.0100").unwrap(), "8005550100");
        assert!(phone_number("f", "12").is_err());
        assert!(phone_number("f", "1234567890123456").is_err());
        assert!(phone_number("f", "+1800555O100").is_err(), "letter O");
        assert!(phone_number("f", "++18005550100").is_err());
        assert!(phone_number("f", "").is_err());
        assert_eq!(field_of(phone_number("_x", "abc").unwrap_err()), "_x");
    }

    #[test]
    fn hidden_caller_ids_count_as_absent() {
        assert_eq!(caller_number(Some("Anonymous")).unwrap(), None);
        assert_eq!(caller_number(Some("PRIVATE")).unwrap(), None);
        assert_eq!(caller_number(Some("")).unwrap(), None);
        assert_eq!(caller_number(None).unwrap(), None);
        assert_eq!(
            caller_number(Some("+15551234")).unwrap().as_deref(),
            Some("15551234")
        );
        assert!(caller_number(Some("nobody")).is_err());
    }

    #[test]
    fn access_codes_are_digits() {
        assert!(access_code("0123").is_ok());
        assert!(access_code("").is_err());
        assert!(access_code("12a4").is_err());
        assert!(access_code(&"1".repeat(13)).is_err());
    }
}
