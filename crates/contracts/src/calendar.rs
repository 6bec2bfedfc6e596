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

    /// Today where the operator is.
    pub fn today(&self) -> NaiveDate {
        self.day_of(Utc::now())
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
