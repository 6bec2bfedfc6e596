//! ClamAV body-signature patterns (`.ndb` hex signatures and `.ldb` sub-signatures).
//!
//! Supported: hex bytes, `??`, nibbles `a?` / `?a`, `*`, `{n}`, `{-n}`, `{n-}`, `{n-m}`,
//! `[n-m]`, alternatives `(aa|bbcc|…)` — with `??`, nibbles, `{n}` and nested alternations
//! inside, expanded into byte strings — and negated alternatives `!(aa|bb)`, `!(aabb|ccdd)`
//! (exact byte strings of one length).

use std::fmt;

/// Byte strings one alternation may expand to (nested alternations multiply); beyond this a
/// signature is counted as unsupported.
const MAX_ALTERNATIVES: usize = 1024;
/// Longest fixed jump inside an alternation (expanded into wildcard bytes).
const MAX_FIXED_JUMP_IN_ALTERNATIVE: usize = 256;

/// One byte position: value and mask (mask bits that must match).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteMatch {
    /// The byte (its masked bits).
    pub value: u8,
    /// Which bits must match.
    pub mask: u8,
}

impl ByteMatch {
    /// Whether `b` matches.
    #[inline]
    pub fn matches(self, b: u8) -> bool {
        b & self.mask == self.value
    }

    /// A fully specified byte.
    pub fn exact(value: u8) -> Self {
        ByteMatch { value, mask: 0xff }
    }

    fn is_exact(self) -> bool {
        self.mask == 0xff
    }
}

/// A piece of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Bytes to match one after the other.
    Bytes(Vec<ByteMatch>),
    /// One of several byte strings (possibly of different lengths).
    Alt(Vec<Vec<ByteMatch>>),
    /// Any byte string of the alternatives' (common) length except these.
    NotAlt(Vec<Vec<u8>>),
    /// One byte of a class, or nothing at the start or end of the data (`(B)`, `(W)`, `(L)`).
    Class(Class),
    /// One byte not of a class (`!(B)`, `!(W)`, `!(L)`): never at the start or end of the data.
    NotClass(Class),
    /// Skip between `min` and `max` bytes (`None` = unbounded).
    Gap {
        /// At least.
        min: usize,
        /// At most.
        max: Option<usize>,
    },
}

/// A character class of ClamAV's body signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// `(B)` inside a pattern: a word boundary byte of either set below, or the start or end
    /// of the data.
    Boundary,
    /// `(B)` beginning a pattern: `space - . / < @ _` (libclamav's set), or the start of the data.
    BoundaryBefore,
    /// `(B)` ending a pattern: `\n \r space " ' - / = > _`, or the end of the data.
    BoundaryAfter,
    /// `(W)`: one byte that is not an ASCII letter or digit, or the start or end of the data.
    NonWord,
    /// `(L)` inside a pattern: `\n`.
    Line,
    /// `(L)` beginning a pattern: `\n`, or the start of the data.
    LineBefore,
    /// `(L)` ending a pattern: `\n` or `\r\n`, or the end of the data.
    LineAfter,
}

impl Class {
    /// Whether `b` is of the class.
    pub fn contains(self, b: u8) -> bool {
        let after = matches!(b, b'\n' | b'\r' | b' ' | b'"' | b'\'' | b'-' | b'/' | b'=' | b'>' | b'_');
        let before = matches!(b, b' ' | b'-' | b'.' | b'/' | b'<' | b'@' | b'_');
        match self {
            Class::BoundaryAfter => after,
            Class::BoundaryBefore => before,
            Class::Boundary => after || before,
            Class::NonWord => !b.is_ascii_alphanumeric(),
            // (one byte of a line break: the matcher takes `\r\n` as a whole)
            Class::Line | Class::LineBefore | Class::LineAfter => b == b'\n',
        }
    }
}

/// A parsed pattern: pieces in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// Its pieces.
    pub pieces: Vec<Piece>,
    /// `::f`: a match counts only between bytes that are not letters or digits (or the ends of
    /// the data).
    pub fullword: bool,
}

/// Why a hex signature could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// Not valid hex signature syntax.
    #[error("invalid hex signature: {0}")]
    Syntax(String),
    /// Valid, but not built here.
    #[error("unsupported signature syntax: {0}")]
    Unsupported(String),
}

impl Pattern {
    /// Parses ClamAV hex signature syntax.
    pub fn parse(hex: &str) -> Result<Pattern, PatternError> {
        let pat = Pattern::parse_unchecked(hex)?;
        check_classes(&pat.pieces).map_err(|e| PatternError::Syntax(format!("{hex:?}: {e}")))?;
        Ok(pat)
    }

    /// [`Pattern::parse`] without the check of where character classes stand, which a logical
    /// sub-signature's modifiers ([`Pattern::with_modifiers`]) make on each form they produce
    /// (libclamav checks the widened text).
    pub fn parse_unchecked(hex: &str) -> Result<Pattern, PatternError> {
        check_brackets(hex.trim()).map_err(PatternError::Syntax)?;
        let s = hex.trim().as_bytes();
        let mut p = Parser { s, i: 0, pieces: Vec::new() };
        p.run()?;
        let mut pieces = p.pieces;
        // `(B)` means other bytes before a pattern than after it
        // and `(L)` a line break or the edge of the data there, a line break inside
        match pieces.last_mut() {
            Some(Piece::Class(c @ Class::Boundary)) => *c = Class::BoundaryAfter,
            Some(Piece::Class(c @ Class::Line)) => *c = Class::LineAfter,
            _ => {}
        }
        match pieces.first_mut() {
            Some(Piece::Class(c @ Class::Boundary)) => *c = Class::BoundaryBefore,
            Some(Piece::Class(c @ Class::Line)) => *c = Class::LineBefore,
            _ => {}
        }
        if let Some(Piece::NotClass(c @ (Class::Boundary | Class::Line))) = pieces.last_mut() {
            *c = if *c == Class::Boundary { Class::BoundaryAfter } else { Class::LineAfter }
        }
        if let Some(Piece::NotClass(c @ (Class::Boundary | Class::Line))) = pieces.first_mut() {
            *c = if *c == Class::Boundary { Class::BoundaryBefore } else { Class::LineBefore }
        }
        let pat = Pattern { pieces, fullword: false };
        if !pat.pieces.iter().any(|p| !matches!(p, Piece::Gap { .. })) {
            return Err(PatternError::Syntax(format!("{hex:?} matches nothing specific")));
        }
        Ok(pat)
    }

    /// The forms a logical sub-signature's modifiers (`::i`, `::w`, `::a`, `::f`) make of this
    /// pattern: `i` matches letters in either case, `w` matches the UTF-16LE ("wide") form
    /// (each byte followed by a zero byte) instead, `wa` both forms (their matches count
    /// together), `f` a match only between bytes that are not letters or digits. `i` with an
    /// alternation is malformed, as in ClamAV; `w` with jumps or negations and `f` on a pattern
    /// of varying length are not built.
    pub fn with_modifiers(self, modifiers: &str) -> Result<Vec<Pattern>, PatternError> {
        let forms = self.forms(modifiers)?;
        for f in &forms {
            check_classes(&f.pieces).map_err(|e| PatternError::Syntax(format!("a form made by ::{modifiers}: {e}")))?;
        }
        Ok(forms)
    }

    fn forms(self, modifiers: &str) -> Result<Vec<Pattern>, PatternError> {
        if modifiers.is_empty() {
            return Ok(vec![self]);
        }
        let has = |c: char| modifiers.contains(c);
        if let Some(bad) = modifiers.chars().find(|c| !"iwaf".contains(*c)) {
            return Err(PatternError::Syntax(format!("unknown sub-signature modifier {bad:?}")));
        }
        let mut plain = self;
        // `::f`: libclamav puts `(W)` before and after the pattern (kept on a fixed-length
        // pattern as a check of the bytes around its match; on one of varying length, as
        // classes); not on a wide form
        let fullword = |mut p: Pattern| -> Result<Pattern, PatternError> {
            if p.fixed_len().is_some() {
                p.fullword = true;
            } else if p.pieces.iter().any(|x| matches!(x, Piece::Alt(a) if a.iter().any(|y| y.len() != a[0].len()))) {
                return Err(PatternError::Syntax("::f with alternatives of different lengths".into()));
            } else {
                p.pieces.insert(0, Piece::Class(Class::NonWord));
                p.pieces.push(Piece::Class(Class::NonWord));
            }
            Ok(p)
        };
        if has('i') {
            if plain.pieces.iter().any(|p| matches!(p, Piece::Alt(_) | Piece::NotAlt(_))) {
                return Err(PatternError::Syntax("::i (no case) with an alternation".into()));
            }
            for p in &mut plain.pieces {
                if let Piece::Bytes(bytes) = p {
                    for b in bytes.iter_mut().filter(|b| b.mask == 0xff && b.value.is_ascii_alphabetic()) {
                        *b = ByteMatch { value: b.value & 0xdf, mask: 0xdf };
                    }
                }
            }
        }
        if !has('w') {
            return Ok(vec![if has('f') { fullword(plain)? } else { plain }]);
        }
        // libclamav widens the hex text: every byte (wildcards too) is followed by a zero
        // byte, in alternatives as well; jumps and character classes stay as written (a jump
        // counts raw bytes); a negation cannot be widened, and two forms (`::wa`) of a pattern
        // split by an unbounded jump are refused
        if plain.pieces.iter().any(|p| matches!(p, Piece::NotAlt(_))) {
            return Err(PatternError::Syntax("::w (wide) with a negated alternation".into()));
        }
        if has('a') && plain.pieces.iter().any(|p| matches!(p, Piece::Gap { max: None, .. })) {
            return Err(PatternError::Syntax("::wa with an unbounded jump".into()));
        }
        let widen = |b: &[ByteMatch]| -> Vec<ByteMatch> { b.iter().flat_map(|&x| [x, ByteMatch::exact(0)]).collect() };
        let wide = Pattern {
            // (libclamav does not hold a wide form to word boundaries)
            fullword: false,
            pieces: plain
                .pieces
                .iter()
                .map(|p| match p {
                    Piece::Bytes(b) => Piece::Bytes(widen(b)),
                    Piece::Alt(a) => Piece::Alt(a.iter().map(|x| widen(x)).collect()),
                    other => other.clone(),
                })
                .collect(),
        };
        Ok(if has('a') { vec![if has('f') { fullword(plain)? } else { plain }, wide] } else { vec![wide] })
    }

    /// Whether the pattern could match normalised text ([`crate::filetype::normalize_text`]):
    /// no exactly specified byte outside its alphabet, no two spaces in a row.
    pub fn can_match_normalized(&self) -> bool {
        let ok = |run: &[ByteMatch]| {
            let exact = |b: &ByteMatch| b.mask == 0xff;
            run.iter().all(|b| !exact(b) || crate::filetype::in_normalized_alphabet(b.value))
                && !run.windows(2).any(|w| w.iter().all(|b| exact(b) && b.value == b' '))
        };
        self.pieces.iter().all(|p| match p {
            Piece::Bytes(b) => ok(b),
            Piece::Alt(alts) => alts.iter().any(|a| ok(a)),
            Piece::NotAlt(_) | Piece::Gap { .. } | Piece::Class(_) | Piece::NotClass(_) => true,
        })
    }

    /// The length of every match, when all pieces have one length.
    pub fn fixed_len(&self) -> Option<usize> {
        self.pieces.iter().try_fold(0usize, |n, p| {
            Some(
                n + match p {
                    Piece::Bytes(b) => b.len(),
                    Piece::Alt(a) if a.iter().all(|x| x.len() == a[0].len()) => a[0].len(),
                    Piece::Alt(_) => return None,
                    Piece::NotAlt(a) => a.first().map_or(1, Vec::len),
                    Piece::NotClass(_) => 1,
                    Piece::Class(_) => return None,
                    Piece::Gap { min, max } if *max == Some(*min) => *min,
                    Piece::Gap { .. } => return None,
                },
            )
        })
    }

    /// Sum of the fixed-width parts (lower bound of a match's length).
    pub fn fixed_len_min(&self) -> usize {
        self.pieces
            .iter()
            .map(|p| match p {
                Piece::Bytes(b) => b.len(),
                Piece::Alt(a) => a.iter().map(Vec::len).min().unwrap_or(0),
                Piece::NotAlt(a) => a.first().map_or(1, Vec::len),
                Piece::Class(_) => 0,
                Piece::NotClass(_) => 1,
                Piece::Gap { min, .. } => *min,
            })
            .sum()
    }

    /// The longest run of exactly specified bytes (at least `min` long) that lies at a fixed
    /// distance from the pattern start: (piece index, offset inside the piece, bytes).
    pub fn anchor(&self, min: usize) -> Option<(usize, usize, Vec<u8>)> {
        let mut best: Option<(usize, usize, Vec<u8>)> = None;
        for (pi, piece) in self.pieces.iter().enumerate() {
            let Piece::Bytes(bytes) = piece else { continue };
            let mut start = 0;
            while start < bytes.len() {
                if !bytes[start].is_exact() {
                    start += 1;
                    continue;
                }
                let end = (start..bytes.len()).find(|&k| !bytes[k].is_exact()).unwrap_or(bytes.len());
                let run: Vec<u8> = bytes[start..end].iter().map(|b| b.value).collect();
                if run.len() >= min && best.as_ref().is_none_or(|b| run.len() > b.2.len()) {
                    best = Some((pi, start, run));
                }
                start = end;
            }
        }
        best
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    pieces: Vec<Piece>,
}

impl Parser<'_> {
    fn err(&self, why: &str) -> PatternError {
        PatternError::Syntax(format!("{why} at position {} of {:?}", self.i, String::from_utf8_lossy(self.s)))
    }

    fn push_byte(&mut self, b: ByteMatch) {
        if let Some(Piece::Bytes(v)) = self.pieces.last_mut() {
            v.push(b);
        } else {
            self.pieces.push(Piece::Bytes(vec![b]));
        }
    }

    fn push_gap(&mut self, min: usize, max: Option<usize>) {
        if let Some(Piece::Gap { min: m, max: x }) = self.pieces.last_mut() {
            *m += min;
            *x = match (*x, max) {
                (Some(a), Some(b)) => Some(a + b),
                _ => None,
            };
        } else {
            self.pieces.push(Piece::Gap { min, max });
        }
    }

    fn run(&mut self) -> Result<(), PatternError> {
        while self.i < self.s.len() {
            match self.s[self.i] {
                b'*' => {
                    self.push_gap(0, None);
                    self.i += 1;
                }
                b'{' | b'[' => {
                    let close = if self.s[self.i] == b'{' { b'}' } else { b']' };
                    let end =
                        self.s[self.i..].iter().position(|&c| c == close).ok_or_else(|| self.err("unclosed jump"))?;
                    let body =
                        std::str::from_utf8(&self.s[self.i + 1..self.i + end]).map_err(|_| self.err("bad jump"))?;
                    let range = if close == b']' { bracket_range(body) } else { parse_jump(body) };
                    let (min, max) = range.ok_or_else(|| self.err("bad jump"))?;
                    self.push_gap(min, max);
                    self.i += end + 1;
                }
                b'!' => {
                    if self.s.get(self.i + 1) != Some(&b'(') {
                        return Err(self.err("'!' without '('"));
                    }
                    self.i += 1;
                    let class = match self.s.get(self.i + 1..self.i + 3) {
                        Some(b"B)") => Some(Class::Boundary),
                        Some(b"W)") => Some(Class::NonWord),
                        Some(b"L)") => Some(Class::Line),
                        _ => None,
                    };
                    if let Some(class) = class {
                        self.pieces.push(Piece::NotClass(class));
                        self.i += 3;
                        continue;
                    }
                    let alts = self.alternatives()?;
                    // as in ClamAV: exact bytes only, every alternative of one length
                    if alts.iter().any(|a| !a.iter().all(|b| b.is_exact())) {
                        return Err(self.err("negated alternation with wildcards"));
                    }
                    if alts.iter().any(|a| a.len() != alts[0].len()) {
                        return Err(self.err("negated alternation of different lengths"));
                    }
                    self.pieces.push(Piece::NotAlt(alts.iter().map(|a| a.iter().map(|b| b.value).collect()).collect()));
                }
                b'(' => {
                    let next = self.s.get(self.i + 1).copied();
                    if matches!(next, Some(b'B' | b'W' | b'L')) && self.s.get(self.i + 2) == Some(&b')') {
                        let class = match next {
                            Some(b'B') => Class::Boundary,
                            Some(b'L') => Class::Line,
                            _ => Class::NonWord,
                        };
                        self.pieces.push(Piece::Class(class));
                        self.i += 3;
                        continue;
                    }
                    let alts = self.alternatives()?;
                    self.pieces.push(Piece::Alt(alts));
                }
                _ => {
                    let b = self.hex_byte()?;
                    self.push_byte(b);
                }
            }
        }
        Ok(())
    }

    /// Parses `(aa|bbcc|…)` starting at '(' into its alternatives, each a byte string. An
    /// alternative may hold single-byte wildcards (`??`, nibbles), fixed jumps `{n}` and nested
    /// alternations, which are expanded (ClamAV's generic alternatives); a ranged or unbounded
    /// jump inside one is malformed, as ClamAV says.
    fn alternatives(&mut self) -> Result<Vec<Vec<ByteMatch>>, PatternError> {
        debug_assert_eq!(self.s.get(self.i), Some(&b'('));
        self.i += 1;
        let mut alts: Vec<Vec<ByteMatch>> = Vec::new();
        // the expansions of the alternative being read
        let mut current: Vec<Vec<ByteMatch>> = vec![Vec::new()];
        loop {
            let Some(&c) = self.s.get(self.i) else { return Err(self.err("unclosed '('")) };
            match c {
                b')' | b'|' => {
                    self.i += 1;
                    if current.iter().any(Vec::is_empty) {
                        return Err(self.err("empty alternative"));
                    }
                    alts.append(&mut current);
                    if alts.len() > MAX_ALTERNATIVES {
                        return Err(PatternError::Unsupported(format!(
                            "alternation of more than {MAX_ALTERNATIVES} byte strings"
                        )));
                    }
                    if c == b')' {
                        return Ok(alts);
                    }
                    current = vec![Vec::new()];
                }
                b'(' => {
                    let inner = self.alternatives()?;
                    if current.len() * inner.len() > MAX_ALTERNATIVES {
                        return Err(PatternError::Unsupported(format!(
                            "alternation of more than {MAX_ALTERNATIVES} byte strings"
                        )));
                    }
                    current = current
                        .iter()
                        .flat_map(|head| inner.iter().map(move |tail| [&head[..], &tail[..]].concat()))
                        .collect();
                }
                b'{' => {
                    let end =
                        self.s[self.i..].iter().position(|&c| c == b'}').ok_or_else(|| self.err("unclosed jump"))?;
                    let body =
                        std::str::from_utf8(&self.s[self.i + 1..self.i + end]).map_err(|_| self.err("bad jump"))?;
                    match parse_jump(body) {
                        Some((n, Some(m))) if n == m && n <= MAX_FIXED_JUMP_IN_ALTERNATIVE => {
                            for alt in &mut current {
                                alt.extend(std::iter::repeat_n(ByteMatch { value: 0, mask: 0 }, n));
                            }
                        }
                        Some((n, Some(m))) if n == m => {
                            return Err(PatternError::Unsupported(format!("jump of {n} bytes inside an alternation")));
                        }
                        _ => return Err(self.err("alternative match contains a ranged or unbounded jump")),
                    }
                    self.i += end + 1;
                }
                b'*' | b'[' => return Err(self.err("alternative match contains a ranged or unbounded jump")),
                b'!' => return Err(PatternError::Unsupported("negated alternation inside an alternation".into())),
                _ => {
                    let b = self.hex_byte()?;
                    for alt in &mut current {
                        alt.push(b);
                    }
                }
            }
        }
    }

    fn hex_byte(&mut self) -> Result<ByteMatch, PatternError> {
        let (Some(&h), Some(&l)) = (self.s.get(self.i), self.s.get(self.i + 1)) else {
            return Err(self.err("odd number of hex digits"));
        };
        let nib = |c: u8| -> Result<Option<u8>, PatternError> {
            match c {
                b'?' => Ok(None),
                _ => (c as char).to_digit(16).map(|d| Some(d as u8)).ok_or_else(|| self.err("not a hex digit")),
            }
        };
        let (h, l) = (nib(h)?, nib(l)?);
        self.i += 2;
        Ok(ByteMatch {
            value: h.unwrap_or(0) << 4 | l.unwrap_or(0),
            mask: if h.is_some() { 0xf0 } else { 0 } | if l.is_some() { 0x0f } else { 0 },
        })
    }
}

/// Where libclamav's matcher takes a character class: not right after a single first byte,
/// and with at least two bytes of pattern besides the classes at its edges.
fn check_classes(pieces: &[Piece]) -> Result<(), String> {
    let is_class = |p: &Piece| matches!(p, Piece::Class(_) | Piece::NotClass(_));
    if !pieces.iter().any(is_class) {
        return Ok(());
    }
    let len = |p: &Piece| match p {
        Piece::Bytes(b) => b.len(),
        Piece::Alt(a) => a.iter().map(Vec::len).min().unwrap_or(0),
        Piece::NotAlt(a) => a.first().map_or(1, Vec::len),
        Piece::Gap { min, .. } => *min,
        Piece::Class(_) => 0,
        Piece::NotClass(_) => 1,
    };
    let mut at = 0;
    for (i, p) in pieces.iter().enumerate() {
        if is_class(p) && i > 0 && at == 1 && !is_class(&pieces[i - 1]) {
            return Err("a character class right after a single first byte".into());
        }
        at += len(p);
    }
    if at < 2 {
        return Err("a character class beside less than two bytes".into());
    }
    Ok(())
}

/// The range of a `[x-y]` jump, read as libclamav reads it (`sscanf("%u-%u")`: `[x]` and
/// `[x-]` are exactly `x`), at most 32.
fn bracket_range(body: &str) -> Option<(usize, Option<usize>)> {
    let digits = |t: &str| t.bytes().take_while(u8::is_ascii_digit).count();
    let n = digits(body);
    let x: usize = body[..n].parse().ok()?;
    let rest = &body[n..];
    let y = match rest.strip_prefix('-') {
        Some(r) if digits(r) > 0 => r[..digits(r)].parse().ok()?,
        _ => x,
    };
    (x <= y && y <= 32).then_some((x, Some(y)))
}

/// libclamav's rule for `[x-y]`: in each part of a pattern (between `*`), the bracket must
/// follow a single byte that starts the part, or precede a single byte that ends it — one of
/// each at most.
fn check_brackets(hex: &str) -> Result<(), String> {
    for part in hex.split('*') {
        let Some(open) = part.find('[') else { continue };
        let close = part[open..].find(']').map(|c| c + open).ok_or("unclosed '['")?;
        let (before, after) = (&part[..open], &part[close + 1..]);
        // what is left between the bordering bytes must be at least two bytes
        let core = if before.len() == 2 { after.split('[').next().unwrap_or("") } else { before };
        if core.len() < 4 {
            return Err(format!("[x-y] in {part:?} leaves less than two bytes"));
        }
        if before.len() == 2 {
            // a second bracket may only precede the single last byte
            if let Some(open2) = after.find('[') {
                let close2 = after[open2..].find(']').map(|c| c + open2).ok_or("unclosed '['")?;
                if after[..open2].len() == 2 || after[close2 + 1..].len() != 2 {
                    return Err(format!("[x-y] in {part:?} must border a single first or last byte"));
                }
            }
        } else if after.len() != 2 {
            return Err(format!("[x-y] in {part:?} must border a single first or last byte"));
        }
    }
    Ok(())
}

fn parse_jump(body: &str) -> Option<(usize, Option<usize>)> {
    let body = body.trim();
    if let Some(max) = body.strip_prefix('-') {
        return Some((0, Some(max.parse().ok()?)));
    }
    if let Some(min) = body.strip_suffix('-') {
        return Some((min.parse().ok()?, None));
    }
    match body.split_once('-') {
        Some((a, b)) => {
            let (a, b): (usize, usize) = (a.parse().ok()?, b.parse().ok()?);
            (a <= b).then_some((a, Some(b)))
        }
        None => {
            let n = body.parse().ok()?;
            Some((n, Some(n)))
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} pieces", self.pieces.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_syntax() {
        let p = Pattern::parse("4d5a??a?{2-4}(50|4545)*ff{-3}!(00|01)").unwrap();
        assert_eq!(p.pieces.len(), 7, "{:?}", p.pieces);
        assert!(matches!(p.pieces[1], Piece::Gap { min: 2, max: Some(4) }));
        assert!(matches!(p.pieces[3], Piece::Gap { min: 0, max: None }));
        let Piece::Bytes(b) = &p.pieces[0] else { panic!() };
        assert_eq!(b[2], ByteMatch { value: 0, mask: 0 });
        assert_eq!(b[3], ByteMatch { value: 0xa0, mask: 0xf0 });
        assert!(Pattern::parse("4d5").is_err());
        assert!(Pattern::parse("zz").is_err());
        assert!(Pattern::parse("{1-2}").is_err());
        assert!(matches!(Pattern::parse("41(L)42"), Err(PatternError::Syntax(_))), "a class after one byte");
        assert!(Pattern::parse("4142(L)4344").is_ok());
    }

    #[test]
    fn anchor_is_longest_exact_run() {
        let p = Pattern::parse("41??42434445{2}464748").unwrap();
        let (pi, off, run) = p.anchor(3).unwrap();
        assert_eq!((pi, off, run), (0, 2, b"BCDE".to_vec()));
        assert!(Pattern::parse("41??42").unwrap().anchor(4).is_none());
    }
}
