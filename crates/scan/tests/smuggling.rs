//! HTML smuggling (issue 17): a page whose script rebuilds a file from base64 pieces. The file
//! is found in the page's `script base64` member, in a real mail as a gateway receives it;
//! the same page without the file, and ordinary pages of the corpus, give nothing.

use mxshield_scan as scan;

use std::sync::Arc;

use scan::{Engine, Limits, Signatures, Verdict};

fn page(payload: &[u8]) -> String {
    let text = testkit::base64(payload);
    let pieces: Vec<String> =
        text.as_bytes().chunks(60).map(|c| format!("\"{}\"", String::from_utf8_lossy(c))).collect();
    format!(
        "<!DOCTYPE html><html><body><p>Your invoice is ready.</p><script>\n\
         var parts = [{}];\nvar bytes = atob(parts.join(''));\n\
         var a = document.createElement('a'); a.href = URL.createObjectURL(new Blob([bytes]));\n\
         a.download = 'invoice.exe'; a.click();\n</script></body></html>",
        pieces.join(",\n ")
    )
}

#[test]
fn a_file_smuggled_in_a_script_is_found_in_a_mail() {
    let engine = Engine::new(Arc::new(Signatures::builtin()), Limits::default());
    let mut payload = b"MZ\x90\x00 a dropper's first bytes, then ".to_vec();
    payload.extend_from_slice(b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*");
    payload.extend(vec![0u8; 300]);
    let html = page(&payload);
    assert!(!html.contains("EICAR"));
    let mail = format!(
        "From: a@example.net\r\nTo: b@example.org\r\nSubject: invoice\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n\
         --b\r\nContent-Type: text/html; name=\"invoice.html\"\r\nContent-Disposition: attachment; filename=\"invoice.html\"\r\n\r\n{html}\r\n--b--\r\n"
    );
    let r = engine.scan_message(mail.as_bytes());
    let found: Vec<(String, Verdict)> = r.root.findings().into_iter().map(|(p, l)| (p, l.verdict.clone())).collect();
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].0.ends_with("(invoice.html) › script base64 1"), "{found:?}");
    assert_eq!(found[0].1, Verdict::Infected("Eicar-Test-Signature".into()));
    // the same page carrying a harmless file
    let clean = page(&vec![7u8; 400]);
    assert_eq!(engine.scan_bytes("clean.html", clean.as_bytes()).verdict(), Verdict::Clean);
}
