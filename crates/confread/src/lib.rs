//! Reading TOML files while collecting **every** error with its key path and line.
//!
//! Operators' configuration and contract files are checked as a whole: instead of stopping at
//! the first problem (as `serde` derive does), a [`Reader`] walks a parsed [`Table`], takes the
//! keys it knows, records an [`Issue`] for each bad value and, at the end, for each key it did
//! not expect. The caller prints all issues at once.

use std::fmt;
use std::ops::Range;
use std::time::Duration;

use toml::Spanned;
pub use toml::de::{DeTable, DeValue};

/// A parsed TOML table with spans.
pub type Table<'i> = DeTable<'i>;
/// A parsed TOML value with its span.
pub type Value<'i> = Spanned<DeValue<'i>>;

/// One problem found in a file: where (key path and line) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// Dotted key path, e.g. `smtp.listen[1]`.
    pub key: String,
    /// 1-based line number in the file (0 when unknown).
    pub line: usize,
    /// What is wrong, in words an operator understands.
    pub why: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "line {}: {}", self.line, self.why)
        } else {
            write!(f, "line {}: {}: {}", self.line, self.key, self.why)
        }
    }
}

/// All problems found in one file.
#[derive(Debug, thiserror::Error)]
pub struct Issues(pub Vec<Issue>);

impl fmt::Display for Issues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{issue}")?;
        }
        Ok(())
    }
}

/// Parses a TOML document; a syntax error becomes a single [`Issue`] with its line.
pub fn parse(src: &str) -> Result<Spanned<Table<'_>>, Issues> {
    DeTable::parse(src).map_err(|e| {
        let line = e.span().map(|s| line_of(src, s.start)).unwrap_or(0);
        let why = e.message().trim().to_string();
        Issues(vec![Issue { key: String::new(), line, why: format!("TOML syntax error: {why}") }])
    })
}

/// 1-based line number of a byte offset.
pub fn line_of(src: &str, offset: usize) -> usize {
    src.as_bytes()[..offset.min(src.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

/// Walks tables of one source file, collecting issues.
pub struct Reader<'s> {
    src: &'s str,
    issues: Vec<Issue>,
}

/// A table being read: its key path, its entries, and which keys were taken.
pub struct Section<'t, 'i> {
    path: String,
    line: usize,
    table: &'t Table<'i>,
    taken: Vec<String>,
}

impl<'s> Reader<'s> {
    /// A reader over the text `src` (used to turn spans into line numbers).
    pub fn new(src: &'s str) -> Self {
        Self { src, issues: Vec::new() }
    }

    /// Line number of a span.
    pub fn line(&self, span: Range<usize>) -> usize {
        line_of(self.src, span.start)
    }

    /// Records a problem.
    pub fn issue(&mut self, key: impl Into<String>, line: usize, why: impl Into<String>) {
        self.issues.push(Issue { key: key.into(), line, why: why.into() });
    }

    /// Opens the document root.
    pub fn root<'t, 'i>(&self, doc: &'t Spanned<Table<'i>>) -> Section<'t, 'i> {
        Section { path: String::new(), line: 1, table: doc.get_ref(), taken: Vec::new() }
    }

    /// Finishes: `Ok(())` if nothing was recorded, else every issue sorted by line.
    pub fn finish(mut self) -> Result<(), Issues> {
        if self.issues.is_empty() {
            Ok(())
        } else {
            self.issues.sort_by_key(|i| i.line);
            Err(Issues(self.issues))
        }
    }

    /// Reports keys of `section` that were never taken.
    pub fn deny_unknown(&mut self, section: &Section<'_, '_>) {
        for (k, v) in section.table.iter() {
            let name = k.get_ref().as_ref();
            if !section.taken.iter().any(|t| t == name) {
                let line = self.line(k.span());
                let _ = v;
                self.issue(section.child_path(name), line, "unknown key");
            }
        }
    }

    /// Takes an optional sub-table.
    pub fn table<'t, 'i>(&mut self, section: &mut Section<'t, 'i>, key: &str) -> Option<Section<'t, 'i>> {
        let v = section.take(key)?;
        let path = section.child_path(key);
        let line = self.line(v.span());
        match v.get_ref() {
            DeValue::Table(t) => Some(Section { path, line, table: t, taken: Vec::new() }),
            _ => {
                self.issue(path, line, "expected a table");
                None
            }
        }
    }

    /// Takes an optional array of tables (`[[key]]`).
    pub fn tables<'t, 'i>(&mut self, section: &mut Section<'t, 'i>, key: &str) -> Vec<Section<'t, 'i>> {
        let Some(v) = section.take(key) else { return Vec::new() };
        let path = section.child_path(key);
        let line = self.line(v.span());
        let DeValue::Array(items) = v.get_ref() else {
            self.issue(path, line, "expected an array of tables");
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let line = self.line(item.span());
            match item.get_ref() {
                DeValue::Table(t) => {
                    out.push(Section { path: format!("{path}[{i}]"), line, table: t, taken: Vec::new() })
                }
                _ => self.issue(format!("{path}[{i}]"), line, "expected a table"),
            }
        }
        out
    }

    /// Takes an optional string.
    pub fn string<'t, 'i>(&mut self, section: &mut Section<'t, 'i>, key: &str) -> Option<(String, usize)> {
        let v = section.take(key)?;
        let line = self.line(v.span());
        match v.get_ref() {
            DeValue::String(s) => Some((s.to_string(), line)),
            other => {
                self.issue(section.child_path(key), line, format!("expected a string, found {}", kind(other)));
                None
            }
        }
    }

    /// Takes an optional date, written as a TOML date or a `"YYYY-MM-DD"` string; returns its
    /// text.
    pub fn date_text<'t, 'i>(&mut self, section: &mut Section<'t, 'i>, key: &str) -> Option<(String, usize)> {
        let v = section.take(key)?;
        let line = self.line(v.span());
        match v.get_ref() {
            DeValue::String(s) => Some((s.to_string(), line)),
            DeValue::Datetime(d) => Some((d.to_string(), line)),
            other => {
                self.issue(section.child_path(key), line, format!("expected a date, found {}", kind(other)));
                None
            }
        }
    }

    /// Takes an optional non-negative integer.
    pub fn unsigned<'t, 'i>(&mut self, section: &mut Section<'t, 'i>, key: &str) -> Option<(u64, usize)> {
        let v = section.take(key)?;
        let line = self.line(v.span());
        let parsed = match v.get_ref() {
            DeValue::Integer(i) => i64::from_str_radix(&i.as_str().replace('_', ""), i.radix()).ok(),
            _ => None,
        };
        match parsed {
            Some(n) if n >= 0 => Some((n as u64, line)),
            Some(_) => {
                self.issue(section.child_path(key), line, "must not be negative");
                None
            }
            None => {
                self.issue(section.child_path(key), line, format!("expected an integer, found {}", kind(v.get_ref())));
                None
            }
        }
    }

    /// Takes an optional boolean.
    pub fn boolean<'t, 'i>(&mut self, section: &mut Section<'t, 'i>, key: &str) -> Option<(bool, usize)> {
        let v = section.take(key)?;
        let line = self.line(v.span());
        match v.get_ref() {
            DeValue::Boolean(b) => Some((*b, line)),
            other => {
                self.issue(section.child_path(key), line, format!("expected true or false, found {}", kind(other)));
                None
            }
        }
    }

    /// Takes an optional array of strings; each element comes with its line.
    pub fn strings<'t, 'i>(&mut self, section: &mut Section<'t, 'i>, key: &str) -> Option<Vec<(String, usize)>> {
        let v = section.take(key)?;
        let path = section.child_path(key);
        let line = self.line(v.span());
        let DeValue::Array(items) = v.get_ref() else {
            self.issue(path, line, format!("expected an array of strings, found {}", kind(v.get_ref())));
            return None;
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let line = self.line(item.span());
            match item.get_ref() {
                DeValue::String(s) => out.push((s.to_string(), line)),
                other => self.issue(format!("{path}[{i}]"), line, format!("expected a string, found {}", kind(other))),
            }
        }
        Some(out)
    }

    /// Takes an optional duration written like `"30s"`, `"5m"`, `"1d"`, `"1h 30m"`.
    pub fn duration<'t, 'i>(&mut self, section: &mut Section<'t, 'i>, key: &str) -> Option<(Duration, usize)> {
        let (s, line) = self.string(section, key)?;
        match parse_duration(&s) {
            Ok(d) => Some((d, line)),
            Err(why) => {
                self.issue(section.child_path(key), line, why);
                None
            }
        }
    }

    /// Every entry of a table whose keys are free-form (e.g. a domain → route map), as strings.
    pub fn string_map(&mut self, section: &Section<'_, '_>) -> Vec<(String, String, usize)> {
        let mut out = Vec::new();
        for (k, v) in section.table.iter() {
            let key = k.get_ref().to_string();
            let line = self.line(k.span());
            match v.get_ref() {
                DeValue::String(s) => out.push((key, s.to_string(), line)),
                other => {
                    self.issue(section.child_path(&key), line, format!("expected a string, found {}", kind(other)))
                }
            }
        }
        out
    }
}

impl<'t, 'i> Section<'t, 'i> {
    /// Dotted path of this section (empty for the root).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Line where the section starts.
    pub fn line(&self) -> usize {
        self.line
    }

    /// Path of a key inside this section.
    pub fn child_path(&self, key: &str) -> String {
        if self.path.is_empty() { key.to_string() } else { format!("{}.{key}", self.path) }
    }

    /// The keys of this section, in the file's order (for tables keyed by free-form names).
    pub fn keys(&self) -> Vec<String> {
        self.table.iter().map(|(k, _)| k.get_ref().to_string()).collect()
    }

    /// Whether the key is present (taken or not).
    pub fn has(&self, key: &str) -> bool {
        self.table.get(key).is_some()
    }

    fn take(&mut self, key: &str) -> Option<&'t Value<'i>> {
        self.taken.push(key.to_string());
        self.table.get(key)
    }
}

/// Parses a human duration: an integer followed by `ms`, `s`, `m`, `h` or `d`, possibly several.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let trimmed = s.trim();
    if trimmed.is_empty() {
        return Err("empty duration (write e.g. \"30s\", \"5m\", \"1d\")".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = trimmed;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return Err(format!("invalid duration {s:?} (write e.g. \"30s\", \"5m\", \"1d\")"));
        }
        let n: u64 = rest[..digits].parse().map_err(|_| format!("duration {s:?} is too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
        let unit = &rest[..unit_len];
        let scale_ms: u64 = match unit {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(format!("invalid duration unit in {s:?} (use ms, s, m, h or d)")),
        };
        total += Duration::from_millis(n.checked_mul(scale_ms).ok_or_else(|| format!("duration {s:?} is too large"))?);
        rest = rest[unit_len..].trim_start();
    }
    Ok(total)
}

fn kind(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_duration("1h 30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("5 minutes").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("m").is_err());
    }

    #[test]
    fn collects_every_issue_with_lines() {
        let src = "a = 1\nb = \"x\"\n[t]\nc = true\nzz = 3\n";
        let doc = parse(src).unwrap();
        let mut r = Reader::new(src);
        let mut root = r.root(&doc);
        assert!(r.string(&mut root, "a").is_none());
        assert!(r.unsigned(&mut root, "b").is_none());
        let mut t = r.table(&mut root, "t").unwrap();
        assert_eq!(r.boolean(&mut t, "c").map(|x| x.0), Some(true));
        r.deny_unknown(&t);
        r.deny_unknown(&root);
        let issues = r.finish().unwrap_err().0;
        let got: Vec<_> = issues.iter().map(|i| (i.key.as_str(), i.line)).collect();
        assert_eq!(got, vec![("a", 1), ("b", 2), ("t.zz", 5)]);
    }

    #[test]
    fn syntax_error_has_line() {
        let e = parse("a = 1\nb = = 2\n").unwrap_err();
        assert_eq!(e.0[0].line, 2);
    }
}
