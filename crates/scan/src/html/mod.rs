//! HTML typed and normalised as libclamav types and normalises it (`htmlnorm.c` read as a
//! reference), for target type 3 signatures: `nocomment` (tags and text lower-cased, comments dropped, white space
//! squeezed, entities decoded, tag attributes re-quoted) and `notags` (the text only, with the
//! links of `<a href>` and `<img src>`), the scripts normalised by [`js`] (`javascript`) and
//! the `data:` URIs of attributes. The input is read in chunks as libclamav reads it (at most
//! 8,191 bytes, NUL bytes dropped, cut back to a white space, leading white space of each chunk
//! skipped), since that shapes the output — the scripts' too: each chunk's part of a script is
//! tokenized as the chunk ends.
//!
//! Scripts encoded by Microsoft's script encoder (`<script language="jscript.encode">`, or
//! after an ASP `<%@ language=jscript.encode %>`) are decoded in place, as libclamav decodes
//! them, with the substitution tables measured from clamscan (`screnc_tables`).

mod entities;
pub mod js;
mod screnc_tables;
pub mod smuggling;

/// How far into a file libclamav looks for the tags that make it HTML.
const TYPING_WINDOW: usize = 1024;

/// The tags that make libclamav take a file for HTML, as measured with clamscan: each in
/// lower case, in upper case and — `true` here — capitalised (`<Html>`); no other mix.
const TAGS: &[(&[u8], bool)] = &[
    (b"<html>", true),
    (b"<head>", true),
    (b"<script", true),
    (b"<img", true),
    (b"<object", true),
    (b"<iframe", false),
    (b"<table", false),
];

/// Where the first of those tags (or `<a href`: `a` in either case, spaces, then `href`,
/// `HREF` or `Href`) ends in `data`, if anywhere. One pass over the `<` of the data.
fn first_tag_end(data: &[u8]) -> Option<usize> {
    let tag_at = |i: usize| -> Option<usize> {
        let rest = &data[i..];
        for &(tag, capitalised) in TAGS {
            let Some(head) = rest.get(..tag.len()) else { continue };
            let lower = head.eq_ignore_ascii_case(tag);
            if lower {
                let word = &head[1..];
                let all_lower = word.iter().all(|b| !b.is_ascii_uppercase());
                let all_upper = word.iter().all(|b| !b.is_ascii_lowercase());
                let cap =
                    capitalised && word[0].is_ascii_uppercase() && word[1..].iter().all(|b| !b.is_ascii_uppercase());
                if all_lower || all_upper || cap {
                    return Some(i + tag.len());
                }
            }
        }
        if matches!(rest, [b'<', b'a' | b'A', b' ', ..]) {
            let spaces = rest[2..].iter().take_while(|&&b| b == b' ').count();
            let after = &rest[2 + spaces..];
            if [&b"href"[..], b"HREF", b"Href"].iter().any(|h| after.starts_with(h)) {
                return Some(i + 2 + spaces + 4);
            }
        }
        None
    };
    memchr::memchr_iter(b'<', data).find_map(tag_at)
}

/// Whether libclamav types `data` as HTML from the start: one of its HTML tags ends within the
/// first 1,024 bytes (whatever the bytes around it).
pub fn is_html(data: &[u8]) -> bool {
    let window = &data[..data.len().min(TYPING_WINDOW)];
    first_tag_end(window).is_some()
}

/// Whether a text file holds an HTML tag anywhere (libclamav then also normalises it as HTML,
/// and not as text).
pub fn holds_html(data: &[u8]) -> bool {
    first_tag_end(data).is_some()
}

/// The two normalised forms of an HTML document.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Normalised {
    /// libclamav's `nocomment.html`.
    pub nocomment: Vec<u8>,
    /// libclamav's `notags.html`.
    pub notags: Vec<u8>,
    /// Each `data:` URI of the attributes, as the small message libclamav writes for it
    /// (`From html-normalise`, its `Content-type:`, `Content-transfer-encoding: base64` when
    /// the type says `;base64`, a blank line, the data with `%XX` escapes decoded), to be
    /// scanned as a message, as libclamav scans it.
    pub data_uris: Vec<Vec<u8>>,
    /// libclamav's `javascript`: each script of the page normalised ([`js`]), one per line;
    /// empty when the page has none.
    pub javascript: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Bad,
    Norm,
    EightBit,
    Comment,
    CharRef,
    EntityRefDecode,
    SkipWs,
    TrimWs,
    Tag,
    TagArg,
    TagArgVal,
    TagArgEqual,
    ProcessTag,
    CharRefDecode,
    Rfc2397Type,
    Rfc2397Init,
    Rfc2397Data,
    Rfc2397Finish,
    Rfc2397Esc,
    EscapeChar,
    JsDecode,
    JsDecodeLength,
    JsDecodeDecrypt,
    LookforScrenc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quoted {
    No,
    Single,
    Double,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InTag {
    None,
    Script,
    Style,
}

/// Longest tag, argument, value or entity name kept (libclamav's `HTML_STR_LENGTH`).
const STR_LENGTH: usize = 1024;
/// Chunk size (libclamav reads `8192 - 1` bytes at a time).
const CHUNK: usize = 8191;

/// C's `isspace` in the C locale.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// The next chunk of `data` from `*offset`, as libclamav's `cli_readchunk` cuts it.
fn read_chunk(data: &[u8], offset: &mut usize) -> Option<Vec<u8>> {
    let start = *offset;
    if start >= data.len() {
        return None;
    }
    let len = (data.len() - start).min(CHUNK);
    let mut chunk;
    let ptr;
    match memchr::memchr(0, &data[start..start + len]) {
        None => {
            chunk = data[start..start + len].to_vec();
            *offset += len;
            ptr = start + len;
        }
        Some(nul) => {
            chunk = data[start..start + nul].to_vec();
            let mut p = start + nul;
            while p < data.len() && chunk.len() < CHUNK {
                let c = data[p];
                p += 1;
                if c != 0 {
                    chunk.push(c);
                }
            }
            *offset += p - start;
            ptr = p;
        }
    }
    if ptr < data.len() && !is_space(data[ptr]) {
        // cut back to the last white space, if any (not down to the first byte)
        let mut n = chunk.len();
        while n > 1 && !is_space(chunk[n - 1]) {
            n -= 1;
        }
        if n > 1 && n < chunk.len() {
            *offset -= chunk.len() - n;
            chunk.truncate(n);
        }
    }
    Some(chunk)
}

/// A tag's arguments: (name, value without its quotes).
#[derive(Default)]
struct TagArgs(Vec<(Vec<u8>, Option<Vec<u8>>)>);

impl TagArgs {
    fn add(&mut self, name: &[u8], value: Option<&[u8]>) {
        let value = value.map(|v| {
            // (C strings: a value stops at a NUL byte)
            let v = &v[..v.iter().position(|&b| b == 0).unwrap_or(v.len())];
            match v.strip_prefix(b"\"") {
                Some(rest) if !rest.is_empty() => rest[..rest.len() - 1].to_vec(),
                Some(rest) => rest.to_vec(),
                None => v.to_vec(),
            }
        });
        self.0.push((name.to_vec(), value));
    }

    fn value(&self, name: &[u8]) -> Option<&[u8]> {
        self.0.iter().find(|(n, _)| n == name).and_then(|(_, v)| v.as_deref())
    }

    fn set(&mut self, name: &[u8], value: &[u8]) {
        if let Some((_, v)) = self.0.iter_mut().find(|(n, _)| n == name) {
            *v = Some(value.to_vec());
        }
    }

    /// The tag written again with these arguments (libclamav's `html_output_tag`).
    fn write_tag(&self, tag: &[u8], out: &mut Vec<u8>) {
        out.push(b'<');
        out.extend(tag);
        for (name, value) in &self.0 {
            out.push(b' ');
            out.extend(name);
            if let Some(v) = value {
                out.extend(b"=\"");
                out.extend(v.iter().map(u8::to_ascii_lowercase));
                out.push(b'"');
            }
        }
        out.push(b'>');
    }
}

/// A code point as libclamav writes it: itself below 0xff, `.` for three full stops,
/// `&#xNNNN;` otherwise; nothing for 0.
fn u16_normalize(cp: u16, out: &mut Vec<u8>) {
    match cp {
        0 => {}
        1..=0xfe => out.push(cp as u8),
        0x3002 | 0xff0e | 0xfe52 => out.push(b'.'),
        _ => out.extend(format!("&#x{cp:04x};").bytes()),
    }
}

/// Whether libclamav writes the pending multi-byte character `m` (before byte `next`) as a
/// full stop: the ideographic, full-width and small full stops, and 0xA1 before C, D or O.
fn is_full_stop(m: u32, next: u8) -> bool {
    matches!(m, 0xE38082 | 0xEFBC8E | 0xEFB992) || (m == 0xA1 && matches!(next, 0x43 | 0x44 | 0x4F))
}

/// The bytes of the pending multi-byte character `m` (up to three, without leading zeros).
fn mb_bytes(m: u32) -> Vec<u8> {
    let (c0, c1, c2) = ((m >> 16) as u8, (m >> 8) as u8, m as u8);
    let mut out = Vec::with_capacity(3);
    if c0 != 0 {
        out.push(c0);
    }
    if c0 != 0 || c1 != 0 {
        out.push(c1);
    }
    out.push(c2);
    out
}

fn entity(name: &[u8]) -> Option<Vec<u8>> {
    let name = std::str::from_utf8(name).ok()?;
    let i = entities::ENTITIES.binary_search_by(|(n, _)| (*n).cmp(name)).ok()?;
    let mut out = Vec::new();
    u16_normalize(entities::ENTITIES[i].1, &mut out);
    Some(out)
}

/// The normalised forms of `data`.
pub fn normalise(data: &[u8]) -> Normalised {
    Normaliser::default().run(data)
}

struct Normaliser {
    o2: Vec<u8>,
    text: Vec<u8>,
    state: State,
    next_state: State,
    in_tag: InTag,
    binary: bool,
    escape: bool,
    hex: bool,
    quoted: Quoted,
    value: i64,
    length: u32,
    text_space_written: bool,
    tag: Vec<u8>,
    tag_arg: Vec<u8>,
    tag_val: Vec<u8>,
    entity_val: Vec<u8>,
    args: TagArgs,
    mbchar: u32,
    mbchar2: u32,
    /// Where the current `<style>` block's text began in the current chunk.
    style_begin: usize,
    /// The `data:` URI being read, and those read.
    data_uri: Option<Vec<u8>>,
    data_uris: Vec<Vec<u8>>,
    /// The script being read, where it began in the current chunk, and the scripts done.
    js: Option<js::Script>,
    js_begin: Option<usize>,
    javascript: Vec<u8>,
    /// An encoded script being decoded (`in_screnc`), and the search for one after an ASP
    /// `<%@ language=jscript.encode %>`: where its text starts in the current chunk.
    screnc: Option<Screnc>,
    look_for_screnc: bool,
    screnc_at: Option<usize>,
    saved_next_state: State,
}

/// The state of a `jscript.encode` decoding: encoded bytes left, the position's table.
#[derive(Debug, Clone, Copy, Default)]
struct Screnc {
    length: u32,
    pos: u8,
}

/// The value libclamav gives a base64 character (-1 for any other byte).
fn base64_value(b: u8) -> i64 {
    match b {
        b'A'..=b'Z' => i64::from(b - b'A'),
        b'a'..=b'z' => i64::from(b - b'a') + 26,
        b'0'..=b'9' => i64::from(b - b'0') + 52,
        b'+' => 62,
        b'/' => 63,
        _ => -1,
    }
}

/// The length of an encoded script as its header gives it (six base64 characters of a 32-bit
/// little-endian number), read as libclamav reads it, bad characters included.
fn screnc_length(h: &[u8]) -> u32 {
    let v = |i: usize| base64_value(h[i]);
    let pos = |x: i64| x.max(0);
    let total = (pos(v(0)) << 2)
        + (v(1) >> 4)
        + ((v(1) & 0x0f) << 12)
        + (pos(v(2) >> 2) << 8)
        + ((v(2) & 0x03) << 22)
        + (pos(v(3)) << 16)
        + ((pos(v(4)) << 2) << 24)
        + (pos(v(5) >> 4) << 24);
    total as u32
}

/// The decoded byte of encoded byte `c` at position `pos` (`None` for the escape `@`).
fn screnc_byte(pos: u8, c: u8) -> Option<u8> {
    if c == b'@' {
        return None;
    }
    let table = &screnc_tables::TABLES[usize::from(screnc_tables::ORDER[usize::from(pos)])];
    Some(table.binary_search_by_key(&c, |&(from, _)| from).map_or(c, |i| table[i].1))
}

/// Decodes the encoded script in `line` from `at`, in place, as libclamav does: line ends
/// skipped, `@` escapes, a multi-byte character's two bytes copied; when the script ends, its
/// checksum and end marker (12 bytes) are dropped and the rest of the line follows the decoded
/// text, else the line ends with it.
fn screnc_decode(line: &mut Vec<u8>, at: usize, s: &mut Screnc) {
    let (mut src, mut dst) = (at, at);
    while s.length > 0 && src < line.len() {
        let c = line[src];
        if c == b'\n' || c == b'\r' {
            src += 1;
            continue;
        }
        if c < 0x80 {
            let value = match screnc_byte(s.pos, c) {
                Some(v) => v,
                None => {
                    src += 1;
                    s.length = s.length.wrapping_sub(1);
                    match line.get(src) {
                        None => {
                            src -= 1;
                            0xff
                        }
                        Some(b'!') => b'<',
                        Some(b'#') => b'\r',
                        Some(b'$') => b'@',
                        Some(b'&') => b'\n',
                        Some(b'*') => b'>',
                        Some(_) => 0xff,
                    }
                }
            };
            line[dst] = value;
            dst += 1;
            s.pos = (s.pos + 1) % 64;
        } else {
            line[dst] = c;
            dst += 1;
            src += 1;
            let Some(&trail) = line.get(src) else { break };
            line[dst] = trail;
            dst += 1;
        }
        src += 1;
        s.length = s.length.wrapping_sub(1);
    }
    if s.length == 0 {
        let rest = if line.len() - src >= 12 { src + 12 } else { src };
        line.copy_within(rest.., dst);
        line.truncate(dst + (line.len() - rest));
    } else {
        line.truncate(dst);
    }
}

impl Default for Normaliser {
    fn default() -> Self {
        Normaliser {
            o2: Vec::new(),
            text: Vec::new(),
            state: State::Norm,
            next_state: State::Bad,
            in_tag: InTag::None,
            binary: false,
            escape: false,
            hex: false,
            quoted: Quoted::No,
            value: 0,
            length: 0,
            text_space_written: false,
            tag: Vec::new(),
            tag_arg: Vec::new(),
            tag_val: Vec::new(),
            entity_val: Vec::new(),
            args: TagArgs::default(),
            mbchar: 0,
            mbchar2: 0,
            style_begin: 0,
            data_uri: None,
            data_uris: Vec::new(),
            js: None,
            js_begin: None,
            javascript: Vec::new(),
            screnc: None,
            look_for_screnc: false,
            screnc_at: None,
            saved_next_state: State::Bad,
        }
    }
}

impl Normaliser {
    fn push_val(&mut self, c: u8) {
        if self.tag_val.len() < STR_LENGTH {
            self.tag_val.push(c);
        }
    }

    fn run(mut self, data: &[u8]) -> Normalised {
        let mut offset = 0;
        while let Some(mut line) = read_chunk(data, &mut offset) {
            if self.in_tag == InTag::Style {
                self.style_begin = 0;
            }
            let mut p = 0;
            loop {
                p += line[p..].iter().take_while(|&&b| is_space(b)).count();
                while p < line.len() {
                    if !self.binary && line[p] == b'\n' {
                        line[p] = b' ';
                        continue;
                    }
                    if !self.binary && line[p] == b'\r' {
                        p += 1;
                        continue;
                    }
                    if !self.step(&mut line, &mut p) {
                        return self.finish();
                    }
                }
                // the chunk's part of the script being read
                if let Some(js) = self.js.as_mut() {
                    let begin = self.js_begin.take().unwrap_or(0);
                    if line.len() > begin {
                        js.process(&line[begin..]);
                    }
                }
                // an encoded script found after `<%@ … %>`: the chunk again from its start
                match self.screnc_at.take() {
                    Some(at) if self.look_for_screnc => {
                        p = at;
                        self.to(State::JsDecodeLength, State::Bad);
                    }
                    _ => break,
                }
            }
            if self.screnc.is_some() {
                self.to(State::JsDecodeDecrypt, State::Bad);
            } else if self.look_for_screnc && self.screnc_at.is_none() && self.state != State::LookforScrenc {
                self.saved_next_state = self.next_state;
                self.next_state = self.state;
                self.state = State::LookforScrenc;
            }
            if self.next_state == self.state {
                self.next_state = State::Bad;
            }
        }
        self.finish()
    }

    /// Unfinished entities at the end, then the result.
    fn finish(mut self) -> Normalised {
        if let Some(v) = entity(&self.entity_val) {
            self.o2.extend(v);
        } else if !self.entity_val.is_empty() {
            self.o2.push(b'&');
            let lower: Vec<u8> = self.entity_val.iter().map(u8::to_ascii_lowercase).collect();
            self.o2.extend(lower);
        }
        self.end_data_uri();
        if let Some(js) = self.js.take() {
            js.finish(&mut self.javascript);
        }
        Normalised { nocomment: self.o2, notags: self.text, data_uris: self.data_uris, javascript: self.javascript }
    }

    fn end_data_uri(&mut self) {
        if let Some(uri) = self.data_uri.take() {
            self.data_uris.push(uri);
        }
    }

    /// A byte of the current `data:` URI's data.
    fn data(&mut self, b: u8) {
        if let Some(uri) = self.data_uri.as_mut() {
            uri.push(b);
        }
    }

    /// An attribute's `=` at `*p`: its value follows.
    fn begin_value(&mut self, p: &mut usize) {
        self.o2.push(b'=');
        *p += 1;
        self.escape = false;
        self.quoted = Quoted::No;
        self.tag_val.clear();
        self.to(State::SkipWs, State::TagArgVal);
    }

    fn to(&mut self, state: State, next: State) {
        self.state = state;
        self.next_state = next;
    }

    /// One step of the state machine at `line[*p]`; `false` ends the normalisation (libclamav's
    /// engine error).
    fn step(&mut self, line: &mut Vec<u8>, p: &mut usize) -> bool {
        let c = line[*p];
        let extracting = self.in_tag != InTag::None;
        match self.state {
            State::Bad => return false,
            State::SkipWs => {
                if is_space(c) {
                    *p += 1;
                } else {
                    let next = self.next_state;
                    self.to(next, State::Bad);
                }
            }
            State::TrimWs => {
                if is_space(c) {
                    *p += 1;
                } else {
                    if !extracting {
                        self.o2.push(b' ');
                    }
                    let next = self.next_state;
                    self.to(next, State::Bad);
                }
            }
            State::EightBit => {
                if c < 0x80 || self.mbchar >= 0x10000 {
                    let m = self.mbchar;
                    if is_full_stop(m, c) {
                        self.o2.push(b'.');
                        self.text.push(b'.');
                        if m == 0xA1 {
                            *p += 1;
                            self.mbchar = 0;
                            return true;
                        }
                    } else {
                        let bytes = mb_bytes(m);
                        self.o2.extend(&bytes);
                        // (libclamav writes the middle byte to the text in place of the last)
                        self.text.extend(&bytes[..bytes.len() - 1]);
                        self.text.push((m >> 8) as u8);
                    }
                    self.mbchar = 0;
                    let next = self.next_state;
                    self.to(next, State::Norm);
                } else {
                    self.mbchar = (self.mbchar << 8) | u32::from(c);
                    *p += 1;
                }
            }
            State::Norm => {
                if c == b'<' {
                    self.o2.push(b'<');
                    if !extracting && !self.text_space_written {
                        self.text.push(b' ');
                        self.text_space_written = true;
                    }
                    *p += 1;
                    self.tag.clear();
                    self.to(State::SkipWs, State::Tag);
                } else if is_space(c) {
                    if !self.text_space_written && !extracting {
                        self.text.push(b' ');
                        self.text_space_written = true;
                    }
                    self.to(State::TrimWs, State::Norm);
                } else if c == b'&' {
                    if !self.text_space_written && !extracting {
                        self.text.push(b' ');
                        self.text_space_written = true;
                    }
                    self.to(State::CharRef, State::Norm);
                    *p += 1;
                } else if c >= 0x80 {
                    self.to(State::EightBit, State::Norm);
                    self.mbchar = u32::from(c);
                    *p += 1;
                } else {
                    let mut l = c.to_ascii_lowercase();
                    if extracting && l == b'\'' {
                        l = b'"';
                    }
                    self.o2.push(l);
                    if !extracting {
                        if c < 0x20 {
                            if !self.text_space_written {
                                self.text.push(b' ');
                                self.text_space_written = true;
                            }
                        } else {
                            self.text.push(l);
                            self.text_space_written = false;
                        }
                    }
                    *p += 1;
                }
            }
            State::Tag => {
                if self.tag.is_empty() && c == b'!' {
                    if extracting {
                        self.o2.push(b'!');
                    } else {
                        // rewind the '<' already written
                        self.o2.pop();
                    }
                    self.to(State::Comment, State::Bad);
                    *p += 1;
                } else if c == b'>' {
                    self.o2.push(b'>');
                    *p += 1;
                    self.to(State::SkipWs, State::ProcessTag);
                } else if !is_space(c) {
                    let l = c.to_ascii_lowercase();
                    self.o2.push(l);
                    if extracting && self.tag.is_empty() && c != b'/' {
                        self.state = State::Norm;
                    }
                    if self.tag.len() < STR_LENGTH {
                        self.tag.push(l);
                    }
                    *p += 1;
                } else {
                    self.tag_arg.clear();
                    let next = if extracting { State::ProcessTag } else { State::TagArg };
                    self.to(State::SkipWs, next);
                }
            }
            State::TagArg => {
                if c == b'=' {
                    self.begin_value(p);
                } else if is_space(c) {
                    *p += 1;
                    self.to(State::SkipWs, State::TagArgEqual);
                } else if c == b'>' {
                    self.o2.push(b'>');
                    if !self.tag_arg.is_empty() {
                        let name = self.tag_arg.clone();
                        self.args.add(&name, None);
                    }
                    *p += 1;
                    self.to(State::ProcessTag, State::Bad);
                } else {
                    if self.tag_arg.is_empty() {
                        self.o2.push(b' ');
                    }
                    let l = c.to_ascii_lowercase();
                    self.o2.push(l);
                    if self.tag_arg.len() < STR_LENGTH {
                        self.tag_arg.push(l);
                    }
                    *p += 1;
                }
            }
            State::TagArgEqual => {
                if c == b'=' {
                    self.begin_value(p);
                } else {
                    if !self.tag_arg.is_empty() {
                        let name = self.tag_arg.clone();
                        self.args.add(&name, None);
                    }
                    self.tag_arg.clear();
                    self.to(State::TagArg, State::Bad);
                }
            }
            State::TagArgVal => {
                if self.tag_val == b"data:" || self.tag_val == b"\"data:" {
                    // an RFC 2397 URI: its data is not written here
                    self.o2.pop();
                    if self.quoted != Quoted::No {
                        self.o2.push(b'"');
                    }
                    self.tag_val.clear();
                    self.to(State::Rfc2397Type, State::TagArg);
                } else if c == b'&' {
                    self.to(State::CharRef, State::TagArgVal);
                    *p += 1;
                } else if c == b'\'' || c == b'"' {
                    let mine = if c == b'\'' { Quoted::Single } else { Quoted::Double };
                    self.o2.push(b'"');
                    self.push_val(b'"');
                    *p += 1;
                    if self.tag_val.len() == 1 && self.quoted == Quoted::No {
                        // (the first quote opened the value)
                        self.quoted = mine;
                    } else if !self.escape && self.quoted == mine {
                        let (name, val) = (self.tag_arg.clone(), self.tag_val.clone());
                        self.args.add(&name, Some(&val));
                        self.tag_arg.clear();
                        self.to(State::SkipWs, State::TagArg);
                    }
                } else if is_space(c) || c == b'>' {
                    if self.quoted == Quoted::No {
                        let (name, val) = (self.tag_arg.clone(), self.tag_val.clone());
                        self.args.add(&name, Some(&val));
                        self.tag_arg.clear();
                        self.to(State::SkipWs, State::TagArg);
                    } else {
                        self.o2.push(c);
                        self.push_val(if is_space(c) { b' ' } else { b'>' });
                        self.escape = false;
                        self.quoted = Quoted::No;
                        *p += 1;
                        self.to(State::SkipWs, State::TagArgVal);
                    }
                } else {
                    let m = self.mbchar2;
                    if m != 0 && (c < 0x80 || m >= 0x10000) {
                        if is_full_stop(m, c) {
                            self.o2.push(b'.');
                            self.push_val(b'.');
                            if m == 0xA1 {
                                *p += 1;
                                self.mbchar2 = 0;
                                return true;
                            }
                        } else {
                            for b in mb_bytes(m) {
                                self.o2.push(b);
                                self.push_val(b);
                            }
                        }
                        self.mbchar2 = 0;
                    }
                    if c >= 0x80 {
                        self.mbchar2 = (self.mbchar2 << 8) | u32::from(c);
                    } else {
                        self.o2.push(c.to_ascii_lowercase());
                        self.push_val(c);
                    }
                    *p += 1;
                }
                self.escape = line.get(*p) == Some(&b'\\');
            }
            State::Comment => {
                if extracting && !is_space(c) {
                    let mut l = c.to_ascii_lowercase();
                    if l == b'\'' {
                        l = b'"';
                    }
                    self.o2.push(l);
                }
                if c == b'>' {
                    self.to(State::SkipWs, State::Norm);
                }
                *p += 1;
            }
            State::ProcessTag => {
                self.to(State::SkipWs, State::Norm);
                if !self.process_tag(line, *p) {
                    return false;
                }
            }
            State::JsDecode => {
                // an encoded script: written as it is up to the start marker, which becomes a
                // JavaScript comment
                if line[*p..].starts_with(b"#@~^") {
                    line[*p] = b'/';
                    line[*p + 1] = b'/';
                    *p += 4;
                    self.to(State::JsDecodeLength, State::Bad);
                } else {
                    self.o2.push(c.to_ascii_lowercase());
                    *p += 1;
                }
            }
            State::JsDecodeLength => {
                if line.len() - *p < 8 {
                    self.to(State::Norm, State::Bad);
                } else {
                    self.screnc = Some(Screnc { length: screnc_length(&line[*p..*p + 6]), pos: 0 });
                    // the comment ends with the length
                    line[*p + 7] = b'\n';
                    *p += 8;
                    self.to(State::JsDecodeDecrypt, State::Bad);
                }
            }
            State::JsDecodeDecrypt => {
                let mut s = self.screnc.take().unwrap_or_default();
                screnc_decode(line, *p, &mut s);
                if s.length != 0 {
                    self.screnc = Some(s);
                }
                self.to(State::Norm, State::Bad);
            }
            State::LookforScrenc => {
                self.look_for_screnc = true;
                if let Some(i) = memchr::memmem::find(&line[*p..], b"#@~^") {
                    let at = *p + i;
                    line[at] = b'/';
                    line[at + 1] = b'/';
                    self.screnc_at = Some(at + 4);
                }
                let next = self.next_state;
                self.to(next, self.saved_next_state);
            }
            State::CharRef => {
                if c == b'#' {
                    self.value = 0;
                    self.hex = false;
                    self.state = State::CharRefDecode;
                    *p += 1;
                } else {
                    self.state = State::EntityRefDecode;
                }
            }
            State::EntityRefDecode => {
                let in_val = self.next_state == State::TagArgVal;
                if c == b';' {
                    match entity(&self.entity_val) {
                        Some(v) => {
                            for &b in &v {
                                self.o2.push(b);
                                if in_val {
                                    self.push_val(b);
                                }
                            }
                        }
                        None => {
                            self.o2.push(b'&');
                            if in_val {
                                self.push_val(b'&');
                            }
                            for b in self.entity_val.clone() {
                                let l = b.to_ascii_lowercase();
                                self.o2.push(l);
                                if in_val {
                                    self.push_val(l);
                                }
                            }
                            if in_val {
                                self.push_val(b';');
                            }
                            self.o2.push(b';');
                        }
                    }
                    self.entity_val.clear();
                    let next = self.next_state;
                    self.to(next, State::Bad);
                    *p += 1;
                } else if (c.is_ascii_alphanumeric() || matches!(c, b'_' | b':' | b'-'))
                    && self.entity_val.len() < STR_LENGTH
                {
                    self.entity_val.push(c);
                    *p += 1;
                } else {
                    if in_val {
                        self.push_val(b'&');
                    }
                    self.o2.push(b'&');
                    for b in self.entity_val.clone() {
                        let l = b.to_ascii_lowercase();
                        self.o2.push(l);
                        if in_val {
                            self.push_val(l);
                        }
                    }
                    self.entity_val.clear();
                    let next = self.next_state;
                    self.to(next, State::Bad);
                }
            }
            State::CharRefDecode => {
                if self.value == 0 && (c == b'x' || c == b'X') {
                    self.hex = true;
                    *p += 1;
                } else if c == b';' {
                    if self.next_state == State::TagArgVal {
                        self.push_val(self.value as u8);
                    }
                    if self.value < 0x80 {
                        self.o2.push((self.value as u8).to_ascii_lowercase());
                    } else {
                        let mut out = Vec::new();
                        u16_normalize(self.value as u16, &mut out);
                        self.o2.extend(out);
                    }
                    let next = self.next_state;
                    self.to(next, State::Bad);
                    *p += 1;
                } else if c.is_ascii_digit() || (self.hex && c.is_ascii_hexdigit()) {
                    let base = if self.hex { 16 } else { 10 };
                    let digit =
                        i64::from(if c.is_ascii_digit() { c - b'0' } else { c.to_ascii_lowercase() - b'a' + 10 });
                    match self.value.checked_mul(base).and_then(|v| v.checked_add(digit)) {
                        Some(v) => {
                            self.value = v;
                            *p += 1;
                        }
                        None => {
                            self.o2.push(self.value as u8);
                            let next = self.next_state;
                            self.to(next, State::Bad);
                            *p += 1;
                        }
                    }
                } else {
                    self.o2.push(self.value as u8);
                    let next = self.next_state;
                    self.to(next, State::Bad);
                }
            }
            State::Rfc2397Type => {
                if c == b'\'' || c == b'"' {
                    let mine = if c == b'\'' { Quoted::Single } else { Quoted::Double };
                    *p += 1;
                    if !self.escape && self.quoted == mine {
                        self.tag_arg.clear();
                        self.to(State::SkipWs, State::TagArg);
                    } else {
                        self.push_val(b'"');
                    }
                } else if is_space(c) || c == b'>' {
                    if self.quoted == Quoted::No {
                        self.tag_arg.clear();
                        self.to(State::SkipWs, State::TagArg);
                    } else {
                        self.push_val(if is_space(c) { b' ' } else { b'>' });
                        self.escape = false;
                        self.quoted = Quoted::No;
                        *p += 1;
                        self.to(State::SkipWs, State::Rfc2397Type);
                    }
                } else if c == b',' {
                    self.escape = false;
                    *p += 1;
                    self.to(State::Rfc2397Init, State::Bad);
                } else {
                    self.push_val(c.to_ascii_lowercase());
                    *p += 1;
                }
                self.escape = line.get(*p) == Some(&b'\\');
            }
            State::Rfc2397Init => {
                self.end_data_uri();
                let mut head = b"From html-normalise\nContent-type: ".to_vec();
                head.extend(&self.tag_val);
                head.push(b'\n');
                if memchr::memmem::find(&self.tag_val, b";base64").is_some() {
                    head.extend(b"Content-transfer-encoding: base64\n");
                }
                head.push(b'\n');
                self.data_uri = Some(head);
                self.state = State::Rfc2397Data;
                self.binary = true;
            }
            State::Rfc2397Data => {
                if c == b'&' {
                    self.to(State::CharRef, State::Rfc2397Data);
                    *p += 1;
                } else if c == b'%' {
                    self.length = 0;
                    self.value = 0;
                    self.to(State::EscapeChar, State::Rfc2397Esc);
                    *p += 1;
                } else if c == b'\'' || c == b'"' {
                    let mine = if c == b'\'' { Quoted::Single } else { Quoted::Double };
                    if !self.escape && self.quoted == mine {
                        self.state = State::Rfc2397Finish;
                    } else {
                        self.data(c);
                    }
                    *p += 1;
                } else if is_space(c) || c == b'>' {
                    if self.quoted == Quoted::No {
                        self.state = State::Rfc2397Finish;
                    } else {
                        self.data(c);
                    }
                    *p += 1;
                } else {
                    self.data(c);
                    *p += 1;
                }
                self.escape = line.get(*p) == Some(&b'\\');
            }
            State::Rfc2397Finish => {
                self.end_data_uri();
                self.escape = false;
                self.quoted = Quoted::No;
                self.binary = false;
                self.to(State::SkipWs, State::TagArg);
            }
            State::Rfc2397Esc => {
                match self.length {
                    2 => self.data(self.value as u8),
                    1 => {
                        self.data(b'%');
                        self.data((self.value as u8).wrapping_add(b'0'));
                    }
                    _ => self.data(b'%'),
                }
                self.state = State::Rfc2397Data;
            }
            State::EscapeChar => {
                match self.value.checked_mul(16) {
                    Some(v) => self.value = v,
                    None => {
                        let next = self.next_state;
                        self.to(next, State::Bad);
                        *p += 1;
                        return true;
                    }
                }
                self.length += 1;
                if c.is_ascii_hexdigit() {
                    self.value +=
                        i64::from(if c.is_ascii_digit() { c - b'0' } else { c.to_ascii_lowercase() - b'a' + 10 });
                } else {
                    self.state = self.next_state;
                }
                if self.length == 2 {
                    self.state = self.next_state;
                }
                *p += 1;
            }
        }
        true
    }

    /// A tag that ended, at `p` in the chunk: scripts and styles begin and end; `<a href>` and
    /// `<img src>` give their link to the text. `false` ends the normalisation: libclamav stops
    /// where a `</style>` seems to end before its block began (when the tag is processed in the
    /// next chunk).
    fn process_tag(&mut self, line: &[u8], p: usize) -> bool {
        let tag = self.tag.clone();
        if tag.first() == Some(&b'/') {
            if tag == b"/script" {
                self.in_tag = InTag::None;
                if let Some(mut js) = self.js.take() {
                    let begin = self.js_begin.take().unwrap_or(0);
                    if p > begin {
                        js.process(&line[begin..p]);
                    }
                    js.finish(&mut self.javascript);
                }
            } else if tag == b"/style" && self.in_tag == InTag::Style {
                if (p as isize) - 8 < self.style_begin as isize {
                    return false;
                }
                self.in_tag = InTag::None;
            }
        } else if tag == b"script" {
            let language = self.args.value(b"language").map(<[u8]>::to_ascii_lowercase);
            let plain: Option<&[u8]> = match language.as_deref() {
                Some(b"jscript.encode") => Some(b"javascript"),
                Some(b"vbscript.encode") => Some(b"vbscript"),
                _ => None,
            };
            if let Some(plain) = plain {
                self.args.set(b"language", plain);
                self.to(State::SkipWs, State::JsDecode);
                self.args.write_tag(&tag, &mut self.o2);
            }
            self.in_tag = InTag::Script;
            if self.js.is_none() {
                self.js = Some(js::Script::default());
                self.js_begin = Some(p);
            }
        } else if tag == b"%@" {
            let language = self.args.value(b"language").map(<[u8]>::to_ascii_lowercase);
            if matches!(language.as_deref(), Some(b"jscript.encode" | b"vbscript.encode")) {
                self.saved_next_state = self.next_state;
                self.next_state = self.state;
                self.look_for_screnc = false;
                self.state = State::LookforScrenc;
            }
        } else if tag == b"style" {
            self.in_tag = InTag::Style;
            self.style_begin = p;
        } else if tag == b"a" || tag == b"img" {
            let attr: &[u8] = if tag == b"a" { b"href" } else { b"src" };
            if let Some(v) = self.args.value(attr).filter(|v| !v.is_empty()) {
                let v = v.to_vec();
                self.text.extend(v);
                self.text.push(b' ');
                self.text_space_written = true;
            }
        }
        self.args = TagArgs::default();
        true
    }
}

#[cfg(test)]
mod tests;
