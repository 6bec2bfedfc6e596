//! PDF streams: each `stream … endstream` of the file (object streams, page contents, fonts,
//! embedded files — how `clam.pdf` carries an executable — and scripts) is a member, decoded
//! through its filters where we have them: `FlateDecode` (zlib, or raw deflate as some writers
//! make it), `ASCIIHexDecode`, `ASCII85Decode`, `RunLengthDecode`; a stream with another filter
//! (images: `DCTDecode`, `JPXDecode`; `LZWDecode`, `CCITTFaxDecode`) is scanned as it is stored.
//! The stream's end is its `/Length` when that is a number and `endstream` follows it, else the
//! next `endstream`. Decoding is charged to the scan's budget and to its ratio limit.

use super::{Entry, ReadError, UnpackError};
use crate::limits::Budget;

pub fn unpack(data: &[u8], budget: &mut Budget) -> Result<Vec<Entry>, UnpackError> {
    let mut entries = Vec::new();
    let mut from = 0;
    while let Some(at) = memchr::memmem::find(&data[from..], b"stream") {
        let kw = from + at;
        from = kw + 6;
        // `stream` after a dictionary (not `endstream`), then an end of line
        let before = &data[..kw];
        let dict_end = before.iter().rposition(|b| !b.is_ascii_whitespace());
        if dict_end.is_none_or(|i| i < 1 || &data[i - 1..=i] != b">>") || before.ends_with(b"end") {
            continue;
        }
        let mut start = kw + 6;
        if data.get(start) == Some(&b'\r') {
            start += 1;
        }
        if data.get(start) == Some(&b'\n') {
            start += 1;
        }
        // every stream counts, empty or not: a file of a million `>>stream` costs its entries
        budget.entry()?;
        budget.check_time()?;
        let (dict_start, dict) = dictionary(data, dict_end.unwrap_or(0));
        let end = stream_end(data, start, &dict);
        from = end.max(start);
        let raw = &data[start..end];
        if raw.is_empty() {
            continue;
        }
        let object =
            object_number(&data[..dict_start]).map_or_else(|| format!("stream at {kw}"), |n| format!("object {n}"));
        let name = match (filters(&dict).is_empty(), dict_has(&dict, b"/EmbeddedFile")) {
            (_, true) => format!("{object} (embedded file)"),
            _ => object,
        };
        let decoded = decode(raw, &filters(&dict), budget);
        entries.push(super::member(name, "PDF", decoded)?);
    }
    // scripts given as strings (`/JS (…)` or `/JS <…>`), de-escaped as a reader reads them;
    // a script in a stream (`/JS 12 0 R`) is that stream, decoded above
    let finder = memchr::memmem::Finder::new(b"/JS");
    let mut from = 0;
    while let Some(at) = finder.find(&data[from..]) {
        let start = from + at + 3;
        from = start;
        let rest = &data[start..];
        let skip = rest.iter().take_while(|c| c.is_ascii_whitespace()).count();
        let script = match rest.get(skip) {
            Some(b'(') => literal_string(&rest[skip + 1..]),
            Some(b'<') if rest.get(skip + 1) != Some(&b'<') => hex(&rest[skip + 1..]),
            _ => continue,
        };
        if script.is_empty() {
            continue;
        }
        budget.entry()?;
        budget.check_time()?;
        budget.spend(script.len() as u64)?;
        entries.push(Entry::File { name: format!("JavaScript at {}", start - 3), data: script });
    }
    Ok(entries)
}

/// A literal string's bytes (after its `(`) as a reader takes them: balanced parentheses kept,
/// `\n \r \t \b \f \( \) \\`, octal `\ddd`, a backslash before a line end removed.
fn literal_string(d: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut depth = 1usize;
    let mut i = 0;
    while i < d.len() {
        let c = d[i];
        i += 1;
        match c {
            b'(' => {
                depth += 1;
                out.push(c);
            }
            b')' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
                out.push(c);
            }
            b'\\' => {
                let Some(&e) = d.get(i) else { break };
                i += 1;
                match e {
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'b' => out.push(8),
                    b'f' => out.push(12),
                    b'0'..=b'7' => {
                        let mut v = u32::from(e - b'0');
                        for _ in 0..2 {
                            match d.get(i) {
                                Some(&o @ b'0'..=b'7') => {
                                    v = v * 8 + u32::from(o - b'0');
                                    i += 1;
                                }
                                _ => break,
                            }
                        }
                        out.push(v as u8);
                    }
                    b'\r' => {
                        if d.get(i) == Some(&b'\n') {
                            i += 1;
                        }
                    }
                    b'\n' => {}
                    other => out.push(other),
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// The dictionary whose `>>` ends at `close`: where it starts (its matching `<<`, nesting
/// counted back at most 64 KiB) and its bytes; empty, starting at `close`, when there is none.
fn dictionary(data: &[u8], close: usize) -> (usize, Vec<u8>) {
    let mut depth = 0i32;
    let mut i = close + 1;
    while i >= 2 && close.saturating_sub(i) <= 64 * 1024 {
        i -= 1;
        match &data[i - 1..=i] {
            b">>" => {
                depth += 1;
                i -= 1;
            }
            b"<<" => {
                depth -= 1;
                if depth == 0 {
                    return (i - 1, data[i - 1..=close].to_vec());
                }
                i -= 1;
            }
            _ => {}
        }
    }
    (close, Vec::new())
}

fn dict_has(dict: &[u8], name: &[u8]) -> bool {
    memchr::memmem::find(dict, name)
        .is_some_and(|i| dict.get(i + name.len()).is_none_or(|c| !c.is_ascii_alphanumeric()))
}

/// The filters named in `/Filter` (a name or an array of names), in order.
fn filters(dict: &[u8]) -> Vec<String> {
    let Some(at) = memchr::memmem::find(dict, b"/Filter") else { return Vec::new() };
    let rest = &dict[at + 7..];
    let rest = &rest[rest.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(rest.len())..];
    let text = if rest.first() == Some(&b'[') {
        &rest[1..rest.iter().position(|&b| b == b']').unwrap_or(rest.len())]
    } else {
        let end = rest
            .iter()
            .skip(1)
            .position(|&b| b == b'/' || b == b'>' || b.is_ascii_whitespace())
            .map_or(rest.len(), |p| p + 1);
        &rest[..end]
    };
    text.split(|&b| b == b'/')
        .map(|n| String::from_utf8_lossy(n).trim().to_string())
        .filter(|n| !n.is_empty())
        .collect()
}

/// The end of a stream's data starting at `start`.
fn stream_end(data: &[u8], start: usize, dict: &[u8]) -> usize {
    let next = memchr::memmem::find(&data[start..], b"endstream").map_or(data.len(), |i| start + i);
    let declared = memchr::memmem::find(dict, b"/Length").and_then(|i| {
        let rest = std::str::from_utf8(&dict[i + 7..]).ok()?;
        let mut words = rest.split_whitespace();
        let n: usize = words.next()?.trim_end_matches(['/', '>']).parse().ok()?;
        // `/Length 13 0 R` is a reference, not a number
        if words.nth(1).is_some_and(|w| w.starts_with('R')) {
            return None;
        }
        Some(n)
    });
    match declared {
        Some(n) if start.checked_add(n).is_some_and(|e| e <= next) => {
            let e = start + n;
            // trust it only when `endstream` follows (after an end of line)
            if data[e..next].iter().all(u8::is_ascii_whitespace) { e } else { trim_eol(data, start, next) }
        }
        _ => trim_eol(data, start, next),
    }
}

/// `next` without the end of line before `endstream`.
fn trim_eol(data: &[u8], start: usize, mut next: usize) -> usize {
    if next > start && data[next - 1] == b'\n' {
        next -= 1;
    }
    if next > start && data[next - 1] == b'\r' {
        next -= 1;
    }
    next
}

/// The number of the object whose dictionary starts where `before` ends (`12 0 obj` just
/// before it).
fn object_number(before: &[u8]) -> Option<u64> {
    let head = String::from_utf8_lossy(&before[before.len().saturating_sub(32)..]);
    let mut words = head.split_whitespace().rev();
    (words.next()? == "obj").then_some(())?;
    words.nth(1)?.parse().ok()
}

/// `raw` through `filters`; a filter we do not have leaves the bytes as they are from there.
fn decode(raw: &[u8], filters: &[String], budget: &mut Budget) -> Result<Vec<u8>, ReadError> {
    let mut data = raw.to_vec();
    let packed = raw.len() as u64;
    let mut charged = false;
    for f in filters {
        data = match f.as_str() {
            "FlateDecode" | "Fl" => {
                let z = super::read_bounded(flate2::read::ZlibDecoder::new(&data[..]), budget, Some(packed));
                charged = true;
                match z {
                    Ok(v) => v,
                    Err(ReadError::Io { partial, .. }) if partial.is_empty() => {
                        super::read_bounded(flate2::read::DeflateDecoder::new(&data[..]), budget, Some(packed))?
                    }
                    Err(e) => return Err(e),
                }
            }
            "ASCIIHexDecode" | "AHx" => hex(&data),
            "ASCII85Decode" | "A85" => ascii85(&data),
            "RunLengthDecode" | "RL" => {
                charged = true;
                run_length(&data, budget)?
            }
            "LZWDecode" | "LZW" => {
                charged = true;
                lzw(&data, budget)?
            }
            _ => break,
        };
    }
    if !charged {
        budget.spend(data.len() as u64)?;
    }
    Ok(data)
}

fn hex(d: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(d.len() / 2);
    let mut high = None;
    for &c in d {
        if c == b'>' {
            break;
        }
        let Some(v) = (c as char).to_digit(16) else { continue };
        match high.take() {
            Some(h) => out.push((h << 4 | v) as u8),
            None => high = Some(v),
        }
    }
    if let Some(h) = high {
        out.push((h << 4) as u8);
    }
    out
}

fn ascii85(d: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(d.len() * 4 / 5);
    let (mut group, mut n) = (0u64, 0);
    let text = d.strip_prefix(b"<~").unwrap_or(d);
    for &c in text {
        match c {
            b'~' => break,
            b'z' if n == 0 => out.extend_from_slice(&[0; 4]),
            b'!'..=b'u' => {
                group = group * 85 + u64::from(c - b'!');
                n += 1;
                if n == 5 {
                    out.extend_from_slice(&(group as u32).to_be_bytes());
                    group = 0;
                    n = 0;
                }
            }
            _ => {}
        }
    }
    if n > 1 {
        for _ in n..5 {
            group = group * 85 + 84;
        }
        out.extend_from_slice(&(group as u32).to_be_bytes()[..n - 1]);
    }
    out
}

/// LZWDecode (9 to 12-bit codes, most significant bit first, 256 clears the table, 257 ends;
/// the code width grows one code early, PDF's default `EarlyChange`); a code not yet defined
/// ends it. Charged as it grows.
fn lzw(d: &[u8], budget: &mut Budget) -> Result<Vec<u8>, ReadError> {
    // codes from 258: the code of their string but the last byte, and that byte
    let mut prefix: Vec<u16> = Vec::with_capacity(3838);
    let mut suffix: Vec<u8> = Vec::with_capacity(3838);
    let mut out: Vec<u8> = Vec::new();
    let mut string: Vec<u8> = Vec::with_capacity(4096);
    let (mut acc, mut nbits, mut width) = (0u32, 0u32, 9u32);
    let mut prev: Option<u16> = None;
    let mut charged = 0usize;
    // the bytes of `code`'s string, into `string`
    let spell = |code: u16, prefix: &[u16], suffix: &[u8], string: &mut Vec<u8>| {
        string.clear();
        let mut k = code;
        while k >= 258 {
            string.push(suffix[usize::from(k - 258)]);
            k = prefix[usize::from(k - 258)];
        }
        string.push(k as u8);
        string.reverse();
    };
    'input: for &byte in d {
        acc = (acc << 8) | u32::from(byte);
        nbits += 8;
        while nbits >= width {
            let code = ((acc >> (nbits - width)) & ((1 << width) - 1)) as u16;
            nbits -= width;
            let next = prefix.len() as u16 + 258;
            match (code, prev) {
                (256, _) => {
                    prefix.clear();
                    suffix.clear();
                    width = 9;
                    prev = None;
                    continue;
                }
                (257, _) => break 'input,
                (c, _) if c < 256 || c < next => spell(c, &prefix, &suffix, &mut string),
                // the string being defined: the previous one and its own first byte
                (c, Some(p)) if c == next => {
                    spell(p, &prefix, &suffix, &mut string);
                    string.push(string[0]);
                }
                _ => break 'input,
            }
            if let Some(p) = prev
                && next < 4096
            {
                prefix.push(p);
                suffix.push(string[0]);
                if u32::from(next) + 2 >= 1 << width && width < 12 {
                    width += 1;
                }
            }
            prev = Some(code);
            out.extend_from_slice(&string);
            if out.len() - charged >= 64 * 1024 {
                budget.spend((out.len() - charged) as u64)?;
                charged = out.len();
            }
        }
    }
    budget.spend((out.len() - charged) as u64)?;
    Ok(out)
}

fn run_length(d: &[u8], budget: &mut Budget) -> Result<Vec<u8>, ReadError> {
    let mut out = Vec::with_capacity(d.len());
    let mut i = 0;
    while i < d.len() {
        let n = d[i];
        i += 1;
        match n {
            128 => break,
            0..=127 => {
                let take = (usize::from(n) + 1).min(d.len() - i);
                out.extend_from_slice(&d[i..i + take]);
                i += take;
            }
            _ => {
                let Some(&b) = d.get(i) else { break };
                i += 1;
                out.extend(std::iter::repeat_n(b, 257 - usize::from(n)));
            }
        }
        if out.len() % (64 * 1024) < 130 {
            budget.spend(0)?;
        }
    }
    budget.spend(out.len() as u64)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;

    fn pdf(objects: &[(&str, &[u8])]) -> Vec<u8> {
        let mut v = b"%PDF-1.4\n".to_vec();
        for (i, (dict, data)) in objects.iter().enumerate() {
            v.extend_from_slice(format!("{} 0 obj\n<< {dict} /Length {} >>\nstream\r\n", i + 1, data.len()).as_bytes());
            v.extend_from_slice(data);
            v.extend_from_slice(b"\r\nendstream\nendobj\n");
        }
        v.extend_from_slice(b"trailer\n<< /Root 1 0 R >>\n%%EOF\n");
        v
    }

    fn files(e: &[Entry]) -> Vec<(String, Vec<u8>)> {
        e.iter()
            .map(|e| match e {
                Entry::File { name, data } => (name.clone(), data.clone()),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn streams_are_decoded_through_their_filters() {
        let text = b"BT /F1 12 Tf (hello) Tj ET".repeat(20);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut z, &text).unwrap();
        let zipped = z.finish().unwrap();
        let hexed: String = text.iter().map(|b| format!("{b:02X}")).collect::<String>() + ">";
        let doc = pdf(&[
            ("/Filter /FlateDecode", &zipped),
            ("/Filter [/ASCIIHexDecode]", hexed.as_bytes()),
            ("/Type /EmbeddedFile", b"MZ raw embedded"),
            ("/Filter /ASCII85Decode", b"<~87cURD]i,\"Ebo80~>"),
            ("/Filter /DCTDecode", b"\xff\xd8\xff jpeg"),
        ]);
        let e = unpack(&doc, &mut Budget::new(Limits::default())).unwrap();
        let got = files(&e);
        assert_eq!(got.len(), 5, "{got:?}");
        assert_eq!(got[0], ("object 1".to_string(), text.clone()));
        assert_eq!(got[1].1, text);
        assert_eq!(got[2], ("object 3 (embedded file)".to_string(), b"MZ raw embedded".to_vec()));
        assert_eq!(got[3].1, b"Hello World!");
        assert_eq!(got[4].1, b"\xff\xd8\xff jpeg");
    }

    #[test]
    fn an_inflating_stream_is_stopped_by_the_limits() {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut z, &vec![0u8; 20 << 20]).unwrap();
        let bomb = z.finish().unwrap();
        let doc = pdf(&[("/Filter /FlateDecode", &bomb)]);
        let limits = Limits { max_expanded: 4 << 20, ..Limits::default() };
        let r = unpack(&doc, &mut Budget::new(limits));
        assert!(matches!(r, Err(UnpackError::Limit(_))), "{:?}", r.map(|e| e.len()));
    }
}

#[cfg(test)]
mod js_tests {
    use super::*;
    use crate::limits::Limits;

    #[test]
    fn scripts_in_strings_are_de_escaped() {
        assert_eq!(
            literal_string(
                br"a\(b\) (nested) \\ \101\102C\
d) after"
            ),
            b"a(b) (nested) \\ ABCd".to_vec()
        );
        let doc = b"%PDF-1.4\n1 0 obj\n<< /S /JavaScript /JS (app.alert\\(\\101\\)) >>\nendobj\n2 0 obj << /JS <6869> >> endobj\n3 0 obj << /JS 4 0 R >> endobj\n";
        let e = unpack(doc, &mut Budget::new(Limits::default())).unwrap();
        let scripts: Vec<Vec<u8>> = e
            .into_iter()
            .filter_map(|e| match e {
                Entry::File { name, data } if name.starts_with("JavaScript") => Some(data),
                _ => None,
            })
            .collect();
        assert_eq!(scripts, vec![b"app.alert(A)".to_vec(), b"hi".to_vec()]);
    }

    /// EICAR written into a script string with the escapes a PDF writer uses before `\`, `(`
    /// and `)`: not in the file's bytes, found in the script.
    #[test]
    fn a_script_string_is_scanned() {
        let escaped = br"X5O!P%@AP[4\\PZX54\(P^\)7CC\)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
        let mut doc = b"%PDF-1.4\n1 0 obj\n<< /S /JavaScript /JS (var s = '".to_vec();
        doc.extend_from_slice(escaped);
        doc.extend_from_slice(b"';) >>\nendobj\ntrailer << /Root 1 0 R >>\n%%EOF\n");
        assert!(memchr::memmem::find(&doc, b"EICAR-STANDARD").is_some());
        assert!(memchr::memmem::find(&doc, b"PZX54(P^)7CC)7}").is_none(), "escaped in the file");
        let engine = crate::Engine::new(std::sync::Arc::new(crate::Signatures::builtin()), Limits::default());
        let r = engine.scan_bytes("js.pdf", &doc);
        let found: Vec<String> =
            r.root.findings().into_iter().map(|(p, l)| format!("{p}: {}", l.verdict.label())).collect();
        assert_eq!(found, ["js.pdf › JavaScript at 35: Eicar-Test-Signature FOUND"]);
    }
}

#[cfg(test)]
mod lzw_tests {
    use super::*;
    use crate::limits::Limits;

    /// The example of the PDF reference (7.4.4.2): "-----A---B" is the codes 256 45 258 258
    /// 65 259 66 257.
    #[test]
    fn the_references_example_decodes() {
        let coded = [0x80, 0x0b, 0x60, 0x50, 0x22, 0x0c, 0x0c, 0x85, 0x01];
        assert_eq!(lzw(&coded, &mut Budget::new(Limits::default())).unwrap(), b"-----A---B");
    }

    /// A long run grows the codes to 12 bits and past a full table: 200,000 bytes from a few
    /// thousand codes, charged to the budget (and stopped by it).
    #[test]
    fn long_streams_and_their_budget() {
        // codes for "aaaa…": 97, then 258, 259, 260 … each one longer (the string being defined)
        let mut codes = vec![256u16, 97];
        let mut next = 258u16;
        let mut total = 1usize;
        while total < 200_000 && next < 4095 {
            codes.push(next);
            total += usize::from(next - 256);
            next += 1;
        }
        codes.push(257);
        let mut bits = Vec::new();
        let (mut acc, mut n, mut width, mut defined) = (0u64, 0u32, 9u32, 258u32);
        for (i, &c) in codes.iter().enumerate() {
            acc = (acc << width) | u64::from(c);
            n += width;
            while n >= 8 {
                bits.push((acc >> (n - 8)) as u8);
                n -= 8;
            }
            if i >= 2 {
                defined += 1;
                if defined + 1 >= 1 << width && width < 12 {
                    width += 1;
                }
            }
        }
        if n > 0 {
            bits.push((acc << (8 - n)) as u8);
        }
        let out = lzw(&bits, &mut Budget::new(Limits::default())).unwrap();
        assert!(out.len() >= 200_000 && out.iter().all(|&b| b == b'a'), "{}", out.len());
        let r = lzw(&bits, &mut Budget::new(Limits { max_expanded: 100_000, ..Limits::default() }));
        assert!(matches!(r, Err(ReadError::Limit(_))));
        // garbage: a code not yet defined ends it, no panic
        assert!(lzw(&[0xff; 64], &mut Budget::new(Limits::default())).unwrap().len() < 64 * 8);
    }
}

#[cfg(test)]
mod hostile {
    use super::*;
    use crate::limits::Limits;

    /// Hundreds of thousands of empty or unmatched streams end at the entry limit, quickly.
    #[test]
    fn a_million_streams_cost_their_entries_not_quadratic_time() {
        let doc = [b"%PDF-1.4\n".to_vec(), b">>stream\nendstream\n".repeat(300_000)].concat();
        let t = std::time::Instant::now();
        let r = unpack(&doc, &mut Budget::new(Limits::default()));
        assert!(matches!(r, Err(UnpackError::Limit(_))), "{:?}", r.map(|e| e.len()));
        // the entry limit stops it after 10,000 streams (each looks back at most 64 KiB for its
        // dictionary: 3-4 s in a debug build on a loaded machine); uncharged, the 300,000
        // streams took minutes — the bound only tells those apart, it measures no speed
        assert!(t.elapsed() < std::time::Duration::from_secs(60), "{:?}", t.elapsed());
    }
}
