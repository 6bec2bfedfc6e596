//! Content-Transfer-Encoding decoders: lenient base64 and quoted-printable.

/// Decodes base64, skipping anything outside the alphabet (line breaks, spaces, junk) and
/// tolerating missing padding; stops at the first `=` that ends a quantum.
pub fn base64(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() / 4 * 3 + 3);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for &c in input {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => {
                if bits > 0 {
                    // end of this quantum; later data (a second base64 run) starts fresh
                    acc = 0;
                    bits = 0;
                }
                continue;
            }
            _ => continue,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// Decodes quoted-printable (RFC 2045 §6.7): `=XX`, soft line breaks `=` CRLF/LF, trailing
/// whitespace on lines dropped; malformed escapes are kept as they are.
pub fn quoted_printable(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        let c = input[i];
        if c == b'=' {
            let rest = &input[i + 1..];
            if let (Some(&h), Some(&l)) = (rest.first(), rest.get(1))
                && let (Some(h), Some(l)) = (hex(h), hex(l))
            {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
            // soft line break: '=' then optional whitespace then CRLF or LF
            let ws = rest.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
            match (rest.get(ws), rest.get(ws + 1)) {
                (Some(b'\r'), Some(b'\n')) => {
                    i += ws + 3;
                    continue;
                }
                (Some(b'\n'), _) => {
                    i += ws + 2;
                    continue;
                }
                (None, _) => {
                    i += ws + 1;
                    continue;
                }
                _ => {}
            }
            out.push(c);
            i += 1;
        } else if c == b' ' || c == b'\t' {
            let ws = input[i..].iter().take_while(|&&b| b == b' ' || b == b'\t').count();
            let after = input.get(i + ws);
            let at_eol = matches!(after, None | Some(b'\r') | Some(b'\n'));
            if !at_eol {
                out.extend_from_slice(&input[i..i + ws]);
            }
            i += ws;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Quoted-printable as used in RFC 2047 `Q` words: `_` is a space.
pub fn q_word(input: &[u8]) -> Vec<u8> {
    let replaced: Vec<u8> = input.iter().map(|&b| if b == b'_' { b' ' } else { b }).collect();
    quoted_printable(&replaced)
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'F' => Some(c - b'A' + 10),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_lenient() {
        assert_eq!(base64(b"aGVsbG8gd29ybGQ="), b"hello world");
        assert_eq!(base64(b"aGVs\r\nbG8g\r\nd29y bGQ"), b"hello world");
        assert_eq!(base64(b"aGVsbG8=\r\n!!**!!"), b"hello");
        assert_eq!(base64(b"YQ==YQ=="), b"aa");
        assert_eq!(base64(b""), b"");
    }

    #[test]
    fn qp() {
        assert_eq!(quoted_printable(b"caf=C3=A9 =\r\nsoft"), "café soft".as_bytes());
        assert_eq!(quoted_printable(b"a  \r\nb"), b"a\r\nb");
        assert_eq!(quoted_printable(b"=ZZ=4"), b"=ZZ=4");
        assert_eq!(quoted_printable(b"x=\n"), b"x");
        assert_eq!(q_word(b"a_b=3Dc"), b"a b=c");
    }
}
