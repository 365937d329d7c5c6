//! `[[resource_group]]`: each group's name, numbers and policy, and the rules between
//! groups: a name once, a number in one group once, a fallback one hop away.

use std::collections::HashMap;
use std::ops::Range;

use request_access_guest::api::{Group, LeasePolicy, Policy, Strategy};
use request_access_guest::validate;

use crate::error::{ConfigError, Source, error_reason};
use crate::file::{GroupSection, OptionsSection};
use crate::policy;
use crate::pool::{Pool, Segment, parse_spec};

#[derive(Debug, Clone)]
/// One `[[resource_group]]`.
pub struct GroupConfig {
    /// Its name (`_resource_group`).
    pub name: String,
    /// How it picks a free number.
    pub strategy: Strategy,
    /// Its own timeout, overriding `[options]`.
    pub booking_expiration_timeout: Option<u32>,
    /// Its numbers.
    pub pool: Pool,
    /// Its cool-off and grace window (its own, or `[options]`'s).
    pub policy: Policy,
    /// How long its reservations may be kept, and whether a match keeps them.
    pub lease: LeasePolicy,
}

impl GroupConfig {
    /// The group as the plugin sees it (`resource-groups.group`).
    pub fn info(&self) -> Group {
        Group {
            name: self.name.clone(),
            strategy: self.strategy,
            booking_expiration_timeout: self.booking_expiration_timeout,
            size: self.pool.size(),
            pool_id: self.pool_id(),
        }
    }

    /// The fingerprint of the pool definition: of the numbers and, when they are shared,
    /// of how many reservations each carries, so that changing that builds a new ring
    /// (numbers lent whole keep the fingerprint of their list alone).
    fn pool_id(&self) -> u64 {
        match self.policy.reservations_per_number {
            0 | 1 => self.pool.id(),
            // One FNV-1a step more, over the count.
            seats => (self.pool.id() ^ u64::from(seats)).wrapping_mul(0x0100_0000_01b3),
        }
    }
}

/// The groups in file order, and the index of each by name.
pub(crate) fn read(
    sections: Vec<GroupSection>,
    options: &OptionsSection,
    source: Source,
) -> Result<(Vec<GroupConfig>, HashMap<String, usize>), ConfigError> {
    let mut groups = Vec::new();
    let mut by_name = HashMap::new();
    let mut all_segments: Vec<(Segment, String, Range<usize>)> = Vec::new();
    let mut fallbacks = Vec::new();
    for group in sections {
        let name = group.name.get_ref().clone();
        validate::resource_group(&name)
            .map_err(|e| source.fail(group.name.span(), "resource_group.name", error_reason(e)))?;
        if by_name.insert(name.clone(), groups.len()).is_some() {
            return Err(source.fail(
                group.name.span(),
                "resource_group.name",
                format!("group {name:?} is defined twice"),
            ));
        }
        let mut segments = Vec::with_capacity(group.numbers.len());
        for spec in &group.numbers {
            let segment = parse_spec(spec.get_ref())
                .map_err(|why| source.fail(spec.span(), "resource_group.numbers", why))?;
            all_segments.push((segment.clone(), name.clone(), spec.span()));
            segments.push(segment);
        }
        let pool = Pool::new(segments)
            .map_err(|why| source.fail(group.name.span(), "resource_group.numbers", why))?;
        let (policy, lease) = policy::read(&group, options, &name, source)?;
        if let Some(fallback) = &group.fallback_group {
            fallbacks.push((name.clone(), fallback.clone()));
        }
        groups.push(GroupConfig {
            name,
            strategy: group.strategy.into(),
            booking_expiration_timeout: group.booking_expiration_timeout.map(|t| t.0),
            pool,
            policy,
            lease,
        });
    }
    // One hop: a fallback group lends from its own pool only, so no request is sent
    // round a cycle or down a chain the reader of one group's entry cannot see.
    for (name, fallback) in &fallbacks {
        let target = fallback.get_ref();
        let why = if target == name {
            Some(format!("group {name:?} cannot fall back to itself"))
        } else if let Some(&i) = by_name.get(target) {
            groups[i].policy.fallback_group.as_ref().map(|further| {
                format!(
                    "group {name:?} falls back to {target:?}, which falls back to \
                     {further:?}: a fallback group cannot have one (one hop)"
                )
            })
        } else {
            Some(format!(
                "group {name:?} falls back to {target:?}, which is not configured"
            ))
        };
        if let Some(why) = why {
            return Err(source.fail(fallback.span(), "resource_group.fallback_group", why));
        }
    }

    // With locking, a number is lent to one service at a time: it may belong to one
    // group only, and appear once.
    all_segments.sort_by_key(|(s, _, _)| (s.width, s.first));
    for pair in all_segments.windows(2) {
        let ((a, group_a, _), (b, group_b, span_b)) = (&pair[0], &pair[1]);
        if a.overlaps(b) {
            return Err(source.fail(
                span_b.clone(),
                "resource_group.numbers",
                format!(
                    "{} (group {group_b:?}) overlaps {} (group {group_a:?}): a number may \
                     belong to one group once",
                    b.describe(),
                    a.describe()
                ),
            ));
        }
    }
    Ok((groups, by_name))
}
