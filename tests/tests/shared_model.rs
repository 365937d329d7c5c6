//! Model-based test of numbers shared by code through the real component: random
//! sequences of create, match (by code, by caller, with a wrong code), release and clock
//! advances on `SHARED`, two numbers carrying two or three reservations each, and on `F`,
//! one number lent whole that falls back to `SHARED`, under a random cool-off and grace
//! window, compared step by step with a reference model of every seat.
//!
//! Invariants: a number never carries more than N reservations at once, counting those
//! resting after they ended; a caller appears once on a number; codes are unique among a
//! number's seats, issued whenever the create named no caller; "exhausted" only when no
//! number has room (for that caller), with `retry-at` the first instant a seat frees when
//! no caller was named; a call matches exactly the live (or in-grace) reservation with its
//! code, or made for its caller; every group's status counts exactly the numbers with room.
//! Set `PROPTEST_CASES` for a longer run.

use std::collections::BTreeMap;

use proptest::prelude::*;
use request_access_host::api::{CreateRequest, Error, MatchRequest};
use request_access_host::runtime::{CallError, Refusal};
use request_access_tests::*;

/// `F`'s number, then `SHARED`'s two.
const NUMBERS: [&str; 3] = ["5551000", "5551001", "5551002"];
const GROUPS: [&str; 2] = ["F", "SHARED"];
const SERVICES: usize = 6;
const CALLERS: usize = 3;

fn group_of(number: usize) -> usize {
    usize::from(number > 0)
}

#[derive(Debug, Clone)]
enum Op {
    Create {
        service: usize,
        group: usize,
        timeout: u32,
        caller: Option<usize>,
        provide_code: bool,
    },
    /// A call to `number` with the code of the `nth` seat ever lent on it (wrapping), or a
    /// wrong code, or none, from `caller` or a hidden number.
    Match {
        number: usize,
        code: CodeTyped,
        caller: Option<usize>,
    },
    Release {
        service: usize,
        group: usize,
    },
    Advance {
        seconds: u64,
    },
}

#[derive(Debug, Clone, Copy)]
enum CodeTyped {
    Issued(usize),
    Wrong,
    None,
}

fn op() -> impl Strategy<Value = Op> {
    let code = prop_oneof![
        3 => (0..8usize).prop_map(CodeTyped::Issued),
        1 => Just(CodeTyped::Wrong),
        1 => Just(CodeTyped::None),
    ];
    prop_oneof![
        4 => (0..SERVICES, 0..2usize, 5u32..40, prop::option::of(0..CALLERS), any::<bool>())
            .prop_map(|(service, group, timeout, caller, provide_code)| Op::Create {
                service, group, timeout, caller, provide_code,
            }),
        4 => (0..NUMBERS.len(), code, prop::option::of(0..CALLERS))
            .prop_map(|(number, code, caller)| Op::Match { number, code, caller }),
        1 => (0..SERVICES, 0..2usize).prop_map(|(service, group)| Op::Release { service, group }),
        3 => (1u64..25).prop_map(|seconds| Op::Advance { seconds }),
    ]
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    Held {
        service: usize,
        asked: usize,
        expires_at: u64,
    },
    Resting {
        until: u64,
    },
}

#[derive(Debug, Clone)]
struct Seat {
    code: Option<String>,
    caller: Option<usize>,
    state: State,
}

/// Every number's seats (`F`'s number has one at most).
type Model = BTreeMap<usize, Vec<Seat>>;

struct Rules {
    seats: usize,
    rest_ms: u64,
    grace_ms: u64,
}

impl Rules {
    fn capacity(&self, number: usize) -> usize {
        if group_of(number) == 0 { 1 } else { self.seats }
    }

    /// Seats past their grace window rest from their expiry; rested seats are free.
    fn settle(&self, model: &mut Model, now: u64) {
        for seats in model.values_mut() {
            for seat in seats.iter_mut() {
                if let State::Held { expires_at, .. } = seat.state
                    && expires_at + self.grace_ms <= now
                {
                    seat.state = State::Resting {
                        until: expires_at + self.rest_ms,
                    };
                }
            }
            seats.retain(|s| !matches!(s.state, State::Resting { until } if until <= now));
        }
    }

    /// Whether `number` can seat `caller` now.
    fn room(&self, model: &Model, number: usize, caller: Option<usize>) -> bool {
        let seats = &model[&number];
        seats.len() < self.capacity(number)
            && (group_of(number) == 0
                || caller.is_none()
                || seats.iter().all(|s| s.caller != caller))
    }

    /// When `number`'s first seat frees, if it is full.
    fn frees_at(&self, model: &Model, number: usize, now: u64) -> u64 {
        let seats = &model[&number];
        if seats.len() < self.capacity(number) {
            return now;
        }
        seats
            .iter()
            .map(|s| match s.state {
                State::Held { expires_at, .. } => expires_at + self.rest_ms.max(self.grace_ms),
                State::Resting { until } => until,
            })
            .min()
            .unwrap_or(now)
    }

    /// End `service`'s reservation asked in `group` at `now`, if it holds one: answers the
    /// number and its expiry.
    fn end_held(
        &self,
        model: &mut Model,
        service: usize,
        group: usize,
        now: u64,
    ) -> Option<(usize, u64)> {
        for (&number, seats) in model.iter_mut() {
            for seat in seats.iter_mut() {
                if let State::Held {
                    service: s,
                    asked,
                    expires_at,
                } = seat.state
                    && s == service
                    && asked == group
                {
                    seat.state = State::Resting {
                        until: now.min(expires_at) + self.rest_ms,
                    };
                    return Some((number, expires_at));
                }
            }
        }
        None
    }
}

fn run(seats: usize, cooldown: u64, grace: u64, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let services: Vec<String> = (0..SERVICES).map(|s| format!("\"s{s}\"")).collect();
    let h = Harness::new(&format!(
        "[options]\nreuse_cooldown = {cooldown}\nmatch_grace = {grace}\nmax_code_attempts = 100\n\
         [[resource_group]]\nname = \"F\"\nfallback_group = \"SHARED\"\nnumbers = [\"5551000\"]\n\
         [[resource_group]]\nname = \"SHARED\"\nreservations_per_number = {seats}\n\
         wrong_code_limit = 1000\nnumbers = [\"5551001..5551002\"]\n\
         [registry]\nservices = [{}]\n",
        services.join(", ")
    ));
    let rules = Rules {
        seats,
        rest_ms: cooldown * 1000,
        grace_ms: grace * 1000,
    };
    let mut now = T0;
    let mut model: Model = (0..NUMBERS.len()).map(|i| (i, Vec::new())).collect();
    // Every code issued on each number, in order.
    let mut issued: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    let caller_number = |c: usize| format!("+1555777000{c}");

    for (step, op) in ops.into_iter().enumerate() {
        rules.settle(&mut model, now);
        match op {
            Op::Create {
                service,
                group,
                timeout,
                caller,
                provide_code,
            } => {
                let request = CreateRequest {
                    booking_expiration_timeout: Some(timeout),
                    phone_number: caller.map(caller_number),
                    provide_code,
                    ..create(&format!("s{service}"), GROUPS[group])
                };
                let outcome = h.runtime.create_placed(&request);
                // Asking again ends the old reservation first.
                rules.end_held(&mut model, service, group, now);
                rules.settle(&mut model, now);
                let candidates: Vec<usize> = match group {
                    0 => vec![0, 1, 2],
                    _ => vec![1, 2],
                };
                let own_room = |model: &Model| match group {
                    0 => rules.room(model, 0, caller),
                    _ => rules.room(model, 1, caller) || rules.room(model, 2, caller),
                };
                match outcome {
                    Ok(placed) => {
                        let info = placed.access;
                        let i = NUMBERS
                            .iter()
                            .position(|n| *n == info.access_number)
                            .unwrap();
                        prop_assert!(candidates.contains(&i), "step {}: lent {}", step, i);
                        prop_assert!(
                            rules.room(&model, i, caller),
                            "step {}: lent {} for {:?} with {:?}",
                            step,
                            i,
                            caller,
                            model[&i]
                        );
                        prop_assert!(
                            group_of(i) == group || !own_room(&model),
                            "step {}: fell back while F was free",
                            step
                        );
                        prop_assert_eq!(&placed.resource_group, GROUPS[group_of(i)]);
                        let shared = group_of(i) == 1;
                        let code_expected = provide_code || (shared && caller.is_none());
                        prop_assert_eq!(info.access_code.is_some(), code_expected, "step {}", step);
                        if let Some(code) = &info.access_code {
                            prop_assert!(
                                model[&i].iter().all(|s| s.code.as_ref() != Some(code)),
                                "step {}: code {} twice on {}",
                                step,
                                code,
                                i
                            );
                            issued.entry(i).or_default().push(code.clone());
                        }
                        model.get_mut(&i).unwrap().push(Seat {
                            code: info.access_code.clone(),
                            caller,
                            state: State::Held {
                                service,
                                asked: group,
                                expires_at: info.expires_at,
                            },
                        });
                    }
                    Err(Refusal {
                        error: CallError::Service(Error::NoAccessNumberAvailable(name)),
                        retry_at,
                    }) => {
                        prop_assert_eq!(name, GROUPS[group]);
                        prop_assert!(
                            candidates.iter().all(|&i| !rules.room(&model, i, caller)),
                            "step {}: exhausted with {:?}",
                            step,
                            model
                        );
                        if caller.is_none() {
                            let first = candidates.iter().map(|&i| rules.frees_at(&model, i, now));
                            prop_assert_eq!(retry_at, first.min(), "step {}: {:?}", step, model);
                        }
                    }
                    Err(other) => prop_assert!(false, "step {}: create failed: {}", step, other),
                }
            }
            Op::Match {
                number,
                code,
                caller,
            } => {
                let typed = match code {
                    CodeTyped::Issued(nth) => issued
                        .get(&number)
                        .map(|codes| codes[nth % codes.len()].clone()),
                    // Codes are 6 digits: this one was never issued.
                    CodeTyped::Wrong => Some("12345".into()),
                    CodeTyped::None => None,
                };
                let request = MatchRequest {
                    access_code: typed.clone(),
                    phone_number: caller.map(caller_number),
                    ..match_number(NUMBERS[number])
                };
                let outcome = h.runtime.match_access(&request);
                let held = |s: &Seat| matches!(s.state, State::Held { .. });
                let expected = if group_of(number) == 0 {
                    // Lent whole: the number alone, the code if it has one, and the caller
                    // if both named one.
                    model[&number].iter().position(|s| {
                        held(s)
                            && (s.code.is_none() || s.code == typed)
                            && (s.caller.is_none() || caller.is_none() || s.caller == caller)
                    })
                } else {
                    match &typed {
                        Some(_) => model[&number].iter().position(|s| {
                            held(s)
                                && s.code == typed
                                && (s.caller.is_none() || caller.is_none() || s.caller == caller)
                        }),
                        None => model[&number]
                            .iter()
                            .position(|s| held(s) && caller.is_some() && s.caller == caller),
                    }
                };
                match expected {
                    Some(seat) => {
                        let State::Held {
                            service,
                            expires_at,
                            ..
                        } = model[&number][seat].state
                        else {
                            unreachable!()
                        };
                        prop_assert_eq!(
                            outcome.map(|m| (m.service_id, m.resource_group)),
                            Ok((format!("s{service}"), GROUPS[group_of(number)].to_string())),
                            "step {}",
                            step
                        );
                        model.get_mut(&number).unwrap()[seat].state = State::Resting {
                            until: now.min(expires_at) + rules.rest_ms,
                        };
                    }
                    None => {
                        // A wrong code counts (against the reservation on a number lent
                        // whole, against the number when shared); the limits configured
                        // above are never reached in 60 steps.
                        prop_assert_eq!(
                            outcome,
                            Err(CallError::Service(Error::NoMatch)),
                            "step {}: {:?}",
                            step,
                            model[&number]
                        );
                    }
                }
            }
            Op::Release { service, group } => {
                let outcome = h.runtime.release(&format!("s{service}"), GROUPS[group]);
                match rules.end_held(&mut model, service, group, now) {
                    Some((i, expires_at)) if expires_at > now => {
                        prop_assert_eq!(outcome, Ok(NUMBERS[i].to_string()), "step {}", step)
                    }
                    // In its grace window: released, but it had expired.
                    _ => prop_assert_eq!(outcome, Err(CallError::Service(Error::NoMatch))),
                }
            }
            Op::Advance { seconds } => {
                now += seconds * 1000;
                h.clock.set(now);
            }
        }
        rules.settle(&mut model, now);
        for (g, name) in GROUPS.iter().enumerate() {
            let status = h.runtime.pool_status(name).unwrap();
            let with_room = (0..NUMBERS.len())
                .filter(|&i| group_of(i) == g && rules.room(&model, i, None))
                .count();
            prop_assert_eq!(
                status.free as usize,
                with_room,
                "step {}: {} free with {:?}",
                step,
                name,
                model
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(32),
        ..ProptestConfig::default()
    })]

    #[test]
    fn shared_numbers_behave_like_the_model(
        seats in 2usize..=3,
        (cooldown, grace) in prop_oneof![Just((0u64, 0u64)), Just((20, 0)), Just((20, 10)), Just((30, 30))],
        ops in prop::collection::vec(op(), 1..60),
    ) {
        run(seats, cooldown, grace, ops)?;
    }
}
