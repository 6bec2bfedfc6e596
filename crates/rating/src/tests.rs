use super::*;
use chrono::TimeZone;

fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).unwrap()
}

fn table(proration: Proration, etf: EarlyTermination) -> PriceTable {
    PriceTable {
        tiers: vec![
            Tier { min_accounts: 1, max_accounts: Some(10), monthly_fee: 3_000 },
            Tier { min_accounts: 11, max_accounts: Some(50), monthly_fee: 8_000 },
            Tier { min_accounts: 51, max_accounts: None, monthly_fee: 20_000 },
        ],
        min_term_months: 1,
        early_termination: etf,
        early_termination_tax: TaxCategory::NonTaxable,
        proration,
    }
}

fn since(day: NaiveDate, t: PriceTable) -> Versioned<PriceTable> {
    Versioned { versions: vec![(day, t)] }
}

fn rev(day: NaiveDate, accounts: u32) -> Revision {
    Revision { effective_from: day, accounts_limit: accounts, withdrawn: false }
}

fn timeline<'a>(
    starts: NaiveDate,
    ends: Option<NaiveDate>,
    revisions: Vec<Revision>,
    table: &'a Versioned<PriceTable>,
) -> ContractTimeline<'a> {
    ContractTimeline { contract: "c1".into(), starts, ends, revisions, table, termination_fee: None }
}

/// (from, until, accounts, amount) of each line.
fn summary(lines: &[Line]) -> Vec<(NaiveDate, NaiveDate, u32, Yen)> {
    lines.iter().map(|l| (l.from, l.until, l.accounts, l.amount)).collect()
}

#[test]
fn tax_is_rounded_once_per_rate_not_per_line() {
    // 3 x 105 yen at 10 %, rounded down: 31 on the sum; per line it would be 3 x 10 = 30
    let lines: Vec<Line> = (0..3)
        .map(|i| Line {
            contract: format!("c{i}"),
            kind: LineKind::Service,
            from: d(2026, 12, 1),
            until: d(2027, 1, 1),
            accounts: 1,
            monthly_fee: 105,
            amount: 105,
            category: TaxCategory::Standard,
        })
        .collect();
    let t = totals(&lines, &TaxRates::japan(), Rounding::Floor).unwrap();
    assert_eq!(t.by_rate, vec![RateTotal { rate: TaxRate { percent: 10 }, subtotal: 315, tax: 31 }]);
    assert_eq!(t.total, 346);
    let per_line: Yen = lines.iter().map(|l| tax(l.amount, TaxRate { percent: 10 }, Rounding::Floor)).sum();
    assert_eq!(per_line, 30, "the wrong way, for contrast");
}

#[test]
fn tax_rounding_modes() {
    let ten = TaxRate { percent: 10 };
    // (subtotal, floor, half-up, ceil)
    for (subtotal, floor, half_up, ceil) in [
        (0, 0, 0, 0),
        (315, 31, 32, 32),
        (314, 31, 31, 32),
        (310, 31, 31, 31),
        (105, 10, 11, 11),
        (104, 10, 10, 11),
        (-315, -32, -32, -31),
        (i64::MAX, i64::MAX / 10, i64::MAX / 10 + 1, i64::MAX / 10 + 1),
    ] {
        assert_eq!(tax(subtotal, ten, Rounding::Floor), floor, "floor {subtotal}");
        assert_eq!(tax(subtotal, ten, Rounding::HalfUp), half_up, "half-up {subtotal}");
        assert_eq!(tax(subtotal, ten, Rounding::Ceil), ceil, "ceil {subtotal}");
    }
}

#[test]
fn lines_across_a_rate_change_are_taxed_at_their_own_rate() {
    let line = |from: NaiveDate, amount| Line {
        contract: "c".into(),
        kind: LineKind::Service,
        from,
        until: from,
        accounts: 1,
        monthly_fee: amount,
        amount,
        category: TaxCategory::Standard,
    };
    let etf =
        Line { category: TaxCategory::NonTaxable, kind: LineKind::EarlyTermination, ..line(d(2019, 10, 20), 5_000) };
    let lines = [line(d(2019, 9, 1), 1_001), line(d(2019, 10, 1), 1_001), etf];
    let t = totals(&lines, &TaxRates::japan(), Rounding::Floor).unwrap();
    assert_eq!(
        t.by_rate,
        vec![
            RateTotal { rate: TaxRate { percent: 10 }, subtotal: 1_001, tax: 100 },
            RateTotal { rate: TaxRate { percent: 8 }, subtotal: 1_001, tax: 80 },
        ]
    );
    assert_eq!(t.non_taxable, 5_000);
    assert_eq!(t.total, 1_001 + 100 + 1_001 + 80 + 5_000);
    // a taxable line before any known rate cannot be taxed
    assert!(totals(&[line(d(1990, 1, 1), 1)], &TaxRates::japan(), Rounding::Floor).is_none());
}

#[test]
fn price_ranges_by_contracted_accounts() {
    let t = table(Proration::None, EarlyTermination::Fixed(0));
    assert!(t.validate().is_empty());
    for (accounts, fee) in [
        (1, Some(3_000)),
        (10, Some(3_000)),
        (11, Some(8_000)),
        (50, Some(8_000)),
        (51, Some(20_000)),
        (100_000, Some(20_000)),
        (0, None),
    ] {
        assert_eq!(t.tier(accounts).map(|t| t.monthly_fee), fee, "{accounts} accounts");
    }
    // the seed: a change of account count is a contract change only across a range boundary
    assert!(!t.changes_tier(3, 10));
    assert!(t.changes_tier(10, 11));
    assert!(t.changes_tier(60, 50));
}

#[test]
fn a_bad_price_table_gives_every_error_at_once() {
    let bad = PriceTable {
        tiers: vec![
            Tier { min_accounts: 2, max_accounts: Some(10), monthly_fee: 3_000 },
            Tier { min_accounts: 10, max_accounts: None, monthly_fee: -1 },
            Tier { min_accounts: 30, max_accounts: Some(20), monthly_fee: 1 },
        ],
        early_termination: EarlyTermination::Fixed(-5),
        ..table(Proration::None, EarlyTermination::Fixed(0))
    };
    assert_eq!(
        bad.validate(),
        vec![
            TableError::FirstNotOne(2),
            TableError::NotContiguous(1, 11),
            TableError::OpenNotLast(1),
            TableError::NegativeFee(1),
            TableError::NotContiguous(2, u32::MAX),
            TableError::Backwards(2),
            TableError::NegativeTerminationFee,
        ]
    );
    assert_eq!(
        PriceTable { tiers: vec![], ..table(Proration::None, EarlyTermination::Fixed(0)) }.validate(),
        vec![TableError::Empty]
    );
}

#[test]
fn the_minimum_term_ends_a_calendar_month_later_clamped_to_the_month_end() {
    for (starts, end) in [
        (d(2026, 12, 15), d(2027, 1, 15)),
        (d(2027, 1, 31), d(2027, 2, 28)),
        (d(2028, 1, 31), d(2028, 2, 29)),
        (d(2027, 3, 31), d(2027, 4, 30)),
        (d(2026, 12, 31), d(2027, 1, 31)),
    ] {
        assert_eq!(min_term_end(starts, 1), end, "from {starts}");
    }
    assert_eq!(min_term_end(d(2027, 1, 31), 3), d(2027, 4, 30));
}

#[test]
fn leaving_before_the_minimum_term_ends_costs_the_fee() {
    let fixed = table(Proration::None, EarlyTermination::Fixed(5_000));
    let starts = d(2027, 1, 31); // the term runs to the end of 27 February; 28 February is free
    // service ending on `ends` means the last day of service is the day before
    assert_eq!(early_termination_fee(&fixed, starts, d(2027, 2, 27), 3_000), 5_000, "one day short");
    assert_eq!(early_termination_fee(&fixed, starts, d(2027, 2, 28), 3_000), 0, "the whole term served");
    assert_eq!(early_termination_fee(&fixed, starts, d(2027, 6, 1), 3_000), 0);
    // the unused share of the term: 31 days from 1 December; leaving on the 21st leaves 11
    let share = table(Proration::None, EarlyTermination::RemainingMinTerm);
    assert_eq!(early_termination_fee(&share, d(2026, 12, 1), d(2026, 12, 21), 3_000), 3_000 * 11 / 31);
    assert_eq!(early_termination_fee(&share, d(2026, 12, 1), d(2026, 12, 31), 3_000), 96);
    assert_eq!(early_termination_fee(&share, d(2026, 12, 1), d(2027, 1, 1), 3_000), 0);
    // cancelled before it started: the whole term
    assert_eq!(early_termination_fee(&share, d(2026, 12, 10), d(2026, 12, 10), 3_000), 3_000);
}

#[test]
fn a_contract_starting_on_the_31st() {
    let start = d(2027, 1, 31);
    for (proration, january, february) in [(Proration::None, 3_000, 3_000), (Proration::Daily, 3_000 / 31, 3_000)] {
        let tb = since(d(2020, 1, 1), table(proration, EarlyTermination::Fixed(5_000)));
        let t = timeline(start, None, vec![rev(start, 5)], &tb);
        assert_eq!(summary(&month_lines(&t, d(2027, 1, 1)).unwrap()), vec![(start, d(2027, 2, 1), 5, january)]);
        assert_eq!(
            summary(&month_lines(&t, d(2027, 2, 14)).unwrap()),
            vec![(d(2027, 2, 1), d(2027, 3, 1), 5, february)]
        );
        assert!(month_lines(&t, d(2026, 12, 1)).unwrap().is_empty(), "no service before the start");
    }
}

#[test]
fn a_change_on_the_first_and_one_mid_month() {
    let start = d(2027, 1, 10);
    for proration in [Proration::None, Proration::Daily] {
        let tb = since(d(2020, 1, 1), table(proration, EarlyTermination::Fixed(0)));
        // from 5 accounts (3,000 yen) to 20 (8,000 yen) on 1 March: February and March are whole
        let t = timeline(start, None, vec![rev(start, 5), rev(d(2027, 3, 1), 20)], &tb);
        assert_eq!(summary(&month_lines(&t, d(2027, 2, 1)).unwrap()), vec![(d(2027, 2, 1), d(2027, 3, 1), 5, 3_000)]);
        assert_eq!(summary(&month_lines(&t, d(2027, 3, 1)).unwrap()), vec![(d(2027, 3, 1), d(2027, 4, 1), 20, 8_000)]);
    }
    // the same change on 16 March (31 days: 15 at the old price, 16 at the new)
    let mid = |proration| {
        let tb = since(d(2020, 1, 1), table(proration, EarlyTermination::Fixed(0)));
        let t = timeline(start, None, vec![rev(start, 5), rev(d(2027, 3, 16), 20)], &tb);
        summary(&month_lines(&t, d(2027, 3, 1)).unwrap())
    };
    assert_eq!(
        mid(Proration::Daily),
        vec![(d(2027, 3, 1), d(2027, 3, 16), 5, 3_000 * 15 / 31), (d(2027, 3, 16), d(2027, 4, 1), 20, 8_000 * 16 / 31)]
    );
    // without proration the range in force on the last day of service decides the month
    assert_eq!(mid(Proration::None), vec![(d(2027, 3, 1), d(2027, 4, 1), 20, 8_000)]);
}

#[test]
fn a_withdrawn_change_is_as_if_never_made() {
    let start = d(2027, 1, 10);
    let tb = since(d(2020, 1, 1), table(Proration::Daily, EarlyTermination::Fixed(0)));
    let mut withdrawn = rev(d(2027, 3, 16), 20);
    withdrawn.withdrawn = true;
    let t = timeline(start, None, vec![rev(start, 5), withdrawn], &tb);
    assert_eq!(summary(&month_lines(&t, d(2027, 3, 1)).unwrap()), vec![(d(2027, 3, 1), d(2027, 4, 1), 5, 3_000)]);
}

#[test]
fn a_new_price_table_version_mid_month_splits_only_if_the_price_changes() {
    let start = d(2027, 1, 1);
    let mut dearer = table(Proration::Daily, EarlyTermination::Fixed(0));
    dearer.tiers[0].monthly_fee = 3_100;
    let same = table(Proration::Daily, EarlyTermination::Fixed(0));
    let versions =
        Versioned { versions: vec![(d(2020, 1, 1), same.clone()), (d(2027, 4, 11), same), (d(2027, 4, 21), dearer)] };
    let t = timeline(start, None, vec![rev(start, 5)], &versions);
    assert_eq!(
        summary(&month_lines(&t, d(2027, 4, 1)).unwrap()),
        vec![(d(2027, 4, 1), d(2027, 4, 21), 5, 3_000 * 20 / 30), (d(2027, 4, 21), d(2027, 5, 1), 5, 3_100 * 10 / 30)]
    );
}

#[test]
fn a_cancellation_ends_service_and_bills_its_fee_in_its_month() {
    let start = d(2027, 1, 31);
    let ends = d(2027, 2, 27); // one day short of the minimum term
    for (proration, february) in [(Proration::None, 3_000), (Proration::Daily, 3_000 * 26 / 28)] {
        let tb = since(d(2020, 1, 1), table(proration, EarlyTermination::Fixed(5_000)));
        let fee = early_termination_fee(tb.on(ends).unwrap(), start, ends, 3_000);
        let mut t = timeline(start, Some(ends), vec![rev(start, 5)], &tb);
        t.termination_fee = Some(fee);
        let lines = month_lines(&t, d(2027, 2, 1)).unwrap();
        assert_eq!(summary(&lines), vec![(d(2027, 2, 1), ends, 5, february), (ends, ends, 0, 5_000)]);
        assert_eq!(lines[1].kind, LineKind::EarlyTermination);
        assert_eq!(lines[1].category, TaxCategory::NonTaxable);
        assert!(month_lines(&t, d(2027, 3, 1)).unwrap().is_empty(), "nothing after it ends");
        // tax on the service only; the fee outside its scope
        let totals = totals(&lines, &TaxRates::japan(), Rounding::Floor).unwrap();
        assert_eq!(totals.by_rate[0].tax, february / 10);
        assert_eq!(totals.total, february + february / 10 + 5_000);
    }
    // withdrawn cancellation: no end, no fee, the month whole
    let tb = since(d(2020, 1, 1), table(Proration::Daily, EarlyTermination::Fixed(5_000)));
    let t = timeline(start, None, vec![rev(start, 5)], &tb);
    assert_eq!(summary(&month_lines(&t, d(2027, 2, 1)).unwrap()), vec![(d(2027, 2, 1), d(2027, 3, 1), 5, 3_000)]);
    // a taxable fee, where the operator's adviser says so
    let mut taxable = table(Proration::None, EarlyTermination::Fixed(5_000));
    taxable.early_termination_tax = TaxCategory::Standard;
    let tb = since(d(2020, 1, 1), taxable);
    let mut t = timeline(start, Some(ends), vec![rev(start, 5)], &tb);
    t.termination_fee = Some(5_000);
    let lines = month_lines(&t, d(2027, 2, 1)).unwrap();
    let totals = totals(&lines, &TaxRates::japan(), Rounding::Floor).unwrap();
    assert_eq!((totals.by_rate[0].subtotal, totals.by_rate[0].tax, totals.non_taxable), (8_000, 800, 0));
}

#[test]
fn accounts_outside_every_range_are_an_error_not_a_zero() {
    let tb = since(d(2020, 1, 1), table(Proration::None, EarlyTermination::Fixed(0)));
    let t = timeline(d(2027, 1, 1), None, vec![rev(d(2027, 1, 1), 0)], &tb);
    assert!(matches!(month_lines(&t, d(2027, 1, 1)), Err(RatingError::NoTier { accounts: 0, .. })));
    let late = since(d(2027, 6, 1), table(Proration::None, EarlyTermination::Fixed(0)));
    let t = timeline(d(2027, 1, 1), None, vec![rev(d(2027, 1, 1), 3)], &late);
    assert!(matches!(month_lines(&t, d(2027, 1, 1)), Err(RatingError::NoTable { .. })));
}

#[test]
fn today_is_the_operators_calendar_day() {
    let tokyo = chrono_tz::Asia::Tokyo;
    // 23:59 on 31 December in Tokyo is still 2026 there, and 14:59 UTC
    let before = Utc.with_ymd_and_hms(2026, 12, 31, 14, 59, 59).unwrap();
    assert_eq!(operator_today(before, tokyo), d(2026, 12, 31));
    // 00:00 on 1 January in Tokyo, while UTC is still on 31 December
    let after = Utc.with_ymd_and_hms(2026, 12, 31, 15, 0, 0).unwrap();
    assert_eq!(operator_today(after, tokyo), d(2027, 1, 1));
    assert_eq!(after.date_naive(), d(2026, 12, 31));
    assert_eq!(operator_today(after, chrono_tz::UTC), d(2026, 12, 31));
}

#[test]
fn month_bounds_of_any_day() {
    assert_eq!(month_bounds(d(2027, 2, 14)), (d(2027, 2, 1), d(2027, 3, 1)));
    assert_eq!(month_bounds(d(2026, 12, 31)), (d(2026, 12, 1), d(2027, 1, 1)));
}
