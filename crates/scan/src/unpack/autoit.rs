//! AutoIt v3 compiled scripts: the script archive an AutoIt executable carries after a 16-byte
//! marker and `AU3!EA05` (AutoIt 3.0–3.2.6) or `AU3!EA06` (later versions), as libclamav finds
//! it in an executable. The archive is a run of records — the script itself and the files
//! `FileInstall` puts in it — each with a tag and a file name (encrypted), a compression flag,
//! sizes, and data encrypted with a generator keyed per version: EA05 with MT19937 (seeded from
//! a sum of the archive's first 16 bytes), EA06 with a lagged-Fibonacci-like generator of its
//! own. Compressed data (`EA05`/`EA06` magic, big-endian length) is an LZSS bit stream read from
//! big-endian 16-bit words: a flag bit, then a literal byte or a 15-bit distance and a length
//! coded in growing fields (2, 3, 5, 8, then 8-bit steps), at least 3.
//!
//! Each record's data is a member. An EA06 script is tokenised; it is scanned as stored (the
//! tokens hold its strings as UTF-16 text), not turned back into source. Bounded by the scan's
//! budget: every record is an entry, every decoded byte is charged.

use super::{Entry, ReadError, UnpackError, member};
use crate::limits::Budget;

/// The 16 bytes before `AU3!EA0`.
const MARKER: [u8; 16] =
    [0xa3, 0x48, 0x4b, 0xbe, 0x98, 0x6c, 0x4a, 0xa9, 0x99, 0x4c, 0x53, 0x0a, 0x86, 0xd6, 0x48, 0x7d];

/// Offsets of the version byte (`5` or `6`) after each marker in `data` (at most 8).
pub fn find(data: &[u8]) -> Vec<usize> {
    let mut head = MARKER.to_vec();
    head.extend_from_slice(b"AU3!EA0");
    memchr::memmem::find_iter(data, &head)
        .map(|at| at + head.len())
        .filter(|&v| matches!(data.get(v), Some(b'5' | b'6')))
        .take(8)
        .collect()
}

/// The two versions of the archive.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Version {
    Ea05,
    Ea06,
}

/// The constants of a version (record magic and the XOR keys of its fields).
struct Keys {
    magic: u32,
    tag_len: u32,
    name_len: u32,
    size: u32,
    data_magic: &'static [u8; 4],
    /// Characters are one byte (EA05) or two (EA06).
    char_size: usize,
}

impl Version {
    fn keys(self) -> Keys {
        match self {
            Version::Ea05 => Keys {
                magic: 0xceb0_6dff,
                tag_len: 0x29bc,
                name_len: 0x29ac,
                size: 0x45aa,
                data_magic: b"EA05",
                char_size: 1,
            },
            Version::Ea06 => Keys {
                magic: 0x52ca_436b,
                tag_len: 0xadbc,
                name_len: 0xf820,
                size: 0x87bc,
                data_magic: b"EA06",
                char_size: 2,
            },
        }
    }
}

fn le32(d: &[u8], at: usize) -> Option<u32> {
    d.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// The records of the archive whose version byte is `data[0]`.
pub fn unpack(data: &[u8], budget: &mut Budget) -> Result<Vec<Entry>, UnpackError> {
    let version = match data.first() {
        Some(b'5') => Version::Ea05,
        Some(b'6') => Version::Ea06,
        _ => return Ok(Vec::new()),
    };
    let keys = version.keys();
    let header = data.get(1..17).unwrap_or_default();
    // EA05's data key: the sum of the 16 bytes after the version
    let sum = header.iter().map(|&b| u32::from(b)).sum::<u32>();
    let mut at = 17;
    let mut out = Vec::new();
    while le32(data, at) == Some(keys.magic) {
        budget.check_time()?;
        at += 4;
        let Some(tag) = read_field(data, &mut at, version, Field::Tag) else { break };
        let Some(name) = read_field(data, &mut at, version, Field::Name) else { break };
        let (Some(&compressed), Some(csize)) = (data.get(at), le32(data, at + 1)) else { break };
        let csize = (csize ^ keys.size) as usize;
        // flag, packed size, size, checksum, then two file times
        at += 13 + 16;
        if csize == 0 {
            continue;
        }
        budget.entry()?;
        let member_name = if name.is_empty() { format!("autoit {tag}") } else { format!("autoit {tag} {name}") };
        let Some(packed) = data.get(at..at.saturating_add(csize)) else {
            out.push(Entry::Broken {
                name: member_name,
                why: crate::verdict::Unreadable::damaged("AutoIt", "a record runs past the end of the file"),
            });
            break;
        };
        at += csize;
        budget.spend(csize as u64)?;
        let mut plain = packed.to_vec();
        match version {
            Version::Ea05 => Mt19937::new(0x22af_u32.wrapping_add(sum)).xor(&mut plain),
            Version::Ea06 => Lame::new(0x2477).xor(&mut plain),
        }
        if compressed == 1 {
            if plain.get(..4) != Some(&keys.data_magic[..]) {
                continue;
            }
            let read = expand(&plain, version, budget);
            out.push(member(member_name, "AutoIt", read)?);
        } else {
            out.push(Entry::File { name: member_name, data: plain });
        }
    }
    Ok(out)
}

/// Which of a record's two text fields: its tag (`>>>AUTOIT SCRIPT<<<`, `>>>AUTOIT NO
/// CMDEXECUTE<<<`, or a `FileInstall` source path) or its file name; each has its own key.
#[derive(Clone, Copy)]
enum Field {
    Tag,
    Name,
}

/// Reads a record's text field at `*at` (its length XORed with the field's key, then its
/// characters) and moves past it; `None` if it runs past the end of the data.
fn read_field(data: &[u8], at: &mut usize, version: Version, field: Field) -> Option<String> {
    let keys = version.keys();
    let key = match field {
        Field::Tag => keys.tag_len,
        Field::Name => keys.name_len,
    };
    let len = le32(data, *at)? ^ key;
    let bytes = (len as usize).saturating_mul(keys.char_size);
    let raw = data.get(*at + 4..(*at + 4).saturating_add(bytes))?;
    *at += 4 + bytes;
    Some(decrypt_field(version, field, raw, len))
}

/// A record's text field decrypted (the key is the field's length plus a constant of its own),
/// for the member's name.
fn decrypt_field(version: Version, field: Field, raw: &[u8], len: u32) -> String {
    let mut b = raw.to_vec();
    match (version, field) {
        (Version::Ea05, Field::Tag) => Mt19937::new(len.wrapping_add(0xa25e)).xor(&mut b),
        (Version::Ea05, Field::Name) => Mt19937::new(len.wrapping_add(0xf25e)).xor(&mut b),
        (Version::Ea06, Field::Tag) => Lame::new(len.wrapping_add(0xb33f)).xor(&mut b),
        (Version::Ea06, Field::Name) => Lame::new(len.wrapping_add(0xf479)).xor(&mut b),
    }
    text(version, &b)
}

/// Printable text of a decrypted field (UTF-16LE in EA06), shortened for a member name.
fn text(version: Version, b: &[u8]) -> String {
    let s = match version {
        Version::Ea05 => b.iter().map(|&c| c as char).collect::<String>(),
        Version::Ea06 => {
            let units: Vec<u16> = b.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
            String::from_utf16_lossy(&units)
        }
    };
    s.chars().filter(|c| !c.is_control()).take(120).collect()
}

/// Reads bits most significant first from big-endian 16-bit words.
struct Bits<'a> {
    data: &'a [u8],
    at: usize,
    word: u32,
    left: u32,
}

impl Bits<'_> {
    fn take(&mut self, n: u32) -> Option<u32> {
        let mut v = 0;
        for _ in 0..n {
            if self.left == 0 {
                let w = self.data.get(self.at..self.at + 2)?;
                self.word = u32::from(u16::from_be_bytes([w[0], w[1]]));
                self.at += 2;
                self.left = 16;
            }
            self.left -= 1;
            v = (v << 1) | ((self.word >> self.left) & 1);
        }
        Some(v)
    }
}

/// Decompresses a record's data (after its 4-byte magic and big-endian length).
fn expand(data: &[u8], version: Version, budget: &mut Budget) -> Result<Vec<u8>, ReadError> {
    let declared = data.get(4..8).map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]])) as usize;
    // a length of 0 means "as long as the packed data" (libclamav's reading)
    let declared = if declared == 0 { data.len() } else { declared };
    let mut out = Vec::with_capacity(declared.min(data.len().saturating_mul(8)).min(16 << 20));
    let mut bits = Bits { data, at: 8, word: 0, left: 0 };
    let literal_flag = match version {
        Version::Ea05 => 0,
        Version::Ea06 => 1,
    };
    // bytes charged to the budget so far: a copy is charged before it is made (one copy can
    // be 255 times longer than the bits that code it)
    let mut spent = 0;
    while out.len() < declared {
        let Some(step) = lz_step(&mut bits, literal_flag) else {
            return Err(ReadError::Io { why: "the compressed data ends early".into(), partial: out });
        };
        let len = match step {
            Step::Literal(_) => 1,
            Step::Copy { len, .. } => len,
        };
        if out.len() + len - spent >= 64 * 1024 {
            budget.spend((out.len() + len - spent) as u64)?;
            spent = out.len() + len;
        }
        match step {
            Step::Literal(b) => out.push(b),
            Step::Copy { distance, len } => {
                if distance == 0 || distance > out.len() || out.len() + len > declared {
                    return Err(ReadError::Io { why: "a copy reaches outside the data".into(), partial: out });
                }
                let from = out.len() - distance;
                for k in 0..len {
                    out.push(out[from + k]);
                }
            }
        }
    }
    budget.spend(out.len().saturating_sub(spent) as u64)?;
    Ok(out)
}

enum Step {
    Literal(u8),
    Copy { distance: usize, len: usize },
}

/// One item of the bit stream: a flag, then a literal byte or a 15-bit distance and a length
/// of at least 3 in fields of 2, 3, 5 and 8 bits, each full of ones continuing into the next,
/// the last repeated.
fn lz_step(bits: &mut Bits<'_>, literal_flag: u32) -> Option<Step> {
    if bits.take(1)? == literal_flag {
        return Some(Step::Literal(bits.take(8)? as u8));
    }
    let distance = bits.take(15)? as usize;
    let (mut width, mut field) = (2, bits.take(2)?);
    let mut extra = 0;
    for (next, add) in [(3, 3), (5, 10), (8, 41), (8, 296)] {
        if field != (1 << width) - 1 {
            break;
        }
        (extra, width, field) = (add, next, bits.take(next)?);
    }
    if extra == 296 {
        while field == 255 {
            extra += 255;
            field = bits.take(8)?;
        }
    }
    Some(Step::Copy { distance, len: field as usize + 3 + extra })
}

/// The Mersenne Twister (MT19937) as EA05 uses it: each output word tempered, then bits 1–8
/// taken as the key byte.
struct Mt19937 {
    state: [u32; 624],
    next: usize,
}

impl Mt19937 {
    fn new(seed: u32) -> Self {
        let mut state = [0u32; 624];
        state[0] = seed;
        for i in 1..624 {
            let prev = state[i - 1];
            state[i] = 0x6c07_8965_u32.wrapping_mul(prev ^ (prev >> 30)).wrapping_add(i as u32);
        }
        Mt19937 { state, next: 624 }
    }

    fn regenerate(&mut self) {
        for i in 0..624 {
            let y = (self.state[i] & 0x8000_0000) | (self.state[(i + 1) % 624] & 0x7fff_ffff);
            let mut v = self.state[(i + 397) % 624] ^ (y >> 1);
            if y & 1 != 0 {
                v ^= 0x9908_b0df;
            }
            self.state[i] = v;
        }
        self.next = 0;
    }

    fn byte(&mut self) -> u8 {
        if self.next == 624 {
            self.regenerate();
        }
        let mut y = self.state[self.next];
        self.next += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^= y >> 18;
        (y >> 1) as u8
    }

    fn xor(mut self, buf: &mut [u8]) {
        for b in buf {
            *b ^= self.byte();
        }
    }
}

/// EA06's generator: 17 words, two moving indices, each step the sum of two rotated words.
/// AutoIt turns a step into a double in [0, 1) and multiplies by 256: the top byte of the
/// word.
struct Lame {
    words: [u32; 17],
    c0: usize,
    c1: usize,
}

impl Lame {
    fn new(seed: u32) -> Self {
        let mut words = [0u32; 17];
        let mut s = seed;
        for w in &mut words {
            s = 1u32.wrapping_sub(s.wrapping_mul(0x53a9_b4fb));
            *w = s;
        }
        let mut l = Lame { words, c0: 0, c1: 10 };
        for _ in 0..9 {
            l.step();
        }
        l
    }

    fn step(&mut self) -> u32 {
        let v = self.words[self.c0].rotate_left(9).wrapping_add(self.words[self.c1].rotate_left(13));
        self.words[self.c0] = v;
        self.c0 = if self.c0 == 0 { 16 } else { self.c0 - 1 };
        self.c1 = if self.c1 == 0 { 16 } else { self.c1 - 1 };
        v
    }

    fn xor(mut self, buf: &mut [u8]) {
        for b in buf {
            self.step();
            *b ^= (self.step() >> 24) as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;

    /// Writes the bit stream: bits most significant first into big-endian 16-bit words.
    struct Writer {
        out: Vec<u8>,
        word: u16,
        used: u32,
        literal_flag: u32,
    }

    impl Writer {
        fn new(version: Version) -> Self {
            let literal_flag = if version == Version::Ea05 { 0 } else { 1 };
            Writer { out: Vec::new(), word: 0, used: 0, literal_flag }
        }
        fn bits(&mut self, v: u32, n: u32) {
            for k in (0..n).rev() {
                self.word = (self.word << 1) | ((v >> k) & 1) as u16;
                self.used += 1;
                if self.used == 16 {
                    self.out.extend_from_slice(&self.word.to_be_bytes());
                    (self.word, self.used) = (0, 0);
                }
            }
        }
        fn literal(&mut self, b: u8) {
            self.bits(self.literal_flag, 1);
            self.bits(u32::from(b), 8);
        }
        fn copy(&mut self, distance: u32, len: u32) {
            self.bits(1 - self.literal_flag, 1);
            self.bits(distance, 15);
            let mut rest = len - 3;
            for (width, step) in [(2, 3), (3, 7), (5, 31)] {
                if rest < step {
                    self.bits(rest, width);
                    return;
                }
                self.bits(step, width);
                rest -= step;
            }
            while rest >= 255 {
                self.bits(255, 8);
                rest -= 255;
            }
            self.bits(rest, 8);
        }
        fn finish(mut self) -> Vec<u8> {
            if self.used > 0 {
                self.bits(0, 16 - self.used);
            }
            self.out
        }
    }

    /// Compressed record data: the version's magic, the big-endian length, the stream.
    fn compressed(version: Version, len: usize, stream: &[u8]) -> Vec<u8> {
        let mut d = version.keys().data_magic.to_vec();
        d.extend_from_slice(&(len as u32).to_be_bytes());
        d.extend_from_slice(stream);
        d
    }

    /// A field as the archive stores it: its length XORed with `key`, then its text encrypted.
    fn field(version: Version, text: &str, key: u32, seed: u32) -> Vec<u8> {
        let mut b: Vec<u8> = match version {
            Version::Ea05 => text.as_bytes().to_vec(),
            Version::Ea06 => text.encode_utf16().flat_map(u16::to_le_bytes).collect(),
        };
        let n = text.chars().count() as u32;
        match version {
            Version::Ea05 => Mt19937::new(n.wrapping_add(seed)).xor(&mut b),
            Version::Ea06 => Lame::new(n.wrapping_add(seed)).xor(&mut b),
        }
        [(n ^ key).to_le_bytes().to_vec(), b].concat()
    }

    /// An archive (from the version byte on) of records `(tag, name, compressed?, data)`.
    fn archive(version: Version, records: &[(&str, &str, bool, &[u8])]) -> Vec<u8> {
        let keys = version.keys();
        let header: Vec<u8> = (1..=16).collect();
        let sum = header.iter().map(|&b| u32::from(b)).sum::<u32>();
        let mut a = vec![if version == Version::Ea05 { b'5' } else { b'6' }];
        a.extend_from_slice(&header);
        for &(tag, name, packed, data) in records {
            a.extend_from_slice(&keys.magic.to_le_bytes());
            let (tag_seed, name_seed) = if version == Version::Ea05 { (0xa25e, 0xf25e) } else { (0xb33f, 0xf479) };
            a.extend(field(version, tag, keys.tag_len, tag_seed));
            a.extend(field(version, name, keys.name_len, name_seed));
            let mut body = data.to_vec();
            match version {
                Version::Ea05 => Mt19937::new(0x22af + sum).xor(&mut body),
                Version::Ea06 => Lame::new(0x2477).xor(&mut body),
            }
            a.push(u8::from(packed));
            a.extend_from_slice(&(body.len() as u32 ^ keys.size).to_le_bytes());
            a.extend_from_slice(&[0; 8 + 16]);
            a.extend(body);
        }
        a
    }

    fn files(entries: &[Entry]) -> Vec<(String, Vec<u8>)> {
        entries
            .iter()
            .map(|e| match e {
                Entry::File { name, data } => (name.clone(), data.clone()),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn the_generators_are_the_ones_autoit_uses() {
        // MT19937's first tempered output for the reference seed 5489 is 3,499,211,612;
        // EA05 takes bits 1-8 of it
        let mut mt = Mt19937::new(5489);
        assert_eq!(mt.byte(), (3_499_211_612u32 >> 1) as u8);
        // and the 625th comes from the regenerated state
        let bytes: Vec<u8> = (0..700).map(|_| mt.byte()).collect();
        assert_ne!(bytes[..100], bytes[624..700]);
        // EA06's generator is a pure function of its seed, and XOR is its own inverse
        let mut a = b"AutoIt".to_vec();
        Lame::new(0x2477).xor(&mut a);
        assert_ne!(&a, b"AutoIt");
        Lame::new(0x2477).xor(&mut a);
        assert_eq!(&a, b"AutoIt");
    }

    #[test]
    fn streams_with_every_length_field_decode() {
        for version in [Version::Ea05, Version::Ea06] {
            let text = testkit::pseudo_random(5, 40_000);
            let mut w = Writer::new(version);
            let mut want = Vec::new();
            for &c in &text[..1000] {
                w.literal(c);
                want.push(c);
            }
            // lengths at each field's edges: 2 bits, 3, 5, 8, then steps of 255
            for (distance, len) in
                [(1, 3), (7, 5), (100, 6), (999, 12), (5, 13), (1000, 43), (2, 44), (3, 298), (9, 299)]
                    .into_iter()
                    .chain([(10, 552), (11, 553), (12, 554), (13, 2000)])
            {
                w.copy(distance, len);
                for _ in 0..len {
                    want.push(want[want.len() - distance as usize]);
                }
                w.literal(b'|');
                want.push(b'|');
            }
            let data = compressed(version, want.len(), &w.finish());
            let got = expand(&data, version, &mut Budget::new(Limits::default())).unwrap();
            assert_eq!(got, want, "{version:?}");
            // a copy from before the start keeps what was decoded and says why
            let mut w = Writer::new(version);
            w.literal(b'a');
            w.copy(5, 3);
            match expand(&compressed(version, 10, &w.finish()), version, &mut Budget::new(Limits::default())) {
                Err(ReadError::Io { partial, .. }) => assert_eq!(partial, b"a"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_long_copy_is_charged_before_it_is_made() {
        // 40,000 bytes of 0xff code one copy of about 10 MB; the declared length allows it
        let mut w = Writer::new(Version::Ea05);
        w.literal(b'x');
        w.copy(1, 10_000_000);
        let data = compressed(Version::Ea05, 10_000_001, &w.finish());
        assert!(data.len() < 50_000);
        let small = Limits { max_expanded: 1_000_000, ..Default::default() };
        let mut budget = Budget::new(small);
        assert!(matches!(expand(&data, Version::Ea05, &mut budget), Err(ReadError::Limit(_))));
        let got = expand(&data, Version::Ea05, &mut Budget::new(Limits::default())).unwrap();
        assert!(got.len() == 10_000_001 && got.iter().all(|&b| b == b'x'));
    }

    #[test]
    fn archives_of_both_versions_give_their_records() {
        let script = b"; a script\r\nFileInstall(\"payload.exe\", @TempDir)\r\n".repeat(20);
        let payload = testkit::pseudo_random(9, 3000);
        for version in [Version::Ea05, Version::Ea06] {
            let mut w = Writer::new(version);
            let line = &script[..script.len() / 20];
            for &c in line {
                w.literal(c);
            }
            w.copy(line.len() as u32, (script.len() - line.len()) as u32);
            let packed_script = compressed(version, script.len(), &w.finish());
            let a = archive(
                version,
                &[
                    (">>>AUTOIT SCRIPT<<<", "script.au3", true, &packed_script),
                    ("payload.exe", "C:\\p.exe", false, &payload),
                ],
            );
            let mut exe = b"MZ stub ".to_vec();
            exe.extend_from_slice(&MARKER);
            exe.extend_from_slice(b"AU3!EA0");
            let at = exe.len();
            exe.extend_from_slice(&a);
            assert_eq!(find(&exe), vec![at]);
            if let (Ok(dir), Version::Ea06) = (std::env::var("MXSHIELD_WRITE_SEED"), version) {
                // the fuzz target's first byte picks an unpacker; the whole scan takes the rest
                // clam.exe with a byte of its DOS stub changed: an executable no signature names
                let mut pe = std::fs::read("/usr/share/clamav-testfiles/clam.exe").unwrap();
                pe[0x50] ^= 0x20;
                pe.extend_from_slice(&exe);
                std::fs::write(std::path::Path::new(&dir).join("seed-exe-autoit"), [&[0][..], &pe].concat()).unwrap();
            }
            let got = files(&unpack(&exe[at..], &mut Budget::new(Limits::default())).unwrap());
            assert_eq!(
                got,
                vec![
                    ("autoit >>>AUTOIT SCRIPT<<< script.au3".to_string(), script.clone()),
                    ("autoit payload.exe C:\\p.exe".to_string(), payload.clone()),
                ],
                "{version:?}"
            );
            // every byte decoded is charged: a budget that holds the stored data but not the
            // script is exceeded
            let tight =
                Limits { max_expanded: (packed_script.len() + payload.len() + 100) as u64, ..Default::default() };
            assert!(matches!(unpack(&exe[at..], &mut Budget::new(tight)), Err(UnpackError::Limit(_))), "{version:?}");
            // a record cut short is reported, not dropped
            let cut = &exe[at..exe.len() - 10];
            let entries = unpack(cut, &mut Budget::new(Limits::default())).unwrap();
            assert!(matches!(entries.last(), Some(Entry::Broken { .. })), "{entries:?}");
        }
    }

    #[test]
    fn clamav_test_files_give_clam_exe_and_damage_ends_in_bounded_time() {
        let clam = std::fs::read("/usr/share/clamav-testfiles/clam.exe").expect("clamav-testfiles");
        for name in ["clam.ea05.exe", "clam.ea06.exe"] {
            let real = std::fs::read(format!("/usr/share/clamav-testfiles/{name}")).unwrap();
            let at = find(&real);
            assert_eq!(at.len(), 1, "{name}");
            let entries = unpack(&real[at[0]..], &mut Budget::new(Limits::default())).unwrap();
            let got = files(&entries);
            assert!(got.iter().any(|(n, d)| n.ends_with("C:\\clam.exe") && *d == clam), "{name}: {got:?}");
            assert!(got.iter().any(|(n, _)| n.contains("AUTOIT")), "{name}: the script too");
            // every byte of the archive changed in turn, and cuts: never a panic
            let archive = &real[at[0]..];
            // (the records' headers densely, the data more sparsely: each try decodes it all)
            for k in (0..archive.len().min(512)).chain((512..archive.len()).step_by(101)) {
                let mut bad = archive.to_vec();
                bad[k] ^= 0x5a;
                let _ = unpack(&bad, &mut Budget::new(Limits::default()));
            }
            for cut in (0..archive.len()).step_by(61) {
                let _ = unpack(&archive[..cut], &mut Budget::new(Limits::default()));
            }
        }
    }
}
