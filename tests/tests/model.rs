//! Model-based test: random sequences of create, match, release, clock advance, plugin
//! reload and process restart, run against the real component on the durable store and
//! compared step by step with a small reference model.
//!
//! Invariants: no number held by two live reservations; every acknowledged live
//! reservation matches with its code; expiry exact to the millisecond. Set
//! `PROPTEST_CASES` for a longer run (CI runs the default 24).

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use request_access_host::api::{CreateRequest, Error};
use request_access_host::runtime::CallError;
use request_access_host::store::{DurableStore, StateStore};
use request_access_tests::*;

const SERVICES: usize = 5;
const POOL: &str = r#"
[[resource_group]]
name = "G"
strategy = "random"
numbers = ["5551000..5551003"]

[registry]
services = ["s0", "s1", "s2", "s3", "s4"]
"#;

#[derive(Debug, Clone)]
enum Op {
    Create {
        service: usize,
        code: bool,
        timeout: Option<u32>,
    },
    Match {
        service: usize,
        right_code: bool,
    },
    Release {
        service: usize,
    },
    Advance {
        seconds: u64,
    },
    Reload,
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..SERVICES, any::<bool>(), prop::option::of(5u32..60))
            .prop_map(|(service, code, timeout)| Op::Create { service, code, timeout }),
        3 => (0..SERVICES, prop::bool::weighted(0.7))
            .prop_map(|(service, right_code)| Op::Match { service, right_code }),
        1 => (0..SERVICES).prop_map(|service| Op::Release { service }),
        2 => (1u64..40).prop_map(|seconds| Op::Advance { seconds }),
        1 => Just(Op::Reload),
        1 => Just(Op::Restart),
    ]
}

#[derive(Debug, Clone)]
struct Held {
    number: String,
    code: Option<String>,
    expires_at: u64,
    wrong_codes: u32,
}

fn open(path: &std::path::Path, now: u64) -> Harness {
    let store: Arc<dyn StateStore> = Arc::new(DurableStore::open(path).unwrap());
    let h = Harness::with_store(POOL, store);
    h.clock.set(now);
    h
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let mut h = open(&path, T0);
    let mut now = T0;
    let mut model: BTreeMap<usize, Held> = BTreeMap::new();

    for op in ops {
        // Reservations end exactly at their expiry instant.
        model.retain(|_, held| held.expires_at > now);
        match op {
            Op::Create {
                service,
                code,
                timeout,
            } => {
                let request = CreateRequest {
                    provide_code: code,
                    booking_expiration_timeout: timeout,
                    ..create(&format!("s{service}"), "G")
                };
                let outcome = h.runtime.create(&request);
                model.remove(&service); // asking again gives the old number back first
                let free = 4 - model.len();
                match outcome {
                    Ok(info) => {
                        prop_assert!(free > 0, "lent a number from an exhausted pool");
                        prop_assert!(
                            model.values().all(|held| held.number != info.access_number),
                            "{} lent twice",
                            info.access_number
                        );
                        let seconds = timeout.unwrap_or(30);
                        prop_assert_eq!(info.expiration_time, seconds);
                        prop_assert_eq!(info.expires_at, now + u64::from(seconds) * 1000);
                        prop_assert_eq!(info.access_code.is_some(), code);
                        model.insert(
                            service,
                            Held {
                                number: info.access_number,
                                code: info.access_code,
                                expires_at: info.expires_at,
                                wrong_codes: 0,
                            },
                        );
                    }
                    Err(CallError::Service(Error::NoAccessNumberAvailable(_))) => {
                        prop_assert_eq!(free, 0, "exhausted with free numbers");
                    }
                    Err(other) => prop_assert!(false, "create failed: {other}"),
                }
            }
            Op::Match {
                service,
                right_code,
            } => {
                let Some(held) = model.get(&service).cloned() else {
                    continue; // nothing of this service's to dial
                };
                let code = match (&held.code, right_code) {
                    (Some(code), true) => Some(code.clone()),
                    (Some(code), false) if code == "000000" => Some("111111".into()),
                    (Some(_), false) => Some("000000".into()),
                    (None, _) => None,
                };
                let code_is_right = code == held.code || held.code.is_none();
                let outcome = h
                    .runtime
                    .match_access(&match_with_code_opt(&held.number, code));
                if code_is_right {
                    let matched = outcome.map_err(|e| {
                        TestCaseError::fail(format!("live reservation did not match: {e}"))
                    })?;
                    prop_assert_eq!(matched.service_id, format!("s{service}"));
                    model.remove(&service);
                } else if held.wrong_codes + 1 >= 5 {
                    prop_assert_eq!(outcome, Err(CallError::Service(Error::TooManyAttempts)));
                    model.remove(&service);
                } else {
                    prop_assert_eq!(outcome, Err(CallError::Service(Error::NoMatch)));
                    model.get_mut(&service).unwrap().wrong_codes += 1;
                }
            }
            Op::Release { service } => {
                let outcome = h.runtime.release(&format!("s{service}"), "G");
                match model.remove(&service) {
                    Some(held) => prop_assert_eq!(outcome, Ok(held.number)),
                    None => prop_assert_eq!(outcome, Err(CallError::Service(Error::NoMatch))),
                }
            }
            Op::Advance { seconds } => {
                now += seconds * 1000;
                h.clock.set(now);
            }
            Op::Reload => h.runtime.reload(image()),
            Op::Restart => {
                drop(h);
                h = open(&path, now);
            }
        }
        model.retain(|_, held| held.expires_at > now);
        let status = h.runtime.pool_status("G").unwrap();
        prop_assert_eq!(status.live as usize, model.len(), "live reservations");
    }
    Ok(())
}

fn match_with_code_opt(
    number: &str,
    code: Option<String>,
) -> request_access_host::api::MatchRequest {
    request_access_host::api::MatchRequest {
        access_number: number.into(),
        access_code: code,
        phone_number: None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(24),
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_component_behaves_like_the_model(ops in prop::collection::vec(op(), 1..60)) {
        run(ops)?;
    }
}
