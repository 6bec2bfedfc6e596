//! Whole-file hash signatures (`.hdb` MD5, `.hsb` SHA1/SHA256) and allow-lists (`.fp`,
//! `.sfp`), stored compactly: sorted arrays and one arena of names, so a million MD5 entries
//! cost about 24 MB.

/// Which digest a signature uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HashKind {
    /// MD5.
    Md5,
    /// SHA-1.
    Sha1,
    /// SHA-256.
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

/// Entries of one digest kind: (size or ANY_SIZE, digest, name index), sorted by size then
/// digest, so one binary search tells whether a file size is worth hashing and another finds
/// the digest. MD5 digests are `u128`, SHA digests `[u8; 32]` (SHA1 zero-padded).
#[derive(Debug)]
pub struct HashTable<K> {
    entries: Vec<(u32, K, u32)>,
}

impl<K> Default for HashTable<K> {
    fn default() -> Self {
        HashTable { entries: Vec::new() }
    }
}

impl<K: Ord + Copy> HashTable<K> {
    pub(crate) fn push(&mut self, digest: K, size: u32, name: u32) {
        self.entries.push((size, digest, name));
    }

    pub(crate) fn reserve(&mut self, n: usize) {
        self.entries.reserve(n);
    }

    pub(crate) fn finish(&mut self) {
        self.entries.sort_unstable_by_key(|e| (e.0, e.1));
        self.entries.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
        self.entries.shrink_to_fit();
    }

    /// Number of signatures.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn size_range(&self, size: u32) -> &[(u32, K, u32)] {
        let start = self.entries.partition_point(|e| e.0 < size);
        let end = start + self.entries[start..].partition_point(|e| e.0 == size);
        &self.entries[start..end]
    }

    fn any_size(&self) -> bool {
        self.entries.last().is_some_and(|e| e.0 == ANY_SIZE)
    }

    /// Whether a file of `size` bytes could match (so its digest is worth computing).
    pub fn wants(&self, size: u64) -> bool {
        self.any_size() || u32::try_from(size).is_ok_and(|s| s != ANY_SIZE && !self.size_range(s).is_empty())
    }

    /// The name index of a signature matching `digest` and `size`.
    pub fn lookup(&self, digest: &K, size: u64) -> Option<u32> {
        let find = |range: &[(u32, K, u32)]| range.binary_search_by(|e| e.1.cmp(digest)).ok().map(|i| range[i].2);
        let exact = u32::try_from(size).ok().filter(|&s| s != ANY_SIZE).and_then(|s| find(self.size_range(s)));
        exact.or_else(|| if self.any_size() { find(self.size_range(ANY_SIZE)) } else { None })
    }
}

/// Hex digit values; 0xff for anything else.
static HEX: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// Parses a hex digest of up to 32 bytes (zero-padded).
pub fn digest_bytes(hex: &[u8]) -> Option<[u8; 32]> {
    if !hex.len().is_multiple_of(2) || hex.len() > 64 {
        return None;
    }
    let mut out = [0u8; 32];
    let mut bad = 0u8;
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        let (h, l) = (HEX[pair[0] as usize], HEX[pair[1] as usize]);
        bad |= h | l;
        out[i] = h << 4 | (l & 0x0f);
    }
    (bad & 0xf0 == 0).then_some(out)
}

/// An MD5 digest as the key of an MD5 table.
pub fn md5_key(d: &[u8; 32]) -> u128 {
    u128::from_be_bytes(d[..16].try_into().expect("16 bytes"))
}

/// The MD5, SHA-1 and SHA-256 tables of one kind of hash signature (whole files, allow-lists,
/// PE sections, PE import tables).
#[derive(Debug, Default)]
pub struct DigestTables {
    /// MD5 digests.
    pub md5: HashTable<u128>,
    /// SHA-1 digests (zero-padded).
    pub sha1: HashTable<[u8; 32]>,
    /// SHA-256 digests.
    pub sha256: HashTable<[u8; 32]>,
}

impl DigestTables {
    pub(crate) fn push(&mut self, kind: HashKind, digest: [u8; 32], size: u32, name: u32) {
        match kind {
            HashKind::Md5 => self.md5.push(md5_key(&digest), size, name),
            HashKind::Sha1 => self.sha1.push(digest, size, name),
            HashKind::Sha256 => self.sha256.push(digest, size, name),
        }
    }

    pub(crate) fn finish(&mut self) {
        self.md5.finish();
        self.sha1.finish();
        self.sha256.finish();
    }

    /// Number of signatures.
    pub fn len(&self) -> usize {
        self.md5.len() + self.sha1.len() + self.sha256.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether bytes of `size` are worth hashing with `kind`.
    pub fn wants(&self, kind: HashKind, size: u64) -> bool {
        match kind {
            HashKind::Md5 => self.md5.wants(size),
            HashKind::Sha1 => self.sha1.wants(size),
            HashKind::Sha256 => self.sha256.wants(size),
        }
    }

    /// The name index of a signature of `kind` matching `digest` and `size`.
    pub fn lookup(&self, kind: HashKind, digest: &[u8; 32], size: u64) -> Option<u32> {
        match kind {
            HashKind::Md5 => self.md5.lookup(&md5_key(digest), size),
            HashKind::Sha1 => self.sha1.lookup(digest, size),
            HashKind::Sha256 => self.sha256.lookup(digest, size),
        }
    }
}

impl HashKind {
    /// Every kind, in the order they are tried.
    pub const ALL: [HashKind; 3] = [HashKind::Md5, HashKind::Sha1, HashKind::Sha256];

    /// The digest of `data`, zero-padded to 32 bytes.
    pub fn digest(self, data: &[u8]) -> [u8; 32] {
        use md5::Digest;
        let mut out = [0u8; 32];
        match self {
            HashKind::Md5 => out[..16].copy_from_slice(&md5::Md5::digest(data)),
            HashKind::Sha1 => out[..20].copy_from_slice(&sha1::Sha1::digest(data)),
            HashKind::Sha256 => out.copy_from_slice(&sha2::Sha256::digest(data)),
        }
        out
    }

    /// Bytes of the digest.
    pub fn digest_len(self) -> usize {
        match self {
            HashKind::Md5 => 16,
            HashKind::Sha1 => 20,
            HashKind::Sha256 => 32,
        }
    }

    /// Its name (`md5`, `sha1`, `sha256`).
    pub fn name(self) -> &'static str {
        match self {
            HashKind::Md5 => "md5",
            HashKind::Sha1 => "sha1",
            HashKind::Sha256 => "sha256",
        }
    }
}
