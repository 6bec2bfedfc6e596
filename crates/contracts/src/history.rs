//! A contract's history as events: what operators did (from its revisions and its recorded
//! events, with who and why) and what the calendar made of it (activated, change effective,
//! cancelled — derived from the dates, never stored).

use chrono::NaiveDate;

use crate::{Event, Revision};

/// A contract's state on `today`, derived from its dates and the changes scheduled for it —
/// never stored: `applied` (before its start), `active`, `cancellation scheduled`, `cancelled`.
pub fn state_on(c: &crate::Contract, scheduled: &[crate::Scheduled], today: NaiveDate) -> &'static str {
    let ending = c.ends.is_some_and(|e| e > today)
        || scheduled.iter().any(|s| s.id == c.id && s.contract.as_ref().is_none_or(|n| n.ends.is_some()));
    if c.ends.is_some_and(|e| e <= today) {
        "cancelled"
    } else if today < c.starts {
        "applied"
    } else if ending {
        "cancellation scheduled"
    } else {
        "active"
    }
}

/// One event of a contract's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// When: an RFC 3339 time for what was recorded, a day (`YYYY-MM-DD`, from 00:00 in the
    /// operator's time zone) for what the calendar did.
    pub at: String,
    /// `applied`, `activated`, `changed`, `change_scheduled`, `change_effective`,
    /// `change_withdrawn`, `cancellation_requested`, `cancellation_withdrawn`, `cancelled`,
    /// `removed`, `carried_over`.
    pub kind: &'static str,
    /// The revision concerned.
    pub rev: Option<i64>,
    /// What: the fields changed, the day, the fee.
    pub detail: String,
    /// Who (empty for what the calendar did).
    pub actor: String,
    /// Why.
    pub reason: String,
}

/// The history of one contract from its `revisions` and `events`, as of `today`, in order.
pub fn timeline(revisions: &[Revision], events: &[Event], today: NaiveDate) -> Vec<Entry> {
    let mut out = Vec::new();
    let recorded = |r: &Revision, kind, detail: String| Entry {
        at: r.created_at.clone(),
        kind,
        rev: Some(r.rev),
        detail,
        actor: r.actor.clone(),
        reason: r.reason.clone(),
    };
    let by_calendar = |day: NaiveDate, kind, rev: &Revision| Entry {
        at: day.to_string(),
        kind,
        rev: Some(rev.rev),
        detail: String::new(),
        actor: String::new(),
        reason: String::new(),
    };
    for r in revisions {
        let contract = crate::parse_file(&r.doc).ok().and_then(|mut v| v.pop());
        let recorded_on = r.created_at.get(..10).and_then(|d| d.parse::<NaiveDate>().ok()).unwrap_or(r.effective_from);
        let later = r.effective_from > recorded_on;
        let live = r.withdrawn_at.is_none();
        let cancellation = r.fee.is_some() || r.changed.iter().any(|c| c == "cancelled");
        match &contract {
            None => {
                let fee = r.fee.map(|f| format!("; early-termination fee {f} yen")).unwrap_or_default();
                out.push(recorded(r, "removed", format!("from {}{fee}", r.effective_from)));
            }
            Some(c) if r.changed.iter().any(|f| f == "created") => {
                let from = c.starts.max(r.effective_from);
                out.push(recorded(r, "applied", format!("starts {from}")));
                if live && from <= today {
                    out.push(by_calendar(from, "activated", r));
                }
            }
            Some(c) if cancellation => {
                let ends = c.ends.unwrap_or(r.effective_from);
                let fee = r.fee.map(|f| format!("; early-termination fee {f} yen")).unwrap_or_default();
                out.push(recorded(r, "cancellation_requested", format!("ends {ends}{fee}")));
                if live && ends <= today {
                    out.push(by_calendar(ends, "cancelled", r));
                }
            }
            Some(_) if later => {
                out.push(recorded(
                    r,
                    "change_scheduled",
                    format!("from {}: {}", r.effective_from, r.changed.join(", ")),
                ));
                if live && r.effective_from <= today {
                    out.push(by_calendar(r.effective_from, "change_effective", r));
                }
            }
            Some(_) => out.push(recorded(r, "changed", r.changed.join(", "))),
        }
        if let Some(at) = &r.withdrawn_at {
            let kind = if cancellation { "cancellation_withdrawn" } else { "change_withdrawn" };
            match events.iter().find(|e| e.kind == "withdrawn" && e.rev == Some(r.rev)) {
                Some(e) => out.push(Entry {
                    at: e.at.clone(),
                    kind,
                    rev: Some(r.rev),
                    detail: String::new(),
                    actor: e.actor.clone(),
                    reason: e.reason.clone(),
                }),
                // withdrawn before withdrawals were recorded as events: when, not who
                None => out.push(Entry {
                    at: at.clone(),
                    kind,
                    rev: Some(r.rev),
                    detail: String::new(),
                    actor: String::new(),
                    reason: String::new(),
                }),
            }
        }
    }
    for e in events.iter().filter(|e| e.kind == "carried_over") {
        out.push(Entry {
            at: e.at.clone(),
            kind: "carried_over",
            rev: e.rev,
            detail: e.detail.clone(),
            actor: e.actor.clone(),
            reason: e.reason.clone(),
        });
    }
    // a day sorts before the times recorded on it; equal times keep their order
    out.sort_by(|a, b| a.at.cmp(&b.at));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(n: i64, effective: &str, recorded: &str, changed: &str, doc: &str) -> Revision {
        Revision {
            contract: "acme".into(),
            rev: n,
            effective_from: effective.parse().unwrap(),
            doc: doc.into(),
            changed: changed.split(',').map(String::from).collect(),
            created_at: format!("{recorded}T09:00:00Z"),
            actor: "tanaka".into(),
            reason: format!("form {n}"),
            pending: false,
            withdrawn_at: None,
            fee: None,
        }
    }

    fn doc(limit: u32, ends: Option<&str>) -> String {
        let ends = ends.map(|e| format!("ends = \"{e}\"\n")).unwrap_or_default();
        format!(
            "[[contract]]\nid = \"acme\"\ncustomer = \"A\"\naccounts_limit = {limit}\nstarts = \"2027-01-10\"\n{ends}[[contract.domain]]\nname = \"a.example\"\nreceiving_servers = [\"192.0.2.1\"]\naccounts = []\n"
        )
    }

    #[test]
    fn each_revision_and_what_the_dates_made_of_it() {
        let mut withdrawn = rev(3, "2027-03-01", "2027-01-20", "accounts_limit", &doc(2, None));
        withdrawn.withdrawn_at = Some("2027-02-01T10:00:00Z".into());
        let mut cancel = rev(4, "2027-04-01", "2027-02-10", "cancelled", &doc(9, Some("2027-04-01")));
        cancel.fee = Some(5000);
        let revisions = vec![
            rev(1, "2027-01-01", "2027-01-01", "created", &doc(5, None)),
            rev(2, "2027-02-01", "2027-01-15", "accounts_limit", &doc(9, None)),
            withdrawn,
            cancel,
        ];
        let events = vec![Event {
            at: "2027-02-01T10:00:00Z".into(),
            kind: "withdrawn".into(),
            rev: Some(3),
            detail: String::new(),
            actor: "suzuki".into(),
            reason: "customer changed their mind".into(),
        }];
        let kinds = |today: &str| -> Vec<(String, &'static str)> {
            timeline(&revisions, &events, today.parse().unwrap()).into_iter().map(|e| (e.at, e.kind)).collect()
        };
        let t = |s: &str| format!("{s}T09:00:00Z");
        assert_eq!(
            kinds("2027-05-01"),
            [
                (t("2027-01-01"), "applied"),
                ("2027-01-10".into(), "activated"),
                (t("2027-01-15"), "change_scheduled"),
                (t("2027-01-20"), "change_scheduled"),
                ("2027-02-01".into(), "change_effective"),
                ("2027-02-01T10:00:00Z".into(), "change_withdrawn"),
                (t("2027-02-10"), "cancellation_requested"),
                ("2027-04-01".into(), "cancelled"),
            ]
        );
        // before its days come, nothing is derived from them
        let early = kinds("2027-01-05");
        assert!(!early.iter().any(|(_, k)| matches!(*k, "activated" | "change_effective" | "cancelled")), "{early:?}");
        let all = timeline(&revisions, &events, "2027-05-01".parse().unwrap());
        let w = all.iter().find(|e| e.kind == "change_withdrawn").unwrap();
        assert_eq!((w.actor.as_str(), w.reason.as_str()), ("suzuki", "customer changed their mind"));
        let c = all.iter().find(|e| e.kind == "cancellation_requested").unwrap();
        assert!(c.detail.contains("ends 2027-04-01") && c.detail.contains("5000 yen"), "{}", c.detail);
    }
}
