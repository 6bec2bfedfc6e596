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

/// The message made 7-bit for a next hop without 8BITMIME (RFC 6152 §3): every leaf part
/// whose body holds 8-bit bytes under an identity transfer encoding (none, `7bit`, `8bit`,
/// `binary`) is re-encoded — quoted-printable for text, base64 otherwise — with its other
/// header fields and everything else unchanged. `None` if nothing needs it. Header sections
/// with 8-bit bytes are left as they are: only SMTPUTF8 carries those properly.
pub fn to_seven_bit(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.is_ascii() {
        return None;
    }
    let msg = crate::tree::parse(raw);
    let mut edits: Vec<(std::ops::Range<usize>, Vec<u8>)> = Vec::new();
    for (path, part) in msg.root.walk() {
        let body = &raw[part.body.clone()];
        let identity = part.encoding.decodes_as() == crate::TransferEncoding::Identity;
        if part.kind != crate::PartKind::Leaf || !identity || body.is_ascii() {
            continue;
        }
        let (cte, encoded) = if part.content_type.starts_with("text/") {
            ("quoted-printable", crate::encode::quoted_printable(body))
        } else {
            ("base64", crate::encode::base64_lines(body))
        };
        let mut header = Vec::with_capacity(part.body.start - part.header.start + 64);
        let mut dropping = false;
        let section = &raw[part.header.start..part.body.start];
        for line in section.split_inclusive(|&b| b == b'\n') {
            let content = line.strip_suffix(b"\n").map(|l| l.strip_suffix(b"\r").unwrap_or(l)).unwrap_or(line);
            if content.is_empty() {
                break;
            }
            if !(content[0] == b' ' || content[0] == b'\t') {
                let name = content.split(|&b| b == b':').next().unwrap_or_default();
                dropping = name.trim_ascii().eq_ignore_ascii_case(b"content-transfer-encoding");
            }
            if !dropping {
                header.extend_from_slice(line);
                if !line.ends_with(b"\n") {
                    header.extend_from_slice(b"\r\n");
                }
            }
        }
        let has_mime_version = part.headers.iter().any(|h| h.name.eq_ignore_ascii_case("mime-version"));
        if path.is_empty() && !has_mime_version {
            header.extend_from_slice(b"MIME-Version: 1.0\r\n");
        }
        header.extend_from_slice(format!("Content-Transfer-Encoding: {cte}\r\n\r\n").as_bytes());
        header.extend_from_slice(encoded.as_bytes());
        if !encoded.ends_with("\r\n") && raw.get(part.body.end) != Some(&b'\r') {
            header.extend_from_slice(b"\r\n");
        }
        edits.push((part.header.start..part.body.end, header));
    }
    if edits.is_empty() {
        return None;
    }
    edits.sort_by_key(|(r, _)| r.start);
    Some(apply_edits(raw, edits))
}

/// `raw` with each range replaced by its bytes; the ranges must be sorted and must not
/// overlap.
pub fn apply_edits(raw: &[u8], edits: Vec<(std::ops::Range<usize>, Vec<u8>)>) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + edits.iter().map(|(_, r)| r.len()).sum::<usize>());
    let mut at = 0;
    for (range, replacement) in edits {
        out.extend_from_slice(&raw[at..range.start]);
        out.extend_from_slice(&replacement);
        at = range.end;
    }
    out.extend_from_slice(&raw[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::parse;

    #[test]
    fn eight_bit_parts_are_made_seven_bit() {
        let msg = "Subject: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nこんにちは\r\n--b\r\nContent-Type: application/octet-stream\r\n\r\n\u{7f}\u{ff}bin\r\n--b\r\nContent-Type: text/plain\r\n\r\nascii stays\r\n--b--\r\n";
        let raw = msg.as_bytes();
        let out = to_seven_bit(raw).unwrap();
        assert!(out.is_ascii(), "{}", String::from_utf8_lossy(&out));
        let (before, after) = (parse(raw), parse(&out));
        for (a, b) in before.root.children.iter().zip(&after.root.children) {
            assert_eq!(a.decoded_body(raw), b.decoded_body(&out));
            assert_eq!(a.content_type, b.content_type);
        }
        assert_eq!(after.root.children[0].encoding, crate::TransferEncoding::QuotedPrintable);
        assert_eq!(after.root.children[1].encoding, crate::TransferEncoding::Base64);
        assert!(to_seven_bit(b"Subject: x\r\n\r\nplain\r\n").is_none());
        // a non-MIME message gets MIME-Version with its encoding
        let plain = "Subject: x\r\n\r\nüber\r\n".as_bytes();
        let out = to_seven_bit(plain).unwrap();
        let m = parse(&out);
        assert_eq!(m.root.decoded_body(&out), "über\r\n".as_bytes());
        assert!(
            String::from_utf8(out)
                .unwrap()
                .contains("MIME-Version: 1.0\r\nContent-Transfer-Encoding: quoted-printable")
        );
    }

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
