//! Verdicts of a scan.

use serde::Serialize;

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
    LimitExceeded(String),
    /// Content that could not be read, e.g. `Broken.Zip: invalid central directory`.
    Unscannable(String),
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
            Verdict::Unscannable(why) => format!("{} UNSCANNABLE", why.split(':').next().unwrap_or(why)),
        }
    }
}
