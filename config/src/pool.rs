//! A resource group's pool of access numbers, stored as segments of consecutive numbers
//! so a pool of millions costs a few bytes. `number_at` and `index_of` are binary
//! searches over the segments: O(log segments), independent of the pool's size.

use request_access_guest::validate::{self, PHONE_DIGITS};

/// A run of consecutive numbers written with the same width (and `+` or not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Written with a leading `+`.
    pub plus: bool,
    /// Digits per number.
    pub width: usize,
    /// The first number, as an integer.
    pub first: u64,
    /// How many numbers.
    pub count: u32,
}

impl Segment {
    fn format(&self, value: u64) -> String {
        let sign = if self.plus { "+" } else { "" };
        format!("{sign}{value:0width$}", width = self.width)
    }

    /// Whether two segments share a number (compared by digits).
    pub fn overlaps(&self, other: &Segment) -> bool {
        self.width == other.width
            && self.first < other.first + u64::from(other.count)
            && other.first < self.first + u64::from(self.count)
    }

    /// The human form, for error messages.
    pub fn describe(&self) -> String {
        if self.count == 1 {
            self.format(self.first)
        } else {
            format!(
                "{}..{}",
                self.format(self.first),
                self.format(self.first + u64::from(self.count) - 1)
            )
        }
    }
}

/// Most digits a number may have (E.164).
pub const MAX_DIGITS: usize = *PHONE_DIGITS.end();

/// Parse one number as written in the configuration: an optional `+` and
/// [`PHONE_DIGITS`] digits.
pub fn parse_number(text: &str) -> Result<(bool, usize, u64), String> {
    let (plus, digits) = match text.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    if !PHONE_DIGITS.contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{text:?} is not a phone number (an optional '+' and {} to {MAX_DIGITS} digits)",
            PHONE_DIGITS.start()
        ));
    }
    let value = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a phone number"))?;
    Ok((plus, digits.len(), value))
}

/// Parse `"+18005550100"` or `"+18005550100..+18005550199"` into a segment.
pub fn parse_spec(spec: &str) -> Result<Segment, String> {
    let Some((from, to)) = spec.split_once("..") else {
        let (plus, width, first) = parse_number(spec)?;
        return Ok(Segment {
            plus,
            width,
            first,
            count: 1,
        });
    };
    let (plus, width, first) = parse_number(from)?;
    let (plus_to, width_to, last) = parse_number(to)?;
    if plus != plus_to || width != width_to {
        return Err(format!(
            "range {spec:?}: both ends must be written alike (same digit count, '+' or not)"
        ));
    }
    if last < first {
        return Err(format!("range {spec:?} ends before it starts"));
    }
    let count = u32::try_from(last - first + 1)
        .ok()
        .filter(|&c| c <= MAX_POOL_SIZE)
        .ok_or_else(|| format!("range {spec:?} holds more than {MAX_POOL_SIZE} numbers"))?;
    Ok(Segment {
        plus,
        width,
        first,
        count,
    })
}

/// Most numbers one group may hold.
pub const MAX_POOL_SIZE: u32 = 10_000_000;

#[derive(Debug, Clone)]
/// A group's numbers: segments, and their order by value for lookups.
pub struct Pool {
    segments: Vec<Segment>,
    /// `starts[i]`: pool index of `segments[i]`'s first number.
    starts: Vec<u32>,
    /// Segment indexes sorted by (width, first), for lookups by value.
    by_value: Vec<usize>,
    size: u32,
    id: u64,
}

impl Pool {
    /// A pool of `segments`, in order. The caller has checked that they do not overlap.
    pub fn new(segments: Vec<Segment>) -> Result<Pool, String> {
        let mut starts = Vec::with_capacity(segments.len());
        let mut size: u32 = 0;
        for s in &segments {
            starts.push(size);
            size = size
                .checked_add(s.count)
                .filter(|&n| n <= MAX_POOL_SIZE)
                .ok_or_else(|| format!("a group holds more than {MAX_POOL_SIZE} numbers"))?;
        }
        if size == 0 {
            return Err("a group needs at least one number".into());
        }
        let mut by_value: Vec<usize> = (0..segments.len()).collect();
        by_value.sort_by_key(|&i| (segments[i].width, segments[i].first));
        let id = fingerprint(&segments);
        Ok(Pool {
            segments,
            starts,
            by_value,
            size,
            id,
        })
    }

    /// How many numbers.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Changes whenever the list of numbers changes (FNV-1a: stable across builds).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The segments, in configuration order.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The number at `index`, written as configured.
    pub fn number_at(&self, index: u32) -> Option<String> {
        if index >= self.size {
            return None;
        }
        let seg = self.starts.partition_point(|&start| start <= index) - 1;
        let s = &self.segments[seg];
        Some(s.format(s.first + u64::from(index - self.starts[seg])))
    }

    /// The index of `number`, comparing digits only (`+1 800-555` is `1800555`).
    pub fn index_of(&self, number: &str) -> Option<u32> {
        let digits = validate::digits(number);
        if digits.is_empty() || digits.len() > MAX_DIGITS {
            return None;
        }
        let value: u64 = digits.parse().ok()?;
        let key = (digits.len(), value);
        let pos = self
            .by_value
            .partition_point(|&i| (self.segments[i].width, self.segments[i].first) <= key);
        let seg = *self.by_value.get(pos.checked_sub(1)?)?;
        let s = &self.segments[seg];
        (s.width == key.0 && value - s.first < u64::from(s.count))
            .then(|| self.starts[seg] + (value - s.first) as u32)
    }
}

fn fingerprint(segments: &[Segment]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0100_0000_01b3;
    let mut hash = OFFSET;
    for s in segments {
        for byte in [
            u64::from(s.plus),
            s.width as u64,
            s.first,
            u64::from(s.count),
        ]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        {
            hash = (hash ^ u64::from(byte)).wrapping_mul(PRIME);
        }
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(specs: &[&str]) -> Pool {
        Pool::new(specs.iter().map(|s| parse_spec(s).unwrap()).collect()).unwrap()
    }

    #[test]
    fn indexes_and_numbers_are_inverse() {
        let p = pool(&[
            "+18005550100..+18005550199",
            "+18005550300",
            "5550000..5550009",
        ]);
        assert_eq!(p.size(), 111);
        assert_eq!(p.number_at(0).unwrap(), "+18005550100");
        assert_eq!(p.number_at(99).unwrap(), "+18005550199");
        assert_eq!(p.number_at(100).unwrap(), "+18005550300");
        assert_eq!(p.number_at(110).unwrap(), "5550009");
        assert_eq!(p.number_at(111), None);
        for i in 0..p.size() {
            assert_eq!(p.index_of(&p.number_at(i).unwrap()), Some(i));
        }
        assert_eq!(p.index_of("1 (800) 555-0150"), Some(50));
        assert_eq!(p.index_of("+18005550200"), None);
        assert_eq!(p.index_of("+18005550099"), None);
        assert_eq!(p.index_of("18005550"), None);
        assert_eq!(p.index_of(""), None);
    }

    #[test]
    fn a_million_numbers_cost_one_segment() {
        let p = pool(&["+15550000000..+15550999999"]);
        assert_eq!(p.size(), 1_000_000);
        assert_eq!(p.segments().len(), 1);
        assert_eq!(p.index_of("+15550999999"), Some(999_999));
    }

    #[test]
    fn bad_specs_are_refused_with_the_reason() {
        assert!(
            parse_spec("+1800abc")
                .unwrap_err()
                .contains("not a phone number")
        );
        assert!(
            parse_spec("+18005550199..+18005550100")
                .unwrap_err()
                .contains("ends before")
        );
        assert!(
            parse_spec("+18005550100..18005550199")
                .unwrap_err()
                .contains("alike")
        );
        assert!(parse_spec("1..9").is_err());
        assert!(
            parse_spec("+1555000000000..+1555999999999")
                .unwrap_err()
                .contains("more than")
        );
    }

    #[test]
    fn the_fingerprint_follows_the_numbers() {
        let a = pool(&["+18005550100..+18005550109"]);
        let b = pool(&["+18005550100..+18005550110"]);
        assert_eq!(a.id(), pool(&["+18005550100..+18005550109"]).id());
        assert_ne!(a.id(), b.id());
    }
}
