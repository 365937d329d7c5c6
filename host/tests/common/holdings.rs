//! What the stress clients saw: each number they held, from when, until when, and the
//! check that no number was held by two of them at once.

use std::collections::HashMap;
use std::time::Instant;

/// A number held from `from` (its create acknowledged) to `to` (its match or release
/// first sent).
#[derive(Debug, Clone)]
pub struct Holding {
    pub number: String,
    /// Shown when a double booking is reported.
    pub service: String,
    /// When its create was first sent.
    pub asked: Instant,
    pub from: Instant,
    pub to: Instant,
    /// Its match or release found nothing: the store lost the reservation, so its
    /// number may rightly have been lent again (the test counts it as lost instead).
    pub lost: bool,
}

/// Pairs of overlapping holdings of one number, among the reservations the store kept.
pub fn double_bookings(holdings: &[Holding]) -> Vec<(Holding, Holding)> {
    let mut by_number: HashMap<&str, Vec<&Holding>> = HashMap::new();
    for holding in holdings.iter().filter(|h| !h.lost) {
        by_number.entry(&holding.number).or_default().push(holding);
    }
    let mut found = Vec::new();
    for list in by_number.values_mut() {
        list.sort_by_key(|h| h.from);
        for pair in list.windows(2) {
            if pair[1].from < pair[0].to {
                found.push((pair[0].clone(), pair[1].clone()));
            }
        }
    }
    found
}
