//! Compiled signatures: hash tables and the body matcher behind one type, [`Signatures`],
//! built once from a [`SigDb`] and shared read-only (an `Arc`) by every scan.

pub mod body;

use md5::{Digest, Md5};
use sha1::Sha1;
use sha2::Sha256;

use crate::filetype::FileType;
use crate::sigdb::hashes::{HashTable, md5_key};
use crate::sigdb::logical::Expr;
use crate::sigdb::{LoadError, LoadStats, Names, SigDb};
use body::{BodyMatcher, Owner};

/// A signature that matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    /// The signature's name.
    pub name: String,
    /// How it matched: `md5 …`, `body signature at offset …`, `logical signature`.
    pub evidence: String,
}

struct Logical {
    name: u32,
    target: u32,
    file_size: Option<(u64, u64)>,
    expr: Expr,
    first_sub: u32,
    subs: u32,
}

/// Every signature of a database, ready to match.
pub struct Signatures {
    names: Names,
    md5: HashTable<u128>,
    sha1: HashTable<[u8; 32]>,
    sha256: HashTable<[u8; 32]>,
    allow_md5: HashTable<u128>,
    allow_sha1: HashTable<[u8; 32]>,
    allow_sha256: HashTable<[u8; 32]>,
    body: BodyMatcher,
    logical: Vec<Logical>,
    sub_owner: Vec<u32>,
    /// What was loaded and what was not supported.
    pub stats: LoadStats,
    /// Database version (`daily:27451,main:62` or `local:…`).
    pub version: String,
}

const BUILTIN: &[(&str, &str)] = &[
    ("mxshield.hdb", include_str!("../../sigs/mxshield.hdb")),
    ("mxshield.ndb", include_str!("../../sigs/mxshield.ndb")),
];

impl Signatures {
    /// Compiles a loaded database.
    pub fn compile(db: SigDb) -> Signatures {
        let mut body = BodyMatcher::default();
        for s in db.body {
            body.add(s.pattern, s.offset, s.target, Owner::Body(s.name));
        }
        let mut logical = Vec::with_capacity(db.logical.len());
        let mut sub_owner = Vec::new();
        for (li, l) in db.logical.into_iter().enumerate() {
            let first_sub = sub_owner.len() as u32;
            let subs = l.subs.len() as u32;
            for (offset, pattern) in l.subs {
                body.add(pattern, offset, l.target, Owner::Sub(sub_owner.len() as u32));
                sub_owner.push(li as u32);
            }
            logical.push(Logical {
                name: l.name,
                target: l.target,
                file_size: l.file_size,
                expr: l.expr,
                first_sub,
                subs,
            });
        }
        body.finish();
        Signatures {
            names: db.names,
            md5: db.md5,
            sha1: db.sha1,
            sha256: db.sha256,
            allow_md5: db.allow_md5,
            allow_sha1: db.allow_sha1,
            allow_sha256: db.allow_sha256,
            body,
            logical,
            sub_owner,
            stats: db.stats,
            version: db.version,
        }
    }

    /// Loads and compiles every database in `dir`.
    pub fn load_dir(dir: &std::path::Path) -> Result<Signatures, LoadError> {
        Ok(Signatures::compile(SigDb::load_dir(dir)?))
    }

    /// The database shipped inside mxshield (EICAR, the ClamAV test file, test markers).
    pub fn builtin() -> Signatures {
        let mut db = SigDb::default();
        for (name, text) in BUILTIN {
            db.load_file(name, text.as_bytes()).expect("the built-in database is valid");
        }
        let mut s = Signatures::compile(db.finished());
        s.version = format!("builtin-{}", env!("CARGO_PKG_VERSION"));
        s
    }

    /// Total signatures.
    pub fn len(&self) -> usize {
        self.md5.len() + self.sha1.len() + self.sha256.len() + self.body.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks one buffer (a file, a decoded part, an archive member) of type `ft`.
    pub fn check(&self, data: &[u8], ft: FileType) -> Option<Detection> {
        let size = data.len() as u64;
        if let Some(d) = self.check_hashes(data, size) {
            return d;
        }
        let hits = self.body.scan(data, &|t| ft.matches_target(t));
        if let Some((name, at)) = hits.first {
            return Some(Detection {
                name: self.names.get(name).to_string(),
                evidence: format!("body signature at offset {at}"),
            });
        }
        if hits.sub_counts.is_empty() {
            return None;
        }
        let mut touched: Vec<u32> = hits.sub_counts.iter().map(|(s, _)| self.sub_owner[*s as usize]).collect();
        touched.sort_unstable();
        touched.dedup();
        for li in touched {
            let l = &self.logical[li as usize];
            if !ft.matches_target(l.target) || l.file_size.is_some_and(|(a, b)| size < a || size > b) {
                continue;
            }
            let mut counts = vec![0u32; l.subs as usize];
            for (s, n) in &hits.sub_counts {
                if self.sub_owner[*s as usize] == li {
                    counts[(*s - l.first_sub) as usize] = *n;
                }
            }
            if l.expr.eval(&counts) {
                return Some(Detection {
                    name: self.names.get(l.name).to_string(),
                    evidence: "logical signature".into(),
                });
            }
        }
        None
    }

    /// Only the whole-file hash signatures (for containers, whose members are matched
    /// separately).
    pub fn check_hashes_only(&self, data: &[u8]) -> Option<Detection> {
        self.check_hashes(data, data.len() as u64).flatten()
    }

    /// `Some(None)`: allow-listed; `Some(Some(d))`: a hash signature matched; `None`: go on.
    fn check_hashes(&self, data: &[u8], size: u64) -> Option<Option<Detection>> {
        let mut found = None;
        if self.md5.wants(size) || self.allow_md5.wants(size) {
            let d = digest("md5", data);
            let key = md5_key(&d);
            if self.allow_md5.lookup(&key, size).is_some() {
                return Some(None);
            }
            found = self.md5.lookup(&key, size).map(|n| self.detection(n, "md5", &d, size));
        }
        for (sigs, allow, kind) in
            [(&self.sha1, &self.allow_sha1, "sha1"), (&self.sha256, &self.allow_sha256, "sha256")]
        {
            if !sigs.wants(size) && !allow.wants(size) {
                continue;
            }
            let d = digest(kind, data);
            if allow.lookup(&d, size).is_some() {
                return Some(None);
            }
            if found.is_none() {
                found = sigs.lookup(&d, size).map(|n| self.detection(n, kind, &d, size));
            }
        }
        found.map(Some)
    }

    fn detection(&self, name: u32, kind: &str, digest: &[u8; 32], size: u64) -> Detection {
        let hex: String = digest[..digest_len(kind)].iter().map(|b| format!("{b:02x}")).collect();
        Detection { name: self.names.get(name).to_string(), evidence: format!("{kind} {hex}:{size}") }
    }
}

fn digest_len(kind: &str) -> usize {
    match kind {
        "md5" => 16,
        "sha1" => 20,
        _ => 32,
    }
}

fn digest(kind: &str, data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    match kind {
        "md5" => out[..16].copy_from_slice(&Md5::digest(data)),
        "sha1" => out[..20].copy_from_slice(&Sha1::digest(data)),
        _ => out.copy_from_slice(&Sha256::digest(data)),
    }
    out
}
