//! What a scan report means for a message: a pure function of (direction, report, policy),
//! tested as a table (SPEC R6, R7, R11–R13).
//!
//! Refusals are causes ([`Refusal`]); `inbound` turns them into replies (the codes below).
//!
//! | report | inbound | outbound |
//! |---|---|---|
//! | a limit was exceeded anywhere | refuse `552 5.3.4` | same |
//! | the scan ran out of time | refuse `451 4.7.1` (temporary) | same |
//! | the body a reader sees is infected (or a part that cannot be cut out alone: the whole message, a part hidden outside the MIME structure) | drop, warn recipients | drop, warn sender |
//! | only attachments infected (a forwarded `message/rfc822` counts as one) | rewrite: disinfect zip archives, remove the rest; warn recipients | drop, warn sender |
//! | encrypted parts, policy `pass` | deliver, marked unscanned | same |
//! | encrypted parts, policy `refuse` | refuse `554 5.7.1` | same |
//! | unreadable parts (damaged, unsupported), contract's `unreadable_attachments = "refuse"` | refuse `554 5.7.1` | same |
//! | `message/partial` | deliver, marked unscanned | same |
//! | clean | deliver | same |

use scan::verdict::Unreadability;
use scan::{FileType, Layer, Verdict};

use crate::Refusal;

use spool::attrs::Direction;

pub use contracts::EncryptedPolicy;

/// Who is warned when a message is dropped or rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Warn {
    /// The recipients (inbound mail).
    Recipients,
    /// The sender (outbound mail).
    Sender,
}

/// How one infected attachment is handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fix {
    /// Rebuild the archive without these members (paths inside the archive).
    Disinfect(Vec<String>),
    /// Replace the part with a notice.
    Remove,
}

/// One attachment to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartFix {
    /// Its MIME path (1-based).
    pub mime_path: Vec<usize>,
    /// Its file name, or its name in the report.
    pub name: String,
    /// Viruses found in it.
    pub viruses: Vec<String>,
    /// How it is handled.
    pub fix: Fix,
}

/// The action on a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Deliver unchanged; `unscanned` says what could not be scanned (`encrypted NAME`,
    /// `partial`, `unreadable NAME`), for the result header.
    Deliver {
        /// What could not be scanned, for the result header.
        unscanned: Vec<String>,
    },
    /// Deliver with these attachments disinfected or removed, and warn the recipients.
    Rewrite {
        /// The attachments to change.
        fixes: Vec<PartFix>,
        /// What could not be scanned, for the result header.
        unscanned: Vec<String>,
    },
    /// Delete the message and warn.
    Drop {
        /// Who is warned.
        warn: Warn,
        /// The viruses found.
        viruses: Vec<String>,
    },
    /// Refuse at SMTP time, for this cause.
    Refuse(Refusal),
}

impl Action {
    /// One word for logs.
    pub fn word(&self) -> &'static str {
        match self {
            Action::Deliver { unscanned } if unscanned.is_empty() => "deliver",
            Action::Deliver { .. } => "deliver-unscanned",
            Action::Rewrite { .. } => "rewrite",
            Action::Drop { .. } => "drop",
            Action::Refuse(_) => "refuse",
        }
    }
}

/// What the message's contracts say of content that cannot be scanned (the strictest of them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContentPolicy {
    /// Password-protected content (R11).
    pub encrypted: EncryptedPolicy,
    /// Content that cannot be read: a damaged archive, an unsupported method.
    pub unreadable: EncryptedPolicy,
}

impl ContentPolicy {
    /// The strictest of `self` and `other`.
    pub fn strictest(self, other: ContentPolicy) -> ContentPolicy {
        let max = |a: EncryptedPolicy, b: EncryptedPolicy| if b == EncryptedPolicy::Refuse { b } else { a };
        ContentPolicy {
            encrypted: max(self.encrypted, other.encrypted),
            unreadable: max(self.unreadable, other.unreadable),
        }
    }
}

/// Decides what happens to a message whose scan produced `root` (the `message` layer).
pub fn decide(direction: Direction, root: &Layer, policy: ContentPolicy) -> Action {
    if let Verdict::LimitExceeded(limit) = first(root, Verdict::is_limit) {
        // a timeout says more about the load than the message: the client tries again
        return Action::Refuse(if limit.is_time() { Refusal::ScanTimeout } else { Refusal::Limit(limit) });
    }
    let viruses = virus_names(root);
    if !viruses.is_empty() {
        let body_infected = root.verdict.is_infected()
            || root.children.iter().any(|p| p.overall().is_infected() && (p.body_text || !can_cut_out(p)));
        if direction == Direction::Outbound {
            return Action::Drop { warn: Warn::Sender, viruses };
        }
        if body_infected {
            return Action::Drop { warn: Warn::Recipients, viruses };
        }
    }
    let unscanned = unscanned(root);
    if policy.encrypted == EncryptedPolicy::Refuse && any(root, |v| matches!(v, Verdict::Encrypted(_))) {
        return Action::Refuse(Refusal::Encrypted);
    }
    if policy.unreadable == EncryptedPolicy::Refuse && any(root, |v| matches!(v, Verdict::Unscannable(_))) {
        return Action::Refuse(Refusal::Unreadable);
    }
    if viruses.is_empty() {
        return Action::Deliver { unscanned };
    }
    let fixes = root
        .children
        .iter()
        .filter(|p| p.overall().is_infected())
        .map(|p| PartFix {
            mime_path: p.mime_path.clone().unwrap_or_default(),
            name: p.filename.clone().unwrap_or_else(|| p.name.clone()),
            viruses: virus_names(p),
            fix: match disinfectable(p) {
                Some(members) => Fix::Disinfect(members),
                None => Fix::Remove,
            },
        })
        .collect();
    Action::Rewrite { fixes, unscanned }
}

/// Whether a part can be replaced without touching the rest: a real MIME part below the top.
fn can_cut_out(part: &Layer) -> bool {
    !part.loose && part.mime_path.as_ref().is_some_and(|p| !p.is_empty())
}

/// Infected members of a zip part (paths inside it, `a.zip › b.exe`): each is a member of the
/// zip or of zips nested in it, so the archives can be rebuilt without them. `None` when the
/// zip's own bytes matched a signature while its members were clean.
fn disinfectable(part: &Layer) -> Option<Vec<String>> {
    if part.file_type != FileType::Zip {
        return None;
    }
    if part.verdict.is_infected() {
        // An engine that reports no members (clamd) names the zip itself: the rebuild finds
        // the infected members by scanning each, and removes the whole zip if that finds none.
        return part.children.is_empty().then(Vec::new);
    }
    let mut members = Vec::new();
    collect_members(part, "", &mut members).then_some(members)
}

fn collect_members(archive: &Layer, prefix: &str, out: &mut Vec<String>) -> bool {
    for m in &archive.children {
        if !m.overall().is_infected() {
            continue;
        }
        let path = if prefix.is_empty() { m.name.clone() } else { format!("{prefix} › {}", m.name) };
        if m.file_type == FileType::Zip && !m.verdict.is_infected() {
            if !collect_members(m, &path, out) {
                return false;
            }
        } else {
            // any other infected member (a document, a tar, a gzip …) goes as a whole
            out.push(path);
        }
    }
    true
}

/// Every virus name in the tree, each once, in order.
pub fn virus_names(l: &Layer) -> Vec<String> {
    let mut out = Vec::new();
    walk(l, &mut |x| {
        if let Verdict::Infected(n) = &x.verdict
            && !out.contains(n)
        {
            out.push(n.clone());
        }
    });
    out
}

fn unscanned(root: &Layer) -> Vec<String> {
    let mut out = Vec::new();
    walk(root, &mut |x| {
        let name = || x.filename.clone().unwrap_or_else(|| x.name.clone());
        let what = match &x.verdict {
            Verdict::Encrypted(_) => format!("encrypted {}", name()),
            Verdict::Unscannable(why) if why.kind == Unreadability::Partial => "partial".to_string(),
            Verdict::Unscannable(_) => format!("unreadable {}", name()),
            _ => return,
        };
        if !out.contains(&what) {
            out.push(what);
        }
    });
    out
}

fn walk<'a>(l: &'a Layer, f: &mut dyn FnMut(&'a Layer)) {
    f(l);
    for c in &l.children {
        walk(c, f);
    }
}

fn any(l: &Layer, p: impl Fn(&Verdict) -> bool + Copy) -> bool {
    p(&l.verdict) || l.children.iter().any(|c| any(c, p))
}

fn first(l: &Layer, p: impl Fn(&Verdict) -> bool + Copy) -> Verdict {
    if p(&l.verdict) {
        return l.verdict.clone();
    }
    l.children.iter().map(|c| first(c, p)).find(|v| p(v)).unwrap_or(Verdict::Clean)
}

#[cfg(test)]
mod tests {
    use super::*;
    use scan::limits::Limit;

    fn leaf(name: &str, ft: FileType, v: Verdict) -> Layer {
        let mut l = Layer::new(name, ft, 10);
        l.verdict = v;
        l
    }

    fn part(n: usize, name: &str, ft: FileType, v: Verdict, body: bool, children: Vec<Layer>) -> Layer {
        let mut l = leaf(&format!("part {n} ({name})"), ft, v);
        l.mime_path = Some(vec![n]);
        l.filename = (!body).then(|| name.to_string());
        l.body_text = body;
        l.children = children;
        l
    }

    fn message(parts: Vec<Layer>) -> Layer {
        let mut m = Layer::new("message", FileType::Mail, 100);
        m.children = parts;
        m
    }

    fn virus() -> Verdict {
        Verdict::Infected("Eicar".into())
    }

    #[test]
    fn decision_table() {
        use Direction::{Inbound, Outbound};
        use EncryptedPolicy::{Pass, Refuse};
        let clean = message(vec![part(1, "text", FileType::Text, Verdict::Clean, true, vec![])]);
        let body_virus = message(vec![part(1, "text", FileType::Text, virus(), true, vec![])]);
        let exe = message(vec![
            part(1, "text", FileType::Text, Verdict::Clean, true, vec![]),
            part(2, "x.exe", FileType::Pe, virus(), false, vec![]),
        ]);
        let zipped = message(vec![
            part(1, "text", FileType::Text, Verdict::Clean, true, vec![]),
            part(
                2,
                "docs.zip",
                FileType::Zip,
                Verdict::Clean,
                false,
                vec![leaf("ok.txt", FileType::Text, Verdict::Clean), leaf("bad.com", FileType::Pe, virus()), {
                    let mut inner = leaf("inner.zip", FileType::Zip, Verdict::Clean);
                    inner.children = vec![leaf("worse.com", FileType::Pe, virus())];
                    inner
                }],
            ),
        ]);
        let in_tar = message(vec![part(
            2,
            "a.tar",
            FileType::Tar,
            Verdict::Clean,
            false,
            vec![leaf("bad.com", FileType::Pe, virus())],
        )]);
        let encrypted = message(vec![part(
            1,
            "secret.zip",
            FileType::Zip,
            Verdict::Clean,
            false,
            vec![leaf("doc.txt", FileType::Binary, Verdict::Encrypted("Encrypted.Zip".into()))],
        )]);
        let partial = message(vec![part(
            1,
            "p",
            FileType::Mail,
            Verdict::Unscannable(scan::verdict::Unreadable::partial()),
            false,
            vec![],
        )]);
        let mut whole = part(1, "x.exe", FileType::Pe, virus(), false, vec![]);
        whole.mime_path = Some(vec![]);
        let whole = message(vec![whole]);
        let mut hidden_part = part(1, "x.exe", FileType::Pe, virus(), false, vec![]);
        hidden_part.loose = true;
        let hidden = message(vec![part(1, "text", FileType::Text, Verdict::Clean, true, vec![]), hidden_part]);
        let mut gz = leaf("x.gz", FileType::Gzip, Verdict::Clean);
        gz.children = vec![leaf("x", FileType::Pe, virus())];
        let gz_in_zip = message(vec![
            part(1, "text", FileType::Text, Verdict::Clean, true, vec![]),
            part(2, "b.zip", FileType::Zip, Verdict::Clean, false, vec![gz]),
        ]);
        let zip_itself = message(vec![
            part(1, "text", FileType::Text, Verdict::Clean, true, vec![]),
            part(2, "w.zip", FileType::Zip, virus(), false, vec![leaf("a", FileType::Text, Verdict::Clean)]),
        ]);
        let opaque_zip = message(vec![
            part(1, "text", FileType::Text, Verdict::Clean, true, vec![]),
            part(2, "o.zip", FileType::Zip, virus(), false, vec![]),
        ]);
        let bomb = message(vec![part(
            1,
            "bomb.zip",
            FileType::Zip,
            Verdict::LimitExceeded(Limit::Expanded { max: 60_000_000 }),
            false,
            vec![],
        )]);

        let table: Vec<(&str, Direction, &Layer, EncryptedPolicy, Action)> = vec![
            ("clean", Inbound, &clean, Pass, Action::Deliver { unscanned: vec![] }),
            (
                "body virus in",
                Inbound,
                &body_virus,
                Pass,
                Action::Drop { warn: Warn::Recipients, viruses: vec!["Eicar".into()] },
            ),
            (
                "body virus out",
                Outbound,
                &body_virus,
                Pass,
                Action::Drop { warn: Warn::Sender, viruses: vec!["Eicar".into()] },
            ),
            (
                "attachment in",
                Inbound,
                &exe,
                Pass,
                Action::Rewrite {
                    fixes: vec![PartFix {
                        mime_path: vec![2],
                        name: "x.exe".into(),
                        viruses: vec!["Eicar".into()],
                        fix: Fix::Remove,
                    }],
                    unscanned: vec![],
                },
            ),
            (
                "attachment out",
                Outbound,
                &exe,
                Pass,
                Action::Drop { warn: Warn::Sender, viruses: vec!["Eicar".into()] },
            ),
            (
                "zip in",
                Inbound,
                &zipped,
                Pass,
                Action::Rewrite {
                    fixes: vec![PartFix {
                        mime_path: vec![2],
                        name: "docs.zip".into(),
                        viruses: vec!["Eicar".into()],
                        fix: Fix::Disinfect(vec!["bad.com".into(), "inner.zip › worse.com".into()]),
                    }],
                    unscanned: vec![],
                },
            ),
            (
                "tar in",
                Inbound,
                &in_tar,
                Pass,
                Action::Rewrite {
                    fixes: vec![PartFix {
                        mime_path: vec![2],
                        name: "a.tar".into(),
                        viruses: vec!["Eicar".into()],
                        fix: Fix::Remove,
                    }],
                    unscanned: vec![],
                },
            ),
            (
                "encrypted pass",
                Inbound,
                &encrypted,
                Pass,
                Action::Deliver { unscanned: vec!["encrypted doc.txt".into()] },
            ),
            ("partial", Inbound, &partial, Pass, Action::Deliver { unscanned: vec!["partial".into()] }),
            (
                "whole message is the attachment",
                Inbound,
                &whole,
                Pass,
                Action::Drop { warn: Warn::Recipients, viruses: vec!["Eicar".into()] },
            ),
            (
                "hidden part",
                Inbound,
                &hidden,
                Pass,
                Action::Drop { warn: Warn::Recipients, viruses: vec!["Eicar".into()] },
            ),
            (
                "gzip in zip",
                Inbound,
                &gz_in_zip,
                Pass,
                Action::Rewrite {
                    fixes: vec![PartFix {
                        mime_path: vec![2],
                        name: "b.zip".into(),
                        viruses: vec!["Eicar".into()],
                        fix: Fix::Disinfect(vec!["x.gz".into()]),
                    }],
                    unscanned: vec![],
                },
            ),
            (
                "zip reported without members (clamd)",
                Inbound,
                &opaque_zip,
                Pass,
                Action::Rewrite {
                    fixes: vec![PartFix {
                        mime_path: vec![2],
                        name: "o.zip".into(),
                        viruses: vec!["Eicar".into()],
                        fix: Fix::Disinfect(vec![]),
                    }],
                    unscanned: vec![],
                },
            ),
            (
                "zip matched as a whole",
                Inbound,
                &zip_itself,
                Pass,
                Action::Rewrite {
                    fixes: vec![PartFix {
                        mime_path: vec![2],
                        name: "w.zip".into(),
                        viruses: vec!["Eicar".into()],
                        fix: Fix::Remove,
                    }],
                    unscanned: vec![],
                },
            ),
        ];
        let encrypted_only = |p| ContentPolicy { encrypted: p, unreadable: Pass };
        for (what, dir, report, policy, expected) in table {
            assert_eq!(decide(dir, report, encrypted_only(policy)), expected, "{what}");
        }
        assert_eq!(decide(Inbound, &encrypted, encrypted_only(Refuse)), Action::Refuse(Refusal::Encrypted));
        let broken = message(vec![part(
            1,
            "old.zip",
            FileType::Zip,
            Verdict::Unscannable(scan::verdict::Unreadable::damaged("Zip", "compression method 6 not supported")),
            false,
            vec![],
        )]);
        assert_eq!(
            decide(Inbound, &broken, ContentPolicy::default()),
            Action::Deliver { unscanned: vec!["unreadable old.zip".into()] }
        );
        let refuse_unreadable = ContentPolicy { encrypted: Pass, unreadable: Refuse };
        assert_eq!(decide(Outbound, &broken, refuse_unreadable), Action::Refuse(Refusal::Unreadable));
        assert!(matches!(decide(Inbound, &encrypted, refuse_unreadable), Action::Deliver { .. }));
        let slow = message(vec![part(
            1,
            "big.zip",
            FileType::Zip,
            Verdict::LimitExceeded(Limit::Time { max: std::time::Duration::from_secs(60) }),
            false,
            vec![],
        )]);
        for dir in [Inbound, Outbound] {
            assert_eq!(
                decide(dir, &bomb, ContentPolicy::default()),
                Action::Refuse(Refusal::Limit(Limit::Expanded { max: 60_000_000 }))
            );
            assert_eq!(decide(dir, &slow, ContentPolicy::default()), Action::Refuse(Refusal::ScanTimeout));
        }
    }
}
