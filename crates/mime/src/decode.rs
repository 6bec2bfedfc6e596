//! Content-Transfer-Encoding decoders: lenient base64 and quoted-printable.

/// Decodes base64, skipping anything outside the alphabet (line breaks, spaces, junk) and
/// tolerating missing padding; stops at the first `=` that ends a quantum.
pub fn base64(input: &[u8]) -> Vec<u8> {
    // room for every quantum plus the 8-byte stores of the fast path
    let mut out = vec![0u8; input.len() / 4 * 3 + 8];
    let mut o = 0;
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    let mut i = 0;
    while i < input.len() {
        if bits == 0 {
            // fast path on a quantum boundary: eight alphabet characters make six bytes, each
            // four through tables of their values already in place (an OR of the four is the
            // quantum; a character outside the alphabet sets a bit no value reaches)
            while let Some(q) = input.get(i..i + 8) {
                let x = quantum(q[0], q[1], q[2], q[3]);
                let y = quantum(q[4], q[5], q[6], q[7]);
                if (x | y) >= OUTSIDE {
                    break;
                }
                let n = (u64::from(x) << 24) | u64::from(y);
                out[o..o + 8].copy_from_slice(&(n << 16).to_be_bytes());
                o += 6;
                i += 8;
            }
            // and four make three
            if let Some(q) = input.get(i..i + 4) {
                let x = quantum(q[0], q[1], q[2], q[3]);
                if x < OUTSIDE {
                    out[o..o + 4].copy_from_slice(&(x << 8).to_be_bytes());
                    o += 3;
                    i += 4;
                    continue;
                }
            }
            if i >= input.len() {
                break;
            }
        }
        let c = input[i];
        i += 1;
        match B64[c as usize] {
            PAD => {
                if bits > 0 {
                    // end of this quantum; later data (a second base64 run) starts fresh
                    acc = 0;
                    bits = 0;
                }
            }
            SKIP => {}
            v => {
                acc = (acc << 6) | u32::from(v);
                bits += 6;
                if bits >= 8 {
                    bits -= 8;
                    out[o] = (acc >> bits) as u8;
                    o += 1;
                    acc &= (1 << bits) - 1;
                }
            }
        }
    }
    out.truncate(o);
    out
}

const PAD: u8 = 0xFE;
const SKIP: u8 = 0xFF;

/// Set in a [`PLACED`] entry for a byte outside the alphabet (above any 24-bit quantum).
const OUTSIDE: u32 = 1 << 24;

/// For each position in a quantum of four characters, each byte's value already shifted to
/// its place (18, 12, 6, 0 bits), or [`OUTSIDE`].
static PLACED: [[u32; 256]; 4] = {
    let mut t = [[OUTSIDE; 256]; 4];
    let mut c = 0;
    while c < 256 {
        let v = B64[c];
        if v < 64 {
            t[0][c] = (v as u32) << 18;
            t[1][c] = (v as u32) << 12;
            t[2][c] = (v as u32) << 6;
            t[3][c] = v as u32;
        }
        c += 1;
    }
    t
};

/// The 24 bits of four alphabet characters, at or above [`OUTSIDE`] if any is not one.
#[inline(always)]
fn quantum(a: u8, b: u8, c: u8, d: u8) -> u32 {
    PLACED[0][usize::from(a)] | PLACED[1][usize::from(b)] | PLACED[2][usize::from(c)] | PLACED[3][usize::from(d)]
}

/// Value of each byte in base64 (both the standard and the URL-safe alphabet), [`PAD`] for
/// `=`, [`SKIP`] for everything else (line breaks, spaces, junk).
const B64: [u8; 256] = {
    let mut t = [SKIP; 256];
    let mut i = 0;
    while i < 26 {
        t[b'A' as usize + i] = i as u8;
        t[b'a' as usize + i] = 26 + i as u8;
        i += 1;
    }
    let mut d = 0;
    while d < 10 {
        t[b'0' as usize + d] = 52 + d as u8;
        d += 1;
    }
    t[b'+' as usize] = 62;
    t[b'-' as usize] = 62;
    t[b'/' as usize] = 63;
    t[b'_' as usize] = 63;
    t[b'=' as usize] = PAD;
    t
};

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

    /// The decoder one character at a time, as the fast path must behave.
    fn base64_reference(input: &[u8]) -> Vec<u8> {
        let (mut out, mut acc, mut bits) = (Vec::new(), 0u32, 0u32);
        for &c in input {
            match B64[c as usize] {
                PAD if bits > 0 => (acc, bits) = (0, 0),
                PAD | SKIP => {}
                v => {
                    acc = (acc << 6) | u32::from(v);
                    bits += 6;
                    if bits >= 8 {
                        bits -= 8;
                        out.push((acc >> bits) as u8);
                        acc &= (1 << bits) - 1;
                    }
                }
            }
        }
        out
    }

    #[test]
    fn base64_fast_path_matches_the_reference_on_messy_input() {
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_ \r\n*";
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        for len in 0..400 {
            let input: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    // mostly alphabet characters, sometimes padding and junk
                    let k = (seed % 100) as usize;
                    if k < 90 { alphabet[(seed >> 8) as usize % 64] } else { alphabet[64 + (seed >> 8) as usize % 7] }
                })
                .collect();
            assert_eq!(base64(&input), base64_reference(&input), "{:?}", String::from_utf8_lossy(&input));
        }
    }

    #[test]
    fn base64_decodes_wrapped_lines_of_every_length() {
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        for len in 0..300 {
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            let wrapped = crate::encode::base64_lines(&data);
            assert_eq!(base64(wrapped.as_bytes()), data, "{len} bytes");
            assert_eq!(base64(wrapped.replace("\r\n", "\n").as_bytes()), data, "{len} bytes, LF");
        }
    }

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
