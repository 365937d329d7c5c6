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
pub mod validate;

// The leaves: what the ring, the policies and the operations share.
mod ask;
mod events;
mod keys;
mod lookup;
mod records;
mod txn;

// The core: the free-number rings.
mod ring;

// The pool policies, each behind one entry point.
mod policy;

// The operations, one module each, and what they share: ending a reservation, and
// reclaiming expired ones.
mod create;
mod ending;
mod extend;
mod matching;
mod reclaim;
mod release;
mod status;

#[cfg(test)]
mod testing;

pub use create::{create, create_placed};
pub use extend::extend;
pub use lookup::MAX_ATTEMPTS;
pub use matching::match_access;
pub use release::release;
pub use status::pool_status;

#[cfg(all(target_arch = "wasm32", feature = "component"))]
mod component;
