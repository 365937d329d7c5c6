//! Checks on every value the guest returns. The host does not trust the plugin: an
//! answer that breaks the contract becomes a plugin fault, never a caller's result.
//!
//! These protect users whatever the plugin's policy (a number lent belongs to the
//! group, a code has the configured length, the expiry lies ahead within the longest
//! booking, the counts add up); how the plugin picks a timeout or a number is its own
//! business. Answers about an existing reservation (match, release) are checked for
//! their form only: the reservation may predate the current configuration.

use std::ops::RangeInclusive;

use request_access_guest::api::{
    AccessInfo, CreateRequest, Extended, Instant, Matched, Placed, PoolStatus,
};
use request_access_guest::validate;

use crate::services::Services;

fn pool_has(services: &Services, group: &str, number: &str) -> Result<(), String> {
    let pool = &services
        .config
        .group(group)
        .ok_or_else(|| format!("answered for unknown group {group:?}"))?
        .pool;
    match pool.index_of(number) {
        Some(i) if pool.number_at(i).as_deref() == Some(number) => Ok(()),
        _ => Err(format!(
            "answered {number:?}, not a number of group {group:?}"
        )),
    }
}

/// A `create` answer for `request`, from a call made while the clock read `called`:
/// lent by the requested group or by its configured fallback group.
pub fn placed(
    services: &Services,
    request: &CreateRequest,
    placed: &Placed,
    called: RangeInclusive<u64>,
) -> Result<(), String> {
    let lender = &placed.resource_group;
    let fallback = services
        .config
        .group(&request.resource_group)
        .and_then(|g| g.policy.fallback_group.as_ref());
    if *lender != request.resource_group && Some(lender) != fallback {
        return Err(format!(
            "answered a number of group {lender:?} for a request to {:?}, which does not \
             fall back to it",
            request.resource_group
        ));
    }
    // A number shared by code tells its reservations apart by code unless by caller.
    let shared = services
        .config
        .group(lender)
        .is_some_and(|g| g.policy.shared());
    let code_expected = request.provide_code || (shared && request.phone_number.is_none());
    access_info(services, lender, &placed.access, code_expected, called)
}

/// When an exhausted `group` may lend again, as `create` answered it at `called`: no
/// earlier than the call, and no later than the longest booking plus the longest rest of
/// the group and its fallback. An implausible instant is dropped (the caller gets the
/// default advice) rather than made a fault: it is advice, and the refusal stands.
pub fn retry_at(services: &Services, group: &str, at: Instant, called: u64) -> Option<Instant> {
    let config = services.config.group(group)?;
    let fallback = config
        .policy
        .fallback_group
        .as_deref()
        .and_then(|f| services.config.group(f));
    let rest = [Some(config), fallback]
        .into_iter()
        .flatten()
        .map(|g| g.policy.reuse_cooldown.max(g.policy.match_grace))
        .max()
        .unwrap_or(0);
    let longest = u64::from(*validate::TIMEOUT_RANGE.end()) + u64::from(rest);
    (called..=called.saturating_add(longest * 1000))
        .contains(&at)
        .then_some(at)
}

/// Access information lent by `group`.
fn access_info(
    services: &Services,
    group: &str,
    info: &AccessInfo,
    code_expected: bool,
    called: RangeInclusive<u64>,
) -> Result<(), String> {
    pool_has(services, group, &info.access_number)?;
    let length = usize::from(services.config.options.access_code_length);
    match (&info.access_code, code_expected) {
        (None, false) => {}
        (Some(code), true) if code.len() == length && code.bytes().all(|b| b.is_ascii_digit()) => {}
        (Some(_), true) => {
            return Err(format!(
                "answered an access code that is not {length} digits"
            ));
        }
        (Some(_), false) => return Err("answered an access code nobody asked for".into()),
        (None, true) => return Err("answered no access code though one was asked for".into()),
    }
    if !validate::TIMEOUT_RANGE.contains(&info.expiration_time) {
        return Err(format!(
            "answered an expiration time of {} s, outside {:?}",
            info.expiration_time,
            validate::TIMEOUT_RANGE
        ));
    }
    // In the future, and no further than the longest booking from the call's end.
    let longest = u64::from(*validate::TIMEOUT_RANGE.end()) * 1000;
    let (earliest, latest) = (called.start() + 1, called.end().saturating_add(longest));
    if !(earliest..=latest).contains(&info.expires_at) {
        return Err(format!(
            "answered an expiry of {} ms, outside {earliest}..={latest}",
            info.expires_at
        ));
    }
    Ok(())
}

/// A `match-access` answer. Not compared with the current configuration: a
/// reservation outlives changes to its group (a number removed or moved, a group
/// retired) and matches with the number and group it was created with, and the plugin's
/// commit has landed by the time the answer is checked.
pub fn matched(m: &Matched) -> Result<(), String> {
    validate::service_id(&m.service_id).map_err(|e| format!("answered a bad service id: {e}"))?;
    validate::resource_group(&m.resource_group)
        .map_err(|e| format!("answered a bad group name: {e}"))
}

/// A `release` answer: the number as the reservation held it, which the group's
/// current pool may no longer hold (see [`matched`]).
pub fn released(number: &str) -> Result<(), String> {
    validate::phone_number("number", number)
        .map(drop)
        .map_err(|e| format!("answered a bad number {number:?}: {e}"))
}

/// An `extend` answer, from a call made while the clock read `called`: a number, and an
/// expiry ahead within the longest booking from the call's end that the expiration time
/// agrees with. The number is checked for its form only (see [`matched`]).
pub fn extended(e: &Extended, called: RangeInclusive<u64>) -> Result<(), String> {
    released(&e.access_number)?;
    let longest = u64::from(*validate::TIMEOUT_RANGE.end()) * 1000;
    let (earliest, latest) = (called.start() + 1, called.end().saturating_add(longest));
    if !(earliest..=latest).contains(&e.expires_at) {
        return Err(format!(
            "answered an expiry of {} ms, outside {earliest}..={latest}",
            e.expires_at
        ));
    }
    // Whole seconds from some instant of the call, rounded up.
    let seconds = |from: u64| e.expires_at.saturating_sub(from).div_ceil(1000);
    let agreeing = seconds(*called.end())..=seconds(*called.start());
    if !agreeing.contains(&u64::from(e.expiration_time)) {
        return Err(format!(
            "answered an expiration time of {} s for an expiry {agreeing:?} s ahead",
            e.expiration_time
        ));
    }
    Ok(())
}

/// A `pool-status` answer for `group`.
pub fn pool_status(services: &Services, group: &str, s: &PoolStatus) -> Result<(), String> {
    let size = services
        .config
        .group(group)
        .map(|g| g.pool.size())
        .ok_or_else(|| format!("answered a status for unknown group {group:?}"))?;
    if s.size != size || u64::from(s.live) + u64::from(s.free) != u64::from(size) {
        return Err(format!(
            "answered size {} live {} free {} for a pool of {size}",
            s.size, s.live, s.free
        ));
    }
    Ok(())
}
