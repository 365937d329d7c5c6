//! `match-access` (the original's `match-interaction`) and `release`.

use request_access_host::api::{CreateRequest, Error, MatchRequest};
use request_access_host::runtime::CallError;
use request_access_tests::*;

const NO_MATCH: Result<(), CallError> = Err(CallError::Service(Error::NoMatch));

fn outcome(h: &Harness, request: &MatchRequest) -> Result<(), CallError> {
    h.runtime.match_access(request).map(|_| ())
}

/// A reservation with a code for svc-1: (number, code, a wrong code of the same length).
fn reserve_with_code(h: &Harness) -> (String, String, String) {
    let info = h
        .runtime
        .create(&create_with_code("svc-1", "DNIS"))
        .unwrap();
    let code = info.access_code.unwrap();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    (info.access_number, code, wrong.to_string())
}

#[test]
fn a_match_names_the_service_and_releases_the_number() {
    let h = Harness::new(TEN_NUMBERS);
    let info = h.runtime.create(&create("svc-2", "DNIS")).unwrap();
    let matched = h
        .runtime
        .match_access(&match_number(&info.access_number))
        .unwrap();
    assert_eq!(matched.service_id, "svc-2");
    assert_eq!(matched.resource_group, "DNIS");
    assert_eq!(outcome(&h, &match_number(&info.access_number)), NO_MATCH);
    assert_eq!(h.runtime.pool_status("DNIS").unwrap().free, 10);
}

#[test]
fn the_dialled_number_is_compared_by_digits() {
    let h = Harness::new(TEN_NUMBERS);
    h.runtime.create(&create("svc-1", "DNIS")).unwrap();
    let matched = h
        .runtime
        .match_access(&match_number("1 (800) 555-0100"))
        .unwrap();
    assert_eq!(matched.service_id, "svc-1");
}

#[test]
fn a_code_is_required_when_one_was_issued() {
    let h = Harness::new(TEN_NUMBERS);
    let info = h
        .runtime
        .create(&create_with_code("svc-1", "DNIS"))
        .unwrap();
    let code = info.access_code.unwrap();
    let before = h.snapshot();
    assert_eq!(outcome(&h, &match_number(&info.access_number)), NO_MATCH);
    assert_eq!(h.snapshot(), before, "no code typed yet: no strike");
    let matched = h
        .runtime
        .match_access(&match_with_code(&info.access_number, &code))
        .unwrap();
    assert_eq!(matched.service_id, "svc-1");
}

#[test]
fn too_many_wrong_codes_revoke_the_reservation() {
    let h = Harness::new(TEN_NUMBERS);
    let (number, code, wrong) = reserve_with_code(&h);
    for _ in 0..4 {
        assert_eq!(outcome(&h, &match_with_code(&number, &wrong)), NO_MATCH);
    }
    assert_eq!(h.runtime.pool_status("DNIS").unwrap().live, 1);
    assert_eq!(
        outcome(&h, &match_with_code(&number, &wrong)),
        Err(CallError::Service(Error::TooManyAttempts))
    );
    // Revoked: even the right code no longer matches, and the number is free again.
    assert_eq!(outcome(&h, &match_with_code(&number, &code)), NO_MATCH);
    assert_eq!(h.runtime.pool_status("DNIS").unwrap().live, 0);
}

#[test]
fn the_right_code_still_matches_below_the_limit_and_the_limit_is_configurable() {
    let config = format!("[options]\nmax_code_attempts = 2\n{TEN_NUMBERS}");
    let h = Harness::new(&config);
    let (number, code, wrong) = reserve_with_code(&h);
    assert_eq!(outcome(&h, &match_with_code(&number, &wrong)), NO_MATCH);
    assert!(outcome(&h, &match_with_code(&number, &code)).is_ok());

    let (number, _, _) = reserve_with_code(&h);
    assert_eq!(outcome(&h, &match_with_code(&number, "1")), NO_MATCH);
    assert_eq!(
        outcome(&h, &match_with_code(&number, "2")),
        Err(CallError::Service(Error::TooManyAttempts))
    );
}

#[test]
fn a_hidden_caller_id_does_not_block_a_match() {
    let h = Harness::new(TEN_NUMBERS);
    let info = h
        .runtime
        .create(&CreateRequest {
            phone_number: Some("+15551234567".into()),
            ..create_with_code("svc-1", "DNIS")
        })
        .unwrap();
    let mut anonymous = match_with_code(&info.access_number, info.access_code.as_deref().unwrap());
    anonymous.phone_number = Some("Anonymous".into());
    assert_eq!(
        h.runtime.match_access(&anonymous).unwrap().service_id,
        "svc-1"
    );
}

#[test]
fn an_expired_reservation_matches_nothing() {
    let h = Harness::new(TEN_NUMBERS);
    let info = h.runtime.create(&create("svc-1", "DNIS")).unwrap();
    h.advance(29);
    assert_eq!(h.runtime.pool_status("DNIS").unwrap().live, 1);
    h.advance(1);
    assert_eq!(h.runtime.pool_status("DNIS").unwrap().live, 0);
    assert_eq!(outcome(&h, &match_number(&info.access_number)), NO_MATCH);
}

#[test]
fn malformed_match_requests_are_refused_by_name() {
    let h = Harness::new(TEN_NUMBERS);
    let info = h
        .runtime
        .create(&create_with_code("svc-1", "DNIS"))
        .unwrap();
    let before = h.snapshot();
    let field = |r: Result<(), CallError>| match r {
        Err(CallError::Service(Error::InvalidParameter { field, .. })) => field,
        other => panic!("expected invalid-parameter, got {other:?}"),
    };
    assert_eq!(field(outcome(&h, &match_number(""))), "_access_number");
    assert_eq!(
        field(outcome(&h, &match_number("DNIS-1"))),
        "_access_number"
    );
    assert_eq!(
        field(outcome(&h, &match_with_code(&info.access_number, "12ab"))),
        "_access_code"
    );
    let mut bad_caller = match_number(&info.access_number);
    bad_caller.phone_number = Some("not-a-number".into());
    assert_eq!(field(outcome(&h, &bad_caller)), "_phone_number");
    assert_eq!(h.snapshot(), before, "refusals count no strike");
}

#[test]
fn release_gives_the_number_back_early() {
    let h = Harness::new(TEN_NUMBERS);
    let info = h.runtime.create(&create("svc-1", "DNIS")).unwrap();
    assert_eq!(
        h.runtime.release("svc-1", "DNIS").unwrap(),
        info.access_number
    );
    assert_eq!(h.runtime.pool_status("DNIS").unwrap().live, 0);
    assert_eq!(
        h.runtime.release("svc-1", "DNIS"),
        Err(CallError::Service(Error::NoMatch))
    );
    assert_eq!(outcome(&h, &match_number(&info.access_number)), NO_MATCH);
    assert_eq!(
        h.runtime.release("svc-1", "NOPE"),
        Err(CallError::Service(Error::UnknownResourceGroup(
            "NOPE".into()
        )))
    );
    assert!(matches!(
        h.runtime.release("", "DNIS"),
        Err(CallError::Service(Error::InvalidParameter { .. }))
    ));
}
