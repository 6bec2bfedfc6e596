//! Consumption tax: rates by date, and the tax of a statement computed once per rate.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::{Line, Versioned, Yen};

/// How a line is taxed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaxCategory {
    /// Consumption tax at the standard rate in force on the line's date.
    Standard,
    /// Outside the scope of consumption tax (不課税), such as a fee that compensates for lost
    /// profit.
    NonTaxable,
}

/// A consumption-tax rate, in whole percent (10 since 1 October 2019; 8 and 5 before).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TaxRate {
    /// The rate in percent.
    pub percent: u32,
}

/// The standard rate by effective date.
pub type TaxRates = Versioned<TaxRate>;

impl TaxRates {
    /// Japan's standard rates: 5 % from 1997-04-01, 8 % from 2014-04-01, 10 % from 2019-10-01.
    pub fn japan() -> TaxRates {
        let d = |y, m| NaiveDate::from_ymd_opt(y, m, 1).expect("valid date");
        Versioned {
            versions: vec![
                (d(1997, 4), TaxRate { percent: 5 }),
                (d(2014, 4), TaxRate { percent: 8 }),
                (d(2019, 10), TaxRate { percent: 10 }),
            ],
        }
    }
}

/// How the tax of a rate's subtotal is brought to whole yen (the issuer's choice).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Rounding {
    /// Down (切り捨て), the most common.
    #[default]
    Floor,
    /// To the nearest yen, halves away from zero (四捨五入).
    HalfUp,
    /// Up (切り上げ).
    Ceil,
}

/// The tax on `subtotal` at `rate`, rounded once.
pub fn tax(subtotal: Yen, rate: TaxRate, rounding: Rounding) -> Yen {
    let scaled = i128::from(subtotal) * i128::from(rate.percent);
    let t = match rounding {
        Rounding::Floor => scaled.div_euclid(100),
        Rounding::Ceil => -(-scaled).div_euclid(100),
        Rounding::HalfUp if scaled >= 0 => (scaled + 50).div_euclid(100),
        Rounding::HalfUp => -((-scaled + 50).div_euclid(100)),
    };
    Yen::try_from(t).unwrap_or(if t > 0 { Yen::MAX } else { Yen::MIN })
}

/// The taxed subtotal of one rate on a statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateTotal {
    /// The rate.
    pub rate: TaxRate,
    /// The sum of the lines at this rate, before tax.
    pub subtotal: Yen,
    /// The tax on that sum, rounded once.
    pub tax: Yen,
}

/// A statement's totals, as a qualified invoice shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Per rate, highest rate first.
    pub by_rate: Vec<RateTotal>,
    /// The sum of the lines outside the scope of the tax.
    pub non_taxable: Yen,
    /// Everything: the subtotals, their tax and the non-taxable lines.
    pub total: Yen,
}

/// Totals of `lines`: taxable lines grouped by the rate in force on each line's first day,
/// each group's tax computed once on its sum — never the sum of per-line taxes.
/// `None` if a taxable line falls on a day before the first rate known.
pub fn totals(lines: &[Line], rates: &TaxRates, rounding: Rounding) -> Option<Totals> {
    let mut by_rate: Vec<RateTotal> = Vec::new();
    let mut non_taxable = 0;
    for line in lines {
        match line.category {
            TaxCategory::NonTaxable => non_taxable += line.amount,
            TaxCategory::Standard => {
                let rate = *rates.on(line.from)?;
                match by_rate.iter_mut().find(|r| r.rate == rate) {
                    Some(r) => r.subtotal += line.amount,
                    None => by_rate.push(RateTotal { rate, subtotal: line.amount, tax: 0 }),
                }
            }
        }
    }
    by_rate.sort_by_key(|r| std::cmp::Reverse(r.rate));
    for r in &mut by_rate {
        r.tax = tax(r.subtotal, r.rate, rounding);
    }
    let total = by_rate.iter().map(|r| r.subtotal + r.tax).sum::<Yen>() + non_taxable;
    Some(Totals { by_rate, non_taxable, total })
}
