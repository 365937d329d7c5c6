//! What every operation starts from: its group, the holding of a number, and how many
//! times it tries before a contended store is a failure. A leaf: the operations and the
//! pool policies use it, and it uses none of them.

use crate::api::{Error, Group, Imports};
use crate::keys;
use crate::records::Holding;
use crate::txn::Txn;
use crate::validate;

/// Attempts at a transaction before giving up with a state-store failure.
pub const MAX_ATTEMPTS: u32 = 64;

/// The configured group called `name`, or why there is none.
pub fn group_of<I: Imports>(imports: &mut I, name: &str) -> Result<Group, Error> {
    validate::resource_group(name)?;
    match imports.group(name) {
        Some(group) if group.size > 0 && group.name == name => Ok(group),
        _ => Err(Error::UnknownResourceGroup(name.to_string())),
    }
}

/// The failure of an operation that lost [`MAX_ATTEMPTS`] commits in a row.
pub fn contended() -> Error {
    Error::StateStoreFailure(format!(
        "the reservation state stayed contended for {MAX_ATTEMPTS} attempts"
    ))
}

/// Seconds a reservation lasts ([`validate::lease_seconds`]); whichever applies must be
/// within the booking bounds.
pub fn timeout(asked: Option<u32>, group: &Group, global: u32) -> Result<u32, Error> {
    let timeout = validate::lease_seconds(asked, group.booking_expiration_timeout, global);
    validate::booking_timeout(Some(timeout))?;
    Ok(timeout)
}

/// The digits of the number the holder key `holder` (a service's in a group) names.
pub fn held<I: Imports>(txn: &mut Txn<'_, I>, holder: &str) -> Result<Option<String>, Error> {
    Ok(txn
        .get(holder)?
        .map(|d| String::from_utf8_lossy(d).into_owned()))
}

/// What holds the number with these digits, if anything does.
pub fn read_holding<I: Imports>(
    txn: &mut Txn<'_, I>,
    digits: &str,
) -> Result<Option<Holding>, Error> {
    let key = keys::reservation(digits);
    txn.get(&key)?.map(|b| Holding::decode(&key, b)).transpose()
}
