//! Warning mails (SPEC R12–R14): one message in Japanese then English, from the templates
//! ([`template`]), encoded as UTF-8 with base64 or as ISO-2022-JP, sent from `<>` with
//! `From:` the postmaster and `Auto-Submitted: auto-generated`.

pub mod template;

use std::collections::BTreeMap;

use chrono::Utc;

pub use template::{Case, Lang, Templates};

/// How a warning's text is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Charset {
    /// UTF-8, body in base64, subject as RFC 2047 `B` words.
    #[default]
    Utf8,
    /// ISO-2022-JP (7bit), as Japanese mail readers have long expected; falls back to UTF-8
    /// for a warning whose text has characters outside JIS X 0208.
    Iso2022Jp,
}

impl Charset {
    /// Parses `utf-8` or `iso-2022-jp`.
    pub fn parse(s: &str) -> Option<Charset> {
        match s.to_ascii_lowercase().as_str() {
            "utf-8" | "utf8" => Some(Charset::Utf8),
            "iso-2022-jp" => Some(Charset::Iso2022Jp),
            _ => None,
        }
    }
}

/// The original message's header fields, decoded (RFC 2047, any charset), for warnings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Original {
    /// `From:` of the original.
    pub from: String,
    /// `To:` of the original.
    pub to: String,
    /// `Subject:` of the original, decoded.
    pub subject: String,
    /// `Date:` of the original.
    pub date: String,
    /// `Message-ID:` of the original.
    pub message_id: String,
}

impl Original {
    /// Reads the fields from the message's top header section.
    pub fn of(raw: &[u8]) -> Original {
        // only the header section (where the MIME parser says it ends): parsing a large body
        // again would be wasted work
        let (_, body_start) = mime::header::parse(raw, 0, raw.len());
        let head = &raw[..body_start];
        let msg = mime::parse(head);
        let get = |name: &str| msg.root.header_text(head, name).map(|v| shorten(v.trim(), 400)).unwrap_or_default();
        Original {
            from: get("From"),
            to: get("To"),
            subject: get("Subject"),
            date: get("Date"),
            message_id: get("Message-ID"),
        }
    }
}

fn shorten(s: &str, max_chars: usize) -> String {
    let clean: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    match clean.char_indices().nth(max_chars) {
        Some((i, _)) => format!("{}…", &clean[..i]),
        None => clean,
    }
}

/// One affected part, as a warning lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AffectedPart {
    /// Decoded file name, the part's name (`part 2`) if it has none, or empty for the body
    /// a reader sees.
    pub name: String,
    /// Viruses found in it.
    pub viruses: Vec<String>,
    /// What was done to it when the message was delivered without it.
    pub done: Option<DoneKind>,
}

/// What a warning is about.
#[derive(Debug, Clone)]
pub struct Incident<'a> {
    /// Which warning.
    pub case: Case,
    /// Queue id of the message the warning is about.
    pub queue_id: &'a str,
    /// Its envelope sender.
    pub sender: &'a str,
    /// Its recipients.
    pub recipients: &'a [String],
    /// Its header fields.
    pub original: &'a Original,
    /// The viruses found.
    pub viruses: &'a [String],
    /// The parts concerned.
    pub parts: &'a [AffectedPart],
}

/// Builds warning mails.
#[derive(Debug, Clone)]
pub struct Notifier {
    /// The templates.
    pub templates: Templates,
    /// How the warning text is encoded.
    pub charset: Charset,
    /// `From:` of warnings.
    pub postmaster: String,
    /// Our host name (Message-ID).
    pub hostname: String,
}

impl Notifier {
    /// The warning about `incident` for `to` (CRLF line endings).
    pub fn build(&self, incident: &Incident<'_>, to: &str) -> Vec<u8> {
        let mut subjects = Vec::new();
        let mut bodies = Vec::new();
        for lang in Lang::ALL {
            let vars = variables(incident, to, lang, &self.hostname);
            let t = self.templates.get(incident.case, lang);
            subjects.push(t.subject(&vars));
            bodies.push(t.body(&vars));
        }
        let subject = subjects.join(" / ");
        let body = bodies.join(&format!("\n{}\n\n", "-".repeat(60))).replace('\n', "\r\n");
        let now = Utc::now();
        let mut m = String::new();
        m.push_str(&format!("From: {}\r\n", self.postmaster));
        m.push_str(&format!("To: <{to}>\r\n"));
        m.push_str(&format!("Date: {}\r\n", now.to_rfc2822()));
        m.push_str(&format!(
            "Message-ID: <{}.{}.warning.{}@{}>\r\n",
            incident.queue_id,
            now.timestamp_millis(),
            fastrand::u32(..),
            self.hostname
        ));
        m.push_str("MIME-Version: 1.0\r\nAuto-Submitted: auto-generated\r\nX-Auto-Response-Suppress: All\r\n");
        m.push_str(&format!("X-Mxshield-Warning-Of: {}\r\n", incident.queue_id));
        let jis =
            (self.charset == Charset::Iso2022Jp).then(|| (iso2022jp(&subject), iso2022jp(&body))).and_then(|(s, b)| {
                match (s, b) {
                    (Some(_), Some(b)) => Some((mime::encode::header_field_jis("Subject", &subject), b)),
                    _ => None,
                }
            });
        match jis {
            Some((subject_field, body)) => {
                m.push_str(&subject_field);
                m.push_str("Content-Type: text/plain; charset=ISO-2022-JP\r\nContent-Transfer-Encoding: 7bit\r\n\r\n");
                let mut out = m.into_bytes();
                out.extend_from_slice(&body);
                out
            }
            None => {
                m.push_str(&mime::encode::header_field("Subject", &subject));
                m.push_str("Content-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: base64\r\n\r\n");
                m.push_str(&mime::encode::base64_lines(body.as_bytes()));
                m.into_bytes()
            }
        }
    }
}

/// The template variables of an incident, for one language.
fn variables<'a>(i: &Incident<'_>, to: &str, lang: Lang, hostname: &str) -> BTreeMap<&'a str, String> {
    let or_none = |s: &str| if s.is_empty() { none(lang).to_string() } else { s.to_string() };
    BTreeMap::from([
        ("virus", i.viruses.join(", ")),
        ("parts", parts_text(i.parts, lang)),
        ("action", action_text(i.case, lang).to_string()),
        ("from", or_none(&i.original.from)),
        ("to", or_none(&i.original.to)),
        ("subject", or_none(&i.original.subject)),
        ("date", or_none(&i.original.date)),
        ("message_id", or_none(&i.original.message_id)),
        ("queue_id", i.queue_id.to_string()),
        ("sender", if i.sender.is_empty() { "<>".to_string() } else { i.sender.to_string() }),
        ("recipients", i.recipients.join(", ")),
        ("recipient", to.to_string()),
        ("hostname", hostname.to_string()),
    ])
}

fn none(lang: Lang) -> &'static str {
    match lang {
        Lang::Ja => "（なし）",
        Lang::En => "(none)",
    }
}

fn action_text(case: Case, lang: Lang) -> &'static str {
    match (case, lang) {
        (Case::InboundDeleted, Lang::Ja) => "メール全体を削除しました（配送していません）",
        (Case::InboundDeleted, Lang::En) => "the whole message was deleted (not delivered)",
        (Case::InboundCleaned, Lang::Ja) => "感染した添付ファイルを駆除または削除し、残りを配送しました",
        (Case::InboundCleaned, Lang::En) => "infected attachments were disinfected or removed; the rest was delivered",
        (Case::OutboundBlocked, Lang::Ja) => "メールを送信せずに削除しました",
        (Case::OutboundBlocked, Lang::En) => "the message was deleted without being sent",
    }
}

fn parts_text(parts: &[AffectedPart], lang: Lang) -> String {
    let lines: Vec<String> = parts
        .iter()
        .map(|p| {
            let viruses = p.viruses.join(", ");
            let done = match (&p.done, lang) {
                (None, _) => String::new(),
                (Some(DoneKind::Removed), Lang::Ja) => " → 添付ファイルを削除しました".to_string(),
                (Some(DoneKind::Removed), Lang::En) => " → attachment removed".to_string(),
                (Some(DoneKind::Disinfected(m)), Lang::Ja) => {
                    format!(" → 駆除しました（書庫から {} を削除）", m.join("、"))
                }
                (Some(DoneKind::Disinfected(m)), Lang::En) => {
                    format!(" → disinfected ({} removed from the archive)", m.join(", "))
                }
            };
            let name = match (p.name.is_empty(), lang) {
                (false, _) => p.name.as_str(),
                (true, Lang::Ja) => "本文",
                (true, Lang::En) => "the message body",
            };
            format!("  - {name} [{viruses}]{done}")
        })
        .collect();
    lines.join("\n")
}

/// `text` in ISO-2022-JP, or `None` if a character has no JIS X 0208 / ASCII form.
fn iso2022jp(text: &str) -> Option<Vec<u8>> {
    let (bytes, _, unmappable) = encoding_rs::ISO_2022_JP.encode(text);
    (!unmappable).then(|| bytes.into_owned())
}

/// How an attachment was handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DoneKind {
    /// The archive was rebuilt without these members.
    Disinfected(Vec<String>),
    /// The attachment was replaced by a notice.
    Removed,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notifier(charset: Charset) -> Notifier {
        Notifier {
            templates: Templates::load(None).unwrap(),
            charset,
            postmaster: "postmaster@mx.example.net".into(),
            hostname: "mx.example.net".into(),
        }
    }

    fn incident<'a>(original: &'a Original, parts: &'a [AffectedPart], viruses: &'a [String]) -> Incident<'a> {
        Incident {
            case: Case::InboundCleaned,
            queue_id: "Q1",
            sender: "a@example.org",
            recipients: &[],
            original,
            viruses,
            parts,
        }
    }

    #[test]
    fn utf8_warning_decodes_to_japanese_then_english() {
        let original = Original { subject: "請求書の件".into(), ..Default::default() };
        let parts = [AffectedPart {
            name: "請求書.zip".into(),
            viruses: vec!["Eicar".into()],
            done: Some(DoneKind::Disinfected(vec!["eicar.com".into()])),
        }];
        let viruses = ["Eicar".to_string()];
        let raw = notifier(Charset::Utf8).build(&incident(&original, &parts, &viruses), "b@example.jp");
        let m = mime::parse(&raw);
        let subject = m.root.header_text(&raw, "Subject").unwrap();
        assert!(subject.starts_with("ウイルスに感染した添付ファイルを駆除しました / An infected"), "{subject}");
        let body = String::from_utf8(m.root.decoded_body(&raw)).unwrap();
        let ja = body.find("請求書.zip [Eicar] → 駆除しました（書庫から eicar.com を削除）").unwrap();
        let en = body.find("Attachments handled:").unwrap();
        assert!(ja < en);
        assert!(body.contains("件名 (Subject):    請求書の件"));
        assert!(String::from_utf8_lossy(&raw).contains("Auto-Submitted: auto-generated\r\n"));
    }

    #[test]
    fn iso2022jp_warning_is_7bit_and_decodes() {
        let original = Original { subject: "テスト".into(), ..Default::default() };
        let viruses = ["Eicar".to_string()];
        let raw = notifier(Charset::Iso2022Jp).build(&incident(&original, &[], &viruses), "b@example.jp");
        assert!(raw.is_ascii());
        let m = mime::parse(&raw);
        assert_eq!(m.root.charset(), Some("ISO-2022-JP"));
        let subject = m.root.header_text(&raw, "Subject").unwrap();
        assert!(subject.starts_with("ウイルスに感染した添付ファイルを駆除しました"), "{subject}");
        let decoded = m.root.decoded_body(&raw);
        let (body, _, bad) = encoding_rs::ISO_2022_JP.decode(&decoded);
        assert!(!bad && body.contains("件名 (Subject):    テスト"), "{body}");
    }

    #[test]
    fn original_fields_come_from_the_header_section_only() {
        let raw =
            b"Subject: =?UTF-8?B?5oyo5ou2?=\r\nFrom: a@b.example\r\nMessage-ID: <m@b>\r\n\r\nSubject: not this\r\n";
        let o = Original::of(raw);
        assert_eq!((o.subject.as_str(), o.from.as_str(), o.message_id.as_str()), ("挨拶", "a@b.example", "<m@b>"));
        assert_eq!(Original::of(b"Subject: no body\n").subject, "no body");
    }

    #[test]
    fn iso2022jp_falls_back_to_utf8_for_characters_outside_jis() {
        let original = Original { subject: "emoji 😀".into(), ..Default::default() };
        let viruses = ["Eicar".to_string()];
        let raw = notifier(Charset::Iso2022Jp).build(&incident(&original, &[], &viruses), "b@example.jp");
        assert_eq!(mime::parse(&raw).root.charset(), Some("UTF-8"));
    }
}
