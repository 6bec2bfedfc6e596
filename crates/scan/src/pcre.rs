//! A PCRE2 regular expression, compiled and run as libclamav runs the PCRE sub-signatures of
//! logical signatures: the system's PCRE2 library (or the copy `pcre2-sys` builds when there is
//! none), the interpreter (no JIT), ClamAV's match and depth limits, and a heap limit.
//!
//! The `pcre2` crate does not expose the options ClamAV's flags map to (`A`: anchored, `E`:
//! dollar-end-only, `U`: ungreedy) nor the match limits, so this is a small safe wrapper over
//! `pcre2-sys`.

use std::ptr::NonNull;

use pcre2_sys as ffi;

/// libclamav's default limit on internal match calls per match attempt.
pub const MATCH_LIMIT: u32 = 100_000;
/// libclamav's default limit on backtracking depth.
pub const DEPTH_LIMIT: u32 = 2_000;
/// Heap a match may use, in KiB (PCRE2's own default is 20 GB).
pub const HEAP_LIMIT_KIB: u32 = 64 * 1024;

/// Compile options, as ClamAV's PCRE flags name them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// `i`
    pub caseless: bool,
    /// `s`
    pub dotall: bool,
    /// `m`
    pub multiline: bool,
    /// `x`
    pub extended: bool,
    /// `A`
    pub anchored: bool,
    /// `E`
    pub dollar_endonly: bool,
    /// `U`
    pub ungreedy: bool,
}

impl Options {
    fn bits(self) -> u32 {
        let mut b = 0;
        for (on, bit) in [
            (self.caseless, ffi::PCRE2_CASELESS),
            (self.dotall, ffi::PCRE2_DOTALL),
            (self.multiline, ffi::PCRE2_MULTILINE),
            (self.extended, ffi::PCRE2_EXTENDED),
            (self.anchored, ffi::PCRE2_ANCHORED),
            (self.dollar_endonly, ffi::PCRE2_DOLLAR_ENDONLY),
            (self.ungreedy, ffi::PCRE2_UNGREEDY),
        ] {
            if on {
                b |= bit;
            }
        }
        b
    }
}

/// A compiled expression. Matching only reads the compiled code and the match context, which
/// PCRE2 allows from several threads at once; each match has its own match data.
pub struct Regex {
    code: NonNull<ffi::pcre2_code_8>,
    context: NonNull<ffi::pcre2_match_context_8>,
    source: String,
}

// SAFETY: PCRE2 documents compiled code and match contexts as shareable between threads once
// built, as long as they are not modified; this type never modifies them after `new`.
unsafe impl Send for Regex {}
// SAFETY: as above — `find_at` only reads `code` and `context`.
unsafe impl Sync for Regex {}

/// Why an expression did not compile (PCRE2's message and where in the expression).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("PCRE2 compilation failed at offset {offset}: {message}")]
pub struct CompileError {
    /// PCRE2's message.
    pub message: String,
    /// Offset in the expression.
    pub offset: usize,
}

/// How a match attempt ended other than by a match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoMatch {
    /// The expression does not match.
    None,
    /// A limit (match, depth or heap) stopped the attempt: treated as no match, as ClamAV does.
    Limit,
    /// Another error (invalid UTF in UTF mode, for example).
    Error(i32),
}

fn error_message(code: i32) -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; PCRE2 writes a NUL-terminated message.
    let n = unsafe { ffi::pcre2_get_error_message_8(code, buf.as_mut_ptr(), buf.len()) };
    let n = if n < 0 { 0 } else { n as usize };
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

impl Regex {
    /// Compiles `expression` with `options`.
    pub fn new(expression: &str, options: Options) -> Result<Regex, CompileError> {
        let mut err = 0i32;
        let mut at = 0usize;
        // SAFETY: the pattern pointer and length describe a valid byte slice; the out
        // parameters are valid; a null compile context means the defaults.
        let code = unsafe {
            ffi::pcre2_compile_8(
                expression.as_ptr(),
                expression.len(),
                options.bits(),
                &mut err,
                &mut at,
                std::ptr::null_mut(),
            )
        };
        let Some(code) = NonNull::new(code) else {
            return Err(CompileError { message: error_message(err), offset: at });
        };
        // SAFETY: a null general context means the default allocator.
        let context = unsafe { ffi::pcre2_match_context_create_8(std::ptr::null_mut()) };
        let Some(context) = NonNull::new(context) else {
            // SAFETY: `code` was returned by pcre2_compile and is freed once.
            unsafe { ffi::pcre2_code_free_8(code.as_ptr()) };
            return Err(CompileError { message: "out of memory".into(), offset: 0 });
        };
        // SAFETY: `context` is a valid match context owned here.
        unsafe {
            ffi::pcre2_set_match_limit_8(context.as_ptr(), MATCH_LIMIT);
            ffi::pcre2_set_depth_limit_8(context.as_ptr(), DEPTH_LIMIT);
            ffi::pcre2_set_heap_limit_8(context.as_ptr(), HEAP_LIMIT_KIB);
        }
        Ok(Regex { code, context, source: expression.to_string() })
    }

    /// The expression as given.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The first match in `subject` starting at or after `start` (only at `start` when
    /// `anchored`): its start and end.
    pub fn find_at(&self, subject: &[u8], start: usize, anchored: bool) -> Result<(usize, usize), NoMatch> {
        if start > subject.len() {
            return Err(NoMatch::None);
        }
        // SAFETY: `code` is valid for the life of `self`; a null general context means the
        // default allocator.
        let data = unsafe { ffi::pcre2_match_data_create_from_pattern_8(self.code.as_ptr(), std::ptr::null_mut()) };
        let Some(data) = NonNull::new(data) else {
            return Err(NoMatch::Error(ffi::PCRE2_ERROR_NOMEMORY));
        };
        let options = if anchored { ffi::PCRE2_ANCHORED } else { 0 };
        // SAFETY: subject pointer and length describe a valid slice, `start <= len`; `data` was
        // made for this code; the context is only read.
        let rc = unsafe {
            ffi::pcre2_match_8(
                self.code.as_ptr(),
                subject.as_ptr(),
                subject.len(),
                start,
                options,
                data.as_ptr(),
                self.context.as_ptr(),
            )
        };
        let result = if rc > 0 {
            // SAFETY: after a successful match the ovector holds at least one pair.
            let ov = unsafe { std::slice::from_raw_parts(ffi::pcre2_get_ovector_pointer_8(data.as_ptr()), 2) };
            Ok((ov[0], ov[1].max(ov[0])))
        } else if rc == ffi::PCRE2_ERROR_NOMATCH || rc == 0 {
            Err(NoMatch::None)
        } else if matches!(rc, ffi::PCRE2_ERROR_MATCHLIMIT | ffi::PCRE2_ERROR_DEPTHLIMIT | ffi::PCRE2_ERROR_HEAPLIMIT) {
            Err(NoMatch::Limit)
        } else {
            Err(NoMatch::Error(rc))
        };
        // SAFETY: `data` was created above and is freed once.
        unsafe { ffi::pcre2_match_data_free_8(data.as_ptr()) };
        result
    }
}

impl Drop for Regex {
    fn drop(&mut self) {
        // SAFETY: both were created in `new`, are owned by `self` and freed once.
        unsafe {
            ffi::pcre2_match_context_free_8(self.context.as_ptr());
            ffi::pcre2_code_free_8(self.code.as_ptr());
        }
    }
}

impl std::fmt::Debug for Regex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Regex({:?})", self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_and_anchoring_behave_as_pcre2() {
        let r = Regex::new("clamav", Options::default()).unwrap();
        assert_eq!(r.find_at(b"xx clamav", 0, false), Ok((3, 9)));
        assert_eq!(r.find_at(b"xx clamav", 0, true), Err(NoMatch::None));
        assert_eq!(r.find_at(b"xx clamav", 3, true), Ok((3, 9)));
        let i = Regex::new("clamav", Options { caseless: true, ..Options::default() }).unwrap();
        assert_eq!(i.find_at(b"ClamAV", 0, false), Ok((0, 6)));
        let end = Regex::new("a$", Options { dollar_endonly: true, ..Options::default() }).unwrap();
        assert_eq!(end.find_at(b"a\n", 0, false), Err(NoMatch::None));
        assert_eq!(Regex::new("a$", Options::default()).unwrap().find_at(b"a\n", 0, false), Ok((0, 1)));
        let lazy = Regex::new("a+", Options { ungreedy: true, ..Options::default() }).unwrap();
        assert_eq!(lazy.find_at(b"aaa", 0, false), Ok((0, 1)));
        // binary subjects are fine (no UTF mode)
        assert_eq!(Regex::new(r"\xff\x00", Options::default()).unwrap().find_at(b"\x01\xff\x00", 0, false), Ok((1, 3)));
    }

    #[test]
    fn bad_expressions_are_compile_errors() {
        let e = Regex::new("a(b", Options::default()).unwrap_err();
        assert!(e.message.contains("missing"), "{e}");
    }

    /// Catastrophic backtracking stops at the match limit instead of running for ever.
    #[test]
    fn catastrophic_backtracking_hits_the_limit() {
        let r = Regex::new("(a+)+$", Options::default()).unwrap();
        let mut s = vec![b'a'; 5000];
        s.push(b'!');
        assert_eq!(r.find_at(&s, 0, false), Err(NoMatch::Limit));
    }
}
