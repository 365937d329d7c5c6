//! The `plugin` world's bindings for wasmtime, generated once for the runtime, the
//! embedding example and any host built on this crate, with `From` both ways between
//! their types and [`api`](crate::api)'s (by the guest's conversion macros, the one home
//! of every binding set's conversions).
//!
//! A host instantiates through [`instantiate`] rather than `Plugin::instantiate`: the
//! `placement` and `lease` exports (since 0.1.1) are optional, so that a plugin built
//! against 0.1.0 still loads.
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
request_access_guest::convert_placement!(exports::contact_center::request_access::placement);
request_access_guest::convert_lease_policy!(contact_center::request_access::resource_groups);
request_access_guest::convert_lease!(exports::contact_center::request_access::lease);

use exports::contact_center::request_access::{lease, placement, request_access};

/// Where a plugin's exports are, found once per loaded component.
pub struct ExportIndices {
    request_access: request_access::GuestIndices,
    placement: Option<placement::GuestIndices>,
    lease: Option<lease::GuestIndices>,
}

impl ExportIndices {
    /// Find the exports of the component behind `pre`: `request-access` is required
    /// (0.1.0 or later), `placement` is used when the plugin has it.
    pub fn new<T>(pre: &wasmtime::component::InstancePre<T>) -> wasmtime::Result<Self> {
        Ok(ExportIndices {
            request_access: request_access::GuestIndices::new(pre)?,
            placement: placement::GuestIndices::new(pre).ok(),
            lease: lease::GuestIndices::new(pre).ok(),
        })
    }
}

/// A plugin instance's exports.
pub struct PluginExports {
    /// `request-access`.
    pub request_access: request_access::Guest,
    /// `placement`, when the plugin exports it (a plugin built against 0.1.0 does not).
    pub placement: Option<placement::Guest>,
    /// `lease`, when the plugin exports it (a plugin built against 0.1.0 does not).
    pub lease: Option<lease::Guest>,
}

/// Instantiate the component behind `pre` in `store`, finding its exports by `indices`.
pub async fn instantiate<T: Send + 'static>(
    store: &mut wasmtime::Store<T>,
    pre: &wasmtime::component::InstancePre<T>,
    indices: &ExportIndices,
) -> wasmtime::Result<PluginExports> {
    let instance = pre.instantiate_async(&mut *store).await?;
    Ok(PluginExports {
        request_access: indices.request_access.load(&mut *store, &instance)?,
        placement: indices
            .placement
            .as_ref()
            .map(|p| p.load(&mut *store, &instance))
            .transpose()?,
        lease: indices
            .lease
            .as_ref()
            .map(|l| l.load(&mut *store, &instance))
            .transpose()?,
    })
}

pub use request_access_guest::conversions::{each, each_present};
