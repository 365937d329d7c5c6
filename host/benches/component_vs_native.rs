//! `create`, `match-access` and `release` through the component on a warm instance
//! against the same logic compiled natively on the same in-memory state: the ratio is
//! the cost of the sandbox. `match` and `release` are measured one call at a time after a
//! fresh `create` (one service, so every create replaces the previous reservation). Run
//! with
//!
//! ```text
//! cargo bench -p request-access-host --bench component_vs_native
//! ```
//!
//! After criterion's runs, the same calls are measured once more in alternation (see
//! `paired/mod.rs`) for the ratios themselves, which land in
//! `target/bench-results/component_vs_native.json`.

mod paired;
mod setup;

use futures::executor::block_on;
use setup::services;

use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, criterion_group};
use rand::SeedableRng;
use rand::rngs::StdRng;
use request_access_host::api::{CreateRequest, MatchRequest};
use request_access_host::runtime::{Limits, PluginImage, Runtime};
use request_access_host::services::{NativeImports, Services};

fn create_request() -> CreateRequest {
    CreateRequest {
        service_id: "bench".into(),
        resource_group: "G".into(),
        provide_code: true,
        phone_number: None,
        booking_expiration_timeout: None,
    }
}

fn match_request(number: String, code: Option<String>) -> MatchRequest {
    MatchRequest {
        access_number: number,
        access_code: code,
        phone_number: None,
    }
}

fn bench(c: &mut Criterion) {
    let native = services();
    let mut rng = StdRng::seed_from_u64(1);
    let runtime = Runtime::new(
        PluginImage::embedded().unwrap(),
        services(),
        Limits::default(),
    );
    let request = create_request();

    let mut group = c.benchmark_group("create");
    group.bench_function("native", |b| {
        b.iter(|| request_access_guest_create(&native, &mut rng, &request))
    });
    group.bench_function("component", |b| {
        b.iter(|| block_on(runtime.create(&request)).unwrap())
    });
    group.finish();

    let mut group = c.benchmark_group("match");
    group.bench_function("native", |b| {
        b.iter_batched(
            || request_access_guest_create(&native, &mut StdRng::seed_from_u64(2), &request),
            |(number, code)| {
                request_access_guest::match_access(
                    &mut NativeImports(&native),
                    &match_request(number, code),
                )
                .unwrap()
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("component", |b| {
        b.iter_batched(
            || {
                let info = block_on(runtime.create(&request)).unwrap();
                (info.access_number, info.access_code)
            },
            |(number, code)| block_on(runtime.match_access(&match_request(number, code))).unwrap(),
            BatchSize::PerIteration,
        )
    });
    group.finish();

    let mut group = c.benchmark_group("release");
    group.bench_function("native", |b| {
        b.iter_batched(
            || request_access_guest_create(&native, &mut StdRng::seed_from_u64(3), &request),
            |_| request_access_guest::release(&mut NativeImports(&native), "bench", "G").unwrap(),
            BatchSize::PerIteration,
        )
    });
    group.bench_function("component", |b| {
        b.iter_batched(
            || block_on(runtime.create(&request)).unwrap(),
            |_| block_on(runtime.release("bench", "G")).unwrap(),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn request_access_guest_create(
    services: &Services,
    rng: &mut StdRng,
    request: &CreateRequest,
) -> (String, Option<String>) {
    let info = request_access_guest::create(&mut NativeImports(services), rng, request).unwrap();
    (info.access_number, info.access_code)
}

/// Time one call.
fn timed<R>(call: impl FnOnce() -> R) -> Duration {
    let started = Instant::now();
    std::hint::black_box(call());
    started.elapsed()
}

/// Component over native for each operation, measured in alternation.
fn paired_ratios() {
    let native = services();
    let runtime = Runtime::new(
        PluginImage::embedded().unwrap(),
        services(),
        Limits::default(),
    );
    let request = create_request();
    let mut rng = StdRng::seed_from_u64(4);
    const CALLS: usize = 200;

    let create = paired::ratio(
        CALLS,
        || timed(|| request_access_guest_create(&native, &mut StdRng::seed_from_u64(5), &request)),
        || timed(|| block_on(runtime.create(&request)).unwrap()),
    );
    let matched = paired::ratio(
        CALLS,
        || {
            let (number, code) = request_access_guest_create(&native, &mut rng, &request);
            let request = match_request(number, code);
            timed(|| request_access_guest::match_access(&mut NativeImports(&native), &request))
        },
        || {
            let info = block_on(runtime.create(&request)).unwrap();
            let request = match_request(info.access_number, info.access_code);
            timed(|| block_on(runtime.match_access(&request)).unwrap())
        },
    );
    let released = paired::ratio(
        CALLS,
        || {
            request_access_guest_create(&native, &mut StdRng::seed_from_u64(6), &request);
            timed(|| request_access_guest::release(&mut NativeImports(&native), "bench", "G"))
        },
        || {
            block_on(runtime.create(&request)).unwrap();
            timed(|| block_on(runtime.release("bench", "G")).unwrap())
        },
    );
    let json = serde_json::json!({
        "create": paired::round2(create),
        "match": paired::round2(matched),
        "release": paired::round2(released),
    });
    println!("component over native, in alternation: {json}");
    std::fs::write(
        paired::results_dir().join("component_vs_native.json"),
        json.to_string(),
    )
    .unwrap();
}

criterion_group!(benches, bench);

fn main() {
    benches();
    paired_ratios();
    Criterion::default().configure_from_args().final_summary();
}
