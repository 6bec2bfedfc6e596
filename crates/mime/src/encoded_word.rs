//! RFC 2047 encoded words in header values (`=?charset?B?...?=`), with adjacent words of the
//! same charset joined **before** charset decoding so that a multibyte character split across
//! two words decodes correctly.

use crate::charset;
use crate::decode;

struct Word<'a> {
    charset: &'a str,
    bytes: Vec<u8>,
    end: usize,
}

/// Decodes a header value: encoded words become text, whitespace between adjacent encoded
/// words is dropped, raw 8-bit or ISO-2022-JP text is decoded as well as possible.
pub fn decode_header(value: &[u8]) -> String {
    let mut out = String::new();
    let mut plain_start = 0;
    let mut pending: Option<(String, Vec<u8>)> = None;
    let mut ends = EndCache { from: 0, found: None, searched: false };
    let mut i = 0;
    while i < value.len() {
        if value[i] == b'='
            && value.get(i + 1) == Some(&b'?')
            && let Some(w) = parse_word(value, i, &mut ends)
        {
            let between = &value[plain_start..i];
            let only_space = between.iter().all(|b| b.is_ascii_whitespace());
            let adjacent = only_space && pending.is_some();
            match &mut pending {
                Some((cs, bytes)) if adjacent && cs.eq_ignore_ascii_case(w.charset) => {
                    bytes.extend_from_slice(&w.bytes);
                }
                _ => {
                    flush(&mut out, &mut pending);
                    // whitespace between two encoded words is not part of the text
                    if !adjacent {
                        out.push_str(&charset::decode(between, None));
                    }
                    pending = Some((w.charset.to_string(), w.bytes));
                }
            }
            i = w.end;
            plain_start = i;
            continue;
        }
        i += 1;
    }
    flush(&mut out, &mut pending);
    out.push_str(&charset::decode(&value[plain_start..], None));
    out
}

fn flush(out: &mut String, pending: &mut Option<(String, Vec<u8>)>) {
    if let Some((cs, bytes)) = pending.take() {
        out.push_str(&charset::decode(&bytes, Some(&cs)));
    }
}

/// The next `?=` in a value at or after `from` (`None`: there is none), remembered so that a
/// value full of unterminated words is searched once, not once per word.
struct EndCache {
    from: usize,
    found: Option<usize>,
    searched: bool,
}

impl EndCache {
    /// The position of the first `?=` at or after `at` in `v`.
    fn next(&mut self, v: &[u8], at: usize) -> Option<usize> {
        let valid = self.searched && self.from <= at && self.found.is_none_or(|f| f >= at);
        if !valid {
            self.found = memchr::memmem::find(&v[at.min(v.len())..], b"?=").map(|p| at + p);
            self.from = at;
            self.searched = true;
        }
        self.found
    }
}

/// Longest charset name (with its `*lang`) looked for in an encoded word.
const MAX_CHARSET: usize = 75;

/// Parses `=?charset[*lang]?enc?text?=` starting at `start`.
fn parse_word<'a>(v: &'a [u8], start: usize, ends: &mut EndCache) -> Option<Word<'a>> {
    let s = &v[start + 2..];
    let q1 = s.iter().take(MAX_CHARSET + 1).position(|&b| b == b'?')?;
    let charset = std::str::from_utf8(&s[..q1]).ok()?;
    let charset = charset.split('*').next()?;
    if charset.is_empty() || charset.bytes().any(|b| b.is_ascii_whitespace()) {
        return None;
    }
    let enc = *s.get(q1 + 1)?;
    if s.get(q1 + 2) != Some(&b'?') {
        return None;
    }
    let text_start = q1 + 3;
    let rel_end = ends.next(v, start + 2 + text_start)? - (start + 2 + text_start);
    let text = &s[text_start..text_start + rel_end];
    if text.iter().any(|&b| b == b' ' || b == b'\n' || b == b'\r') && enc.eq_ignore_ascii_case(&b'B') {
        return None;
    }
    let bytes = match enc.to_ascii_uppercase() {
        b'B' => decode::base64(text),
        b'Q' => decode::q_word(text),
        _ => return None,
    };
    Some(Word { charset, bytes, end: start + 2 + text_start + rel_end + 2 })
}

#[cfg(test)]
mod tests {
    #[test]
    fn iso2022jp_words_each_back_in_ascii_join_cleanly() {
        // two words, each a complete ISO-2022-JP run ending in ESC ( B, as Japanese MUAs write
        let v = b"=?ISO-2022-JP?B?GyRCJUYlOSVIGyhC?= =?ISO-2022-JP?B?GyRCJUYlOSVIGyhC?=";
        assert_eq!(decode_header(v), "テストテスト");
    }

    use super::*;

    #[test]
    fn words() {
        assert_eq!(decode_header(b"=?ISO-2022-JP?B?GyRCJUYlOSVIGyhC?=.zip"), "テスト.zip");
        assert_eq!(decode_header(b"Hello =?utf-8?q?caf=C3=A9?= world"), "Hello café world");
        assert_eq!(decode_header(b"=?utf-8?b?44OG?= =?utf-8?b?44K544OI?="), "テスト");
        // a UTF-8 character split across two words
        assert_eq!(decode_header(b"=?UTF-8?B?44O=?=\r\n =?UTF-8?B?hg==?="), "テ");
        assert_eq!(decode_header(b"=?utf-8*ja?Q?abc?="), "abc");
        assert_eq!(decode_header(b"plain text"), "plain text");
        assert_eq!(decode_header(b"=?bogus"), "=?bogus");
        assert_eq!(decode_header(b"\x1b$B%F%9%H\x1b(B"), "テスト");
        assert_eq!(decode_header(b"=?a?Q?x?= =?b?Q?y"), "x =?b?Q?y");
    }

    /// Unterminated words (`=?x?Q? ` × 200,000, 1.4 MB) are linear work, not one search to the
    /// end per word (issue 8.9: 79 s).
    #[test]
    fn unterminated_words_are_linear() {
        let v = "=?x?Q? ".repeat(200_000);
        let started = std::time::Instant::now();
        let out = decode_header(v.as_bytes());
        assert_eq!(out.len(), v.len());
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
    }
}
