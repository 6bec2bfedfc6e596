//! The scripts of an HTML page normalised as libclamav's `js-norm` normalises them (read as a
//! reference, not copied), for the `javascript` form libclamav matches as HTML and as text:
//! tokens lower-cased and written without white space (a space only between two letters or
//! digits), comments dropped, strings double-quoted with their escapes decoded, numbers
//! rewritten (`%ld`, `%g`), variables, functions and their first parameters renamed `n000`,
//! `n001`… by scope, adjacent string literals joined (`"a" + "b"`), and `unescape("…")`,
//! `eval("…")`, the `dF("…")` encoder and the "p,a,c,k,e,r" packer decoded in place. Its quirks
//! are kept, since signatures are written for them: a `//` comment ends at a space, only the
//! first three packer parameters are checked, numbers are C `int`s.
//!
//! Departure: libclamav puts no bound on what the decoders produce (a packer call can expand
//! each word of its text into a long dictionary entry); here each script decodes at most
//! [`MAX_DECODES`] times and at most [`MAX_DECODED`] bytes in all, past which the rest is
//! written as it is.

use std::borrow::Cow;
use std::collections::HashMap;

/// How many decoder runs (`eval`, `dF`, packer) one script gets.
pub const MAX_DECODES: usize = 256;
/// How many bytes the decoders of one script may produce in all.
pub const MAX_DECODED: usize = 8 << 20;
/// How many tokens one script keeps (about 40 bytes each); the rest of a longer script is not
/// normalised.
pub const MAX_TOKENS: usize = 1 << 18;

/// The kinds of token the normaliser tells apart (libclamav's token types, those that matter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ident,
    /// A member name after `.`: never renamed.
    Unnorm,
    Str,
    Int,
    Float,
    Function,
    Var,
    ParOpen,
    ParClose,
    CurlyOpen,
    CurlyClose,
    BracketOpen,
    BracketClose,
    Comma,
    Semicolon,
    Dot,
    Plus,
    /// Any other keyword or operator.
    Other,
}

/// A token's value.
#[derive(Debug, Clone, PartialEq)]
enum Val {
    /// A keyword's, operator's or punctuator's text, or an identifier's name.
    Text(Cow<'static, [u8]>),
    /// A string literal's (or member name's) text; `None` once `eval` took it.
    Str(Option<Vec<u8>>),
    Int(i64),
    Float(f64),
    /// `function`: the scope it opens; `None` marks where a function's body ended.
    Scope(Option<usize>),
}

#[derive(Debug, Clone, PartialEq)]
struct Token {
    kind: Kind,
    val: Val,
}

impl Token {
    fn text(kind: Kind, s: &'static [u8]) -> Token {
        Token { kind, val: Val::Text(Cow::Borrowed(s)) }
    }

    /// libclamav's `TOKEN_GET(token, cstring)`.
    fn cstring(&self) -> Option<&[u8]> {
        match &self.val {
            Val::Text(s) => Some(s),
            Val::Str(s) => s.as_deref(),
            _ => None,
        }
    }

    /// libclamav's `TOKEN_GET(token, string)`.
    fn string(&self) -> Option<&[u8]> {
        match &self.val {
            Val::Str(s) => s.as_deref(),
            _ => None,
        }
    }

    /// libclamav's `TOKEN_GET(token, ival)`.
    fn ival(&self) -> i64 {
        match self.val {
            Val::Int(v) => v,
            _ => -1,
        }
    }
}

const KEYWORDS: &[(&str, Kind)] = &[
    ("function", Kind::Function),
    ("var", Kind::Var),
    ("break", Kind::Other),
    ("case", Kind::Other),
    ("catch", Kind::Other),
    ("continue", Kind::Other),
    ("default", Kind::Other),
    ("delete", Kind::Other),
    ("do", Kind::Other),
    ("else", Kind::Other),
    ("finally", Kind::Other),
    ("for", Kind::Other),
    ("if", Kind::Other),
    ("in", Kind::Other),
    ("instanceof", Kind::Other),
    ("new", Kind::Other),
    ("return", Kind::Other),
    ("switch", Kind::Other),
    ("this", Kind::Other),
    ("throw", Kind::Other),
    ("try", Kind::Other),
    ("typeof", Kind::Other),
    ("void", Kind::Other),
    ("while", Kind::Other),
    ("with", Kind::Other),
    ("null", Kind::Other),
    ("true", Kind::Other),
    ("false", Kind::Other),
    // future reserved words
    ("abstract", Kind::Other),
    ("boolean", Kind::Other),
    ("byte", Kind::Other),
    ("char", Kind::Other),
    ("class", Kind::Other),
    ("const", Kind::Other),
    ("debugger", Kind::Other),
    ("double", Kind::Other),
    ("enum", Kind::Other),
    ("export", Kind::Other),
    ("extends", Kind::Other),
    ("final", Kind::Other),
    ("float", Kind::Other),
    ("goto", Kind::Other),
    ("implements", Kind::Other),
    ("import", Kind::Other),
    ("int", Kind::Other),
    ("interface", Kind::Other),
    ("long", Kind::Other),
    ("native", Kind::Other),
    ("package", Kind::Other),
    ("private", Kind::Other),
    ("protected", Kind::Other),
    ("public", Kind::Other),
    ("short", Kind::Other),
    ("static", Kind::Other),
    ("super", Kind::Other),
    ("synchronized", Kind::Other),
    ("throws", Kind::Other),
    ("transient", Kind::Other),
    ("volatile", Kind::Other),
];

/// The keyword `name` is, if it is one (keywords are 2 to 12 lower-case letters).
fn keyword(name: &[u8]) -> Option<&'static (&'static str, Kind)> {
    if !(2..=12).contains(&name.len()) || !name[0].is_ascii_lowercase() {
        return None;
    }
    KEYWORDS.iter().find(|(k, _)| k.as_bytes() == name)
}

const OPERATORS: &[&str] = &[
    "=", "+", "===", ">>>", "!==", "<<", "<=", "==", ">=", ">>", "||", "--", "!=", "&&", "++", "*=", "/=", "%=", "+=",
    "-=", "<<=", ">>=", ">>>=", "&=", "^=", "|=", "&", ":", "/", "!", ">", "<", "-", "*", "|", "%", "?", "~", "^",
];

/// How the tokenizer classes a byte outside a token.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Space,
    Slash,
    Operator,
    DQuote,
    SQuote,
    Digit,
    IdStart,
    Special(Kind, &'static str),
    Nop,
}

fn class(b: u8) -> Class {
    match b {
        b'\t' | b'\n' | 0x0b | b'\r' | b' ' => Class::Space,
        b'/' => Class::Slash,
        b'!' | b'%' | b'&' | b'*' | b'+' | b'-' | b':' | b'<' | b'=' | b'>' | b'?' | b'^' | b'|' | b'~' => {
            Class::Operator
        }
        b'"' => Class::DQuote,
        b'\'' => Class::SQuote,
        b'0'..=b'9' => Class::Digit,
        b'$' | b'\\' | b'_' | b'A'..=b'Z' | b'a'..=b'z' => Class::IdStart,
        b'(' => Class::Special(Kind::ParOpen, "("),
        b')' => Class::Special(Kind::ParClose, ")"),
        b'[' => Class::Special(Kind::BracketOpen, "["),
        b']' => Class::Special(Kind::BracketClose, "]"),
        b'{' => Class::Special(Kind::CurlyOpen, "{"),
        b'}' => Class::Special(Kind::CurlyClose, "}"),
        b',' => Class::Special(Kind::Comma, ","),
        b'.' => Class::Special(Kind::Dot, "."),
        b';' => Class::Special(Kind::Semicolon, ";"),
        _ => Class::Nop,
    }
}

/// Bytes that continue an identifier (`\` is handled apart).
fn is_id(b: u8) -> bool {
    matches!(b, b'$' | b'_' | b'0'..=b'9' | b'A'..=b'Z' | b'a'..=b'z')
}

/// C's `cli_hex2int`: the value of a hexadecimal digit, or -1.
fn hex(b: u8) -> i32 {
    (b as char).to_digit(16).map_or(-1, |v| v as i32)
}

/// libclamav's UTF-8 writing of a UTF-16 unit (a zero becomes 1).
fn push_utf8(u: u16, out: &mut Vec<u8>) {
    let mut b = [0u8; 3];
    match u {
        0 => out.push(1),
        0x01..=0x7f => out.push(u as u8),
        0x80..=0x7ff => out.extend([0xc0 | (u >> 6) as u8, 0x80 | (u & 0x3f) as u8]),
        _ => {
            b[0] = 0xe0 | (u >> 12) as u8;
            b[1] = 0x80 | ((u >> 6) & 0x3f) as u8;
            b[2] = 0x80 | (u & 0x3f) as u8;
            out.extend(b);
        }
    }
}

/// Four hexadecimal digits as libclamav reads them (a bad last digit makes it 0xffff).
fn hex4(d: &[u8]) -> u16 {
    let hi = |b: u8| hex(b).max(0);
    ((hi(d[0]) << 12) | (hi(d[1]) << 8) | (hi(d[2]) << 4) | hex(d[3])) as u16
}

/// A string literal's escapes decoded as libclamav decodes them (`\0 \b \t \n \v \f \r`, `\xHH`,
/// `\uHHHH` as UTF-8, any other escaped byte as itself; no NUL byte is kept).
fn append_unescaped(s: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < s.len() {
        let mut c = s[i];
        if c == b'\\' && i + 1 < s.len() {
            i += 1;
            match s[i] {
                b'0' => c = 0,
                b'b' => c = 8,
                b't' => c = 9,
                b'n' => c = 10,
                b'v' => c = 11,
                b'f' => c = 12,
                b'r' => c = 13,
                b'x' => {
                    if i + 2 < s.len() {
                        c = ((hex(s[i + 1]).max(0) << 4) | hex(s[i + 2])) as u8;
                    }
                    i += 2;
                }
                b'u' => {
                    if i + 4 < s.len() {
                        push_utf8(hex4(&s[i + 1..i + 5]), out);
                        i += 5;
                        continue;
                    }
                }
                other => c = other,
            }
        }
        out.push(if c == 0 { 1 } else { c });
        i += 1;
    }
}

/// JavaScript's `unescape()` as libclamav implements it (`%uHHHH` as UTF-8, `%HH`; the text
/// ends at its first NUL byte, and none is written).
fn unescape(s: &[u8]) -> Vec<u8> {
    let s = &s[..memchr::memchr(0, s).unwrap_or(s.len())];
    let mut out = Vec::with_capacity(s.len());
    let mut k = 0;
    while k < s.len() {
        let mut c = s[k];
        if c == b'%' {
            let unit = k + 5 < s.len() && s[k + 1] == b'u' && s[k + 2..k + 6].iter().all(u8::is_ascii_hexdigit);
            if unit {
                push_utf8(hex4(&s[k + 2..k + 6]), &mut out);
                k += 6;
                continue;
            }
            if k + 2 < s.len() && s[k + 1].is_ascii_hexdigit() && s[k + 2].is_ascii_hexdigit() {
                c = ((hex(s[k + 1]) << 4) | hex(s[k + 2])) as u8;
                k += 2;
            }
        }
        out.push(if c == 0 { 1 } else { c });
        k += 1;
    }
    out
}

/// C's `atoi` (glibc: `strtol` saturating, then cut to an `int`) of the digits the tokenizer read.
fn c_atoi(s: &[u8]) -> i64 {
    let mut v: i64 = 0;
    for &b in s.iter().take_while(|b| b.is_ascii_digit()) {
        v = v.saturating_mul(10).saturating_add(i64::from(b - b'0'));
    }
    i64::from(v as i32)
}

/// C's `atof` of what the tokenizer read (its longest prefix that is a number).
fn c_atof(s: &[u8]) -> f64 {
    let digits = |from: usize| s[from..].iter().take_while(|b| b.is_ascii_digit()).count();
    let mut end = digits(0);
    if s.get(end) == Some(&b'.') {
        end += 1 + digits(end + 1);
    }
    if matches!(s.get(end), Some(b'e' | b'E')) {
        let mut e = end + 1;
        if matches!(s.get(e), Some(b'+' | b'-')) {
            e += 1;
        }
        let n = digits(e);
        if n > 0 {
            end = e + n;
        }
    }
    let mut text = String::from_utf8_lossy(&s[..end]).into_owned();
    if text.ends_with('.') {
        text.push('0');
    }
    text.parse().unwrap_or(0.0)
}

/// C's `printf("%g", v)`.
fn format_g(v: f64) -> String {
    if v.is_nan() {
        return if v.is_sign_negative() { "-nan" } else { "nan" }.into();
    }
    if v.is_infinite() {
        return if v < 0.0 { "-inf" } else { "inf" }.into();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let strip = |s: String| -> String {
        if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s }
    };
    let sci = format!("{v:.5e}");
    let (mantissa, exp) = sci.split_once('e').expect("exponent");
    let exp: i32 = exp.parse().expect("exponent digits");
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", strip(mantissa.to_string()), exp.abs())
    } else {
        strip(format!("{v:.*}", (5 - exp) as usize))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LexState {
    Initial,
    MultilineComment,
    SinglelineComment,
    Number,
    DqString,
    SqString,
    Identifier,
    Dummy,
}

/// libclamav's hand-written tokenizer: it keeps its state (an unfinished string, number,
/// identifier or comment) from one buffer to the next.
struct Lexer {
    state: LexState,
    last_state: LexState,
    buf: Vec<u8>,
    pos: usize,
    last_pos: Option<usize>,
}

impl Lexer {
    fn new() -> Lexer {
        Lexer { state: LexState::Initial, last_state: LexState::Dummy, buf: Vec::new(), pos: 0, last_pos: None }
    }

    fn start(&mut self) {
        self.pos = 0;
        self.last_pos = None;
        self.last_state = LexState::Dummy;
    }

    /// The next token of `input`, or `None` at its end.
    fn next(&mut self, input: &[u8]) -> Option<Token> {
        if self.last_pos == Some(self.pos) && self.last_state == self.state {
            // libclamav's guard against a loop: skip a byte
            self.pos += 1;
        }
        self.last_pos = Some(self.pos);
        self.last_state = self.state;
        while self.pos < input.len() {
            match self.state {
                LexState::Initial => {
                    self.buf.clear();
                    let c = input[self.pos];
                    self.pos += 1;
                    match class(c) {
                        Class::Space | Class::Nop => continue,
                        Class::Slash => {
                            match input.get(self.pos) {
                                Some(b'*') => {
                                    self.state = LexState::MultilineComment;
                                    self.pos += 1;
                                    continue;
                                }
                                Some(b'/') => {
                                    self.state = LexState::SinglelineComment;
                                    self.pos += 1;
                                    continue;
                                }
                                _ => {}
                            }
                            self.pos -= 1;
                            return Some(self.operator(input));
                        }
                        Class::Operator => {
                            self.pos -= 1;
                            return Some(self.operator(input));
                        }
                        Class::DQuote => return self.string(input, b'"', LexState::DqString),
                        Class::SQuote => return self.string(input, b'\'', LexState::SqString),
                        Class::Digit => {
                            self.pos -= 1;
                            return self.number(input);
                        }
                        Class::IdStart => {
                            self.pos -= 1;
                            return self.identifier(input);
                        }
                        Class::Special(kind, s) => return Some(Token::text(kind, s.as_bytes())),
                    }
                }
                LexState::DqString => return self.string(input, b'"', LexState::DqString),
                LexState::SqString => return self.string(input, b'\'', LexState::SqString),
                LexState::Identifier => return self.identifier(input),
                LexState::Number => return self.number(input),
                LexState::MultilineComment => {
                    while self.pos + 1 < input.len() {
                        if input[self.pos] == b'*' && input[self.pos + 1] == b'/' {
                            self.state = LexState::Initial;
                            self.pos += 1;
                            break;
                        }
                        self.pos += 1;
                    }
                    self.pos += 1;
                }
                LexState::SinglelineComment => {
                    // the HTML normaliser made line ends spaces, so a space ends it too
                    while self.pos < input.len() && input[self.pos] != b'\n' && input[self.pos] != b' ' {
                        self.pos += 1;
                    }
                    self.state = LexState::Initial;
                }
                LexState::Dummy => unreachable!("the tokenizer is never in its dummy state"),
            }
        }
        None
    }

    /// The longest operator (at most 5 bytes) at the position.
    fn operator(&mut self, input: &[u8]) -> Token {
        let max = (input.len() - self.pos).min(5);
        // the longest operator is 4 bytes, and every operator's bytes are operator bytes
        let run =
            input[self.pos..self.pos + max].iter().take_while(|&&b| class(b) == Class::Operator || b == b'/').count();
        for len in (1..=run.min(4)).rev() {
            let s = &input[self.pos..self.pos + len];
            if let Some(op) = OPERATORS.iter().find(|op| op.as_bytes() == s) {
                self.pos += len;
                let kind = if *op == "+" { Kind::Plus } else { Kind::Other };
                return Token::text(kind, op.as_bytes());
            }
        }
        unreachable!("every operator byte is an operator")
    }

    fn string(&mut self, input: &[u8], quote: u8, unfinished: LexState) -> Option<Token> {
        let start = self.pos;
        let mut from = start;
        let end = loop {
            match memchr::memchr(quote, &input[from..]) {
                Some(i) if from + i > start && input[from + i - 1] == b'\\' => from += i + 1,
                Some(i) => break Some(from + i),
                None => break None,
            }
        };
        let len = end.map_or(input.len() - start, |e| e - start);
        append_unescaped(&input[start..start + len], &mut self.buf);
        if end.is_some() {
            self.pos += len + 1;
            self.state = LexState::Initial;
            Some(Token { kind: Kind::Str, val: Val::Str(Some(std::mem::take(&mut self.buf))) })
        } else {
            self.pos += len;
            self.state = unfinished;
            None
        }
    }

    fn number(&mut self, input: &[u8]) -> Option<Token> {
        let mut is_float = false;
        while self.pos < input.len() {
            let mut c = input[self.pos];
            self.pos += 1;
            if c.is_ascii_digit() {
                self.buf.push(c);
                continue;
            }
            if c == b'.' && !is_float {
                is_float = true;
                self.buf.push(c);
                continue;
            }
            if (c == b'e' || c == b'E') && is_float {
                self.buf.push(c);
                if self.pos < input.len() {
                    c = input[self.pos];
                    self.pos += 1;
                    if c == b'+' || c == b'-' || c.is_ascii_digit() {
                        self.buf.push(c);
                        continue;
                    }
                }
            }
            self.pos -= 1;
            self.state = LexState::Initial;
            return Some(if is_float {
                Token { kind: Kind::Float, val: Val::Float(c_atof(&self.buf)) }
            } else {
                Token { kind: Kind::Int, val: Val::Int(c_atoi(&self.buf)) }
            });
        }
        self.state = LexState::Number;
        None
    }

    fn identifier(&mut self, input: &[u8]) -> Option<Token> {
        self.state = LexState::Initial;
        while self.pos < input.len() {
            let c = input[self.pos];
            self.pos += 1;
            if is_id(c) {
                self.buf.push(c);
                continue;
            }
            if c == b'\\' {
                if self.pos < input.len() {
                    let next = input[self.pos];
                    self.pos += 1;
                    if next == b'u' {
                        self.buf.push(c);
                        continue;
                    }
                }
                if self.pos == input.len() {
                    self.pos += 1;
                }
            }
            // the byte is no longer part of the identifier
            self.pos -= 1;
            let name = std::mem::take(&mut self.buf);
            return Some(match keyword(&name) {
                Some(&(k, kind)) => Token::text(kind, k.as_bytes()),
                None => Token { kind: Kind::Ident, val: Val::Text(Cow::Owned(name)) },
            });
        }
        self.state = LexState::Identifier;
        None
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fsm {
    Base,
    InsideVar,
    InsideInitializer,
    WaitFunctionName,
    WaitParameterList,
    InsideFunctionDecl,
}

/// A function's scope: its names (with the number given where declared, `None` where only
/// used) and where the declaration tracker is.
struct Scope {
    names: HashMap<Vec<u8>, Option<u64>>,
    parent: Option<usize>,
    fsm: Fsm,
    last_dot: bool,
    brackets: u32,
    blocks: u32,
}

impl Scope {
    fn new(parent: Option<usize>) -> Scope {
        Scope { names: HashMap::new(), parent, fsm: Fsm::Base, last_dot: false, brackets: 0, blocks: 0 }
    }
}

/// What a decoder found: text to tokenize in place of tokens `begin..end` (or, with `append`,
/// after all the tokens, those removed).
#[derive(Default)]
struct Decoded {
    text: Vec<u8>,
    begin: usize,
    end: usize,
    append: bool,
}

/// One script being normalised (libclamav's `parser_state`).
pub struct Script {
    uniq: u64,
    scopes: Vec<Scope>,
    current: usize,
    lexer: Lexer,
    tokens: Vec<Token>,
    rec: u32,
    decodes: usize,
    decoded: usize,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            uniq: 0,
            scopes: vec![Scope::new(None)],
            current: 0,
            lexer: Lexer::new(),
            tokens: Vec::new(),
            rec: 0,
            decodes: 0,
            decoded: 0,
        }
    }
}

impl Script {
    /// Tokenizes a piece of the script (the HTML normaliser's chunks).
    pub fn process(&mut self, input: &[u8]) {
        self.lexer.start();
        while self.tokens.len() < MAX_TOKENS {
            let Some(mut tok) = self.lexer.next(input) else { break };
            let kind = tok.kind;
            let cur = self.current;
            match kind {
                Kind::Var => self.scopes[cur].fsm = Fsm::InsideVar,
                Kind::Ident => {
                    let Val::Text(name) = &tok.val else { unreachable!("identifiers carry their name") };
                    if self.scopes[cur].last_dot {
                        tok = Token { kind: Kind::Unnorm, val: Val::Str(Some(name.to_vec())) };
                    } else {
                        let scope = &mut self.scopes[cur];
                        match scope.fsm {
                            Fsm::Base | Fsm::InsideInitializer | Fsm::WaitParameterList => {
                                if !scope.names.contains_key(name.as_ref()) {
                                    scope.names.insert(name.to_vec(), None);
                                }
                            }
                            Fsm::InsideVar | Fsm::InsideFunctionDecl | Fsm::WaitFunctionName => {
                                scope.names.insert(name.to_vec(), Some(self.uniq));
                                self.uniq += 1;
                                if scope.fsm == Fsm::WaitFunctionName {
                                    scope.fsm = Fsm::WaitParameterList;
                                } else {
                                    scope.fsm = Fsm::InsideInitializer;
                                    scope.brackets = 0;
                                }
                            }
                        }
                    }
                }
                Kind::ParOpen => {
                    let scope = &mut self.scopes[cur];
                    if matches!(scope.fsm, Fsm::WaitFunctionName | Fsm::WaitParameterList) {
                        scope.fsm = Fsm::InsideFunctionDecl;
                    }
                }
                Kind::ParClose => {
                    let scope = &mut self.scopes[cur];
                    if scope.fsm == Fsm::WaitParameterList {
                        scope.fsm = Fsm::Base;
                    }
                }
                Kind::CurlyOpen => {
                    let scope = &mut self.scopes[cur];
                    if matches!(scope.fsm, Fsm::WaitFunctionName | Fsm::WaitParameterList | Fsm::InsideFunctionDecl) {
                        scope.fsm = Fsm::Base;
                    }
                    scope.blocks += 1;
                }
                Kind::CurlyClose => {
                    let scope = &mut self.scopes[cur];
                    scope.blocks = scope.blocks.saturating_sub(1);
                    if scope.blocks == 0
                        && let Some(parent) = scope.parent
                    {
                        // the brace, then a token marking the function's end
                        self.tokens.push(tok);
                        tok = Token { kind: Kind::Function, val: Val::Scope(None) };
                        self.current = parent;
                    }
                }
                Kind::BracketOpen => self.scopes[cur].brackets += 1,
                Kind::BracketClose => {
                    let scope = &mut self.scopes[cur];
                    scope.brackets = scope.brackets.saturating_sub(1);
                }
                Kind::Comma => {
                    let scope = &mut self.scopes[cur];
                    if scope.fsm == Fsm::InsideInitializer && scope.brackets == 0 && scope.blocks == 0 {
                        scope.fsm = Fsm::InsideVar;
                    }
                }
                Kind::Semicolon => {
                    let scope = &mut self.scopes[cur];
                    if scope.brackets == 0 && scope.blocks == 0 {
                        scope.fsm = Fsm::Base;
                    }
                }
                Kind::Function => {
                    self.scopes.push(Scope::new(Some(cur)));
                    self.current = self.scopes.len() - 1;
                    self.scopes[self.current].fsm = Fsm::WaitFunctionName;
                    tok.val = Val::Scope(Some(self.current));
                }
                Kind::Str => {
                    // "a" + "b" is one string
                    let n = self.tokens.len();
                    if n > 1 && self.tokens[n - 1].kind == Kind::Plus && self.tokens[n - 2].kind == Kind::Str {
                        let Some(add) = tok.string() else { unreachable!("a new string has its text") };
                        let add = add.to_vec();
                        self.tokens.pop();
                        if let Val::Str(prev) = &mut self.tokens[n - 2].val {
                            prev.get_or_insert_with(Vec::new).extend(add);
                        }
                        continue;
                    }
                }
                _ => {}
            }
            self.tokens.push(tok);
            self.scopes[self.current].last_dot = kind == Kind::Dot;
        }
    }

    /// The end of the script: an unfinished string and parentheses are closed, then the
    /// folders and decoders run.
    fn done(&mut self) {
        match self.lexer.state {
            LexState::DqString => self.process(b"\""),
            LexState::SqString => self.process(b"'"),
            _ => {}
        }
        let mut open = 0usize;
        for t in &self.tokens {
            match t.kind {
                Kind::ParOpen => open += 1,
                Kind::ParClose => open = open.saturating_sub(1),
                _ => {}
            }
        }
        for _ in 0..open {
            self.tokens.push(Token::text(Kind::ParClose, b")"));
        }
        self.fold_unescape();
        self.decode();
    }

    /// `unescape("…")` becomes the string it gives.
    fn fold_unescape(&mut self) {
        let mut i = 0;
        while i < self.tokens.len() {
            let t = &self.tokens;
            if i + 2 < t.len()
                && t[i].kind == Kind::Ident
                && t[i].cstring() == Some(b"unescape")
                && t[i + 1].kind == Kind::ParOpen
                && t[i + 2].kind == Kind::Str
                && i + 4 <= t.len()
            {
                let s = unescape(t[i + 2].cstring().unwrap_or_default());
                self.tokens.splice(i..i + 4, [Token { kind: Kind::Str, val: Val::Str(Some(s)) }]);
            }
            i += 1;
        }
    }

    /// Where a scope begins or ends as the tokens are walked again; `false` for the marker of a
    /// function's end, which is not written.
    fn enter(&mut self, i: usize) -> bool {
        if let Val::Scope(scope) = self.tokens[i].val {
            match scope {
                Some(s) => self.current = s,
                None => {
                    if let Some(parent) = self.scopes[self.current].parent {
                        self.current = parent;
                    }
                    return false;
                }
            }
        }
        true
    }

    /// The decoders: packer calls, `dF("…")`, `eval("…")`, each replaced by its tokenized result.
    fn decode(&mut self) {
        let mut i = 0;
        while i < self.tokens.len() {
            let mut res = Decoded::default();
            let within = self.decodes < MAX_DECODES && self.decoded < MAX_DECODED;
            let t = &self.tokens;
            let call = |name: &[u8]| {
                i + 2 < t.len()
                    && t[i].kind == Kind::Ident
                    && t[i].cstring() == Some(name)
                    && t[i + 1].kind == Kind::ParOpen
            };
            if t[i].kind == Kind::Function && i + 13 < t.len() {
                i += 1;
                let mut name = None;
                if self.tokens[i].kind == Kind::Ident {
                    name = self.tokens[i].cstring().map(<[u8]>::to_vec);
                    i += 1;
                }
                if within && packer_parameters(&self.tokens[i..]) {
                    self.decodes += 1;
                    self.unpack(i, name.as_deref(), &mut res);
                }
            } else if within && call(b"dF") {
                self.decodes += 1;
                self.decode_df(i + 2, &mut res);
            } else if within && call(b"eval") {
                self.decodes += 1;
                self.decode_eval(i + 2, &mut res);
            }
            if res.end > res.begin {
                self.decoded += res.text.len();
                if res.end < self.tokens.len() && self.tokens[res.end].kind == Kind::Semicolon {
                    res.end += 1;
                }
                let parent = std::mem::take(&mut self.tokens);
                self.rec += 1;
                if self.rec <= 16 {
                    self.process(&res.text);
                    self.rec -= 1;
                }
                let nested = std::mem::replace(&mut self.tokens, parent);
                let valid = res.begin < self.tokens.len() && res.end <= self.tokens.len();
                if !res.append {
                    if valid {
                        self.tokens.splice(res.begin..res.end, nested);
                    }
                } else {
                    if valid {
                        self.tokens.drain(res.begin..res.end);
                    }
                    self.tokens.extend(nested);
                }
            }
            if i < self.tokens.len() {
                self.enter(i);
            }
            i += 1;
        }
    }

    /// The "p,a,c,k,e,r" packer: its function's calls (by name, or the call that follows an
    /// anonymous one) decoded from their arguments.
    fn unpack(&self, start: usize, name: Option<&[u8]>, res: &mut Decoded) {
        let t = &self.tokens;
        let cnt = t.len();
        let mut nesting = 1;
        let mut i = start;
        while i < cnt {
            if let Val::Scope(s) = t[i].val {
                if s.is_some() {
                    nesting += 1;
                } else {
                    nesting -= 1;
                }
                if nesting == 0 {
                    break;
                }
            }
            i += 1;
        }
        if nesting != 0 {
            return;
        }
        let mut first = None;
        let mut last = None;
        // the first token of each of six arguments from `*i` on, if there are six
        let arguments = |i: &mut usize| -> Option<[usize; 6]> {
            let mut params = [0usize; 6];
            let mut j = 0;
            while j < 6 && *i < cnt {
                params[j] = *i;
                *i += 1;
                let end = if j != 5 { Kind::Comma } else { Kind::ParClose };
                while *i < cnt && t[*i].kind != end {
                    *i += 1;
                }
                *i += 1;
                j += 1;
            }
            (j == 6).then_some(params)
        };
        let mut found = |params: [usize; 6], res: &mut Decoded| {
            first.get_or_insert(params[0]);
            last = Some(params[5]);
            let limit = MAX_DECODED.saturating_sub(self.decoded + res.text.len());
            unpack_arguments(params.map(|p| &t[p]), &mut res.text, limit);
        };
        if let Some(name) = name {
            while i + 2 < cnt {
                if t[i].kind == Kind::Ident && t[i].cstring() == Some(name) && t[i + 1].kind == Kind::ParOpen {
                    i += 2;
                    if let Some(params) = arguments(&mut i) {
                        found(params, res);
                    }
                }
                i += 1;
            }
        } else {
            while i < cnt && t[i].kind != Kind::ParOpen {
                i += 1;
            }
            i += 1;
            if i >= cnt {
                return;
            }
            if let Some(params) = arguments(&mut i) {
                found(params, res);
            }
        }
        if let (Some(first), Some(last)) = (first, last) {
            res.begin = first;
            res.end = last + 1;
            if res.end + 2 < cnt
                && t[res.end].kind == Kind::CurlyOpen
                && t[res.end + 1].kind == Kind::CurlyClose
                && t[res.end + 2].kind == Kind::ParClose
            {
                res.end += 3;
            } else if res.end < cnt {
                res.end += 1;
            }
        }
    }

    /// scriptasylum's encoder: `dF("…N")`, the text unescaped, each byte lowered by the digit N,
    /// unescaped again; the result goes after all the tokens.
    fn decode_df(&self, start: usize, res: &mut Decoded) {
        let tok = &self.tokens[start];
        if tok.kind != Kind::Str {
            return;
        }
        let Some(s) = tok.string() else { return };
        let Some((&last, body)) = s.split_last() else { return };
        let shift = last.wrapping_sub(b'0');
        let lowered: Vec<u8> = unescape(body).iter().map(|b| b.wrapping_sub(shift)).collect();
        res.text = unescape(&lowered);
        res.text.truncate(MAX_DECODED.saturating_sub(self.decoded));
        res.begin = start - 2;
        res.end = start + 2;
        res.append = true;
    }

    /// `eval("…")`: the string's text in place of the call.
    fn decode_eval(&mut self, start: usize, res: &mut Decoded) {
        if start + 1 >= self.tokens.len() || self.tokens[start + 1].kind != Kind::ParClose {
            return;
        }
        if let Val::Str(s) = &mut self.tokens[start].val
            && let Some(mut text) = s.take()
        {
            text.truncate(MAX_DECODED.saturating_sub(self.decoded));
            res.text = text;
            res.begin = start - 2;
            res.end = start + 2;
        }
    }

    /// The normalised script, `<script>…</script>`; `separate` puts a line end before it (a
    /// later script of the same page).
    fn output(&mut self, separate: bool, out: &mut Vec<u8>) {
        let from = out.len();
        if separate {
            out.push(b'\n');
        }
        out.extend_from_slice(b"<script>");
        self.current = 0;
        let mut last = 0u8;
        for i in 0..self.tokens.len() {
            if self.enter(i) {
                last = self.write_token(i, out, last);
            }
        }
        // libclamav looks at its 64 KiB output buffer, not at the whole output
        let in_buffer = (out.len() - from) % 65536;
        if in_buffer < 9 || !out.ends_with(b"</script>") {
            out.extend_from_slice(b"</script>");
        }
    }

    /// Writes token `i` after a token that ended with `last`; returns what this one ends with.
    fn write_token(&self, i: usize, out: &mut Vec<u8>, last: u8) -> u8 {
        let tok = &self.tokens[i];
        let space = |out: &mut Vec<u8>, next: u8| {
            if last.is_ascii_alphanumeric() && next.is_ascii_alphanumeric() {
                out.push(b' ');
            }
        };
        match (tok.kind, &tok.val) {
            (Kind::Str, _) => {
                out.push(b'"');
                push_lower(tok.cstring().unwrap_or_default(), out);
                out.push(b'"');
                b'"'
            }
            (Kind::Int, Val::Int(v)) => {
                space(out, b'0');
                out.extend(v.to_string().bytes());
                b'0'
            }
            (Kind::Float, Val::Float(v)) => {
                space(out, b'0');
                out.extend(format_g(*v).bytes());
                b'0'
            }
            (Kind::Ident, _) => {
                space(out, b'a');
                if let Some(name) = tok.cstring() {
                    match self.lookup(name) {
                        Some(n) => out.extend(format!("n{n:03}").bytes()),
                        None => push_lower(name, out),
                    }
                }
                b'a'
            }
            (Kind::Function, _) => {
                space(out, b'a');
                out.extend_from_slice(b"function");
                b'a'
            }
            _ => match tok.cstring() {
                Some(s) => {
                    space(out, s.first().copied().unwrap_or(0));
                    push_lower(s, out);
                    s.last().copied().unwrap_or(0)
                }
                None => 0,
            },
        }
    }

    /// The number a name was given in the current scope or the nearest enclosing one.
    fn lookup(&self, name: &[u8]) -> Option<u64> {
        let mut s = Some(self.current);
        while let Some(i) = s {
            if let Some(&Some(n)) = self.scopes[i].names.get(name) {
                return Some(n);
            }
            s = self.scopes[i].parent;
        }
        None
    }

    /// Ends the script and appends its normalised form to `out` (the page's `javascript`
    /// form, scripts separated by a line end).
    pub fn finish(mut self, out: &mut Vec<u8>) {
        self.done();
        let separate = !out.is_empty();
        self.output(separate, out);
    }
}

/// Whether the tokens start `(p, a, c,` — libclamav checks only the first three parameters
/// of `p,a,c,k,e,r` (or `p,a,c,k,e,d`).
fn packer_parameters(t: &[Token]) -> bool {
    if t.first().map(|t| t.kind) != Some(Kind::ParOpen) {
        return false;
    }
    let mut idx = 1;
    for name in [&b"p"[..], b"a", b"c"] {
        let Some(tok) = t.get(idx) else { return false };
        if tok.kind != Kind::Ident || tok.cstring() != Some(name) {
            return false;
        }
        idx += 1;
        if t.get(idx).map(|t| t.kind) != Some(Kind::Comma) {
            return false;
        }
        idx += 1;
    }
    true
}

/// One packer call's arguments (`p`, the base `a`, and the `|`-separated words `k`): each word
/// of `p` read as a number in base `a` is replaced by that entry of `k`, if it is there.
fn unpack_arguments(params: [&Token; 6], out: &mut Vec<u8>, limit: usize) {
    let (Some(p), Some(k)) = (params[0].cstring(), params[3].string()) else { return };
    let base = params[1].ival();
    let words: Vec<&[u8]> = k.split(|&b| b == b'|').collect();
    let start = out.len();
    let mut i = 0;
    while i < p.len() && out.len() - start < limit {
        while i < p.len() && !p[i].is_ascii_alphanumeric() {
            if p[i] == b'\\' && matches!(p.get(i + 1), Some(b'\'' | b'"')) {
                i += 1;
            } else {
                out.push(p[i]);
                i += 1;
            }
        }
        if i >= p.len() {
            break;
        }
        let word = i;
        let mut val: u32 = 0;
        while i < p.len() && p[i].is_ascii_alphanumeric() {
            let v = p[i];
            i += 1;
            let x = if v >= b'a' {
                10 + i64::from(v - b'a')
            } else if v >= b'A' {
                36 + i64::from(v - b'A')
            } else {
                i64::from(v - b'0')
            };
            val = i64::from(val).wrapping_mul(base).wrapping_add(x) as u32;
        }
        match words.get(val as usize).filter(|w| !w.is_empty()) {
            Some(w) => out.extend_from_slice(w),
            None => out.extend_from_slice(&p[word..i]),
        }
    }
    out.truncate(start + limit.min(out.len() - start));
}

/// Writes `s` lower-cased, white space as spaces.
fn push_lower(s: &[u8], out: &mut Vec<u8>) {
    out.extend(s.iter().map(|&b| match b {
        b'\t' | b'\n' | 0x0b | 0x0c | b'\r' => b' ',
        _ => b.to_ascii_lowercase(),
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        let mut js = Script::default();
        js.process(s.as_bytes());
        let mut out = Vec::new();
        js.finish(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn printf_g() {
        for (v, s) in [(3.5, "3.5"), (1e10, "1e+10"), (0.0001, "0.0001"), (0.00001, "1e-05"), (123456.0, "123456")] {
            assert_eq!(format_g(v), s);
        }
        assert_eq!(format_g(1234567.0), "1.23457e+06");
        assert_eq!(format_g(0.1 + 0.2), "0.3");
    }

    #[test]
    fn numbers_are_c_ints() {
        assert_eq!(c_atoi(b"4294967296"), 0);
        assert_eq!(c_atoi(b"99999999999999999999"), -1);
        assert_eq!(c_atof(b"1.5e"), 1.5);
    }

    #[test]
    fn names_by_scope() {
        assert_eq!(
            norm("var Foo = 'a' + \"b\"; function bar(x, y) { var z = x + y; return z.Length; } bar(1,2);"),
            "<script>var n000=\"ab\";function n001(n002,n003){var n004=n002+n003;return n004.length;}bar(1,2);</script>"
        );
    }

    #[test]
    fn decoders() {
        assert_eq!(norm("eval(\"var a=1;\");"), "<script>var n000=1;</script>");
        // as in libclamav, a token the decoded text ends in is lost
        assert_eq!(norm("eval(\"var a=1\");"), "<script>var n000=</script>");
        assert_eq!(norm("x=unescape('%41%u0042')"), "<script>x=\"ab\"</script>");
    }

    /// A packer call whose every word expands to a long entry (libclamav would build gigabytes)
    /// stops at the decoding bound.
    #[test]
    fn a_packer_bomb_is_bounded() {
        let word = "w".repeat(100_000);
        let p = "0 ".repeat(100_000);
        let src = format!("eval(function(p,a,c,k,e,d){{return p}}('{p}',10,1,'{word}'.split('|'),0,{{}})) ");
        let out = norm(&src);
        assert!(out.len() > 1 << 20 && out.len() <= MAX_DECODED + src.len(), "{} bytes", out.len());
    }

    /// Each `eval` decodes, up to the bound on decoder runs per script.
    #[test]
    fn decoder_runs_are_bounded() {
        let out = norm(&"eval(\"x=1;\");".repeat(MAX_DECODES + 10));
        assert_eq!(out.matches("eval").count(), 10, "{out}");
    }

    /// A script of millions of tokens keeps at most [`MAX_TOKENS`].
    #[test]
    fn tokens_are_bounded() {
        let mut js = Script::default();
        js.process("(".repeat(3 << 20).as_bytes());
        assert_eq!(js.tokens.len(), MAX_TOKENS);
    }
}
