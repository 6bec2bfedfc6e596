//! The conditions of use, measured (R18, issue 16 — first part): per contract, from the
//! delivery outcomes of its outbound mail in the message log (shared by every node, so the
//! counts are the cluster's), the **hard-bounce rate** (permanent failures other than policy
//! rejections, over the last N copies and over the window, with a minimum volume before a
//! rate means anything — as Amazon SES measures senders) and the **remote spam rejections**
//! (5.7.x and 4.7.x replies with spam or blocklist wording) per day. Each finding carries the
//! raw counts, the window and the thresholds applied, never a bare verdict.

use serde::Serialize;

/// The thresholds applied (the operator's; these defaults follow SES: warn at 5 %, flag at
/// 10 %, at least 200 copies).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Thresholds {
    /// Hard-bounce rate that warns.
    pub bounce_warn: f64,
    /// Hard-bounce rate that flags.
    pub bounce_flag: f64,
    /// Copies needed before a bounce rate is judged.
    pub bounce_min_copies: usize,
    /// The rate over the last this many copies (and over the window).
    pub bounce_last_copies: usize,
    /// Remote spam rejections in one day that warn.
    pub spam_warn_per_day: u64,
    /// Remote spam rejections in one day that flag.
    pub spam_flag_per_day: u64,
    /// The window, in days.
    pub window_days: u32,
    /// Copies of near-identical mail (in 24 hours or the window) that warn.
    pub bulk_warn_copies: u64,
    /// … that flag (the seed: 5,000).
    pub bulk_flag_copies: u64,
    /// Outbound messages in one day the spam engine calls spam that warn.
    pub spam_score_warn_per_day: u64,
    /// … that flag.
    pub spam_score_flag_per_day: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            bounce_warn: 0.05,
            bounce_flag: 0.10,
            bounce_min_copies: 200,
            bounce_last_copies: 1000,
            spam_warn_per_day: 10,
            spam_flag_per_day: 50,
            window_days: 7,
            bulk_warn_copies: 1000,
            bulk_flag_copies: 5000,
            spam_score_warn_per_day: 10,
            spam_score_flag_per_day: 50,
        }
    }
}

/// When each (contract, kind) finding was cleared by the operator (Unix seconds): outcomes up
/// to then no longer count.
pub type Cleared = std::collections::HashMap<(String, String), i64>;

/// The kinds of finding, as named in the API, the CLI and the log.
pub const KINDS: [&str; 5] = ["undeliverable", "spam-rejections", "spam-score", "bulk", "open-relay"];

/// What the gateway does while a contract has a flagged finding of a kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Record only (the default).
    #[default]
    Observe,
    /// Record, and mail the operator when the finding is flagged.
    Warn,
    /// The contract's outbound mail answered `451 4.7.1` while the finding is flagged.
    Defer,
    /// The contract's outbound mail answered `550 5.7.1` while the finding is flagged.
    Refuse,
}

impl Policy {
    /// `observe`, `warn`, `defer` or `refuse`.
    pub fn parse(s: &str) -> Option<Policy> {
        match s {
            "observe" => Some(Policy::Observe),
            "warn" => Some(Policy::Warn),
            "defer" => Some(Policy::Defer),
            "refuse" => Some(Policy::Refuse),
            _ => None,
        }
    }
}

/// How the open-relay probe runs (`[conditions]` `relay_*` keys).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RelaySettings {
    /// How often each contract's servers are probed by a running gateway (`None`: only on
    /// demand); a changed set of servers is probed at the next check.
    pub every: Option<std::time::Duration>,
    /// The domain of the canary addresses (`None`: the gateway's host name): its MX, or its
    /// address record, must lead to this gateway.
    pub canary_domain: Option<String>,
    /// The port the sending servers are probed on.
    pub sending_port: u16,
    /// How long a probe waits for a canary.
    pub wait: std::time::Duration,
    /// How long after start-up a running gateway first probes on schedule (a gateway started
    /// for a trial or a benchmark probes nobody).
    pub delay: std::time::Duration,
}

impl Default for RelaySettings {
    fn default() -> Self {
        RelaySettings {
            every: Some(std::time::Duration::from_secs(7 * 86_400)),
            canary_domain: None,
            sending_port: 25,
            wait: std::time::Duration::from_secs(60),
            delay: std::time::Duration::from_secs(600),
        }
    }
}

/// The operator's settings of the conditions of use (`[conditions]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settings {
    /// What the measures are judged against.
    pub thresholds: Thresholds,
    /// The policy of each kind of [`KINDS`] (absent: `observe`).
    pub policies: std::collections::BTreeMap<String, Policy>,
    /// Per contract, policies that replace those of `policies` (`[conditions.contract.ID]`).
    pub overrides: std::collections::BTreeMap<String, std::collections::BTreeMap<String, Policy>>,
    /// How often a running gateway measures.
    pub every: std::time::Duration,
    /// Whether the running gateway meters bulk mail (fingerprints accepted messages).
    pub bulk_metering: bool,
    /// How often it flushes its counts to the shared store.
    pub bulk_flush: std::time::Duration,
    /// The open-relay probe.
    pub relay: RelaySettings,
    /// Where the policy `warn` mails (`None`: the gateway's postmaster).
    pub notify: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            thresholds: Thresholds::default(),
            policies: Default::default(),
            overrides: Default::default(),
            every: std::time::Duration::from_secs(60),
            bulk_metering: true,
            bulk_flush: std::time::Duration::from_secs(30),
            relay: RelaySettings::default(),
            notify: None,
        }
    }
}

impl Settings {
    /// The policy of `contract`'s findings of `kind`: its own if it has one, else the kind's.
    pub fn policy(&self, contract: &str, kind: &str) -> Policy {
        self.overrides
            .get(contract)
            .and_then(|o| o.get(kind))
            .or_else(|| self.policies.get(kind))
            .copied()
            .unwrap_or_default()
    }

    /// Whether any policy does more than record (the gateway then measures on its own).
    pub fn acts(&self) -> bool {
        self.policies.values().chain(self.overrides.values().flat_map(|o| o.values())).any(|p| *p != Policy::Observe)
    }
}

/// What the operator does with a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handling {
    /// Seen: it stays open (and keeps holding mail under `defer` or `refuse`).
    Acknowledge,
    /// Its measure restarts now.
    Clear,
}

impl Handling {
    /// `acknowledge` or `clear` (the API's and the console's path segment).
    pub fn parse(s: &str) -> Option<Handling> {
        match s {
            "acknowledge" => Some(Handling::Acknowledge),
            "clear" => Some(Handling::Clear),
            _ => None,
        }
    }

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Handling::Acknowledge => "acknowledge",
            Handling::Clear => "clear",
        }
    }
}

/// How the outbound mail of each contract is held under `settings` while `findings` stand: the
/// strongest policy of its flagged findings (`refuse` over `defer`), with why in words.
pub fn holds(findings: &[Finding], settings: &Settings) -> std::collections::BTreeMap<String, (Policy, String)> {
    let mut out: std::collections::BTreeMap<String, (Policy, String)> = Default::default();
    for f in findings.iter().filter(|f| f.level == Level::Flag) {
        let policy = settings.policy(&f.contract, f.kind);
        if !matches!(policy, Policy::Defer | Policy::Refuse) {
            continue;
        }
        let why = format!(
            "{} of contract {} is flagged ({}; {}): the operator's conditions of use",
            f.kind, f.contract, f.window, f.threshold
        );
        match out.get(&f.contract) {
            Some((Policy::Refuse, _)) => {}
            Some((Policy::Defer, _)) if policy == Policy::Defer => {}
            _ => {
                out.insert(f.contract.clone(), (policy, why));
            }
        }
    }
    out
}

/// The flagged findings whose policy is `warn`: the operator is mailed about each once per
/// episode (from its last clearing).
pub fn to_warn<'a>(findings: &'a [Finding], settings: &Settings) -> Vec<&'a Finding> {
    findings.iter().filter(|f| f.level == Level::Flag && settings.policy(&f.contract, f.kind) == Policy::Warn).collect()
}

/// The mail of the policy `warn` about `f`: its subject and plain-text body (English, then
/// Japanese), every number and the evidence included.
pub fn notice(f: &Finding, gateway: &str) -> (String, String) {
    let subject = format!("[mxshield] conditions of use: {} flagged for contract {}", f.kind, f.contract);
    let mut b = String::new();
    b.push_str(&format!(
        "The gateway {gateway} measured a condition of use of contract {} at or above its\n\
         flagging threshold.\n\n",
        f.contract
    ));
    b.push_str(&format!("  kind:      {}\n  level:     {:?}\n  window:    {}\n", f.kind, f.level, f.window));
    b.push_str(&format!("  threshold: {}\n", f.threshold));
    for (k, v) in &f.counts {
        b.push_str(&format!("  {k}: {v}\n"));
    }
    for (name, at) in [("first seen", f.first_seen), ("last seen", f.last_seen)] {
        if let Some(at) = at {
            b.push_str(&format!("  {name}: {}\n", stamp(at)));
        }
    }
    b.push_str("\nEvidence:\n");
    for e in f.evidence.iter().take(40) {
        b.push_str(&format!("  {e}\n"));
    }
    b.push_str(&format!(
        "\nSee `mxshield conditions --contract {c}`; acknowledge or clear it with\n\
         `mxshield conditions acknowledge|clear {c} {k}` (or the API, or the console).\n\n",
        c = f.contract,
        k = f.kind
    ));
    b.push_str(&format!(
        "ゲートウェイ {gateway} は、契約 {} の利用条件「{}」がしきい値に達したことを計測しました。\n\
         計測期間: {}\nしきい値: {}\n詳細は上記の英文と `mxshield conditions --contract {}` をご覧ください。\n",
        f.contract, f.kind, f.window, f.threshold, f.contract
    ));
    (subject, b)
}

/// The whole mail of the policy `warn` about `f`, from the gateway `gateway` to `to`.
pub fn notice_message(f: &Finding, gateway: &str, to: &str) -> Vec<u8> {
    let (subject, body) = notice(f, gateway);
    let now = chrono::Utc::now();
    let id = format!("{}.{}.{}", now.timestamp_micros(), f.contract.len(), f.kind);
    let mut m = String::new();
    m.push_str(&format!("From: mxshield <MAILER-DAEMON@{gateway}>\r\n"));
    m.push_str(&mime::encode::header_field("To", to));
    m.push_str(&mime::encode::header_field("Subject", &subject));
    m.push_str(&format!("Date: {}\r\nMessage-ID: <conditions.{id}@{gateway}>\r\n", now.to_rfc2822()));
    m.push_str("Auto-Submitted: auto-generated\r\nMIME-Version: 1.0\r\n");
    m.push_str("Content-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: base64\r\n\r\n");
    m.push_str(&mime::encode::base64_lines(body.replace('\n', "\r\n").as_bytes()));
    m.into_bytes()
}

/// What one delivery attempt's outcome says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered: a copy that arrived.
    Delivered,
    /// A permanent failure that is not a policy rejection (unknown user, no such domain …).
    HardBounce,
    /// A permanent failure for policy (5.7.x, or spam wording).
    PolicyReject,
    /// Not final (a deferral), or given up after retries.
    Other,
}

/// Words of a reply that say the mail was refused as spam or for a blocklist.
const SPAM_WORDS: [&str; 11] = [
    "spam",
    "blocklist",
    "blacklist",
    "block list",
    "black list",
    "blocked",
    "listed",
    "rbl",
    "dnsbl",
    "reputation",
    "junk",
];

/// The basic and enhanced status codes at the start of a reply (`550 5.1.1 …`).
fn codes(reply: &str) -> (Option<u16>, Option<(u8, u16, u16)>) {
    let mut words = reply.split_whitespace();
    let basic =
        words.next().and_then(|w| w.get(..3)).and_then(|c| c.parse::<u16>().ok()).filter(|c| (200..600).contains(c));
    let enhanced = words.next().and_then(|w| {
        let mut p = w.split('.');
        let class = p.next()?.parse().ok()?;
        let subject = p.next()?.parse().ok()?;
        let detail = p.next()?.trim_end_matches([',', ';', ':']).parse().ok()?;
        Some((class, subject, detail))
    });
    (basic, enhanced)
}

/// Whether a reply refuses mail as spam or for a blocklist: a 5.7.x or 4.7.x code with such
/// wording.
pub fn is_spam_rejection(reply: &str) -> bool {
    let (_, enhanced) = codes(reply);
    let policy = matches!(enhanced, Some((4 | 5, 7, _)));
    let lower = reply.to_ascii_lowercase();
    policy && SPAM_WORDS.iter().any(|w| lower.contains(w))
}

/// What a recorded outcome (`state`, the remote's `reply`) counts as.
pub fn classify(state: &str, reply: &str) -> Outcome {
    match state {
        "delivered" => Outcome::Delivered,
        "bounced" => {
            let (basic, enhanced) = codes(reply);
            let permanent = basic.is_some_and(|c| c >= 500) || matches!(enhanced, Some((5, _, _)));
            if !permanent {
                // retries given up on a temporary failure: not a hard bounce
                Outcome::Other
            } else if matches!(enhanced, Some((5, 7, _))) || is_spam_rejection(reply) {
                Outcome::PolicyReject
            } else {
                Outcome::HardBounce
            }
        }
        _ => Outcome::Other,
    }
}

/// How a measure stands against its thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Below the warning threshold.
    Ok,
    /// At or above the warning threshold.
    Warn,
    /// At or above the flagging threshold.
    Flag,
    /// Too little mail to judge (below the minimum volume).
    Unmeasured,
}

/// One measured fact about one contract.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// The contract.
    pub contract: String,
    /// `undeliverable` or `spam-rejections`.
    pub kind: &'static str,
    /// Where it stands.
    pub level: Level,
    /// The window measured, in words.
    pub window: String,
    /// The raw counts (named).
    pub counts: Vec<(&'static str, f64)>,
    /// The thresholds applied, in words.
    pub threshold: String,
    /// The first and the last time (Unix seconds) an outcome counted against it was seen.
    pub first_seen: Option<i64>,
    /// See `first_seen`.
    pub last_seen: Option<i64>,
    /// A few of the replies counted (the remote's own words).
    pub evidence: Vec<String>,
    /// Where the operator's handling of it stands ([`Finding::settle`]).
    pub state: State,
    /// When the operator last acknowledged it (Unix seconds).
    pub acknowledged_at: Option<i64>,
    /// When the operator last cleared it (Unix seconds): it counts only what came after.
    pub cleared_at: Option<i64>,
}

/// Where the operator's handling of a finding stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Nothing to handle: below the warning threshold, never cleared.
    None,
    /// At or above a threshold, not acknowledged since it was last cleared.
    Open,
    /// At or above a threshold; the operator has seen it (it keeps counting, and a policy
    /// keeps holding the contract's mail until it is cleared).
    Acknowledged,
    /// Cleared by the operator, and below the thresholds since.
    Cleared,
}

impl State {
    /// Its name (`open`, `acknowledged` …).
    pub fn as_str(self) -> &'static str {
        match self {
            State::None => "none",
            State::Open => "open",
            State::Acknowledged => "acknowledged",
            State::Cleared => "cleared",
        }
    }
}

impl Finding {
    /// Sets [`Finding::state`] from when the operator last cleared and acknowledged it.
    pub fn settle(&mut self, cleared: &Cleared, acknowledged: &Cleared) {
        let key = (self.contract.clone(), self.kind.to_string());
        self.cleared_at = cleared.get(&key).copied();
        self.acknowledged_at = acknowledged.get(&key).copied();
        let standing = matches!(self.level, Level::Warn | Level::Flag);
        self.state = match (standing, self.acknowledged_at, self.cleared_at) {
            (true, Some(a), c) if c.is_none_or(|c| a >= c) => State::Acknowledged,
            (true, ..) => State::Open,
            (false, _, Some(_)) => State::Cleared,
            (false, ..) => State::None,
        };
    }
}

fn level(value: f64, warn: f64, flag: f64) -> Level {
    if value >= flag {
        Level::Flag
    } else if value >= warn {
        Level::Warn
    } else {
        Level::Ok
    }
}

/// The findings of every contract in `outcomes` (newest first, from `since`), as of `now`;
/// a finding the operator cleared counts only what came after.
pub fn measure(outcomes: &[msglog::OutboundOutcome], now: i64, th: &Thresholds, cleared: &Cleared) -> Vec<Finding> {
    let by_contract = by_contract(outcomes, |x| x.contract.as_str());
    let mut out = Vec::new();
    for (contract, list) in by_contract {
        out.push(undeliverable(contract, &after(cleared, contract, "undeliverable", &list), th));
        out.push(spam_rejections(contract, &after(cleared, contract, "spam-rejections", &list), now, th));
    }
    out
}

fn undeliverable(contract: &str, list: &[&msglog::OutboundOutcome], th: &Thresholds) -> Finding {
    // copies: final outcomes (delivered, or failed for good), newest first
    let copies: Vec<(&msglog::OutboundOutcome, Outcome)> = list
        .iter()
        .map(|o| (*o, classify(&o.state, &o.reply)))
        .filter(|(_, c)| matches!(c, Outcome::Delivered | Outcome::HardBounce | Outcome::PolicyReject))
        .collect();
    let hard =
        |part: &[(&msglog::OutboundOutcome, Outcome)]| part.iter().filter(|(_, c)| *c == Outcome::HardBounce).count();
    let last = &copies[..copies.len().min(th.bounce_last_copies)];
    let (n_all, h_all, n_last, h_last) = (copies.len(), hard(&copies), last.len(), hard(last));
    let rate = |h: usize, n: usize| if n == 0 { 0.0 } else { h as f64 / n as f64 };
    let (rate_last, rate_all) = (rate(h_last, n_last), rate(h_all, n_all));
    let lvl = if n_all < th.bounce_min_copies {
        Level::Unmeasured
    } else {
        let a = level(rate_last, th.bounce_warn, th.bounce_flag);
        let b = level(rate_all, th.bounce_warn, th.bounce_flag);
        if a == Level::Flag || b == Level::Flag {
            Level::Flag
        } else if a == Level::Warn || b == Level::Warn {
            Level::Warn
        } else {
            Level::Ok
        }
    };
    let bounced: Vec<&msglog::OutboundOutcome> =
        copies.iter().filter(|(_, c)| *c == Outcome::HardBounce).map(|(o, _)| *o).collect();
    Finding {
        contract: contract.to_string(),
        kind: "undeliverable",
        level: lvl,
        window: format!("the last {n_last} copies, and {} days ({n_all} copies)", th.window_days),
        counts: vec![
            ("copies_last", n_last as f64),
            ("hard_bounces_last", h_last as f64),
            ("rate_last", rate_last),
            ("copies_window", n_all as f64),
            ("hard_bounces_window", h_all as f64),
            ("rate_window", rate_all),
            ("policy_rejections_window", copies.iter().filter(|(_, c)| *c == Outcome::PolicyReject).count() as f64),
        ],
        threshold: format!(
            "warn at {:.0} %, flag at {:.0} % of hard bounces, over the last {} copies or {} days, once there are {} copies",
            th.bounce_warn * 100.0,
            th.bounce_flag * 100.0,
            th.bounce_last_copies,
            th.window_days,
            th.bounce_min_copies
        ),
        first_seen: bounced.iter().map(|o| o.at).min(),
        last_seen: bounced.iter().map(|o| o.at).max(),
        evidence: sample(&bounced),
        state: State::None,
        acknowledged_at: None,
        cleared_at: None,
    }
}

fn spam_rejections(contract: &str, list: &[&msglog::OutboundOutcome], now: i64, th: &Thresholds) -> Finding {
    let rejected: Vec<&msglog::OutboundOutcome> =
        list.iter().copied().filter(|o| is_spam_rejection(&o.reply)).collect();
    // per UTC day of the window, oldest first
    let today = now - now.rem_euclid(86_400);
    let days = th.window_days.max(1) as usize;
    let mut per_day = vec![0u64; days];
    for o in &rejected {
        let back = ((today - (o.at - o.at.rem_euclid(86_400))) / 86_400) as usize;
        if back < days {
            per_day[days - 1 - back] += 1;
        }
    }
    let worst = per_day.iter().copied().max().unwrap_or(0);
    let mut counts = vec![("total_window", rejected.len() as f64), ("worst_day", worst as f64)];
    // the last seven days by name (today, then back)
    const BACK: [&str; 7] = ["today", "day-1", "day-2", "day-3", "day-4", "day-5", "day-6"];
    for (back, name) in BACK.iter().enumerate().take(days) {
        counts.push((name, per_day[days - 1 - back] as f64));
    }
    Finding {
        contract: contract.to_string(),
        kind: "spam-rejections",
        level: level(worst as f64, th.spam_warn_per_day as f64, th.spam_flag_per_day as f64),
        window: format!("{} UTC days, per day", th.window_days),
        counts,
        threshold: format!(
            "warn at {}, flag at {} remote spam or blocklist rejections (5.7.x, 4.7.x) in a day",
            th.spam_warn_per_day, th.spam_flag_per_day
        ),
        first_seen: rejected.iter().map(|o| o.at).min(),
        last_seen: rejected.iter().map(|o| o.at).max(),
        evidence: sample(&rejected),
        state: State::None,
        acknowledged_at: None,
        cleared_at: None,
    }
}

/// The bulk findings of every contract with metered mail: the largest campaign — the shared
/// clusters grouped as near-duplicates ([`bulk::group_shared`]) — with its copies in the last
/// 24 hours and in the window, against the thresholds; what the operator cleared counts from
/// then on (whole hours).
pub fn measure_bulk(
    clusters: &[msglog::BulkCluster],
    counts: &[(String, i64, i64)],
    now: i64,
    th: &Thresholds,
    cleared: &Cleared,
) -> Vec<Finding> {
    let by_contract = by_contract(clusters, |x| x.contract.as_str());
    let since_window = now - i64::from(th.window_days) * 86_400;
    let since_day = now - 86_400;
    let mut out = Vec::new();
    for (contract, list) in by_contract {
        let groups = bulk::group_shared(&list);
        let from = cleared.get(&(contract.to_string(), "bulk".to_string())).copied().unwrap_or(i64::MIN);
        // per group: copies in 24 h, in the window, per hour
        let mut sums: std::collections::HashMap<&str, (u64, u64, std::collections::BTreeMap<i64, u64>)> =
            Default::default();
        for (cluster, hour, copies) in counts {
            let Some(group) = groups.get(cluster) else { continue };
            // after a clearing, the hours that start after it
            if *hour < since_window || *hour < from {
                continue;
            }
            let e = sums.entry(group.as_str()).or_default();
            let n = *copies as u64;
            e.1 += n;
            if *hour + 3600 > since_day {
                e.0 += n;
            }
            *e.2.entry(*hour).or_default() += n;
        }
        let Some((group, (day, window, hours))) = sums.into_iter().max_by_key(|(g, (d, w, _))| (*w, *d, *g)) else {
            continue;
        };
        let subject = list.iter().find(|c| c.id == group).map(|c| c.subject.clone()).unwrap_or_default();
        let worst = day.max(window);
        let mut evidence = vec![format!("subject: {subject}")];
        let recent: Vec<String> = hours
            .iter()
            .rev()
            .take(24)
            .map(|(h, n)| {
                let at = chrono::DateTime::from_timestamp(*h, 0)
                    .map(|d| d.format("%m-%d %H:00").to_string())
                    .unwrap_or_default();
                format!("{at} {n}")
            })
            .collect();
        evidence.push(format!("copies per hour (UTC, newest first): {}", recent.join(", ")));
        out.push(Finding {
            contract: contract.to_string(),
            kind: "bulk",
            level: level(worst as f64, th.bulk_warn_copies as f64, th.bulk_flag_copies as f64),
            window: format!("24 hours, and {} days", th.window_days),
            counts: vec![("copies_24h", day as f64), ("copies_window", window as f64)],
            threshold: format!(
                "warn at {}, flag at {} delivered copies of substantially identical mail (near-duplicate text, or the same subject and attachments)",
                th.bulk_warn_copies, th.bulk_flag_copies
            ),
            first_seen: hours.keys().next().copied(),
            last_seen: hours.keys().next_back().map(|h| h + 3599),
            evidence,
            state: State::None,
            acknowledged_at: None,
            cleared_at: None,
        });
    }
    out
}

/// The spam-score findings of every contract the spam engine was asked about: per UTC day of
/// the window, its outbound messages the engine called spam, against the thresholds (the worst
/// day counts); messages the engine could not score are shown, never counted as either.
pub fn measure_spam_score(counts: &[msglog::SpamCount], now: i64, th: &Thresholds, cleared: &Cleared) -> Vec<Finding> {
    let by_contract = by_contract(counts, |x| x.contract.as_str());
    let today = now - now.rem_euclid(86_400);
    let since = today - i64::from(th.window_days.max(1) - 1) * 86_400;
    let mut out = Vec::new();
    for (contract, days) in by_contract {
        // after a clearing, the days that start after it
        let from = cleared.get(&(contract.to_string(), "spam-score".to_string())).copied().unwrap_or(i64::MIN);
        let days: Vec<&&msglog::SpamCount> = days.iter().filter(|d| d.day >= since && d.day + 86_400 > from).collect();
        let sum = |f: fn(&msglog::SpamCount) -> i64| days.iter().map(|d| f(d)).sum::<i64>();
        let (scored, spam, unmeasured) = (sum(|d| d.scored), sum(|d| d.spam), sum(|d| d.unmeasured));
        let worst = days.iter().map(|d| d.spam).max().unwrap_or(0);
        let on_today = days.iter().filter(|d| d.day == today).map(|d| d.spam).sum::<i64>();
        let lvl = if scored == 0 {
            Level::Unmeasured
        } else {
            level(worst as f64, th.spam_score_warn_per_day as f64, th.spam_score_flag_per_day as f64)
        };
        let spam_days: Vec<i64> = days.iter().filter(|d| d.spam > 0).map(|d| d.day).collect();
        out.push(Finding {
            contract: contract.to_string(),
            kind: "spam-score",
            level: lvl,
            window: format!("{} UTC days, per day", th.window_days),
            counts: vec![
                ("scored_window", scored as f64),
                ("spam_window", spam as f64),
                ("unmeasured_window", unmeasured as f64),
                ("worst_day", worst as f64),
                ("today", on_today as f64),
            ],
            threshold: format!(
                "warn at {}, flag at {} outbound messages in a day at or above the spam engine's threshold",
                th.spam_score_warn_per_day, th.spam_score_flag_per_day
            ),
            first_seen: spam_days.iter().min().copied(),
            last_seen: spam_days.iter().max().map(|d| d + 86_399),
            evidence: days
                .iter()
                .filter(|d| d.scored + d.unmeasured > 0)
                .map(|d| {
                    format!(
                        "{}: {} spam of {} scored, {} unmeasured",
                        stamp(d.day).get(..10).unwrap_or(""),
                        d.spam,
                        d.scored,
                        d.unmeasured
                    )
                })
                .collect(),
            state: State::None,
            acknowledged_at: None,
            cleared_at: None,
        });
    }
    out
}

/// The open-relay findings of every contract with probes: from the latest probe of each of its
/// servers, a server whose canary arrived (after the operator last cleared the finding) flags
/// it — an open relay, proven; one that took the message but whose canary has not arrived
/// warns.
pub fn measure_relay(probes: &[crate::store::RelayProbe], cleared: &Cleared) -> Vec<Finding> {
    let by_contract = by_contract(probes, |x| x.contract.as_str());
    let mut out = Vec::new();
    for (contract, list) in by_contract {
        let from = cleared.get(&(contract.to_string(), "open-relay".to_string())).copied().unwrap_or(i64::MIN);
        let relayed: Vec<_> = list.iter().filter(|p| p.arrived_at.is_some_and(|a| a > from)).collect();
        let suspect: Vec<_> =
            list.iter().filter(|p| p.outcome == "accepted" && p.arrived_at.is_none() && p.started_at > from).collect();
        let probed = list.iter().filter(|p| p.outcome != "unreachable").count();
        let lvl = if !relayed.is_empty() {
            Level::Flag
        } else if !suspect.is_empty() {
            Level::Warn
        } else if probed == 0 {
            Level::Unmeasured
        } else {
            Level::Ok
        };
        let mut evidence = Vec::new();
        for p in relayed.iter().chain(suspect.iter()) {
            evidence.push(match (p.arrived_at, &p.arrived_from) {
                (Some(at), from) => format!(
                    "{} relayed canary {}: it arrived at {} from {}",
                    p.server,
                    p.token,
                    stamp(at),
                    from.as_deref().unwrap_or("?")
                ),
                (None, _) => format!("{} took canary {} for relaying; it has not arrived", p.server, p.token),
            });
            evidence.extend(p.transcript.lines().map(str::to_string));
            if let Some(head) = &p.arrival {
                evidence
                    .extend(head.lines().filter(|l| l.starts_with("Received:")).map(|l| format!("arrived with {l}")));
            }
        }
        let newest = list.iter().map(|p| p.started_at).max().unwrap_or_default();
        out.push(Finding {
            contract: contract.to_string(),
            kind: "open-relay",
            level: lvl,
            window: format!("the latest probe of each server (the newest at {})", stamp(newest)),
            counts: vec![
                ("servers_probed", list.len() as f64),
                ("servers_answering", probed as f64),
                ("relayed_canary", relayed.len() as f64),
                ("took_canary_not_arrived", suspect.len() as f64),
            ],
            threshold:
                "flag when a server relays the canary (proven); warn when it takes it and the canary has not arrived"
                    .into(),
            first_seen: relayed.iter().filter_map(|p| p.arrived_at).min(),
            last_seen: relayed.iter().filter_map(|p| p.arrived_at).max(),
            evidence,
            state: State::None,
            acknowledged_at: None,
            cleared_at: None,
        });
    }
    out
}

fn stamp(at: i64) -> String {
    chrono::DateTime::from_timestamp(at, 0).map(|d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string()).unwrap_or_default()
}

/// `items` grouped by contract (named by `contract`), in the contracts' order.
fn by_contract<'a, T>(
    items: &'a [T],
    contract: impl Fn(&'a T) -> &'a str,
) -> std::collections::BTreeMap<&'a str, Vec<&'a T>> {
    let mut out: std::collections::BTreeMap<&str, Vec<&T>> = Default::default();
    for x in items {
        out.entry(contract(x)).or_default().push(x);
    }
    out
}

/// The outcomes of `list` after the operator last cleared `contract`'s finding of `kind`.
fn after<'a>(
    cleared: &Cleared,
    contract: &str,
    kind: &str,
    list: &[&'a msglog::OutboundOutcome],
) -> Vec<&'a msglog::OutboundOutcome> {
    let from = cleared.get(&(contract.to_string(), kind.to_string())).copied().unwrap_or(i64::MIN);
    list.iter().copied().filter(|o| o.at > from).collect()
}

/// Up to three different replies, as the remote servers worded them.
fn sample(list: &[&msglog::OutboundOutcome]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for o in list {
        if out.len() == 3 {
            break;
        }
        if !out.contains(&o.reply) {
            out.push(o.reply.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(at: i64, state: &str, reply: &str) -> msglog::OutboundOutcome {
        msglog::OutboundOutcome { contract: "acme".into(), at, state: state.into(), reply: reply.into() }
    }

    #[test]
    fn replies_are_classified_by_their_codes_and_words() {
        assert_eq!(classify("bounced", "550 5.1.1 <x@y>: user unknown"), Outcome::HardBounce);
        assert_eq!(classify("bounced", "550 5.7.1 message rejected as spam"), Outcome::PolicyReject);
        assert_eq!(
            classify("bounced", "554 5.7.1 Service unavailable; client host blocked using zen.spamhaus.org"),
            Outcome::PolicyReject
        );
        assert_eq!(classify("bounced", "451 4.4.1 no answer, given up after 1 day"), Outcome::Other);
        assert_eq!(classify("delivered", "250 2.0.0 ok"), Outcome::Delivered);
        assert_eq!(classify("deferred", "421 4.7.0 try later"), Outcome::Other);
        assert!(is_spam_rejection(
            "550 5.7.1 Our system has detected that this message is likely unsolicited mail (SPAM)"
        ));
        assert!(is_spam_rejection("421 4.7.28 rate limited due to IP reputation"));
        assert!(!is_spam_rejection("550 5.1.1 user unknown"));
        assert!(!is_spam_rejection("550 5.7.1 relaying denied"), "policy, but not spam");
    }

    #[test]
    fn a_bounce_rate_needs_its_minimum_volume_and_names_its_window() {
        let now = 100 * 86_400 + 43_200;
        let th = Thresholds::default();
        // 150 copies, 30 hard bounces: 20 %, but fewer than 200 copies
        let mut list: Vec<_> = (0..120).map(|i| o(now - i, "delivered", "250 ok")).collect();
        list.extend((0..30).map(|i| o(now - 200 - i, "bounced", "550 5.1.1 user unknown")));
        let f = measure(&list, now, &th, &Cleared::new());
        assert_eq!((f[0].kind, f[0].level), ("undeliverable", Level::Unmeasured));
        // 300 copies, 30 hard bounces: 10 %, flagged; 17 of 327 (policy rejections are copies
        // too, not bounces): 5.2 %, warned
        list.extend((0..150).map(|i| o(now - 400 - i, "delivered", "250 ok")));
        assert_eq!(measure(&list, now, &th, &Cleared::new())[0].level, Level::Flag);
        let mut fewer: Vec<_> = list.iter().filter(|x| x.state == "delivered").cloned().collect();
        fewer.extend((0..17).map(|i| o(now - 700 - i, "bounced", "550 5.1.1 user unknown")));
        fewer.extend((0..40).map(|i| o(now - 800 - i, "bounced", "550 5.7.1 rejected as spam")));
        let f = measure(&fewer, now, &th, &Cleared::new());
        assert_eq!(f[0].level, Level::Warn, "{:?}", f[0]);
        assert!(f[0].counts.contains(&("policy_rejections_window", 40.0)));
        assert_eq!(f[0].evidence, ["550 5.1.1 user unknown"]);
        // the spam rejections: 40 in one day warns (10), not flags (50)
        assert_eq!((f[1].kind, f[1].level), ("spam-rejections", Level::Warn));
        assert!(f[1].counts.contains(&("today", 40.0)));
    }

    fn flagged(contract: &str, kind: &'static str) -> Finding {
        Finding {
            contract: contract.into(),
            kind,
            level: Level::Flag,
            window: "w".into(),
            counts: vec![],
            threshold: "t".into(),
            first_seen: None,
            last_seen: None,
            evidence: vec![],
            state: State::Open,
            acknowledged_at: None,
            cleared_at: None,
        }
    }

    #[test]
    fn holds_take_the_strongest_policy_per_contract_and_warn_only_mails() {
        let mut s = Settings::default();
        s.policies.insert("bulk".into(), Policy::Defer);
        s.policies.insert("undeliverable".into(), Policy::Warn);
        s.overrides.entry("acme".into()).or_default().insert("open-relay".into(), Policy::Refuse);
        let findings = vec![
            flagged("acme", "bulk"),
            flagged("acme", "open-relay"),
            flagged("beta", "bulk"),
            flagged("beta", "open-relay"),
            flagged("gamma", "undeliverable"),
            Finding { level: Level::Warn, ..flagged("delta", "bulk") },
        ];
        let h = holds(&findings, &s);
        assert_eq!(h["acme"].0, Policy::Refuse, "refuse outweighs defer");
        assert!(h["acme"].1.contains("open-relay"));
        assert_eq!(h["beta"].0, Policy::Defer, "open-relay is observed for beta");
        assert!(!h.contains_key("gamma") && !h.contains_key("delta"), "warn holds nothing; a warning is not a flag");
        let w: Vec<_> = to_warn(&findings, &s).iter().map(|f| (f.contract.as_str(), f.kind)).collect();
        assert_eq!(w, [("gamma", "undeliverable")]);
        let (subject, body) = notice(&findings[4], "mx.example.net");
        assert!(subject.contains("undeliverable flagged for contract gamma"));
        assert!(
            body.contains("mxshield conditions acknowledge|clear gamma undeliverable") && body.contains("利用条件")
        );
    }
}
