//! ZIP (stored, deflate, deflate64, bzip2, lzma, xz, zstd, PPMd), read leniently the way
//! extractors read it (see [`unpack`]), with ZipCrypto and AES members reported as encrypted
//! without a password. Written here rather than on the `zip` crate, which refuses what unzip
//! and 7-Zip extract (a prefix before the archive, a damaged signature, a wrong checksum, a
//! central directory that disagrees with the local headers).

use super::{Entry, ReadError, UnpackError, read_bounded};
use crate::limits::{Budget, Limit};
use crate::verdict::Unreadable;

/// A member's name from its raw bytes: UTF-8 (the zip's UTF-8 flag, or plain ASCII), else
/// Shift_JIS (what Japanese Windows writes without the flag), else code page 437 (the zip
/// format's own default). `None` for an empty name.
pub fn member_name(raw: &[u8]) -> Option<String> {
    if raw.is_empty() {
        return None;
    }
    if let Ok(s) = std::str::from_utf8(raw) {
        return Some(s.to_string());
    }
    let (sjis, _, bad) = encoding_rs::SHIFT_JIS.decode(raw);
    if !bad {
        return Some(sjis.into_owned());
    }
    Some(raw.iter().map(|&b| if b.is_ascii() { b as char } else { CP437_HIGH[(b - 0x80) as usize] }).collect())
}

/// Code page 437, bytes 0x80–0xFF.
const CP437_HIGH: [char; 128] = [
    'Ç', 'ü', 'é', 'â', 'ä', 'à', 'å', 'ç', 'ê', 'ë', 'è', 'ï', 'î', 'ì', 'Ä', 'Å', 'É', 'æ', 'Æ', 'ô', 'ö', 'ò', 'û',
    'ù', 'ÿ', 'Ö', 'Ü', '¢', '£', '¥', '₧', 'ƒ', 'á', 'í', 'ó', 'ú', 'ñ', 'Ñ', 'ª', 'º', '¿', '⌐', '¬', '½', '¼', '¡',
    '«', '»', '░', '▒', '▓', '│', '┤', '╡', '╢', '╖', '╕', '╣', '║', '╗', '╝', '╜', '╛', '┐', '└', '┴', '┬', '├', '─',
    '┼', '╞', '╟', '╚', '╔', '╩', '╦', '╠', '═', '╬', '╧', '╨', '╤', '╥', '╙', '╘', '╒', '╓', '╫', '╪', '┘', '┌', '█',
    '▄', '▌', '▐', '▀', 'α', 'ß', 'Γ', 'π', 'Σ', 'σ', 'µ', 'τ', 'Φ', 'Θ', 'Ω', 'δ', '∞', 'φ', 'ε', '∩', '≡', '±', '≥',
    '≤', '⌠', '⌡', '÷', '≈', '°', '∙', '·', '√', 'ⁿ', '²', '■', ' ',
];

const LOCAL: &[u8] = b"PK\x03\x04";
const CENTRAL: &[u8] = b"PK\x01\x02";
const END: &[u8] = b"PK\x05\x06";
const ZIP64_LOCATOR: &[u8] = b"PK\x06\x07";
const ZIP64_END: &[u8] = b"PK\x06\x06";
/// How far from the end an end record may sit: its own size plus the longest comment.
const END_WINDOW: usize = 22 + 65_535;
/// Appended to a member's name when the central directory's view of it (method, size) gives
/// other bytes than the local header's, and both are scanned.
pub const CENTRAL_VIEW: &str = " (as the central directory says)";

/// Largest PPMd model or LZMA dictionary a member may ask for, whatever the scan limits say.
const DECODER_MEMORY_CAP: u64 = 64 * 1024 * 1024;

fn u16_at(d: &[u8], at: usize) -> Option<u16> {
    d.get(at..at.checked_add(2)?).map(|b| u16::from_le_bytes([b[0], b[1]]))
}

fn u32_at(d: &[u8], at: usize) -> Option<u32> {
    d.get(at..at.checked_add(4)?).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn u64_at(d: &[u8], at: usize) -> Option<u64> {
    Some(u64::from(u32_at(d, at)?) | (u64::from(u32_at(d, at + 4)?) << 32))
}

/// What the central directory says of one member.
#[derive(Debug, Clone)]
struct Central {
    name: Vec<u8>,
    flags: u16,
    method: u16,
    crc: u32,
    packed: u64,
    /// Offset of the local header in the buffer (prefix already accounted for).
    local: usize,
}

/// What a local header says of one member.
#[derive(Debug, Clone)]
struct Local {
    name: Vec<u8>,
    flags: u16,
    method: u16,
    crc: u32,
    packed: u64,
    unpacked: u64,
    data_start: usize,
}

/// Sizes from a zip64 extra field where the 32-bit fields say 0xFFFFFFFF, in the field order.
fn zip64_sizes(extra: &[u8], wanted: &mut [&mut u64]) {
    let mut at = 0;
    while let (Some(id), Some(len)) = (u16_at(extra, at), u16_at(extra, at + 2)) {
        let body = at + 4;
        if id == 1 {
            let mut k = body;
            for w in wanted.iter_mut().filter(|w| ***w == 0xFFFF_FFFF) {
                match u64_at(extra, k) {
                    Some(v) if k + 8 <= body + len as usize => **w = v,
                    _ => return,
                }
                k += 8;
            }
            return;
        }
        at = body + len as usize;
    }
}

/// Whether `data` may hold a zip: a local header anywhere, or an end record where
/// the zip reader looks for one (the last 64 KiB). One pass over the data, on every non-container buffer
/// of every message.
pub fn has_signature(data: &[u8]) -> bool {
    let tail = &data[data.len().saturating_sub(END_WINDOW)..];
    memchr::memmem::find(data, LOCAL).is_some() || memchr::memmem::find(tail, END).is_some()
}

/// The central directory of the last end record in the file, wherever the archive starts in the
/// buffer (a self-extractor stub, a mail prefix): offsets are corrected by where the directory
/// really is.
fn central_directory(d: &[u8]) -> Vec<Central> {
    let tail = d.len().saturating_sub(END_WINDOW);
    let Some(end) = memchr::memmem::rfind(&d[tail..], END).map(|p| tail + p) else { return Vec::new() };
    let (Some(mut size), Some(mut offset)) = (u32_at(d, end + 12).map(u64::from), u32_at(d, end + 16).map(u64::from))
    else {
        return Vec::new();
    };
    let mut dir_end = end as u64;
    if (size == 0xFFFF_FFFF || offset == 0xFFFF_FFFF)
        && end >= 20
        && d.get(end - 20..end - 16) == Some(ZIP64_LOCATOR)
        && let Some(rec) = u64_at(d, end - 12)
    {
        // the zip64 end record sits just before the locator; its stated offset may be shifted
        let at = end
            .checked_sub(20 + 56)
            .filter(|&a| d.get(a..a + 4) == Some(ZIP64_END))
            .or_else(|| usize::try_from(rec).ok().filter(|&a| d.get(a..a.saturating_add(4)) == Some(ZIP64_END)));
        if let Some(at) = at {
            size = u64_at(d, at + 40).unwrap_or(size);
            offset = u64_at(d, at + 48).unwrap_or(offset);
            dir_end = at as u64;
        }
    }
    let stated = usize::try_from(offset).ok().filter(|&o| d.get(o..o.saturating_add(4)) == Some(CENTRAL));
    let real = dir_end.checked_sub(size).and_then(|s| usize::try_from(s).ok());
    let (start, shift) = match (stated, real) {
        (Some(o), _) => (o, 0i64),
        (None, Some(r)) if d.get(r..r + 4) == Some(CENTRAL) => (r, r as i64 - offset as i64),
        _ => return Vec::new(),
    };
    let mut out = Vec::new();
    let mut at = start;
    while d.get(at..at + 4) == Some(CENTRAL) {
        let field = |o: usize| u16_at(d, at + o).unwrap_or(0);
        let (nlen, xlen, clen) = (field(28) as usize, field(30) as usize, field(32) as usize);
        let Some(name) = d.get(at + 46..at + 46 + nlen) else { break };
        let extra = d.get(at + 46 + nlen..at + 46 + nlen + xlen).unwrap_or(&[]);
        let mut packed = u64::from(u32_at(d, at + 20).unwrap_or(0));
        let mut unpacked = u64::from(u32_at(d, at + 24).unwrap_or(0));
        let mut local = u64::from(u32_at(d, at + 42).unwrap_or(0));
        zip64_sizes(extra, &mut [&mut unpacked, &mut packed, &mut local]);
        if let Some(local) = usize::try_from(local as i64 + shift).ok().filter(|&l| l < d.len()) {
            out.push(Central {
                name: name.to_vec(),
                flags: field(8),
                method: field(10),
                crc: u32_at(d, at + 16).unwrap_or(0),
                packed,
                local,
            });
        }
        at += 46 + nlen + xlen + clen;
    }
    out
}

/// The local header at `at`; its signature is checked only when `need_signature` (the central
/// directory pointing there is evidence enough: extractors read a damaged signature too).
fn local_header(d: &[u8], at: usize, need_signature: bool) -> Option<Local> {
    if need_signature && d.get(at..at + 4)? != LOCAL {
        return None;
    }
    let (nlen, xlen) = (u16_at(d, at + 26)? as usize, u16_at(d, at + 28)? as usize);
    let name = d.get(at + 30..at + 30 + nlen)?.to_vec();
    let extra = d.get(at + 30 + nlen..at + 30 + nlen + xlen).unwrap_or(&[]);
    let mut packed = u64::from(u32_at(d, at + 18)?);
    let mut unpacked = u64::from(u32_at(d, at + 22)?);
    zip64_sizes(extra, &mut [&mut unpacked, &mut packed]);
    Some(Local {
        name,
        flags: u16_at(d, at + 6)?,
        method: u16_at(d, at + 8)?,
        crc: u32_at(d, at + 14)?,
        packed,
        unpacked,
        data_start: (at + 30 + nlen + xlen).min(d.len()),
    })
}

/// A member's data as decoded: the bytes, how many input bytes the stream used, and what went
/// wrong (the bytes before a damaged spot are kept and scanned).
struct Decoded {
    data: Vec<u8>,
    used: usize,
    damage: Option<String>,
}

/// Why a member was not decoded at all.
enum Undecodable {
    Limit(Limit),
    Unsupported(String),
}

/// Decodes `method` from `input`. `packed` bounds stored data (when known); `unpacked` is
/// needed by formats without an end marker (LZMA without EOS, PPMd).
fn decode(
    method: u16,
    input: &[u8],
    packed: Option<u64>,
    header: Header,
    budget: &mut Budget,
) -> Result<Decoded, Undecodable> {
    let unpacked = header.unpacked;
    let mut rest = input;
    let memory_cap = budget.limits.max_expanded.min(DECODER_MEMORY_CAP);
    let ratio_base = Some(input.len() as u64);
    let read = match method {
        0 => {
            let n = packed.map_or(stored_len(input), |p| p.min(input.len() as u64) as usize);
            let r = read_bounded(&input[..n], budget, None);
            return finish(r, n, (packed.is_some_and(|p| p > input.len() as u64)).then(|| "member truncated".into()));
        }
        8 => read_bounded(flate2::bufread::DeflateDecoder::new(&mut rest), budget, ratio_base),
        9 => read_bounded(deflate64::Deflate64Decoder::with_buffer(&mut rest), budget, ratio_base),
        12 => read_bounded(bzip2::bufread::BzDecoder::new(&mut rest), budget, ratio_base),
        14 => {
            // 2 bytes version, 2 bytes properties size, then the 5-byte LZMA properties
            let (Some(&props), Some(dict)) = (input.get(4), u32_at(input, 5)) else {
                return Err(Undecodable::Unsupported("LZMA header truncated".into()));
            };
            // the dictionary never needs to be larger than what it produces
            let dict = if unpacked > 0 && unpacked < u64::from(dict) { unpacked.max(4096) as u32 } else { dict };
            if u64::from(dict) > memory_cap {
                return Err(Undecodable::Limit(Limit::DecoderMemory { what: "LZMA dictionary", bytes: dict.into() }));
            }
            rest = input.get(9..).unwrap_or(&[]);
            let size = if unpacked == 0 || unpacked == 0xFFFF_FFFF { u64::MAX } else { unpacked };
            match lzma_rust2::LzmaReader::new_with_props(&mut rest, size, props, dict, None) {
                Ok(r) => read_bounded(r, budget, ratio_base),
                Err(e) => return Err(Undecodable::Unsupported(format!("LZMA: {e}"))),
            }
        }
        93 => match zstd::stream::read::Decoder::with_buffer(&mut rest) {
            Ok(mut r) => {
                let _ = r.window_log_max(memory_cap.ilog2().min(27));
                read_bounded(r, budget, ratio_base)
            }
            Err(e) => return Err(Undecodable::Unsupported(format!("zstd: {e}"))),
        },
        95 => read_bounded(
            lzma_rust2::XzReader::new_mem_limit(&mut rest, true, (memory_cap / 1024) as u32),
            budget,
            ratio_base,
        ),
        98 => {
            let Some(params) = u16_at(input, 0) else {
                return Err(Undecodable::Unsupported("PPMd header truncated".into()));
            };
            let order = u32::from(params & 0x0F) + 1;
            let memory = (u32::from((params >> 4) & 0xFF) + 1) * 1024 * 1024;
            if u64::from(memory) > memory_cap {
                return Err(Undecodable::Limit(Limit::DecoderMemory { what: "PPMd model", bytes: memory.into() }));
            }
            rest = &input[2..];
            let restore = ppmd_rust::RestoreMethod::from(params >> 12);
            match ppmd_rust::Ppmd8Decoder::new(&mut rest, order, memory, restore) {
                Ok(r) => read_bounded(std::io::Read::take(r, unpacked), budget, ratio_base),
                Err(e) => return Err(Undecodable::Unsupported(format!("PPMd: {e}"))),
            }
        }
        1..=6 => {
            // Shrink, Reduce and Implode (PKZIP 1 and 2, still used by malware to slip past
            // scanners): decoded by the zip crate's own decoders, through a one-member archive
            let n = packed.map_or(input.len(), |p| p.min(input.len() as u64) as usize);
            let Some(archive) = one_member_archive(method, &input[..n], header) else {
                return Err(Undecodable::Unsupported(format!("compression method {method}: sizes past 4 GiB")));
            };
            let mut archive = match zip::ZipArchive::new(std::io::Cursor::new(archive)) {
                Ok(a) => a,
                Err(e) => return Err(Undecodable::Unsupported(format!("compression method {method}: {e}"))),
            };
            let read = match archive.by_index(0) {
                Ok(r) => read_bounded(r, budget, ratio_base),
                Err(e) => return Err(Undecodable::Unsupported(format!("compression method {method}: {e}"))),
            };
            return finish(read, n, None);
        }
        m => return Err(Undecodable::Unsupported(format!("compression method {m} not supported"))),
    };
    let used = input.len() - rest.len();
    finish(read, used, None)
}

/// What a member's header says that some decoders need.
#[derive(Debug, Clone, Copy)]
struct Header {
    /// The general purpose flags (Implode's dictionary size and tree count).
    flags: u16,
    /// The CRC-32 the data should have.
    crc: u32,
    /// The size once decoded.
    unpacked: u64,
}

/// An archive of one member `m` holding `data` compressed with `method`, with the member's
/// flags, CRC and sizes (`None` when a size needs zip64).
fn one_member_archive(method: u16, data: &[u8], h: Header) -> Option<Vec<u8>> {
    let packed = u32::try_from(data.len()).ok()?;
    let unpacked = u32::try_from(h.unpacked).ok()?;
    // no data descriptor, no encryption: the sizes and CRC are in the headers
    let flags = h.flags & !0x0009;
    let fields = |out: &mut Vec<u8>| {
        for v in [flags, method, 0, 0] {
            out.extend(v.to_le_bytes());
        }
        out.extend(h.crc.to_le_bytes());
        out.extend(packed.to_le_bytes());
        out.extend(unpacked.to_le_bytes());
        out.extend(1u16.to_le_bytes()); // name length
        out.extend(0u16.to_le_bytes()); // extra length
    };
    let mut a = b"PK\x03\x04".to_vec();
    a.extend(20u16.to_le_bytes());
    fields(&mut a);
    a.push(b'm');
    a.extend_from_slice(data);
    let central_at = u32::try_from(a.len()).ok()?;
    a.extend(b"PK\x01\x02");
    a.extend([20, 0, 20, 0]);
    fields(&mut a);
    a.extend([0u8; 14]); // comment length, disk, attributes, local header offset 0
    a.push(b'm');
    let central_len = u32::try_from(a.len()).ok()? - central_at;
    a.extend(b"PK\x05\x06\0\0\0\0\x01\0\x01\0");
    a.extend(central_len.to_le_bytes());
    a.extend(central_at.to_le_bytes());
    a.extend([0, 0]);
    Some(a)
}

fn finish(r: Result<Vec<u8>, ReadError>, used: usize, damage: Option<String>) -> Result<Decoded, Undecodable> {
    match r {
        Ok(data) => Ok(Decoded { data, used, damage }),
        Err(ReadError::Limit(l)) => Err(Undecodable::Limit(l)),
        Err(ReadError::Io { why, partial }) => Ok(Decoded { data: partial, used, damage: Some(why) }),
    }
}

/// Length of stored data whose size is not in the header (a data descriptor follows): up to
/// the next zip signature, else the rest of the buffer.
fn stored_len(input: &[u8]) -> usize {
    [b"PK\x07\x08".as_slice(), LOCAL, CENTRAL, END]
        .iter()
        .filter_map(|sig| memchr::memmem::find(input, sig))
        .min()
        .unwrap_or(input.len())
}

/// Every member of the zip archives in `data`, read as extractors read them: by the central
/// directory of the end record (wherever the archive starts: after a self-extractor stub or any
/// prefix), and by every local header found outside the members already read (a damaged or
/// missing directory, a member the directory hides or calls a directory). Each member is decoded
/// with the method of its local header and, where the directory differs, with the directory's
/// view too. Checksum failures and damaged streams are reported, and what was decoded is
/// scanned all the same.
pub fn unpack(data: &[u8], budget: &mut Budget) -> Result<Vec<Entry>, UnpackError> {
    let mut out = Vec::new();
    let mut covered: Vec<std::ops::Range<usize>> = Vec::new();
    for c in central_directory(data) {
        if covered.iter().any(|r| r.start == c.local) {
            continue;
        }
        if let Some(l) = local_header(data, c.local, false) {
            let end = member_entries(data, &l, Some(&c), budget, &mut out)?;
            covered.push(c.local..end);
        }
    }
    covered.sort_by_key(|r| r.start);
    let mut pos = 0;
    while let Some(p) = memchr::memmem::find(&data[pos..], LOCAL) {
        let at = pos + p;
        if let Some(r) = covered.iter().find(|r| r.contains(&at)) {
            pos = r.end.max(at + 4);
            continue;
        }
        pos = match local_header(data, at, true) {
            Some(l) => member_entries(data, &l, None, budget, &mut out)?.max(at + 4),
            None => at + 4,
        };
    }
    if out.is_empty() && covered.is_empty() {
        return Err(UnpackError::Broken(Unreadable::damaged("Zip", "no zip members found")));
    }
    Ok(out)
}

/// Reads one member (both views) into `out`; returns where its data ends in `data`.
fn member_entries(
    data: &[u8],
    l: &Local,
    c: Option<&Central>,
    budget: &mut Budget,
    out: &mut Vec<Entry>,
) -> Result<usize, UnpackError> {
    budget.entry()?;
    let raw_name = c.map_or(&l.name, |c| &c.name);
    let name = member_name(raw_name).or_else(|| member_name(&l.name)).unwrap_or_else(|| "member".into());
    let flags = l.flags | c.map_or(0, |c| c.flags);
    let input = &data[l.data_start..];
    if flags & 1 != 0 || l.method == 99 || c.is_some_and(|c| c.method == 99) {
        out.push(Entry::Encrypted { name, kind: "Encrypted.Zip" });
        let end = l.data_start.saturating_add(l.packed.max(c.map_or(0, |c| c.packed)) as usize);
        return Ok(end.min(data.len()));
    }
    let known = |p: u64| (p != 0 || l.flags & 8 == 0).then_some(p);
    let mut views = vec![(l.method, known(l.packed))];
    if let Some(c) = c
        && (c.method != l.method || c.packed != l.packed)
    {
        views.push((c.method, Some(c.packed).filter(|&p| p != 0)));
    }
    let expected_crc = if l.flags & 8 != 0 { c.map(|c| c.crc) } else { Some(l.crc) };
    let mut end = l.data_start;
    let mut first: Option<Vec<u8>> = None;
    let mut failures = Vec::new();
    for (k, (method, packed)) in views.into_iter().enumerate() {
        let header = Header { flags: l.flags, crc: expected_crc.unwrap_or(l.crc), unpacked: l.unpacked };
        let d = match decode(method, input, packed, header, budget) {
            Ok(d) => d,
            Err(Undecodable::Limit(hit)) => return Err(UnpackError::Limit(hit)),
            Err(Undecodable::Unsupported(why)) => {
                failures.push(why);
                continue;
            }
        };
        end = end.max(l.data_start + d.used);
        if first.as_ref().is_some_and(|f| *f == d.data) {
            continue;
        }
        let crc_ok = expected_crc
            .is_none_or(|crc| crc32fast::hash(&d.data) == crc || c.is_some_and(|c| crc32fast::hash(&d.data) == c.crc));
        let damage = d.damage.or_else(|| (!crc_ok).then(|| "CRC mismatch".to_string()));
        if d.data.is_empty() && (damage.is_some() || name.ends_with('/')) {
            if let Some(why) = damage {
                failures.push(why);
            }
            continue;
        }
        let name = if k == 0 { name.clone() } else { format!("{name}{CENTRAL_VIEW}") };
        first.get_or_insert_with(|| d.data.clone());
        out.push(match damage {
            Some(why) => Entry::Damaged { name, data: d.data, why: Unreadable::damaged("Zip", why).to_string() },
            None => Entry::File { name, data: d.data },
        });
    }
    if first.is_none() && !failures.is_empty() {
        out.push(Entry::Broken { name, why: Unreadable::damaged("Zip", failures.join("; ")) });
    }
    Ok(end.max(l.data_start + l.packed.min(input.len() as u64) as usize))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Limits;

    #[test]
    fn member_names_in_utf8_shift_jis_and_cp437() {
        assert_eq!(member_name("議事録.txt".as_bytes()).unwrap(), "議事録.txt");
        let (sjis, _, _) = encoding_rs::SHIFT_JIS.encode("議事録.txt");
        assert_eq!(member_name(&sjis).unwrap(), "議事録.txt");
        // 0x80 0x81 is not Shift_JIS: code page 437
        assert_eq!(member_name(b"\x80\x81.txt").unwrap(), "Çü.txt");
        assert_eq!(member_name(b""), None);
    }

    #[test]
    fn shift_jis_names_written_by_japanese_windows_are_decoded() {
        // a zip whose name bytes are Shift_JIS without the UTF-8 flag, as Explorer writes it
        let (sjis, _, _) = encoding_rs::SHIFT_JIS.encode("見積書.txt");
        let placeholder = "x".repeat(sjis.len());
        let mut zip = testkit::mail::zip(&[(placeholder.as_str(), b"hello")]);
        let mut at = 0;
        while let Some(p) = zip[at..].windows(sjis.len()).position(|w| w == placeholder.as_bytes()) {
            zip[at + p..at + p + sjis.len()].copy_from_slice(&sjis);
            at += p + sjis.len();
        }
        let entries = unpack(&zip, &mut Budget::new(Limits::default())).unwrap();
        assert!(matches!(&entries[..], [Entry::File { name, .. }] if name == "見積書.txt"), "{entries:?}");
    }
}
