//! The events a call tells the host with its commit (`reservation-state.commit-recorded`):
//! what happened to which reservation, for webhooks, event streams and the interaction
//! log. One constructor per shape; never an access code.

use crate::api::{Event, EventKind};
use crate::records::{Reservation, SeatState, SharedNumber};

/// `kind` happened to `res`; `caller`: who called, if a call did it.
pub fn of_reservation(kind: EventKind, res: &Reservation, caller: Option<&str>) -> Event {
    Event {
        kind,
        resource_group: res.group.clone(),
        access_number: res.number.clone(),
        service_id: Some(res.service_id.clone()),
        caller: caller
            .map(String::from)
            .or_else(|| res.caller_digits.clone()),
        expires_at: Some(res.expires_at),
    }
}

/// `kind` happened to seat `index` of the shared number `record`.
pub fn of_seat(
    kind: EventKind,
    record: &SharedNumber,
    index: usize,
    caller: Option<&str>,
) -> Event {
    let seat = &record.seats[index];
    let (service_id, expires_at) = match &seat.state {
        SeatState::Held {
            service_id,
            expires_at,
            ..
        } => (Some(service_id.clone()), Some(*expires_at)),
        SeatState::Resting { .. } => (None, None),
    };
    Event {
        kind,
        resource_group: record.group.clone(),
        access_number: record.number.clone(),
        service_id,
        caller: caller
            .map(String::from)
            .or_else(|| seat.caller_digits.clone()),
        expires_at,
    }
}

/// `kind` happened to the shared number `record` as a whole (a wrong code, a shut
/// number), from a call by `caller`.
pub fn of_number(kind: EventKind, record: &SharedNumber, caller: Option<&str>) -> Event {
    Event {
        kind,
        resource_group: record.group.clone(),
        access_number: record.number.clone(),
        service_id: None,
        caller: caller.map(String::from),
        expires_at: None,
    }
}

/// A call to `number` found no live reservation: its caller is misrouted. The plugin
/// does not know the number's group; the host fills it in.
pub fn unreserved(number: &str, caller: Option<&str>) -> Event {
    Event {
        kind: EventKind::UnreservedCall,
        resource_group: String::new(),
        access_number: number.to_string(),
        service_id: None,
        caller: caller.map(String::from),
        expires_at: None,
    }
}
