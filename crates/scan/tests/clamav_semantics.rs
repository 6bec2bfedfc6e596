//! ClamAV's signature semantics, case by case (`tests/clamav/semantics.tsv`): each database
//! line loads, or is refused as malformed, and finds (or not) its sample exactly as clamscan
//! 1.4.6 does. The expectations were confirmed with clamscan by
//! `scripts/confirm-clamav-semantics.sh`; this test does not run clamscan.

use mxshield_scan as scan;

use scan::{Engine, Limits, Signatures, Verdict};

/// `\xNN` escapes into bytes.
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && b.get(i + 1) == Some(&b'x') && i + 3 < b.len() + 1 {
            out.push(u8::from_str_radix(&s[i + 2..i + 4], 16).expect("\\xNN"));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

#[test]
fn signatures_mean_what_they_mean_in_clamav() {
    let table = include_str!("clamav/semantics.tsv");
    let dir = std::env::temp_dir().join(format!("mxshield-semantics-{}", std::process::id()));
    let mut failures = Vec::new();
    let mut cases = 0;
    for (n, line) in table.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(f.len(), 4, "line {}: {line:?}", n + 1);
        let (kind, sig, sample, expected) = (f[0], f[1], unescape(f[2]), f[3]);
        cases += 1;
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // several files: kinds `ndb,ign2` and their lines split by `|||`
        for (k, text) in kind.split(',').zip(sig.split("|||")) {
            std::fs::write(dir.join(format!("t.{k}")), format!("{text}\n")).unwrap();
        }
        let got = match Signatures::load_dir(&dir) {
            Err(_) => "malformed".to_string(),
            Ok(sigs) => {
                match Engine::new(std::sync::Arc::new(sigs), Limits::default()).scan_bytes("s", &sample).verdict() {
                    Verdict::Infected(name) => name,
                    Verdict::Clean => "clean".into(),
                    other => format!("{other:?}"),
                }
            }
        };
        if got != expected {
            failures.push(format!("line {}: {sig} on {:?}: expected {expected}, got {got}", n + 1, f[2]));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "{} of {cases} cases differ from ClamAV:\n{}", failures.len(), failures.join("\n"));
}
