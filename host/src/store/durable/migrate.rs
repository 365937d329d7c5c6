//! The registrations of files written before they became keys: a table of their own,
//! moved into the state once, on open.

use redb::{ReadableTable, TableDefinition, TableHandle, WriteTransaction};
use request_access_guest::api::Mutation;

use super::super::StoreError;
use super::super::host_keys::{Registration, registration_entry};
use super::disk::{WriteSet, stored_revision, unavailable, write_batch};

/// service id -> expiry (ms since the epoch), `None` for no expiry: the registrations of
/// files written before they became keys; emptied into `STATE` on open.
pub(super) const LEGACY_SERVICES: TableDefinition<&str, Option<u64>> =
    TableDefinition::new("services");

/// Move the registrations of the legacy table into the state, under one new revision,
/// and drop the table. Nothing to do when there is none.
pub(super) fn migrate_registrations(txn: &WriteTransaction) -> Result<(), StoreError> {
    // Opening a table in a write transaction would create it: look it up first.
    let exists = txn
        .list_tables()
        .map_err(unavailable)?
        .any(|t| t.name() == LEGACY_SERVICES.name());
    if !exists {
        return Ok(());
    }
    let legacy: Vec<(String, Registration)> = {
        let table = txn.open_table(LEGACY_SERVICES).map_err(unavailable)?;
        table
            .iter()
            .map_err(unavailable)?
            .map(|item| {
                let (id, expires_at) = item.map_err(unavailable)?;
                let registration = Registration {
                    expires_at: expires_at.value(),
                };
                Ok((id.value().to_string(), registration))
            })
            .collect::<Result<_, StoreError>>()?
    };
    if legacy.is_empty() {
        txn.delete_table(LEGACY_SERVICES).map_err(unavailable)?;
        return Ok(());
    }
    let mutations = legacy
        .iter()
        .map(|(id, registration)| {
            let (key, value) = registration_entry(id, *registration);
            Mutation::Put(key, value)
        })
        .collect();
    let last = stored_revision(txn)?;
    let write_set = WriteSet {
        revision: last + 1,
        mutations,
    };
    write_batch(txn, std::slice::from_ref(&write_set))?;
    txn.delete_table(LEGACY_SERVICES).map_err(unavailable)?;
    Ok(())
}
