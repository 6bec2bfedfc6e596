//! The command line: configuration errors, contracts and queue commands, defaults.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use testkit::TempDir;
use testkit::client::{RawClient, message, send_one};
use testkit::sink::{Behaviour, Sink};

fn run(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).current_dir(dir).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// `mxshield --config m.toml ARGS…` in `dir`.
fn run_m(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["--config", "m.toml"];
    all.extend_from_slice(args);
    run(dir, &all)
}

/// [`run_m`], which must succeed; its output.
fn ok_m(dir: &Path, args: &[&str]) -> String {
    let (code, out, err) = run_m(dir, args);
    assert_eq!(code, 0, "{args:?}: {err}");
    out
}

/// The revisions table of `contracts history` (the events follow it after a blank line).
fn revisions_table(history: &str) -> &str {
    history.split("\n\n").next().unwrap()
}

/// Each bad configuration file, and every error line it must print; exit code 2.
#[test]
fn bad_configs_exit_2_with_every_error() {
    let dir = TempDir::new("badconfig");
    let table: &[(&str, &[&str])] = &[
        (
            "data_dir = 1\n[smtp]\nlisten = [\"127.0.0.1\"]\nmax_recipients = 0\n[delivery]\nqueue_lifetime = \"forever\"\nbogus = true\n",
            &[
                "bad.toml:line 1: data_dir: expected a string, found an integer",
                "bad.toml:line 3: smtp.listen: \"127.0.0.1\" is not an address:port",
                "bad.toml:line 4: smtp.max_recipients: must be at least 1",
                "bad.toml:line 6: delivery.queue_lifetime: invalid duration",
                "bad.toml:line 7: delivery.bogus: unknown key",
            ],
        ),
        ("[smtp\nlisten = 1\n", &["bad.toml:line 1: TOML syntax error"]),
        ("[delivery.routes]\n\"x.test\" = \"::bad::\"\n", &["bad.toml:line 2: delivery.routes.x.test: invalid server"]),
        ("[log]\nformat = \"xml\"\n", &["bad.toml:line 2: log.format: \"xml\" is not \"text\" or \"json\""]),
        (
            "[[billing.price_table]]\neffective_from = \"someday\"\nproration = \"weekly\"\n[[billing.price_table.tier]]\nmin_accounts = 2\nmonthly_fee = 100\n",
            &[
                "bad.toml:line 1: billing.price_table[0].tier: the first range must start at 1 account (it starts at 2)",
                "bad.toml:line 2: billing.price_table[0].effective_from: \"someday\" is not a date",
                "bad.toml:line 3: billing.price_table[0].proration: must be \"none\" or \"daily\"",
            ],
        ),
    ];
    for (src, expected) in table {
        std::fs::write(dir.path().join("bad.toml"), src).unwrap();
        for cmd in [&["serve"][..], &["check-config"], &["queue", "list"]] {
            let mut args = vec!["--config", "bad.toml"];
            args.extend_from_slice(cmd);
            let (code, _, err) = run(dir.path(), &args);
            assert_eq!(code, 2, "{cmd:?} with {src:?}: {err}");
            for e in *expected {
                assert!(err.contains(e), "{cmd:?} with {src:?}: missing {e:?} in:\n{err}");
            }
            assert_eq!(err.lines().filter(|l| l.contains("bad.toml:line")).count(), expected.len(), "{err}");
        }
    }
    let (code, _, err) = run(dir.path(), &["--config", "missing.toml", "serve"]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot read missing.toml"));
}

/// `contracts cancel`: the quote first (the early-termination fee from the `[billing]` price
/// table), then the cancellation recorded with its fee, from a later day (withdrawable) or from
/// today; back-dating and unknown contracts refused.
#[test]
fn contracts_cancel_quotes_the_fee_and_records_it() {
    let dir = TempDir::new("contracts-cancel");
    let today = chrono::Utc::now().with_timezone(&chrono_tz::Asia::Tokyo).date_naive();
    let starts = today - chrono::Days::new(5);
    let term_end = starts.checked_add_months(chrono::Months::new(1)).unwrap();
    std::fs::write(
        dir.path().join("m.toml"),
        "data_dir = \"data\"\n[[billing.price_table]]\neffective_from = \"2020-01-01\"\nmin_term_months = 1\nearly_termination_fee = 5000\n\
         [[billing.price_table.tier]]\nmin_accounts = 1\nmax_accounts = 10\nmonthly_fee = 3000\n\
         [[billing.price_table.tier]]\nmin_accounts = 11\nmonthly_fee = 8000\n",
    )
    .unwrap();
    let c = contracts("\"127.0.0.1:2600\"").replace("starts = \"2026-01-01\"", &format!("starts = \"{starts}\""));
    std::fs::write(dir.path().join("c.toml"), c).unwrap();
    let cli = |args: &[&str]| run_m(dir.path(), args);
    assert_eq!(cli(&["contracts", "apply", "c.toml"]).0, 0);
    let soon = (today + chrono::Days::new(3)).to_string();
    // within the minimum term: the fixed fee, outside the scope of the tax; nothing changed
    let (code, out, err) = cli(&["contracts", "cancel", "acme", "--on", &soon, "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("termination fee:   5000 yen (outside the scope") && out.contains("quote only"), "{out}");
    assert!(out.contains("monthly fee 3000 yen"), "{out}");
    // and the last statement's lines as the cancellation makes them: the month, then the fee
    let lines: Vec<&str> = out.lines().skip_while(|l| !l.starts_with("last statement's lines")).skip(1).collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("acme ") && l.contains("accounts at 3000 yen/month") && l.trim_end().ends_with("3000")),
        "{out}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("acme early-termination fee (ends {soon})"))
                && l.ends_with("5000 (non-taxable)")),
        "{out}"
    );
    // from the end of the minimum term: no fee
    let (_, out, _) = cli(&["contracts", "cancel", "acme", "--on", &term_end.to_string(), "--dry-run"]);
    assert!(out.contains("termination fee:   0 yen"), "{out}");
    assert_eq!(
        revisions_table(&cli(&["contracts", "history", "acme"]).1).lines().count(),
        2,
        "a quote records nothing"
    );
    // recorded, from a later day: scheduled, with its fee; then withdrawn
    let (code, out, _) = cli(&["contracts", "cancel", "acme", "--on", &soon, "--reason", "letter of 1 Dec"]);
    assert_eq!(code, 0);
    assert!(out.contains(&format!("cancellation scheduled from {soon}")), "{out}");
    let history = cli(&["contracts", "history", "acme"]).1;
    let last = revisions_table(&history).lines().last().unwrap();
    assert!(last.contains("cancelled (scheduled) (fee 5000 yen)") && last.ends_with("letter of 1 Dec"), "{history}");
    let list = cli(&["contracts", "list"]).1;
    assert!(
        list.contains(&format!("scheduled from {soon} (revision 2)")) && list.contains("cancellation scheduled"),
        "{list}"
    );
    assert_eq!(cli(&["contracts", "withdraw", "acme", "2", "--actor", "suzuki", "--reason", "kept after all"]).0, 0);
    // the history tells who asked for the cancellation and who withdrew it, and why
    let history = cli(&["contracts", "history", "acme"]).1;
    let events = history.split("\n\n").nth(1).unwrap_or_default();
    let requested = events.lines().find(|l| l.contains("cancellation_requested")).unwrap_or_default();
    assert!(requested.contains("5000 yen") && requested.ends_with("letter of 1 Dec"), "{history}");
    let withdrawn = events.lines().find(|l| l.contains("cancellation_withdrawn")).unwrap_or_default();
    assert!(withdrawn.contains("suzuki") && withdrawn.ends_with("kept after all"), "{history}");
    assert!(events.lines().any(|l| l.contains("activated")), "{history}");
    let list = cli(&["contracts", "list"]).1;
    assert!(list.contains(" active ") && !list.contains("cancellation scheduled"), "{list}");
    // refused: a day before today, an unknown contract
    let yesterday = (today - chrono::Days::new(1)).to_string();
    let (code, _, err) = cli(&["contracts", "cancel", "acme", "--on", &yesterday]);
    assert_eq!(code, 2);
    assert!(err.contains("before today") && err.contains("nothing was changed"), "{err}");
    let (code, _, err) = cli(&["contracts", "cancel", "nobody", "--on", &soon]);
    assert_eq!(code, 2);
    assert!(err.contains("no contract \"nobody\""), "{err}");
    // from today: ended at once, the domain no longer active
    let (code, out, _) = cli(&["contracts", "cancel", "acme", "--on", &today.to_string()]);
    assert_eq!(code, 0);
    assert!(out.contains("cancelled from today"), "{out}");
    let list = cli(&["contracts", "list"]).1;
    assert!(list.contains(&format!("{today}")) && list.contains("cancelled"), "{list}");
    let (code, _, err) = cli(&["contracts", "cancel", "acme", "--on", &soon]);
    assert_eq!(code, 2);
    assert!(err.contains("already ends"), "{err}");
}

/// `billing statement`: a month with a change and one with a cancellation, against figures
/// computed by hand — all of it scheduled for a fixed month ahead so that the days are known.
/// Tiers 1–10: 3,000 yen, 11–50: 8,000; daily proration; a two-month minimum term, 5,000 yen
/// (non-taxable) for leaving earlier.
#[test]
fn billing_statement_matches_hand_computed_figures() {
    let dir = TempDir::new("billing-statement");
    std::fs::write(
        dir.path().join("m.toml"),
        "data_dir = \"data\"\n[[billing.price_table]]\neffective_from = \"2020-01-01\"\nmin_term_months = 2\n\
         early_termination_fee = 5000\nproration = \"daily\"\n\
         [[billing.price_table.tier]]\nmin_accounts = 1\nmax_accounts = 10\nmonthly_fee = 3000\n\
         [[billing.price_table.tier]]\nmin_accounts = 11\nmonthly_fee = 8000\n",
    )
    .unwrap();
    let cli = |args: &[&str]| ok_m(dir.path(), args);
    let acme = contracts("\"127.0.0.1:2600\"").replace("starts = \"2026-01-01\"", "starts = \"2031-03-01\"");
    let beta = "[[contract]]\nid = \"beta\"\ncustomer = \"Beta\"\naccounts_limit = 3\nstarts = \"2031-03-01\"\n[[contract.domain]]\nname = \"beta.example\"\nreceiving_servers = [\"127.0.0.1:2601\"]\naccounts = [\"carol\"]\n";
    std::fs::write(dir.path().join("start.toml"), format!("{acme}\n{beta}")).unwrap();
    std::fs::write(dir.path().join("more.toml"), acme.replace("accounts_limit = 5", "accounts_limit = 20")).unwrap();
    cli(&["contracts", "apply", "--on", "2031-03-01", "start.toml"]);
    cli(&["contracts", "apply", "--on", "2031-03-16", "more.toml"]);
    let quote = cli(&["contracts", "cancel", "acme", "--on", "2031-04-10"]);
    assert!(quote.contains("termination fee:   5000 yen"), "{quote}");
    // a withdrawn change is not billed
    std::fs::write(dir.path().join("less.toml"), acme.replace("accounts_limit = 5", "accounts_limit = 2")).unwrap();
    cli(&["contracts", "apply", "--on", "2031-03-20", "less.toml"]);
    let rev = revisions_table(&cli(&["contracts", "history", "acme"]))
        .lines()
        .last()
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    cli(&["contracts", "withdraw", "acme", &rev]);

    let statement = |month: &str| -> serde_json::Value {
        serde_json::from_str(&cli(&["billing", "statement", "--month", month, "--json"])).unwrap()
    };
    let march = statement("2031-03");
    let amounts = |s: &serde_json::Value| -> Vec<i64> {
        s["lines"].as_array().unwrap().iter().map(|l| l["amount"].as_i64().unwrap()).collect()
    };
    // ACME: 15 days at 3,000 and 16 at 8,000 of 31: floor(45,000 / 31), floor(128,000 / 31)
    let acme_march = &march[0];
    assert_eq!(acme_march["customer"], "ACME Corp.");
    assert_eq!(amounts(acme_march), [1451, 4129]);
    assert_eq!(acme_march["totals"]["by_rate"][0]["subtotal"], 5580);
    assert_eq!(acme_march["totals"]["by_rate"][0]["tax"], 558);
    assert_eq!(acme_march["totals"]["total"], 6138);
    // Beta: the whole month
    assert_eq!(march[1]["customer"], "Beta");
    assert_eq!(amounts(&march[1]), [3000]);
    assert_eq!(march[1]["totals"]["total"], 3300);
    // April: 9 days of 30 at 8,000 until it ends on the 10th, then the fee, outside the tax
    let april = statement("2031-04");
    assert_eq!(amounts(&april[0]), [2400, 5000]);
    assert_eq!(april[0]["lines"][1]["kind"], "early_termination");
    assert_eq!(april[0]["totals"]["by_rate"][0]["tax"], 240);
    assert_eq!(april[0]["totals"]["non_taxable"], 5000);
    assert_eq!(april[0]["totals"]["total"], 7640);
    // May: only Beta
    let may = statement("2031-05");
    assert_eq!(may.as_array().unwrap().len(), 1);
    assert_eq!(may[0]["customer"], "Beta");
    // the readable form says the same
    let table = cli(&["billing", "statement", "--month", "2031-04"]);
    assert!(table.contains("early-termination fee") && table.contains("7640"), "{table}");
}

/// Issuing freezes a statement and numbers it; issuing again after the contract changed
/// issues a correction, leaving the first as it was; CSV gives the same figures (issue 14).
#[test]
fn statements_are_issued_numbered_frozen_and_corrected() {
    issue_statements_on("");
}

/// The same on PostgreSQL (issue 14: both stores).
#[test]
fn statements_are_issued_numbered_frozen_and_corrected_on_postgres() {
    let schema = testkit::pg::Schema::new("cli_statements");
    issue_statements_on(&format!("[store]\nurl = \"{}\"\n", schema.url()));
}

/// `store`: a `[store]` section, or nothing for the embedded store.
fn issue_statements_on(store: &str) {
    let dir = TempDir::new("billing-issue");
    std::fs::write(
        dir.path().join("m.toml"),
        format!("data_dir = \"data\"\n{store}")
            + "[billing]\nissuer = \"Operator K.K.\"\nregistration_number = \"T1234567890123\"\n\
         [[billing.price_table]]\neffective_from = \"2020-01-01\"\nproration = \"daily\"\n\
         [[billing.price_table.tier]]\nmin_accounts = 1\nmax_accounts = 10\nmonthly_fee = 3000\n\
         [[billing.price_table.tier]]\nmin_accounts = 11\nmonthly_fee = 8000\n",
    )
    .unwrap();
    let cli = |args: &[&str]| ok_m(dir.path(), args);
    let acme = contracts("\"127.0.0.1:2600\"")
        .replace("starts = \"2026-01-01\"", "starts = \"2031-03-01\"")
        .replace("ACME Corp.", "ACME, \\\"East\\\"");
    std::fs::write(dir.path().join("start.toml"), &acme).unwrap();
    std::fs::write(dir.path().join("more.toml"), acme.replace("accounts_limit = 5", "accounts_limit = 20")).unwrap();
    cli(&["contracts", "apply", "--on", "2031-03-01", "start.toml"]);
    let out = cli(&["billing", "issue", "--month", "2031-03", "--actor", "keiri"]);
    assert!(out.contains("issued:") && out.contains("S-000001") && out.contains("total 3300 yen"), "{out}");
    let out = cli(&["billing", "issue", "--month", "2031-03"]);
    assert!(out.contains("already issued, unchanged:") && out.contains("S-000001"), "{out}");
    // the contract changes from the 16th — into another price range, which the plan says —
    // the draft changes, the issued statement does not
    let out = cli(&["contracts", "apply", "--on", "2031-03-16", "more.toml"]);
    assert!(out.contains("acme moves to another price range: 3000 -> 8000 yen/month"), "{out}");
    let frozen: serde_json::Value =
        serde_json::from_str(&cli(&["billing", "issued", "--number", "S-000001", "--json"])).unwrap();
    assert_eq!(frozen[0]["totals"]["total"], 3300);
    assert_eq!(frozen[0]["issuer"]["registration_number"], "T1234567890123");
    assert_eq!(frozen[0]["issued_by"], "keiri");
    let out = cli(&["billing", "issue", "--month", "2031-03"]);
    // 15 days at 3,000 and 16 at 8,000 of 31: 1,451 + 4,129 = 5,580, tax 558
    assert!(
        out.contains("issued (corrects S-000001):") && out.contains("S-000002") && out.contains("total 6138 yen"),
        "{out}"
    );
    let list = cli(&["billing", "issued", "--month", "2031-03"]);
    let rows: Vec<&str> = list.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{list}");
    assert!(
        rows[0].starts_with("S-000001") && rows[1].starts_with("S-000002") && rows[1].ends_with("S-000001"),
        "{list}"
    );
    // CSV: the same figures, the customer's comma and quotes escaped
    let csv = cli(&["billing", "issued", "--number", "2", "--csv"]);
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("statement,customer,month,contract,item"), "{csv}");
    assert!(
        lines[1].starts_with(
            "S-000002,\"ACME, \"\"East\"\"\",2031-03,acme,service,2031-03-01,2031-03-15,5,3000,1451,standard"
        ),
        "{csv}"
    );
    assert!(lines.iter().any(|l| l.contains(",total,") && l.contains(",6138,")), "{csv}");
    assert!(lines.iter().any(|l| l.contains("consumption tax 10 %") && l.contains(",558,")), "{csv}");
    // a number never issued
    let (code, _, err) = run(dir.path(), &["--config", "m.toml", "billing", "issued", "--number", "9"]);
    assert_eq!(code, 1);
    assert!(err.contains("no statement S-000009"), "{err}");
}

/// A contract names the price table it is billed by; an unknown name is refused at apply, with
/// the tables there are (issue 14).
#[test]
fn each_contract_is_billed_by_the_price_table_it_names() {
    let dir = TempDir::new("billing-tables");
    std::fs::write(
        dir.path().join("m.toml"),
        "data_dir = \"data\"\n\
         [[billing.price_table]]\neffective_from = \"2020-01-01\"\n[[billing.price_table.tier]]\nmin_accounts = 1\nmonthly_fee = 3000\n\
         [[billing.price_table]]\nname = \"small-office\"\neffective_from = \"2020-01-01\"\n[[billing.price_table.tier]]\nmin_accounts = 1\nmonthly_fee = 1000\n",
    )
    .unwrap();
    let cli = |args: &[&str]| run_m(dir.path(), args);
    let acme = contracts("\"127.0.0.1:2600\"").replace("starts = \"2026-01-01\"", "starts = \"2031-03-01\"");
    let small = "[[contract]]\nid = \"small\"\ncustomer = \"Small\"\naccounts_limit = 3\nstarts = \"2031-03-01\"\nprice_table = \"small-office\"\n[[contract.domain]]\nname = \"small.example\"\nreceiving_servers = [\"127.0.0.1:2601\"]\naccounts = [\"carol\"]\n";
    std::fs::write(dir.path().join("c.toml"), format!("{acme}\n{small}")).unwrap();
    std::fs::write(dir.path().join("gold.toml"), small.replace("small-office", "gold")).unwrap();
    let (code, _, err) = cli(&["contracts", "apply", "--on", "2031-03-01", "c.toml"]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = cli(&["billing", "statement", "--month", "2031-03", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let total = |customer: &str| {
        v.as_array().unwrap().iter().find(|s| s["customer"] == customer).unwrap()["totals"]["total"].clone()
    };
    assert_eq!(total("ACME Corp."), 3300, "the default table");
    assert_eq!(total("Small"), 1100, "the table it names");
    let (code, _, err) = cli(&["contracts", "apply", "gold.toml"]);
    assert_eq!(code, 2);
    assert!(err.contains("no price table \"gold\"") && err.contains("small-office, standard"), "{err}");
}

/// A customer with three contracts at 105 yen: the statement's tax is computed once on 315
/// yen — 31 rounded down, 32 rounded half up — never as three taxes of 10; the issuer and its
/// registration number are on the statement.
#[test]
fn statement_tax_is_rounded_once_per_rate_with_the_issuers_rounding() {
    let dir = TempDir::new("billing-rounding");
    let three: String = (1..=3)
        .map(|i| {
            format!(
                "[[contract]]\nid = \"c{i}\"\ncustomer = \"Yamada Shoten\"\naccounts_limit = 1\nstarts = \"2031-03-01\"\n\
                 [[contract.domain]]\nname = \"d{i}.example\"\nreceiving_servers = [\"127.0.0.1:2600\"]\naccounts = []\n"
            )
        })
        .collect();
    std::fs::write(dir.path().join("c.toml"), three).unwrap();
    for (rounding, tax) in [("floor", 31), ("half_up", 32), ("ceil", 32)] {
        std::fs::write(
            dir.path().join("m.toml"),
            format!(
                "data_dir = \"data\"\n[billing]\nissuer = \"Example Mail K.K.\"\nregistration_number = \"T1234567890123\"\n\
                 rounding = \"{rounding}\"\n[[billing.price_table]]\neffective_from = \"2020-01-01\"\n\
                 [[billing.price_table.tier]]\nmin_accounts = 1\nmonthly_fee = 105\n"
            ),
        )
        .unwrap();
        let (code, _, err) =
            run(dir.path(), &["--config", "m.toml", "contracts", "apply", "--on", "2031-03-01", "c.toml"]);
        assert_eq!(code, 0, "{err}");
        let (code, out, err) =
            run(dir.path(), &["--config", "m.toml", "billing", "statement", "--month", "2031-03", "--json"]);
        assert_eq!(code, 0, "{err}");
        let s: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(s.as_array().unwrap().len(), 1, "one statement for the customer: {out}");
        assert_eq!(s[0]["lines"].as_array().unwrap().len(), 3);
        assert_eq!(s[0]["totals"]["by_rate"][0]["subtotal"], 315, "{rounding}");
        assert_eq!(s[0]["totals"]["by_rate"][0]["tax"], tax, "{rounding}");
        assert_eq!(s[0]["totals"]["by_rate"][0]["rate"]["percent"], 10);
        assert_eq!(s[0]["issuer"]["registration_number"], "T1234567890123");
        assert_eq!(s[0]["period"]["to"], "2031-03-31");
    }
    std::fs::write(dir.path().join("bad.toml"), "[billing]\nregistration_number = \"1234\"\nrounding = \"bankers\"\n")
        .unwrap();
    let (code, _, err) = run(dir.path(), &["--config", "bad.toml", "check-config"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("registration_number: must be T followed by 13 digits") && err.contains("rounding: must be"),
        "{err}"
    );
}

/// A contracts file that forgets a customer, or an empty one, cancels nobody: contracts it does
/// not list are kept unless `--prune`; `--dry-run` shows the plan and changes nothing.
#[test]
fn contracts_apply_keeps_what_the_file_omits_unless_pruned() {
    let dir = TempDir::new("contracts-apply-safe");
    let acme = contracts("\"127.0.0.1:2600\"");
    let beta = "[[contract]]\nid = \"beta\"\ncustomer = \"Beta\"\naccounts_limit = 3\nstarts = \"2026-01-01\"\n[[contract.domain]]\nname = \"beta.example\"\nreceiving_servers = [\"127.0.0.1:2601\"]\naccounts = [\"carol\"]\n";
    std::fs::write(dir.path().join("both.toml"), format!("{acme}\n{beta}")).unwrap();
    std::fs::write(dir.path().join("beta.toml"), beta).unwrap();
    std::fs::write(dir.path().join("empty.toml"), "").unwrap();
    let (code, out, err) = run(dir.path(), &["contracts", "apply", "both.toml"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("+ acme (new)") && out.contains("+ beta (new)"), "{out}");
    let listed = |dir: &Path| run(dir, &["contracts", "list"]).1;
    // the empty file: nothing removed, exit 0 with the plan saying so
    let (code, out, _) = run(dir.path(), &["contracts", "apply", "empty.toml"]);
    assert_eq!(code, 0);
    assert!(out.contains("= acme (not in the file: kept") && out.contains("nothing to change"), "{out}");
    assert!(listed(dir.path()).contains("(2 contracts"), "{}", listed(dir.path()));
    // a changed contract: shown with its fields; a dry run changes nothing
    let more = beta.replace("accounts_limit = 3", "accounts_limit = 4");
    std::fs::write(dir.path().join("beta.toml"), &more).unwrap();
    let (code, out, _) = run(dir.path(), &["contracts", "apply", "--dry-run", "beta.toml"]);
    assert_eq!(code, 0);
    assert!(out.contains("~ beta: accounts_limit") && out.contains("dry run, nothing changed"), "{out}");
    assert!(listed(dir.path()).contains("1/3"), "{}", listed(dir.path()));
    let (code, out, _) =
        run(dir.path(), &["contracts", "apply", "--reason", "form 118", "--actor", "tanaka", "beta.toml"]);
    assert_eq!(code, 0);
    assert!(out.contains("applied") && out.contains("1 changed") && out.contains("1 kept"), "{out}");
    let now = listed(dir.path());
    assert!(now.contains("1/4") && now.contains("acme"), "{now}");
    // a domain moved away from a contract the file does not list: refused, nothing changed
    std::fs::write(dir.path().join("steal.toml"), more.replace("beta.example", "acme.example")).unwrap();
    let (code, _, err) = run(dir.path(), &["contracts", "apply", "steal.toml"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("\"acme.example\"") && err.contains("--prune") && err.contains("nothing was changed"),
        "{err}"
    );
    // --prune: the file is the whole set; what it leaves out is cancelled from that day, by the
    // cancellation rules (no price table here: no fee)
    let (code, out, _) = run(dir.path(), &["contracts", "apply", "--prune", "beta.toml"]);
    assert_eq!(code, 0);
    assert!(out.contains("- acme (not in the file: cancelled from ") && out.contains("fee 0 yen)"), "{out}");
    let now = listed(dir.path());
    let acme_line = now.lines().find(|l| l.starts_with("acme")).unwrap_or_default();
    assert!(acme_line.contains("cancelled"), "{now}");
    // every change is kept: who, why, what changed, and the contract as it became
    let (code, out, _) = run(dir.path(), &["contracts", "history", "--full", "beta"]);
    assert_eq!(code, 0);
    let revs: Vec<&str> =
        revisions_table(&out).lines().filter(|l| l.trim_start().starts_with(char::is_numeric)).collect();
    assert_eq!(revs.len(), 2, "{out}");
    assert!(revs[0].contains("created"), "{out}");
    assert!(revs[1].contains("tanaka") && revs[1].contains("accounts_limit") && revs[1].ends_with("form 118"), "{out}");
    assert!(out.contains("accounts_limit = 4"), "{out}");
    let (_, out, _) = run(dir.path(), &["contracts", "history", "acme"]);
    assert!(revisions_table(&out).lines().last().is_some_and(|l| l.contains("cancelled (fee 0 yen)")), "{out}");
    let (code, _, err) = run(dir.path(), &["contracts", "history", "nobody"]);
    assert_eq!(code, 1);
    assert!(err.contains("no contract \"nobody\""), "{err}");
}

/// A domain moves between contracts in one operation, validated like any change (issue 14).
#[test]
fn a_domain_moves_between_contracts_in_one_operation() {
    let dir = TempDir::new("contracts-move");
    let acme = "[[contract]]\nid = \"acme\"\ncustomer = \"ACME\"\naccounts_limit = 9\nstarts = \"2026-01-01\"\n\
        [[contract.domain]]\nname = \"acme.example\"\nreceiving_servers = [\"127.0.0.1:2600\"]\naccounts = [\"alice\", \"bob\"]\n\
        [[contract.domain]]\nname = \"acme.jp\"\nreceiving_servers = [\"127.0.0.1:2601\"]\naccounts = [\"carol\"]\n\
        [[contract.domain]]\nname = \"acme.net\"\nreceiving_servers = [\"127.0.0.1:2602\"]\naccounts = [\"x\", \"y\"]\n";
    let beta = "[[contract]]\nid = \"beta\"\ncustomer = \"Beta\"\naccounts_limit = 3\nstarts = \"2026-01-01\"\n\
        [[contract.domain]]\nname = \"beta.example\"\nreceiving_servers = [\"127.0.0.1:2700\"]\naccounts = [\"dave\"]\n";
    std::fs::write(dir.path().join("c.toml"), format!("{acme}\n{beta}")).unwrap();
    assert_eq!(run(dir.path(), &["contracts", "apply", "c.toml"]).0, 0);
    let (code, out, err) =
        run(dir.path(), &["contracts", "move-domain", "ACME.jp", "--to", "beta", "--reason", "form 7"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("~ acme: domains") && out.contains("~ beta: domains") && out.contains("applied"), "{out}");
    let list = run(dir.path(), &["contracts", "list"]).1;
    let beta_line = list.lines().find(|l| l.starts_with("beta")).unwrap_or_default();
    assert!(beta_line.contains("acme.jp") && beta_line.contains("2/3"), "{list}");
    // over the target's limit: refused, nothing changed
    let (code, _, err) = run(dir.path(), &["contracts", "move-domain", "acme.net", "--to", "beta"]);
    assert_eq!(code, 2);
    assert!(err.contains("accounts_limit is 3") && err.contains("nothing was changed"), "{err}");
    // the last domain of a contract: that is a cancellation
    let (code, _, err) = run(dir.path(), &["contracts", "move-domain", "beta.example", "--to", "acme"]);
    assert_eq!(code, 0, "beta keeps acme.jp: {err}");
    let (code, _, err) = run(dir.path(), &["contracts", "move-domain", "acme.jp", "--to", "acme"]);
    assert_eq!(code, 2);
    assert!(err.contains("at least one [[contract.domain]]"), "{err}");
    let (code, _, err) = run(dir.path(), &["contracts", "move-domain", "nowhere.example", "--to", "acme"]);
    assert_eq!(code, 2);
    assert!(err.contains("no contract holds domain \"nowhere.example\""), "{err}");
}

/// `--prune` cancels what the file leaves out through the cancellation rules: within the
/// minimum term, the early-termination fee is quoted in the plan and recorded (issue 14).
#[test]
fn pruned_contracts_are_cancelled_with_their_fee() {
    let dir = TempDir::new("contracts-prune-fee");
    let today = chrono::Utc::now().with_timezone(&chrono_tz::Asia::Tokyo).date_naive();
    std::fs::write(
        dir.path().join("m.toml"),
        "data_dir = \"data\"\n[[billing.price_table]]\neffective_from = \"2020-01-01\"\nmin_term_months = 1\nearly_termination_fee = 5000\n\
         [[billing.price_table.tier]]\nmin_accounts = 1\nmonthly_fee = 3000\n",
    )
    .unwrap();
    let starts = (today - chrono::Days::new(5)).to_string();
    let acme = contracts("\"127.0.0.1:2600\"").replace("2026-01-01", &starts);
    std::fs::write(dir.path().join("c.toml"), &acme).unwrap();
    std::fs::write(dir.path().join("empty.toml"), "").unwrap();
    let cli = |args: &[&str]| run_m(dir.path(), args);
    assert_eq!(cli(&["contracts", "apply", "c.toml"]).0, 0);
    let (code, out, _) = cli(&["contracts", "apply", "--prune", "--dry-run", "empty.toml"]);
    assert_eq!(code, 0);
    assert!(
        out.contains(&format!("- acme (not in the file: cancelled from {today}; early-termination fee 5000 yen)")),
        "{out}"
    );
    assert!(!cli(&["contracts", "history", "acme"]).1.contains("cancellation"), "a dry run records nothing");
    let (code, out, _) = cli(&["contracts", "apply", "--prune", "--reason", "contract ended", "empty.toml"]);
    assert_eq!(code, 0, "{out}");
    let history = cli(&["contracts", "history", "acme"]).1;
    let last = revisions_table(&history).lines().last().unwrap();
    assert!(last.contains("cancelled (fee 5000 yen)") && last.ends_with("contract ended"), "{history}");
    assert!(history.contains("cancellation_requested"), "{history}");
}

/// A change made today is validated against the changes already scheduled for later days, and
/// carried into them: a revision holds the whole contract, but what a later one did not change
/// follows the earlier change (issue 14).
#[test]
fn a_change_is_checked_against_and_carried_into_later_scheduled_changes() {
    later_changes_on("");
}

/// The same on PostgreSQL (issue 14: both stores).
#[test]
fn a_change_is_checked_against_and_carried_into_later_scheduled_changes_on_postgres() {
    let schema = testkit::pg::Schema::new("cli_later");
    later_changes_on(&format!("[store]\nurl = \"{}\"\n", schema.url()));
}

/// `store`: a `[store]` section, or nothing for the embedded store.
fn later_changes_on(store: &str) {
    let dir = TempDir::new("contracts-later");
    std::fs::write(dir.path().join("m.toml"), format!("data_dir = \"data\"\n{store}")).unwrap();
    let cli = |args: &[&str]| run_m(dir.path(), args);
    let acme = contracts("\"127.0.0.1:2600\"");
    std::fs::write(dir.path().join("c.toml"), &acme).unwrap();
    assert_eq!(cli(&["contracts", "apply", "c.toml"]).0, 0);
    // scheduled for later: the limit down to 2 (alice and bob fit)
    std::fs::write(dir.path().join("lower.toml"), acme.replace("accounts_limit = 5", "accounts_limit = 2")).unwrap();
    let (code, _, err) = cli(&["contracts", "apply", "--on", "2099-03-01", "lower.toml"]);
    assert_eq!(code, 0, "{err}");
    let (_, history, _) = cli(&["contracts", "history", "acme"]);
    let rev = revisions_table(&history).lines().last().unwrap().split_whitespace().next().unwrap().to_string();
    // today a third account: fits today's limit, not the one scheduled — refused, nothing changed
    let more = acme.replace("\"alice\", \"bob\"", "\"alice\", \"bob\", \"carol\"");
    std::fs::write(dir.path().join("more.toml"), &more).unwrap();
    let (code, _, err) = cli(&["contracts", "apply", "more.toml"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("2099-03-01")
            && err.contains("3 accounts with accounts_limit 2")
            && err.contains(&format!("withdraw acme {rev}")),
        "{err}"
    );
    assert!(!cli(&["contracts", "list"]).1.contains("3/5"));
    // today another receiving server: carried into the later revision, which keeps its limit
    let moved = acme.replace("127.0.0.1:2600", "127.0.0.1:2700");
    std::fs::write(dir.path().join("moved.toml"), &moved).unwrap();
    let (code, out, err) = cli(&["contracts", "apply", "moved.toml"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("also acme revision {rev} (scheduled for 2099-03-01): carried over")), "{out}");
    let (_, full, _) = cli(&["contracts", "history", "--full", "acme"]);
    // the later revision's contract: the block after its line, up to the next revision's
    let later = full[full.find(" 2099-03-01 ").unwrap()..].split("[[contract]]").nth(1).unwrap();
    assert!(later.contains("accounts_limit = 2") && later.contains("127.0.0.1:2700"), "{full}");
    let events = full.split("\n\n").nth(1).unwrap_or_default();
    assert!(
        events
            .lines()
            .any(|l| l.contains("carried_over")
                && l.contains(&format!("over revision {}", rev.parse::<i64>().unwrap() + 1))),
        "{full}"
    );
    // withdrawn: the change of today stays
    let (code, _, err) = cli(&["contracts", "withdraw", "acme", &rev]);
    assert_eq!(code, 0, "{err}");
    std::fs::write(dir.path().join("more.toml"), more.replace("127.0.0.1:2600", "127.0.0.1:2700")).unwrap();
    let (code, _, err) = cli(&["contracts", "apply", "more.toml"]);
    assert_eq!(code, 0, "now it fits: {err}");
    // stopping every function is a cancellation, not a change (R16)
    std::fs::write(dir.path().join("none.toml"), acme.replace("starts = ", "functions = []\nstarts = ")).unwrap();
    let (code, _, err) = cli(&["contracts", "apply", "none.toml"]);
    assert_eq!(code, 2);
    assert!(err.contains("use cancellation"), "{err}");
}

#[test]
fn contracts_apply_validates_everything_and_changes_nothing_on_error() {
    let dir = TempDir::new("contracts-cli");
    std::fs::write(dir.path().join("c.toml"), contracts("\"127.0.0.1:2600\"")).unwrap();
    let (code, out, err) = run(dir.path(), &["contracts", "apply", "c.toml"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("+ acme (new)") && out.contains("1 contracts (1 domains)"), "{out}");
    let bad = contracts("\"127.0.0.1:2600\"")
        .replace("accounts_limit = 5", "accounts_limit = 1")
        .replace("starts = \"2026-01-01\"", "starts = \"someday\"");
    std::fs::write(dir.path().join("bad.toml"), bad).unwrap();
    let (code, _, err) = run(dir.path(), &["contracts", "apply", "bad.toml"]);
    assert_eq!(code, 2);
    assert!(err.contains("nothing was changed"));
    assert!(err.contains("contract[0].starts: \"someday\" is not a date"), "{err}");
    assert!(err.contains("contract has 2 accounts but accounts_limit is 1"), "{err}");
    let (code, out, _) = run(dir.path(), &["contracts", "list"]);
    assert_eq!(code, 0);
    assert!(out.contains("acme") && out.contains("2/5") && out.contains("acme.example -> 127.0.0.1:2600"), "{out}");
    assert!(out.contains("sending servers: 127.0.0.5/32"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_show_flush_delete() {
    let customer = Sink::start(Behaviour::DataReply(451, (4, 3, 0))).await;
    let remote = Sink::start(Behaviour::Accept).await;
    let (gw, dir) = gateway("queue-cli", &quoted(customer.addr), remote.addr, |c| {
        c.replace("retry_min = \"1s\"\nretry_max = \"2s\"", "retry_min = \"1h\"\nretry_max = \"2h\"")
    });
    let w = common::World { gw, customer, remote, dir };
    let mut ids = Vec::new();
    for subject in ["keep me", "delete me"] {
        let r = send_one(w.gw.addr, "a@remote.test", &["alice@acme.example"], &message(subject, "x")).await.unwrap();
        assert_eq!(r.code, 250);
        ids.push(r.text.rsplit(' ').next().unwrap().to_string());
    }
    w.gw.wait_log("event=\"deferred\"", WAIT).await;
    let out = w.gw.cli(&["queue", "show", &ids[0]]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.contains("from:         <a@remote.test>") && text.contains("<alice@acme.example> deferred"), "{text}");
    assert!(text.contains("Subject: keep me"));
    let out = w.gw.cli(&["queue", "delete", &ids[1]]);
    assert!(out.status.success());
    let out = w.gw.cli(&["queue", "delete", &ids[1]]);
    assert_eq!(out.status.code(), Some(1));
    let out = w.gw.cli(&["queue", "show", "../../etc/passwd"]);
    assert!(!out.status.success());
    // retries are an hour apart: nothing happens until the flush
    w.customer.set_behaviour(Behaviour::Accept);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(w.customer.messages().is_empty());
    let out = w.gw.cli(&["queue", "flush"]);
    assert!(out.status.success());
    let got = w.customer.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1);
    assert!(got[0].text().contains("Subject: keep me"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(w.customer.messages().len(), 1, "the deleted message is never delivered");
}

/// `serve` with nothing configured but where to listen uses every other default (data in
/// `./mxshield-data`). The default address itself (127.0.0.1:2525) is checked by the
/// configuration's unit test: no test binds a fixed port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_without_config_uses_the_defaults() {
    let dir = TempDir::new("defaults");
    let status = serve_and_terminate_after_the_greeting(dir.path()).await;
    assert!(status.success());
    assert!(dir.path().join("mxshield-data/spool/queue").is_dir());
    assert!(dir.path().join("mxshield-data/mxshield.db").is_file());
}

/// A SIGTERM sent the moment the gateway greets a client shuts it down gracefully (status 0):
/// the handler was installed before anything listened. Regression: it was installed after the
/// accept loop started, and a supervisor's early SIGTERM killed the process by the signal's
/// default action.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigterm_right_after_the_first_greeting_shuts_down_gracefully() {
    for round in 0..15 {
        let dir = TempDir::new("early-sigterm");
        let status = serve_and_terminate_after_the_greeting(dir.path()).await;
        assert!(status.success(), "round {round}: {status:?}");
    }
}

/// Starts `serve` in `dir` on free ports, waits for the first greeting, sends SIGTERM at once.
async fn serve_and_terminate_after_the_greeting(dir: &std::path::Path) -> std::process::ExitStatus {
    let port = testkit::free_port();
    // and where the admin API listens: its default (127.0.0.1:8025) is a fixed port
    let admin = testkit::free_port();
    std::fs::write(
        dir.join("only-listen.toml"),
        format!("[smtp]\nlisten = [\"127.0.0.1:{port}\"]\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n"),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["--config", "only-listen.toml", "serve"])
        .current_dir(dir)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut greeting = None;
    for _ in 0..400 {
        if let Ok((_, g)) = RawClient::connect(addr).await {
            greeting = Some(g);
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(greeting.expect("listening").code, 220);
    status
}

/// `sigs info` on a database of every signature kind says what was loaded, and lists every
/// signature skipped with its file, line and why; whole kinds not read are counted by kind.
#[test]
fn sigs_info_lists_every_skipped_signature_by_kind() {
    let dir = testkit::TempDir::new("sigs-info-kinds");
    let db = dir.path().join("db");
    std::fs::create_dir_all(&db).unwrap();
    let files = [
        ("a.hdb", "44d88612fea8a8f36de82e1278abb02f:68:Eicar.Md5\n"),
        ("b.hsb", "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f:68:Eicar.Sha256\n"),
        (
            "c.ndb",
            "Good.Body:0:*:4142434445464748\nEp.Sig:9:EP+0:cffaedfe\nFuture.Sig:13:*:3c7363726970743e\nVersion.Sig:1:VI:4142434445\n",
        ),
        (
            "d.ldb",
            "Good.Logic;Engine:51-255,Target:0;0&1;41424344;45464748\nMacro.Sig;Target:0;0&1;41424344;${1-2}0$\nIcon.Sig;Engine:51-255,Target:1,IconGroup1:evil;0;41424344\nPcre.Sig;Engine:81-255,Target:0;0&1;41424344;0/evil/i\n",
        ),
        ("e.mdb", "1024:44d88612fea8a8f36de82e1278abb02f:Section.Sig\n"),
        ("e2.msb", "*:275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f:Section.Any:73\n"),
        ("f.imp", "44d88612fea8a8f36de82e1278abb02f:1024:Import.Sig\n"),
        ("g.ftm", "0:0:4d5a:PE:CL_TYPE_ANY:CL_TYPE_MSEXE\n"),
        ("h.ndu", "Pua.Sig:0:*:4142434445464749\n"),
        ("i.ign2", "Nothing.Here\n"),
        ("j.fp", "44d88612fea8a8f36de82e1278abb02e:68:Allowed\n"),
        ("k.ndb", "Old.Engine:0:*:4142434445464750:1:20\n"),
    ];
    for (name, text) in files {
        std::fs::write(db.join(name), text).unwrap();
    }
    let (code, out, err) = run(dir.path(), &["sigs", "info", "--db", db.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    for line in [
        "MD5 hashes:        1",
        "SHA256 hashes:     1",
        "body signatures:   2",
        "logical:           2",
        "allow-list:        1",
        "ignored names:     1",
        "PUA files:         1 not loaded",
        "other levels:      1",
        "PE section hashes: 2",
        "PE import hashes:  1",
        "        1  file type magic (.ftm)",
        "  c.ndb:3: target type 13",
        "  c.ndb:4: version-information and macro offsets (VI)",
        "  d.ldb:2: logical signature: macros",
        "  d.ldb:3: logical signature: target description IconGroup1",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
}

/// `scan --db` takes one database file as well as a directory, as `clamscan -d` does; a path
/// that is neither is a clear error (exit 2).
#[test]
fn scan_takes_a_database_file_like_clamscan() {
    let dir = testkit::TempDir::new("scan-db-file");
    std::fs::write(dir.path().join("one.ndb"), "Test.Marker:0:*:6d787368696c642d6d61726b6572\n").unwrap();
    std::fs::write(dir.path().join("sample.txt"), "a line with mxshild-marker in it\n").unwrap();
    std::fs::write(dir.path().join("clean.txt"), "nothing here\n").unwrap();
    let (code, out, err) = run(dir.path(), &["scan", "--db", "one.ndb", "sample.txt", "clean.txt"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("sample.txt: Test.Marker FOUND"), "{out}");
    assert!(out.contains("clean.txt: OK"), "{out}");
    let (code, out, err) = run(dir.path(), &["scan", "--db", "missing.ndb", "sample.txt"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("missing.ndb: no such signature directory or database file"), "{err}");
}

/// Two nodes, each with its own data_dir, on one PostgreSQL database: contracts applied
/// through one are the other's; check-config reports a database it cannot reach and a URL no
/// store speaks.
#[test]
fn nodes_share_contracts_through_postgres() {
    let dir = TempDir::new("pg-contracts");
    let schema = testkit::pg::Schema::new("cli_contracts");
    for node in ["a", "b"] {
        let cfg = format!("data_dir = \"data-{node}\"\n[store]\nurl = \"{}\"\n", schema.url());
        std::fs::write(dir.path().join(format!("{node}.toml")), cfg).unwrap();
    }
    std::fs::write(dir.path().join("c.toml"), contracts("\"127.0.0.1:2600\"")).unwrap();
    let (code, out, err) = run(dir.path(), &["--config", "a.toml", "contracts", "apply", "c.toml"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = run(dir.path(), &["--config", "b.toml", "contracts", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("acme") && out.contains("acme.example -> 127.0.0.1:2600"), "{out}");
    assert!(!dir.path().join("data-b/mxshield.db").exists(), "node b made a local store");
    let (code, out, err) = run(dir.path(), &["--config", "b.toml", "check-config"]);
    assert_eq!(code, 0, "{out}{err}");
    // a server that is not there, and a URL of no known database
    let down =
        format!("data_dir = \"data-c\"\n[store]\nurl = \"postgres://mx:secret@127.0.0.1:{}/x\"\n", down_addr().port());
    std::fs::write(dir.path().join("down.toml"), down).unwrap();
    let (code, _, err) = run(dir.path(), &["--config", "down.toml", "check-config"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("contract store: cannot open database postgres://mx@127.0.0.1"), "{err}");
    assert!(err.contains("refused"), "the reason is given: {err}");
    assert!(!err.contains("secret"), "{err}");
    std::fs::write(dir.path().join("odd.toml"), "[store]\nurl = \"mysql://h/db\"\n").unwrap();
    let (code, _, err) = run(dir.path(), &["--config", "odd.toml", "check-config"]);
    assert_eq!(code, 2);
    assert!(err.contains("odd.toml:line 2: store.url: must be a postgres:// (or sqlite://) database URL"), "{err}");
}
