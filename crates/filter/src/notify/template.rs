//! Warning-mail templates: one file per case and language, `Subject: …` on the first line, an
//! empty line, then the body. `{name}` is a placeholder (`{{` and `}}` are literal braces);
//! lines starting with `#` are comments. Every error is found when the templates are loaded
//! (at start-up), never when the first virus arrives.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// The placeholders a template may use.
pub const PLACEHOLDERS: [&str; 13] = [
    "virus",
    "parts",
    "action",
    "from",
    "to",
    "subject",
    "date",
    "message_id",
    "queue_id",
    "sender",
    "recipients",
    "recipient",
    "hostname",
];

/// Which warning a template is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Case {
    /// Inbound message deleted (its body was infected); to each recipient.
    InboundDeleted,
    /// Inbound message delivered with attachments disinfected or removed; to each recipient.
    InboundCleaned,
    /// Outbound message not sent; to the sender.
    OutboundBlocked,
}

impl Case {
    /// Every case.
    pub const ALL: [Case; 3] = [Case::InboundDeleted, Case::InboundCleaned, Case::OutboundBlocked];

    /// The file-name stem.
    pub fn as_str(self) -> &'static str {
        match self {
            Case::InboundDeleted => "inbound-deleted",
            Case::InboundCleaned => "inbound-cleaned",
            Case::OutboundBlocked => "outbound-blocked",
        }
    }
}

/// A warning's language; a warning holds both, Japanese first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Lang {
    /// Japanese.
    Ja,
    /// English.
    En,
}

impl Lang {
    /// Every language, in the order of a warning.
    pub const ALL: [Lang; 2] = [Lang::Ja, Lang::En];

    /// `ja` or `en`, as in template file names.
    pub fn as_str(self) -> &'static str {
        match self {
            Lang::Ja => "ja",
            Lang::En => "en",
        }
    }
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Var(&'static str),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    subject: Vec<Piece>,
    body: Vec<Piece>,
}

impl Template {
    /// Parses a template; errors are `line N: why`.
    pub fn parse(src: &str) -> Result<Template, Vec<String>> {
        let mut errors = Vec::new();
        let lines: Vec<(usize, &str)> = src
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim_end_matches('\r')))
            .filter(|(_, l)| !l.starts_with('#'))
            .collect();
        let Some(&(first_no, first)) = lines.first() else {
            return Err(vec!["line 1: empty template (expected \"Subject: …\", an empty line, the body)".into()]);
        };
        let subject = match first.split_once(':') {
            Some((k, v)) if k.eq_ignore_ascii_case("subject") && !v.trim().is_empty() => {
                pieces(v.trim(), first_no, &mut errors)
            }
            _ => {
                errors.push(format!("line {first_no}: the first line must be \"Subject: …\""));
                Vec::new()
            }
        };
        match lines.get(1) {
            Some((_, l)) if l.trim().is_empty() => {}
            Some((n, _)) => errors.push(format!("line {n}: an empty line must follow the subject")),
            None => errors.push(format!("line {first_no}: the template has no body")),
        }
        let mut body = Vec::new();
        for (n, line) in lines.iter().skip(2) {
            body.extend(pieces(line, *n, &mut errors));
            body.push(Piece::Text("\n".into()));
        }
        if body.iter().all(|p| matches!(p, Piece::Text(t) if t.trim().is_empty())) && errors.is_empty() {
            errors.push(format!("line {first_no}: the template has no body"));
        }
        if errors.is_empty() { Ok(Template { subject, body }) } else { Err(errors) }
    }

    /// The subject with placeholders filled in (newlines in values become spaces).
    pub fn subject(&self, vars: &BTreeMap<&str, String>) -> String {
        render(&self.subject, vars).replace(['\r', '\n'], " ")
    }

    /// The body with placeholders filled in, lines ending in `\n`.
    pub fn body(&self, vars: &BTreeMap<&str, String>) -> String {
        render(&self.body, vars)
    }
}

fn render(pieces: &[Piece], vars: &BTreeMap<&str, String>) -> String {
    let mut out = String::new();
    for p in pieces {
        match p {
            Piece::Text(t) => out.push_str(t),
            Piece::Var(v) => out.push_str(vars.get(v).map(String::as_str).unwrap_or("")),
        }
    }
    out
}

fn pieces(line: &str, line_no: usize, errors: &mut Vec<String>) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut rest = line;
    while let Some(i) = rest.find(['{', '}']) {
        text.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            text.push_str(&tail[..1]);
            rest = &tail[2..];
            continue;
        }
        if let Some(after) = tail.strip_prefix('}') {
            errors.push(format!("line {line_no}: a lone '}}' (write '}}}}' for a brace)"));
            rest = after;
            continue;
        }
        let Some(end) = tail.find('}') else {
            errors.push(format!("line {line_no}: '{{' without a closing '}}' (write '{{{{' for a brace)"));
            rest = "";
            break;
        };
        let name = &tail[1..end];
        match PLACEHOLDERS.iter().find(|p| **p == name) {
            Some(p) => {
                if !text.is_empty() {
                    out.push(Piece::Text(std::mem::take(&mut text)));
                }
                out.push(Piece::Var(p));
            }
            None => errors
                .push(format!("line {line_no}: unknown placeholder {{{name}}} (known: {})", PLACEHOLDERS.join(", "))),
        }
        rest = &tail[end + 1..];
    }
    text.push_str(rest);
    if !text.is_empty() {
        out.push(Piece::Text(text));
    }
    out
}

/// Every template, by case and language.
#[derive(Debug, Clone)]
pub struct Templates {
    map: BTreeMap<(Case, Lang), Template>,
}

/// Template errors, each `FILE:line N: why`.
#[derive(Debug)]
pub struct TemplateErrors(pub Vec<String>);

impl fmt::Display for TemplateErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.join("\n"))
    }
}

impl std::error::Error for TemplateErrors {}

/// The default templates, built into the binary (the files under `crates/filter/templates`).
fn builtin(case: Case, lang: Lang) -> &'static str {
    match (case, lang) {
        (Case::InboundDeleted, Lang::Ja) => include_str!("../../templates/inbound-deleted.ja.txt"),
        (Case::InboundDeleted, Lang::En) => include_str!("../../templates/inbound-deleted.en.txt"),
        (Case::InboundCleaned, Lang::Ja) => include_str!("../../templates/inbound-cleaned.ja.txt"),
        (Case::InboundCleaned, Lang::En) => include_str!("../../templates/inbound-cleaned.en.txt"),
        (Case::OutboundBlocked, Lang::Ja) => include_str!("../../templates/outbound-blocked.ja.txt"),
        (Case::OutboundBlocked, Lang::En) => include_str!("../../templates/outbound-blocked.en.txt"),
    }
}

/// The file name of a template: `inbound-deleted.ja.txt`.
pub fn file_name(case: Case, lang: Lang) -> String {
    format!("{}.{}.txt", case.as_str(), lang.as_str())
}

/// Writes the built-in templates into `dir` (created if missing), leaving files that exist
/// alone; returns the files written.
pub fn export(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for case in Case::ALL {
        for lang in Lang::ALL {
            let path = dir.join(file_name(case, lang));
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    std::io::Write::write_all(&mut f, builtin(case, lang).as_bytes())?;
                    written.push(path);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(written)
}

impl Templates {
    /// The defaults, with any file of the same name in `dir` taking a default's place. A file
    /// in `dir` that is not a template name is an error (a misspelt override would otherwise be
    /// silently ignored).
    pub fn load(dir: Option<&Path>) -> Result<Templates, TemplateErrors> {
        let mut errors = Vec::new();
        let mut map = BTreeMap::new();
        let known: Vec<String> = Case::ALL.iter().flat_map(|c| Lang::ALL.iter().map(|l| file_name(*c, *l))).collect();
        if let Some(dir) = dir {
            match std::fs::read_dir(dir) {
                Ok(entries) => {
                    for e in entries.flatten() {
                        let name = e.file_name().to_string_lossy().into_owned();
                        if !known.contains(&name) && !name.starts_with('.') {
                            errors.push(format!(
                                "{}: not a template name (expected one of {})",
                                e.path().display(),
                                known.join(", ")
                            ));
                        }
                    }
                }
                Err(e) => errors.push(format!("{}: cannot read the template directory: {e}", dir.display())),
            }
        }
        for case in Case::ALL {
            for lang in Lang::ALL {
                let over: Option<PathBuf> = dir.map(|d| d.join(file_name(case, lang))).filter(|p| p.exists());
                let (origin, src) = match &over {
                    Some(p) => match std::fs::read(p) {
                        Ok(b) => match String::from_utf8(b) {
                            Ok(s) => (p.display().to_string(), s),
                            Err(_) => {
                                errors.push(format!("{}: not UTF-8 text", p.display()));
                                continue;
                            }
                        },
                        Err(e) => {
                            errors.push(format!("{}: {e}", p.display()));
                            continue;
                        }
                    },
                    None => (format!("(built-in) {}", file_name(case, lang)), builtin(case, lang).to_string()),
                };
                match Template::parse(&src) {
                    Ok(t) => {
                        map.insert((case, lang), t);
                    }
                    Err(es) => errors.extend(es.into_iter().map(|e| format!("{origin}:{e}"))),
                }
            }
        }
        if errors.is_empty() { Ok(Templates { map }) } else { Err(TemplateErrors(errors)) }
    }

    /// The template for a case and language.
    pub fn get(&self, case: Case, lang: Lang) -> &Template {
        &self.map[&(case, lang)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_templates_load() {
        let t = Templates::load(None).unwrap();
        let vars = BTreeMap::from([("virus", "Eicar".to_string()), ("recipient", "a@example.jp".to_string())]);
        let body = t.get(Case::InboundDeleted, Lang::Ja).body(&vars);
        assert!(body.contains("a@example.jp 様") && body.contains("検出したウイルス: Eicar"), "{body}");
        assert!(!body.contains('#'));
    }

    #[test]
    fn errors_name_the_line() {
        let errs = Template::parse("Subject: hi {virus}\n\nbody {nope} and { open\n}\n").unwrap_err();
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs[0].starts_with("line 3: unknown placeholder {nope}"), "{errs:?}");
        assert!(errs[1].starts_with("line 3: '{' without"), "{errs:?}");
        assert!(errs[2].starts_with("line 4: a lone '}'"), "{errs:?}");
        assert!(Template::parse("Hello\n\nbody\n").unwrap_err()[0].contains("Subject"));
        assert!(Template::parse("Subject: x\nbody\n").unwrap_err()[0].contains("empty line"));
        assert!(Template::parse("Subject: x\n\n\n").unwrap_err()[0].contains("no body"));
    }

    #[test]
    fn braces_escape() {
        let t = Template::parse("Subject: {{x}} {virus}\n\n{{{virus}}}\n").unwrap();
        let vars = BTreeMap::from([("virus", "V".to_string())]);
        assert_eq!(t.subject(&vars), "{x} V");
        assert_eq!(t.body(&vars), "{V}\n");
    }

    #[test]
    fn overrides_are_checked_at_load() {
        let dir = std::env::temp_dir().join(format!("mxshield-tpl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("inbound-deleted.ja.txt"), "Subject: 削除 {virus}\n\n{bogus}\n").unwrap();
        std::fs::write(dir.join("inbound-deletd.en.txt"), "Subject: x\n\ny\n").unwrap();
        let errs = Templates::load(Some(&dir)).unwrap_err().0;
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs.iter().any(|e| e.contains("inbound-deletd.en.txt: not a template name")));
        assert!(errs.iter().any(|e| e.contains("inbound-deleted.ja.txt:line 3: unknown placeholder {bogus}")));
    }
}
