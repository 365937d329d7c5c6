//! Request decoding never panics, whatever the body and content type:
//! `cargo +nightly fuzz run decode_request`.
#![no_main]

use bytes::Bytes;
use futures_util::FutureExt;
use libfuzzer_sys::fuzz_target;
use request_access_wire::Params;

const CONTENT_TYPES: [&[u8]; 5] = [
    b"application/x-www-form-urlencoded",
    b"application/json",
    b"multipart/form-data; boundary=B",
    b"multipart/form-data",
    b"",
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let content_type = CONTENT_TYPES[usize::from(selector) % CONTENT_TYPES.len()];
    let decoded = Params::decode(Some(content_type), Bytes::copy_from_slice(body))
        .now_or_never()
        .expect("decoding a body in memory never waits");
    let Ok(params) = decoded else { return };
    if let Ok(request) = params.create_request() {
        // What the guest does next must not panic either.
        let _ = request_access_guest::validate::service_id(&request.service_id);
        let _ = request_access_guest::validate::resource_group(&request.resource_group);
        let _ = request_access_guest::validate::booking_timeout(request.booking_expiration_timeout);
        if let Some(phone) = &request.phone_number {
            let _ = request_access_guest::validate::phone_number("_phone_number", phone);
        }
    }
    if let Ok(request) = params.match_request() {
        let _ = request_access_guest::validate::phone_number("_access_number", &request.access_number);
        let _ = request_access_guest::validate::caller_number(request.phone_number.as_deref());
        if let Some(code) = &request.access_code {
            let _ = request_access_guest::validate::access_code(code);
        }
    }
});
