//! Fuzzing of repository names, tags and digests on stable Rust, with proptest generators
//! (issue 20). Targets are named `fuzz_registry_*`; the route and reference parsers that use
//! these are fuzzed in `routes/fuzz.rs`.
//!
//! - names: arbitrary text agrees with an independent matcher of the distribution spec's
//!   grammar; names drawn from the grammar are accepted, and one edit away they agree again;
//! - tags: arbitrary text agrees with the spec's pattern `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`;
//! - digests: arbitrary text never panics and what parses prints back as it was written;
//!   generated valid digests and the digests of arbitrary bytes parse back equal.
//!
//! Cases per target: `SLIPWAY_FUZZ_CASES` (else `PROPTEST_CASES`, else a CI-sized default).

use proptest::prelude::*;
use proptest::test_runner::Config;

use super::*;

/// CI-sized runs: a few seconds per target on a debug build.
pub(crate) const CI_CASES: u32 = 2_000;

pub(crate) fn config() -> Config {
    let mut c = Config::default();
    c.cases = match std::env::var("SLIPWAY_FUZZ_CASES") {
        Ok(v) => v.parse().expect("SLIPWAY_FUZZ_CASES is a number of cases"),
        Err(_) if std::env::var_os("PROPTEST_CASES").is_some() => c.cases,
        Err(_) => CI_CASES,
    };
    c.failure_persistence = None;
    c.max_global_rejects = c.cases;
    c
}

/// The distribution spec's name grammar, matched by hand from its regular expression:
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`, at most 255.
pub(crate) fn reference_name(name: &str) -> bool {
    fn alnum(c: u8) -> bool {
        c.is_ascii_lowercase() || c.is_ascii_digit()
    }
    // A small matcher over the bytes: states of the regular expression.
    #[derive(Clone, Copy, PartialEq)]
    enum St {
        /// Start of a component: an alphanumeric must come.
        Start,
        /// In a run of alphanumerics (an accepting state).
        Alnum,
        /// After `.`: an alphanumeric must come.
        Dot,
        /// After one `_`: `_` or an alphanumeric.
        Under1,
        /// After `__`: an alphanumeric must come.
        Under2,
        /// After dashes: more dashes or an alphanumeric.
        Dash,
    }
    if name.len() > 255 {
        return false;
    }
    let mut st = St::Start;
    for &c in name.as_bytes() {
        st = match (st, c) {
            (_, c) if alnum(c) => St::Alnum,
            (St::Alnum, b'/') => St::Start,
            (St::Alnum, b'.') => St::Dot,
            (St::Alnum, b'_') => St::Under1,
            (St::Under1, b'_') => St::Under2,
            (St::Alnum | St::Dash, b'-') => St::Dash,
            _ => return false,
        };
    }
    st == St::Alnum
}

fn reference_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn chars(pool: &'static [char], len: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(pool), len).prop_map(|c| c.into_iter().collect())
}

const NAME_CHARS: &[char] = &[
    'a', 'b', 'z', '0', '9', '.', '_', '-', '/', 'A', ' ', ':', '@', 'é', '\0', '%',
];

/// A valid name drawn from the grammar.
pub(crate) fn valid_name() -> impl Strategy<Value = String> {
    let run = || chars(&['a', 'b', 'c', 'x', 'z', '0', '1', '9'], 1..6);
    let sep = prop::sample::select(&[".", "_", "__", "-", "--", "---"][..]);
    let component = (run(), prop::collection::vec((sep, run()), 0..3)).prop_map(|(first, rest)| {
        let mut c = first;
        for (s, r) in rest {
            c.push_str(s);
            c.push_str(&r);
        }
        c
    });
    prop::collection::vec(component, 1..4).prop_map(|c| c.join("/"))
}

/// A valid tag drawn from the pattern.
pub(crate) fn valid_tag() -> impl Strategy<Value = String> {
    (
        prop::sample::select(&['a', 'Z', '0', '_'][..]),
        chars(&['a', 'Z', '0', '9', '_', '.', '-'], 0..128),
    )
        .prop_map(|(f, r)| format!("{f}{r}"))
}

/// A valid digest drawn from the grammar.
pub(crate) fn valid_digest() -> impl Strategy<Value = String> {
    let hex = |n: usize| {
        prop::collection::vec(prop::sample::select(&b"0123456789abcdef"[..]), n..n + 1)
            .prop_map(|h| String::from_utf8(h).unwrap())
    };
    prop_oneof![
        hex(64).prop_map(|h| format!("sha256:{h}")),
        hex(128).prop_map(|h| format!("sha512:{h}")),
    ]
}

/// One edit: insert, delete or replace a character.
fn edit(s: &str, at: usize, what: u8, c: char) -> String {
    let mut v: Vec<char> = s.chars().collect();
    let i = at % (v.len() + 1);
    match what % 3 {
        0 => v.insert(i, c),
        1 if i < v.len() => {
            v.remove(i);
        }
        _ if i < v.len() => v[i] = c,
        _ => v.push(c),
    }
    v.into_iter().collect()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_registry_names_arbitrary(name in prop_oneof![any::<String>(), chars(NAME_CHARS, 0..40)]) {
        prop_assert_eq!(validate_name(&name).is_ok(), reference_name(&name), "{:?}", name);
    }

    #[test]
    fn fuzz_registry_names_valid_and_one_edit_away(
        name in valid_name(),
        at in any::<usize>(),
        what in any::<u8>(),
        c in prop::sample::select(NAME_CHARS),
    ) {
        prop_assert!(validate_name(&name).is_ok(), "{:?} refused", name);
        prop_assert!(reference_name(&name));
        let edited = edit(&name, at, what, c);
        prop_assert_eq!(validate_name(&edited).is_ok(), reference_name(&edited), "{:?}", edited);
        // Long names: the limit is 255 bytes.
        let long = format!("{name}/{}", "a".repeat(255usize.saturating_sub(name.len() + 1)));
        prop_assert_eq!(validate_name(&long).is_ok(), long.len() <= 255);
        let over = format!("{long}b");
        prop_assert!(validate_name(&over).is_err());
    }

    #[test]
    fn fuzz_registry_tags(
        tag in prop_oneof![
            any::<String>(),
            chars(&['a', 'Z', '0', '_', '.', '-', ':', '/', '@', ' ', 'é'], 0..140),
            valid_tag(),
        ],
    ) {
        prop_assert_eq!(validate_tag(&tag).is_ok(), reference_tag(&tag), "{:?}", tag);
    }

    #[test]
    fn fuzz_registry_digests(
        text in prop_oneof![
            any::<String>(),
            chars(&['s', 'h', 'a', '2', '5', '6', '1', ':', 'f', 'F', '0', 'g', '/', '.'], 0..140),
            valid_digest(),
            valid_digest().prop_map(|d| d.to_ascii_uppercase()),
        ],
        bytes in prop::collection::vec(any::<u8>(), 0..256),
        alg in prop::sample::select(&[Algorithm::Sha256, Algorithm::Sha512][..]),
    ) {
        if let Ok(d) = Digest::parse(&text) {
            prop_assert_eq!(d.to_string(), text.clone());
            prop_assert_eq!(d.hex().len(), d.algorithm().hex_len());
            prop_assert!(text.starts_with(d.algorithm().as_str()));
        }
        let d = alg.digest_of(&bytes);
        prop_assert_eq!(Digest::parse(&d.to_string()), Ok(d.clone()));
        // Streaming in two pieces gives the same digest.
        let mut h = alg.hasher();
        let (a, b) = bytes.split_at(bytes.len() / 2);
        h.update(a);
        h.update(b);
        prop_assert_eq!(h.finish(), d);
    }

    #[test]
    fn fuzz_registry_valid_digests_parse(d in valid_digest()) {
        let parsed = Digest::parse(&d);
        prop_assert!(parsed.is_ok(), "{:?}", parsed);
        prop_assert_eq!(parsed.unwrap().to_string(), d.clone());
        prop_assert!(Digest::parse(&d.to_ascii_uppercase()).is_err());
        prop_assert!(Digest::parse(&d[..d.len() - 1]).is_err());
        let longer = format!("{d}0");
        prop_assert!(Digest::parse(&longer).is_err());
    }
}
