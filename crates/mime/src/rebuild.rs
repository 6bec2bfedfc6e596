//! Rebuilding a message with one part removed or replaced; everything else byte-identical.

use crate::tree::Part;

/// The message without `part` (a part of a multipart: its delimiter line goes with it).
pub fn remove_part(raw: &[u8], part: &Part) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    out.extend_from_slice(&raw[..part.outer.start]);
    out.extend_from_slice(&raw[part.outer.end..]);
    out
}

/// The message with `part` (its headers and body) replaced by `replacement`, which must be a
/// complete part: header fields, an empty line, a body.
pub fn replace_part(raw: &[u8], part: &Part, replacement: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + replacement.len());
    out.extend_from_slice(&raw[..part.header.start]);
    out.extend_from_slice(replacement);
    out.extend_from_slice(&raw[part.body.end..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::parse;

    const MSG: &[u8] = b"Content-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\nkeep me\r\n--XX\r\nContent-Type: application/zip; name=bad.zip\r\n\r\nBAD\r\n--XX\r\nContent-Type: text/plain\r\n\r\nkeep me too\r\n--XX--\r\n";

    #[test]
    fn remove_middle_part() {
        let m = parse(MSG);
        let out = remove_part(MSG, &m.root.children[1]);
        let again = parse(&out);
        assert_eq!(again.root.children.len(), 2);
        assert_eq!(&out[again.root.children[0].body.clone()], b"keep me");
        assert_eq!(&out[again.root.children[1].body.clone()], b"keep me too");
        assert!(!out.windows(3).any(|w| w == b"BAD"));
    }

    #[test]
    fn remove_first_and_last_parts() {
        let m = parse(MSG);
        for k in [0, 2] {
            let out = remove_part(MSG, &m.root.children[k]);
            let again = parse(&out);
            assert_eq!(again.root.children.len(), 2, "{}", String::from_utf8_lossy(&out));
        }
    }

    #[test]
    fn replace_part_keeps_the_rest() {
        let m = parse(MSG);
        let notice = b"Content-Type: text/plain; charset=utf-8\r\n\r\nremoved bad.zip";
        let out = replace_part(MSG, &m.root.children[1], notice);
        let again = parse(&out);
        assert_eq!(again.root.children.len(), 3);
        assert_eq!(&out[again.root.children[1].body.clone()], b"removed bad.zip");
        let p0 = &m.root.children[0];
        assert_eq!(&out[..p0.body.end], &MSG[..p0.body.end], "bytes before are identical");
    }
}
