//! The filter stage between receiving a message and queueing it.
//!
//! Every message passes here after its data is in the spool's `tmp/` and before it is
//! committed and answered with `250`, so a message that must be refused gets its 5xx at SMTP
//! time and never needs a bounce. The stage refuses mail loops (more `Received:` headers than
//! `smtp.max_received_headers`) and scans the message with the engine; until the actions on
//! verdicts exist (issue 4), the verdict is logged and added as header fields.

pub mod decision;
pub mod disinfect;
pub mod rewrite;

use std::sync::Arc;
use std::time::Instant;

use scan::clamd::Clamd;

use crate::attrs::Direction;
use decision::EncryptedPolicy;
use scan::{Engine, Verdict};
use smtp::Reply;
use spool::Writer;

/// Accept or refuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterVerdict {
    /// Queue the message.
    Accept,
    /// Refuse it at SMTP time with this reply.
    Refuse(Reply),
}

/// What the filter decided and learnt.
#[derive(Debug, Clone)]
pub struct Decision {
    pub verdict: FilterVerdict,
    /// Header fields (CRLF-terminated) to put in front of the message on delivery.
    pub headers: String,
    /// The scan verdict in words (`clean`, `infected` …), empty if not scanned.
    pub verdict_text: String,
    /// What the decision table says should happen ([`decision::decide`]); logged as
    /// `planned_action` until the actions are carried out (issue 4).
    pub planned_action: &'static str,
    /// What was found, for the log.
    pub findings: String,
    pub scan_ms: u64,
}

/// What the receiving side learnt about a message while it streamed in.
#[derive(Debug, Clone)]
pub struct MessageFacts {
    /// `Received:` header fields in the message as received.
    pub received_headers: usize,
    pub direction: Direction,
}

/// Which engine scans.
#[derive(Clone)]
pub enum Scanner {
    /// The built-in engine.
    Builtin(Arc<Engine>),
    /// A running clamd; the string is its version line.
    Clamd(Clamd, String),
}

impl Scanner {
    /// Scans a message; `Err` means it could not be scanned (never treat it as clean).
    fn scan_message(&self, raw: &[u8]) -> Result<scan::Report, String> {
        match self {
            Scanner::Builtin(e) => Ok(e.scan_message(raw)),
            Scanner::Clamd(c, version) => c.scan_message(raw, version).map_err(|e| e.to_string()),
        }
    }
}

/// The filter stage.
#[derive(Clone)]
pub struct Filter {
    /// More `Received:` headers than this is a loop (RFC 5321 §6.3).
    pub max_received_headers: usize,
    /// The scanning engine.
    pub scanner: Scanner,
}

impl Filter {
    /// Decides on a received message; gives the writer back (`None` only if the scanner
    /// crashed, and then the decision is a temporary refusal).
    pub async fn check(&self, facts: &MessageFacts, writer: Writer) -> (Option<Writer>, Decision) {
        if facts.received_headers > self.max_received_headers {
            let text = format!("Too many hops ({} Received headers): mail loop?", facts.received_headers);
            return (Some(writer), refuse(Reply::new(554, (5, 4, 6), text)));
        }
        let scanner = self.scanner.clone();
        let mut writer = writer;
        let joined = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let report = writer.read_back().map(|data| scanner.scan_message(&data));
            (writer, report, started.elapsed())
        })
        .await;
        let Ok((writer, report, took)) = joined else {
            // the scanner panicked: the writer went with it; the message is not lost, the
            // client was not answered 250 and will retry
            tracing::error!(event = "scan_failed", error = "scanner task panicked");
            return (None, refuse(Reply::new(451, (4, 7, 1), "Scan failed, try again later")));
        };
        let report = match report {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::error!(event = "scan_failed", error = %e);
                return (Some(writer), refuse(Reply::new(451, (4, 7, 1), "Scan failed, try again later")));
            }
            Err(e) => {
                tracing::error!(event = "spool_error", error = %e);
                return (
                    Some(writer),
                    refuse(Reply::new(451, (4, 3, 0), "Local error in processing, try again later")),
                );
            }
        };
        let verdict = report.verdict();
        let findings: Vec<String> =
            report.root.findings().into_iter().map(|(path, l)| format!("{path}: {}", l.verdict.label())).collect();
        let action = decision::decide(facts.direction, &report.root, EncryptedPolicy::Pass);
        // Refusals are carried out already (R6: content over the limits is never passed
        // unscanned); the other actions are logged until issue 4 carries them out.
        let verdict_now = match &action {
            decision::Action::Refuse(r) => FilterVerdict::Refuse(r.clone()),
            _ => FilterVerdict::Accept,
        };
        let decision = Decision {
            verdict: verdict_now,
            headers: scan_headers(&verdict, &findings, &report.signatures),
            verdict_text: verdict_word(&verdict).to_string(),
            planned_action: action.word(),
            findings: findings.join("; "),
            scan_ms: took.as_millis() as u64,
        };
        (Some(writer), decision)
    }
}

fn refuse(r: Reply) -> Decision {
    Decision {
        verdict: FilterVerdict::Refuse(r),
        headers: String::new(),
        verdict_text: String::new(),
        planned_action: "",
        findings: String::new(),
        scan_ms: 0,
    }
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

/// `X-Virus-Scanned` and `X-Mxshield-Scan` header fields.
fn scan_headers(verdict: &Verdict, findings: &[String], signatures: &str) -> String {
    let mut result = verdict_word(verdict).to_string();
    if !findings.is_empty() {
        // ASCII separators keep the field readable without RFC 2047 unless a name needs it
        let shown: Vec<String> = findings.iter().take(5).map(|f| f.replace(" › ", " > ")).collect();
        result.push_str(": ");
        result.push_str(&shown.join("; "));
        if findings.len() > 5 {
            result.push_str(&format!("; and {} more", findings.len() - 5));
        }
    }
    format!(
        "X-Virus-Scanned: mxshield {}, signatures {signatures}\r\n{}",
        env!("CARGO_PKG_VERSION"),
        header_field("X-Mxshield-Scan", &result)
    )
}

/// A header field with its value RFC 2047-encoded if it is not ASCII, folded to short lines.
pub fn header_field(name: &str, value: &str) -> String {
    let value: String = value.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if value.is_ascii() {
        let mut out = format!("{name}:");
        let mut line_len = out.len();
        for word in value.split(' ') {
            if line_len + word.len() + 1 > 76 && line_len > name.len() + 1 {
                out.push_str("\r\n");
                line_len = 0;
            }
            out.push(' ');
            out.push_str(word);
            line_len += word.len() + 1;
        }
        out.push_str("\r\n");
        return out;
    }
    let mut out = format!("{name}:");
    let mut chunk = String::new();
    let mut words = Vec::new();
    for c in value.chars() {
        if chunk.len() + c.len_utf8() > 30 {
            words.push(std::mem::take(&mut chunk));
        }
        chunk.push(c);
    }
    words.push(chunk);
    for (i, w) in words.iter().enumerate() {
        if i > 0 {
            out.push_str("\r\n");
        }
        out.push_str(&format!(" =?UTF-8?B?{}?=", mime::encode::base64(w.as_bytes())));
    }
    out.push_str("\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn scan_header_lists_findings() {
        let h = scan_headers(
            &Verdict::Infected("Eicar".into()),
            &["message › part 2: Eicar FOUND".into()],
            "builtin-0.1.0",
        );
        assert!(h.starts_with("X-Virus-Scanned: mxshield "));
        assert!(h.contains("X-Mxshield-Scan: infected: message > part 2: Eicar FOUND"), "{h}");
    }
}
