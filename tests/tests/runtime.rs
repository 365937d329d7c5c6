//! The host around the component: its declared interface, the call deadline, the
//! memory cap, re-instantiation after a trap, and the durable store.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use request_access_host::clock::ManualClock;
use request_access_host::config::Config;
use request_access_host::runtime::{
    CallError, InstanceAllocation, Limits, PLUGIN_WASM, PluginImage, Runtime,
};
use request_access_host::services::Services;
use request_access_host::store::{DurableStore, MemoryStore, StateStore};
use request_access_tests::*;

#[test]
fn the_component_exports_request_access_and_imports_only_the_world_and_wasi() {
    let (imports, exports) = image().interface();
    assert_eq!(
        exports,
        [
            "contact-center:request-access/request-access@0.1.1",
            "contact-center:request-access/placement@0.1.1",
            "contact-center:request-access/lease@0.1.1"
        ]
    );
    for own in [
        "contact-center:request-access/service-registry@0.1.1",
        "contact-center:request-access/clock@0.1.1",
        "contact-center:request-access/resource-groups@0.1.1",
        "contact-center:request-access/reservation-state@0.1.1",
    ] {
        assert!(
            imports.iter().any(|i| i == own),
            "{own} missing from {imports:?}"
        );
    }
    for import in &imports {
        assert!(
            import.starts_with("wasi:") || import.starts_with("contact-center:request-access/"),
            "unexpected import {import}"
        );
    }
    assert!(imports.iter().any(|i| i.starts_with("wasi:random/random")));
}

#[test]
fn time_blocked_in_the_host_does_not_count_against_the_call_deadline() {
    // A store that takes 100 ms per read and a 20 ms deadline: the guest's own time is
    // microseconds, so the call completes. (A guest that spins is stopped: sandbox.rs.)
    let config = Config::parse(TEN_NUMBERS, "test").unwrap();
    let store = Arc::new(ProbeStore::new(Arc::new(MemoryStore::new())));
    let services = Arc::new(Services::new(
        config,
        store.clone(),
        Arc::new(ManualClock::new(T0)),
    ));
    let limits = Limits {
        call_deadline: Duration::from_millis(20),
        ..Limits::default()
    };
    let runtime = Blocking::new(Runtime::new(image(), services, limits));
    store.slow.store(true, Ordering::SeqCst);
    let info = runtime.create(&create("svc-1", "DNIS")).unwrap();
    assert_eq!(info.access_number, "+18005550100");
    assert_eq!(runtime.stats().faults, 0);
}

#[test]
fn an_instance_over_its_memory_cap_is_a_plugin_fault_not_a_crash() {
    let config = Config::parse(TEN_NUMBERS, "test").unwrap();
    let services = Arc::new(Services::new(
        config,
        Arc::new(MemoryStore::new()),
        Arc::new(ManualClock::new(T0)),
    ));
    let limits = Limits {
        memory_bytes: 64 * 1024,
        ..Limits::default()
    };
    let runtime = Blocking::new(Runtime::new(image(), services, limits));
    assert!(matches!(
        runtime.create(&create("svc-1", "DNIS")),
        Err(CallError::PluginFault(_))
    ));
    // Refused growth is not counted as memory the guest had.
    assert!(runtime.stats().peak_guest_memory_bytes <= 64 * 1024);
}

#[test]
fn the_pooling_allocator_serves_fresh_instances_call_after_call() {
    let h = Harness::new(TEN_NUMBERS);
    let image = PluginImage::with_allocation(PLUGIN_WASM, InstanceAllocation::Pooling).unwrap();
    let limits = Limits {
        max_idle_instances: 0,
        ..Limits::default()
    };
    let runtime = Blocking::new(Runtime::new(image, h.runtime.services().clone(), limits));
    let mut numbers = Vec::new();
    for service in ["svc-1", "svc-2", "svc-3"] {
        numbers.push(
            runtime
                .create(&create(service, "DNIS"))
                .unwrap()
                .access_number,
        );
    }
    numbers.sort();
    numbers.dedup();
    assert_eq!(numbers.len(), 3, "three services, three numbers");
    // No instance kept: each call had its own, and the pool's slots were reused.
    assert_eq!(runtime.stats().instantiations, 3);
}

#[test]
fn the_guests_peak_memory_is_reported_and_stays_under_its_cap() {
    let h = Harness::new(TEN_NUMBERS);
    assert_eq!(h.runtime.stats().peak_guest_memory_bytes, 0);
    h.runtime.create(&create("svc-1", "DNIS")).unwrap();
    let peak = h.runtime.stats().peak_guest_memory_bytes;
    assert!(peak > 0, "an instance has some memory");
    assert!(peak as usize <= h.runtime.limits().memory_bytes);
}

#[test]
fn many_threads_share_one_runtime_with_a_bounded_set_of_warm_instances() {
    let h = Arc::new(Harness::new(&format!(
        "[[resource_group]]\nname = \"G\"\nnumbers = [\"5551000..5551999\"]\n\
         [registry]\nservices = [{}]\n",
        (0..8)
            .map(|i| format!("\"t{i}\""))
            .collect::<Vec<_>>()
            .join(",")
    )));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let h = h.clone();
            std::thread::spawn(move || {
                for _ in 0..50 {
                    h.runtime.create(&create(&format!("t{t}"), "G")).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(h.runtime.pool_status("G").unwrap().live, 8);
    let made = h.runtime.stats().instantiations;
    assert!((1..=8).contains(&made), "{made} instances for 8 threads");
}

#[test]
fn the_durable_store_keeps_every_reservation_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let config = format!(
        "[[resource_group]]\nname = \"G\"\nstrategy = \"random\"\nnumbers = [\"5551000..5551049\"]\n\
         [registry]\nservices = [{}]\n",
        (0..20)
            .map(|i| format!("\"s{i}\""))
            .collect::<Vec<_>>()
            .join(",")
    );
    let lent: Vec<_> = {
        let store: Arc<dyn StateStore> = Arc::new(DurableStore::open(&path).unwrap());
        let h = Harness::with_store(&config, store);
        wait(h.runtime.services().registry.register("app", None)).unwrap();
        (0..20)
            .map(|i| {
                let id = format!("s{i}");
                let info = h.runtime.create(&create_with_code(&id, "G")).unwrap();
                (id, info)
            })
            .collect()
    };

    let store: Arc<dyn StateStore> = Arc::new(DurableStore::open(&path).unwrap());
    let h = Harness::with_store(&config, store);
    assert!(wait(h.runtime.services().registry.is_active("app")).unwrap());
    assert_eq!(h.runtime.pool_status("G").unwrap().live, 20);
    // New reservations avoid every number lent before the reopen.
    let fresh: Vec<String> = (0..30)
        .map(|_| h.runtime.create(&create("app", "G")).unwrap().access_number)
        .collect();
    for (_, info) in &lent {
        assert!(!fresh.contains(&info.access_number));
    }
    for (id, info) in &lent {
        let m = h
            .runtime
            .match_access(&match_with_code(
                &info.access_number,
                info.access_code.as_deref().unwrap(),
            ))
            .unwrap();
        assert_eq!(&m.service_id, id);
    }
    assert_eq!(
        h.runtime.pool_status("G").unwrap().live,
        1,
        "only app's last one"
    );
}

#[test]
fn a_lone_create_costs_three_store_calls_and_the_released_plugin_four() {
    // Each store call is a network round trip on Redis or etcd: the keys and the expiry
    // index in one `read`, the ring's head slot, and the commit, which checks that the
    // number taken is free instead of reading it first. A plugin of the 0.1.0 contract
    // has no `read` (a get, then a scan) and reads the number's reservation too.
    for (image, per_create) in [
        (image(), 3),
        (PluginImage::new(RELEASED_WIT_PLUGIN_WASM).unwrap(), 4),
    ] {
        let config = Config::parse(TEN_NUMBERS, "test").unwrap();
        let store = Arc::new(ProbeStore::new(Arc::new(MemoryStore::new())));
        let services = Arc::new(Services::new(
            config,
            store.clone(),
            Arc::new(ManualClock::new(T0)),
        ));
        let runtime = Blocking::new(Runtime::new(image, services, Limits::default()));
        for (i, service) in ["svc-1", "svc-2", "svc-3"].into_iter().enumerate() {
            let info = runtime.create(&create(service, "DNIS")).unwrap();
            assert_eq!(info.access_number, format!("+1800555010{i}"));
            let calls = store.calls.swap(0, Ordering::SeqCst);
            // The first create also builds the group's ring (and looks for one kept
            // where older versions kept it).
            if i > 0 {
                assert_eq!(calls, per_create, "{service}");
            }
        }
    }
}
