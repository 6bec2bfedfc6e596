//! The optional clamd engine against a real clamd (Debian's clamav-daemon, installed by
//! scripts/test.sh) started here with a small database of our own; nothing is downloaded.

use mxshield_scan as scan;
use std::path::Path;
use std::time::Duration;

use scan::Verdict;
use scan::clamd::{Clamd, ClamdAddr, ClamdVerdict};
use testkit::clamd::ClamdProcess;

fn client(p: &ClamdProcess) -> Clamd {
    Clamd { addr: ClamdAddr::Tcp(p.addr().parse().unwrap()), timeout: Duration::from_secs(30) }
}

const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

#[test]
fn clamd_engine_scans_each_part() {
    let clamd = ClamdProcess::start(&Path::new(env!("CARGO_MANIFEST_DIR")).join("sigs"));
    let c = client(&clamd);
    assert!(c.version().unwrap().starts_with("ClamAV "));
    assert_eq!(c.instream(EICAR).unwrap(), ClamdVerdict::Found("Eicar-Test-Signature.UNOFFICIAL".into()));
    assert_eq!(c.instream(b"harmless text").unwrap(), ClamdVerdict::Clean);
    // over StreamMaxLength: clamd refuses, which must not read as clean
    assert!(matches!(c.instream(&vec![b'a'; 2_000_000]).unwrap(), ClamdVerdict::Error(_)));

    let msg = format!(
        "From: a@remote.test\r\nSubject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b\r\nContent-Type: application/octet-stream; name=\"e.com\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--b--\r\n",
        "WDVPIVAlQEFQWzRcUFpYNTQoUF4pN0NDKTd9JEVJQ0FSLVNUQU5EQVJELUFOVElWSVJVUy1URVNULUZJTEUhJEgrSCo="
    );
    let report = c.scan_message(msg.as_bytes(), "clamd").unwrap();
    let found: Vec<String> =
        report.root.findings().into_iter().map(|(p, l)| format!("{p}: {}", l.verdict.label())).collect();
    assert_eq!(found, vec!["message › part 2 (e.com): Eicar-Test-Signature.UNOFFICIAL FOUND"]);
    assert_eq!(report.root.children[0].verdict, Verdict::Clean);

    // clamd gone: an error, never a clean verdict
    drop(clamd);
    assert!(c.scan_message(msg.as_bytes(), "clamd").is_err());
}
