//! The reference host of the request-access plugin.
//!
//! - [`plugin`]: compiles and links the component once ([`plugin::PluginImage`]) and
//!   says where it comes from ([`plugin::PluginSource`]);
//! - [`runtime`]: keeps warm instances, enforces limits, and validates every answer;
//! - [`bindings`]: the world's generated bindings and their conversions, for embedders;
//! - [`services`]: what the host provides to the plugin (configuration, state,
//!   registry, clock), also usable natively through [`services::NativeImports`];
//! - [`store`]: the reservation-state backends (memory, durable);
//! - [`registry`]: which services are active (configured, registered, remote);
//! - [`journal`] and [`events`]: the events the plugin reports with its commits, kept
//!   (the outbox, the interaction log) and told (a signed webhook, an event stream);
//! - [`config`]: the TOML configuration with the original service's option names.
//!
//! Calls are asynchronous (the guest runs on a fiber; a store that waits costs an
//! `await`), on any executor; the HTTP service runs them on tokio.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use request_access_host::{clock::SystemClock, config::Config, runtime::*, services::Services,
//!     store::MemoryStore};
//! use request_access_guest::api::CreateRequest;
//!
//! let services = Arc::new(Services::new(Config::embedded(), Arc::new(MemoryStore::new()),
//!     Arc::new(SystemClock)));
//! let runtime = Runtime::new(PluginImage::embedded()?, services, Limits::default());
//! let info = runtime.create(&CreateRequest {
//!     service_id: "demo-service".into(),
//!     resource_group: "DNIS".into(),
//!     provide_code: true,
//!     phone_number: None,
//!     booking_expiration_timeout: None,
//! }).await?;
//! println!("dial {} and type {:?}", info.access_number, info.access_code);
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

pub mod bindings;
pub mod clock;
pub mod events;
pub mod http;
pub mod journal;
pub mod plugin;
pub mod registry;
pub mod runtime;
pub mod services;
pub mod store;
mod validate_answer;

pub use request_access_config::{self as config, pool};
pub use request_access_guest::api;
