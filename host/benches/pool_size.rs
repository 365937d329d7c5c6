//! The per-call cost of `create` through the component at pool sizes of 100, 10,000 and
//! 1,000,000 numbers, at 0%, 50%, 90%, 99% and 100% occupancy (the last one answers
//! "no access number available"), in memory and in the durable store. Also records the
//! bytes each live reservation takes in each backend and the guest's peak linear memory.
//! Run with
//!
//! ```text
//! cargo bench -p request-access-host --bench pool_size
//! ```
//!
//! Set `REQUEST_ACCESS_BENCH_QUICK=1` for a shorter run: the durable store at 0% and 99%
//! only, and no random-allocation series.
//!
//! At each occupancy the pool holds that share of numbers, each reserved by its own
//! service; a measured call is a create by one of those services, which replaces its
//! reservation (its number goes back, another is taken), so occupancy stays put. At
//! 100% it is a create by a service with no reservation. The clock stands still, so
//! nothing expires during a run. Filling is done natively (the same logic, faster);
//! the durable store gets a copy of the in-memory state.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use rand::SeedableRng;
use rand::rngs::StdRng;
use request_access_host::api::{CreateRequest, Error};
use request_access_host::clock::ManualClock;
use request_access_host::config::Config;
use request_access_host::runtime::{CallError, Limits, PluginImage, Runtime};
use request_access_host::services::{NativeImports, Services};
use request_access_host::store::{DurableStore, MemoryStore, StateStore, copy_state};

/// Counts live heap bytes, to weigh the in-memory store.
struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const SIZES: [u32; 3] = [100, 10_000, 1_000_000];
const OCCUPANCIES: [u32; 5] = [0, 50, 90, 99, 100];
const NOW_MS: u64 = 1_800_000_000_000;

fn config(size: u32, strategy: &str) -> Config {
    let last = 15_550_000_000u64 + u64::from(size) - 1;
    let mut config = Config::parse(
        &format!(
            "[[resource_group]]\nname = \"G\"\nstrategy = \"{strategy}\"\n\
             numbers = [\"+15550000000..+{last}\"]\n"
        ),
        "bench",
    )
    .unwrap();
    config
        .static_services
        .extend((0..=size).map(service).chain([NEWCOMER.to_string()]));
    config
}

const NEWCOMER: &str = "newcomer";

fn service(i: u32) -> String {
    format!("s{i}")
}

fn create(service_id: String) -> CreateRequest {
    CreateRequest {
        service_id,
        resource_group: "G".into(),
        provide_code: true,
        phone_number: None,
        booking_expiration_timeout: None,
    }
}

fn runtime(config: Config, store: Arc<dyn StateStore>) -> Runtime {
    let services = Services::new(config, store, Arc::new(ManualClock::new(NOW_MS)));
    Runtime::new(
        PluginImage::embedded().unwrap(),
        Arc::new(services),
        Limits::default(),
    )
}

/// Creates by the services holding reservations, round the circle; by a newcomer at 100%.
fn measure(c: &mut Criterion, group: &str, runtime: &Runtime, size: u32, occupancy: u32) {
    let holders = size * occupancy / 100;
    let mut next = 0;
    // A durable create waits for its fsync: fewer, longer samples.
    let samples = if group.contains("durable") { 10 } else { 50 };
    let mut group = c.benchmark_group(group);
    group.sample_size(samples);
    group.bench_with_input(
        BenchmarkId::new(format!("occupancy-{occupancy}"), size),
        &size,
        |b, _| {
            b.iter(|| {
                if occupancy == 100 {
                    let outcome = runtime.create(&create(NEWCOMER.into()));
                    assert!(matches!(
                        outcome,
                        Err(CallError::Service(Error::NoAccessNumberAvailable(_)))
                    ));
                } else {
                    runtime.create(&create(service(next))).unwrap();
                    next = (next + 1) % holders.max(1);
                }
            })
        },
    );
    group.finish();
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")))
}

fn bench(c: &mut Criterion) {
    let quick = std::env::var_os("REQUEST_ACCESS_BENCH_QUICK").is_some();
    let scratch = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    let mut weights = serde_json::Map::new();
    let mut peak_guest_memory = 0;

    for size in SIZES {
        let memory = Arc::new(MemoryStore::new());
        let filler = Services::new(
            config(size, "round-robin"),
            memory.clone(),
            Arc::new(ManualClock::new(NOW_MS)),
        );
        let round_robin = runtime(config(size, "round-robin"), memory.clone());
        let random = runtime(config(size, "random"), memory.clone());
        let mut filled = 0;
        let mut weighed_at: Option<(u32, isize, u64)> = None;

        for occupancy in OCCUPANCIES {
            let target = size * occupancy / 100;
            while filled < target {
                request_access_guest::create(
                    &mut NativeImports(&filler),
                    &mut rng,
                    &create(service(filled)),
                )
                .unwrap();
                filled += 1;
            }
            let live = LIVE_BYTES.load(Ordering::Relaxed);

            measure(
                c,
                "create-memory-round-robin",
                &round_robin,
                size,
                occupancy,
            );
            if !quick {
                measure(c, "create-memory-random", &random, size, occupancy);
            }

            if !quick || occupancy == 0 || occupancy == 99 {
                let path = scratch.path().join(format!("{size}-{occupancy}.redb"));
                let durable = Arc::new(DurableStore::open(&path).unwrap());
                copy_state(memory.as_ref(), durable.as_ref()).unwrap();
                let file_bytes = std::fs::metadata(&path).unwrap().len();
                let durable_runtime = runtime(config(size, "round-robin"), durable);
                measure(c, "create-durable", &durable_runtime, size, occupancy);
                if size == *SIZES.last().unwrap() {
                    match (occupancy, weighed_at) {
                        (0, _) => weighed_at = Some((filled, live, file_bytes)),
                        (99, Some((from, live_from, file_from))) => {
                            let added = f64::from(filled - from);
                            weights.insert(
                                "memory_bytes_per_reservation".into(),
                                ((live - live_from) as f64 / added).round().into(),
                            );
                            weights.insert(
                                "durable_bytes_per_reservation".into(),
                                ((file_bytes - file_from) as f64 / added).round().into(),
                            );
                        }
                        _ => {}
                    }
                }
                peak_guest_memory =
                    peak_guest_memory.max(durable_runtime.stats().peak_guest_memory_bytes);
            }
        }
        peak_guest_memory = peak_guest_memory
            .max(round_robin.stats().peak_guest_memory_bytes)
            .max(random.stats().peak_guest_memory_bytes);
    }

    weights.insert("guest_peak_memory_bytes".into(), peak_guest_memory.into());
    let out = target_dir().join("bench-results");
    std::fs::create_dir_all(&out).unwrap();
    let json = serde_json::Value::Object(weights).to_string();
    std::fs::write(out.join("memory.json"), &json).unwrap();
    println!("memory: {json}");
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
