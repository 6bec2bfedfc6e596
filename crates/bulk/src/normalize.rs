//! A message's text as the bulk measure compares it: the text parts decoded (HTML reduced to
//! its text), NFKC and lower case, the parts a mail merge personalises replaced by
//! placeholders (addresses, digit runs, URLs' queries and fragments, long tokens), whitespace
//! collapsed, at most [`TEXT_MAX`] bytes; then tokens — words, and overlapping two-character
//! tokens inside runs of Japanese, Chinese or Korean script, which has no spaces.

use unicode_normalization::UnicodeNormalization;

/// The most text of one message that is compared.
pub const TEXT_MAX: usize = 64 * 1024;

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
    let folded: String = text.nfkc().flat_map(char::to_lowercase).collect();
    let mut out = String::with_capacity(folded.len().min(TEXT_MAX));
    for word in folded.split_whitespace() {
        if out.len() >= TEXT_MAX {
            break;
        }
        let w = if word.contains('@') && word.contains('.') {
            "_addr_".to_string()
        } else if let Some(pos) = word.find("://") {
            // scheme, host and path stay; the query and fragment (tracking) go
            let end = word[pos..].find(['?', '#']).map_or(word.len(), |e| pos + e);
            let kept = &word[..end];
            // a path segment that is a token is personal too
            kept.split('/').map(|seg| if is_token(seg) { "_tok_" } else { seg }).collect::<Vec<_>>().join("/")
        } else if is_token(word) {
            "_tok_".to_string()
        } else {
            word.to_string()
        };
        // every run of digits is one placeholder: member numbers, amounts, dates
        let mut digits = false;
        let mut piece = String::with_capacity(w.len());
        for c in w.chars() {
            if c.is_ascii_digit() {
                if !digits {
                    piece.push('0');
                }
                digits = true;
            } else {
                digits = false;
                piece.push(c);
            }
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&piece);
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
    }

    #[test]
    fn html_is_reduced_to_its_text() {
        let t = html_text("<html><style>p{x:1}</style><p>Hello&nbsp;<b>world</b></p><script>var a=1;</script>!</html>");
        assert_eq!(normalize(&t), "hello world !");
    }
}
