//! Clean mail written by other projects (`testdata/corpus`, all but ClamAV's virus files)
//! passes through the real gateway with its body byte-identical: only the trace and result
//! header fields are added (and forged scan-result fields removed).

mod common;

use std::collections::HashMap;

use common::*;
use testkit::client::RawClient;

/// Whether a file looks like a message: a header field on its first line.
fn is_message(raw: &[u8]) -> bool {
    let first = raw.split(|&b| b == b'\n').next().unwrap_or_default();
    let name_end = first.iter().position(|&b| b == b':');
    name_end.is_some_and(|i| i > 0 && first[..i].iter().all(|b| b.is_ascii_graphic()))
}

/// Line breaks as they travel over SMTP (CRLF), so sent and received bytes compare.
fn crlf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 32);
    for (i, &b) in raw.iter().enumerate() {
        if b == b'\n' && (i == 0 || raw[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// What the gateway delivers for `raw`: every bare CR is a line break too (issue 8.2: bare CR
/// and LF are made CRLF so no receiver reads the lines differently from the scanner).
fn bare_cr_as_crlf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    for (i, &b) in raw.iter().enumerate() {
        out.push(b);
        if b == b'\r' && raw.get(i + 1) != Some(&b'\n') {
            out.push(b'\n');
        }
    }
    out
}

/// The message without header fields named `names` (with their continuation lines).
fn without_fields(msg: &[u8], names: &[&str]) -> Vec<u8> {
    let end = msg.windows(4).position(|w| w == b"\r\n\r\n").map_or(msg.len(), |p| p + 2);
    let mut out = Vec::with_capacity(msg.len());
    let mut keep = true;
    for line in msg[..end].split_inclusive(|&b| b == b'\n') {
        if !line.starts_with(b" ") && !line.starts_with(b"\t") {
            let name = String::from_utf8_lossy(line.split(|&b| b == b':').next().unwrap_or_default()).to_string();
            keep = !names.iter().any(|n| name.trim().eq_ignore_ascii_case(n));
        }
        if keep {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(&msg[end..]);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_corpus_mail_passes_with_its_body_byte_identical() {
    let all = testkit::corpus::files();
    let w = world("corpus-pass").await;
    let (mut c, _) = RawClient::connect(w.gw.addr).await.unwrap();
    c.cmd("EHLO client.test").await.unwrap();
    // expected delivery (sent bytes without the fields we own) → how many times it was sent
    // (some files appear in more than one corpus)
    let mut expected: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut sent_count = 0;
    let mut refused = Vec::new();
    for f in all.iter().filter(|f| !f.to_string_lossy().contains("clamav-upstream-extra")) {
        let raw = std::fs::read(f).unwrap();
        if !is_message(&raw) || raw.len() > 20 * 1024 * 1024 {
            continue;
        }
        // SMTP carries CRLF lines: send the file as a mail program would
        let raw = crlf(&raw);
        let r = c.send_mail("sender@remote.test", &["alice@acme.example"], &raw).await.unwrap();
        if r.code != 250 {
            refused.push(format!("{}: {} {}", f.display(), r.code, r.text));
            // a refused DATA leaves the session usable; anything else starts a new one
            if r.code == 421 {
                (c, _) = RawClient::connect(w.gw.addr).await.unwrap();
                c.cmd("EHLO client.test").await.unwrap();
            }
            continue;
        }
        let sent = without_fields(&bare_cr_as_crlf(&raw), &["X-Virus-Scanned", "X-Mxshield-Scan"]);
        *expected.entry(sent).or_default() += 1;
        sent_count += 1;
    }
    assert!(refused.is_empty(), "clean mail refused:\n{}", refused.join("\n"));
    assert!(sent_count > 400, "only {sent_count} messages");
    let got = w.customer.wait_for(sent_count, std::time::Duration::from_secs(120)).await;
    assert_eq!(got.len(), sent_count);
    let mut unmatched = Vec::new();
    for m in &got {
        let data = crlf(&m.data);
        // what the gateway adds: Received, X-Virus-Scanned, X-Mxshield-Scan, in that order
        let body = without_fields(&data, &["X-Virus-Scanned", "X-Mxshield-Scan"]);
        let after_received = body
            .windows(2)
            .enumerate()
            .skip(1)
            .find(|(i, w)| w[0] == b'\n' && body[i + 1] != b' ' && body[i + 1] != b'\t')
            .map(|(i, _)| i + 1)
            .unwrap();
        assert!(data.starts_with(b"Received: from client.test"));
        let result = mime::parse(&data).root.header_text(&data, "X-Mxshield-Scan").unwrap_or_default();
        assert!(result == "clean" || result.starts_with("unscanned: "), "{result}");
        let left = expected.get_mut(&body[after_received..]).filter(|n| **n > 0);
        if let Some(n) = left {
            *n -= 1;
        } else {
            unmatched
                .push(String::from_utf8_lossy(&body[after_received..body.len().min(after_received + 200)]).to_string());
        }
    }
    assert!(
        unmatched.is_empty(),
        "{} delivered messages differ from what was sent, e.g.:\n{}",
        unmatched.len(),
        unmatched[0]
    );
}
