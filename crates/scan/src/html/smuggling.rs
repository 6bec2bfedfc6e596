//! HTML smuggling (issue 17): a page whose script carries a file as base64 text — one long
//! string, or pieces joined at run time (`"TVqQ…" + "AAMA…"`, `["TVqQ…", "AAMA…"].join("")`)
//! — and hands it to the browser with `atob` and a `Blob`. The base64 string literals of each
//! `<script>` element are taken in order, consecutive pieces (separated only by spaces, `+`
//! or `,`) joined, and each run long enough to be a file decoded: the files are scanned as the
//! page's members. Bounded: at most [`MAX_BLOBS`] files and [`MAX_BYTES`] decoded per page.

/// Files taken from one page at most.
pub const MAX_BLOBS: usize = 64;
/// Decoded bytes taken from one page at most.
pub const MAX_BYTES: usize = 32 << 20;
/// The shortest run of base64 text taken as a file (shorter ones are ids, hashes, tokens).
const MIN_RUN: usize = 128;

fn is_b64(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=' | b'-' | b'_')
}

/// The files carried as base64 in the page's scripts.
pub fn script_blobs(page: &[u8]) -> Vec<Vec<u8>> {
    let mut blobs = Vec::new();
    let mut total = 0;
    let lower = page.to_ascii_lowercase();
    let mut from = 0;
    while let Some(open) = memchr::memmem::find(&lower[from..], b"<script") {
        let start = from + open;
        let Some(body) = memchr::memchr(b'>', &lower[start..]).map(|g| start + g + 1) else { break };
        let end = memchr::memmem::find(&lower[body..], b"</script").map_or(page.len(), |e| body + e);
        for run in runs(&page[body..end]) {
            if blobs.len() >= MAX_BLOBS || total >= MAX_BYTES {
                return blobs;
            }
            if let Some(d) = decode(&run) {
                total += d.len();
                blobs.push(d);
            }
        }
        from = end;
    }
    blobs
}

/// Runs of base64 string literals: each literal's text, consecutive ones joined.
fn runs(script: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut run: Vec<u8> = Vec::new();
    let mut i = 0;
    let flush = |run: &mut Vec<u8>, out: &mut Vec<Vec<u8>>| {
        if run.len() >= MIN_RUN {
            out.push(std::mem::take(run));
        }
        run.clear();
    };
    while i < script.len() {
        let c = script[i];
        if matches!(c, b'"' | b'\'' | b'`') {
            // a literal: its text up to the same quote (a backslash escapes)
            let mut j = i + 1;
            let mut literal = Vec::new();
            let mut plain = true;
            while j < script.len() && script[j] != c {
                if script[j] == b'\\' {
                    plain = false;
                    j += 1;
                } else if plain && is_b64(script[j]) {
                    literal.push(script[j]);
                } else if !matches!(script[j], b'\r' | b'\n') {
                    plain = false;
                }
                j += 1;
            }
            if plain && !literal.is_empty() {
                run.extend_from_slice(&literal);
            } else {
                flush(&mut run, &mut out);
            }
            i = j + 1;
            continue;
        }
        if !(c.is_ascii_whitespace() || matches!(c, b'+' | b',')) {
            flush(&mut run, &mut out);
        }
        i += 1;
    }
    flush(&mut run, &mut out);
    out
}

/// Standard or URL-safe base64, padding optional; `None` for text that is not (or decodes to
/// almost nothing).
fn decode(text: &[u8]) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32)
    };
    let body = text.split(|&c| c == b'=').next().unwrap_or_default();
    // text of one case or of digits only is words or numbers, not base64
    if !body.iter().any(u8::is_ascii_uppercase) || !body.iter().any(u8::is_ascii_lowercase) {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    let (mut acc, mut n) = (0u32, 0);
    for &c in body {
        acc = (acc << 6) | value(c)?;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((acc >> n) as u8);
        }
    }
    (out.len() >= MIN_RUN / 2).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_in_pieces_is_joined_and_short_strings_are_left() {
        let file: Vec<u8> = (0..600u32).map(|i| (i * 7 % 251) as u8).collect();
        let text = testkit::base64(&file);
        let (a, b) = text.split_at(300);
        let page = format!(
            "<html><script>var id = \"AbCdEf012345\"; var p = [\"{a}\",\n \"{b}\"]; \
             var blob = new Blob([atob(p.join(''))]);</script><p>\"{text}\" outside a script</p>\
             <SCRIPT type=\"text/javascript\">x = '{text}' + 'not base64!';</SCRIPT></html>"
        );
        let blobs = script_blobs(page.as_bytes());
        assert_eq!(blobs, vec![file.clone(), file]);
        assert!(script_blobs(b"<script>var s = 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa';</script>").is_empty());
    }

    #[test]
    fn many_blobs_are_bounded() {
        // base64 of 200 bytes, with a lower-case letter so that it is not a word
        let one = format!("'{}Zz' ; ", testkit::base64(&[0x41u8; 198]));
        let page = format!("<script>{}</script>", one.repeat(1000));
        assert_eq!(script_blobs(page.as_bytes()).len(), MAX_BLOBS);
    }
}
