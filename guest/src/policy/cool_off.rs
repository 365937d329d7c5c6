//! Cool-off (`reuse_cooldown`): a number whose reservation ended rests that many seconds
//! before it is lent again, so that a late caller of the last reservation never reaches
//! the next one.
//!
//! A resting number waits off the ring, in the ring's resting index (`w␟…` keys, ordered
//! by when each becomes usable: [`crate::keys::resting`]); the ring puts it there when it
//! is given back before it may be lent ([`crate::ring::push_placed`]). Each create of the
//! group first moves the numbers that have rested onto the ring's tail ([`CoolOff::wake`]).

use crate::api::{Error, Group, Imports, Policy};
use crate::keys;
use crate::records::Place;
use crate::ring::{self, Moved, Ring};
use crate::txn::Txn;

use super::sticky::Sticky;

/// Resting numbers moved onto the ring per call, the earliest first. Any one is enough
/// for the call that moves them: once some rested, the ring is not empty.
const WAKE_BATCH: u32 = 8;

/// Resting entries [`CoolOff::resting`] reads per scan.
const RESTING_PAGE: u32 = 256;

/// A group's cool-off: the policy's entry point.
#[derive(Debug, Clone, Copy)]
pub struct CoolOff {
    /// Seconds a number rests (0: none).
    seconds: u32,
}

impl CoolOff {
    /// The cool-off of a group with `policy`.
    pub fn of(policy: &Policy) -> CoolOff {
        CoolOff {
            seconds: policy.reuse_cooldown,
        }
    }

    /// The cool-off of the group called `group`, as configured now.
    pub fn of_group<I: Imports>(imports: &mut I, group: &str) -> CoolOff {
        CoolOff::of(&imports.policy(group))
    }

    /// When a number whose reservation ended at `ended_at` may be lent again (0: at once).
    pub fn usable_at(&self, ended_at: u64) -> u64 {
        match self.seconds {
            0 => 0,
            seconds => ended_at.saturating_add(u64::from(seconds) * 1000),
        }
    }

    /// Move the numbers of `group`'s ring that have rested by `now` onto its tail, in the
    /// order they became usable; nothing without a cool-off. A caller who remembers one
    /// (its resting entry names them) remembers where it went, through `sticky`.
    pub fn wake<I: Imports>(
        &self,
        txn: &mut Txn<'_, I>,
        group: &Group,
        sticky: &Sticky,
        now: u64,
    ) -> Result<(), Error> {
        if self.seconds == 0 {
            return Ok(());
        }
        let ring = ring::open(txn, group)?;
        let (start, end) = keys::resting_by(&group.name, ring.id(), now);
        let rested = txn.scan(&start, &end, WAKE_BATCH)?;
        let memories: Vec<String> = rested
            .iter()
            .filter(|(_, caller)| !caller.is_empty())
            .map(|(_, caller)| keys::remembered(&group.name, &String::from_utf8_lossy(caller)))
            .collect();
        txn.prefetch(&memories)?;
        for (key, caller) in rested {
            txn.delete(key.clone());
            if let Some((at, index)) = keys::parse_resting(&key) {
                let pushed = ring::push_placed(txn, group, ring.id(), index, 0, now, None)?;
                if let (Some(place), false) = (pushed, caller.is_empty()) {
                    let caller = String::from_utf8_lossy(&caller);
                    let woken = Moved {
                        ring_id: ring.id(),
                        index,
                        from: Some(Place::Resting(at)),
                        to: place,
                    };
                    sticky.woke(txn, group, &caller, woken)?;
                }
            }
        }
        Ok(())
    }

    /// Of `ring`'s resting numbers: how many have rested by `now` (usable, not yet on the
    /// ring), how many still rest, and when the first of those becomes usable. Reads only.
    pub fn resting<I: Imports>(
        txn: &mut Txn<'_, I>,
        group: &Group,
        ring: &Ring,
        now: u64,
    ) -> Result<(u64, u64, Option<u64>), Error> {
        let (mut start, end) = keys::resting_by(&group.name, ring.id(), u64::MAX);
        let (mut rested, mut resting, mut first) = (0, 0, None);
        loop {
            let page = txn.scan_unrecorded(&start, &end, RESTING_PAGE)?;
            for entry in &page {
                match keys::parse_resting(&entry.key) {
                    Some((at, _)) if at <= now => rested += 1,
                    Some((at, _)) => {
                        resting += 1;
                        first = first.or(Some(at));
                    }
                    None => {}
                }
            }
            match page.last() {
                Some(last) if page.len() == RESTING_PAGE as usize => {
                    start = format!("{}\0", last.key)
                }
                _ => return Ok((rested, resting, first)),
            }
        }
    }

    /// When `ring`'s first resting number becomes usable, if one rests (this
    /// transaction's own writes included). Reads only.
    pub fn first_usable_at<I: Imports>(
        txn: &mut Txn<'_, I>,
        group: &Group,
        ring: &Ring,
    ) -> Result<Option<u64>, Error> {
        let (start, end) = keys::resting_by(&group.name, ring.id(), u64::MAX);
        Ok(txn
            .first_key(&start, &end)?
            .and_then(|key| keys::parse_resting(&key))
            .map(|(at, _)| at))
    }
}
