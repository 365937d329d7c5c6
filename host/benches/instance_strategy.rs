//! `create` through the component with a warm instance reused across calls, against a
//! fresh instance per call, each with wasmtime's on-demand and pooling instance
//! allocators. Run with
//!
//! ```text
//! cargo bench -p request-access-host --bench instance_strategy
//! ```

mod setup;

use criterion::{Criterion, criterion_group, criterion_main};
use futures::executor::block_on;
use request_access_host::api::CreateRequest;
use request_access_host::runtime::{InstanceAllocation, Limits, PLUGIN_WASM, PluginImage, Runtime};

fn runtime(allocation: InstanceAllocation, warm: bool) -> Runtime {
    let services = setup::services();
    let limits = Limits {
        // No idle instance kept: every call instantiates.
        max_idle_instances: if warm { 16 } else { 0 },
        ..Limits::default()
    };
    Runtime::new(
        PluginImage::with_allocation(PLUGIN_WASM, allocation).unwrap(),
        services,
        limits,
    )
}

fn bench(c: &mut Criterion) {
    let request = CreateRequest {
        service_id: "bench".into(),
        resource_group: "G".into(),
        provide_code: true,
        phone_number: None,
        booking_expiration_timeout: None,
    };
    let mut group = c.benchmark_group("instance");
    for (name, allocation, warm) in [
        ("warm", InstanceAllocation::OnDemand, true),
        ("fresh", InstanceAllocation::OnDemand, false),
        ("warm-pooling", InstanceAllocation::Pooling, true),
        ("fresh-pooling", InstanceAllocation::Pooling, false),
    ] {
        let runtime = runtime(allocation, warm);
        group.bench_function(name, |b| {
            b.iter(|| block_on(runtime.create(&request)).unwrap())
        });
        let instantiations = runtime.stats().instantiations;
        assert!(
            if warm {
                instantiations == 1
            } else {
                instantiations > 1
            },
            "{name}: {instantiations} instantiations"
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
