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
//!
//! At each occupancy, the 1,000,000-number pool is also measured against the 100-number
//! one in alternation (see `paired/mod.rs`); those ratios, the bytes per reservation and
//! the guest's peak memory land in `target/bench-results/pool_size.json`.
//!
//! The group policies get a paired ratio of their own (`pool_1m_vs_100_create_policies`):
//! a one-number group `G`, always exhausted, falls back to a pool `SHARED` of 100 or
//! 1,000,000 numbers, half of them held, sticky, with a 1 s cool-off, and the clock moves
//! 100 ms before every create. So each measured create ends its service's reservation
//! (the number rests), finds `G` exhausted and lends from `SHARED`: every other service
//! names a caller, who gets their resting number back (sticky); the others get one that
//! finished resting, moved onto the ring first (cool-off). The fallback on every call.
//!
//! Numbers shared by code get one too (`pool_1m_vs_100_create_shared`): the same, but
//! `SHARED` is not sticky and carries 4 reservations per number, half of the seats held.
//! Each measured create ends its service's seat (it rests), and takes a seat of the
//! number at the head of the ring, whose seats that finished resting are dropped first;
//! every other create names a caller, whom the number must not carry yet.

mod paired;

use futures::executor::block_on;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

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

/// Reservations per number in the shared-numbers series.
const SEATS: u32 = 4;

/// `G`, one number, falling back to `SHARED` of `size` numbers with a 1 s cool-off,
/// sticky, or shared by code (`SEATS` per number).
fn policy_config(size: u32, shared: bool) -> Config {
    let last = 15_550_000_000u64 + u64::from(size) - 1;
    let policy = match shared {
        true => format!("reservations_per_number = {SEATS}"),
        false => "sticky = true".to_string(),
    };
    let mut config = Config::parse(
        &format!(
            "[options]\nbooking_expiration_timeout = 1800\n\
             [[resource_group]]\nname = \"G\"\nfallback_group = \"SHARED\"\n\
             numbers = [\"+15540000000\"]\n\
             [[resource_group]]\nname = \"SHARED\"\nreuse_cooldown = 1\n{policy}\n\
             numbers = [\"+15550000000..+{last}\"]\n"
        ),
        "bench",
    )
    .unwrap();
    let seats = if shared { SEATS } else { 1 };
    config
        .static_services
        .extend((0..=size * seats).map(service));
    config
}

/// A `SHARED` pool of `size` half held through `G`, and a runtime whose clock moves.
struct PolicyPool {
    runtime: Runtime,
    clock: Arc<ManualClock>,
    caller: Caller,
}

impl PolicyPool {
    fn new(size: u32, shared: bool, rng: &mut StdRng) -> PolicyPool {
        let memory = Arc::new(MemoryStore::new());
        let clock = Arc::new(ManualClock::new(NOW_MS));
        let config = policy_config(size, shared);
        let services = Services::new(config, memory.clone(), clock.clone());
        // One more holder than half the seats: the first takes G's own number.
        let holders = size * if shared { SEATS } else { 1 } / 2 + 1;
        request_access_guest::create(&mut NativeImports(&services), rng, &create(service(0)))
            .unwrap();
        // Both rings are built now: a status settles SHARED's while it lends nothing,
        // so that later ones cost O(1) (an unsettled ring counts every reservation).
        request_access_guest::pool_status(&mut NativeImports(&services), "SHARED").unwrap();
        for i in 1..holders {
            request_access_guest::create(&mut NativeImports(&services), rng, &create(service(i)))
                .unwrap();
        }
        PolicyPool {
            runtime: Runtime::new(
                PluginImage::embedded().unwrap(),
                Arc::new(services),
                Limits::default(),
            ),
            clock,
            caller: Caller {
                occupancy: 50,
                holders,
                next: 0,
            },
        }
    }

    fn call(&mut self) {
        self.clock.advance(Duration::from_millis(100));
        let caller = &mut self.caller;
        let mut request = create(service(caller.next));
        if caller.next.is_multiple_of(2) {
            request.phone_number = Some(format!("+1666{:07}", caller.next));
        }
        block_on(self.runtime.create(&request)).unwrap();
        caller.next = (caller.next + 1) % caller.holders;
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

/// The create measured at one occupancy: by the services holding reservations, round
/// the circle (each replaces its own, so occupancy stays put); by a newcomer at 100%.
struct Caller {
    occupancy: u32,
    holders: u32,
    next: u32,
}

impl Caller {
    fn new(size: u32, occupancy: u32) -> Caller {
        Caller {
            occupancy,
            holders: size * occupancy / 100,
            next: 0,
        }
    }

    fn call(&mut self, runtime: &Runtime) {
        if self.occupancy == 100 {
            let outcome = block_on(runtime.create(&create(NEWCOMER.into())));
            assert!(matches!(
                outcome,
                Err(CallError::Service(Error::NoAccessNumberAvailable(_)))
            ));
        } else {
            block_on(runtime.create(&create(service(self.next)))).unwrap();
            self.next = (self.next + 1) % self.holders.max(1);
        }
    }
}

fn measure(c: &mut Criterion, group: &str, runtime: &Runtime, size: u32, occupancy: u32) {
    let mut caller = Caller::new(size, occupancy);
    // A durable create waits for its fsync: fewer, longer samples.
    let samples = if group.contains("durable") { 10 } else { 50 };
    let mut group = c.benchmark_group(group);
    group.sample_size(samples);
    group.bench_with_input(
        BenchmarkId::new(format!("occupancy-{occupancy}"), size),
        &size,
        |b, _| b.iter(|| caller.call(runtime)),
    );
    group.finish();
}

/// One pool size: its in-memory state and the runtimes over it.
struct Pool {
    size: u32,
    memory: Arc<MemoryStore>,
    filler: Services,
    round_robin: Runtime,
    random: Runtime,
    filled: u32,
}

impl Pool {
    fn new(size: u32) -> Pool {
        let memory = Arc::new(MemoryStore::new());
        Pool {
            size,
            filler: Services::new(
                config(size, "round-robin"),
                memory.clone(),
                Arc::new(ManualClock::new(NOW_MS)),
            ),
            round_robin: runtime(config(size, "round-robin"), memory.clone()),
            random: runtime(config(size, "random"), memory.clone()),
            memory,
            filled: 0,
        }
    }

    /// Reserve numbers natively (the same logic, faster) up to `occupancy` percent;
    /// answers the heap bytes that took.
    fn fill(&mut self, occupancy: u32, rng: &mut StdRng) -> isize {
        let before = LIVE_BYTES.load(Ordering::Relaxed);
        while self.filled < self.size * occupancy / 100 {
            request_access_guest::create(
                &mut NativeImports(&self.filler),
                rng,
                &create(service(self.filled)),
            )
            .unwrap();
            self.filled += 1;
        }
        LIVE_BYTES.load(Ordering::Relaxed) - before
    }
}

fn timed(call: impl FnOnce()) -> Duration {
    let started = Instant::now();
    call();
    started.elapsed()
}

fn bench(c: &mut Criterion) {
    let quick = std::env::var_os("REQUEST_ACCESS_BENCH_QUICK").is_some();
    let scratch = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    let mut pools: Vec<Pool> = SIZES.into_iter().map(Pool::new).collect();
    let mut results = serde_json::Map::new();
    let mut paired_ratios = serde_json::Map::new();
    let mut peak_guest_memory = 0;
    // The largest pool's growth from 0% to 99%: heap bytes, reservations, file bytes.
    let mut heap_added = 0;
    let mut file_at_empty = 0;

    for occupancy in OCCUPANCIES {
        for pool in &mut pools {
            let added = pool.fill(occupancy, &mut rng);
            if pool.size == *SIZES.last().unwrap() && occupancy <= 99 {
                heap_added += added;
            }
            measure(
                c,
                "create-memory-round-robin",
                &pool.round_robin,
                pool.size,
                occupancy,
            );
            if !quick {
                measure(
                    c,
                    "create-memory-random",
                    &pool.random,
                    pool.size,
                    occupancy,
                );
            }
            if quick && occupancy != 0 && occupancy != 99 {
                continue;
            }
            let path = scratch
                .path()
                .join(format!("{}-{occupancy}.redb", pool.size));
            let durable = Arc::new(DurableStore::open(&path).unwrap());
            block_on(copy_state(pool.memory.as_ref(), durable.as_ref())).unwrap();
            let file_bytes = std::fs::metadata(&path).unwrap().len();
            let durable_runtime = runtime(config(pool.size, "round-robin"), durable);
            measure(c, "create-durable", &durable_runtime, pool.size, occupancy);
            peak_guest_memory =
                peak_guest_memory.max(durable_runtime.stats().peak_guest_memory_bytes);
            if pool.size == *SIZES.last().unwrap() {
                match occupancy {
                    0 => file_at_empty = file_bytes,
                    99 => {
                        let reservations = f64::from(pool.filled);
                        results.insert(
                            "memory_bytes_per_reservation".into(),
                            (heap_added as f64 / reservations).round().into(),
                        );
                        results.insert(
                            "durable_bytes_per_reservation".into(),
                            ((file_bytes - file_at_empty) as f64 / reservations)
                                .round()
                                .into(),
                        );
                    }
                    _ => {}
                }
            }
        }

        // The largest pool against the smallest, in memory, measured in alternation.
        let (smallest, largest) = (&pools[0], &pools[pools.len() - 1]);
        let mut small_caller = Caller::new(smallest.size, occupancy);
        let mut large_caller = Caller::new(largest.size, occupancy);
        let ratio = paired::ratio(
            200,
            || timed(|| small_caller.call(&smallest.round_robin)),
            || timed(|| large_caller.call(&largest.round_robin)),
        );
        paired_ratios.insert(occupancy.to_string(), paired::round2(ratio).into());
    }

    // The policies: cool-off and fallback on every create, with sticky numbers or with
    // numbers shared by code, 1,000,000 against 100.
    for (key, shared) in [
        ("pool_1m_vs_100_create_policies", false),
        ("pool_1m_vs_100_create_shared", true),
    ] {
        let mut small = PolicyPool::new(SIZES[0], shared, &mut rng);
        let mut large = PolicyPool::new(*SIZES.last().unwrap(), shared, &mut rng);
        let ratio = paired::ratio(200, || timed(|| small.call()), || timed(|| large.call()));
        results.insert(key.into(), paired::round2(ratio).into());
        for policy in [&small, &large] {
            let status = block_on(policy.runtime.pool_status("SHARED")).unwrap();
            assert!(status.free > 0, "the cool-off drained the pool: {status:?}");
        }
    }

    for pool in &pools {
        peak_guest_memory = peak_guest_memory
            .max(pool.round_robin.stats().peak_guest_memory_bytes)
            .max(pool.random.stats().peak_guest_memory_bytes);
    }
    results.insert("guest_peak_memory_bytes".into(), peak_guest_memory.into());
    results.insert("pool_1m_vs_100_by_occupancy".into(), paired_ratios.into());
    let json = serde_json::Value::Object(results).to_string();
    std::fs::write(paired::results_dir().join("pool_size.json"), &json).unwrap();
    println!("pool size: {json}");
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
