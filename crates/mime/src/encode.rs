//! Encoders for building messages: base64 (RFC 2045).

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Base64 of `data` on one line.
pub fn base64(data: &[u8]) -> String {
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n =
            (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for k in 0..4 {
            s.push(if k <= c.len() { ALPHABET[(n >> (18 - 6 * k) & 63) as usize] as char } else { '=' });
        }
    }
    s
}

/// Base64 of `data` as a MIME body: lines of 76 characters ending in CRLF.
pub fn base64_lines(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len() * 4 / 3 + data.len() / 38 + 4);
    for line in data.chunks(57) {
        out.push_str(&base64(line));
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        assert_eq!(base64(b"hello world"), "aGVsbG8gd29ybGQ=");
        assert_eq!(base64(b""), "");
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let lines = base64_lines(&data);
        assert!(lines.lines().all(|l| l.len() <= 76));
        assert_eq!(crate::decode::base64(lines.as_bytes()), data);
    }
}
