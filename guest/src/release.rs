//! Release: a service gives its reservation in a group back.

use crate::api::{Error, EventKind, Imports};
use crate::ending::end_held;
use crate::keys;
use crate::lookup::{self, MAX_ATTEMPTS, contended, group_of};
use crate::txn::Txn;
use crate::validate;

/// Give the service's reservation in `group` back; answers the number released. A
/// group retired from the configuration still releases the reservations it holds (their
/// numbers go back to no ring); with none, it is an unknown group.
pub fn release<I: Imports>(
    imports: &mut I,
    service_id: &str,
    group_name: &str,
) -> Result<String, Error> {
    validate::service_id(service_id)?;
    let group = match group_of(imports, group_name) {
        Ok(group) => Some(group),
        Err(Error::UnknownResourceGroup(_)) => None,
        Err(other) => return Err(other),
    };
    let nothing_held = || match &group {
        Some(_) => Error::NoMatch,
        None => Error::UnknownResourceGroup(group_name.to_string()),
    };
    for _ in 0..MAX_ATTEMPTS {
        let now = imports.now();
        let mut txn = Txn::new(imports);
        let holder = keys::holder(group_name, service_id);
        let Some(held) = lookup::held(&mut txn, &holder)? else {
            return Err(nothing_held());
        };
        let ended = end_held(
            &mut txn,
            (&holder, &held),
            (service_id, group_name),
            (group.as_ref(), EventKind::Released),
            now,
        )?;
        let outcome = match ended {
            Some((number, expires_at)) if expires_at > now => Ok(number),
            Some(_) => Err(Error::NoMatch),
            None => Err(nothing_held()),
        };
        if txn.commit()? {
            return outcome;
        }
    }
    Err(contended())
}
