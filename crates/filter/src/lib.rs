//! The filter stage between receiving a message and queueing it.
//!
//! Every message passes here after its data is in the spool's `tmp/` and before it is
//! committed and answered with `250`, so a message that must be refused gets its 5xx at SMTP
//! time and never needs a bounce. The stage refuses mail loops (more `Received:` headers than
//! `smtp.max_received_headers`), scans the message, decides what to do ([`decision`]) and does
//! it: refuses, delivers (with the result header), rewrites infected attachments away
//! ([`rewrite`], with `scan::disinfect`) or drops the message, and builds the warning mails.

pub mod decision;
pub mod notify;
pub mod rewrite;

use std::sync::Arc;
use std::time::Instant;

use scan::clamd::Clamd;

use crate::notify::{AffectedPart, Case, DoneKind, Incident, Notifier, Original};
use decision::{Action, ContentPolicy, Fix, PartFix, Warn};
use mime::encode::header_field;
use msglog::PartRecord;
use scan::limits::Limit;
use scan::limits::Stop;
use scan::{Engine, Verdict};
use spool::Writer;
use spool::attrs::Direction;

/// Accept or refuse.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum FilterVerdict {
    /// Take the message (answer `250`): queue it unless `Decision::deliver` is false.
    #[default]
    Accept,
    /// Refuse it at SMTP time, for this cause (`inbound` words the reply).
    Refuse(Refusal),
}

/// Why the filter refuses a message: the cause, for the log; the receiving side turns it into
/// a reply with generic text, temporary where trying again may work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// More `Received:` header fields than allowed: a mail loop (RFC 5321 §6.3).
    #[error("mail loop: {hops} Received header fields")]
    Loop {
        /// How many there were.
        hops: usize,
    },
    /// The content is beyond a scanning limit (size, depth, entries, ratio, decoder memory).
    #[error("content exceeds a scanning limit: {0}")]
    Limit(Limit),
    /// The scan (with the rewrite) did not finish in `[scan] max_time`.
    #[error("scan timed out")]
    ScanTimeout,
    /// The engine could not scan the message (clamd unreachable, a crash).
    #[error("scan failed: {0}")]
    ScanFailed(String),
    /// Password-protected content, which a contract refuses (R11).
    #[error("encrypted content, refused by the contract")]
    Encrypted,
    /// Content that cannot be read (damaged, unsupported), which a contract refuses.
    #[error("unreadable content, refused by the contract")]
    Unreadable,
    /// The message could not be read back from the spool.
    #[error("spool error: {0}")]
    Spool(String),
}

impl Refusal {
    /// Whether the client may succeed by trying again later (load, a local fault), unlike
    /// content that will be refused every time.
    pub fn is_temporary(&self) -> bool {
        matches!(self, Refusal::ScanTimeout | Refusal::ScanFailed(_) | Refusal::Spool(_))
    }
}

/// What the filter decided and did.
#[derive(Debug, Clone, Default)]
pub struct Decision {
    /// Accept or refuse.
    pub verdict: FilterVerdict,
    /// Queue the message for delivery (false: it was dropped because of a virus).
    pub deliver: bool,
    /// The message to queue instead of the one received (attachments disinfected/removed).
    pub rewritten: Option<Vec<u8>>,
    /// Header fields (CRLF-terminated) to put in front of the message on delivery.
    pub headers: String,
    /// Warning mails to queue: (recipient, message).
    pub warnings: Vec<(String, Vec<u8>)>,
    /// The scan verdict in words (`clean`, `infected` …), empty if not scanned.
    pub verdict_text: String,
    /// The action taken ([`decision::Action::word`]).
    pub action: &'static str,
    /// What the result header says.
    pub result: String,
    /// What was found, for the log.
    pub findings: String,
    /// Viruses found.
    pub viruses: Vec<String>,
    /// Each part with its verdict, for the log.
    pub parts: Vec<PartRecord>,
    /// The original's header fields, for warnings and the log.
    pub original: Original,
    /// How long the scan and the decision took.
    pub scan_ms: u64,
    /// Time spent waiting for a scan slot ([`Admission`]).
    pub wait_ms: u64,
    /// The message to deliver holds 8-bit bytes.
    pub eight_bit: bool,
    /// The signature database version the verdict was made with.
    pub signatures: String,
}

/// What the receiving side knows about a message when its data is in.
#[derive(Debug, Clone)]
pub struct MessageFacts {
    /// `Received:` header fields in the message as received.
    pub received_headers: usize,
    /// Inbound or outbound.
    pub direction: Direction,
    /// Envelope sender (empty for `<>`).
    pub sender: String,
    /// For inbound mail each is an account of a registered domain of an active contract
    /// (`inbound::policy::decide_rcpt` accepted nothing else), so warnings may go to all.
    pub recipients: Vec<String>,
    /// The strictest content policy of the message's contracts.
    pub policy: ContentPolicy,
}

/// The scanner in use, swapped atomically; the one replaced is freed when the last message
/// scanned with it is done.
pub type LiveScanner = Arc<arc_swap::ArcSwap<Scanner>>;

/// A scanner made live.
pub fn live(scanner: Scanner) -> LiveScanner {
    Arc::new(arc_swap::ArcSwap::from_pointee(scanner))
}

/// Which engine scans.
#[derive(Clone)]
pub enum Scanner {
    /// The built-in engine.
    Builtin(Arc<Engine>),
    /// A running clamd; the string is its version line at start-up (each message records the
    /// version clamd reports when it is scanned).
    Clamd(Clamd, String),
}

impl Scanner {
    /// The signature database version in use (`release-7`, `daily:27451,…`, `clamd …` at start).
    pub fn version(&self) -> String {
        match self {
            Scanner::Builtin(e) => e.signatures().version.clone(),
            Scanner::Clamd(_, at_start) => at_start.clone(),
        }
    }

    /// The limits the scans run under (clamd's own are its; the defaults bound our reads).
    fn limits(&self) -> scan::Limits {
        match self {
            Scanner::Builtin(e) => e.limits(),
            Scanner::Clamd(..) => scan::Limits::default(),
        }
    }

    /// Scans a message before `deadline`; `Err` means it could not be scanned (never treat it
    /// as clean).
    fn scan_message(&self, raw: &[u8], stop: &Stop) -> Result<scan::Report, String> {
        match self {
            Scanner::Builtin(e) => Ok(e.scan_message_until(raw, stop)),
            Scanner::Clamd(c, at_start) => {
                // clamd reloads its database by itself: the version it reports now is the one
                // this verdict is made with
                let version = c.version().map(|v| format!("clamd {v}")).unwrap_or_else(|_| at_start.clone());
                c.scan_message(raw, &version).map_err(|e| e.to_string())
            }
        }
    }

    /// Whether a file (an archive member) is infected; a scan stopped by `stop` is an error.
    fn is_infected(&self, data: &[u8], stop: &Stop) -> Result<bool, String> {
        match self {
            Scanner::Builtin(e) => match e.scan_bytes_until("member", data, stop).verdict() {
                Verdict::Infected(_) => Ok(true),
                Verdict::LimitExceeded(limit) if Instant::now() > stop.deadline || stop.is_cancelled() => {
                    Err(limit.to_string())
                }
                _ => Ok(false),
            },
            Scanner::Clamd(c, _) => match c.instream(data).map_err(|e| e.to_string())? {
                scan::clamd::ClamdVerdict::Found(_) => Ok(true),
                scan::clamd::ClamdVerdict::Clean => Ok(false),
                scan::clamd::ClamdVerdict::Error(e) => Err(e),
            },
        }
    }
}

/// Admission to scanning: how many scans run at once and how much memory they may hold.
/// A message that finds no room waits (its client is not refused); its data waits on disk.
#[derive(Debug)]
pub struct Admission {
    slots: Arc<tokio::sync::Semaphore>,
    /// Units of 1 MiB.
    memory: Arc<tokio::sync::Semaphore>,
    memory_mib: u32,
    max_expanded: u64,
}

impl Admission {
    /// `concurrent` scans at once holding at most `memory` bytes together; a scan is charged
    /// three times its message size (the data, its decoded parts, a rewritten copy) plus what
    /// decompression may produce (`max_expanded`).
    pub fn new(concurrent: usize, memory: u64, max_expanded: u64) -> Admission {
        let memory_mib = u32::try_from(memory.div_ceil(1 << 20)).unwrap_or(u32::MAX).max(1);
        Admission {
            slots: Arc::new(tokio::sync::Semaphore::new(concurrent.max(1))),
            memory: Arc::new(tokio::sync::Semaphore::new(memory_mib as usize)),
            memory_mib,
            max_expanded,
        }
    }

    /// The memory a scan of a `size`-byte message is charged, in MiB (never more than all).
    fn cost_mib(&self, size: u64) -> u32 {
        let bytes = size.saturating_mul(3).saturating_add(self.max_expanded);
        u32::try_from(bytes.div_ceil(1 << 20)).unwrap_or(u32::MAX).clamp(1, self.memory_mib)
    }

    /// Waits for a slot and the memory of a `size`-byte message.
    /// Waits for a slot and the memory of a `size`-byte message; both are held until the
    /// returned permits are dropped.
    async fn enter(&self, size: u64) -> Admitted {
        let slot = self.slots.clone().acquire_owned().await.expect("never closed");
        let memory = self.memory.clone().acquire_many_owned(self.cost_mib(size)).await.expect("never closed");
        Admitted { _slot: slot, _memory: memory }
    }
}

/// A scan's admission ([`Admission`]), given back when dropped.
struct Admitted {
    _slot: tokio::sync::OwnedSemaphorePermit,
    _memory: tokio::sync::OwnedSemaphorePermit,
}

/// Sets the flag when dropped: a [`Filter::check`] abandoned half-way cancels its scan.
struct CancelOnDrop(Arc<std::sync::atomic::AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The filter stage.
#[derive(Clone)]
pub struct Filter {
    /// More `Received:` headers than this is a loop (RFC 5321 §6.3).
    pub max_received_headers: usize,
    /// The scanning engine in use; a new signature release replaces it whole, and each
    /// message is scanned, rewritten and rescanned with the one it started with.
    pub scanner: LiveScanner,
    /// Builds warning mails; `None` when warnings are switched off.
    pub notifier: Option<Arc<Notifier>>,
    /// Bounds the scans running at once and their memory.
    pub admission: Arc<Admission>,
    /// Time for all the work on one message (`[scan] max_time`).
    pub max_time: std::time::Duration,
}

impl Filter {
    /// Decides on a received message and carries the decision out (rewriting it, building
    /// the warnings); gives the writer back (`None` only if the scanner crashed, and then the
    /// decision is a temporary refusal).
    pub async fn check(&self, facts: &MessageFacts, writer: Writer) -> (Option<Writer>, Decision) {
        let (decision, writer) = self.check_then(facts, writer, |w, _| w).await;
        (writer.flatten(), decision)
    }

    /// [`Filter::check`], then `then` with the writer and the decision on the same blocking
    /// thread — the caller's commit of the message follows its scan without a second hand-off
    /// to the blocking pool (one per message, not two). `then` runs whatever the verdict, and
    /// not at all if the scanner crashed (`None`).
    pub async fn check_then<T: Send + 'static>(
        &self,
        facts: &MessageFacts,
        writer: Writer,
        then: impl FnOnce(Option<Writer>, &mut Decision) -> T + Send + 'static,
    ) -> (Decision, Option<T>) {
        if facts.received_headers > self.max_received_headers {
            let mut d = refuse(Refusal::Loop { hops: facts.received_headers });
            let done = then(Some(writer), &mut d);
            return (d, Some(done));
        }
        let this = self.clone();
        let facts = facts.clone();
        let mut writer = writer;
        let admission = self.admission.clone();
        let waiting = Instant::now();
        let admitted = admission.enter(writer.data_len()).await;
        let wait_ms = waiting.elapsed().as_millis() as u64;
        let started = Instant::now();
        let stop = Stop::at(started + self.max_time);
        // if this future is dropped (the client went away), the scan stops at its next check
        let _cancel_on_drop = CancelOnDrop(stop.cancelled.clone());
        let joined = tokio::task::spawn_blocking(move || {
            let queue_id = writer.id().clone();
            let mut decision = match writer.read_back() {
                Ok(raw) => {
                    let scanner = this.scanner.load_full();
                    let d = this.decide(&scanner, &facts, queue_id.as_str(), &raw, &stop);
                    drop(raw);
                    if stop.is_cancelled() {
                        tracing::info!(event = "scan_abandoned", queue_id = %queue_id, scan_ms = d.scan_ms,
                            reason = "the client has gone");
                    }
                    d
                }
                Err(e) => {
                    tracing::error!(event = "spool_error", error = %e);
                    refuse(Refusal::Spool(e.to_string()))
                }
            };
            decision.wait_ms = wait_ms;
            // the scan is done: its slot and memory go to the next message now, not after this
            // one's commit — the commit waits on the disk, not the CPU, and the commits of
            // concurrent sessions share their syncs only if they can run at the same time
            drop(admitted);
            if stop.is_cancelled() {
                // nobody waits for the reply: nothing is committed, the client sends it again
                decision = Decision { wait_ms, ..refuse(Refusal::ScanFailed("the client has gone".into())) };
            }
            let done = then(Some(writer), &mut decision);
            (decision, done)
        })
        .await;
        match joined {
            Ok((decision, done)) => (decision, Some(done)),
            Err(_) => {
                // the scanner panicked: the writer went with it; the message is not lost, the
                // client was not answered 250 and will retry
                tracing::error!(event = "scan_failed", error = "scanner task panicked");
                (refuse(Refusal::ScanFailed("scanner task panicked".into())), None)
            }
        }
    }

    /// Scans, decides and acts (blocking).
    /// All of it — the scan, the rewrite and the scans of the rewritten message — shares one
    /// time budget (`[scan] max_time` from `started`).
    fn decide(&self, scanner: &Scanner, facts: &MessageFacts, queue_id: &str, raw: &[u8], stop: &Stop) -> Decision {
        let started = Instant::now();
        let report = match scanner.scan_message(raw, stop) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(event = "scan_failed", error = %e);
                return refuse(Refusal::ScanFailed(e));
            }
        };
        let findings: Vec<String> =
            report.root.findings().into_iter().map(|(path, l)| format!("{path}: {}", l.verdict.label())).collect();
        let mut d = Decision {
            deliver: true,
            verdict_text: verdict_word(&report.verdict()).to_string(),
            findings: summarise(&findings),
            parts: part_records(&report.root),
            original: Original::of(raw),
            ..Decision::default()
        };
        let mut action = decision::decide(facts.direction, &report.root, facts.policy);
        if let Action::Rewrite { fixes, unscanned } = &action {
            match carry_out_rewrite(scanner, raw, fixes, stop) {
                Some((data, done)) => {
                    let mut result: Vec<String> = done.iter().map(done_text).collect();
                    result.extend(unscanned_text(unscanned));
                    d.result = summarise(&result);
                    d.viruses = virus_list(fixes);
                    d.rewritten = Some(data);
                    let affected: Vec<AffectedPart> = done
                        .into_iter()
                        .map(|x| AffectedPart { name: x.name, viruses: x.viruses, done: Some(x.what) })
                        .collect();
                    d.warnings = self.warnings(Case::InboundCleaned, facts, queue_id, &d, &affected);
                }
                None if Instant::now() > stop.deadline || stop.is_cancelled() => {
                    // out of time, not out of options: the client tries again later
                    return refuse(Refusal::ScanTimeout);
                }
                None => {
                    action = Action::Drop { warn: Warn::Recipients, viruses: virus_list(fixes) };
                }
            }
        }
        d.action = action.word();
        match action {
            Action::Refuse(r) => {
                d.verdict = FilterVerdict::Refuse(r);
                d.result = "refused".into();
            }
            Action::Deliver { unscanned } => {
                d.result = if unscanned.is_empty() { "clean".into() } else { summarise(&unscanned_text(&unscanned)) };
            }
            Action::Rewrite { .. } => {}
            Action::Drop { warn, viruses } => {
                d.deliver = false;
                d.viruses = viruses;
                d.result = "deleted".into();
                let affected = infected_parts(&report.root);
                let case = if warn == Warn::Sender { Case::OutboundBlocked } else { Case::InboundDeleted };
                d.warnings = self.warnings(case, facts, queue_id, &d, &affected);
            }
        }
        d.headers = format!(
            "X-Virus-Scanned: mxshield {}, signatures {}\r\n{}",
            env!("CARGO_PKG_VERSION"),
            report.signatures,
            header_field("X-Mxshield-Scan", &d.result)
        );
        d.signatures = report.signatures.clone();
        d.eight_bit = !d.rewritten.as_deref().unwrap_or(raw).is_ascii();
        d.scan_ms = started.elapsed().as_millis() as u64;
        metrics::counter!(
            "mxshield_messages_total",
            "direction" => facts.direction.as_str(),
            "verdict" => d.verdict_text.clone(),
            "action" => d.action,
        )
        .increment(1);
        metrics::histogram!("mxshield_scan_duration_seconds").record(started.elapsed().as_secs_f64());
        d
    }

    /// Warning mails for `case`: to the sender for outbound mail, else to each recipient a
    /// warning may go to; none for mail from `<>`.
    fn warnings(
        &self,
        case: Case,
        facts: &MessageFacts,
        queue_id: &str,
        d: &Decision,
        affected: &[AffectedPart],
    ) -> Vec<(String, Vec<u8>)> {
        let Some(notifier) = &self.notifier else { return Vec::new() };
        if facts.sender.is_empty() {
            tracing::info!(event = "warning_suppressed", queue_id, reason = "null sender");
            return Vec::new();
        }
        let to: Vec<String> = match case {
            Case::OutboundBlocked => vec![facts.sender.clone()],
            Case::InboundDeleted | Case::InboundCleaned => facts.recipients.clone(),
        };
        let incident = Incident {
            case,
            queue_id,
            sender: &facts.sender,
            recipients: &facts.recipients,
            original: &d.original,
            viruses: &d.viruses,
            parts: affected,
        };
        to.into_iter()
            .map(|rcpt| {
                let mail = notifier.build(&incident, &rcpt);
                (rcpt, mail)
            })
            .collect()
    }
}

/// The infected parts of a deleted message, as its warnings list them.
fn infected_parts(root: &scan::Layer) -> Vec<AffectedPart> {
    root.children
        .iter()
        .filter(|p| p.overall().is_infected())
        .map(|p| AffectedPart {
            // an empty name is the body a reader sees, named in the warning's languages
            name: p.filename.clone().unwrap_or_else(|| if p.body_text { String::new() } else { p.name.clone() }),
            viruses: decision::virus_names(p),
            done: None,
        })
        .collect()
}

/// `disinfected: a.zip (bad.exe)` or `removed: x.exe`.
fn done_text(d: &rewrite::Done) -> String {
    match &d.what {
        DoneKind::Disinfected(members) => format!("disinfected: {} ({})", d.name, members.join(", ")),
        DoneKind::Removed => format!("removed: {}", d.name),
    }
}

/// `unscanned: encrypted a.zip`, `unscanned: partial`.
/// Most items named in a result header or a log line; the rest are counted.
const MAX_SUMMARY_ITEMS: usize = 20;
/// Most characters of the named items in a result header or a log line.
const MAX_SUMMARY_CHARS: usize = 2000;

/// `items` joined with `; `, at most [`MAX_SUMMARY_ITEMS`] of them and about
/// [`MAX_SUMMARY_CHARS`] characters, then `and N more`: a message of 100,000 unreadable parts
/// cannot make a header (kept in the spool envelope) or a log line without bound.
fn summarise(items: &[String]) -> String {
    let mut out = String::new();
    for (k, item) in items.iter().enumerate() {
        let item: String = item.chars().take(MAX_SUMMARY_CHARS / 4).collect();
        if k == MAX_SUMMARY_ITEMS || out.len() + item.len() > MAX_SUMMARY_CHARS {
            out.push_str(&format!("; and {} more", items.len() - k));
            break;
        }
        if k > 0 {
            out.push_str("; ");
        }
        out.push_str(&item);
    }
    out
}

fn unscanned_text(unscanned: &[String]) -> Vec<String> {
    unscanned.iter().map(|u| format!("unscanned: {u}")).collect()
}

/// Every virus name of the fixes, each once, in order.
fn virus_list(fixes: &[PartFix]) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for name in fixes.iter().flat_map(|f| &f.viruses) {
        if !v.contains(name) {
            v.push(name.clone());
        }
    }
    v
}

/// Most parts recorded in the message log for one message.
const MAX_PART_RECORDS: usize = 200;

/// The log's view of a report: each part with its overall verdict, and every deeper finding.
fn part_records(root: &scan::Layer) -> Vec<PartRecord> {
    let mut out: Vec<PartRecord> = root
        .children
        .iter()
        .take(MAX_PART_RECORDS)
        .map(|p| PartRecord { path: p.name.clone(), file: p.filename.clone(), verdict: p.overall().label() })
        .collect();
    for (path, layer) in root.findings() {
        if out.len() >= MAX_PART_RECORDS {
            break;
        }
        let is_part = root.children.iter().any(|c| std::ptr::eq(c, layer));
        if !is_part {
            out.push(PartRecord { path, file: layer.filename.clone(), verdict: layer.verdict.label() });
        }
    }
    out
}

/// Rewrites the message as `fixes` say, then scans the result: if a virus is still found,
/// the infected attachments are removed whole instead; `None` if even that leaves a virus.
fn carry_out_rewrite(
    scanner: &Scanner,
    raw: &[u8],
    fixes: &[PartFix],
    stop: &Stop,
) -> Option<(Vec<u8>, Vec<rewrite::Done>)> {
    let mut is_infected = |data: &[u8]| scanner.is_infected(data, stop);
    // clean means scanned to the end and nothing found: a rescan that hit a limit is not
    let clean = |data: &[u8]| {
        scanner.scan_message(data, stop).is_ok_and(|r| !r.verdict().is_infected() && !r.verdict().is_limit())
    };
    match rewrite::rewrite(raw, fixes, scanner.limits(), &mut is_infected) {
        Ok((data, done)) if clean(&data) => return Some((data, done)),
        Ok(_) => tracing::warn!(
            event = "disinfect_incomplete",
            "virus still found after disinfection; removing whole attachments"
        ),
        Err(e) => tracing::warn!(event = "rewrite_failed", error = %e),
    }
    let removals: Vec<PartFix> = fixes.iter().map(|f| PartFix { fix: Fix::Remove, ..f.clone() }).collect();
    match rewrite::rewrite(raw, &removals, scanner.limits(), &mut is_infected) {
        Ok((data, done)) if clean(&data) => Some((data, done)),
        _ => {
            tracing::warn!(event = "rewrite_failed", error = "virus still found after removing attachments; dropping");
            None
        }
    }
}

fn refuse(r: Refusal) -> Decision {
    Decision { verdict: FilterVerdict::Refuse(r), action: "refuse", ..Decision::default() }
}

fn verdict_word(v: &Verdict) -> &'static str {
    match v {
        Verdict::Clean => "clean",
        Verdict::Infected(_) => "infected",
        Verdict::Encrypted(_) => "encrypted",
        Verdict::LimitExceeded(_) => "limit-exceeded",
        Verdict::Unscannable(_) => "unscannable",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each decision is counted by direction, verdict and action, and its scan time recorded,
    /// where it happens (read here through a recorder, as the operator API will).
    #[test]
    fn decisions_are_counted_in_the_metrics() {
        use metrics_util::debugging::{DebugValue, DebuggingRecorder};
        let filter = Filter {
            max_received_headers: 30,
            scanner: live(Scanner::Builtin(Arc::new(Engine::new(
                Arc::new(scan::Signatures::builtin()),
                scan::Limits::default(),
            )))),
            notifier: None,
            admission: Arc::new(Admission::new(1, 1 << 30, 60_000_000)),
            max_time: std::time::Duration::from_secs(60),
        };
        let facts = MessageFacts {
            received_headers: 0,
            direction: Direction::Inbound,
            sender: "a@remote.test".into(),
            recipients: vec!["alice@acme.example".into()],
            policy: ContentPolicy::default(),
        };
        let eicar = "Subject: x\r\n\r\nX5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*\r\n";
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            let stop = Stop::at(Instant::now() + std::time::Duration::from_secs(60));
            let scanner = filter.scanner.load_full();
            filter.decide(&scanner, &facts, "Q1", b"Subject: hi\r\n\r\nclean\r\n", &stop);
            filter.decide(&scanner, &facts, "Q2", eicar.as_bytes(), &stop);
            filter.decide(&scanner, &facts, "Q3", b"Subject: hi again\r\n\r\nclean\r\n", &stop);
        });
        let mut counted = std::collections::BTreeMap::new();
        let mut scans = 0;
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            let labels: Vec<String> = key.key().labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
            match (key.key().name(), value) {
                ("mxshield_messages_total", DebugValue::Counter(n)) => {
                    counted.insert(labels.join(","), n);
                }
                ("mxshield_scan_duration_seconds", DebugValue::Histogram(v)) => scans += v.len(),
                _ => {}
            }
        }
        assert_eq!(counted.get("direction=inbound,verdict=clean,action=deliver"), Some(&2), "{counted:?}");
        assert_eq!(counted.get("direction=inbound,verdict=infected,action=drop"), Some(&1), "{counted:?}");
        assert_eq!(scans, 3);
    }

    #[test]
    fn summaries_are_bounded() {
        let many: Vec<String> = (0..100_000).map(|i| format!("unscanned: unreadable part{i}.zip")).collect();
        let s = summarise(&many);
        assert!(s.len() < MAX_SUMMARY_CHARS + 100, "{}", s.len());
        assert!(s.ends_with("; and 99980 more"), "{s}");
        assert_eq!(summarise(&["a".into(), "b".into()]), "a; b");
        let long = vec!["x".repeat(1_000_000)];
        assert!(summarise(&long).len() <= MAX_SUMMARY_CHARS);
    }

    #[test]
    fn header_fields_are_ascii_and_decode_back() {
        let h = header_field("X-Mxshield-Scan", "infected: message > part 2 (請求書.zip): Eicar-Test-Signature FOUND");
        assert!(h.is_ascii());
        assert!(h.lines().all(|l| l.len() <= 78), "{h}");
        let value = h.split_once(':').unwrap().1;
        assert_eq!(
            mime::decode_header(value.trim().as_bytes()),
            "infected: message > part 2 (請求書.zip): Eicar-Test-Signature FOUND"
        );
        let plain = header_field("X-Test", "clean");
        assert_eq!(plain, "X-Test: clean\r\n");
    }
}
