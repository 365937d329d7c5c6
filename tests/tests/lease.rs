//! `lease.extend` and the sliding expiry, through the real component on the in-memory
//! and the durable store: an extended reservation keeps its number, code and caller
//! past its first expiry and ends at its new one; a sliding group keeps a number across
//! the calls of one session.

use std::sync::Arc;

use request_access_host::api::{Error, MatchRequest};
use request_access_host::runtime::CallError;
use request_access_host::store::{DurableStore, MemoryStore, StateStore};
use request_access_tests::*;

const GROUPS: &str = "[[resource_group]]\nname = \"DNIS\"\nnumbers = [\"5551000..5551001\"]\n\
                      [[resource_group]]\nname = \"SESSION\"\nsliding_expiry = true\n\
                      max_lifetime = 1800\nnumbers = [\"5552000\"]\n\
                      [registry]\nservices = [\"a\", \"b\"]\n";

/// Each test on a fresh in-memory store and a fresh durable store.
fn on_each_store(test: impl Fn(&Harness)) {
    test(&Harness::with_store(GROUPS, Arc::new(MemoryStore::new())));
    let dir = tempfile::tempdir().unwrap();
    let durable: Arc<dyn StateStore> =
        Arc::new(DurableStore::open(&dir.path().join("state.redb")).unwrap());
    test(&Harness::with_store(GROUPS, durable));
}

fn dial(number: &str, code: Option<&str>) -> MatchRequest {
    MatchRequest {
        access_number: number.into(),
        access_code: code.map(String::from),
        phone_number: None,
    }
}

#[test]
fn a_heartbeat_keeps_the_number_and_code_until_the_last_extension_runs_out() {
    on_each_store(|h| {
        let info = h.runtime.create(&create_with_code("a", "DNIS")).unwrap();
        let code = info.access_code.clone();
        // A page's heartbeat: every 20 s, another 30 s, for five minutes.
        for _ in 0..15 {
            h.advance(20);
            let extended = h.runtime.extend(&extend("a", "DNIS", 30)).unwrap();
            assert_eq!(extended.access_number, info.access_number);
            assert_eq!(extended.expiration_time, 30);
            assert!(!extended.capped);
        }
        assert_eq!(h.runtime.pool_status("DNIS").unwrap().live, 1);
        // Another service gets the other number, not this one.
        let other = h.runtime.create(&create("b", "DNIS")).unwrap();
        assert_ne!(other.access_number, info.access_number);
        // The heartbeat stops: 31 s later the reservation has ended.
        h.advance(31);
        assert_eq!(
            h.runtime
                .match_access(&dial(&info.access_number, code.as_deref())),
            Err(CallError::Service(Error::NoMatch))
        );
        assert_eq!(
            h.runtime.extend(&extend("a", "DNIS", 30)),
            Err(CallError::Service(Error::NoMatch))
        );
    });
}

#[test]
fn an_extended_reservation_is_matched_with_its_code_and_released_by_the_match() {
    on_each_store(|h| {
        let info = h.runtime.create(&create_with_code("a", "DNIS")).unwrap();
        h.advance(25);
        h.runtime.extend(&extend("a", "DNIS", 600)).unwrap();
        h.advance(300);
        let code = info.access_code.as_deref();
        let matched = h
            .runtime
            .match_access(&dial(&info.access_number, code))
            .unwrap();
        assert_eq!(matched.service_id, "a");
        assert_eq!(h.runtime.pool_status("DNIS").unwrap().free, 2);
    });
}

#[test]
fn a_sliding_group_keeps_the_number_for_the_sessions_calls_within_its_lifetime() {
    on_each_store(|h| {
        let info = h.runtime.create(&create_with_code("a", "SESSION")).unwrap();
        let code = info.access_code.as_deref();
        for _ in 0..4 {
            h.advance(25);
            let matched = h
                .runtime
                .match_access(&dial(&info.access_number, code))
                .unwrap();
            assert_eq!(matched.service_id, "a");
        }
        // The one number is still the session's: another service finds none.
        assert!(matches!(
            h.runtime.create(&create("b", "SESSION")),
            Err(CallError::Service(Error::NoAccessNumberAvailable(_)))
        ));
        // An extension is capped at the group's 1800 s from the create.
        h.runtime.extend(&extend("a", "SESSION", 1800)).unwrap();
        let capped = h.runtime.extend(&extend("a", "SESSION", 1800)).unwrap();
        assert!(capped.capped);
        assert_eq!(capped.expires_at, info.expires_at - 30_000 + 1_800_000);
        // Released, the number is the next service's.
        h.runtime.release("a", "SESSION").unwrap();
        let next = h.runtime.create(&create("b", "SESSION")).unwrap();
        assert_eq!(next.access_number, info.access_number);
    });
}

#[test]
fn a_bad_extension_names_its_field_and_changes_nothing() {
    let h = Harness::new(GROUPS);
    h.runtime.create(&create("a", "DNIS")).unwrap();
    let before = h.snapshot();
    assert!(matches!(
        h.runtime.extend(&extend("a", "DNIS", 1801)),
        Err(CallError::Service(Error::InvalidParameter { field, .. }))
            if field == "_booking_expiration_timeout"
    ));
    assert!(matches!(
        h.runtime.extend(&extend("a", "NOWHERE", 60)),
        Err(CallError::Service(Error::UnknownResourceGroup(_)))
    ));
    assert_eq!(
        h.runtime.extend(&extend("b", "DNIS", 60)),
        Err(CallError::Service(Error::NoMatch))
    );
    assert_eq!(h.snapshot(), before);
}
