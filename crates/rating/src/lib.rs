//! Rating: what a contract costs, month by month — pure functions over integer yen and calendar
//! days, no storage and no clock.
//!
//! - [`PriceTable`]: account-count ranges → monthly fee (before tax), the minimum term, the
//!   early-termination fee rule, proration; [`PriceTable::validate`] gives every error at once.
//! - [`min_term_end`], [`early_termination_fee`]: the minimum term and the fee for leaving
//!   before its end.
//! - [`month_lines`]: a contract's statement lines for one month, split at its revisions.
//! - [`tax`]: consumption tax, computed **once per rate** on a statement's subtotal with the
//!   issuer's rounding (Japan's qualified-invoice rule), never by summing per-line taxes.
//! - [`operator_today`]: the operator's calendar day, the same on every node.
//!
//! Dates are calendar days in the operator's time zone; an interval `[from, until)` includes
//! `from` and excludes `until` (a contract whose service ends on day `d` has no service on `d`).

mod lines;
mod tax;

pub use lines::{ContractTimeline, Line, LineKind, RatingError, Revision, month_lines};
pub use tax::{RateTotal, Rounding, TaxCategory, TaxRate, TaxRates, Totals, tax, totals};

use chrono::{DateTime, Months, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// An amount of money in yen (consumption tax is never included unless said).
pub type Yen = i64;

/// One range of a price table: `min_accounts..=max_accounts` (no upper bound if `None`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tier {
    /// The smallest account count of the range.
    pub min_accounts: u32,
    /// The largest, if any.
    pub max_accounts: Option<u32>,
    /// The monthly fee, before tax.
    pub monthly_fee: Yen,
}

/// How the fee of a month with less than a whole month of service, or with a change, is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Proration {
    /// Any day of service costs the month's whole fee, at the tier in force on the last day of
    /// service in the month.
    #[default]
    None,
    /// Each part of the month costs its share by days: `floor(fee × days / days_in_month)`.
    Daily,
}

/// What leaving before the end of the minimum term costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EarlyTermination {
    /// A fixed amount ("当社所定の違約金").
    Fixed(Yen),
    /// The unused share of the minimum term: `floor(fee × days left / days of the term)`.
    RemainingMinTerm,
}

/// A price table as in force from a date ([`Versioned`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceTable {
    /// The ranges, by account count.
    pub tiers: Vec<Tier>,
    /// The minimum term in months (1 in the seed's terms).
    pub min_term_months: u32,
    /// The fee for cancelling before the minimum term ends.
    pub early_termination: EarlyTermination,
    /// The tax category of that fee (outside the scope of consumption tax unless the operator's
    /// adviser says otherwise).
    pub early_termination_tax: TaxCategory,
    /// How partial months are counted.
    pub proration: Proration,
}

/// Why a price table cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// There are no ranges.
    #[error("the price table has no ranges")]
    Empty,
    /// A range ends before it starts.
    #[error("range {0}: max_accounts is below min_accounts")]
    Backwards(usize),
    /// The ranges do not start at one account.
    #[error("the first range must start at 1 account (it starts at {0})")]
    FirstNotOne(u32),
    /// Two ranges overlap or leave a gap.
    #[error("range {0} must start right after the range before it ends (at {1})")]
    NotContiguous(usize, u32),
    /// A range other than the last has no upper bound.
    #[error("range {0} has no max_accounts but is not the last")]
    OpenNotLast(usize),
    /// A negative amount.
    #[error("range {0}: a fee cannot be negative")]
    NegativeFee(usize),
    /// A negative early-termination fee.
    #[error("the early-termination fee cannot be negative")]
    NegativeTerminationFee,
}

impl PriceTable {
    /// Every error of the table (empty: usable). The ranges must start at 1, follow each other
    /// without gap or overlap, and only the last may be open-ended.
    pub fn validate(&self) -> Vec<TableError> {
        let mut errors = Vec::new();
        if self.tiers.is_empty() {
            errors.push(TableError::Empty);
        }
        let mut expected = 1u32;
        for (i, t) in self.tiers.iter().enumerate() {
            if i == 0 && t.min_accounts != 1 {
                errors.push(TableError::FirstNotOne(t.min_accounts));
            } else if i > 0 && t.min_accounts != expected {
                errors.push(TableError::NotContiguous(i, expected));
            }
            if t.max_accounts.is_some_and(|m| m < t.min_accounts) {
                errors.push(TableError::Backwards(i));
            }
            if t.max_accounts.is_none() && i + 1 != self.tiers.len() {
                errors.push(TableError::OpenNotLast(i));
            }
            if t.monthly_fee < 0 {
                errors.push(TableError::NegativeFee(i));
            }
            expected = t.max_accounts.map_or(u32::MAX, |m| m.saturating_add(1));
        }
        if matches!(self.early_termination, EarlyTermination::Fixed(n) if n < 0) {
            errors.push(TableError::NegativeTerminationFee);
        }
        errors
    }

    /// The range holding `accounts` (the contracted number, not the number registered).
    pub fn tier(&self, accounts: u32) -> Option<&Tier> {
        self.tiers.iter().find(|t| t.min_accounts <= accounts && t.max_accounts.is_none_or(|m| accounts <= m))
    }

    /// Whether going from `from` to `to` accounts moves the contract into another range — a
    /// contract change in the seed's terms, not a mere adjustment.
    pub fn changes_tier(&self, from: u32, to: u32) -> bool {
        self.tier(from) != self.tier(to)
    }
}

/// Something that changes on dates: each value in force from its date until the next one's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
pub struct Versioned<T> {
    /// `(effective_from, value)`, in any order.
    pub versions: Vec<(NaiveDate, T)>,
}

impl<T> Default for Versioned<T> {
    fn default() -> Self {
        Versioned { versions: Vec::new() }
    }
}

impl<T> Versioned<T> {
    /// The value in force on `day`: the one with the latest date not after it.
    pub fn on(&self, day: NaiveDate) -> Option<&T> {
        self.versions.iter().filter(|(from, _)| *from <= day).max_by_key(|(from, _)| *from).map(|(_, v)| v)
    }
}

/// The operator's price tables by name, each versioned by date: a contract names the one it is
/// billed by (`price_table`), or is billed by [`PriceBook::DEFAULT`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PriceBook {
    /// Each table's versions, by name.
    pub tables: std::collections::BTreeMap<String, Versioned<PriceTable>>,
}

impl PriceBook {
    /// The table a contract that names none is billed by.
    pub const DEFAULT: &'static str = "standard";

    /// The table `name` (`None`: the default one).
    pub fn table(&self, name: Option<&str>) -> Option<&Versioned<PriceTable>> {
        self.tables.get(name.unwrap_or(Self::DEFAULT))
    }

    /// Whether no table is configured (billing not in use).
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    /// The tables' names, for messages.
    pub fn names(&self) -> Vec<&str> {
        self.tables.keys().map(String::as_str).collect()
    }
}

/// The first day after a minimum term of `months` that started on `starts` (the day the
/// contract may end without a fee). A month later on a day the next month lacks is its last
/// day: 31 January + 1 month = 28 (or 29) February.
pub fn min_term_end(starts: NaiveDate, months: u32) -> NaiveDate {
    starts.checked_add_months(Months::new(months)).unwrap_or(NaiveDate::MAX)
}

/// The fee for ending service on `ends` (the first day without service) a contract that
/// started on `starts`, whose monthly fee in force is `monthly_fee`: zero from the end of the
/// minimum term on.
pub fn early_termination_fee(table: &PriceTable, starts: NaiveDate, ends: NaiveDate, monthly_fee: Yen) -> Yen {
    let term_end = min_term_end(starts, table.min_term_months);
    if ends >= term_end {
        return 0;
    }
    match table.early_termination {
        EarlyTermination::Fixed(n) => n,
        EarlyTermination::RemainingMinTerm => {
            let left = days(ends.max(starts), term_end);
            let whole = days(starts, term_end).max(1);
            // the minimum term may be several months: its fee is that many monthly fees
            let term_fee = monthly_fee.saturating_mul(i64::from(table.min_term_months));
            term_fee.saturating_mul(left) / whole
        }
    }
}

/// Days in `[from, until)`.
pub(crate) fn days(from: NaiveDate, until: NaiveDate) -> i64 {
    (until - from).num_days().max(0)
}

/// The operator's calendar day at `now` in time zone `tz` — what "today" means for effective
/// dates, on every node alike.
pub fn operator_today(now: DateTime<Utc>, tz: chrono_tz::Tz) -> NaiveDate {
    now.with_timezone(&tz).date_naive()
}

/// The first day of the month holding `day`, and of the month after it.
pub fn month_bounds(day: NaiveDate) -> (NaiveDate, NaiveDate) {
    let first = day.with_day0(0).expect("day 1 exists");
    (first, first.checked_add_months(Months::new(1)).unwrap_or(NaiveDate::MAX))
}

use chrono::Datelike;

#[cfg(test)]
mod tests;
