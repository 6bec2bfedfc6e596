//! Loading ClamAV-format signature databases from a directory.
//!
//! Read: `.hdb`/`.hdu` (MD5), `.hsb`/`.hsu` (SHA1/SHA256), `.ndb`/`.ndu` (body signatures),
//! `.ldb`/`.ldu` (logical signatures, a subset), `.fp`/`.sfp` (allow-lists), `.ign2`/`.ign`
//! (signature names to drop), and `.cvd`/`.cld`/`.cud` containers as freshclam writes them.
//! Signatures of kinds or syntax not supported are counted by reason ([`LoadStats`]), never
//! silently dropped; a malformed line is an error naming the file and line.

mod cvd;
pub mod hashes;
pub mod logical;
pub mod pattern;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};

use hashes::{ANY_SIZE, HashKind, HashTable, digest_key};
use logical::Expr;
use pattern::{Pattern, PatternError};

/// Where a body signature may start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offset {
    /// Anywhere.
    Any,
    /// At exactly this offset.
    Exact(u64),
    /// Between these offsets (inclusive).
    Window(u64, u64),
    /// At this many bytes before the end (and up to `1` more bytes later).
    FromEnd(u64, u64),
}

/// A body signature (`.ndb`).
#[derive(Debug, Clone)]
pub struct BodySig {
    pub name: u32,
    /// ClamAV target type (0 = any file).
    pub target: u32,
    pub offset: Offset,
    pub pattern: Pattern,
}

/// A logical signature (`.ldb`).
#[derive(Debug, Clone)]
pub struct LogicalSig {
    pub name: u32,
    pub target: u32,
    pub file_size: Option<(u64, u64)>,
    pub expr: Expr,
    pub subs: Vec<(Offset, Pattern)>,
}

/// Counts of what was loaded and of what was not supported, by reason.
#[derive(Debug, Clone, Default)]
pub struct LoadStats {
    pub md5: usize,
    pub sha1: usize,
    pub sha256: usize,
    pub body: usize,
    pub logical: usize,
    pub allow: usize,
    pub ignored_names: usize,
    /// reason → number of signatures.
    pub unsupported: BTreeMap<String, usize>,
    /// Files read (container members as `daily.cvd/daily.ndb`).
    pub files: Vec<String>,
}

/// A malformed database.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{file}:{line}: {why}")]
pub struct LoadError {
    pub file: String,
    pub line: usize,
    pub why: String,
}

/// Signature names in one arena.
#[derive(Debug, Default)]
pub struct Names {
    text: String,
    spans: Vec<(u32, u32)>,
}

impl Names {
    fn add(&mut self, name: &str) -> u32 {
        let start = self.text.len() as u32;
        self.text.push_str(name);
        self.spans.push((start, name.len() as u32));
        (self.spans.len() - 1) as u32
    }

    /// The name with this index.
    pub fn get(&self, i: u32) -> &str {
        let (s, l) = self.spans[i as usize];
        &self.text[s as usize..(s + l) as usize]
    }
}

/// A loaded signature database (not yet compiled into matchers).
#[derive(Debug, Default)]
pub struct SigDb {
    pub names: Names,
    pub md5: HashTable,
    pub sha1: HashTable,
    pub sha256: HashTable,
    pub allow_md5: HashTable,
    pub allow_sha1: HashTable,
    pub allow_sha256: HashTable,
    pub body: Vec<BodySig>,
    pub logical: Vec<LogicalSig>,
    pub ignored: HashSet<String>,
    pub stats: LoadStats,
    /// Container versions (`daily:27451`) or a digest of loose files.
    pub version: String,
}

/// Extensions of ClamAV database kinds we know of but do not read.
const UNSUPPORTED_KINDS: &[(&str, &str)] = &[
    ("mdb", "PE section hashes (.mdb)"),
    ("msb", "PE section hashes (.msb)"),
    ("imp", "PE import hashes (.imp)"),
    ("cdb", "container metadata (.cdb)"),
    ("cbc", "bytecode (.cbc)"),
    ("crb", "certificate rules (.crb)"),
    ("pdb", "phishing domains (.pdb)"),
    ("gdb", "phishing domains (.gdb)"),
    ("wdb", "phishing allow-list (.wdb)"),
    ("ftm", "file type magic (.ftm)"),
    ("idb", "icon signatures (.idb)"),
    ("yar", "YARA rules (.yar)"),
    ("yara", "YARA rules (.yara)"),
    ("pwdb", "archive passwords (.pwdb)"),
];

impl SigDb {
    /// Loads every database file in `dir` (not recursive).
    pub fn load_dir(dir: &Path) -> Result<SigDb, LoadError> {
        let err = |why: String| LoadError { file: dir.display().to_string(), line: 0, why };
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| err(format!("cannot read signature directory: {e}")))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        paths.sort();
        let mut db = SigDb::default();
        let mut digest = Md5::new();
        let mut versions = Vec::new();
        for p in &paths {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let data = std::fs::read(p).map_err(|e| LoadError { file: name.clone(), line: 0, why: e.to_string() })?;
            let ext = extension(&name);
            if matches!(ext.as_str(), "cvd" | "cld" | "cud") {
                let (version, members) = cvd::open(&name, &data)?;
                versions.push(version);
                for (member, content) in members {
                    db.load_file(&format!("{name}/{member}"), &content)?;
                }
            } else {
                digest.update(name.as_bytes());
                digest.update(&data);
                db.load_file(&name, &data)?;
            }
        }
        db.finish();
        let loose = db.stats.files.iter().any(|f| !f.contains('/'));
        if loose {
            versions.push(format!("local:{}", &hex(&digest.finalize())[..12]));
        }
        db.version = if versions.is_empty() { "empty".into() } else { versions.join(",") };
        Ok(db)
    }

    /// Loads one database file by its name's extension.
    pub fn load_file(&mut self, name: &str, data: &[u8]) -> Result<(), LoadError> {
        let ext = extension(name);
        let text = String::from_utf8_lossy(data);
        let lines = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim_end_matches('\r')))
            .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'));
        let bad = |line: usize, why: String| LoadError { file: name.to_string(), line, why };
        match ext.as_str() {
            "hdb" | "hdu" | "hsb" | "hsu" | "fp" | "sfp" => {
                let allow = ext == "fp" || ext == "sfp";
                for (n, l) in lines {
                    self.hash_line(l, allow).map_err(|why| bad(n, why))?;
                }
            }
            "ndb" | "ndu" => {
                for (n, l) in lines {
                    self.body_line(l).map_err(|why| bad(n, why))?;
                }
            }
            "ldb" | "ldu" => {
                for (n, l) in lines {
                    self.logical_line(l).map_err(|why| bad(n, why))?;
                }
            }
            "ign" | "ign2" => {
                for (_, l) in lines {
                    let n = l.split(':').next_back().unwrap_or(l).trim();
                    self.ignored.insert(n.to_string());
                    self.stats.ignored_names += 1;
                }
            }
            "info" | "cfg" | "sign" | "txt" | "md" => return Ok(()),
            other => {
                let reason = UNSUPPORTED_KINDS
                    .iter()
                    .find(|(e, _)| *e == other)
                    .map(|(_, r)| r.to_string())
                    .unwrap_or_else(|| format!("unknown database kind (.{other})"));
                *self.stats.unsupported.entry(reason).or_default() += lines.count();
            }
        }
        self.stats.files.push(name.to_string());
        Ok(())
    }

    fn unsupported(&mut self, reason: impl Into<String>) {
        *self.stats.unsupported.entry(reason.into()).or_default() += 1;
    }

    fn hash_line(&mut self, l: &str, allow: bool) -> Result<(), String> {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 3 {
            return Err(format!("expected HASH:SIZE:NAME, found {l:?}"));
        }
        let kind =
            HashKind::from_hex_len(f[0].len()).ok_or_else(|| format!("{:?} is not an MD5, SHA1 or SHA256", f[0]))?;
        let digest = digest_key(f[0]).ok_or_else(|| format!("{:?} is not hexadecimal", f[0]))?;
        let size = match f[1] {
            "*" => ANY_SIZE,
            s => s.parse().map_err(|_| format!("{s:?} is not a file size"))?,
        };
        let name = self.names.add(f[2]);
        let table = match (kind, allow) {
            (HashKind::Md5, false) => {
                self.stats.md5 += 1;
                &mut self.md5
            }
            (HashKind::Sha1, false) => {
                self.stats.sha1 += 1;
                &mut self.sha1
            }
            (HashKind::Sha256, false) => {
                self.stats.sha256 += 1;
                &mut self.sha256
            }
            (HashKind::Md5, true) => &mut self.allow_md5,
            (HashKind::Sha1, true) => &mut self.allow_sha1,
            (HashKind::Sha256, true) => &mut self.allow_sha256,
        };
        if allow {
            self.stats.allow += 1;
        }
        table.push(digest, size, name);
        Ok(())
    }

    fn body_line(&mut self, l: &str) -> Result<(), String> {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 4 {
            return Err(format!("expected NAME:TARGET:OFFSET:HEX, found {l:?}"));
        }
        let target: u32 = f[1].parse().map_err(|_| format!("target type {:?} is not a number", f[1]))?;
        if let Some(reason) = unsupported_target(target) {
            self.unsupported(reason);
            return Ok(());
        }
        let offset = match parse_offset(f[2]) {
            Ok(o) => o,
            Err(Unsupported(r)) => {
                self.unsupported(r);
                return Ok(());
            }
            Err(Malformed(e)) => return Err(e),
        };
        let pattern = match Pattern::parse(f[3]) {
            Ok(p) => p,
            Err(PatternError::Unsupported(r)) => {
                self.unsupported(format!("body signature: {r}"));
                return Ok(());
            }
            Err(PatternError::Syntax(e)) => return Err(e),
        };
        let name = self.names.add(f[0]);
        self.body.push(BodySig { name, target, offset, pattern });
        self.stats.body += 1;
        Ok(())
    }

    fn logical_line(&mut self, l: &str) -> Result<(), String> {
        let f: Vec<&str> = l.split(';').collect();
        if f.len() < 4 {
            return Err(format!("expected NAME;TARGET-DESCRIPTION;EXPRESSION;SUBSIG…, found {l:?}"));
        }
        let mut target = 0;
        let mut file_size = None;
        for kv in f[1].split(',') {
            let (k, v) = kv.split_once(':').ok_or_else(|| format!("bad target description {kv:?}"))?;
            match k {
                "Engine" => {}
                "Target" => target = v.parse().map_err(|_| format!("bad target {v:?}"))?,
                "FileSize" => {
                    let (a, b) = v.split_once('-').ok_or_else(|| format!("bad FileSize {v:?}"))?;
                    file_size = Some((a.parse().map_err(|_| "bad FileSize")?, b.parse().map_err(|_| "bad FileSize")?));
                }
                other => {
                    self.unsupported(format!("logical signature: target description {other}"));
                    return Ok(());
                }
            }
        }
        if let Some(reason) = unsupported_target(target) {
            self.unsupported(format!("logical {reason}"));
            return Ok(());
        }
        let expr = match Expr::parse(f[2]) {
            Ok(e) => e,
            Err(e) if e.contains("not supported") => {
                self.unsupported(format!("logical signature: {e}"));
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let mut subs = Vec::new();
        for sub in &f[3..] {
            if sub.contains("::") || sub.contains('/') || sub.starts_with('$') || sub.contains("#") {
                self.unsupported("logical signature: sub-signature modifiers, PCRE, macros or byte compares");
                return Ok(());
            }
            let (offset, hex) = match sub.split_once(':') {
                Some((o, h)) => match parse_offset(o) {
                    Ok(o) => (o, h),
                    Err(Unsupported(r)) => {
                        self.unsupported(format!("logical signature: {r}"));
                        return Ok(());
                    }
                    Err(Malformed(e)) => return Err(e),
                },
                None => (Offset::Any, *sub),
            };
            match Pattern::parse(hex) {
                Ok(p) => subs.push((offset, p)),
                Err(PatternError::Unsupported(r)) => {
                    self.unsupported(format!("logical signature: {r}"));
                    return Ok(());
                }
                Err(PatternError::Syntax(e)) => return Err(e),
            }
        }
        if expr.max_sub() >= subs.len() {
            return Err(format!("expression uses sub-signature {} of {}", expr.max_sub(), subs.len()));
        }
        let name = self.names.add(f[0]);
        self.logical.push(LogicalSig { name, target, file_size, expr, subs });
        self.stats.logical += 1;
        Ok(())
    }

    /// Finishes loading by hand (`load_file` calls): sorts tables, applies `.ign2`.
    pub fn finished(mut self) -> SigDb {
        self.finish();
        self
    }

    fn finish(&mut self) {
        for t in [
            &mut self.md5,
            &mut self.sha1,
            &mut self.sha256,
            &mut self.allow_md5,
            &mut self.allow_sha1,
            &mut self.allow_sha256,
        ] {
            t.finish();
        }
        if !self.ignored.is_empty() {
            let names = &self.names;
            let ignored = &self.ignored;
            self.body.retain(|s| !ignored.contains(names.get(s.name)));
            self.logical.retain(|s| !ignored.contains(names.get(s.name)));
        }
    }

    /// Total signatures loaded.
    pub fn len(&self) -> usize {
        self.md5.len() + self.sha1.len() + self.sha256.len() + self.body.len() + self.logical.len()
    }

    /// Whether nothing was loaded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

enum OffsetError {
    Unsupported(String),
    Malformed(String),
}
use OffsetError::{Malformed, Unsupported};

fn parse_offset(s: &str) -> Result<Offset, OffsetError> {
    let s = s.trim();
    if s == "*" {
        return Ok(Offset::Any);
    }
    let num = |x: &str| x.parse::<u64>().map_err(|_| Malformed(format!("bad offset {s:?}")));
    let (base, shift) = match s.split_once(',') {
        Some((b, m)) => (b, num(m)?),
        None => (s, 0),
    };
    if let Some(n) = base.strip_prefix("EOF-") {
        return Ok(Offset::FromEnd(num(n)?, shift));
    }
    if base.starts_with("EP") || base.starts_with('S') || base.starts_with("VI") || base.starts_with('$') {
        return Err(Unsupported(format!("offsets relative to the entry point or sections ({base})")));
    }
    let n = num(base)?;
    Ok(if shift == 0 { Offset::Exact(n) } else { Offset::Window(n, n + shift) })
}

/// Target types that need normalised content we do not produce yet.
fn unsupported_target(t: u32) -> Option<String> {
    match t {
        0 | 1 | 2 | 5 | 6 | 9 | 10 | 11 | 12 => None,
        3 => Some("target type 3 (normalised HTML)".into()),
        4 => Some("target type 4 (mail)".into()),
        7 => Some("target type 7 (normalised text)".into()),
        n => Some(format!("target type {n}")),
    }
}

fn extension(name: &str) -> String {
    name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests;
