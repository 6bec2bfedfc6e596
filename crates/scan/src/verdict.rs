//! Verdicts of a scan.

use serde::Serialize;

use crate::limits::Limit;

/// What the engine concluded about one layer (or a whole message).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", content = "detail", rename_all = "snake_case")]
pub enum Verdict {
    /// Nothing found.
    Clean,
    /// A signature matched (its name).
    Infected(String),
    /// Password-protected content that cannot be scanned (R11), e.g. `Encrypted.Zip`.
    Encrypted(String),
    /// A limit was reached (R6): expanded size, depth, entries, ratio or time.
    LimitExceeded(Limit),
    /// Content that could not be read, e.g. `Broken.Zip: invalid central directory`.
    Unscannable(Unreadable),
}

impl Verdict {
    /// Severity for combining: the worst verdict of the layers wins (compare verdicts with
    /// [`Verdict::worst`] and ask them with `is_…`, not by this number).
    fn rank(&self) -> u8 {
        match self {
            Verdict::Clean => 0,
            Verdict::Unscannable(_) => 1,
            Verdict::Encrypted(_) => 2,
            Verdict::LimitExceeded(_) => 3,
            Verdict::Infected(_) => 4,
        }
    }

    /// A signature matched.
    pub fn is_infected(&self) -> bool {
        matches!(self, Verdict::Infected(_))
    }

    /// A scan limit (size, depth, entries, ratio, time) was reached.
    pub fn is_limit(&self) -> bool {
        matches!(self, Verdict::LimitExceeded(_))
    }

    /// The worse of two verdicts.
    pub fn worst(self, other: Verdict) -> Verdict {
        if other.rank() > self.rank() { other } else { self }
    }

    /// One word for the CLI (`OK`, `FOUND` …) with the name.
    pub fn label(&self) -> String {
        match self {
            Verdict::Clean => "OK".into(),
            Verdict::Infected(n) => format!("{n} FOUND"),
            Verdict::Encrypted(kind) => format!("{kind} UNSCANNABLE"),
            Verdict::LimitExceeded(_) => "Limits.Exceeded ERROR".into(),
            Verdict::Unscannable(why) => format!("{} UNSCANNABLE", why.name()),
        }
    }
}

/// Why content could not be read, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreadability {
    /// The container is damaged (`Broken.Zip`).
    Damaged,
    /// Its format or method is not unpacked by this engine (`Unpack.RAR`).
    Unsupported,
    /// A `message/partial` fragment: only the whole, reassembled message could be scanned.
    Partial,
}

/// The reason of [`Verdict::Unscannable`]: its kind, the format and the details, shown as
/// `Broken.Zip: invalid central directory`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    /// What kind of problem.
    pub kind: Unreadability,
    /// The format, as in the name (`Zip`, `7z`, `RAR`, `Message`).
    pub format: &'static str,
    /// What exactly was wrong.
    pub detail: String,
}

impl Unreadable {
    /// A damaged container of `format`.
    pub fn damaged(format: &'static str, detail: impl Into<String>) -> Unreadable {
        Unreadable { kind: Unreadability::Damaged, format, detail: detail.into() }
    }

    /// Content of `format` this engine does not unpack.
    pub fn unsupported(format: &'static str, detail: impl Into<String>) -> Unreadable {
        Unreadable { kind: Unreadability::Unsupported, format, detail: detail.into() }
    }

    /// A `message/partial` fragment.
    pub fn partial() -> Unreadable {
        Unreadable {
            kind: Unreadability::Partial,
            format: "Message",
            detail: "a message/partial fragment cannot be scanned".into(),
        }
    }

    /// The name of the finding, e.g. `Broken.Zip`, `Unpack.RAR`, `Partial.Message`.
    pub fn name(&self) -> String {
        let class = match self.kind {
            Unreadability::Damaged => "Broken",
            Unreadability::Unsupported => "Unpack",
            Unreadability::Partial => "Partial",
        };
        format!("{class}.{}", self.format)
    }
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.name(), self.detail)
    }
}

impl Serialize for Unreadable {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
