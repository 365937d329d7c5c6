//! The pool policies: how a group lends and takes back its numbers beyond its strategy
//! (`resource-groups.policy` and `lease-policy`). Each lives in one module and is used
//! through one entry point, a type made of the group's configuration whose methods are
//! the hooks the operations call. The core they build on, the ring of free numbers
//! ([`crate::ring`]), uses none of them, and neither do the operations' leaves
//! ([`crate::lookup`], [`crate::ask`]).
//!
//! | policy | setting | entry point |
//! |--------|---------|-------------|
//! | cool-off | `reuse_cooldown` | [`CoolOff`] |
//! | grace | `match_grace` | [`Grace`] |
//! | sticky numbers | `sticky_memory` | [`Sticky`] |
//! | numbers shared by code | `reservations_per_number`, `wrong_code_*` | [`Shared`] |
//! | fallback | `fallback_group` | [`Fallback`] |
//! | geo-matching | `prefer_caller_prefix` | [`Local`] |
//! | lease | `lease-policy` | [`LeaseTerms`] |
//!
//! Where each has its say, and where the hook is called:
//!
//! - *Taking a number* (a create, [`crate::create()`]): [`Sticky::lend`] lends a caller their
//!   last number; otherwise [`CoolOff::wake`] moves rested numbers onto the ring, and
//!   [`Local::offset`] picks the entry the ring gives before the strategy does;
//!   [`Shared::claim`] and [`Shared::seat`] seat a shared number. An exhausted group asks
//!   [`Fallback::group`].
//! - *Returning a number* (ending a reservation, [`crate::ending`]; a shared number's seat,
//!   [`Shared::end`]): [`CoolOff::usable_at`] says when it may be lent again,
//!   [`Sticky::keeper`] and [`Sticky::returned`] who remembers it.
//! - *A number moving on the ring* (a random draw, a number taken out of the ring, a
//!   woken one: [`crate::ring::Moved`]): [`Sticky::moved`] and [`Sticky::woke`].
//! - *Matching a call* ([`crate::match_access`]): [`Grace::matches`] for a late call,
//!   [`LeaseTerms::slide`] for a sliding expiry, [`Shared::match_call`] for a shared
//!   number. Extending ([`crate::extend()`]) asks [`LeaseTerms::extend`].
//! - *Reclaiming* (first thing in each create, [`crate::reclaim`]): [`Grace`] says which
//!   expired reservations are due, [`Shared::end_expired`] ends a shared number's due
//!   seats; then [`Sticky::forget_ended`] forgets ended memories.
//! - *Counting* ([`crate::pool_status`]): [`CoolOff::resting`] counts resting numbers.
//!
//! A new policy is a module here, registered below, with its hooks called where it has
//! its say.

mod cool_off;
mod fallback;
mod grace;
mod lease;
mod local;
mod shared;
mod sticky;

pub use cool_off::CoolOff;
pub use fallback::Fallback;
pub use grace::Grace;
pub use lease::LeaseTerms;
pub use local::Local;
pub use shared::Shared;
pub use sticky::Sticky;
