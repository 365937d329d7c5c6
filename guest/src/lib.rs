//! The request-access allocation logic.
//!
//! Plain Rust that compiles natively and to `wasm32-wasip2`: the logic reaches the world
//! only through [`api::Imports`], so native tests and benchmarks drive it with any
//! implementation, and the component shell (`component.rs`, wasm only) maps the WIT
//! imports and exports onto it. It keeps no state between calls.
//!
//! Cost per call: O(1) reads and writes of the state store (plus a bounded batch of
//! expired reservations reclaimed), whatever the pool's size or occupancy.

#![warn(missing_docs)]

pub mod api;
#[cfg_attr(
    not(all(target_arch = "wasm32", feature = "component")),
    allow(dead_code)
)]
mod arena;
pub mod conversions;
mod events;
mod keys;
mod lease;
mod local;
mod lookup;
mod records;
mod ring;
mod service;
mod shared;
mod sticky;
#[cfg(test)]
mod testing;
mod txn;
pub mod validate;

pub use lease::extend;
pub use service::{MAX_ATTEMPTS, create, create_placed, match_access, pool_status, release};

#[cfg(all(target_arch = "wasm32", feature = "component"))]
mod component;
