//! What the component benches set up alike: a group of 1,000 numbers and one service,
//! served from memory on the wall clock.

use std::sync::Arc;

use request_access_host::clock::SystemClock;
use request_access_host::config::Config;
use request_access_host::services::Services;
use request_access_host::store::MemoryStore;

/// Group `G` of 1,000 numbers, round-robin; the service `bench` always active.
const CONFIG: &str = r#"
[[resource_group]]
name = "G"
numbers = ["+15550000000..+15550000999"]

[registry]
services = ["bench"]
"#;

/// Fresh services on an empty in-memory store.
pub fn services() -> Arc<Services> {
    Arc::new(Services::new(
        Config::parse(CONFIG, "bench").unwrap(),
        Arc::new(MemoryStore::new()),
        Arc::new(SystemClock),
    ))
}
