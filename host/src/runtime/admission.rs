//! Admission on a remote store: one changing call per group at a time from this
//! process, so that a group's calls do not contend for its ring.

use super::{CallError, Runtime};
use crate::services::Services;

impl Runtime {
    /// Admission for a call that changes `group`, on a remote store: one such call of
    /// the group at a time from this process. Every change of a group rewrites its
    /// ring's head or tail, so concurrent calls of one group conflict, and on a remote
    /// store a call's reads and its commit are network round trips apart: without the
    /// gate most of them would conflict and retry (64 clients on three nodes saw 20 to
    /// 30 refused commits per create). Calls of other processes still conflict and
    /// retry, with a back-off. A waiting call holds no instance. On an in-process store,
    /// no gate: its commits apply at once, and batching them is what makes its syncs
    /// cheap.
    ///
    /// The gate is an optimisation, not a lock the state depends on (commits check
    /// their preconditions anyway). A call waits for it at most as long as one store
    /// call may take, then is refused as [`CallError::StoreUnavailable`] (503, retry):
    /// a store that stops answering makes requests fail after a bounded time instead
    /// of queueing behind each other, and a backlog that built up during an outage is
    /// shed rather than let through ungated all at once, where it would contend until
    /// calls gave up.
    pub(super) async fn gate(
        &self,
        services: &Services,
        group: Option<&str>,
    ) -> Result<Option<tokio::sync::OwnedMutexGuard<()>>, CallError> {
        let Some(name) =
            group.filter(|g| services.store.is_remote() && services.config.group(g).is_some())
        else {
            return Ok(None);
        };
        let gate = self
            .gates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name.to_string())
            .or_default()
            .clone();
        let wait = services.config.store.command_timeout;
        match tokio::time::timeout(wait, gate.lock_owned()).await {
            Ok(admitted) => Ok(Some(admitted)),
            Err(_) => Err(CallError::StoreUnavailable(format!(
                "group {name:?} is busy: earlier calls held it for {} ms",
                wait.as_millis()
            ))),
        }
    }

    /// The configured group that holds `number`, if any (only where gates are used).
    pub(super) fn group_of<'s>(services: &'s Services, number: &str) -> Option<&'s str> {
        if !services.store.is_remote() {
            return None;
        }
        services
            .config
            .groups
            .iter()
            .find(|g| g.pool.index_of(number).is_some())
            .map(|g| g.name.as_str())
    }
}
