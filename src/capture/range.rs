//! The time range a run reads (`--since`, `--until`): frames captured outside it are
//! counted and left undecoded, so that a slice of a long capture costs what the slice
//! holds. Times are each capture's own timestamps (its host's clock).

use std::fmt;

/// A half-open range of capture times, nanoseconds since the epoch: `since` included,
/// `until` not. Either end may be open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimeRange {
    pub since: Option<i64>,
    pub until: Option<i64>,
}

impl TimeRange {
    /// A range from two optional ends; `since` must come before `until`.
    pub fn new(since: Option<i64>, until: Option<i64>) -> Result<TimeRange, String> {
        if let (Some(s), Some(u)) = (since, until) {
            if s >= u {
                return Err(format!(
                    "--since ({}) is not before --until ({})",
                    rfc3339(s),
                    rfc3339(u)
                ));
            }
        }
        Ok(TimeRange { since, until })
    }

    /// Whether the range leaves nothing out (no end given).
    pub fn is_all(&self) -> bool {
        self.since.is_none() && self.until.is_none()
    }

    pub fn contains(&self, ts: i64) -> bool {
        self.since.is_none_or(|s| ts >= s) && self.until.is_none_or(|u| ts < u)
    }

    /// The part of `[lo, hi]` (a point's own clock) where a packet's copies at other
    /// points fall inside the range too: `margin` (how far apart two sightings of one
    /// packet may be) in from each end given. `None` when nothing is left.
    pub fn inner(&self, (lo, hi): (i64, i64), margin: i64) -> Option<(i64, i64)> {
        let lo = self.since.map_or(lo, |s| lo.max(s.saturating_add(margin)));
        let hi = self.until.map_or(hi, |u| hi.min(u.saturating_sub(margin)));
        (lo <= hi).then_some((lo, hi))
    }
}

impl fmt::Display for TimeRange {
    /// `from TIME to TIME`, an open end left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        if let Some(s) = self.since {
            write!(f, "from {}", rfc3339(s))?;
            sep = " ";
        }
        if let Some(u) = self.until {
            write!(f, "{sep}until {}", rfc3339(u))?;
        }
        Ok(())
    }
}

/// Nanoseconds since the epoch as RFC 3339 in UTC with nanoseconds, as reports and
/// bundle manifests write times.
pub fn rfc3339(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// A time as `--since` and `--until` take it: RFC 3339 with a zone (`Z` or an offset;
/// a space may stand for the `T`), as every report writes times
/// (`2026-12-02T01:05:29.479711000Z`), or seconds since the epoch with up to nine
/// decimals, as `tcpdump -tt` prints them (`1796173529.479711`).
pub fn parse_time(s: &str) -> Result<i64, String> {
    let t = s.trim();
    if let Some(ns) = epoch_ns(t) {
        return ns.ok_or_else(|| format!("`{s}`: out of range"));
    }
    let iso = match t.as_bytes().get(10) {
        Some(b' ') => format!("{}T{}", &t[..10], &t[11..]),
        _ => t.to_string(),
    };
    let parsed = chrono::DateTime::parse_from_rfc3339(&iso).map_err(|e| {
        format!(
            "`{s}`: {e}; give RFC 3339 with a zone (2026-12-02T01:05:29Z, \
             2026-12-02T02:05:29.5+01:00) or seconds since the epoch (1796173529.5)"
        )
    })?;
    parsed
        .timestamp_nanos_opt()
        .ok_or_else(|| format!("`{s}`: out of range"))
}

/// Seconds since the epoch (`[-]DIGITS[.DIGITS]`, up to nine decimals) as
/// nanoseconds: `None` when `t` is not of that form, `Some(None)` when it is but does
/// not fit.
fn epoch_ns(t: &str) -> Option<Option<i64>> {
    let (neg, body) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t),
    };
    let (whole, frac) = body.split_once('.').unwrap_or((body, ""));
    let digits = |x: &str| x.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(frac) || frac.len() > 9 {
        return None;
    }
    let frac_ns = format!("{frac:0<9}").parse::<i64>().ok()?;
    let ns = whole
        .parse::<i64>()
        .ok()
        .and_then(|w| w.checked_mul(1_000_000_000))
        .and_then(|w| w.checked_add(frac_ns))
        .map(|n| if neg { -n } else { n });
    Some(ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_796_173_529_479_711_000;

    #[test]
    fn times_are_read_as_reports_and_tcpdump_write_them() {
        for s in [
            "2026-12-02T01:05:29.479711000Z",
            "2026-12-02T01:05:29.479711Z",
            "2026-12-02 01:05:29.479711Z",
            "2026-12-02T02:05:29.479711+01:00",
            "2026-12-01T20:05:29.479711-05:00",
            "1796173529.479711",
            "1796173529.479711000",
            " 1796173529.479711 ",
        ] {
            assert_eq!(parse_time(s), Ok(T), "{s}");
        }
        assert_eq!(parse_time("1796173529"), Ok(1_796_173_529_000_000_000));
        assert_eq!(parse_time("0.000000001"), Ok(1));
        assert_eq!(parse_time("-1.5"), Ok(-1_500_000_000));
    }

    #[test]
    fn a_time_without_a_zone_or_out_of_range_is_refused_with_the_forms_taken() {
        for s in [
            "2026-12-02T01:05:29",
            "01:05:29",
            "",
            "1.2.3",
            "1796173529.1234567891",
            "1e9",
        ] {
            let e = parse_time(s).unwrap_err();
            assert!(e.starts_with(&format!("`{s}`")), "{s}: {e}");
        }
        assert!(parse_time("2026-12-02T01:05:29")
            .unwrap_err()
            .contains("seconds since the epoch"));
        assert!(parse_time("99999999999999")
            .unwrap_err()
            .contains("out of range"));
    }

    #[test]
    fn the_range_holds_since_and_not_until() {
        let r = TimeRange::new(Some(10), Some(20)).unwrap();
        assert!(!r.contains(9) && r.contains(10) && r.contains(19) && !r.contains(20));
        assert!(TimeRange::default().contains(i64::MIN) && TimeRange::default().is_all());
        let open = TimeRange::new(None, Some(20)).unwrap();
        assert!(open.contains(i64::MIN) && !open.contains(20) && !open.is_all());
        assert!(TimeRange::new(Some(20), Some(20)).is_err());
        assert!(TimeRange::new(Some(21), Some(20))
            .unwrap_err()
            .starts_with("--since (1970-01-01T00:00:00.000000021Z) is not before"));
    }

    #[test]
    fn the_inner_part_keeps_a_margin_from_each_end_given() {
        let r = TimeRange::new(Some(100), Some(200)).unwrap();
        assert_eq!(r.inner((0, 1000), 10), Some((110, 190)));
        assert_eq!(r.inner((150, 160), 10), Some((150, 160)));
        assert_eq!(r.inner((0, 1000), 50), Some((150, 150)));
        assert_eq!(r.inner((0, 1000), 51), None);
        assert_eq!(TimeRange::default().inner((5, 6), 1_000), Some((5, 6)));
        let since = TimeRange::new(Some(100), None).unwrap();
        assert_eq!(since.inner((0, 1000), 10), Some((110, 1000)));
        assert_eq!(
            TimeRange::new(Some(i64::MAX - 1), None)
                .unwrap()
                .inner((0, i64::MAX), 10),
            Some((i64::MAX, i64::MAX))
        );
    }

    #[test]
    fn the_range_reads_as_the_times_it_holds() {
        let r = TimeRange::new(Some(T), None).unwrap();
        assert_eq!(r.to_string(), "from 2026-12-02T01:05:29.479711000Z");
        let r = TimeRange::new(Some(T), Some(T + 1_000_000_000)).unwrap();
        assert_eq!(
            r.to_string(),
            "from 2026-12-02T01:05:29.479711000Z until 2026-12-02T01:05:30.479711000Z"
        );
        let r = TimeRange::new(None, Some(T)).unwrap();
        assert_eq!(r.to_string(), "until 2026-12-02T01:05:29.479711000Z");
    }
}
