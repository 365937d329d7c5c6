//! Shared set-up for the integration tests: the real component, compiled once per test
//! binary, run by the reference host on an in-memory or durable store, with a clock the
//! test moves and a seeded random generator. The host is asynchronous; [`Blocking`]
//! drives its calls to their end from plain test threads, on one shared tokio runtime.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use request_access_host::api::{
    AccessInfo, CommitOutcome, CreateRequest, Entry, ExtendRequest, Extended, KeyRange,
    MatchRequest, Matched, Mutation, Placed, PoolStatus, Precondition, Snapshot,
};
use request_access_host::clock::ManualClock;
use request_access_host::config::Config;
use request_access_host::runtime::{
    CallError, Limits, PluginImage, Refusal, Runtime, RuntimeStats,
};
use request_access_host::services::Services;
use request_access_host::store::{MemoryStore, StateStore, StoreError};

/// 2026-01-01T00:00:00Z, in ms.
pub const T0: u64 = 1_767_225_600_000;

/// A pool of ten numbers, round-robin, and one always-active service.
pub const TEN_NUMBERS: &str = r#"
[[resource_group]]
name = "DNIS"
numbers = ["+18005550100..+18005550109"]

[registry]
services = ["svc-1", "svc-2", "svc-3"]
"#;

/// The component, compiled once per test process (compiling is the slow part).
pub fn image() -> Arc<PluginImage> {
    static IMAGE: OnceLock<Arc<PluginImage>> = OnceLock::new();
    IMAGE
        .get_or_init(|| PluginImage::embedded().expect("the embedded plugin loads"))
        .clone()
}

/// Drive `future` to its end on the shared runtime, from any thread but its workers.
pub fn wait<F: Future>(future: F) -> F::Output {
    static EXECUTOR: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    EXECUTOR
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("the test runtime starts")
        })
        .block_on(future)
}

/// A [`Runtime`] whose calls block the calling thread until they answer.
pub struct Blocking(pub Arc<Runtime>);

impl Blocking {
    /// Wrap `runtime`.
    pub fn new(runtime: Runtime) -> Self {
        Blocking(Arc::new(runtime))
    }
    pub fn create(&self, request: &CreateRequest) -> Result<AccessInfo, CallError> {
        wait(self.0.create(request))
    }
    pub fn create_placed(&self, request: &CreateRequest) -> Result<Placed, Refusal> {
        wait(self.0.create_placed(request))
    }
    pub fn match_access(&self, request: &MatchRequest) -> Result<Matched, CallError> {
        wait(self.0.match_access(request))
    }
    pub fn release(&self, service_id: &str, group: &str) -> Result<String, CallError> {
        wait(self.0.release(service_id, group))
    }
    pub fn pool_status(&self, group: &str) -> Result<PoolStatus, CallError> {
        wait(self.0.pool_status(group))
    }
    pub fn extend(&self, request: &ExtendRequest) -> Result<Extended, CallError> {
        wait(self.0.extend(request))
    }
    pub fn reload(&self, image: Arc<PluginImage>) {
        self.0.reload(image)
    }
    pub fn stats(&self) -> RuntimeStats {
        self.0.stats()
    }
    pub fn limits(&self) -> &Limits {
        self.0.limits()
    }
    pub fn services(&self) -> Arc<Services> {
        self.0.services()
    }
}

/// A runtime, its clock and its store.
pub struct Harness {
    pub runtime: Blocking,
    pub clock: Arc<ManualClock>,
    pub store: Arc<ProbeStore>,
}

impl Harness {
    /// The in-memory store, the clock at [`T0`], random draws seeded with 7.
    pub fn new(config: &str) -> Harness {
        Harness::with_store(config, Arc::new(MemoryStore::new()))
    }

    pub fn with_store(config: &str, backend: Arc<dyn StateStore>) -> Harness {
        Harness::build(config, backend, Limits::default())
    }

    /// The in-memory store with a call deadline and memory cap of the test's choosing.
    pub fn with_limits(config: &str, call_deadline: Duration, memory_bytes: usize) -> Harness {
        let limits = Limits {
            call_deadline,
            memory_bytes,
            ..Limits::default()
        };
        Harness::build(config, Arc::new(MemoryStore::new()), limits)
    }

    fn build(config: &str, backend: Arc<dyn StateStore>, limits: Limits) -> Harness {
        let config = Config::parse(config, "test config").expect("test config is valid");
        let clock = Arc::new(ManualClock::new(T0));
        let store = Arc::new(ProbeStore::new(backend));
        let services = Arc::new(Services::new(config, store.clone(), clock.clone()));
        let runtime = Blocking::new(Runtime::new(image(), services, limits).with_random_seed(7));
        Harness {
            runtime,
            clock,
            store,
        }
    }

    pub fn advance(&self, seconds: u64) {
        self.clock.advance(Duration::from_secs(seconds));
    }

    /// Every stored key and value: compared before and after a call that must change
    /// nothing.
    pub fn snapshot(&self) -> Vec<(String, Vec<u8>)> {
        wait(self.store.scan("", "\u{10ffff}", u32::MAX))
            .unwrap()
            .into_iter()
            .map(|e| (e.key, e.value))
            .collect()
    }
}

pub fn create(id: &str, group: &str) -> CreateRequest {
    CreateRequest {
        service_id: id.into(),
        resource_group: group.into(),
        provide_code: false,
        phone_number: None,
        booking_expiration_timeout: None,
    }
}

pub fn create_with_code(id: &str, group: &str) -> CreateRequest {
    CreateRequest {
        provide_code: true,
        ..create(id, group)
    }
}

pub fn match_number(number: &str) -> MatchRequest {
    MatchRequest {
        access_number: number.into(),
        access_code: None,
        phone_number: None,
    }
}

pub fn match_with_code(number: &str, code: &str) -> MatchRequest {
    MatchRequest {
        access_code: Some(code.into()),
        ..match_number(number)
    }
}

/// A store wrapper that counts the work asked of it and can be made slow.
pub struct ProbeStore {
    inner: Arc<dyn StateStore>,
    /// Calls of any kind: on a networked store, each is a round trip.
    pub calls: AtomicU64,
    pub keys_read: AtomicU64,
    pub commits: AtomicU64,
    /// When set, every `get` sleeps 100 ms first.
    pub slow: AtomicBool,
    /// When set, every call fails as an unreachable backend would.
    pub broken: AtomicBool,
    /// When set, every commit is refused as if another node had just changed its
    /// first key.
    pub contended: AtomicBool,
}

impl ProbeStore {
    pub fn new(inner: Arc<dyn StateStore>) -> Self {
        ProbeStore {
            inner,
            calls: AtomicU64::new(0),
            keys_read: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            slow: AtomicBool::new(false),
            broken: AtomicBool::new(false),
            contended: AtomicBool::new(false),
        }
    }

    /// Reset the counters; answers (keys read, commits) until now.
    pub fn take_counts(&self) -> (u64, u64) {
        (
            self.keys_read.swap(0, Ordering::SeqCst),
            self.commits.swap(0, Ordering::SeqCst),
        )
    }

    fn check(&self) -> Result<(), StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.broken.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("backend unreachable".into()));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl StateStore for ProbeStore {
    async fn get(&self, keys: &[String]) -> Result<Vec<Option<Entry>>, StoreError> {
        self.check()?;
        if self.slow.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.keys_read
            .fetch_add(keys.len() as u64, Ordering::SeqCst);
        self.inner.get(keys).await
    }
    async fn scan(&self, start: &str, end: &str, limit: u32) -> Result<Vec<Entry>, StoreError> {
        self.check()?;
        let entries = self.inner.scan(start, end, limit).await?;
        self.keys_read
            .fetch_add(entries.len() as u64, Ordering::SeqCst);
        Ok(entries)
    }
    async fn read(&self, keys: &[String], ranges: &[KeyRange]) -> Result<Snapshot, StoreError> {
        self.check()?;
        let snapshot = self.inner.read(keys, ranges).await?;
        let scanned: usize = snapshot.ranges.iter().map(Vec::len).sum();
        self.keys_read
            .fetch_add((keys.len() + scanned) as u64, Ordering::SeqCst);
        Ok(snapshot)
    }
    async fn commit(
        &self,
        preconditions: &[Precondition],
        mutations: &[Mutation],
    ) -> Result<CommitOutcome, StoreError> {
        self.check()?;
        self.commits.fetch_add(1, Ordering::SeqCst);
        if self.contended.load(Ordering::SeqCst) {
            let key = preconditions.first().map(|p| p.key.clone());
            return Ok(CommitOutcome::Conflict(key.unwrap_or_default()));
        }
        self.inner.commit(preconditions, mutations).await
    }
}

/// This plugin's source built against the released 0.1.0 contract
/// (`host/tests/released-wit`), as a plugin of that contract is: it cannot ask for a
/// group's policy.
pub const RELEASED_WIT_PLUGIN_WASM: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/released_wit_plugin.wasm"));

/// A plugin that targets the same world and misbehaves on request (see
/// `broken-plugin/src/lib.rs` for what each service id triggers).
pub const BROKEN_PLUGIN_WASM: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/broken_plugin.wasm"));

/// `id`'s reservation in `group`, to last `seconds` from now.
pub fn extend(id: &str, group: &str, seconds: u32) -> ExtendRequest {
    ExtendRequest {
        service_id: id.into(),
        resource_group: group.into(),
        booking_expiration_timeout: Some(seconds),
    }
}
