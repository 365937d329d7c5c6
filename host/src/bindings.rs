//! The `plugin` world's bindings for wasmtime, generated once for the runtime, the
//! embedding example and any host built on this crate, with `From` both ways between
//! their types and [`api`](crate::api)'s (by the guest's conversion macros, the one home
//! of every binding set's conversions).
//!
//! They are asynchronous (the engine needs `Config::async_support`): the exports are
//! `async` calls, and so are the imports that may wait, `reservation-state` and
//! `service-registry`, so a store or registry round trip is an `await` on the caller's
//! task while the guest waits on its fiber. `clock` and `resource-groups` answer from
//! memory and stay plain calls.
#![allow(missing_docs)] // generated

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
    imports: {
        "contact-center:request-access/reservation-state": async,
        "contact-center:request-access/service-registry": async,
    },
    exports: { default: async },
});

request_access_guest::convert_reservation_state!(contact_center::request_access::reservation_state);
request_access_guest::convert_resource_groups!(contact_center::request_access::resource_groups);
request_access_guest::convert_group_policy!(contact_center::request_access::resource_groups);
request_access_guest::convert_request_access!(
    exports::contact_center::request_access::request_access
);

pub use request_access_guest::conversions::{each, each_present};
