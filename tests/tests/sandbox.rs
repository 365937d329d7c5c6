//! A plugin that loops, hoards memory, panics or answers nonsense gets a clear fault
//! within the deadline; the host stays up, re-instantiates, keeps every reservation,
//! and the next request to a good plugin succeeds.

use std::time::{Duration, Instant};

use request_access_host::runtime::{CallError, PluginImage};
use request_access_tests::*;

const DEADLINE: Duration = Duration::from_millis(200);

#[test]
fn every_misbehaviour_is_a_contained_fault_and_nothing_is_lost() {
    let h = Harness::with_limits(TEN_NUMBERS, DEADLINE, 16 << 20);
    let good = image();
    let broken = PluginImage::new(BROKEN_PLUGIN_WASM).expect("the broken plugin targets the world");

    // A reservation made through the good plugin before anything goes wrong.
    let kept = h
        .runtime
        .create(&create_with_code("svc-1", "DNIS"))
        .unwrap();
    let before = h.snapshot();

    h.runtime.reload(broken);
    for (service, provide_code) in [
        ("loop", false),
        ("grow", false),
        ("panic", false),
        ("bad-number", false),
        ("bad-code", true),
        ("short-code", true),
        ("past-expiry", false),
        ("unasked-code", false),
    ] {
        let started = Instant::now();
        let request = if provide_code {
            create_with_code(service, "DNIS")
        } else {
            create(service, "DNIS")
        };
        let outcome = h.runtime.create(&request);
        let took = started.elapsed();
        assert!(
            matches!(outcome, Err(CallError::PluginFault(_))),
            "{service}: {outcome:?}"
        );
        assert!(took < DEADLINE * 4, "{service} took {took:?}");
    }
    // A group the request does not fall back to is a fault; an implausible retry
    // instant is dropped, and the refusal stands.
    let outcome = h.runtime.create_placed(&create("other-group", "DNIS"));
    assert!(
        matches!(&outcome, Err(r) if matches!(r.error, CallError::PluginFault(_))),
        "{outcome:?}"
    );
    let refusal = h
        .runtime
        .create_placed(&create("far-retry", "DNIS"))
        .unwrap_err();
    assert_eq!(
        refusal.error,
        CallError::Service(request_access_host::api::Error::NoAccessNumberAvailable(
            "DNIS".into()
        ))
    );
    assert_eq!(refusal.retry_at, None);
    assert!(matches!(
        h.runtime.match_access(&match_number("+18005550100")),
        Err(CallError::PluginFault(_))
    ));
    assert!(matches!(
        h.runtime.release("svc-1", "DNIS"),
        Err(CallError::PluginFault(_))
    ));
    assert!(matches!(
        h.runtime.pool_status("DNIS"),
        Err(CallError::PluginFault(_))
    ));
    // An extension to ten years from now is no answer a caller gets.
    assert!(matches!(
        h.runtime.extend(&extend("svc-1", "DNIS", 60)),
        Err(CallError::PluginFault(_))
    ));
    let stats = h.runtime.stats();
    assert_eq!(stats.faults, 13);
    assert!(
        stats.instantiations >= 4,
        "trapped instances were replaced: {stats:?}"
    );
    assert_eq!(h.snapshot(), before, "no misbehaviour changed the state");

    // The good plugin again: the earlier reservation is intact and new ones work.
    h.runtime.reload(good);
    let fresh = h.runtime.create(&create("svc-2", "DNIS")).unwrap();
    assert_eq!(fresh.access_number, "+18005550101");
    let matched = h
        .runtime
        .match_access(&match_with_code(
            &kept.access_number,
            kept.access_code.as_deref().unwrap(),
        ))
        .unwrap();
    assert_eq!(matched.service_id, "svc-1");
}
