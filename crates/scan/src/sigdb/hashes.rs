//! Whole-file hash signatures (`.hdb` MD5, `.hsb` SHA1/SHA256) and allow-lists (`.fp`,
//! `.sfp`), stored compactly: sorted arrays and one arena of names, so a million entries
//! cost tens of megabytes, not hundreds.

/// Which digest a signature uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HashKind {
    Md5,
    Sha1,
    Sha256,
}

impl HashKind {
    /// From the length of the hex digest.
    pub fn from_hex_len(n: usize) -> Option<HashKind> {
        match n {
            32 => Some(HashKind::Md5),
            40 => Some(HashKind::Sha1),
            64 => Some(HashKind::Sha256),
            _ => None,
        }
    }
}

/// Size wildcard in a hash signature.
pub const ANY_SIZE: u64 = u64::MAX;

/// Entries of one digest kind: (digest, size or ANY_SIZE, name index), sorted.
#[derive(Debug, Default)]
pub struct HashTable {
    entries: Vec<([u8; 32], u64, u32)>,
    sizes: Vec<u64>,
    any_size: bool,
}

impl HashTable {
    pub(crate) fn push(&mut self, digest: [u8; 32], size: u64, name: u32) {
        if size == ANY_SIZE {
            self.any_size = true;
        } else {
            self.sizes.push(size);
        }
        self.entries.push((digest, size, name));
    }

    pub(crate) fn finish(&mut self) {
        self.entries.sort_unstable();
        self.entries.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
        self.sizes.sort_unstable();
        self.sizes.dedup();
        self.entries.shrink_to_fit();
        self.sizes.shrink_to_fit();
    }

    /// Number of signatures.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether a file of `size` bytes could match (so its digest is worth computing).
    pub fn wants(&self, size: u64) -> bool {
        !self.entries.is_empty() && (self.any_size || self.sizes.binary_search(&size).is_ok())
    }

    /// The name index of a signature matching `digest` and `size`.
    pub fn lookup(&self, digest: &[u8; 32], size: u64) -> Option<u32> {
        let start = self.entries.partition_point(|e| e.0 < *digest);
        self.entries[start..]
            .iter()
            .take_while(|e| e.0 == *digest)
            .find(|e| e.1 == size || e.1 == ANY_SIZE)
            .map(|e| e.2)
    }
}

/// Parses a hex digest into a 32-byte key (zero-padded for MD5/SHA1).
pub fn digest_key(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if !hex.len().is_multiple_of(2) || hex.len() > 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
        let h = (pair[0] as char).to_digit(16)?;
        let l = (pair[1] as char).to_digit(16)?;
        out[i] = (h << 4 | l) as u8;
    }
    Some(out)
}
