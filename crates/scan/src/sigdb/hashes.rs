//! Whole-file hash signatures (`.hdb` MD5, `.hsb` SHA1/SHA256) and allow-lists (`.fp`,
//! `.sfp`), stored compactly: sorted arrays and one arena of names, so a million MD5 entries
//! cost about 24 MB.

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
pub const ANY_SIZE: u32 = u32::MAX;

/// Entries of one digest kind: (digest, size or ANY_SIZE, name index), sorted. MD5 digests
/// are `u128`, SHA digests `[u8; 32]` (SHA1 zero-padded).
#[derive(Debug)]
pub struct HashTable<K> {
    entries: Vec<(K, u32, u32)>,
    sizes: Vec<u32>,
    any_size: bool,
}

impl<K> Default for HashTable<K> {
    fn default() -> Self {
        HashTable { entries: Vec::new(), sizes: Vec::new(), any_size: false }
    }
}

impl<K: Ord + Copy> HashTable<K> {
    pub(crate) fn push(&mut self, digest: K, size: u32, name: u32) {
        if size == ANY_SIZE {
            self.any_size = true;
        } else {
            self.sizes.push(size);
        }
        self.entries.push((digest, size, name));
    }

    pub(crate) fn finish(&mut self) {
        self.entries.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
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
        !self.entries.is_empty()
            && (self.any_size || u32::try_from(size).is_ok_and(|s| self.sizes.binary_search(&s).is_ok()))
    }

    /// The name index of a signature matching `digest` and `size`.
    pub fn lookup(&self, digest: &K, size: u64) -> Option<u32> {
        let size = u32::try_from(size).unwrap_or(ANY_SIZE - 1);
        let start = self.entries.partition_point(|e| e.0 < *digest);
        self.entries[start..]
            .iter()
            .take_while(|e| e.0 == *digest)
            .find(|e| e.1 == size || e.1 == ANY_SIZE)
            .map(|e| e.2)
    }
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Parses a hex digest of up to 32 bytes (zero-padded).
pub fn digest_bytes(hex: &[u8]) -> Option<[u8; 32]> {
    if !hex.len().is_multiple_of(2) || hex.len() > 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        out[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

/// An MD5 digest as the key of an MD5 table.
pub fn md5_key(d: &[u8; 32]) -> u128 {
    u128::from_be_bytes(d[..16].try_into().expect("16 bytes"))
}
