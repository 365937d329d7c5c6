//! The `plugin` world's bindings for wasmtime, generated once for the runtime, the
//! embedding example and any host built on this crate, with `From` both ways between
//! their types and [`api`](crate::api)'s (by the guest's conversion macros, the one home
//! of every binding set's conversions).
#![allow(missing_docs)] // generated

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
});

request_access_guest::convert_reservation_state!(contact_center::request_access::reservation_state);
request_access_guest::convert_resource_groups!(contact_center::request_access::resource_groups);
request_access_guest::convert_request_access!(
    exports::contact_center::request_access::request_access
);

pub use request_access_guest::conversions::{each, each_present};
