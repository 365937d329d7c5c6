//! Checks on every value the guest returns. The host does not trust the plugin: an
//! answer that breaks the contract becomes a plugin fault, never a caller's result.
//!
//! These protect users whatever the plugin's policy (the number belongs to the group,
//! a code has the configured length, the expiry lies ahead within the longest booking,
//! the counts add up); how the plugin picks a timeout or a number is its own business.

use std::ops::RangeInclusive;

use request_access_guest::api::{AccessInfo, CreateRequest, MatchRequest, Matched, PoolStatus};
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

/// A `create` answer for `request`, from a call made while the clock read `called`.
pub fn access_info(
    services: &Services,
    request: &CreateRequest,
    info: &AccessInfo,
    called: RangeInclusive<u64>,
) -> Result<(), String> {
    pool_has(services, &request.resource_group, &info.access_number)?;
    let length = usize::from(services.config.options.access_code_length);
    match (&info.access_code, request.provide_code) {
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

/// A `match-access` answer for `request`.
pub fn matched(services: &Services, request: &MatchRequest, m: &Matched) -> Result<(), String> {
    validate::service_id(&m.service_id).map_err(|e| format!("answered a bad service id: {e}"))?;
    // The dialled number may be formatted unlike the configured one: compare by pool index.
    let holds_number = services
        .config
        .group(&m.resource_group)
        .and_then(|g| g.pool.index_of(&request.access_number))
        .is_some();
    if !holds_number {
        return Err(format!(
            "matched {:?} to group {:?}, which does not hold it",
            request.access_number, m.resource_group
        ));
    }
    Ok(())
}

/// A `release` answer for `group`.
pub fn released(services: &Services, group: &str, number: &str) -> Result<(), String> {
    pool_has(services, group, number)
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
