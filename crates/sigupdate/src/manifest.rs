//! The signed description of a release (docs/signatures.md gives the exact format).

use serde::{Deserialize, Serialize};

/// The manifest format this build reads and writes.
pub const FORMAT: u32 = 1;

/// One release: what it holds and until when it may be installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: u32,
    /// Strictly increasing from release to release.
    pub version: u64,
    /// When it was published (Unix seconds).
    pub created: i64,
    /// After this (Unix seconds) no node installs it.
    pub expires: i64,
    /// The oldest mxshield version whose engine reads it (`0.1.0`).
    pub min_engine: String,
    /// Signatures in the database, as the publishing engine counted them.
    pub signatures: u64,
    /// The database files.
    pub payloads: Vec<Payload>,
    /// Samples a node scans with the new database before using it.
    pub vectors: Vec<Vector>,
}

/// A database file, stored under its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload {
    /// Its file name in the database directory (`main.cvd`, `local.ndb`).
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// SHA-256, lower-case hex.
    pub sha256: String,
}

/// A self-test sample, stored under its SHA-256 like a payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vector {
    /// Its size in bytes.
    pub size: u64,
    /// SHA-256, lower-case hex.
    pub sha256: String,
    /// The signature name it must be found as; `None`: it must be clean.
    pub expect: Option<String>,
}

/// Why a manifest is not well-formed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed manifest: {0}")]
pub struct Malformed(pub String);

impl Manifest {
    /// Parses and checks the form of a manifest (not its signature, dates or payloads).
    pub fn parse(bytes: &[u8]) -> Result<Manifest, Malformed> {
        let m: Manifest = serde_json::from_slice(bytes).map_err(|e| Malformed(e.to_string()))?;
        if m.format != FORMAT {
            return Err(Malformed(format!("format {} (this build reads {FORMAT})", m.format)));
        }
        if m.payloads.is_empty() {
            return Err(Malformed("no payloads".into()));
        }
        let mut names = std::collections::HashSet::new();
        for p in &m.payloads {
            if !is_file_name(&p.name) {
                return Err(Malformed(format!("payload name {:?} is not a plain file name", p.name)));
            }
            if !names.insert(p.name.to_ascii_lowercase()) {
                return Err(Malformed(format!("payload {:?} listed twice", p.name)));
            }
            check_hash(&p.sha256)?;
        }
        for v in &m.vectors {
            check_hash(&v.sha256)?;
        }
        if m.expires <= m.created {
            return Err(Malformed("expires before it was created".into()));
        }
        Ok(m)
    }

    /// The manifest as published (pretty JSON, a final newline).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("a manifest serialises");
        out.push(b'\n');
        out
    }
}

/// A plain file name: letters, digits, `.`, `_`, `-`; not starting with a dot.
pub fn is_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn check_hash(h: &str) -> Result<(), Malformed> {
    if h.len() == 64 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        Ok(())
    } else {
        Err(Malformed(format!("{h:?} is not a lower-case SHA-256")))
    }
}

/// Compares dotted versions numerically (`0.10.0` > `0.9.1`); `None` if either is not one.
pub fn version_at_least(have: &str, need: &str) -> Option<bool> {
    let parse = |v: &str| v.split('.').map(|p| p.parse::<u64>().ok()).collect::<Option<Vec<u64>>>();
    let (mut have, mut need) = (parse(have)?, parse(need)?);
    let len = have.len().max(need.len());
    have.resize(len, 0);
    need.resize(len, 0);
    Some(have >= need)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            format: FORMAT,
            version: 3,
            created: 100,
            expires: 200,
            min_engine: "0.1.0".into(),
            signatures: 2,
            payloads: vec![Payload { name: "local.ndb".into(), size: 10, sha256: "a".repeat(64) }],
            vectors: vec![Vector { size: 3, sha256: "b".repeat(64), expect: None }],
        }
    }

    #[test]
    fn manifests_round_trip_and_bad_ones_are_named() {
        let m = sample();
        assert_eq!(Manifest::parse(&m.to_bytes()).unwrap(), m);
        let bad = |f: &dyn Fn(&mut Manifest)| {
            let mut m = sample();
            f(&mut m);
            Manifest::parse(&m.to_bytes()).unwrap_err().0
        };
        assert!(bad(&|m| m.format = 2).contains("format 2"));
        assert!(bad(&|m| m.payloads[0].name = "../etc/passwd".into()).contains("plain file name"));
        assert!(bad(&|m| m.payloads[0].name = ".hidden".into()).contains("plain file name"));
        assert!(bad(&|m| m.payloads.push(m.payloads[0].clone())).contains("twice"));
        assert!(bad(&|m| m.payloads[0].sha256 = "A".repeat(64)).contains("SHA-256"));
        assert!(bad(&|m| m.payloads.clear()).contains("no payloads"));
        assert!(bad(&|m| m.expires = 50).contains("expires"));
        assert!(Manifest::parse(b"{not json").is_err());
        assert!(Manifest::parse(b"{}").is_err());
    }

    #[test]
    fn engine_versions_compare_numerically() {
        assert_eq!(version_at_least("0.10.0", "0.9.1"), Some(true));
        assert_eq!(version_at_least("0.1", "0.1.0"), Some(true));
        assert_eq!(version_at_least("0.1.0", "0.2.0"), Some(false));
        assert_eq!(version_at_least("0.1.0", "x"), None);
    }
}
