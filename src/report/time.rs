//! Timestamp formatting shared by every renderer: RFC 3339 in UTC with nanoseconds, so
//! that reports from different hosts line up and paste unambiguously into tickets.

use chrono::{DateTime, SecondsFormat};

/// `2026-11-23T10:15:02.123456789Z`. Out-of-range values print as raw nanoseconds.
pub fn rfc3339_ns(ns: i64) -> String {
    let dt = DateTime::from_timestamp(
        ns.div_euclid(1_000_000_000),
        ns.rem_euclid(1_000_000_000) as u32,
    );
    match dt {
        Some(dt) => dt.to_rfc3339_opts(SecondsFormat::Nanos, true),
        None => format!("{ns}ns"),
    }
}

/// A duration in seconds with millisecond precision: `0.153s`, `12.000s`.
pub fn secs(ns: i64) -> String {
    let sign = if ns < 0 { "-" } else { "" };
    let a = ns.unsigned_abs();
    format!(
        "{sign}{}.{:03}s",
        a / 1_000_000_000,
        (a % 1_000_000_000) / 1_000_000
    )
}

/// A short duration for latencies: `37µs`, `1.204ms`, `2.500s`.
pub fn short(ns: i64) -> String {
    let a = ns.unsigned_abs();
    let sign = if ns < 0 { "-" } else { "" };
    if a < 1_000_000 {
        format!("{sign}{}µs", a / 1_000)
    } else if a < 1_000_000_000 {
        format!("{sign}{}.{:03}ms", a / 1_000_000, (a % 1_000_000) / 1_000)
    } else {
        format!("{sign}{}", secs(a as i64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(
            rfc3339_ns(1_700_000_000_123_456_789),
            "2023-11-14T22:13:20.123456789Z"
        );
        assert_eq!(rfc3339_ns(-1), "1969-12-31T23:59:59.999999999Z");
        assert_eq!(secs(1_500_000_000), "1.500s");
        assert_eq!(secs(-2_000_000), "-0.002s");
        assert_eq!(short(37_000), "37µs");
        assert_eq!(short(1_204_000), "1.204ms");
    }
}
