//! A message's text as the bulk measure compares it: the text parts decoded (HTML reduced to
//! its text), NFKC and lower case, the parts a mail merge personalises replaced by
//! placeholders (addresses, digit runs, URLs' queries and fragments, long tokens), whitespace
//! collapsed, at most [`TEXT_MAX`] bytes; then tokens — words, and overlapping two-character
//! tokens inside runs of Japanese, Chinese or Korean script, which has no spaces.

use unicode_normalization::UnicodeNormalization;

/// The most text of one message that is compared.
pub const TEXT_MAX: usize = 8 * 1024;

/// `html` reduced to its text: tags dropped (a block-level tag becomes a space), `script`
/// and `style` contents dropped, the common entities decoded.
pub fn html_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let lower = html.to_ascii_lowercase();
    let mut i = 0;
    let bytes = html.as_bytes();
    while i < bytes.len() {
        if bytes[i] == b'<' {
            // skip the contents of script and style elements whole
            for skip in ["script", "style"] {
                if lower[i + 1..].starts_with(skip) {
                    if let Some(end) = lower[i..].find(&format!("</{skip}")) {
                        i += end;
                    }
                    break;
                }
            }
            match html[i..].find('>') {
                Some(end) => i += end + 1,
                None => break,
            }
            out.push(' ');
            continue;
        }
        let next = html[i..].find('<').map_or(html.len(), |n| i + n);
        out.push_str(&html[i..next]);
        i = next;
    }
    out.replace("&nbsp;", " ")
        .replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
}

/// Whether `c` is of a script written without spaces between words.
fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF      // hiragana, katakana
        | 0x3400..=0x4DBF    // CJK extension A
        | 0x4E00..=0x9FFF    // CJK unified ideographs
        | 0xF900..=0xFAFF    // compatibility ideographs
        | 0xAC00..=0xD7AF    // hangul syllables
        | 0x20000..=0x2FFFF) // CJK extensions B–F
}

/// A word that is a code rather than a word — 16 or more letters and digits mixed, or 20 or
/// more ASCII characters of any kind (a tracking token, a coupon code, an id, base64):
/// personal, so replaced.
fn is_token(word: &str) -> bool {
    let mixed = word.chars().any(|c| c.is_ascii_digit()) && word.chars().any(|c| c.is_ascii_alphabetic());
    (word.len() >= 16 && mixed) || (word.len() >= 20 && word.is_ascii())
}

/// `text` normalised: NFKC, lower case, placeholders for what a mail merge changes,
/// whitespace collapsed, at most [`TEXT_MAX`] bytes.
pub fn normalize(text: &str) -> String {
    // at most twice the compared size is folded (the rest could not be compared anyway)
    let mut end = text.len().min(2 * TEXT_MAX);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let text = &text[..end];
    // ASCII needs no compatibility folding, and is cut and rewritten byte by byte
    if text.is_ascii() {
        return normalize_ascii(&text.to_ascii_lowercase().into_bytes());
    }
    let folded: String = text.nfkc().flat_map(char::to_lowercase).collect();
    let mut out = String::with_capacity(folded.len().min(TEXT_MAX));
    for word in folded.split_whitespace() {
        if out.len() >= TEXT_MAX {
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        // (a plain `find("://")` builds a substring searcher per word: look for ':' first)
        let url = if word.contains(':') { word.find("://") } else { None };
        if word.contains('@') && word.contains('.') {
            out.push_str("_addr_");
        } else if let Some(pos) = url {
            // scheme, host and path stay; the query and fragment (tracking) go; a path
            // segment that is a token is personal too
            let end = word[pos..].find(['?', '#']).map_or(word.len(), |e| pos + e);
            for (i, seg) in word[..end].split('/').enumerate() {
                if i > 0 {
                    out.push('/');
                }
                push_collapsed(&mut out, if is_token(seg) { "_tok_" } else { seg });
            }
        } else if is_token(word) {
            out.push_str("_tok_");
        } else {
            push_collapsed(&mut out, word);
        }
    }
    out
}

/// [`normalize`] of lower-cased ASCII text, on bytes.
fn normalize_ascii(text: &[u8]) -> String {
    let mut out: Vec<u8> = Vec::with_capacity(text.len().min(TEXT_MAX));
    let collapse = |out: &mut Vec<u8>, word: &[u8]| {
        let mut digits = false;
        for &b in word {
            if b.is_ascii_digit() {
                if !digits {
                    out.push(b'0');
                }
                digits = true;
            } else {
                digits = false;
                out.push(b);
            }
        }
    };
    let token = |w: &[u8]| {
        let mixed = w.iter().any(u8::is_ascii_digit) && w.iter().any(u8::is_ascii_alphabetic);
        (w.len() >= 16 && mixed) || w.len() >= 20
    };
    for word in text.split(u8::is_ascii_whitespace).filter(|w| !w.is_empty()) {
        if out.len() >= TEXT_MAX {
            break;
        }
        if !out.is_empty() {
            out.push(b' ');
        }
        let url = if word.contains(&b':') { word.windows(3).position(|w| w == b"://") } else { None };
        if word.contains(&b'@') && word.contains(&b'.') {
            out.extend_from_slice(b"_addr_");
        } else if let Some(pos) = url {
            let end = word[pos..].iter().position(|b| *b == b'?' || *b == b'#').map_or(word.len(), |e| pos + e);
            for (i, seg) in word[..end].split(|b| *b == b'/').enumerate() {
                if i > 0 {
                    out.push(b'/');
                }
                collapse(&mut out, if token(seg) { b"_tok_" } else { seg });
            }
        } else if token(word) {
            out.extend_from_slice(b"_tok_");
        } else {
            collapse(&mut out, word);
        }
    }
    String::from_utf8(out).unwrap_or_default()
}

/// Appends `word` with every run of digits as one `0`: member numbers, amounts, dates.
fn push_collapsed(out: &mut String, word: &str) {
    if !word.bytes().any(|b| b.is_ascii_digit()) {
        out.push_str(word);
        return;
    }
    let mut digits = false;
    for c in word.chars() {
        if c.is_ascii_digit() {
            if !digits {
                out.push('0');
            }
            digits = true;
        } else {
            digits = false;
            out.push(c);
        }
    }
}

/// The hashes of the tokens of normalised text ([`tokens`], without making strings).
pub fn token_hashes(text: &str) -> Vec<u64> {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    let step = |h: u64, c: char| (h ^ u64::from(c)).wrapping_mul(0x0100_0000_01b3);
    if text.is_ascii() {
        // the same hashes, byte by byte
        let mut out = Vec::with_capacity(text.len() / 4);
        let (mut word, mut in_word) = (OFFSET, false);
        for &b in text.as_bytes() {
            if b.is_ascii_alphanumeric() || b == b'_' {
                word = step(word, char::from(b));
                in_word = true;
            } else if in_word {
                out.push(word);
                (word, in_word) = (OFFSET, false);
            }
        }
        if in_word {
            out.push(word);
        }
        return out;
    }
    let mut out = Vec::with_capacity(text.len() / 4);
    let (mut word, mut in_word) = (OFFSET, false);
    let mut prev_cjk: Option<char> = None;
    let mut lone_cjk = false;
    let end_cjk = |prev: &mut Option<char>, lone: &mut bool, out: &mut Vec<u64>| {
        if let Some(p) = prev.take()
            && *lone
        {
            out.push(step(OFFSET, p));
        }
        *lone = false;
    };
    for c in text.chars() {
        // ASCII first: most text of most mail
        if c.is_ascii() {
            end_cjk(&mut prev_cjk, &mut lone_cjk, &mut out);
            if c.is_ascii_alphanumeric() || c == '_' {
                word = step(word, c);
                in_word = true;
            } else if in_word {
                out.push(word);
                (word, in_word) = (OFFSET, false);
            }
            continue;
        }
        if is_cjk(c) {
            if in_word {
                out.push(word);
                (word, in_word) = (OFFSET, false);
            }
            match prev_cjk {
                Some(p) => {
                    out.push(step(step(OFFSET, p), c));
                    lone_cjk = false;
                }
                None => lone_cjk = true,
            }
            prev_cjk = Some(c);
        } else if c.is_alphanumeric() || c == '_' {
            end_cjk(&mut prev_cjk, &mut lone_cjk, &mut out);
            word = step(word, c);
            in_word = true;
        } else {
            end_cjk(&mut prev_cjk, &mut lone_cjk, &mut out);
            if in_word {
                out.push(word);
                (word, in_word) = (OFFSET, false);
            }
        }
    }
    end_cjk(&mut prev_cjk, &mut lone_cjk, &mut out);
    if in_word {
        out.push(word);
    }
    out
}

/// The tokens of normalised text: words of letters and digits, and overlapping two-character
/// tokens within runs of CJK script (a lone CJK character is a token of its own).
pub fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut cjk: Vec<char> = Vec::new();
    let flush_cjk = |cjk: &mut Vec<char>, out: &mut Vec<String>| {
        match cjk.len() {
            0 => {}
            1 => out.push(cjk[0].to_string()),
            _ => out.extend(cjk.windows(2).map(|w| w.iter().collect::<String>())),
        }
        cjk.clear();
    };
    for c in text.chars() {
        if is_cjk(c) {
            if !word.is_empty() {
                out.push(std::mem::take(&mut word));
            }
            cjk.push(c);
        } else if c.is_alphanumeric() || c == '_' {
            flush_cjk(&mut cjk, &mut out);
            word.push(c);
        } else {
            flush_cjk(&mut cjk, &mut out);
            if !word.is_empty() {
                out.push(std::mem::take(&mut word));
            }
        }
    }
    flush_cjk(&mut cjk, &mut out);
    if !word.is_empty() {
        out.push(word);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_parts_become_placeholders() {
        let a = normalize(
            "Dear Taro, member No. 12345: https://shop.example/c/AbC123xyz987QweRTY?u=77&t=x see you@mail.example",
        );
        let b =
            normalize("Dear Taro, member No. 99: https://shop.example/c/ZZZ999aaa111bbbCCC?u=12 see me@other.example");
        assert_eq!(a, b);
        assert_eq!(normalize("ＡＢＣ　１２"), "abc 0", "NFKC: full-width letters and digits");
    }

    #[test]
    fn japanese_is_cut_into_overlapping_pairs() {
        assert_eq!(tokens("会員様へ sale 2"), ["会員", "員様", "様へ", "sale", "2"]);
        assert_eq!(tokens("値"), ["値"]);
        // the hashes are of the same tokens
        let of = |t: &[String]| t.iter().map(|s| token_hashes(s)[0]).collect::<Vec<_>>();
        for text in ["会員様へ sale 2", "値", "abc 値 de", "a_b, 東京 大阪!"] {
            assert_eq!(token_hashes(text), of(&tokens(text)), "{text}");
        }
    }

    #[test]
    fn ascii_and_unicode_paths_agree() {
        let ascii = "Dear Taro, member No. 12345: https://shop.example/c/AbC123xyz987QweRTY?u=77 see you@mail.example abcdefghijklmnopqrstuvwxyz";
        // the same text with one non-ASCII character at the end takes the other path
        let other = format!("{ascii} é");
        assert_eq!(format!("{} é", normalize(ascii)), normalize(&other));
        let (a, o) = (token_hashes(&normalize(ascii)), token_hashes(&normalize(&other)));
        assert_eq!(a[..], o[..a.len()]);
    }

    #[test]
    fn html_is_reduced_to_its_text() {
        let t = html_text("<html><style>p{x:1}</style><p>Hello&nbsp;<b>world</b></p><script>var a=1;</script>!</html>");
        assert_eq!(normalize(&t), "hello world !");
    }
}
