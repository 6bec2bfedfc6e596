//! A contract's statement lines for one month.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::{PriceTable, Proration, TaxCategory, Versioned, Yen, days, month_bounds};

/// A revision of a contract: from its effective day, the contract is for this many accounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revision {
    /// The day it takes effect.
    pub effective_from: NaiveDate,
    /// The contracted number of accounts (what the price depends on; not the number
    /// registered).
    pub accounts_limit: u32,
    /// Withdrawn before it took effect: as if it had never been made.
    pub withdrawn: bool,
}

/// What rating needs of a contract.
#[derive(Debug, Clone)]
pub struct ContractTimeline<'a> {
    /// Its id (carried into its lines).
    pub contract: String,
    /// The first day of service.
    pub starts: NaiveDate,
    /// The first day without service (its cancellation's effective day), if it ends.
    pub ends: Option<NaiveDate>,
    /// Its revisions; the first in force is the one at `starts`.
    pub revisions: Vec<Revision>,
    /// Its price table's versions.
    pub table: &'a Versioned<PriceTable>,
    /// The early-termination fee recorded with its cancellation (the quoted figure), if any.
    pub termination_fee: Option<Yen>,
}

/// What a line charges for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineKind {
    /// Service over `[from, until)`.
    Service,
    /// Leaving before the end of the minimum term.
    EarlyTermination,
}

/// One line of a statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    /// The contract.
    pub contract: String,
    /// What for.
    pub kind: LineKind,
    /// The first day it covers.
    pub from: NaiveDate,
    /// The day after the last day it covers.
    pub until: NaiveDate,
    /// The contracted accounts (service lines).
    pub accounts: u32,
    /// The monthly fee of the range those accounts fall in (service lines).
    pub monthly_fee: Yen,
    /// The amount charged, before tax.
    pub amount: Yen,
    /// How it is taxed.
    pub category: TaxCategory,
}

/// Why a month cannot be rated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RatingError {
    /// No price table version is in force on a day of service.
    #[error("contract {contract}: no price table in force on {day}")]
    NoTable {
        /// The contract.
        contract: String,
        /// The day.
        day: NaiveDate,
    },
    /// No revision is in force on a day of service.
    #[error("contract {contract}: no revision in force on {day}")]
    NoRevision {
        /// The contract.
        contract: String,
        /// The day.
        day: NaiveDate,
    },
    /// The contracted accounts fall in no range of the table.
    #[error("contract {contract}: {accounts} accounts fall in no range of the price table in force on {day}")]
    NoTier {
        /// The contract.
        contract: String,
        /// The accounts.
        accounts: u32,
        /// The day.
        day: NaiveDate,
    },
}

impl ContractTimeline<'_> {
    fn revision_on(&self, day: NaiveDate) -> Option<&Revision> {
        self.revisions
            .iter()
            .filter(|r| !r.withdrawn && r.effective_from <= day.max(self.starts))
            .max_by_key(|r| r.effective_from)
    }

    /// (accounts, monthly fee, the table) in force on `day`.
    fn priced_on(&self, day: NaiveDate) -> Result<(u32, Yen, &PriceTable), RatingError> {
        let contract = self.contract.clone();
        let rev = self.revision_on(day).ok_or(RatingError::NoRevision { contract: contract.clone(), day })?;
        let table = self.table.on(day).ok_or(RatingError::NoTable { contract: contract.clone(), day })?;
        let tier = table.tier(rev.accounts_limit).ok_or(RatingError::NoTier {
            contract,
            accounts: rev.accounts_limit,
            day,
        })?;
        Ok((rev.accounts_limit, tier.monthly_fee, table))
    }
}

/// The lines of the month holding `month` for one contract: its service in that month, split
/// where a revision or a price-table version takes effect (adjacent parts at the same price
/// are one line), and its early-termination fee in the month its service ends.
///
/// With [`Proration::None`] (the table in force on the last day of service in the month
/// decides) the month costs one whole monthly fee at the range in force on that last day;
/// with [`Proration::Daily`] each part costs `floor(fee × days / days in the month)`.
pub fn month_lines(t: &ContractTimeline<'_>, month: NaiveDate) -> Result<Vec<Line>, RatingError> {
    let (m0, m1) = month_bounds(month);
    let from = t.starts.max(m0);
    let until = t.ends.unwrap_or(NaiveDate::MAX).min(m1);
    let mut lines = Vec::new();
    if from < until {
        let last_day = until.pred_opt().expect("until > from");
        let (accounts, fee, table) = t.priced_on(last_day)?;
        // (from, until, accounts, monthly fee) of each part at one price
        let mut parts: Vec<(NaiveDate, NaiveDate, u32, Yen)> = Vec::new();
        match table.proration {
            Proration::None => parts.push((from, until, accounts, fee)),
            Proration::Daily => {
                let mut cuts: Vec<NaiveDate> = t
                    .revisions
                    .iter()
                    .filter(|r| !r.withdrawn)
                    .map(|r| r.effective_from)
                    .chain(t.table.versions.iter().map(|(d, _)| *d))
                    .filter(|d| *d > from && *d < until)
                    .collect();
                cuts.push(from);
                cuts.push(until);
                cuts.sort();
                cuts.dedup();
                for w in cuts.windows(2) {
                    let (accounts, fee, _) = t.priced_on(w[0])?;
                    match parts.last_mut() {
                        Some(p) if p.2 == accounts && p.3 == fee => p.1 = w[1],
                        _ => parts.push((w[0], w[1], accounts, fee)),
                    }
                }
            }
        }
        let month_days = days(m0, m1);
        for (from, until, accounts, fee) in parts {
            let amount = match table.proration {
                Proration::None => fee,
                Proration::Daily => fee.saturating_mul(days(from, until)) / month_days,
            };
            lines.push(Line {
                contract: t.contract.clone(),
                kind: LineKind::Service,
                from,
                until,
                accounts,
                monthly_fee: fee,
                amount,
                category: TaxCategory::Standard,
            });
        }
    }
    if let (Some(ends), Some(fee)) = (t.ends, t.termination_fee)
        && fee != 0
        && ends >= m0
        && ends < m1
    {
        let day = ends.pred_opt().unwrap_or(ends).max(t.starts);
        let category = t.table.on(day).map_or(TaxCategory::NonTaxable, |tb| tb.early_termination_tax);
        lines.push(Line {
            contract: t.contract.clone(),
            kind: LineKind::EarlyTermination,
            from: ends,
            until: ends,
            accounts: 0,
            monthly_fee: 0,
            amount: fee,
            category,
        });
    }
    Ok(lines)
}
