//! Bulk mail, measured (R18: "5,000 or more substantially identical messages in one operation
//! or a series of related operations"): each message gets a [`Fingerprint`] — 32 MinHash
//! values (one-permutation hashing) over 3-token shingles of its normalised text ([`normalize`]: robust to mail-merge
//! personalisation, Japanese cut into character pairs), a hash of its normalised subject and
//! a SHA-256 key of each attachment (its length and its first and last 64 KiB as sent) — and joins a per-contract [`Clusters`] of near-duplicates:
//! candidates found by LSH (8 bands of 4 values), kept when at least 24 of the 32 values agree
//! (an estimated Jaccard similarity of 0.75); a message too short for a text fingerprint, or
//! with the same attachments and subject as a cluster, joins by those. Each cluster counts
//! delivered copies per hour (one message to 5,000 recipients is 5,000 copies).
//!
//! Main items: [`fingerprint`], [`Clusters`].

pub mod canary;
pub mod meter;
pub mod normalize;
pub mod spam;

use std::collections::{BTreeMap, HashMap};

use sha2::Digest;

/// MinHash values per fingerprint.
pub const HASHES: usize = 32;
/// LSH bands (of `HASHES / BANDS` values each).
pub const BANDS: usize = 8;
/// Values that must agree for a message to join a cluster (24 of 32: Jaccard ≈ 0.75; a pair
/// that similar is a candidate of the 8 × 4 bands with probability 0.95).
pub const AGREE: usize = 24;
/// Fewer tokens than this: no text fingerprint (near-empty bodies collide, DCC's lesson).
pub const MIN_TOKENS: usize = 20;
/// Clusters kept per contract; beyond, the one seen least recently goes.
pub const CLUSTERS_MAX: usize = 10_000;

/// What a message is compared by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// MinHash of its text's 3-token shingles; `None` when the text is too short.
    pub minhash: Option<[u64; HASHES]>,
    /// Hash of its normalised subject.
    pub subject: u64,
    /// The key of each attachment (SHA-256 of its length and ends as sent), sorted.
    pub attachments: Vec<[u8; 32]>,
    /// Hash of the whole normalised text (a text too short for a MinHash matches only exactly).
    pub text: u64,
    /// The subject as sent (a sample for the operator).
    pub subject_text: String,
}

/// A 64-bit mix (splitmix64's finaliser): the same on every node and in every version.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// FNV-1a of `bytes`, mixed.
fn hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    mix(h)
}

/// The MinHash of the 3-token shingles of the tokens hashed in `tokens` (`None` below
/// [`MIN_TOKENS`]): one-permutation hashing — each shingle's hash falls into one of
/// [`HASHES`] bins by its top bits and only the least per bin is kept (one hash per shingle,
/// not one per value); an empty bin takes the next filled one's value, shifted by the
/// distance (densification), so that near-duplicates still agree there.
pub fn minhash(tokens: &[u64]) -> Option<[u64; HASHES]> {
    if tokens.len() < MIN_TOKENS {
        return None;
    }
    const BIN_BITS: u32 = HASHES.trailing_zeros();
    let mut bins = [u64::MAX; HASHES];
    for w in tokens.windows(3) {
        let h = mix(w[0] ^ w[1].rotate_left(21) ^ w[2].rotate_left(42));
        let bin = (h >> (64 - BIN_BITS)) as usize;
        let v = h << BIN_BITS >> BIN_BITS;
        if v < bins[bin] {
            bins[bin] = v;
        }
    }
    let mut out = bins;
    for (i, slot) in out.iter_mut().enumerate() {
        if bins[i] != u64::MAX {
            continue;
        }
        // the next filled bin, circularly (there is one: at least 18 shingles)
        for d in 1..HASHES {
            let j = (i + d) % HASHES;
            if bins[j] != u64::MAX {
                *slot = mix(bins[j] ^ (d as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                break;
            }
        }
    }
    Some(out)
}

/// Of an attachment, the bytes hashed from each end.
const ATTACHMENT_SAMPLE: usize = 64 * 1024;

/// The key of an attachment: SHA-256 of its length and of its first and last 64 KiB as sent
/// (encoded): a campaign's attachment is one file sent the same way, and a 1 MiB flyer costs
/// 128 KiB of hashing, not a decoding and hashing of the whole (1.8 ms of CPU each).
fn attachment_key(encoded: &[u8]) -> [u8; 32] {
    let mut h = sha2::Sha256::new();
    h.update((encoded.len() as u64).to_le_bytes());
    if encoded.len() <= 2 * ATTACHMENT_SAMPLE {
        h.update(encoded);
    } else {
        h.update(&encoded[..ATTACHMENT_SAMPLE]);
        h.update(&encoded[encoded.len() - ATTACHMENT_SAMPLE..]);
    }
    h.finalize().into()
}

/// The key of an attachment cut off by the end of a prefix: its first 64 KiB as sent.
fn cut_attachment_key(encoded: &[u8]) -> [u8; 32] {
    let mut h = sha2::Sha256::new();
    h.update(b"cut");
    h.update(&encoded[..encoded.len().min(ATTACHMENT_SAMPLE)]);
    h.finalize().into()
}

/// The fingerprint of message `raw` (its header and body as received).
pub fn fingerprint(raw: &[u8]) -> Fingerprint {
    fingerprint_of(raw, true)
}

/// The fingerprint of a large message from its beginning `prefix` (it goes on beyond): as
/// [`fingerprint`], except that the attachment cut off by the end of the prefix is keyed by
/// its first 64 KiB alone (where the cut falls moves with the length of the text before it).
pub fn fingerprint_prefix(prefix: &[u8]) -> Fingerprint {
    fingerprint_of(prefix, false)
}

fn fingerprint_of(raw: &[u8], complete: bool) -> Fingerprint {
    let msg = mime::parse(raw);
    let subject_text = msg.root.header_text(raw, "Subject").unwrap_or_default();
    let mut text = String::new();
    let mut attachments = Vec::new();
    for (_, part) in msg.root.walk() {
        if !part.children.is_empty() {
            continue;
        }
        if !part.is_body_text() {
            let encoded = raw.get(part.body.clone()).unwrap_or_default();
            if encoded.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if !complete && part.body.end >= raw.len() {
                attachments.push(cut_attachment_key(encoded));
            } else {
                attachments.push(attachment_key(encoded));
            }
            continue;
        }
        let body = part.decoded_body(raw);
        {
            let decoded = mime::charset::decode(&body, part.charset());
            if part.content_type == "text/html" {
                text.push_str(&normalize::html_text(&decoded));
            } else {
                text.push_str(&decoded);
            }
            text.push(' ');
        }
        if text.len() > normalize::TEXT_MAX * 2 {
            break;
        }
    }
    attachments.sort();
    let normal = normalize::normalize(&text);
    Fingerprint {
        minhash: minhash(&normalize::token_hashes(&normal)),
        text: hash(normal.as_bytes()),
        subject: hash(normalize::normalize(&subject_text).as_bytes()),
        attachments,
        subject_text,
    }
}

/// How many MinHash values two fingerprints share.
pub fn agreement(a: &[u64; HASHES], b: &[u64; HASHES]) -> usize {
    a.iter().zip(b).filter(|(x, y)| x == y).count()
}

/// One cluster of near-duplicates.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// Its id within its contract's clusters.
    pub id: u64,
    /// The first message's fingerprint (what later ones are compared with).
    pub representative: Fingerprint,
    /// Copies per hour (Unix seconds of the hour's start).
    pub hourly: BTreeMap<i64, u64>,
    /// When a copy was last counted.
    pub last_seen: i64,
}

impl Cluster {
    /// Copies counted from `since` on.
    pub fn copies_since(&self, since: i64) -> u64 {
        self.hourly.range(since - since.rem_euclid(3600)..).map(|(_, n)| n).sum()
    }
}

/// The near-duplicate clusters of one contract's mail.
#[derive(Debug, Default)]
pub struct Clusters {
    clusters: HashMap<u64, Cluster>,
    /// LSH: (band, band hash) → clusters.
    bands: HashMap<(u8, u64), Vec<u64>>,
    /// (attachments, subject) → cluster, for messages joined by what they carry.
    carried: HashMap<u64, u64>,
    next: u64,
}

fn band_keys(m: &[u64; HASHES]) -> impl Iterator<Item = (u8, u64)> + '_ {
    let per = HASHES / BANDS;
    (0..BANDS).map(move |b| {
        let mut bytes = Vec::with_capacity(per * 8);
        for v in &m[b * per..(b + 1) * per] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        (b as u8, hash(&bytes))
    })
}

/// The key of what a message carries: its subject and attachments — and, when its text is too
/// short for a MinHash, that text exactly (a near-empty body says nothing about likeness).
fn carried_key(fp: &Fingerprint) -> Option<u64> {
    if fp.attachments.is_empty() && fp.minhash.is_some() {
        return None;
    }
    let mut bytes = fp.subject.to_le_bytes().to_vec();
    // with no attachment, the exact text; with attachments, they and the subject (a short
    // personalised greeting must not split an attachment campaign)
    if fp.minhash.is_none() && fp.attachments.is_empty() {
        bytes.extend_from_slice(&fp.text.to_le_bytes());
    }
    for a in &fp.attachments {
        bytes.extend_from_slice(a);
    }
    Some(hash(&bytes))
}

impl Clusters {
    /// Counts `copies` delivered copies of a message with fingerprint `fp` at `at` (Unix
    /// seconds); returns its cluster's id.
    pub fn add(&mut self, fp: &Fingerprint, copies: u64, at: i64) -> u64 {
        let id = self.find(fp).unwrap_or_else(|| self.create(fp));
        let c = self.clusters.get_mut(&id).expect("the cluster just found or made");
        *c.hourly.entry(at - at.rem_euclid(3600)).or_default() += copies;
        c.last_seen = c.last_seen.max(at);
        // keep a week of hours
        let week_ago = at - 7 * 86_400;
        while c.hourly.first_key_value().is_some_and(|(h, _)| *h < week_ago) {
            c.hourly.pop_first();
        }
        id
    }

    fn find(&self, fp: &Fingerprint) -> Option<u64> {
        if let Some(m) = &fp.minhash {
            let mut best: Option<(usize, u64)> = None;
            for key in band_keys(m) {
                for &id in self.bands.get(&key).into_iter().flatten() {
                    let Some(rep) = self.clusters.get(&id).and_then(|c| c.representative.minhash.as_ref()) else {
                        continue;
                    };
                    let n = agreement(m, rep);
                    if n >= AGREE && best.is_none_or(|(b, _)| n > b) {
                        best = Some((n, id));
                    }
                }
            }
            if let Some((_, id)) = best {
                return Some(id);
            }
        }
        carried_key(fp).and_then(|k| self.carried.get(&k).copied()).filter(|id| self.clusters.contains_key(id))
    }

    fn create(&mut self, fp: &Fingerprint) -> u64 {
        if self.clusters.len() >= CLUSTERS_MAX {
            self.evict();
        }
        self.next += 1;
        let id = self.next;
        if let Some(m) = &fp.minhash {
            for key in band_keys(m) {
                self.bands.entry(key).or_default().push(id);
            }
        }
        if let Some(k) = carried_key(fp) {
            self.carried.insert(k, id);
        }
        self.clusters.insert(id, Cluster { id, representative: fp.clone(), hourly: BTreeMap::new(), last_seen: 0 });
        id
    }

    /// Drops the cluster seen least recently (its band entries go with it).
    fn evict(&mut self) {
        let Some(old) = self.clusters.values().min_by_key(|c| (c.last_seen, c.id)).map(|c| c.id) else { return };
        if let Some(c) = self.clusters.remove(&old)
            && let Some(m) = &c.representative.minhash
        {
            for key in band_keys(m) {
                if let Some(ids) = self.bands.get_mut(&key) {
                    ids.retain(|i| *i != old);
                }
            }
        }
        self.carried.retain(|_, id| *id != old);
    }

    /// The clusters.
    pub fn iter(&self) -> impl Iterator<Item = &Cluster> {
        self.clusters.values()
    }

    /// The cluster `id`.
    pub fn get(&self, id: u64) -> Option<&Cluster> {
        self.clusters.get(&id)
    }
}

/// A MinHash as the shared store keeps it (hex, 32 × 16 digits).
pub fn minhash_hex(m: &[u64; HASHES]) -> String {
    m.iter().map(|v| format!("{v:016x}")).collect()
}

/// A MinHash from its hex form.
pub fn minhash_from_hex(s: &str) -> Option<[u64; HASHES]> {
    if s.len() != HASHES * 16 {
        return None;
    }
    let mut out = [0u64; HASHES];
    for (i, v) in out.iter_mut().enumerate() {
        *v = u64::from_str_radix(s.get(i * 16..(i + 1) * 16)?, 16).ok()?;
    }
    Some(out)
}

/// The carried key of a fingerprint as the shared store keeps it (hex; empty: none).
pub fn carried_hex(fp: &Fingerprint) -> String {
    carried_key(fp).map(|k| format!("{k:016x}")).unwrap_or_default()
}

/// The shared clusters of one contract grouped into campaigns: clusters that nodes made apart
/// for the same mail (their representatives agree, or they carry the same) are one. Returns,
/// for each cluster id, the id of its group.
pub fn group_shared(clusters: &[&msglog::BulkCluster]) -> HashMap<String, String> {
    let n = clusters.len();
    let mut parent: Vec<usize> = (0..n).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    let hashes: Vec<Option<[u64; HASHES]>> = clusters.iter().map(|c| minhash_from_hex(&c.minhash)).collect();
    // candidates by band, then verified, as on a node
    let mut by_band: HashMap<(u8, u64), Vec<usize>> = HashMap::new();
    let mut by_carried: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, c) in clusters.iter().enumerate() {
        if let Some(m) = &hashes[i] {
            for key in band_keys(m) {
                by_band.entry(key).or_default().push(i);
            }
        }
        if !c.carried.is_empty() {
            by_carried.entry(c.carried.as_str()).or_default().push(i);
        }
    }
    let join = |a: usize, b: usize, parent: &mut Vec<usize>| {
        let (ra, rb) = (root(parent, a), root(parent, b));
        if ra != rb {
            parent[ra.max(rb)] = ra.min(rb);
        }
    };
    for ids in by_band.values() {
        for (x, &a) in ids.iter().enumerate() {
            for &b in &ids[x + 1..] {
                if let (Some(ma), Some(mb)) = (&hashes[a], &hashes[b])
                    && agreement(ma, mb) >= AGREE
                {
                    join(a, b, &mut parent);
                }
            }
        }
    }
    for ids in by_carried.values() {
        for w in ids.windows(2) {
            join(w[0], w[1], &mut parent);
        }
    }
    (0..n).map(|i| (clusters[i].id.clone(), clusters[root(&mut parent, i)].id.clone())).collect()
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod prefix_tests {
    use super::*;

    /// Two copies of a campaign with a large attachment whose personalised text differs in
    /// length: fingerprinted from their first 256 KiB, the attachment cut off at different
    /// places, they carry the same keys; another attachment does not.
    #[test]
    fn a_large_message_fingerprinted_from_its_beginning_keeps_its_attachment_key() {
        let flyer = |seed: u64| -> String {
            let mut x = seed;
            (0..8000)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    format!("{:076x}\r\n", u128::from(x) * 0x1_0000_0001)
                })
                .collect()
        };
        let msg = |name: &str, body: &str| {
            format!(
                "Subject: flyer\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n\
                 Dear {name}, our flyer is attached.\r\n--b\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n\
                 {body}--b--\r\n"
            )
        };
        let (one, other) = (flyer(7), flyer(8));
        let a = msg("Ann", &one);
        let b = msg("Bartholomew Fitzgerald", &one);
        let c = msg("Ann", &other);
        assert!(a.len() > 512 * 1024);
        let fa = fingerprint_prefix(&a.as_bytes()[..256 * 1024]);
        let fb = fingerprint_prefix(&b.as_bytes()[..256 * 1024]);
        let fc = fingerprint_prefix(&c.as_bytes()[..256 * 1024]);
        assert_eq!(fa.attachments.len(), 1);
        assert_eq!(fa.attachments, fb.attachments);
        assert_ne!(fa.attachments, fc.attachments);
        assert_eq!(carried_hex(&fa), carried_hex(&fb));
    }
}
