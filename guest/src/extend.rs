//! `lease.extend`: a page's heartbeat keeps its reservation, within the group's lease
//! terms ([`LeaseTerms`]).

use crate::api::{Error, EventKind, ExtendRequest, Extended, Imports};
use crate::events;
use crate::keys;
use crate::lookup::{self, MAX_ATTEMPTS, contended, group_of, read_holding};
use crate::policy::LeaseTerms;
use crate::records::Holding;
use crate::txn::Txn;
use crate::validate;

/// `lease.extend`: move the expiry of the service's live reservation in the group.
pub fn extend<I: Imports>(imports: &mut I, request: &ExtendRequest) -> Result<Extended, Error> {
    validate::service_id(&request.service_id)?;
    validate::booking_timeout(request.booking_expiration_timeout)?;
    let group = group_of(imports, &request.resource_group)?;
    let global = imports.options().booking_expiration_timeout;
    let timeout = lookup::timeout(request.booking_expiration_timeout, &group, global)?;
    let (service_id, group_name) = (request.service_id.as_str(), group.name.as_str());
    for _ in 0..MAX_ATTEMPTS {
        let now = imports.now();
        let mut txn = Txn::new(imports);
        let holder = keys::holder(group_name, service_id);
        let Some(held) = lookup::held(&mut txn, &holder)? else {
            return Err(Error::NoMatch);
        };
        // One host call for the number's key and the ring that may have parked it.
        txn.prefetch(&[keys::reservation(&held), keys::parked(&held)])?;
        let (number, expires_at, capped) = match read_holding(&mut txn, &held)? {
            Some(Holding::One(mut res))
                if res.held_in(service_id, group_name) && res.expires_at > now =>
            {
                let terms = LeaseTerms::of_group(txn.imports(), &res.group);
                let (to, capped) = terms.extend(&mut txn, &mut res, timeout, now)?;
                let event = events::of_reservation(EventKind::Extended, &res, None);
                txn.record(event);
                (res.number, to, capped)
            }
            Some(Holding::Shared(mut record)) => {
                let Some((index, expires_at)) = record
                    .seat_of(service_id, group_name)
                    .filter(|&(_, at)| at > now)
                else {
                    return Err(Error::NoMatch);
                };
                let terms = LeaseTerms::of_group(txn.imports(), &record.group);
                let seat = (index, expires_at);
                let (to, capped) = terms.extend_seat(&mut txn, &mut record, seat, timeout, now)?;
                let event = events::of_seat(EventKind::Extended, &record, index, None);
                txn.record(event);
                let number = record.number.clone();
                txn.put(keys::reservation(&held), record.encode());
                (number, to, capped)
            }
            _ => return Err(Error::NoMatch),
        };
        if txn.commit()? {
            return Ok(Extended {
                access_number: number,
                expiration_time: u32::try_from(expires_at.saturating_sub(now).div_ceil(1000))
                    .unwrap_or(u32::MAX),
                expires_at,
                capped,
            });
        }
    }
    Err(contended())
}
