//! Delivery status notifications (RFC 3464): a `multipart/report` with a human-readable part,
//! a `message/delivery-status` part and the original headers (`text/rfc822-headers`). Where
//! the original headers, an address or a diagnostic are not ASCII, the parts are
//! `message/global-headers` and `message/global-delivery-status` (RFC 6533), quoted-printable
//! encoded: the whole DSN is 7-bit, so any receiver takes it (a DSN comes from `<>`; one that
//! is refused is lost).

use chrono::{DateTime, Utc};
use smtp::Status;

/// One recipient that could not be delivered.
#[derive(Debug, Clone)]
pub struct FailedRcpt {
    /// The recipient.
    pub rcpt: String,
    /// Enhanced status code, e.g. `5.1.1`.
    pub status: Status,
    /// The remote host that answered, if any.
    pub remote: String,
    /// The reply or error text.
    pub diagnostic: String,
}

/// What a DSN is about.
pub struct DsnInput<'a> {
    /// Our host name (`Reporting-MTA`).
    pub reporting_host: &'a str,
    /// The `From:` address.
    pub postmaster: &'a str,
    /// Who gets the DSN.
    pub original_sender: &'a str,
    /// The original message's queue id.
    pub queue_id: &'a str,
    /// When the original arrived.
    pub arrival: DateTime<Utc>,
    /// The recipients that failed.
    pub failed: &'a [FailedRcpt],
    /// The original message's header section.
    pub original_headers: &'a [u8],
}

/// Builds the DSN message (CRLF line endings).
pub fn build(input: &DsnInput<'_>) -> Vec<u8> {
    let now = Utc::now();
    let boundary = format!("=_mxshield_dsn_{}_{}", input.queue_id, fastrand::u64(..));
    let mut m = String::new();
    let mut h = |k: &str, v: &str| m.push_str(&format!("{k}: {v}\r\n"));
    h("From", &format!("Mail Delivery System <{}>", input.postmaster));
    h("To", &format!("<{}>", input.original_sender));
    h("Subject", "Undelivered Mail Returned to Sender");
    h("Date", &now.to_rfc2822());
    h("Message-ID", &format!("<{}.{}.dsn@{}>", input.queue_id, now.timestamp(), input.reporting_host));
    h("Auto-Submitted", "auto-replied");
    h("MIME-Version", "1.0");
    h("Content-Type", &format!("multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\""));
    m.push_str("\r\nThis is a MIME-encapsulated message.\r\n\r\n");

    let mut text = format!(
        "This is the mail system at host {}.\r\n\r\nYour message (queue id {}) could not be delivered to one or more\r\nrecipients. The mail system gave up for the reasons below.\r\n\r\n",
        input.reporting_host, input.queue_id
    );
    for f in input.failed {
        let via = if f.remote.is_empty() { String::new() } else { format!(" (via {})", f.remote) };
        text.push_str(&format!("<{}>{via}:\r\n    {}\r\n\r\n", f.rcpt, one_line(&f.diagnostic)));
    }
    m.push_str(&format!("--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n"));
    m.push_str(&seven_bit_body(text.as_bytes()));

    let mut status = format!(
        "Reporting-MTA: dns; {}\r\nX-Mxshield-Queue-ID: {}\r\nArrival-Date: {}\r\n",
        input.reporting_host,
        input.queue_id,
        input.arrival.to_rfc2822()
    );
    for f in input.failed {
        // RFC 6533 §3: an internationalized address has the type utf-8
        let kind = if f.rcpt.is_ascii() { "rfc822" } else { "utf-8" };
        status.push_str(&format!(
            "\r\nFinal-Recipient: {kind}; {}\r\nAction: failed\r\nStatus: {}\r\n",
            f.rcpt, f.status
        ));
        if !f.remote.is_empty() {
            let host = f.remote.split_whitespace().next().unwrap_or(&f.remote);
            status.push_str(&format!("Remote-MTA: dns; {host}\r\n"));
        }
        let kind = if f.diagnostic.chars().take(3).all(|c| c.is_ascii_digit()) { "smtp" } else { "x-mxshield" };
        status.push_str(&format!(
            "Diagnostic-Code: {kind}; {}\r\nLast-Attempt-Date: {}\r\n",
            one_line(&f.diagnostic),
            now.to_rfc2822()
        ));
    }
    let global = if status.is_ascii() { "" } else { "global-" };
    m.push_str(&format!("--{boundary}\r\nContent-Type: message/{global}delivery-status\r\n"));
    m.push_str(&seven_bit_body(status.as_bytes()));

    let mut headers = input.original_headers.to_vec();
    if !headers.ends_with(b"\r\n") {
        headers.extend_from_slice(b"\r\n");
    }
    let kind = if headers.is_ascii() { "text/rfc822-headers" } else { "message/global-headers" };
    m.push_str(&format!("\r\n--{boundary}\r\nContent-Type: {kind}\r\n"));
    m.push_str(&seven_bit_body(&headers));
    m.push_str(&format!("\r\n--{boundary}--\r\n"));
    m.into_bytes()
}

/// The end of a part's header section and its body: as it is if 7-bit, else quoted-printable.
fn seven_bit_body(body: &[u8]) -> String {
    match std::str::from_utf8(body) {
        Ok(text) if body.is_ascii() => format!("\r\n{text}"),
        _ => format!("Content-Transfer-Encoding: quoted-printable\r\n\r\n{}", mime::encode::quoted_printable(body)),
    }
}

fn one_line(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DSN from mx1.example.net to a@remote.test about `failed`, quoting `headers`.
    fn build_for(failed: &[FailedRcpt], headers: &[u8]) -> Vec<u8> {
        build(&DsnInput {
            reporting_host: "mx1.example.net",
            postmaster: "postmaster@mx1.example.net",
            original_sender: "a@remote.test",
            queue_id: "0123456789ABCDEF",
            arrival: Utc::now(),
            failed,
            original_headers: headers,
        })
    }

    #[test]
    fn report_structure() {
        let failed = vec![FailedRcpt {
            rcpt: "alice@acme.example".into(),
            status: Status::new(5, 1, 1),
            remote: "127.0.0.1 [127.0.0.1:2600]".into(),
            diagnostic: "550 5.1.1 no such user".into(),
        }];
        let headers = b"From: a@remote.test\r\nSubject: hello\r\n";
        let dsn = build_for(&failed, headers);
        let text = String::from_utf8(dsn).unwrap();
        assert!(text.contains("Content-Type: multipart/report; report-type=delivery-status;"));
        assert!(text.contains("Final-Recipient: rfc822; alice@acme.example\r\nAction: failed\r\nStatus: 5.1.1\r\n"));
        assert!(text.contains("Diagnostic-Code: smtp; 550 5.1.1 no such user"));
        assert!(text.contains("Content-Type: text/rfc822-headers\r\n\r\nFrom: a@remote.test\r\nSubject: hello\r\n"));
        assert!(text.contains("Auto-Submitted: auto-replied"));
        // every line ends in CRLF: no bare LF anywhere
        assert!(text.match_indices('\n').all(|(i, _)| i > 0 && text.as_bytes()[i - 1] == b'\r'));
    }

    /// A DSN about a message with UTF-8 headers (and an internationalized recipient) is all
    /// 7-bit, with the RFC 6533 types (issue 8.20: raw 8-bit in `text/rfc822-headers`).
    #[test]
    fn dsn_about_utf8_headers_is_seven_bit_with_global_types() {
        let failed = vec![FailedRcpt {
            rcpt: "山田@acme.example".into(),
            status: Status::new(5, 1, 1),
            remote: String::new(),
            diagnostic: "550 5.1.1 ユーザーがいません".into(),
        }];
        let headers = "From: 山田 <a@remote.test>\r\nSubject: 請求書\r\n".as_bytes();
        let dsn = build_for(&failed, headers);
        assert!(dsn.is_ascii());
        let msg = mime::parse(&dsn);
        let parts: Vec<&mime::Part> = msg.root.children.iter().collect();
        assert_eq!(parts[1].content_type, "message/global-delivery-status");
        assert_eq!(parts[2].content_type, "message/global-headers");
        let status = String::from_utf8(parts[1].decoded_body(&dsn)).unwrap();
        assert!(status.contains("Final-Recipient: utf-8; 山田@acme.example"), "{status}");
        assert_eq!(parts[2].decoded_body(&dsn), headers);
        let text = String::from_utf8(parts[0].decoded_body(&dsn)).unwrap();
        assert!(text.contains("ユーザーがいません"));
    }
}
