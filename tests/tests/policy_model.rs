//! Model-based test of the group policies through the real component: random sequences
//! of create, match, release and clock advances on two groups of two numbers, `G` and
//! `SHARED`, under a random cool-off and grace window, with or without `G` falling back
//! to `SHARED`, compared step by step with a reference model.
//!
//! Invariants: no number lent while it is held or resting; a number lent by the group
//! asked, or by its fallback only when the group asked has none; "exhausted" only when
//! every number of both is held or resting, with `retry-at` the first instant one of
//! them becomes lendable; a call matches exactly while its reservation is live or in its
//! grace window, and names the group the number belongs to; a service's reservation is
//! replaced and released through the group it asked; every group's status counts exactly
//! the numbers a create could get. In sticky groups, a caller whose last number (ended
//! by a match, a release or a new create) is free or resting gets that number again.
//! Set `PROPTEST_CASES` for a longer run.

use std::collections::BTreeMap;

use proptest::prelude::*;
use request_access_host::api::{CreateRequest, Error};
use request_access_host::runtime::CallError;
use request_access_host::runtime::Refusal;
use request_access_tests::*;

const NUMBERS: [&str; 4] = ["5551000", "5551001", "5551002", "5551003"];
const SERVICES: usize = 5;
/// Callers (`_phone_number`) creates may name.
const CALLERS: usize = 3;
/// `sticky_memory` in sticky runs, seconds.
const MEMORY: u64 = 60;
/// The groups: numbers 0 and 1 are `G`'s, 2 and 3 `SHARED`'s.
const GROUPS: [&str; 2] = ["G", "SHARED"];

fn group_of(number: usize) -> usize {
    number / 2
}

#[derive(Debug, Clone)]
enum Op {
    Create {
        service: usize,
        group: usize,
        timeout: u32,
        caller: Option<usize>,
    },
    Match {
        number: usize,
    },
    Release {
        service: usize,
        group: usize,
    },
    Advance {
        seconds: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..SERVICES, 0..2usize, 5u32..40, prop::option::of(0..CALLERS))
            .prop_map(|(service, group, timeout, caller)| Op::Create { service, group, timeout, caller }),
        3 => (0..NUMBERS.len()).prop_map(|number| Op::Match { number }),
        1 => (0..SERVICES, 0..2usize).prop_map(|(service, group)| Op::Release { service, group }),
        3 => (1u64..25).prop_map(|seconds| Op::Advance { seconds }),
    ]
}

/// A number's state in the model.
#[derive(Debug, Clone, Copy)]
enum Number {
    /// Lent to a service asking `asked` until `expires_at` (ms).
    Held {
        service: usize,
        asked: usize,
        caller: Option<usize>,
        expires_at: u64,
    },
    /// Not to be lent before this instant (ms).
    Resting { until: u64 },
}

/// What a sticky group remembers of a caller's last number, as far as the model knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Memory {
    /// `number`, until `until` (ms).
    Known { number: usize, until: u64 },
    /// A reservation of the caller expired: the plugin ends it (and remembers its number)
    /// whenever a later call reclaims it, which the model does not follow.
    Unknown,
}

type Memories = BTreeMap<(usize, usize), Memory>;

/// Reservations past their grace window end at their expiry and rest from then; rested
/// numbers are free.
fn settle(
    model: &mut BTreeMap<usize, Number>,
    memories: &mut Memories,
    now: u64,
    rest_ms: u64,
    grace_ms: u64,
) {
    for (&i, state) in model.iter_mut() {
        if let Number::Held {
            expires_at, caller, ..
        } = *state
            && expires_at + grace_ms <= now
        {
            *state = Number::Resting {
                until: expires_at + rest_ms,
            };
            for memory in memories.values_mut() {
                if matches!(memory, Memory::Known { number, .. } if *number == i) {
                    *memory = Memory::Unknown;
                }
            }
            if let Some(caller) = caller {
                memories.insert((caller, group_of(i)), Memory::Unknown);
            }
        }
    }
    model.retain(|_, s| !matches!(s, Number::Resting { until } if *until <= now));
}

/// Number `i`'s reservation, made for `caller`, ended at `now` by a call: in a sticky
/// run, the caller remembers it, and no one else does.
fn ended(memories: &mut Memories, i: usize, caller: Option<usize>, now: u64, sticky: bool) {
    let Some(caller) = caller.filter(|_| sticky) else {
        return;
    };
    memories.retain(|_, m| !matches!(m, Memory::Known { number, .. } if *number == i));
    let key = (caller, group_of(i));
    if memories.get(&key) != Some(&Memory::Unknown) {
        let until = now + MEMORY * 1000;
        memories.insert(key, Memory::Known { number: i, until });
    }
}

fn run(
    cooldown: u64,
    grace: u64,
    fallback: bool,
    sticky: bool,
    ops: Vec<Op>,
) -> Result<(), TestCaseError> {
    let services: Vec<String> = (0..SERVICES).map(|s| format!("\"s{s}\"")).collect();
    let fallback_line = if fallback {
        "fallback_group = \"SHARED\"\n"
    } else {
        ""
    };
    let h = Harness::new(&format!(
        "[options]\nreuse_cooldown = {cooldown}\nmatch_grace = {grace}\n\
         sticky = {sticky}\nsticky_memory = {MEMORY}\n\
         [[resource_group]]\nname = \"G\"\n{fallback_line}numbers = [\"5551000..5551001\"]\n\
         [[resource_group]]\nname = \"SHARED\"\nnumbers = [\"5551002..5551003\"]\n\
         [registry]\nservices = [{}]\n",
        services.join(", ")
    ));
    // The groups a create asking `group` may be lent from, in order.
    let lenders = |group: usize| {
        if group == 0 && fallback {
            vec![0, 1]
        } else {
            vec![group]
        }
    };
    let mut now = T0;
    let mut model: BTreeMap<usize, Number> = BTreeMap::new();
    let mut memories = Memories::new();
    let rest = |ended_at: u64| Number::Resting {
        until: ended_at + cooldown * 1000,
    };

    for (step, op) in ops.into_iter().enumerate() {
        settle(
            &mut model,
            &mut memories,
            now,
            cooldown * 1000,
            grace * 1000,
        );
        let held_by = |model: &BTreeMap<usize, Number>, service: usize, group: usize| {
            model.iter().find_map(|(&i, s)| match s {
                Number::Held {
                    service: s, asked, ..
                } if *s == service && *asked == group => Some(i),
                _ => None,
            })
        };
        match op {
            Op::Create {
                service,
                group,
                timeout,
                caller,
            } => {
                let request = CreateRequest {
                    booking_expiration_timeout: Some(timeout),
                    phone_number: caller.map(|c| format!("+1555777000{c}")),
                    ..create(&format!("s{service}"), GROUPS[group])
                };
                let outcome = h.runtime.create_placed(&request);
                // Asking again ends the old reservation first: its number rests.
                if let Some(old) = held_by(&model, service, group) {
                    let Number::Held {
                        expires_at,
                        caller: old_caller,
                        ..
                    } = model[&old]
                    else {
                        unreachable!()
                    };
                    model.insert(old, rest(now.min(expires_at)));
                    ended(&mut memories, old, old_caller, now, sticky);
                    model.retain(|_, s| !matches!(s, Number::Resting { until } if *until <= now));
                }
                // What a sticky group must lend this caller: `Some(Some(i))` their number
                // `i`, `Some(None)` no remembered number, `None` unknown.
                let mut remembered = Some(None);
                for lender in lenders(group).into_iter().filter(|_| sticky) {
                    let Some(c) = caller else { break };
                    match memories.get(&(c, lender)) {
                        Some(Memory::Unknown) => {
                            remembered = None;
                            break;
                        }
                        Some(&Memory::Known { number, until })
                            if until > now
                                && !matches!(model.get(&number), Some(Number::Held { .. })) =>
                        {
                            remembered = Some(Some(number));
                            break;
                        }
                        _ => {}
                    }
                    if (2 * lender..2 * lender + 2).any(|i| !model.contains_key(&i)) {
                        break;
                    }
                }
                let candidates: Vec<usize> = lenders(group)
                    .into_iter()
                    .flat_map(|g| [2 * g, 2 * g + 1])
                    .collect();
                let free_in = |g: usize| (2 * g..2 * g + 2).any(|i| !model.contains_key(&i));
                match outcome {
                    Ok(placed) => {
                        let info = placed.access;
                        let i = NUMBERS
                            .iter()
                            .position(|n| *n == info.access_number)
                            .unwrap();
                        let resting_allowed = remembered.is_none() || remembered == Some(Some(i));
                        prop_assert!(
                            match model.get(&i) {
                                None => true,
                                Some(Number::Resting { .. }) => resting_allowed,
                                Some(Number::Held { .. }) => false,
                            },
                            "step {}: {} lent while {:?}",
                            step,
                            info.access_number,
                            model.get(&i)
                        );
                        if let Some(Some(mine)) = remembered {
                            prop_assert_eq!(i, mine, "step {}: not the caller's number", step);
                        }
                        prop_assert_eq!(&placed.resource_group, GROUPS[group_of(i)]);
                        prop_assert!(candidates.contains(&i), "step {}: lent {}", step, i);
                        prop_assert!(
                            group_of(i) == group || !free_in(group),
                            "step {}: fell back while {} had a free number",
                            step,
                            GROUPS[group]
                        );
                        model.insert(
                            i,
                            Number::Held {
                                service,
                                asked: group,
                                caller,
                                expires_at: info.expires_at,
                            },
                        );
                    }
                    Err(Refusal {
                        error: CallError::Service(Error::NoAccessNumberAvailable(name)),
                        retry_at,
                    }) => {
                        prop_assert_eq!(name, GROUPS[group]);
                        prop_assert!(
                            !matches!(remembered, Some(Some(_))),
                            "step {}: the caller's number {:?} was free",
                            step,
                            remembered
                        );
                        let lendable_at = candidates.iter().map(|i| match model.get(i) {
                            Some(Number::Held { expires_at, .. }) => expires_at + cooldown * 1000,
                            Some(Number::Resting { until }) => *until,
                            None => now,
                        });
                        prop_assert_eq!(
                            retry_at,
                            lendable_at.min().map(|at| at.max(now)),
                            "step {}: retry with {:?}",
                            step,
                            model
                        );
                        prop_assert!(
                            candidates.iter().all(|i| model.contains_key(i)),
                            "step {}: exhausted with {:?}",
                            step,
                            model
                        );
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
                        caller,
                        ..
                    }) => {
                        prop_assert_eq!(
                            outcome.map(|m| (m.service_id, m.resource_group)),
                            Ok((format!("s{service}"), GROUPS[group_of(number)].to_string())),
                            "step {}",
                            step
                        );
                        model.insert(number, rest(now.min(expires_at)));
                        ended(&mut memories, number, caller, now, sticky);
                    }
                    _ => prop_assert_eq!(outcome, Err(CallError::Service(Error::NoMatch))),
                }
            }
            Op::Release { service, group } => {
                let outcome = h.runtime.release(&format!("s{service}"), GROUPS[group]);
                match held_by(&model, service, group) {
                    Some(i) => {
                        let Number::Held {
                            expires_at, caller, ..
                        } = model[&i]
                        else {
                            unreachable!()
                        };
                        if expires_at > now {
                            prop_assert_eq!(outcome, Ok(NUMBERS[i].to_string()), "step {}", step);
                        } else {
                            // In its grace window: released, but it had expired.
                            prop_assert_eq!(outcome, Err(CallError::Service(Error::NoMatch)));
                        }
                        model.insert(i, rest(now.min(expires_at)));
                        ended(&mut memories, i, caller, now, sticky);
                    }
                    None => prop_assert_eq!(outcome, Err(CallError::Service(Error::NoMatch))),
                }
            }
            Op::Advance { seconds } => {
                now += seconds * 1000;
                h.clock.set(now);
            }
        }
        settle(
            &mut model,
            &mut memories,
            now,
            cooldown * 1000,
            grace * 1000,
        );
        for (g, name) in GROUPS.iter().enumerate() {
            let status = h.runtime.pool_status(name).unwrap();
            let taken = model.keys().filter(|&&i| group_of(i) == g).count();
            prop_assert_eq!(
                status.free as usize,
                2 - taken,
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
    fn cool_off_and_grace_behave_like_the_model(
        (cooldown, grace) in prop_oneof![Just((0u64, 0u64)), Just((20, 0)), Just((20, 10)), Just((30, 30))],
        fallback in any::<bool>(),
        sticky in any::<bool>(),
        ops in prop::collection::vec(op(), 1..60),
    ) {
        run(cooldown, grace, fallback, sticky, ops)?;
    }
}
