//! A mailbox's policy: its receiver rule and its buffering, and the text form
//! that its `policy` file shows and accepts.
//!
//! ```text
//! policy  = word *( SP word ) [ "\n" ]
//! word    = rule / "capacity=" ( NUMBER / "unlimited" ) / "max-message-size=" SIZE
//! rule    = "arbitrary" / "pair" / "exclusive" / "broadcast"
//! SIZE    = NUMBER [ "K" / "M" / "G" ]    ; KiB, MiB, GiB (or k, m, g)
//! ```
//! Words that are not given keep their current value.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// Any process may receive; each message goes to exactly one receiver.
    Arbitrary,
    /// At most two live processes may use the mailbox.
    Pair,
    /// One process at a time may have `recv` open.
    Exclusive,
    /// Every process with `recv` open gets its own copy.
    Broadcast,
}

impl Rule {
    pub const ALL: [Rule; 4] = [
        Rule::Arbitrary,
        Rule::Pair,
        Rule::Exclusive,
        Rule::Broadcast,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Rule::Arbitrary => "arbitrary",
            Rule::Pair => "pair",
            Rule::Exclusive => "exclusive",
            Rule::Broadcast => "broadcast",
        }
    }

    pub fn from_name(word: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|r| r.name() == word)
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub rule: Rule,
    /// Messages queued at most (per receiving process under `broadcast`);
    /// `None` is unbounded, `Some(0)` a rendezvous.
    pub capacity: Option<usize>,
    /// Largest message a `write(2)` may send, in bytes.
    pub max_message_size: usize,
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} capacity=", self.rule)?;
        match self.capacity {
            Some(n) => write!(f, "{n}")?,
            None => f.write_str("unlimited")?,
        }
        write!(f, " max-message-size={}", self.max_message_size)
    }
}

/// The longest text a policy file accepts.
pub const MAX_POLICY_TEXT: usize = 4096;

/// Why a policy text was refused (the caller answers `EINVAL`).
#[derive(Debug, PartialEq, Eq)]
pub enum PolicyError {
    TooLong,
    NotUtf8,
    Empty,
    UnknownWord(String),
    TwoRules,
    Repeated(&'static str),
    BadNumber(String),
    SizeOutOfRange { size: usize, max: usize },
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyError::TooLong => write!(f, "policy text longer than {MAX_POLICY_TEXT} bytes"),
            PolicyError::NotUtf8 => f.write_str("policy text is not UTF-8"),
            PolicyError::Empty => f.write_str("empty policy text"),
            PolicyError::UnknownWord(w) => write!(f, "unknown word {w:?}"),
            PolicyError::TwoRules => f.write_str("more than one receiver rule"),
            PolicyError::Repeated(k) => write!(f, "{k} given twice"),
            PolicyError::BadNumber(v) => write!(f, "bad number {v:?}"),
            PolicyError::SizeOutOfRange { size, max } => {
                write!(f, "max-message-size {size} not in 1..={max}")
            }
        }
    }
}

/// A byte count: decimal digits with an optional `K`, `M` or `G` suffix
/// (powers of 1024).
pub fn parse_size(text: &str) -> Option<usize> {
    let (digits, unit) = match text.char_indices().last()? {
        (i, 'K' | 'k') => (&text[..i], 1usize << 10),
        (i, 'M' | 'm') => (&text[..i], 1 << 20),
        (i, 'G' | 'g') => (&text[..i], 1 << 30),
        _ => (text, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<usize>().ok()?.checked_mul(unit)
}

/// A capacity: a message count, or `unlimited` (`None`).
pub fn parse_capacity(text: &str) -> Option<Option<usize>> {
    if text == "unlimited" {
        return Some(None);
    }
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().map(Some)
}

/// Applies the policy text `text` (as written to a policy file) to
/// `current`. `hard_max` is the largest message size the mount allows.
pub fn parse(text: &[u8], current: &Policy, hard_max: usize) -> Result<Policy, PolicyError> {
    if text.len() > MAX_POLICY_TEXT {
        return Err(PolicyError::TooLong);
    }
    let text = std::str::from_utf8(text).map_err(|_| PolicyError::NotUtf8)?;
    let text = text.strip_suffix('\n').unwrap_or(text);
    let mut out = *current;
    let (mut rule, mut capacity, mut size) = (false, false, false);
    let mut any = false;
    for word in text.split([' ', '\t']).filter(|w| !w.is_empty()) {
        any = true;
        if let Some(r) = Rule::from_name(word) {
            if std::mem::replace(&mut rule, true) {
                return Err(PolicyError::TwoRules);
            }
            out.rule = r;
        } else if let Some(v) = word.strip_prefix("capacity=") {
            if std::mem::replace(&mut capacity, true) {
                return Err(PolicyError::Repeated("capacity"));
            }
            out.capacity = parse_capacity(v).ok_or_else(|| PolicyError::BadNumber(v.into()))?;
        } else if let Some(v) = word.strip_prefix("max-message-size=") {
            if std::mem::replace(&mut size, true) {
                return Err(PolicyError::Repeated("max-message-size"));
            }
            let n = parse_size(v).ok_or_else(|| PolicyError::BadNumber(v.into()))?;
            if n == 0 || n > hard_max {
                return Err(PolicyError::SizeOutOfRange {
                    size: n,
                    max: hard_max,
                });
            }
            out.max_message_size = n;
        } else {
            return Err(PolicyError::UnknownWord(word.into()));
        }
    }
    if !any {
        return Err(PolicyError::Empty);
    }
    Ok(out)
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
