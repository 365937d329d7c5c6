//! Checks on every value the guest returns. The host does not trust the plugin: an
//! answer that breaks the contract becomes a plugin fault, never a caller's result.

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
    if !validate::TIMEOUT_RANGE.contains(&info.expiration_time)
        || request
            .booking_expiration_timeout
            .is_some_and(|t| t != info.expiration_time)
    {
        return Err(format!(
            "answered an expiration time of {} s for a request of {:?}",
            info.expiration_time, request.booking_expiration_timeout
        ));
    }
    let lasts = u64::from(info.expiration_time) * 1000;
    let earliest = called.start().saturating_add(lasts);
    let latest = called.end().saturating_add(lasts);
    if !(earliest..=latest).contains(&info.expires_at) {
        return Err(format!(
            "answered an expiry of {} ms, outside {earliest}..={latest}",
            info.expires_at
        ));
    }
    Ok(())
}

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

pub fn released(services: &Services, group: &str, number: &str) -> Result<(), String> {
    pool_has(services, group, number)
}

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
