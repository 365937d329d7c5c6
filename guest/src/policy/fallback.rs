//! Fallback (`fallback_group`): a create to an exhausted group lends from the group's
//! fallback group instead, one hop (the fallback group's own fallback is not followed).
//! The reservation is the service's reservation in the group it asked
//! ([`crate::records::Reservation::asked_group`]); a refusal names the group asked, and
//! says when the first of the two lends again.

use crate::api::{Group, Imports, Policy};
use crate::lookup::group_of;

/// A group's fallback: the policy's entry point.
#[derive(Debug, Clone, Copy)]
pub struct Fallback<'p> {
    /// The name of the group that lends when this one is exhausted, if any.
    group: Option<&'p str>,
}

impl<'p> Fallback<'p> {
    /// The fallback of a group with `policy`.
    pub fn of(policy: &'p Policy) -> Fallback<'p> {
        Fallback {
            group: policy.fallback_group.as_deref(),
        }
    }

    /// The group that lends for `exhausted` (whose fallback this is), and its policy:
    /// none if `exhausted` names none, names itself, or names a group the host does not
    /// know (the create's answer stays as it was).
    pub fn group<I: Imports>(&self, imports: &mut I, exhausted: &Group) -> Option<(Group, Policy)> {
        let fallback = self
            .group
            .filter(|f| *f != exhausted.name)
            .and_then(|f| group_of(imports, f).ok())?;
        let policy = imports.policy(&fallback.name);
        Some((fallback, policy))
    }
}
