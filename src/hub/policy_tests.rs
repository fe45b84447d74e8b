//! Tests of the policy text: examples of each accepted and refused form, and
//! a property that checks `parse` against the grammar of ipcfs(7) (POLICY
//! FILE FORMAT), restated here, on random texts.

use proptest::prelude::*;

use super::*;

const HARD: usize = 1_044_480;
const BASE: Policy = Policy {
    rule: Rule::Arbitrary,
    capacity: Some(1024),
    max_message_size: HARD,
};

fn ok(text: &str) -> Policy {
    parse(text.as_bytes(), &BASE, HARD).unwrap()
}

fn err(text: &[u8]) -> PolicyError {
    parse(text, &BASE, HARD).unwrap_err()
}

#[test]
fn shows_what_it_accepts() {
    assert_eq!(
        BASE.to_string(),
        "arbitrary capacity=1024 max-message-size=1044480"
    );
    assert_eq!(ok(&BASE.to_string()), BASE);
    let p = ok("broadcast capacity=unlimited max-message-size=64K\n");
    assert_eq!(
        p.to_string(),
        "broadcast capacity=unlimited max-message-size=65536"
    );
    assert_eq!(ok(&p.to_string()), p);
}

#[test]
fn rule_alone_keeps_buffering() {
    for r in Rule::ALL {
        let p = ok(&format!("{r}\n"));
        assert_eq!(p.rule, r);
        assert_eq!(p.capacity, BASE.capacity);
    }
}

#[test]
fn options_alone_keep_rule() {
    let p = ok("capacity=0");
    assert_eq!((p.rule, p.capacity), (Rule::Arbitrary, Some(0)));
    let p = ok("  max-message-size=512K\tpair ");
    assert_eq!((p.rule, p.max_message_size), (Rule::Pair, 512 << 10));
}

#[test]
fn rejected_forms() {
    assert_eq!(err(b""), PolicyError::Empty);
    assert_eq!(err(b"\n"), PolicyError::Empty);
    assert_eq!(err(b"   "), PolicyError::Empty);
    assert_eq!(err(b"bogus"), PolicyError::UnknownWord("bogus".into()));
    assert_eq!(
        err(b"Arbitrary"),
        PolicyError::UnknownWord("Arbitrary".into())
    );
    assert_eq!(err(b"arbitrary x"), PolicyError::UnknownWord("x".into()));
    assert_eq!(
        err(b"arbitrary\n\n"),
        PolicyError::UnknownWord("arbitrary\n".into())
    );
    assert_eq!(err(b"arbitrary pair"), PolicyError::TwoRules);
    assert_eq!(
        err(b"capacity=1 capacity=2"),
        PolicyError::Repeated("capacity")
    );
    assert_eq!(
        err(b"max-message-size=1 max-message-size=2"),
        PolicyError::Repeated("max-message-size")
    );
    assert_eq!(err(b"capacity=abc"), PolicyError::BadNumber("abc".into()));
    assert_eq!(err(b"capacity="), PolicyError::BadNumber("".into()));
    assert_eq!(err(b"capacity=-1"), PolicyError::BadNumber("-1".into()));
    assert_eq!(
        err(b"capacity=99999999999999999999999"),
        PolicyError::BadNumber("99999999999999999999999".into())
    );
    assert_eq!(
        err(b"max-message-size=1X"),
        PolicyError::BadNumber("1X".into())
    );
    assert_eq!(
        err(b"max-message-size=0"),
        PolicyError::SizeOutOfRange { size: 0, max: HARD }
    );
    assert_eq!(
        err(b"max-message-size=2M"),
        PolicyError::SizeOutOfRange {
            size: 2 << 20,
            max: HARD
        }
    );
    assert_eq!(err(b"pair\0"), PolicyError::UnknownWord("pair\0".into()));
    assert_eq!(err(b"\xff\xfe"), PolicyError::NotUtf8);
    assert_eq!(err(&vec![b' '; MAX_POLICY_TEXT + 1]), PolicyError::TooLong);
    assert_eq!(err(&vec![b'a'; 1 << 20]), PolicyError::TooLong);
}

#[test]
fn sizes() {
    assert_eq!(parse_size("4096"), Some(4096));
    assert_eq!(parse_size("4K"), Some(4096));
    assert_eq!(parse_size("256M"), Some(256 << 20));
    assert_eq!(parse_size("1G"), Some(1 << 30));
    assert_eq!(parse_size("M"), None);
    assert_eq!(parse_size(""), None);
    assert_eq!(parse_size("1.5M"), None);
    assert_eq!(parse_capacity("unlimited"), Some(None));
    assert_eq!(parse_capacity("0"), Some(Some(0)));
    assert_eq!(parse_capacity("+1"), None);
}

// ----- the grammar against random texts ----------------------------------------

/// What ipcfs(7) (POLICY FILE FORMAT) says of a text written to a policy file.
#[derive(Debug)]
enum Verdict {
    /// Accepted: the policy it leaves.
    Valid(Policy),
    /// Refused with EINVAL, nothing changed.
    Invalid,
    /// A capacity past 2^32: "too large" in the manual, which does not say
    /// where that starts. Refused, or accepted leaving this policy.
    Either(Policy),
}

/// The policy grammar as the manual states it, written from ipcfs(7) and
/// docs/DESIGN.md ("Policy text"), not from `parse`:
///
/// ```text
/// policy  = *blank word *( 1*blank word ) *blank [ newline ]
/// word    = rule | "capacity=" count | "max-message-size=" size
/// rule    = "arbitrary" | "pair" | "exclusive" | "broadcast"
/// count   = 1*DIGIT | "unlimited"
/// size    = 1*DIGIT [ "K" | "M" | "G" ]   ; KiB, MiB, GiB, also lower case
/// blank   = space | tab
/// ```
///
/// At most one rule word and each key once; a size in 1..=`hard_max`; at
/// most 4096 bytes of UTF-8; words not given keep their current value.
fn manual(text: &[u8], current: Policy, hard_max: usize) -> Verdict {
    const RULES: [(&str, Rule); 4] = [
        ("arbitrary", Rule::Arbitrary),
        ("pair", Rule::Pair),
        ("exclusive", Rule::Exclusive),
        ("broadcast", Rule::Broadcast),
    ];
    if text.len() > 4096 {
        return Verdict::Invalid;
    }
    let Ok(text) = std::str::from_utf8(text) else {
        return Verdict::Invalid;
    };
    let text = text.strip_suffix('\n').unwrap_or(text);
    let words: Vec<&str> = text.split([' ', '\t']).filter(|w| !w.is_empty()).collect();
    if words.is_empty() {
        return Verdict::Invalid;
    }
    let mut out = current;
    let (mut rules, mut counts, mut sizes, mut huge) = (0, 0, 0, false);
    for word in words {
        if let Some((_, rule)) = RULES.iter().find(|(name, _)| *name == word) {
            rules += 1;
            out.rule = *rule;
        } else if let Some(count) = word.strip_prefix("capacity=") {
            counts += 1;
            if count == "unlimited" {
                out.capacity = None;
            } else {
                match decimal(count) {
                    Some(n) if n <= u64::from(u32::MAX) => out.capacity = Some(n as usize),
                    Some(n) => {
                        huge = true;
                        out.capacity = Some(n as usize);
                    }
                    // Not a number, or past 2^64: "too large" all the same.
                    None => return Verdict::Invalid,
                }
            }
        } else if let Some(size) = word.strip_prefix("max-message-size=") {
            sizes += 1;
            let (digits, unit) = match size.as_bytes().last() {
                Some(b'K' | b'k') => (&size[..size.len() - 1], 1u64 << 10),
                Some(b'M' | b'm') => (&size[..size.len() - 1], 1 << 20),
                Some(b'G' | b'g') => (&size[..size.len() - 1], 1 << 30),
                _ => (size, 1),
            };
            match decimal(digits).and_then(|n| n.checked_mul(unit)) {
                Some(n) if n >= 1 && n <= hard_max as u64 => out.max_message_size = n as usize,
                _ => return Verdict::Invalid,
            }
        } else {
            return Verdict::Invalid;
        }
    }
    if rules > 1 || counts > 1 || sizes > 1 {
        Verdict::Invalid
    } else if huge {
        Verdict::Either(out)
    } else {
        Verdict::Valid(out)
    }
}

/// `1*DIGIT` as a number, `None` when it is not one or passes 2^64.
fn decimal(digits: &str) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.bytes().try_fold(0u64, |n, b| {
        let d = b.checked_sub(b'0').filter(|d| *d <= 9)?;
        n.checked_mul(10)?.checked_add(u64::from(d))
    })
}

const RULE_NAMES: [&str; 4] = ["arbitrary", "pair", "exclusive", "broadcast"];

/// Words, mostly plausible: rule names (and near misses), keys with good and
/// bad numbers and suffixes, numbers near the bounds, bare keys.
const WORDS: &[&str] = &[
    "arbitrary",
    "pair",
    "exclusive",
    "broadcast",
    "Arbitrary",
    "PAIR",
    "exclusive2",
    "broad",
    "capacity=0",
    "capacity=1",
    "capacity=1024",
    "capacity=unlimited",
    "capacity=Unlimited",
    "capacity=",
    "capacity=-1",
    "capacity=+1",
    "capacity=1K",
    "capacity=0x10",
    "capacity=1.5",
    "capacity=4294967295",
    "capacity=4294967296",
    "capacity=18446744073709551615",
    "capacity=18446744073709551616",
    "capacity=99999999999999999999999",
    "max-message-size=1",
    "max-message-size=64K",
    "max-message-size=64k",
    "max-message-size=1M",
    "max-message-size=1m",
    "max-message-size=1G",
    "max-message-size=0",
    "max-message-size=0K",
    "max-message-size=1T",
    "max-message-size=",
    "max-message-size=K",
    "max-message-size=-1",
    "max-message-size=1KK",
    "max-message-size=1KiB",
    "max-message-size=18446744073709551615",
    "max-message-size=18446744073709551616",
    "max-message-size=17179869184G",
    "capacity",
    "max-message-size",
    "unlimited",
    "=",
    "rule=pair",
    "é",
];

/// What may stand between words: blanks, and what is not a separator.
const SEPARATORS: &[&str] = &[
    " ", " ", " ", "  ", "\t", " \t", "\n", "\r", "\0", "", ",", "\u{a0}", "\x0b", ";",
];

fn word(hard_max: usize) -> impl Strategy<Value = String> {
    let hard = hard_max as u64;
    prop_oneof![
        3 => prop::sample::select(&RULE_NAMES[..]).prop_map(String::from),
        3 => prop::sample::select(WORDS).prop_map(String::from),
        2 => (0u64..5000).prop_map(|n| format!("capacity={n}")),
        2 => (
            prop_oneof![0..hard + hard / 8, 0u64..4096],
            prop::sample::select(&["", "", "", "K", "k", "M", "m", "G", "g", "B"][..]),
        )
            .prop_map(|(n, unit)| format!("max-message-size={n}{unit}")),
        // At the mount's bound, in bytes and in KiB.
        2 => prop_oneof![(hard - 1)..=(hard + 1), Just(0)]
            .prop_map(|n| format!("max-message-size={n}")),
        1 => ((hard >> 10)..=(hard >> 10) + 1).prop_map(|n| format!("max-message-size={n}K")),
        1 => "[a-z=0-9KMG+-]{1,12}",
    ]
}

/// Words joined by separators, perhaps with a byte changed, inserted or
/// removed (which may leave invalid UTF-8).
fn sentence(hard_max: usize) -> impl Strategy<Value = Vec<u8>> {
    let separator = || prop::sample::select(SEPARATORS);
    (
        prop::option::weighted(0.15, separator()),
        prop::collection::vec((separator(), word(hard_max)), 1..4),
        prop::option::weighted(0.15, separator()),
        any::<bool>(),
        prop::option::weighted(0.25, (any::<prop::sample::Index>(), any::<u8>(), 0..3)),
    )
        .prop_map(|(lead, words, trail, newline, change)| {
            let mut s = String::from(lead.unwrap_or(""));
            for (i, (sep, w)) in words.iter().enumerate() {
                if i > 0 {
                    s.push_str(sep);
                }
                s.push_str(w);
            }
            s.push_str(trail.unwrap_or(""));
            if newline {
                s.push('\n');
            }
            let mut v = s.into_bytes();
            if let Some((at, byte, how)) = change {
                let i = at.index(v.len());
                match how {
                    0 => v[i] = byte,
                    1 => v.insert(i, byte),
                    _ => {
                        v.remove(i);
                    }
                }
            }
            v
        })
}

/// Texts around the 4096-byte bound: blanks, then a rule word.
fn long_text() -> impl Strategy<Value = Vec<u8>> {
    (
        4085usize..4105,
        prop::sample::select(&RULE_NAMES[..]),
        any::<bool>(),
    )
        .prop_map(|(total, rule, newline)| {
            let pad = total - rule.len() - usize::from(newline);
            let mut v = vec![b' '; pad];
            v.extend_from_slice(rule.as_bytes());
            if newline {
                v.push(b'\n');
            }
            v
        })
}

fn text(hard_max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => sentence(hard_max),
        2 => prop::collection::vec(any::<u8>(), 0..64),
        1 => "[ -~]{0,40}".prop_map(String::into_bytes),
        1 => long_text(),
    ]
}

fn policy(hard_max: usize) -> impl Strategy<Value = Policy> {
    (
        prop::sample::select(&Rule::ALL[..]),
        prop::option::of(0usize..5000),
        1..=hard_max,
    )
        .prop_map(|(rule, capacity, max_message_size)| Policy {
            rule,
            capacity,
            max_message_size,
        })
}

/// A mount's hard maximum, a current policy under it, and a text.
fn case() -> impl Strategy<Value = (usize, Policy, Vec<u8>)> {
    prop_oneof![Just(65536usize), Just(HARD), 4096usize..(1 << 31)]
        .prop_flat_map(|hard_max| (Just(hard_max), policy(hard_max), text(hard_max)))
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 4096,
        // Shrunk failures are reported, not written beside the sources.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// `parse` accepts what the manual's grammar accepts, leaving the policy
    /// it says, and refuses the rest; what it accepts, shown, parses back.
    #[test]
    fn parse_follows_the_manual((hard_max, current, text) in case()) {
        let got = parse(&text, &current, hard_max);
        let verdict = manual(&text, current, hard_max);
        match verdict {
            Verdict::Valid(p) => prop_assert_eq!(&got, &Ok(p), "{:?}", String::from_utf8_lossy(&text)),
            Verdict::Invalid => prop_assert!(got.is_err(), "{:?} accepted: {:?}", String::from_utf8_lossy(&text), got),
            Verdict::Either(p) => prop_assert!(got.as_ref().map_or(true, |g| *g == p), "{:?}: {:?}", String::from_utf8_lossy(&text), got),
        }
        if let Ok(p) = got {
            prop_assert_eq!(parse(p.to_string().as_bytes(), &BASE, hard_max), Ok(p));
        }
    }
}
