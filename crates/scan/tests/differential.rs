//! Differential test against ClamAV (issue 11): random signatures of the supported syntax —
//! hex bytes, `??`, nibbles, fixed and ranged jumps, `*`, alternations (nested, with `??` and
//! `{n}`), negated byte alternations, offsets, and logical signatures with `&`, `|` and counts,
//! PCRE sub-signatures (triggers, offsets and windows, flags `g r e s i`) and byte compares —
//! each with a sample made to match it (sometimes with a byte changed), are scanned by the
//! built-in engine and by clamscan (Debian's clamav, installed by scripts/test.sh); the verdicts
//! must agree. A fixed seed and a bounded number of cases here; `DIFF_CASES` and `DIFF_SEED`
//! run more (scripts/differential.sh).

use mxshield_scan as scan;

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use scan::{Engine, Limits, Signatures, Verdict};

/// One random pattern and a byte string that matches it.
struct Gen {
    rng: fastrand::Rng,
}

impl Gen {
    /// Random exact bytes (binary, so that no text normalisation applies).
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.rng.u8(0x80..=0xfe)).collect()
    }

    /// A pattern (hex syntax) beginning with the case's unique `id`, and a matching instance.
    fn pattern(&mut self, id: &[u8]) -> (String, Vec<u8>) {
        let mut hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
        let mut inst = id.to_vec();
        for _ in 0..self.rng.usize(1..=4) {
            match self.rng.u8(0..10) {
                0 => {
                    hex.push_str("??");
                    inst.push(self.rng.u8(..));
                }
                1 => {
                    let b = self.rng.u8(0x80..=0xfe);
                    write!(hex, "{:x}?", b >> 4).unwrap();
                    inst.push(b);
                }
                2 => {
                    let n = self.rng.usize(1..=4);
                    write!(hex, "{{{n}}}").unwrap();
                    inst.extend(self.bytes(n));
                }
                3 => {
                    let (a, b) = (self.rng.usize(0..=3), self.rng.usize(4..=8));
                    write!(hex, "{{{a}-{b}}}").unwrap();
                    inst.extend({
                        let n = self.rng.usize(a..=b);
                        self.bytes(n)
                    });
                }
                4 => {
                    let b = self.rng.usize(1..=5);
                    write!(hex, "{{-{b}}}").unwrap();
                    inst.extend({
                        let n = self.rng.usize(0..=b);
                        self.bytes(n)
                    });
                }
                5 => {
                    hex.push('*');
                    inst.extend({
                        let n = self.rng.usize(0..=12);
                        self.bytes(n)
                    });
                }
                6 => {
                    // an alternation, sometimes nested or with ?? inside
                    let alts: Vec<Vec<u8>> = (0..self.rng.usize(2..=3))
                        .map(|_| {
                            let n = self.rng.usize(1..=3);
                            self.bytes(n)
                        })
                        .collect();
                    let pick = self.rng.usize(0..alts.len());
                    let mut parts: Vec<String> =
                        alts.iter().map(|a| a.iter().map(|b| format!("{b:02x}")).collect()).collect();
                    let mut chosen = alts[pick].clone();
                    if self.rng.bool() {
                        let inner = self.bytes(2);
                        parts[pick] = format!("{}({:02x}|{:02x}??)", parts[pick], inner[0], inner[1]);
                        if self.rng.bool() {
                            chosen.push(inner[0]);
                        } else {
                            chosen.push(inner[1]);
                            chosen.push(self.rng.u8(..));
                        }
                    }
                    write!(hex, "({})", parts.join("|")).unwrap();
                    inst.extend(chosen);
                }
                7 if self.rng.bool() => {
                    // several bytes: any string of that length but these
                    let len = self.rng.usize(2..=3);
                    let k = self.rng.usize(1..=3);
                    let not: Vec<Vec<u8>> = (0..k).map(|_| self.bytes(len)).collect();
                    let list: Vec<String> =
                        not.iter().map(|a| a.iter().map(|b| format!("{b:02x}")).collect()).collect();
                    write!(hex, "!({})", list.join("|")).unwrap();
                    let b = if self.rng.u8(0..4) == 0 { not[0].clone() } else { self.bytes(len) };
                    inst.extend(b);
                }
                7 => {
                    let not: Vec<u8> = {
                        let n = self.rng.usize(1..=3);
                        self.bytes(n)
                    };
                    let list: Vec<String> = not.iter().map(|b| format!("{b:02x}")).collect();
                    write!(hex, "!({})", list.join("|")).unwrap();
                    let mut b = self.rng.u8(0x80..=0xfe);
                    while not.contains(&b) {
                        b = self.rng.u8(0x80..=0xfe);
                    }
                    inst.push(b);
                }
                8 => {
                    // a character class inside the pattern: (W) any non-alphanumeric byte,
                    // (B) a boundary byte, (L) a line break, or a negated class
                    match self.rng.u8(0..5) {
                        0 | 1 => {
                            hex.push_str("(W)");
                            inst.push(*self.rng.choice(b" .-_\x00\x80\xff").unwrap());
                        }
                        2 => {
                            hex.push_str("(B)");
                            inst.push(*self.rng.choice(b" -/_").unwrap());
                        }
                        3 => {
                            hex.push_str("(L)");
                            inst.push(b'\n');
                        }
                        _ => {
                            hex.push_str(self.rng.choice(["!(W)", "!(L)", "!(B)"]).unwrap());
                            inst.push(*self.rng.choice(b"azAZ09").unwrap());
                        }
                    }
                }
                _ => {}
            }
            // every part ends with static bytes, as ClamAV wants around jumps
            let tail = {
                let n = self.rng.usize(2..=4);
                self.bytes(n)
            };
            for b in &tail {
                write!(hex, "{b:02x}").unwrap();
            }
            inst.extend(tail);
        }
        (hex, inst)
    }

    /// A PCRE over binary bytes and a matching instance: escaped bytes, `.`, byte ranges and
    /// `+`, alternatives.
    fn regex(&mut self) -> (String, Vec<u8>) {
        let (mut re, mut inst) = (String::new(), Vec::new());
        for _ in 0..self.rng.usize(3..=6) {
            let b = self.rng.u8(0x81..=0xfd);
            match self.rng.u8(0..10) {
                0 => {
                    re.push('.');
                    inst.push(b);
                }
                1 => {
                    write!(re, "[\\x{:02x}-\\x{:02x}]", b - 1, b + 1).unwrap();
                    inst.push(b);
                }
                2 => {
                    write!(re, "\\x{b:02x}+").unwrap();
                    inst.extend(std::iter::repeat_n(b, self.rng.usize(1..=3)));
                }
                3 => {
                    let other = self.rng.u8(0x80..=0xfe);
                    write!(re, "(?:\\x{b:02x}|\\x{other:02x}\\x{other:02x})").unwrap();
                    inst.push(b);
                }
                _ => {
                    write!(re, "\\x{b:02x}").unwrap();
                    inst.push(b);
                }
            }
        }
        (re, inst)
    }

    /// Binary filler.
    fn filler(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0u8, 0xff];
        v.extend((0..n).map(|_| self.rng.u8(0x80..=0xfe)));
        v
    }
}

/// Builds `n` cases: (database line, its file kind, sample).
fn cases(seed: u64, n: usize) -> Vec<(String, &'static str, Vec<u8>)> {
    let mut g = Gen { rng: fastrand::Rng::with_seed(seed) };
    let mut out = Vec::new();
    for k in 0..n {
        let id = format!("Q{k:05}").into_bytes();
        let name = format!("Diff.Case.{k}");
        let mut sample = {
            let n = g.rng.usize(0..=16);
            g.filler(n)
        };
        if g.rng.u8(0..4) == 0 {
            // a logical signature: 2 or 3 sub-signatures, some present, some twice
            let subs: Vec<(String, Vec<u8>)> = (0..g.rng.usize(2..=3))
                .map(|i| {
                    let mut sid = id.clone();
                    sid.push(b'a' + i as u8);
                    g.pattern(&sid)
                })
                .collect();
            for (_, inst) in &subs {
                for _ in 0..g.rng.usize(0..=2) {
                    sample.extend(inst);
                    sample.extend({
                        let n = g.rng.usize(0..=6);
                        g.filler(n)
                    });
                }
            }
            let expr = match (subs.len(), g.rng.u8(0..6)) {
                (2, 0) => "0&1".to_string(),
                (2, 1) => "0|1".to_string(),
                (2, 2) => format!("0>{}&1", g.rng.u8(0..2)),
                (2, 3) => format!("(0|1)={}", g.rng.u8(1..4)),
                (2, 4) => format!("(0|1)>{},{}", g.rng.u8(0..3), g.rng.u8(1..=2)),
                (2, _) => format!("0&1<{}", g.rng.u8(1..3)),
                (_, 0) => "0&1&2".to_string(),
                (_, 1) => "(0|1)&2".to_string(),
                (_, 2) => format!("0&(1|2)>{}", g.rng.u8(0..3)),
                (_, _) => "0|1|2".to_string(),
            };
            let mut hexes: Vec<String> = subs.iter().map(|(h, _)| h.clone()).collect();
            let mut expr = expr;
            if g.rng.bool() {
                // a PCRE sub-signature, triggered by the others, at an offset, with flags
                let (re, inst) = g.regex();
                let mut at = None;
                for _ in 0..g.rng.usize(0..=3) {
                    let pos = g.rng.usize(0..=sample.len());
                    at.get_or_insert(pos);
                    sample.splice(pos..pos, inst.iter().copied());
                }
                let first = at.unwrap_or(sample.len() / 2);
                let offset = match g.rng.u8(0..8) {
                    0 => format!("{first}:"),
                    1 => format!("{},{}:", first.saturating_sub(2), g.rng.usize(0..=4)),
                    2 => format!("EOF-{}:", sample.len() - first),
                    3 => format!("{}:", first + 1),
                    _ => String::new(),
                };
                let flags: String = ['g', 'r', 'e', 's', 'i'].iter().filter(|_| g.rng.u8(0..3) == 0).collect();
                let m = subs.len();
                let trigger = match g.rng.u8(0..3) {
                    0 => "0".to_string(),
                    1 => (0..m).map(|i| i.to_string()).collect::<Vec<_>>().join("|"),
                    _ => format!("0>{}", g.rng.u8(0..2)),
                };
                hexes.push(format!("{offset}{trigger}/{re}/{flags}"));
                expr = match g.rng.u8(0..3) {
                    0 => format!("({expr})&{m}"),
                    1 => format!("0&{m}={}", g.rng.u8(1..=3)),
                    _ => format!("({expr})|{m}>1"),
                };
            }
            if g.rng.u8(0..3) == 0 {
                // a byte compare at a shift from the last match of sub-signature 0
                let m = hexes.len();
                let shift = match g.rng.u8(0..3) {
                    0 => format!("<<{}", g.rng.u8(1..6)),
                    _ => format!(">>{}", g.rng.u8(0..12)),
                };
                let opts = g.rng.choice(["ib1", "il2", "ib2", "il4", "ib4", "hb2", "db3"]).unwrap();
                let cmp = match g.rng.u8(0..4) {
                    0 => format!("={}", g.rng.u8(0x80..=0xfe)),
                    1 => format!(">{},<{}", g.rng.u32(0..0x8000), g.rng.u32(0x8000..0x1_0000)),
                    2 => format!("<{}", g.rng.u32(..)),
                    _ => format!(">{}", g.rng.u32(0..0x100)),
                };
                hexes.push(format!("0({shift}#{opts}#{cmp})"));
                expr = if g.rng.bool() { format!("({expr})&{m}") } else { format!("({expr})|{m}") };
            }
            out.push((format!("{name};Engine:81-255,Target:0;{expr};{}", hexes.join(";")), "ldb", sample));
        } else {
            let (hex, mut inst) = g.pattern(&id);
            if g.rng.u8(0..4) == 0 {
                // a changed byte: may or may not still match
                let i = g.rng.usize(id.len()..inst.len().max(id.len() + 1)).min(inst.len() - 1);
                inst[i] ^= 1 << g.rng.u8(0..8);
            }
            let at = sample.len();
            sample.extend(&inst);
            let tail = {
                let n = g.rng.usize(0..=16);
                g.filler(n)
            };
            let offset = match g.rng.u8(0..5) {
                0 => at.to_string(),
                1 => format!("{},{}", at.saturating_sub(3), g.rng.usize(0..=6)),
                2 => format!("EOF-{}", inst.len() + tail.len() - 2),
                _ => "*".to_string(),
            };
            sample.extend(tail);
            out.push((format!("{name}:0:{offset}:{hex}"), "ndb", sample));
        }
    }
    out
}

fn run(seed: u64, n: usize) -> (usize, usize, Vec<String>) {
    let dir = std::env::temp_dir().join(format!("mxshield-diff-{}-{seed}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (db, files) = (dir.join("db"), dir.join("files"));
    std::fs::create_dir_all(&db).unwrap();
    std::fs::create_dir_all(&files).unwrap();
    let cases = cases(seed, n);
    let (mut ndb, mut ldb) = (String::new(), String::new());
    for (k, (line, kind, sample)) in cases.iter().enumerate() {
        let target = if *kind == "ndb" { &mut ndb } else { &mut ldb };
        target.push_str(line);
        target.push('\n');
        std::fs::write(files.join(format!("c{k:05}")), sample).unwrap();
    }
    std::fs::write(db.join("diff.ndb"), ndb).unwrap();
    std::fs::write(db.join("diff.ldb"), ldb).unwrap();
    let clam = clamscan(&db, &files);
    let engine = Engine::new(std::sync::Arc::new(Signatures::load_dir(&db).unwrap()), Limits::default());
    let mut differ = Vec::new();
    let mut found = 0;
    for (k, (line, _, sample)) in cases.iter().enumerate() {
        let ours = match engine.scan_bytes("c", sample).verdict() {
            Verdict::Infected(name) => name,
            _ => "clean".into(),
        };
        let theirs = clam.get(&format!("c{k:05}")).cloned().unwrap_or_else(|| "clean".into());
        found += usize::from(theirs != "clean");
        if ours != theirs {
            let hex: String = sample.iter().map(|b| format!("{b:02x}")).collect();
            differ.push(format!("{line}\n  sample {hex}\n  mxshield: {ours}, clamscan: {theirs}"));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    (cases.len(), found, differ)
}

/// clamscan's verdict per file name (only the files it found something in).
fn clamscan(db: &Path, files: &Path) -> std::collections::HashMap<String, String> {
    let out = Command::new("clamscan")
        .args(["--no-summary", "--infected", "-d"])
        .arg(db)
        .arg(files)
        .output()
        .expect("clamscan (scripts/test.sh installs clamav)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.code().is_some_and(|c| c <= 1),
        "clamscan failed: {}{}",
        text,
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .filter_map(|l| {
            let (path, rest) = l.rsplit_once(": ")?;
            let name = rest.strip_suffix(" FOUND")?.trim_end_matches(".UNOFFICIAL");
            Some((Path::new(path).file_name()?.to_string_lossy().into_owned(), name.to_string()))
        })
        .collect()
}

#[test]
fn random_signatures_agree_with_clamscan() {
    let seed = std::env::var("DIFF_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(20261202);
    let n = std::env::var("DIFF_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(400);
    let (cases, found, differ) = run(seed, n);
    println!("differential: {cases} cases (seed {seed}), clamscan found {found}, {} disagreements", differ.len());
    // a test that compares nothing proves nothing: most samples are made to match
    assert!(
        found * 2 > cases && found < cases,
        "clamscan found {found} of {cases}: the cases are not testing anything"
    );
    assert!(differ.is_empty(), "{} of {cases} cases differ from clamscan:\n{}", differ.len(), differ.join("\n"));
}
