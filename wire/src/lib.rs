//! The original wire: parameters named `_id`, `_resource_group`, ... arriving as
//! `application/x-www-form-urlencoded`, `multipart/form-data` or JSON, every value
//! possibly a string (`"true"`, `"30"`). Decoding names the parameter it refuses; the
//! answers' JSON is in [`answer`].
#![warn(missing_docs)]

pub mod answer;

use bytes::Bytes;
use request_access_guest::api::{CreateRequest, ExtendRequest, MatchRequest};
use request_access_guest::validate;
use serde_json::Value;

/// A refused request: the HTTP status, a stable code, a message, and the parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    /// The HTTP status to answer.
    pub status: u16,
    /// A stable, machine-readable code (`invalid-parameter`, ...).
    pub code: &'static str,
    /// What a person reads.
    pub message: String,
    /// The parameter refused, if one was.
    pub field: Option<String>,
}

impl WireError {
    /// A malformed request, not tied to one parameter.
    pub fn bad_request(message: impl Into<String>) -> Self {
        WireError {
            status: 400,
            code: "bad-request",
            message: message.into(),
            field: None,
        }
    }

    /// Parameter `field` refused: `reason` completes "`field` ...". The name is echoed
    /// as [`shown`] makes it: a name the client made up may be anything.
    pub fn invalid(field: &str, reason: impl Into<String>) -> Self {
        let field = shown(field);
        WireError {
            status: 400,
            code: "invalid-parameter",
            message: format!("{field} {}", reason.into()),
            field: Some(field),
        }
    }

    /// A body in a content type the service does not read.
    pub fn unsupported_media_type(content_type: &str) -> Self {
        WireError {
            status: 415,
            code: "unsupported-media-type",
            message: format!(
                "Content-Type {content_type:?} is not accepted: use \
                 application/x-www-form-urlencoded, multipart/form-data or application/json"
            ),
            field: None,
        }
    }
}

/// Longest parameter name echoed in an error, in characters after escaping.
pub const SHOWN_NAME_CHARS: usize = 64;

/// A parameter name as an error shows it: printable ASCII as it is, anything else
/// escaped as Rust writes it (`\u{84}`), so every character survives any client's
/// display; cut to [`SHOWN_NAME_CHARS`] with `...` when longer.
pub fn shown(name: &str) -> String {
    let escaped: String = name
        .chars()
        .flat_map(|c| {
            let plain = c.is_ascii_graphic() || c == ' ';
            let escaped: Vec<char> = if plain && c != '\\' {
                vec![c]
            } else {
                c.escape_unicode().collect()
            };
            escaped
        })
        .collect();
    if escaped.chars().count() > SHOWN_NAME_CHARS {
        let cut: String = escaped.chars().take(SHOWN_NAME_CHARS).collect();
        format!("{cut}...")
    } else {
        escaped
    }
}

/// One decoded parameter value.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    /// Any text (every form or multipart value).
    Text(String),
    /// A JSON boolean.
    Bool(bool),
    /// A JSON number.
    Number(serde_json::Number),
}

/// The parameters of one request, in arrival order.
#[derive(Debug, Default)]
pub struct Params(Vec<(String, Param)>);

impl Params {
    /// Decode `body` according to the raw `Content-Type` header value, if any.
    pub async fn decode(content_type: Option<&[u8]>, body: Bytes) -> Result<Params, WireError> {
        let content_type = content_type
            .map(|v| {
                std::str::from_utf8(v)
                    .map_err(|_| WireError::bad_request("the Content-Type header is not text"))
            })
            .transpose()?
            .unwrap_or("");
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "" if body.is_empty() => Ok(Params::default()),
            "application/x-www-form-urlencoded" => decode_form(&body),
            "multipart/form-data" => decode_multipart(content_type, body).await,
            "application/json" => decode_json(&body),
            _ => Err(WireError::unsupported_media_type(content_type)),
        }
    }

    /// The single value of `name`; a parameter given twice is refused.
    fn one(&self, name: &str) -> Result<Option<&Param>, WireError> {
        let mut found = self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v);
        let first = found.next();
        if found.next().is_some() {
            return Err(WireError::invalid(name, "is given more than once"));
        }
        Ok(first)
    }

    /// A text parameter (numbers and booleans are refused: ids are strings).
    pub fn text(&self, name: &str) -> Result<Option<String>, WireError> {
        match self.one(name)? {
            None => Ok(None),
            Some(Param::Text(t)) => Ok(Some(t.clone())),
            Some(_) => Err(WireError::invalid(name, "must be a string")),
        }
    }

    /// A text parameter that must be present.
    pub fn required_text(&self, name: &str) -> Result<String, WireError> {
        self.text(name)?
            .ok_or_else(|| WireError::invalid(name, "is mandatory"))
    }

    /// A boolean: `true`/`false` (any case) or a JSON boolean; absent is `false`.
    pub fn flag(&self, name: &str) -> Result<bool, WireError> {
        match self.one(name)? {
            None => Ok(false),
            Some(Param::Bool(b)) => Ok(*b),
            Some(Param::Text(t)) if t.eq_ignore_ascii_case("true") => Ok(true),
            Some(Param::Text(t)) if t.eq_ignore_ascii_case("false") => Ok(false),
            Some(_) => Err(WireError::invalid(name, "must be true or false")),
        }
    }

    /// A whole number of seconds: at most 10 decimal digits, or a JSON number whose value
    /// is whole (`30`, `30.0`, `3e1`); what is not is refused naming the field's own
    /// `bounds`.
    pub fn seconds(
        &self,
        name: &str,
        bounds: std::ops::RangeInclusive<u32>,
    ) -> Result<Option<u32>, WireError> {
        let refused = || {
            WireError::invalid(
                name,
                format!(
                    "must be a whole number of seconds, {}..={}",
                    bounds.start(),
                    bounds.end()
                ),
            )
        };
        let text = match self.one(name)? {
            None => return Ok(None),
            Some(Param::Number(n)) => {
                // A JSON number is an integer when its value is one (`30`, `30.0` and
                // `3e1` alike), as JSON Schema's `integer` says.
                let whole = n.as_u64().or_else(|| {
                    n.as_f64()
                        .filter(|f| f.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(f))
                        .map(|f| f as u64)
                });
                return match whole.and_then(|w| u32::try_from(w).ok()) {
                    Some(seconds) => Ok(Some(seconds)),
                    None => Err(refused()),
                };
            }
            Some(Param::Text(t)) => t.clone(),
            Some(Param::Bool(_)) => return Err(refused()),
        };
        if text.is_empty() || text.len() > 10 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(refused());
        }
        // Parsed here, bounded where the rule lives (the plugin, the registry): their
        // messages name the value.
        text.parse().map(Some).map_err(|_| refused())
    }

    /// The parameters of `request-access` (the seed's Create).
    pub fn create_request(&self) -> Result<CreateRequest, WireError> {
        Ok(CreateRequest {
            service_id: self.required_text("_id")?,
            resource_group: self.required_text("_resource_group")?,
            provide_code: self.flag("_provide_code")?,
            phone_number: self.text("_phone_number")?,
            booking_expiration_timeout: self
                .seconds("_booking_expiration_timeout", validate::TIMEOUT_RANGE)?,
        })
    }

    /// The parameters of `extend-access`.
    pub fn extend_request(&self) -> Result<ExtendRequest, WireError> {
        Ok(ExtendRequest {
            service_id: self.required_text("_id")?,
            resource_group: self.required_text("_resource_group")?,
            booking_expiration_timeout: self
                .seconds("_booking_expiration_timeout", validate::TIMEOUT_RANGE)?,
        })
    }

    /// The parameters of `match-interaction`.
    pub fn match_request(&self) -> Result<MatchRequest, WireError> {
        Ok(MatchRequest {
            access_number: self.required_text("_access_number")?,
            access_code: self.text("_access_code")?,
            phone_number: self.text("_phone_number")?,
        })
    }
}

/// `a=1&b=2`, percent-decoded; a value that is not UTF-8 is refused, not mangled.
fn decode_form(body: &[u8]) -> Result<Params, WireError> {
    let decode = |part: &[u8]| {
        let plus_as_space: Vec<u8> = part
            .iter()
            .map(|&b| if b == b'+' { b' ' } else { b })
            .collect();
        percent_encoding::percent_decode(&plus_as_space)
            .decode_utf8()
            .map(|s| s.into_owned())
    };
    let mut params = Vec::new();
    for pair in body.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let (name, value) = match pair.iter().position(|&b| b == b'=') {
            Some(at) => (&pair[..at], &pair[at + 1..]),
            None => (pair, &b""[..]),
        };
        let name = decode(name)
            .map_err(|_| WireError::bad_request("a parameter name is not valid UTF-8"))?;
        let value = decode(value).map_err(|_| WireError::invalid(&name, "is not valid UTF-8"))?;
        params.push((name, Param::Text(value)));
    }
    Ok(Params(params))
}

async fn decode_multipart(content_type: &str, body: Bytes) -> Result<Params, WireError> {
    let boundary = multer::parse_boundary(content_type)
        .map_err(|e| WireError::bad_request(format!("malformed multipart body: {e}")))?;
    let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(body) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    let mut params = Vec::new();
    loop {
        let field = multipart
            .next_field()
            .await
            .map_err(|e| WireError::bad_request(format!("malformed multipart body: {e}")))?;
        let Some(field) = field else { break };
        let name = field
            .name()
            .ok_or_else(|| WireError::bad_request("a multipart part has no name"))?
            .to_string();
        if field.file_name().is_some() {
            return Err(WireError::invalid(
                &name,
                "must be a plain field, not a file",
            ));
        }
        let value = field
            .text()
            .await
            .map_err(|e| WireError::bad_request(format!("malformed multipart body: {e}")))?;
        params.push((name, Param::Text(value)));
    }
    Ok(Params(params))
}

fn decode_json(body: &[u8]) -> Result<Params, WireError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| WireError::bad_request(format!("malformed JSON body: {e}")))?;
    let Value::Object(object) = value else {
        return Err(WireError::bad_request("the JSON body must be an object"));
    };
    object
        .into_iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| {
            let param = match v {
                Value::String(s) => Param::Text(s),
                Value::Bool(b) => Param::Bool(b),
                Value::Number(n) => Param::Number(n),
                _ => {
                    return Err(WireError::invalid(
                        &k,
                        "must be a string, number or boolean",
                    ));
                }
            };
            Ok((k, param))
        })
        .collect::<Result<_, _>>()
        .map(Params)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(body: &str) -> Params {
        futures_util::FutureExt::now_or_never(Params::decode(
            Some(b"application/x-www-form-urlencoded"),
            Bytes::from(body.to_string()),
        ))
        .unwrap()
        .unwrap()
    }

    fn field(e: WireError) -> Option<String> {
        e.field
    }

    #[test]
    fn form_values_arrive_as_strings() {
        let p =
            form("_id=s1&_resource_group=DNIS&_provide_code=TRUE&_booking_expiration_timeout=30");
        let r = p.create_request().unwrap();
        assert_eq!(r.service_id, "s1");
        assert!(r.provide_code);
        assert_eq!(r.booking_expiration_timeout, Some(30));
        assert_eq!(r.phone_number, None);
    }

    #[test]
    fn each_number_of_seconds_is_refused_with_its_own_bounds() {
        for value in ["", "-5", "4294967296", "soon"] {
            let e = form(&format!("_ttl={value}"))
                .seconds("_ttl", 1..=u32::MAX)
                .unwrap_err();
            assert_eq!(
                e.message, "_ttl must be a whole number of seconds, 1..=4294967295",
                "{value:?}"
            );
            assert_eq!(e.field.as_deref(), Some("_ttl"));
        }
        let e = form("_id=a&_resource_group=G&_booking_expiration_timeout=-5")
            .create_request()
            .unwrap_err();
        assert_eq!(
            e.message,
            "_booking_expiration_timeout must be a whole number of seconds, 5..=1800"
        );
        assert_eq!(
            form("_ttl=4294967295")
                .seconds("_ttl", 1..=u32::MAX)
                .unwrap(),
            Some(u32::MAX)
        );
    }

    #[test]
    fn a_made_up_parameter_name_is_echoed_escaped_and_bounded() {
        let e = decode_json(br#"{"\u0084\u0082\u0012": [1]}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("\\u{84}\\u{82}\\u{12}"));
        assert!(
            e.message.starts_with("\\u{84}\\u{82}\\u{12} must be"),
            "{}",
            e.message
        );
        // Printable names are shown as they are; a backslash is escaped, so the escaped
        // form cannot be forged.
        assert_eq!(shown("_id"), "_id");
        assert_eq!(shown("a\\u{84}"), "a\\u{5c}u{84}");
        let long = shown(&"é".repeat(100));
        assert!(
            long.ends_with("...") && long.chars().count() == SHOWN_NAME_CHARS + 3,
            "{long}"
        );
    }

    #[test]
    fn bad_values_name_their_parameter() {
        for (body, name) in [
            ("_resource_group=G", "_id"),
            ("_id=a", "_resource_group"),
            ("_id=a&_id=b&_resource_group=G", "_id"),
            (
                "_id=a&_resource_group=G&_provide_code=maybe",
                "_provide_code",
            ),
            (
                "_id=a&_resource_group=G&_booking_expiration_timeout=-1",
                "_booking_expiration_timeout",
            ),
            (
                "_id=a&_resource_group=G&_booking_expiration_timeout=3.5",
                "_booking_expiration_timeout",
            ),
            (
                "_id=a&_resource_group=G&_booking_expiration_timeout=1e9",
                "_booking_expiration_timeout",
            ),
            (
                "_id=a&_resource_group=G&_booking_expiration_timeout=",
                "_booking_expiration_timeout",
            ),
            (
                "_id=a&_resource_group=G&_booking_expiration_timeout=99999999999",
                "_booking_expiration_timeout",
            ),
        ] {
            let e = form(body).create_request().unwrap_err();
            assert_eq!(field(e).as_deref(), Some(name), "{body}");
        }
    }

    #[test]
    fn json_takes_native_types_and_strings() {
        let p = decode_json(br#"{"_id":"s1","_resource_group":"G","_provide_code":true,"_booking_expiration_timeout":"45","_phone_number":null}"#).unwrap();
        let r = p.create_request().unwrap();
        assert!(r.provide_code);
        assert_eq!(r.booking_expiration_timeout, Some(45));
        for whole in ["45", "45.0", "4.5e1"] {
            let body = format!(r#"{{"_booking_expiration_timeout":{whole}}}"#);
            let p = decode_json(body.as_bytes()).unwrap();
            assert_eq!(
                p.seconds("_booking_expiration_timeout", 5..=1800).unwrap(),
                Some(45),
                "{whole}"
            );
        }
        for not_whole in ["45.5", "-45", "1e10"] {
            let body = format!(r#"{{"_ttl":{not_whole}}}"#);
            let p = decode_json(body.as_bytes()).unwrap();
            assert!(p.seconds("_ttl", 1..=u32::MAX).is_err(), "{not_whole}");
        }
        let p = decode_json(br#"{"_id":7,"_resource_group":"G"}"#).unwrap();
        assert_eq!(
            field(p.create_request().unwrap_err()).as_deref(),
            Some("_id")
        );
        assert!(decode_json(b"[1]").is_err());
        assert!(decode_json(b"{").is_err());
    }
}
