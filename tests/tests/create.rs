//! `create`: every parameter, default, bound and error of the seed's Create request,
//! through the real component.

use request_access_host::api::{CreateRequest, Error};
use request_access_host::runtime::CallError;
use request_access_tests::*;

fn invalid_field(result: Result<impl std::fmt::Debug, CallError>) -> String {
    match result {
        Err(CallError::Service(Error::InvalidParameter { field, .. })) => field,
        other => panic!("expected invalid-parameter, got {other:?}"),
    }
}

#[test]
fn create_lends_a_pool_number_for_the_global_timeout() {
    let h = Harness::new(TEN_NUMBERS);
    let info = h.runtime.create(&create("svc-1", "DNIS")).unwrap();
    assert_eq!(info.access_number, "+18005550100");
    assert_eq!(info.access_code, None, "no code unless asked for");
    assert_eq!(info.expiration_time, 30, "the global default");
    assert_eq!(info.expires_at, T0 + 30_000);
    let status = h.runtime.pool_status("DNIS").unwrap();
    assert_eq!((status.size, status.live, status.free), (10, 1, 9));
}

#[test]
fn codes_have_the_configured_length_and_only_digits() {
    for length in [4u8, 6, 12] {
        let config = format!("[options]\naccess_code_length = {length}\n{TEN_NUMBERS}");
        let h = Harness::new(&config);
        let info = h
            .runtime
            .create(&create_with_code("svc-1", "DNIS"))
            .unwrap();
        let code = info.access_code.expect("a code was asked for");
        assert_eq!(code.len(), usize::from(length));
        assert!(code.bytes().all(|b| b.is_ascii_digit()), "{code}");
    }
}

#[test]
fn timeout_precedence_is_request_then_group_then_global() {
    let config = r#"
[options]
booking_expiration_timeout = 60

[[resource_group]]
name = "WITH"
booking_expiration_timeout = 45
numbers = ["5551000..5551009"]

[[resource_group]]
name = "WITHOUT"
numbers = ["5552000..5552009"]

[registry]
services = ["svc-1", "svc-2"]
"#;
    let h = Harness::new(config);
    let global = h.runtime.create(&create("svc-1", "WITHOUT")).unwrap();
    assert_eq!(global.expiration_time, 60);
    let group = h.runtime.create(&create("svc-1", "WITH")).unwrap();
    assert_eq!(group.expiration_time, 45);
    let request = h
        .runtime
        .create(&CreateRequest {
            booking_expiration_timeout: Some(300),
            ..create("svc-2", "WITH")
        })
        .unwrap();
    assert_eq!(request.expiration_time, 300);
    assert_eq!(request.expires_at, T0 + 300_000);
}

#[test]
fn timeout_bounds_are_5_to_1800_and_a_refusal_changes_nothing() {
    let h = Harness::new(TEN_NUMBERS);
    for ok in [5, 1800] {
        let info = h
            .runtime
            .create(&CreateRequest {
                booking_expiration_timeout: Some(ok),
                ..create("svc-1", "DNIS")
            })
            .unwrap();
        assert_eq!(info.expiration_time, ok);
    }
    let before = h.snapshot();
    for bad in [0, 4, 1801, u32::MAX] {
        let result = h.runtime.create(&CreateRequest {
            booking_expiration_timeout: Some(bad),
            ..create("svc-2", "DNIS")
        });
        assert_eq!(invalid_field(result), "_booking_expiration_timeout");
    }
    assert_eq!(h.snapshot(), before);
}

#[test]
fn malformed_fields_are_refused_by_name_and_change_nothing() {
    let h = Harness::new(TEN_NUMBERS);
    h.runtime.create(&create("svc-1", "DNIS")).unwrap();
    let before = h.snapshot();
    let cases: Vec<(CreateRequest, &str)> = vec![
        (create("", "DNIS"), "_id"),
        (create(&"x".repeat(257), "DNIS"), "_id"),
        (create("svc\u{7}", "DNIS"), "_id"),
        (create(" svc-1", "DNIS"), "_id"),
        (create("svc-1", ""), "_resource_group"),
        (create("svc-1", &"g".repeat(129)), "_resource_group"),
        (
            CreateRequest {
                phone_number: Some("call me".into()),
                ..create("svc-1", "DNIS")
            },
            "_phone_number",
        ),
        (
            CreateRequest {
                phone_number: Some("12".into()),
                ..create("svc-1", "DNIS")
            },
            "_phone_number",
        ),
        (
            CreateRequest {
                phone_number: Some("+1234567890123456".into()),
                ..create("svc-1", "DNIS")
            },
            "_phone_number",
        ),
    ];
    for (request, field) in cases {
        assert_eq!(
            invalid_field(h.runtime.create(&request)),
            field,
            "{request:?}"
        );
    }
    assert_eq!(h.snapshot(), before);
}

#[test]
fn unknown_groups_and_inactive_services_are_told_apart() {
    let h = Harness::new(TEN_NUMBERS);
    let before = h.snapshot();
    assert_eq!(
        h.runtime.create(&create("svc-1", "NOPE")),
        Err(CallError::Service(Error::UnknownResourceGroup(
            "NOPE".into()
        )))
    );
    assert_eq!(
        h.runtime.create(&create("stranger", "DNIS")),
        Err(CallError::Service(Error::ServiceNotActive(
            "stranger".into()
        )))
    );
    assert_eq!(h.snapshot(), before);
}

#[test]
fn registered_services_are_active_until_their_ttl_or_deregistration() {
    let h = Harness::new(TEN_NUMBERS);
    let registry = &h.runtime.services().registry;
    wait(registry.register("app-7", Some(std::time::Duration::from_secs(60)))).unwrap();
    wait(registry.register("app-8", None)).unwrap();
    assert!(h.runtime.create(&create("app-7", "DNIS")).is_ok());
    assert!(h.runtime.create(&create("app-8", "DNIS")).is_ok());

    h.advance(60);
    assert_eq!(
        h.runtime.create(&create("app-7", "DNIS")),
        Err(CallError::Service(Error::ServiceNotActive("app-7".into())))
    );
    assert!(wait(registry.deregister("app-8")).unwrap());
    assert_eq!(
        h.runtime.create(&create("app-8", "DNIS")),
        Err(CallError::Service(Error::ServiceNotActive("app-8".into())))
    );
}

#[test]
fn asking_again_replaces_the_reservation_and_returns_the_old_number() {
    let h = Harness::new(TEN_NUMBERS);
    let first = h
        .runtime
        .create(&create_with_code("svc-1", "DNIS"))
        .unwrap();
    let second = h
        .runtime
        .create(&create_with_code("svc-1", "DNIS"))
        .unwrap();
    assert_ne!(first.access_number, second.access_number);
    let status = h.runtime.pool_status("DNIS").unwrap();
    assert_eq!(
        status.live, 1,
        "a retrying client holds one number, not two"
    );
    // The old access information no longer matches; the new one does.
    assert_eq!(
        h.runtime.match_access(&match_with_code(
            &first.access_number,
            first.access_code.as_deref().unwrap()
        )),
        Err(CallError::Service(Error::NoMatch))
    );
    let matched = h
        .runtime
        .match_access(&match_with_code(
            &second.access_number,
            second.access_code.as_deref().unwrap(),
        ))
        .unwrap();
    assert_eq!(matched.service_id, "svc-1");
}

#[test]
fn an_exhausted_pool_is_a_specific_error_until_a_reservation_expires() {
    let config = r#"
[[resource_group]]
name = "SMALL"
numbers = ["5551000..5551002"]
"#;
    let h = Harness::new(config);
    let registry = &h.runtime.services().registry;
    for i in 0..4 {
        wait(registry.register(&format!("s{i}"), None)).unwrap();
    }
    for i in 0..3 {
        let request = CreateRequest {
            booking_expiration_timeout: Some(10 + 10 * i),
            ..create(&format!("s{i}"), "SMALL")
        };
        h.runtime.create(&request).unwrap();
    }
    let before = h.snapshot();
    assert_eq!(
        h.runtime.create(&create("s3", "SMALL")),
        Err(CallError::Service(Error::NoAccessNumberAvailable(
            "SMALL".into()
        )))
    );
    assert_eq!(h.snapshot(), before, "an exhausted create changes nothing");

    // The first reservation (10 s) expires: its number is free again, by itself.
    h.advance(9);
    assert!(h.runtime.create(&create("s3", "SMALL")).is_err());
    h.advance(1);
    let info = h.runtime.create(&create("s3", "SMALL")).unwrap();
    assert_eq!(info.access_number, "5551000");
    // And the expired reservation no longer matches anything.
    assert_eq!(h.runtime.pool_status("SMALL").unwrap().free, 0);
}

#[test]
fn the_caller_number_is_tied_to_the_reservation() {
    let h = Harness::new(TEN_NUMBERS);
    let info = h
        .runtime
        .create(&CreateRequest {
            phone_number: Some("+1 (555) 123-4567".into()),
            ..create("svc-1", "DNIS")
        })
        .unwrap();
    let mut from_elsewhere = match_number(&info.access_number);
    from_elsewhere.phone_number = Some("+15559999999".into());
    assert_eq!(
        h.runtime.match_access(&from_elsewhere),
        Err(CallError::Service(Error::NoMatch))
    );
    let mut from_caller = match_number(&info.access_number);
    from_caller.phone_number = Some("15551234567".into());
    assert_eq!(
        h.runtime.match_access(&from_caller).unwrap().service_id,
        "svc-1"
    );
}

#[test]
fn an_unreachable_store_is_reported_as_unavailable_not_as_a_fault() {
    let h = Harness::new(TEN_NUMBERS);
    wait(h.runtime.services().registry.register("app-1", None)).unwrap();
    h.store
        .broken
        .store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(matches!(
        h.runtime.create(&create("app-1", "DNIS")),
        Err(CallError::StoreUnavailable(why)) if why.contains("unreachable")
    ));
    assert!(matches!(
        h.runtime.create(&create("svc-1", "DNIS")),
        Err(CallError::StoreUnavailable(why)) if why.contains("unreachable")
    ));
    assert!(matches!(
        h.runtime.match_access(&match_number("+18005550100")),
        Err(CallError::StoreUnavailable(_))
    ));
    h.store
        .broken
        .store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(h.runtime.stats().faults, 0);
    assert!(h.runtime.create(&create("app-1", "DNIS")).is_ok());
}

#[test]
fn contention_the_plugin_gives_up_on_is_transient_not_a_fault() {
    let h = Harness::new(TEN_NUMBERS);
    wait(h.runtime.services().registry.register("svc-1", None)).unwrap();
    let before = h.snapshot();
    h.store
        .contended
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let outcome = h.runtime.create(&create("svc-1", "DNIS"));
    assert!(
        matches!(&outcome, Err(CallError::StoreUnavailable(why)) if why.contains("contended")),
        "{outcome:?}"
    );
    assert_eq!(h.snapshot(), before, "a call that gave up changed nothing");
    h.store
        .contended
        .store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(h.runtime.stats().faults, 0);
    assert!(h.runtime.create(&create("svc-1", "DNIS")).is_ok());
}
