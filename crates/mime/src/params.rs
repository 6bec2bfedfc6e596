//! Structured header values: `type/subtype; name=value; ...` with RFC 2231 parameter
//! continuations and charsets (segments joined **before** charset decoding) and, as mailers
//! often send them, RFC 2047 words inside quoted values.

use crate::{charset, encoded_word};

/// Decoded parameters, names in lower case, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    /// The value of parameter `name` (any case).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

struct RawParam {
    name: String,
    section: Option<u32>,
    extended: bool,
    value: Vec<u8>,
}

/// Splits a structured value into its leading token (lower case, e.g. `text/plain` or
/// `attachment`) and its decoded parameters.
pub fn parse(value: &[u8]) -> (String, Params) {
    let items = split(value);
    let mut it = items.into_iter();
    let head = it.next().map(|h| String::from_utf8_lossy(&h).trim().to_ascii_lowercase()).unwrap_or_default();
    let mut raw = Vec::new();
    for item in it {
        if let Some(p) = raw_param(&item) {
            raw.push(p);
        }
    }
    (head, assemble(raw))
}

/// Splits on `;` outside quoted strings, dropping comments `( … )`.
fn split(value: &[u8]) -> Vec<Vec<u8>> {
    let mut items = vec![Vec::new()];
    let mut in_quote = false;
    let mut comment = 0u32;
    let mut i = 0;
    while i < value.len() {
        let c = value[i];
        let cur = items.last_mut().expect("at least one item");
        match c {
            b'\\' if in_quote => {
                cur.push(c);
                if let Some(&n) = value.get(i + 1) {
                    cur.push(n);
                    i += 1;
                }
            }
            b'"' if comment == 0 => {
                in_quote = !in_quote;
                cur.push(c);
            }
            b'(' if !in_quote => comment += 1,
            b')' if !in_quote && comment > 0 => comment -= 1,
            _ if comment > 0 => {}
            b';' if !in_quote => items.push(Vec::new()),
            _ => cur.push(c),
        }
        i += 1;
    }
    items
}

fn raw_param(item: &[u8]) -> Option<RawParam> {
    let eq = item.iter().position(|&b| b == b'=')?;
    let name = String::from_utf8_lossy(&item[..eq]).trim().to_ascii_lowercase();
    if name.is_empty() {
        return None;
    }
    let mut v = trim(&item[eq + 1..]).to_vec();
    if v.len() >= 2 && v[0] == b'"' {
        v = unquote(&v);
    }
    let (base, section, extended) = match name.split_once('*') {
        None => (name.clone(), None, false),
        Some((base, "")) => (base.to_string(), None, true),
        Some((base, rest)) => {
            let (num, ext) = match rest.strip_suffix('*') {
                Some(n) => (n, true),
                None => (rest, false),
            };
            match num.parse::<u32>() {
                Ok(n) => (base.to_string(), Some(n), ext),
                Err(_) => (name.clone(), None, false),
            }
        }
    };
    Some(RawParam { name: base, section, extended, value: v })
}

fn unquote(v: &[u8]) -> Vec<u8> {
    let inner = &v[1..];
    let inner = inner.strip_suffix(b"\"").unwrap_or(inner);
    let mut out = Vec::with_capacity(inner.len());
    let mut i = 0;
    while i < inner.len() {
        if inner[i] == b'\\' && i + 1 < inner.len() {
            i += 1;
        }
        out.push(inner[i]);
        i += 1;
    }
    out
}

fn trim(v: &[u8]) -> &[u8] {
    let s = v.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(v.len());
    let e = v.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(s, |e| e + 1);
    &v[s..e]
}

/// Joins RFC 2231 sections and decodes every value, in one pass over the parameters (names
/// grouped by a map: a header of a hundred thousand parameters costs linear time).
fn assemble(raw: Vec<RawParam>) -> Params {
    // per name, in order of first appearance: the first plain value and the RFC 2231 sections
    let mut order: Vec<String> = Vec::new();
    let mut groups: std::collections::HashMap<String, (Option<usize>, Vec<usize>)> = std::collections::HashMap::new();
    for (i, p) in raw.iter().enumerate() {
        let g = groups.entry(p.name.clone()).or_insert_with(|| {
            order.push(p.name.clone());
            (None, Vec::new())
        });
        if p.section.is_some() || p.extended {
            g.1.push(i);
        } else if g.0.is_none() {
            g.0 = Some(i);
        }
    }
    let mut out: Vec<(String, String)> = Vec::with_capacity(order.len());
    for name in order {
        let (plain, mut sections) = groups.remove(&name).unwrap_or_default();
        if sections.is_empty() {
            let value = plain.map(|i| encoded_word::decode_header(&raw[i].value)).unwrap_or_default();
            out.push((name, value));
            continue;
        }
        sections.sort_by_key(|&i| raw[i].section.unwrap_or(0));
        let mut bytes = Vec::new();
        let mut charset_label: Option<String> = None;
        for (k, s) in sections.iter().map(|&i| &raw[i]).enumerate() {
            let mut value: &[u8] = &s.value;
            if s.extended && k == 0 {
                // charset'language'value
                let parts: Vec<&[u8]> = value.splitn(3, |&b| b == b'\'').collect();
                if parts.len() == 3 {
                    let cs = String::from_utf8_lossy(parts[0]).into_owned();
                    if !cs.is_empty() {
                        charset_label = Some(cs);
                    }
                    value = parts[2];
                }
            }
            if s.extended {
                bytes.extend_from_slice(&percent_decode(value));
            } else {
                bytes.extend_from_slice(value);
            }
        }
        let text = if charset_label.is_none() && bytes.windows(2).any(|w| w == b"=?") {
            encoded_word::decode_header(&bytes)
        } else {
            charset::decode(&bytes, charset_label.as_deref())
        };
        out.push((name, text));
    }
    Params(out)
}

fn percent_decode(v: &[u8]) -> Vec<u8> {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] == b'%'
            && let (Some(h), Some(l)) = (v.get(i + 1).and_then(|&c| hex(c)), v.get(i + 2).and_then(|&c| hex(c)))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(v[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_type_and_params() {
        let (t, p) = parse(b"Multipart/Mixed; boundary=\"a b;c\"; charset=us-ascii (comment)");
        assert_eq!(t, "multipart/mixed");
        assert_eq!(p.get("BOUNDARY"), Some("a b;c"));
        assert_eq!(p.get("charset"), Some("us-ascii"));
    }

    #[test]
    fn rfc2231_joined_before_charset_decoding() {
        let (_, p) = parse(b"attachment; filename*0*=ISO-2022-JP''%1B%24B%25F; filename*1*=%259%25H%1B%28B.txt");
        assert_eq!(p.get("filename"), Some("テスト.txt"));
        let (_, p) = parse(b"attachment; filename*0*=UTF-8''%E3%83%86%E3%82; filename*1*=%B9%E3%83%88.txt");
        assert_eq!(p.get("filename"), Some("テスト.txt"));
        let (_, p) = parse(b"attachment; filename*=iso-8859-1'en'caf%E9.txt");
        assert_eq!(p.get("filename"), Some("café.txt"));
        let (_, p) = parse(b"attachment; filename*1=\"two.txt\"; filename*0=\"part\"");
        assert_eq!(p.get("filename"), Some("parttwo.txt"));
    }

    #[test]
    fn rfc2047_inside_quotes_and_raw_8bit() {
        let (_, p) = parse(b"application/zip; name=\"=?ISO-2022-JP?B?GyRCJUYlOSVIGyhC?=.zip\"");
        assert_eq!(p.get("name"), Some("テスト.zip"));
        let (_, p) = parse("attachment; filename=\"テスト.txt\"".as_bytes());
        assert_eq!(p.get("filename"), Some("テスト.txt"));
    }

    /// A 1 MB Content-Type of distinct parameters, and one of RFC 2231 sections, take linear
    /// time (issue 8.9: about 2 minutes and 200 s before).
    #[test]
    fn many_parameters_are_linear() {
        let started = std::time::Instant::now();
        let distinct: String = (0..100_000).map(|i| format!("; p{i}=v")).collect();
        let (_, p) = parse(format!("text/plain{distinct}").as_bytes());
        assert_eq!(p.0.len(), 100_000);
        assert_eq!(p.get("p99999"), Some("v"));
        let sections: String = (0..100_000).rev().map(|i| format!("; name*{i}=x")).collect();
        let (_, p) = parse(format!("text/plain{sections}").as_bytes());
        assert_eq!(p.get("name").map(str::len), Some(100_000));
        let distinct: String = (0..50_000).map(|i| format!("; p{i}*0*=utf-8''x; p{i}*1=y")).collect();
        let (_, p) = parse(format!("text/plain{distinct}").as_bytes());
        assert_eq!(p.0.len(), 50_000);
        assert_eq!(p.get("p49999"), Some("xy"));
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "{:?}", started.elapsed());
    }

    #[test]
    fn percent() {
        assert_eq!(percent_decode(b"a%20b%zz%4"), b"a b%zz%4");
        assert_eq!(percent_decode(b"%3D"), b"=");
    }
}
