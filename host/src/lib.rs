//! The reference host of the request-access plugin.
//!
//! - [`runtime`]: loads the component once, keeps warm instances, enforces limits, and
//!   validates every answer;
//! - [`services`]: what the host provides to the plugin (configuration, state,
//!   registry, clock), also usable natively through [`services::NativeImports`];
//! - [`store`]: the reservation-state backends (memory, durable);
//! - [`config`]: the TOML configuration with the original service's option names.
//!
//! ```no_run
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
//! })?;
//! println!("dial {} and type {:?}", info.access_number, info.access_code);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod clock;
pub mod http;
pub mod registry;
pub mod runtime;
pub mod services;
pub mod store;
mod validate_answer;

pub use request_access_config::{self as config, pool};
pub use request_access_guest::api;
