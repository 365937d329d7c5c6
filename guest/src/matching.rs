//! The companion `match-interaction`: an incoming call to an access number finds the
//! reservation it was made for. Late calls match within the group's grace window
//! ([`Grace`]), a sliding expiry keeps the reservation for the next call
//! ([`LeaseTerms`]), and a shared number tells its seats apart ([`Shared`]).

use subtle::ConstantTimeEq;

use crate::api::{Error, EventKind, Imports, MatchRequest, Matched};
use crate::ending::{Number, end_reservation};
use crate::events;
use crate::keys;
use crate::lookup::{MAX_ATTEMPTS, contended, read_holding};
use crate::policy::{Grace, LeaseTerms, Shared};
use crate::records::Holding;
use crate::txn::Txn;
use crate::validate;

/// The companion `match-interaction`: find the reservation an incoming call was made
/// for, and release it.
pub fn match_access<I: Imports>(imports: &mut I, request: &MatchRequest) -> Result<Matched, Error> {
    let number_digits = validate::phone_number("_access_number", &request.access_number)?;
    if let Some(code) = &request.access_code {
        validate::access_code(code)?;
    }
    let caller_digits = validate::caller_number(request.phone_number.as_deref())?;

    for _ in 0..MAX_ATTEMPTS {
        let now = imports.now();
        let mut txn = Txn::new(imports);
        let caller = caller_digits.as_deref();
        let mut res = match read_holding(&mut txn, &number_digits)? {
            None => {
                // A misrouted caller: told to the host, checked against a reservation
                // made meanwhile (the commit's precondition), and then no match.
                txn.record(events::unreserved(&request.access_number, caller));
                if txn.commit()? {
                    return Err(Error::NoMatch);
                }
                continue;
            }
            Some(Holding::One(res)) => res,
            Some(Holding::Shared(record)) => {
                let code = request.access_code.as_deref();
                let policy = txn.imports().policy(&record.group);
                let shared = Shared::of(&policy);
                let outcome = shared.match_call(&mut txn, record, code, caller, now)?;
                if txn.commit()? {
                    return outcome;
                }
                continue;
            }
        };
        // A late call, within the group's grace window, still matches.
        let outcome = if !Grace::matches(txn.imports(), &res, now) {
            let ended = (Number::Back(None), (EventKind::Expired, None));
            end_reservation(&mut txn, &res, ended, now)?;
            txn.record(events::unreserved(&request.access_number, caller));
            Err(Error::NoMatch)
        } else if let (Some(want), Some(got)) = (&res.caller_digits, &caller_digits)
            && want != got
        {
            // A call from another number: not this reservation's caller. Nothing changes.
            return Err(Error::NoMatch);
        } else {
            let right = match (&res.code, &request.access_code) {
                (None, _) => true,
                // The caller has not typed the code yet: no match, and no strike.
                (Some(_), None) => return Err(Error::NoMatch),
                (Some(want), Some(got)) => bool::from(want.as_bytes().ct_eq(got.as_bytes())),
            };
            match right {
                true => {
                    // A sliding expiry keeps the reservation for the session's next call.
                    let terms = LeaseTerms::of_group(txn.imports(), &res.group);
                    if terms.slide(&mut txn, &mut res, now)? {
                        txn.record(events::of_reservation(EventKind::Matched, &res, caller));
                    } else {
                        let ended = (Number::Back(None), (EventKind::Matched, caller));
                        end_reservation(&mut txn, &res, ended, now)?;
                    }
                    Ok(Matched {
                        service_id: res.service_id.clone(),
                        resource_group: res.group.clone(),
                    })
                }
                false => {
                    res.failed_attempts += 1;
                    if res.failed_attempts >= txn.imports().options().max_code_attempts {
                        let ended = (Number::Back(None), (EventKind::Revoked, caller));
                        end_reservation(&mut txn, &res, ended, now)?;
                        Err(Error::TooManyAttempts)
                    } else {
                        txn.record(events::of_reservation(EventKind::WrongCode, &res, caller));
                        txn.put(keys::reservation(&number_digits), res.encode());
                        Err(Error::NoMatch)
                    }
                }
            }
        };
        if txn.commit()? {
            return outcome;
        }
    }
    Err(contended())
}
