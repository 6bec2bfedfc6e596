//! The VBA macros of an Office document (MS-OVBA; issue 17): a project's `dir` stream names
//! its modules and where each one's source starts in its stream; the source is kept compressed
//! (MS-OVBA's own LZ77 with 4 KiB chunks). Each module's source is decompressed and scanned as
//! libclamav scans it — with the signatures for OLE2 files (target type 2), e.g.
//! `Sub AutoOpen()` … `Shell`. libclamav also reads each project a second way (its
//! `cli_vba_readdir_new`): the sources, turned from the project's code page into UTF-8 and
//! normalised (keywords and names lower-cased outside string literals, runs of blanks made one
//! space, lines continued with ` _` joined), listed in one text that is matched as a script —
//! so this module gives that listing too ([`normalise`]). Every byte produced is charged to the
//! budget.

use super::{Entry, UnpackError};
use crate::limits::Budget;

/// Largest source decompressed from one container (a chunk gives at most 4 KiB from at least
/// 3 bytes, so a 20 MB stream cannot give more than about 28 GB: this bounds it far earlier).
const MAX_OUTPUT: usize = 16 << 20;

/// Decompresses an MS-OVBA `CompressedContainer` (a `1`, then chunks); what the chunks before
/// any damage gave, `None` when it does not start as a container.
pub fn decompress(container: &[u8]) -> Option<Vec<u8>> {
    let (&sig, mut rest) = container.split_first()?;
    if sig != 1 {
        return None;
    }
    let mut out = Vec::new();
    while rest.len() >= 2 && out.len() < MAX_OUTPUT {
        let header = u16::from_le_bytes([rest[0], rest[1]]);
        let size = usize::from(header & 0x0fff) + 3; // the whole chunk, header included
        let chunk = &rest[2..size.min(rest.len())];
        rest = &rest[size.min(rest.len())..];
        if header & 0x8000 == 0 {
            // stored: 4096 bytes as they are
            out.extend_from_slice(&chunk[..chunk.len().min(4096)]);
            continue;
        }
        let start = out.len();
        let mut at = 0;
        'chunk: while at < chunk.len() {
            let flags = chunk[at];
            at += 1;
            for bit in 0..8 {
                if at >= chunk.len() || out.len() - start >= 4096 {
                    break 'chunk;
                }
                if flags & (1 << bit) == 0 {
                    out.push(chunk[at]);
                    at += 1;
                    continue;
                }
                let Some(t) = chunk.get(at..at + 2) else { break 'chunk };
                let token = u16::from_le_bytes([t[0], t[1]]);
                at += 2;
                // the split between offset and length depends on how far into the chunk we are
                let done = out.len() - start;
                let bits = (usize::BITS - done.saturating_sub(1).leading_zeros()).max(4);
                let length_mask = 0xffffu16 >> bits;
                let length = usize::from(token & length_mask) + 3;
                let offset = usize::from(token >> (16 - bits)) + 1;
                if offset > done {
                    return Some(out); // refers before the chunk: damaged
                }
                for _ in 0..length.min(4096 - done) {
                    out.push(out[out.len() - offset]);
                }
            }
        }
    }
    Some(out)
}

/// A module of a project: the stream holding it and where its compressed source starts.
#[derive(Debug, PartialEq, Eq)]
struct Module {
    stream: String,
    offset: usize,
}

/// What a project's `dir` stream says: its code page and its modules.
#[derive(Debug, PartialEq, Eq)]
struct Project {
    /// `PROJECTCODEPAGE` (libclamav assumes ISO 8859-1 when the record is missing).
    code_page: u16,
    modules: Vec<Module>,
}

/// The project a decompressed `dir` stream describes (records of an id, a size and data; the
/// `PROJECTVERSION` record declares 4 bytes and holds 6).
fn project(dir: &[u8]) -> Project {
    let mut out = Vec::new();
    let mut code_page = 28591;
    let (mut stream, mut unicode, mut offset) = (None, None, None);
    let mut at = 0;
    while let Some(h) = dir.get(at..at + 6) {
        let id = u16::from_le_bytes([h[0], h[1]]);
        let size = u32::from_le_bytes([h[2], h[3], h[4], h[5]]) as usize;
        let size = if id == 0x0009 { 6 } else { size };
        let Some(data) = dir.get(at + 6..(at + 6).saturating_add(size)) else { break };
        at += 6 + size;
        match id {
            0x001a => stream = Some(super::text_name(data)),
            0x0032 => {
                let units: Vec<u16> = data.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
                unicode = Some(String::from_utf16_lossy(&units));
            }
            0x0003 if size == 2 => code_page = u16::from_le_bytes([data[0], data[1]]),
            0x0031 if size == 4 => offset = Some(u32::from_le_bytes([data[0], data[1], data[2], data[3]]) as usize),
            0x002b => {
                if let (Some(s), Some(o)) = (unicode.take().or(stream.take()), offset.take()) {
                    out.push(Module { stream: s, offset: o });
                }
                stream = None;
            }
            0x0010 => break,
            _ => {}
        }
    }
    Project { code_page, modules: out }
}

/// The encoding of a Windows code page, for the code pages Office writes in `PROJECTCODEPAGE`;
/// `None` for one it does not know (libclamav then leaves the source out of its listing).
fn code_page_encoding(code_page: u16) -> Option<&'static encoding_rs::Encoding> {
    use encoding_rs::*;
    Some(match code_page {
        874 => WINDOWS_874,
        932 => SHIFT_JIS,
        936 => GBK,
        949 => EUC_KR,
        950 => BIG5,
        1200 => UTF_16LE,
        1201 => UTF_16BE,
        1250 => WINDOWS_1250,
        1251 => WINDOWS_1251,
        1252 | 28591 => WINDOWS_1252,
        1253 => WINDOWS_1253,
        1254 => WINDOWS_1254,
        1255 => WINDOWS_1255,
        1256 => WINDOWS_1256,
        1257 => WINDOWS_1257,
        1258 => WINDOWS_1258,
        10000 => MACINTOSH,
        20866 => KOI8_R,
        21866 => KOI8_U,
        28592 => ISO_8859_2,
        28593 => ISO_8859_3,
        28594 => ISO_8859_4,
        28595 => ISO_8859_5,
        28596 => ISO_8859_6,
        28597 => ISO_8859_7,
        28598 => ISO_8859_8,
        28603 => ISO_8859_13,
        28605 => ISO_8859_15,
        50220..=50222 => ISO_2022_JP,
        51932 => EUC_JP,
        54936 => GB18030,
        65001 => UTF_8,
        _ => return None,
    })
}

/// A module's source as libclamav's listing holds it (`vba_normalize`): outside string
/// literals, ASCII letters lower-cased and each run of blanks one space; a line ended by a
/// blank and `_` (a continuation) joined to the next. Literals are kept as written; comments
/// are not told apart (libclamav lower-cases them too).
fn normalise(source: &str) -> Vec<u8> {
    #[derive(PartialEq, Clone, Copy)]
    enum State {
        Normal,
        InString,
        Underscore,
        UnderscoreCr,
        Space,
    }
    let mut state = State::Normal;
    let mut out: Vec<u8> = Vec::with_capacity(source.len());
    for &b in source.as_bytes() {
        match b {
            b'"' => {
                state = match state {
                    State::InString => State::Normal,
                    State::Normal | State::Underscore | State::Space => State::InString,
                    other => other,
                };
                out.push(b);
            }
            b'_' => {
                if state == State::Space {
                    state = State::Underscore;
                }
                out.push(b);
            }
            b'\r' => {
                if state == State::Underscore {
                    state = State::UnderscoreCr;
                }
                out.push(b);
            }
            b'\n' => match state {
                State::Underscore => {
                    out.pop();
                    state = State::Space;
                }
                State::UnderscoreCr => {
                    out.truncate(out.len().saturating_sub(2));
                    state = State::Space;
                }
                _ => out.push(b),
            },
            b' ' | b'\t' => {
                if state != State::Space {
                    out.push(b' ');
                }
                if matches!(state, State::Normal | State::Underscore) {
                    state = State::Space;
                }
            }
            _ => {
                if matches!(state, State::Normal | State::Underscore | State::Space) {
                    out.push(b.to_ascii_lowercase());
                    state = State::Normal;
                } else {
                    out.push(b);
                }
            }
        }
    }
    out
}

/// The source of every module of every VBA project among an OLE2 file's streams (`entries`,
/// named by their paths): for each `dir` stream, the modules it lists in the same storage.
pub fn sources(entries: &[Entry], budget: &mut Budget) -> Result<Vec<Entry>, UnpackError> {
    let streams: Vec<(&str, &[u8])> = entries
        .iter()
        .filter_map(|e| match e {
            Entry::File { name, data } | Entry::Damaged { name, data, .. } => Some((name.as_str(), data.as_slice())),
            _ => None,
        })
        .collect();
    let mut out = Vec::new();
    for (name, data) in &streams {
        let (storage, leaf) = name.rsplit_once('/').unwrap_or(("", name));
        if !leaf.eq_ignore_ascii_case("dir") {
            continue;
        }
        let Some(dir) = decompress(data) else { continue };
        budget.spend(dir.len() as u64)?;
        let project = project(&dir);
        let encoding = code_page_encoding(project.code_page);
        let mut listing = Vec::new();
        for m in project.modules {
            let path = if storage.is_empty() { m.stream.clone() } else { format!("{storage}/{}", m.stream) };
            let Some((_, stream)) = streams.iter().find(|(n, _)| n.eq_ignore_ascii_case(&path)) else { continue };
            let Some(source) = stream.get(m.offset..).and_then(decompress) else { continue };
            budget.entry()?;
            budget.spend(source.len() as u64)?;
            if let Some(encoding) = encoding {
                let text = normalise(&encoding.decode_without_bom_handling(&source).0);
                budget.spend(text.len() as u64)?;
                listing.extend_from_slice(&text);
                listing.push(b'\n');
            }
            out.push(Entry::Macro { name: format!("{path} (VBA source)"), data: source });
        }
        if !listing.is_empty() {
            budget.entry()?;
            let at = if storage.is_empty() { String::new() } else { format!("{storage}/") };
            out.push(Entry::Script { name: format!("{at}dir (VBA project, normalised)"), data: listing });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of MS-OVBA 3.2.3: "#aaabcdefaaaaghijaaaaaklaaamnopqaaaaaaaaaaaarstuvwxyzaaa".
    #[test]
    fn the_specifications_example_decompresses() {
        let compressed = [
            0x01, 0x2f, 0xb0, 0x00, 0x23, 0x61, 0x61, 0x61, 0x62, 0x63, 0x64, 0x65, 0x82, 0x66, 0x00, 0x70, 0x61, 0x67,
            0x68, 0x69, 0x6a, 0x01, 0x38, 0x08, 0x61, 0x6b, 0x6c, 0x00, 0x30, 0x6d, 0x6e, 0x6f, 0x70, 0x06, 0x71, 0x02,
            0x70, 0x04, 0x10, 0x72, 0x73, 0x74, 0x75, 0x76, 0x10, 0x77, 0x78, 0x79, 0x7a, 0x00, 0x3c,
        ];
        assert_eq!(
            decompress(&compressed).unwrap(),
            b"#aaabcdefaaaaghijaaaaaklaaamnopqaaaaaaaaaaaarstuvwxyzaaa".to_vec()
        );
    }

    #[test]
    fn a_stored_chunk_and_damage_are_bounded() {
        let mut stored = vec![0x01, 0xff, 0x3f];
        stored.extend(vec![b'x'; 4096]);
        assert_eq!(decompress(&stored).unwrap().len(), 4096);
        // a copy token at the very start of a chunk refers before it
        assert_eq!(decompress(&[0x01, 0x02, 0xb0, 0x01, 0x00, 0x00]).unwrap(), b"");
        assert!(decompress(b"not a container").is_none());
        // chunks each giving 4 KiB from a few bytes stop at the output bound
        let mut bomb = vec![0x01];
        for _ in 0..10_000 {
            // 'a', then copy tokens of the longest length until 4096
            bomb.extend([0x04, 0xb0, 0xfe, b'a', 0xff, 0x0f, 0xff, 0x0f]);
        }
        let out = decompress(&bomb).unwrap();
        assert!(out.len() <= MAX_OUTPUT + 4096, "{}", out.len());
    }

    #[test]
    fn the_modules_of_a_dir_stream() {
        let rec = |id: u16, data: &[u8]| {
            let mut r = id.to_le_bytes().to_vec();
            r.extend((data.len() as u32).to_le_bytes());
            r.extend(data);
            r
        };
        let mut dir = rec(0x0001, &[0, 0, 0, 0]);
        dir.extend([0x09, 0x00, 0x04, 0x00, 0x00, 0x00, 1, 2, 3, 4, 5, 6]); // PROJECTVERSION: 6 bytes
        dir.extend(rec(0x0019, b"Module1"));
        dir.extend(rec(0x001a, b"Module1"));
        dir.extend(rec(0x0032, &[b'M', 0, b'o', 0, b'd', 0, b'1', 0]));
        dir.extend(rec(0x0031, &1234u32.to_le_bytes()));
        dir.extend(rec(0x002b, &[]));
        dir.extend(rec(0x0010, &[]));
        assert_eq!(
            project(&dir),
            Project { code_page: 28591, modules: vec![Module { stream: "Mod1".into(), offset: 1234 }] }
        );
        dir.splice(0..0, rec(0x0003, &932u16.to_le_bytes()));
        assert_eq!(project(&dir).code_page, 932);
    }

    /// `vba_normalize`'s rules, each on its own line: case and blanks outside literals, a
    /// literal kept, a continued line joined (with LF and with CRLF), a lone `_` kept.
    #[test]
    fn sources_are_normalised_as_libclamav_normalises_them() {
        let cases: [(&str, &str); 7] = [
            ("Sub AutoOpen()", "sub autoopen()"),
            ("  Shell   \"CMD.EXE /C Start\"  ,\tvbHide", " shell \"CMD.EXE /C Start\" , vbhide"),
            ("x = \"A\" & \"B\"", "x = \"A\" & \"B\""),
            ("a = b _\nOr C", "a = b or c"),
            ("a = b _\r\nOr C", "a = b or c"),
            ("my_Name = 1", "my_name = 1"),
            ("' Comment KEPT? no: lower", "' comment kept? no: lower"),
        ];
        for (source, want) in cases {
            assert_eq!(String::from_utf8(normalise(source)).unwrap(), want, "{source:?}");
        }
    }

    /// A Japanese project (code page 932): the listing is UTF-8, its literal kept.
    #[test]
    fn a_shift_jis_source_is_listed_in_utf8() {
        let (sjis, _, _) = encoding_rs::SHIFT_JIS.encode("MsgBox \"請求書を開いてください\"");
        let text = code_page_encoding(932).unwrap().decode_without_bom_handling(&sjis).0;
        assert_eq!(String::from_utf8(normalise(&text)).unwrap(), "msgbox \"請求書を開いてください\"");
        assert!(code_page_encoding(0).is_none(), "LibreOffice's code page 0 is none libclamav reads");
    }
}
