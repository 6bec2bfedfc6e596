//! Byte-compare sub-signatures of logical signatures, `N(offset#options#comparisons)`, parsed
//! and evaluated as libclamav does (`matcher-byte-comp.c`, read as a reference): the number at
//! `offset` bytes from the last match of sub-signature `N`, read as hexadecimal or decimal text
//! (big- or little-endian, leading white space skipped) or as a binary integer of 1, 2, 4 or 8
//! bytes, compared with one or two values, all of which must hold.

/// How the bytes are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Base {
    /// No base given: never evaluates (as in libclamav).
    None,
    Hex,
    Dec,
    /// `a`: hexadecimal when it starts with `0x`, else decimal.
    Auto,
    Bin,
}

/// A parsed byte-compare sub-signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ByteCompare {
    /// The sub-signature whose last match the offset counts from.
    pub reference: usize,
    offset: i64,
    base: Base,
    /// `Some(true)`: little-endian; `Some(false)`: big-endian (implied by decimal); `None`:
    /// not said — then nothing is read and the comparison never holds, as in libclamav.
    little: Option<bool>,
    exact: bool,
    len: u32,
    comparisons: Vec<(u8, i64)>,
}

/// `strtol` over `s` with C's rules for base 0 (`0x` hexadecimal, `0` octal) or `base`,
/// within the first `n` bytes: the value and how many bytes it used (0: no digits), `None` on
/// overflow. Mirrors libclamav's `cli_strntol`, quirks included (a sign hides a `0x` prefix).
fn strntol(s: &[u8], base: u32) -> (i64, usize, bool) {
    let n = s.len();
    let mut i = 0;
    while i < n && s[i].is_ascii_whitespace_c() {
        i += 1;
    }
    if i >= n {
        return (0, 0, false);
    }
    let mut c = s[i];
    let mut neg = false;
    if c == b'-' || c == b'+' {
        neg = c == b'-';
        i += 1;
        if i >= n {
            return (0, 0, false);
        }
    }
    let mut base = base;
    if (base == 0 || base == 16) && c == b'0' && i + 1 < n && (s[i + 1] == b'x' || s[i + 1] == b'X') {
        if i + 2 >= n {
            return (0, 0, false);
        }
        c = s[i + 1];
        i += 2;
        base = 16;
    }
    if base == 0 {
        base = if c == b'0' { 8 } else { 10 };
    }
    let limit: u64 = if neg { i64::MIN.unsigned_abs() } else { i64::MAX as u64 };
    let (cutoff, cutlim) = (limit / u64::from(base), limit % u64::from(base));
    let (mut acc, mut any, mut overflow) = (0u64, false, false);
    while i < n {
        let d = match s[i] {
            b'0'..=b'9' => u32::from(s[i] - b'0'),
            b'a'..=b'z' => u32::from(s[i] - b'a') + 10,
            b'A'..=b'Z' => u32::from(s[i] - b'A') + 10,
            _ => break,
        };
        if d >= base {
            break;
        }
        if overflow || acc > cutoff || (acc == cutoff && u64::from(d) > cutlim) {
            overflow = true;
        } else {
            acc = acc * u64::from(base) + u64::from(d);
        }
        any = true;
        i += 1;
    }
    if overflow {
        return (if neg { i64::MIN } else { i64::MAX }, i, true);
    }
    let v = if neg { (acc as i64).wrapping_neg() } else { acc as i64 };
    (v, if any { i } else { 0 }, false)
}

trait CSpace {
    fn is_ascii_whitespace_c(&self) -> bool;
}

impl CSpace for u8 {
    /// C's `isspace` in the C locale (with vertical tab, which Rust's test leaves out).
    fn is_ascii_whitespace_c(&self) -> bool {
        matches!(self, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
    }
}

/// A whole token as a C number (base 0), or `None` if anything follows it.
fn whole_number(t: &str) -> Option<i64> {
    let (v, used, overflow) = strntol(t.as_bytes(), 0);
    (used == t.len() && !overflow && used > 0).then_some(v)
}

impl ByteCompare {
    /// Parses `N(offset#options#comparisons)`; `Err` is a malformed line, as libclamav has it.
    pub fn parse(s: &str) -> Result<ByteCompare, String> {
        let bad = |why: &str| format!("byte compare {s:?}: {why}");
        let open = s.find('(').ok_or_else(|| bad("no '('"))?;
        let reference: usize = s[..open].parse().map_err(|_| bad("the sub-signature number is not decimal"))?;
        if reference > 64 {
            return Err(bad("the sub-signature number is out of range"));
        }
        let close = s[open..].find(')').ok_or_else(|| bad("no ')'"))? + open;
        let params: Vec<&str> = s[open + 1..close].split('#').collect();
        let [offset, options, comparisons] = params[..] else {
            return Err(bad("three parameters are expected"));
        };
        let offset = match offset.as_bytes().first() {
            Some(b'0') | None => 0,
            Some(b'>') => {
                let n = offset.strip_prefix(">>").ok_or_else(|| bad("bad shift operator"))?;
                whole_number(n).ok_or_else(|| bad("bad offset"))?
            }
            Some(b'<') => {
                let n = offset.strip_prefix("<<").ok_or_else(|| bad("bad shift operator"))?;
                whole_number(n).ok_or_else(|| bad("bad offset"))?.wrapping_neg()
            }
            _ => return Err(bad("bad shift operator")),
        };
        let (mut base, mut little, mut exact) = (Base::None, None, false);
        let digits = options.find(|c: char| c.is_ascii_digit()).unwrap_or(options.len());
        for c in options[..digits].chars() {
            let ok = match c {
                'h' | 'i' | 'a' if base == Base::None => {
                    base = match c {
                        'h' => Base::Hex,
                        'i' => Base::Bin,
                        _ => Base::Auto,
                    };
                    true
                }
                'd' if base == Base::None && little != Some(true) => {
                    base = Base::Dec;
                    little = Some(false);
                    true
                }
                'l' if little != Some(false) => {
                    little = Some(true);
                    true
                }
                'b' if little != Some(true) => {
                    little = Some(false);
                    true
                }
                'e' => {
                    exact = true;
                    true
                }
                _ => false,
            };
            if !ok {
                return Err(bad("invalid options"));
            }
        }
        let len = whole_number(&options[digits..]).filter(|&n| n > 0).ok_or_else(|| bad("bad byte length"))?;
        let len = u32::try_from(len).map_err(|_| bad("bad byte length"))?;
        if base == Base::Bin && (len > 8 || 8 % len != 0) {
            return Err(bad("a binary length must be 1, 2, 4 or 8"));
        }
        if base == Base::Hex && len > 18 {
            return Err(bad("a hexadecimal length is at most 18"));
        }
        if comparisons.matches(',').count() > 1 {
            return Err(bad("at most two comparisons"));
        }
        let comparisons = comparisons
            .split(',')
            .map(|c| {
                let op = *c
                    .as_bytes()
                    .first()
                    .filter(|o| matches!(o, b'<' | b'>' | b'='))
                    .ok_or_else(|| bad("bad comparison"))?;
                let (v, used, _) = strntol(&c.as_bytes()[1..], 0);
                (used == c.len() - 1 && used > 0).then_some((op, v)).ok_or_else(|| bad("bad comparison value"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ByteCompare { reference, offset, base, little, exact, len, comparisons })
    }

    /// Whether the comparison holds in `data`, the reference's last match starting at `at`.
    pub fn holds(&self, data: &[u8], at: u64) -> bool {
        self.value(data, at).is_some_and(|value| {
            self.comparisons.iter().all(|&(op, v)| match op {
                b'<' => value < v,
                b'>' => value > v,
                _ => value == v,
            })
        })
    }

    /// The number read, if one is.
    fn value(&self, data: &[u8], at: u64) -> Option<i64> {
        let pos = i64::try_from(at).ok()?.checked_add(self.offset)?;
        let len = self.len as usize;
        if pos.checked_add(i64::from(self.len))? > data.len() as i64 || pos <= 0 {
            return None;
        }
        let field = &data[pos as usize..pos as usize + len];
        let value = match (self.base, self.little) {
            (Base::Bin, Some(little)) => {
                let mut v: u64 = 0;
                for k in 0..len {
                    let b = if little { field[len - 1 - k] } else { field[k] };
                    v = (v << 8) | u64::from(b);
                }
                v as i64
            }
            (Base::None | Base::Bin, _) | (_, None) => return None,
            (base, Some(little)) => {
                let pad = field.iter().take_while(|b| b.is_ascii_whitespace_c()).count();
                let text = &field[pad..];
                let base = match base {
                    Base::Auto if text.len() < 3 => return None,
                    Base::Auto if text.starts_with(b"0x") || text.starts_with(b"0X") => Base::Hex,
                    Base::Auto => Base::Dec,
                    b => b,
                };
                match (base, little) {
                    (Base::Dec, true) => return None,
                    (Base::Dec, false) => self.text_value(text, 10, pad)?,
                    (_, false) => self.text_value(text, 16, pad)?,
                    (_, true) => {
                        let swapped = swap_hex_pairs(text);
                        let n = if text.len() == 1 { 1 } else { text.len().div_ceil(2) * 2 };
                        let (v, used, overflow) = strntol(&swapped[..n.min(swapped.len())], 16);
                        if overflow || (self.exact && (used != text.len() || pad != 0)) {
                            return None;
                        }
                        v
                    }
                }
            }
        };
        Some(value)
    }

    /// A big-endian text number: `None` (does not hold) on overflow or, with `e`, when the
    /// number does not fill the field exactly.
    fn text_value(&self, text: &[u8], base: u32, pad: usize) -> Option<i64> {
        let (v, used, overflow) = strntol(text, base);
        (!overflow && !(self.exact && (used != text.len() || pad != 0))).then_some(v)
    }
}

/// libclamav's little-endian normalisation of hexadecimal text: the digit pairs in reverse
/// order (`0000BA` → `BA0000`), an odd length padded with a leading `0`, a `0x` prefix kept as
/// `x`; a character that is not a hex digit zeroes what was built so far.
fn swap_hex_pairs(text: &[u8]) -> Vec<u8> {
    let len = text.len();
    if len == 1 {
        return vec![text[0]];
    }
    let norm = len.div_ceil(2) * 2;
    let mut src = vec![b'0'; norm];
    let is_hex_prefix = text.len() >= 3 && (text.starts_with(b"0x") || text.starts_with(b"0X"));
    if norm == len + 1 {
        if is_hex_prefix {
            src[3..3 + len - 2].copy_from_slice(&text[2..]);
            src[0] = b'x';
        } else {
            src[1..1 + len].copy_from_slice(text);
        }
    } else {
        src[..len].copy_from_slice(text);
        if is_hex_prefix {
            src[0] = b'x';
        }
    }
    let ok = |c: u8| c.is_ascii_hexdigit() || c.eq_ignore_ascii_case(&b'x');
    let mut out = vec![b'0'; norm];
    let mut i = 0;
    while i < norm {
        let hi = src[norm - i - 2];
        if ok(hi) {
            out[i] = hi;
        } else {
            out.iter_mut().for_each(|c| *c = b'0');
            i += 2;
            continue;
        }
        let lo = src[norm - i - 1];
        if ok(lo) {
            out[i + 1] = lo;
        } else {
            out.iter_mut().for_each(|c| *c = b'0');
        }
        i += 2;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strntol_follows_c() {
        assert_eq!(strntol(b"0x1f", 0), (31, 4, false));
        assert_eq!(strntol(b"017", 0), (15, 3, false));
        assert_eq!(strntol(b"  42z", 10), (42, 4, false));
        assert_eq!(strntol(b"zz", 10), (0, 0, false));
        assert_eq!(strntol(b"-5", 10), (-5, 2, false));
        assert!(strntol(b"99999999999999999999", 10).2);
    }

    #[test]
    fn parses_and_refuses_as_libclamav() {
        let b = ByteCompare::parse("0(>>4#ib2#=0x1234)").unwrap();
        assert_eq!((b.reference, b.offset, b.len), (0, 4, 2));
        assert!(ByteCompare::parse("0(<<2#hb4#>5,<9)").is_ok());
        for bad in [
            "x(>>4#ib2#=1)",
            "0(>4#ib2#=1)",
            "0(>>4#ib3#=1)",
            "0(>>4#dl2#=1)",
            "0(>>4#ib2#!1)",
            "0(>>4#ib2#=1,<2,>3)",
            "0(>>4#ib2)",
        ] {
            assert!(ByteCompare::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reads_binary_and_text_numbers() {
        let data = b"xxHDR\x34\x12  1234 0x1f";
        let at = 2;
        let holds = |s: &str| ByteCompare::parse(s).unwrap().holds(data, at);
        assert!(holds("0(>>3#il2#=0x1234)"));
        assert!(holds("0(>>3#ib2#=0x3412)"));
        assert!(holds("0(>>5#db6#=1234)"));
        assert!(!holds("0(>>5#dbe6#=1234)"), "exact: leading spaces");
        assert!(holds("0(>>5#hb6#=0x1234)"));
        assert!(holds("0(>>12#ab4#=31)"));
        assert!(holds("0(>>12#ab4#>30,<32)"));
        assert!(!holds("0(>>12#ab4#>30,<31)"));
        assert!(!holds("0(>>3#i2#=0x1234)"), "no endianness: never");
        // offsets far outside the buffer, either way, read nothing
        assert!(!holds("0(>>0x7fffffffffffffff#ib1#>0)"));
        assert!(!holds("0(<<0x7fffffffffffffff#ib1#<1)"));
    }
}
