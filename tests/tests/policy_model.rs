//! Model-based test of the group policies through the real component: random sequences
//! of create, match, release and clock advances on a pool of four, under a random
//! cool-off and grace window, compared step by step with a reference model.
//!
//! Invariants: no number lent while it is held or resting; "exhausted" only when every
//! number is held or resting; a call matches exactly while its reservation is live or in
//! its grace window; the status counts exactly the numbers a create could get. Set
//! `PROPTEST_CASES` for a longer run.

use std::collections::BTreeMap;

use proptest::prelude::*;
use request_access_host::api::{CreateRequest, Error};
use request_access_host::runtime::CallError;
use request_access_tests::*;

const NUMBERS: [&str; 4] = ["5551000", "5551001", "5551002", "5551003"];
const SERVICES: usize = 5;

#[derive(Debug, Clone)]
enum Op {
    Create { service: usize, timeout: u32 },
    Match { number: usize },
    Release { service: usize },
    Advance { seconds: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..SERVICES, 5u32..40).prop_map(|(service, timeout)| Op::Create { service, timeout }),
        3 => (0..NUMBERS.len()).prop_map(|number| Op::Match { number }),
        1 => (0..SERVICES).prop_map(|service| Op::Release { service }),
        3 => (1u64..25).prop_map(|seconds| Op::Advance { seconds }),
    ]
}

/// A number's state in the model.
#[derive(Debug, Clone, Copy)]
enum Number {
    /// Lent to a service until `expires_at` (ms).
    Held { service: usize, expires_at: u64 },
    /// Not to be lent before this instant (ms).
    Resting { until: u64 },
}

fn run(cooldown: u64, grace: u64, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let services: Vec<String> = (0..SERVICES).map(|s| format!("\"s{s}\"")).collect();
    let h = Harness::new(&format!(
        "[[resource_group]]\nname = \"G\"\nreuse_cooldown = {cooldown}\nmatch_grace = {grace}\n\
         numbers = [\"5551000..5551003\"]\n[registry]\nservices = [{}]\n",
        services.join(", ")
    ));
    let mut now = T0;
    let mut model: BTreeMap<usize, Number> = BTreeMap::new();
    let rest = |ended_at: u64| Number::Resting {
        until: ended_at + cooldown * 1000,
    };

    for (step, op) in ops.into_iter().enumerate() {
        // Reservations past their grace window end at their expiry, and rest from then.
        for state in model.values_mut() {
            if let Number::Held { expires_at, .. } = *state
                && expires_at + grace * 1000 <= now
            {
                *state = rest(expires_at);
            }
        }
        model.retain(|_, s| !matches!(s, Number::Resting { until } if *until <= now));
        let held_by = |model: &BTreeMap<usize, Number>, service: usize| {
            model.iter().find_map(|(&i, s)| match s {
                Number::Held { service: s, .. } if *s == service => Some(i),
                _ => None,
            })
        };
        match op {
            Op::Create { service, timeout } => {
                let request = CreateRequest {
                    booking_expiration_timeout: Some(timeout),
                    ..create(&format!("s{service}"), "G")
                };
                let outcome = h.runtime.create(&request);
                // Asking again ends the old reservation first: its number rests.
                if let Some(old) = held_by(&model, service) {
                    let Number::Held { expires_at, .. } = model[&old] else {
                        unreachable!()
                    };
                    model.insert(old, rest(now.min(expires_at)));
                    model.retain(|_, s| !matches!(s, Number::Resting { until } if *until <= now));
                }
                match outcome {
                    Ok(info) => {
                        let i = NUMBERS
                            .iter()
                            .position(|n| *n == info.access_number)
                            .unwrap();
                        prop_assert!(
                            !model.contains_key(&i),
                            "step {}: {} lent while {:?}",
                            step,
                            info.access_number,
                            model.get(&i)
                        );
                        model.insert(
                            i,
                            Number::Held {
                                service,
                                expires_at: info.expires_at,
                            },
                        );
                    }
                    Err(CallError::Service(Error::NoAccessNumberAvailable(_))) => {
                        prop_assert_eq!(model.len(), NUMBERS.len(), "step {}: exhausted", step);
                    }
                    Err(other) => prop_assert!(false, "create failed: {other}"),
                }
            }
            Op::Match { number } => {
                let outcome = h.runtime.match_access(&match_number(NUMBERS[number]));
                match model.get(&number).copied() {
                    Some(Number::Held {
                        service,
                        expires_at,
                    }) => {
                        prop_assert_eq!(
                            outcome.map(|m| m.service_id),
                            Ok(format!("s{service}")),
                            "step {}",
                            step
                        );
                        model.insert(number, rest(now.min(expires_at)));
                    }
                    _ => prop_assert_eq!(outcome, Err(CallError::Service(Error::NoMatch))),
                }
            }
            Op::Release { service } => {
                let outcome = h.runtime.release(&format!("s{service}"), "G");
                match held_by(&model, service) {
                    Some(i) => {
                        let Number::Held { expires_at, .. } = model[&i] else {
                            unreachable!()
                        };
                        if expires_at > now {
                            prop_assert_eq!(outcome, Ok(NUMBERS[i].to_string()), "step {}", step);
                        } else {
                            // In its grace window: released, but it had expired.
                            prop_assert_eq!(outcome, Err(CallError::Service(Error::NoMatch)));
                        }
                        model.insert(i, rest(now.min(expires_at)));
                    }
                    None => prop_assert_eq!(outcome, Err(CallError::Service(Error::NoMatch))),
                }
            }
            Op::Advance { seconds } => {
                now += seconds * 1000;
                h.clock.set(now);
            }
        }
        for state in model.values_mut() {
            if let Number::Held { expires_at, .. } = *state
                && expires_at + grace * 1000 <= now
            {
                *state = rest(expires_at);
            }
        }
        model.retain(|_, s| !matches!(s, Number::Resting { until } if *until <= now));
        let status = h.runtime.pool_status("G").unwrap();
        prop_assert_eq!(
            status.free as usize,
            NUMBERS.len() - model.len(),
            "step {}: free with {:?}",
            step,
            model
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(32),
        ..ProptestConfig::default()
    })]

    #[test]
    fn cool_off_and_grace_behave_like_the_model(
        (cooldown, grace) in prop_oneof![Just((0u64, 0u64)), Just((20, 0)), Just((20, 10)), Just((30, 30))],
        ops in prop::collection::vec(op(), 1..60),
    ) {
        run(cooldown, grace, ops)?;
    }
}
