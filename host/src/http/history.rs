//! What the operator's page draws behind each group's sparkline: the last hour of one
//! node's view of the group's utilisation, with the moments it refused a create because
//! the pool was exhausted; and the creates it lent, which with the refusals are the
//! demand [`super::sizing`] sizes the pool from.
//!
//! Kept in memory by each node, and fed only by what the node does anyway: every pool
//! count it takes (a `/metrics` scrape, `/admin/pools`, the page's own refresh) and every
//! exhausted create it answers. Nothing is sampled when nobody looks, and nothing is
//! written to the store. Bounded: [`POINTS`] ten-second points per group, 32 bytes each
//! (about 11.5 KiB per group), the oldest dropped first.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use serde::Serialize;

/// Seconds one point covers.
pub const POINT_SECONDS: u64 = 10;
/// Points kept per group: one hour.
pub const POINTS: usize = 360;

/// One ten-second point of a group's history.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    /// Unix time of the point's start, in seconds.
    pub at: u64,
    /// The highest utilisation (live / size) counted in the point, if one was counted.
    pub utilisation: Option<f32>,
    /// Creates this node refused in the point because the pool was exhausted.
    pub exhausted: u32,
    /// Creates this node lent a number of the group for in the point.
    pub lent: u32,
    /// The seconds those creates' reservations were lent for, summed.
    pub lease_seconds: u32,
}

/// Every group's history on this node.
#[derive(Debug, Default)]
pub struct History {
    groups: Mutex<HashMap<String, VecDeque<Point>>>,
}

impl History {
    /// `group`'s utilisation was counted at `now_ms`.
    pub fn counted(&self, group: &str, utilisation: f32, now_ms: u64) {
        self.update(group, now_ms, |point| {
            point.utilisation = Some(
                point
                    .utilisation
                    .map_or(utilisation, |u| u.max(utilisation)),
            );
        });
    }

    /// A create asking `group` was refused at `now_ms`: the pool was exhausted.
    pub fn exhausted(&self, group: &str, now_ms: u64) {
        self.update(group, now_ms, |point| point.exhausted += 1);
    }

    /// A create was lent a number of `group` for `lease_seconds` at `now_ms`.
    pub fn lent(&self, group: &str, lease_seconds: u32, now_ms: u64) {
        self.update(group, now_ms, |point| {
            point.lent = point.lent.saturating_add(1);
            point.lease_seconds = point.lease_seconds.saturating_add(lease_seconds);
        });
    }

    /// `group`'s points of the hour before `now_ms`, oldest first.
    pub fn points(&self, group: &str, now_ms: u64) -> Vec<Point> {
        let since = (now_ms / 1000).saturating_sub(POINTS as u64 * POINT_SECONDS);
        let groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        groups
            .get(group)
            .map(|points| {
                let recent = |p: &&Point| p.at + POINT_SECONDS > since;
                points.iter().filter(recent).copied().collect()
            })
            .unwrap_or_default()
    }

    fn update(&self, group: &str, now_ms: u64, change: impl FnOnce(&mut Point)) {
        let at = now_ms / 1000 / POINT_SECONDS * POINT_SECONDS;
        let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        // Looked up before it is entered: every create comes here, and only the first
        // of a group needs its name copied.
        if !groups.contains_key(group) {
            groups.insert(group.to_string(), VecDeque::new());
        }
        let Some(points) = groups.get_mut(group) else {
            return;
        };
        if points.back().is_none_or(|last| last.at < at) {
            if points.len() == POINTS {
                points.pop_front();
            }
            points.push_back(Point {
                at,
                utilisation: None,
                exhausted: 0,
                lent: 0,
                lease_seconds: 0,
            });
        }
        // A clock set back lands in the newest point rather than reordering the series.
        if let Some(point) = points.back_mut() {
            change(point);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_keep_the_peak_and_the_refusals_of_their_ten_seconds() {
        let history = History::default();
        history.counted("G", 0.5, 1_000_000);
        history.counted("G", 1.0, 1_004_000);
        history.exhausted("G", 1_005_000);
        history.counted("G", 0.2, 1_009_999);
        history.counted("G", 0.3, 1_010_000);
        let points = history.points("G", 1_010_000);
        assert_eq!(
            points,
            [
                Point {
                    at: 1000,
                    utilisation: Some(1.0),
                    exhausted: 1,
                    lent: 0,
                    lease_seconds: 0,
                },
                Point {
                    at: 1010,
                    utilisation: Some(0.3),
                    exhausted: 0,
                    lent: 0,
                    lease_seconds: 0,
                },
            ]
        );
        assert!(history.points("other", 1_010_000).is_empty());
    }

    #[test]
    fn an_hour_is_kept_and_no_more() {
        let history = History::default();
        for second in (0..2 * 3600).step_by(10) {
            history.counted("G", 0.5, second * 1000);
        }
        let now = 2 * 3600 * 1000;
        let points = history.points("G", now);
        assert_eq!(points.len(), POINTS);
        assert_eq!(points[0].at, 3600);
        // Asked later, the older points fall out of the hour shown.
        assert_eq!(history.points("G", now + 600_000).len(), POINTS - 60);
    }
}
