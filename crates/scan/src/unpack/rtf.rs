//! RTF documents' embedded objects (`{\object … {\*\objdata 0105…}}`): the hexadecimal data of
//! each `\objdata` group decoded into an OLE1 object — version, format, class name, topic and
//! item, then the native data — whose native data is the member: for the `Package` class (a
//! file packaged by the Object Packager, how `clam.exe.rtf` and many droppers carry an
//! executable) the packaged file itself ([`ole10native`]), for other classes (an OLE2
//! document, an equation) the native data as it is. Decoding is charged to the budget.

use super::{Entry, UnpackError};
use crate::limits::Budget;
use crate::verdict::Unreadable;

/// How an RTF file starts.
pub const MAGIC: &[u8] = b"{\\rtf";

pub fn unpack(data: &[u8], budget: &mut Budget) -> Result<Vec<Entry>, UnpackError> {
    let mut entries = Vec::new();
    let mut from = 0;
    let mut n = 0;
    while let Some(at) = memchr::memmem::find(&data[from..], b"\\objdata") {
        let start = from + at + b"\\objdata".len();
        let (hex, end) = hex_group(&data[start..]);
        from = start + end;
        if hex.is_empty() {
            continue;
        }
        n += 1;
        budget.entry()?;
        budget.spend(hex.len() as u64)?;
        entries.push(object(n, hex));
    }
    Ok(entries)
}

/// The bytes of the hexadecimal digits from `text` to the brace that closes the group (white
/// space and nested groups' control words skipped), and where that brace is.
fn hex_group(text: &[u8]) -> (Vec<u8>, usize) {
    let mut out = Vec::with_capacity(text.len() / 2);
    let mut depth = 0usize;
    let mut high: Option<u8> = None;
    let mut i = 0;
    while i < text.len() {
        let c = text[i];
        match c {
            b'{' => depth += 1,
            b'}' if depth == 0 => return (out, i + 1),
            b'}' => depth -= 1,
            b'\\' => {
                // a control word or symbol: skipped with its parameter
                i += 1;
                while i < text.len() && (text[i].is_ascii_alphabetic()) {
                    i += 1;
                }
                while i < text.len() && (text[i].is_ascii_digit() || text[i] == b'-') {
                    i += 1;
                }
                continue;
            }
            _ => {
                if let Some(v) = (c as char).to_digit(16) {
                    match high.take() {
                        Some(h) => out.push(h << 4 | v as u8),
                        None => high = Some(v as u8),
                    }
                }
            }
        }
        i += 1;
    }
    (out, text.len())
}

/// One decoded `\objdata`: its member.
fn object(n: usize, raw: Vec<u8>) -> Entry {
    let name = format!("RTF object {n}");
    let damaged = |name: String, data: Vec<u8>, why: &str| {
        if data.is_empty() {
            Entry::Broken { name, why: Unreadable::damaged("RTF", why.to_string()) }
        } else {
            Entry::Damaged { name, data, why: Unreadable::damaged("RTF", why.to_string()).to_string() }
        }
    };
    let Some((class, native)) = ole1(&raw) else {
        // not an OLE1 object: its bytes are scanned as they are
        return damaged(name, raw, "not an OLE1 object");
    };
    let name = format!("{name} ({class})");
    if class.eq_ignore_ascii_case("Package")
        && let Some((file, data)) = ole10native(native, false)
    {
        return Entry::File { name: format!("{name} › {file}"), data: data.to_vec() };
    }
    Entry::File { name, data: native.to_vec() }
}

/// An OLE1 object (MS-OLEDS 2.2.4, `EmbeddedObject`): its class name and native data.
fn ole1(d: &[u8]) -> Option<(String, &[u8])> {
    let mut r = Reader(d);
    let _version = r.u32()?;
    let format = r.u32()?;
    if format != 2 {
        return None; // 1 is a link, not an embedded object
    }
    let class = r.counted()?;
    let _topic = r.counted()?;
    let _item = r.counted()?;
    let size = r.u32()? as usize;
    let native = r.0.get(..size.min(r.0.len()))?;
    Some((String::from_utf8_lossy(class).trim_end_matches('\0').to_string(), native))
}

/// The file packaged in an Object Packager's native data (the `Package` class; in an OLE2
/// document, the `\x01Ole10Native` stream, which starts with its size — `sized`): its name and
/// bytes.
pub fn ole10native(d: &[u8], sized: bool) -> Option<(String, &[u8])> {
    let mut r = Reader(d);
    if sized {
        r.u32()?;
    }
    let _flags = r.u16()?;
    let label = r.cstr()?;
    let _source = r.cstr()?;
    let _ = r.u32()?;
    let _ = r.u32()?;
    let _temp = r.cstr()?;
    let size = r.u32()? as usize;
    let data = r.0.get(..size.min(r.0.len()))?;
    Some((super::text_name(label), data))
}

/// Little-endian fields from the front of a slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (a, b) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = b;
        Some(a)
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// A string preceded by its length (terminating zero included).
    fn counted(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    /// A zero-terminated string (at most 4 KiB).
    fn cstr(&mut self) -> Option<&'a [u8]> {
        let n = memchr::memchr(0, &self.0[..self.0.len().min(4096)])?;
        let s = self.take(n)?;
        self.take(1)?;
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;

    /// An RTF document with a file packaged as `name`, written as Word writes it.
    pub(crate) fn rtf_with_package(name: &str, file: &[u8]) -> Vec<u8> {
        let mut native = 2u16.to_le_bytes().to_vec();
        for s in [name, &format!("C:\\Users\\a\\{name}")] {
            native.extend_from_slice(s.as_bytes());
            native.push(0);
        }
        native.extend_from_slice(&[0, 0, 3, 0]);
        native.extend_from_slice(&((name.len() + 10) as u32).to_le_bytes());
        native.extend_from_slice(format!("C:\\Temp\\{name}\0").as_bytes());
        native.extend_from_slice(&(file.len() as u32).to_le_bytes());
        native.extend_from_slice(file);
        let mut obj = 0x0501u32.to_le_bytes().to_vec();
        obj.extend_from_slice(&2u32.to_le_bytes());
        for s in ["Package\0", "\0", "\0"] {
            obj.extend_from_slice(&(s.len() as u32).to_le_bytes());
            obj.extend_from_slice(s.as_bytes());
        }
        obj.extend_from_slice(&(native.len() as u32).to_le_bytes());
        obj.extend_from_slice(&native);
        let hex: String = obj.iter().map(|b| format!("{b:02x}")).collect();
        let lines: Vec<&str> = hex.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
        format!(
            "{{\\rtf1\\ansi{{\\fonttbl{{\\f0 Times;}}}}\\pard Hello {{\\object\\objemb{{\\*\\objclass Package}}\\objw1\\objh1\
             {{\\*\\objdata \r\n{}\r\n}}{{\\result {{\\pict}}}}}}\\par}}",
            lines.join("\r\n")
        )
        .into_bytes()
    }

    #[test]
    fn a_packaged_file_is_the_member_and_other_objects_are_their_native_data() {
        let file = b"MZ this is the packaged program".to_vec();
        let doc = rtf_with_package("invoice.exe", &file);
        let e = unpack(&doc, &mut Budget::new(Limits::default())).unwrap();
        assert!(
            matches!(&e[..], [Entry::File { name, data }] if name == "RTF object 1 (Package) › invoice.exe" && *data == file),
            "{e:?}"
        );
        // not OLE1: scanned as they are, marked damaged
        let e = unpack(b"{\\rtf1{\\*\\objdata 4d5a9000}}", &mut Budget::new(Limits::default())).unwrap();
        assert!(matches!(&e[..], [Entry::Damaged { data, .. }] if data == b"MZ\x90\x00"), "{e:?}");
        // a document without objects has no members
        assert!(unpack(b"{\\rtf1 hello}", &mut Budget::new(Limits::default())).unwrap().is_empty());
    }
}
