//! The answers' JSON, with the original wire's keys: the one shape of each answer,
//! printed alike by the HTTP service and the command line.

use std::time::{Duration, UNIX_EPOCH};

use request_access_guest::api::{Event, EventKind, Extended, Placed, PoolStatus};
use serde_json::{Map, Value, json};

/// `ms` since the epoch as RFC 3339 with milliseconds, UTC.
pub fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// The share of a pool held by live reservations, 0..=1 (0 for an empty pool).
pub fn utilisation(size: u32, live: u32) -> f64 {
    f64::from(live) / f64::from(size.max(1))
}

/// A group's occupancy: `size`, `live`, `free`, `utilisation` (the original's
/// `_pool_health`).
pub fn pool_health(status: &PoolStatus) -> Value {
    json!({
        "size": status.size,
        "live": status.live,
        "free": status.free,
        "utilisation": utilisation(status.size, status.live),
    })
}

/// Every group's occupancy, each with its `name`: `{"groups": [...]}`.
pub fn groups<'a>(statuses: impl IntoIterator<Item = (&'a str, PoolStatus)>) -> Value {
    let groups: Vec<Value> = statuses
        .into_iter()
        .map(|(name, status)| {
            let mut group = Map::new();
            group.insert("name".into(), json!(name));
            if let Value::Object(health) = pool_health(&status) {
                group.extend(health);
            }
            Value::Object(group)
        })
        .collect();
    json!({ "groups": groups })
}

/// Access information: `_id`, `_resource_group` (the group that lent the number: the
/// requested one or its fallback group), `_access_number`, `_access_code` (only when one
/// was issued), `_expiration_time`, `_expires_at`, and `_pool_health` when asked for.
pub fn access_info(service_id: &str, placed: &Placed, health: Option<&PoolStatus>) -> Value {
    let info = &placed.access;
    let mut out = Map::new();
    out.insert("_id".into(), json!(service_id));
    out.insert("_resource_group".into(), json!(placed.resource_group));
    out.insert("_access_number".into(), json!(info.access_number));
    if let Some(code) = &info.access_code {
        out.insert("_access_code".into(), json!(code));
    }
    out.insert("_expiration_time".into(), json!(info.expiration_time));
    out.insert("_expires_at".into(), json!(rfc3339(info.expires_at)));
    if let Some(status) = health {
        out.insert("_pool_health".into(), pool_health(status));
    }
    Value::Object(out)
}

/// A matched call: `{"_id"}`, or `{"matches": [{"_id"}]}` when several were asked for
/// (a number belongs to one reservation, so there is at most one).
pub fn matched(service_id: &str, multiple: bool) -> Value {
    if multiple {
        json!({ "matches": [{ "_id": service_id }] })
    } else {
        json!({ "_id": service_id })
    }
}

/// A number given back early.
pub fn released(service_id: &str, resource_group: &str, access_number: &str) -> Value {
    json!({
        "_id": service_id,
        "_resource_group": resource_group,
        "_access_number": access_number,
    })
}

/// A reservation extended: `_id`, `_resource_group` (as asked), `_access_number`
/// (unchanged), `_expiration_time` (seconds from now), `_expires_at`, and
/// `_lifetime_capped` (the group's maximum lifetime cut the extension short).
pub fn extended(service_id: &str, resource_group: &str, e: &Extended) -> Value {
    json!({
        "_id": service_id,
        "_resource_group": resource_group,
        "_access_number": e.access_number,
        "_expiration_time": e.expiration_time,
        "_expires_at": rfc3339(e.expires_at),
        "_lifetime_capped": e.capped,
    })
}

/// The `type` of an event: `reservation.*` for what a service's calls did, `call.*` for
/// what an incoming call met.
pub fn event_type(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Created => "reservation.created",
        EventKind::Extended => "reservation.extended",
        EventKind::Released => "reservation.released",
        EventKind::Replaced => "reservation.replaced",
        EventKind::Expired => "reservation.expired",
        EventKind::Matched => "call.matched",
        EventKind::WrongCode => "call.wrong_code",
        EventKind::Revoked => "call.revoked",
        EventKind::UnreservedCall => "call.unreserved",
    }
}

/// One event, as webhooks, the event stream and the interaction log carry it: its `id`
/// (unique, ordered by time), `type`, `at`, and the reservation's `_resource_group`,
/// `_access_number`, `_id`, `caller` (digits) and `_expires_at`, each `null` when it does
/// not apply. Never an access code.
pub fn event(id: &str, at_ms: u64, e: &Event) -> Value {
    json!({
        "id": id,
        "type": event_type(e.kind),
        "at": rfc3339(at_ms),
        "_resource_group": (!e.resource_group.is_empty()).then_some(&e.resource_group),
        "_access_number": e.access_number,
        "_id": e.service_id,
        "caller": e.caller,
        "_expires_at": e.expires_at.map(rfc3339),
    })
}

/// A registration as stored: `_expires_at` is `null` for one without a TTL.
pub fn registered(service_id: &str, expires_at: Option<u64>) -> Value {
    json!({ "_id": service_id, "_expires_at": expires_at.map(rfc3339) })
}

/// A registration removed.
pub fn deregistered(service_id: &str) -> Value {
    json!({ "_id": service_id, "_deregistered": true })
}

/// One active service: from the configuration (`static`) or registered until
/// `_expires_at`.
pub fn service_entry(service_id: &str, static_entry: bool, expires_at: Option<u64>) -> Value {
    json!({
        "_id": service_id,
        "static": static_entry,
        "_expires_at": expires_at.map(rfc3339),
    })
}

/// Every active service: `{"services": [...]}`.
pub fn services(entries: impl IntoIterator<Item = Value>) -> Value {
    json!({ "services": entries.into_iter().collect::<Vec<_>>() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use request_access_guest::api::AccessInfo;

    #[test]
    fn the_code_appears_only_when_issued() {
        let placed = Placed {
            access: AccessInfo {
                access_number: "+18005550100".into(),
                access_code: None,
                expiration_time: 30,
                expires_at: 1_767_225_630_000,
            },
            resource_group: "DNIS".into(),
        };
        let out = access_info("s", &placed, None);
        assert_eq!(
            out.to_string(),
            r#"{"_id":"s","_resource_group":"DNIS","_access_number":"+18005550100","_expiration_time":30,"_expires_at":"2026-01-01T00:00:30.000Z"}"#
        );
    }

    #[test]
    fn groups_carry_their_utilisation() {
        let status = PoolStatus {
            size: 10,
            live: 1,
            free: 9,
        };
        let out = groups([("DNIS", status)]);
        assert_eq!(
            out.to_string(),
            r#"{"groups":[{"name":"DNIS","size":10,"live":1,"free":9,"utilisation":0.1}]}"#
        );
        assert_eq!(utilisation(0, 0), 0.0);
    }
}
