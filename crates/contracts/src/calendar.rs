//! The operator's calendar: the day a contract starts and ends is a day where the operator is
//! (`[operator] timezone`, Asia/Tokyo by default, like the customers of the seed), not in UTC —
//! computed here and nowhere else.

use chrono::{NaiveDate, Utc};
use chrono_tz::Tz;

/// The operator's time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Calendar {
    tz: Tz,
}

impl Default for Calendar {
    /// Asia/Tokyo.
    fn default() -> Self {
        Calendar { tz: chrono_tz::Asia::Tokyo }
    }
}

impl Calendar {
    /// The calendar of the IANA zone `name` (`Asia/Tokyo`, `UTC`, `Europe/Berlin` …).
    pub fn named(name: &str) -> Result<Calendar, String> {
        name.parse::<Tz>()
            .map(|tz| Calendar { tz })
            .map_err(|_| format!("{name:?} is not an IANA time zone (like \"Asia/Tokyo\" or \"UTC\")"))
    }

    /// Today where the operator is (on the clock shifted by [`test_clock_offset`]).
    pub fn today(&self) -> NaiveDate {
        self.day_of(Utc::now() + chrono::Duration::seconds(test_clock_offset()))
    }

    /// The operator's day at instant `at`.
    pub fn day_of(&self, at: chrono::DateTime<Utc>) -> NaiveDate {
        at.with_timezone(&self.tz).date_naive()
    }

    /// The zone's name.
    pub fn name(&self) -> &'static str {
        self.tz.name()
    }
}

/// The name of the environment variable that shifts the calendar's clock.
pub const TEST_CLOCK_VARIABLE: &str = "MXSHIELD_TEST_CLOCK_OFFSET";

/// Seconds added to the system clock before it is read as a day, from the environment variable
/// `MXSHIELD_TEST_CLOCK_OFFSET` (0 when unset or not a number): for black-box tests that need
/// the operator's day to change while a gateway runs. Never for production — `serve` logs a
/// warning when it is set.
pub fn test_clock_offset() -> i64 {
    static OFFSET: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *OFFSET.get_or_init(|| std::env::var(TEST_CLOCK_VARIABLE).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A contract starting on 2026-12-01 is in force from midnight Japan time, which is
    /// 15:00 UTC the day before.
    #[test]
    fn the_day_is_the_operators() {
        let tokyo = Calendar::default();
        let at = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let dec1 = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        assert_eq!(tokyo.day_of(at("2026-11-30T15:00:00Z")), dec1);
        assert_eq!(tokyo.day_of(at("2026-11-30T14:59:59Z")), dec1.pred_opt().unwrap());
        let utc = Calendar::named("UTC").unwrap();
        assert_eq!(utc.day_of(at("2026-11-30T15:00:00Z")), dec1.pred_opt().unwrap());
        assert!(Calendar::named("Mars/Olympus").is_err());
    }
}
