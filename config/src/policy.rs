//! Each group's policy: its cool-off and grace window, its fallback group, whether it
//! is sticky, whether its numbers are shared and how far, and how long its reservations
//! may be kept. A group's own key wins; `[options]`'s serves where it has none.

use request_access_guest::api::{LeasePolicy, Policy};

use crate::error::{ConfigError, Source};
use crate::file::{GroupSection, OptionsSection};

/// The policy and the lease of `group` (named `name`), or the first rule it breaks.
pub(crate) fn read(
    group: &GroupSection,
    options: &OptionsSection,
    name: &str,
    source: Source,
) -> Result<(Policy, LeasePolicy), ConfigError> {
    let cooldown = group
        .reuse_cooldown
        .as_ref()
        .or(options.reuse_cooldown.as_ref())
        .map_or(0, |c| c.get_ref().0);
    let grace = group.match_grace.as_ref().or(options.match_grace.as_ref());
    if let Some(grace) = grace.filter(|g| g.get_ref().0 > cooldown) {
        // A late call matched after its number was lent again would reach the
        // wrong service: the grace window must end before the number is reused.
        let (span, key) = match (&group.match_grace, &group.reuse_cooldown) {
            (Some(g), _) => (g.span(), "resource_group.match_grace"),
            (None, Some(c)) => (c.span(), "resource_group.reuse_cooldown"),
            (None, None) => (grace.span(), "options.match_grace"),
        };
        return Err(source.fail(
            span,
            key,
            format!(
                "match_grace {} s exceeds group {name:?}'s reuse_cooldown of {cooldown} \
                 s: a late call could be matched after its number was lent again",
                grace.get_ref().0
            ),
        ));
    }
    let grace = grace.map_or(0, |g| g.get_ref().0);
    let sticky = group.sticky.or(options.sticky).unwrap_or(false);
    let sticky_memory = match sticky {
        true => {
            group
                .sticky_memory
                .or(options.sticky_memory)
                .unwrap_or_default()
                .0
        }
        false => 0,
    };
    let seats = group
        .reservations_per_number
        .as_ref()
        .map_or(1, |n| n.get_ref().0);
    if let Some(n) = group.reservations_per_number.as_ref().filter(|_| seats > 1) {
        let length = options.access_code_length.0;
        // N live codes of L digits: a guessed code matches one with odds N / 10^L.
        if u64::from(seats) * 1000 > 10u64.pow(u32::from(length)) {
            return Err(source.fail(
                n.span(),
                "resource_group.reservations_per_number",
                format!(
                    "{seats} reservations per number with {length}-digit codes let a \
                     guessed code match with odds of {seats} in {} per attempt, above 1 \
                     in 1000: lower it or raise options.access_code_length",
                    10u64.pow(u32::from(length))
                ),
            ));
        }
        if sticky {
            return Err(source.fail(
                n.span(),
                "resource_group.reservations_per_number",
                format!(
                    "group {name:?} cannot be sticky and share its numbers: set \
                     sticky = false in it"
                ),
            ));
        }
    }
    let (wrong_code_limit, wrong_code_window) = match seats > 1 {
        true => (
            group
                .wrong_code_limit
                .or(options.wrong_code_limit)
                .unwrap_or_default()
                .0,
            group
                .wrong_code_window
                .or(options.wrong_code_window)
                .unwrap_or_default()
                .0,
        ),
        false => (0, 0),
    };
    let lease = LeasePolicy {
        max_lifetime: group
            .max_lifetime
            .or(options.max_lifetime)
            .unwrap_or_default()
            .0,
        sliding_expiry: group
            .sliding_expiry
            .or(options.sliding_expiry)
            .unwrap_or(false),
    };
    let policy = Policy {
        reuse_cooldown: cooldown,
        match_grace: grace,
        fallback_group: group.fallback_group.as_ref().map(|f| f.get_ref().clone()),
        sticky_memory,
        reservations_per_number: seats,
        wrong_code_limit,
        wrong_code_window,
        prefer_caller_prefix: group
            .prefer_caller_prefix
            .or(options.prefer_caller_prefix)
            .map_or(0, |p| p.0),
    };
    Ok((policy, lease))
}
