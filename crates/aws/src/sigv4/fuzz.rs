//! Fuzzing of the SigV4 `Authorization` header parser and its neighbours on stable Rust,
//! with proptest generators (issue 20). Targets are named `fuzz_sigv4_*`.
//!
//! - arbitrary text, and arbitrary text after the algorithm name: never a panic; what is
//!   accepted is well-formed (a 64-digit lowercase signature, a `yyyymmdd` date, a signed
//!   header list with `host`, no empty scope part);
//! - structure-aware headers (parts in any order, spacing, case, unknown and repeated
//!   parameters, one part spoiled at times): a header built from valid parts parses back to
//!   exactly those parts, a spoiled one is refused as malformed;
//! - `X-Amz-Date`: arbitrary text never panics, formatting then parsing gives the time back,
//!   and `check_date` never panics on any header value;
//! - canonicalisation and signing of arbitrary requests: never a panic, a request verifies
//!   against its own signature, and any other signature is a mismatch.
//!
//! Cases per target: `SLIPWAY_FUZZ_CASES` (else `PROPTEST_CASES`, else a CI-sized default).

use proptest::prelude::*;
use proptest::test_runner::Config;

use super::*;

/// CI-sized runs: a few seconds per target on a debug build.
const CI_CASES: u32 = 2_000;
/// Signing: a debug build of the HMAC chain takes about 2 ms per case.
const CI_CASES_SIGNING: u32 = 500;

fn config(ci_cases: u32) -> Config {
    let mut c = Config::default();
    c.cases = match std::env::var("SLIPWAY_FUZZ_CASES") {
        Ok(v) => v.parse().expect("SLIPWAY_FUZZ_CASES is a number of cases"),
        Err(_) if std::env::var_os("PROPTEST_CASES").is_some() => c.cases,
        Err(_) => ci_cases,
    };
    c.failure_persistence = None;
    c.max_global_rejects = c.cases;
    c
}

/// What an accepted header must look like.
fn well_formed(a: &AuthHeader) -> Result<(), TestCaseError> {
    prop_assert_eq!(a.signature.len(), 64);
    prop_assert!(
        a.signature
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    prop_assert!(a.date.len() == 8 && a.date.bytes().all(|b| b.is_ascii_digit()));
    for part in [&a.access_key, &a.region, &a.service] {
        prop_assert!(!part.is_empty() && !part.contains('/'), "{:?}", a);
    }
    prop_assert!(a.signed_headers.iter().any(|h| h == "host"));
    for h in &a.signed_headers {
        prop_assert!(!h.is_empty() && !h.contains(';'));
        prop_assert_eq!(h, &h.to_ascii_lowercase());
    }
    prop_assert_eq!(
        a.scope(),
        format!("{}/{}/{}/aws4_request", a.date, a.region, a.service)
    );
    Ok(())
}

fn text(chars: &'static [char], len: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(chars), len).prop_map(|c| c.into_iter().collect())
}

const HEADER_CHARS: &[char] = &[
    'A', 'K', 'a', 'z', '0', '2', '9', 'f', '/', ',', ';', '=', ' ', '\t', '-', '_', 'é', '\0',
    'C', 'S', 'H',
];

/// One `Credential=`, `SignedHeaders=` or `Signature=` parameter, or another one.
#[derive(Clone, Debug)]
struct Parts {
    key: String,
    date: String,
    region: String,
    service: String,
    terminator: String,
    headers: Vec<String>,
    signature: String,
}

const KEY_CHARS: &[char] = &[
    'A', 'K', 'I', 'D', 'E', 'X', 'M', 'P', 'L', '0', '1', '7', 'a', 'z', '+', '_', '.', '-',
];
const NAME_CHARS: &[char] = &['a', 'e', 's', 't', 'u', '1', '2', '-'];
const HEX_CHARS: &[char] = &[
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 'a', 'b', 'c', 'd', 'e', 'f', 'A', 'B', 'C',
    'D', 'E', 'F',
];

fn word(chars: &'static [char], len: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    text(chars, len)
}

fn valid_parts() -> impl Strategy<Value = Parts> {
    (
        word(KEY_CHARS, 1..24),
        (1970u32..2100, 1u32..13, 1u32..29).prop_map(|(y, m, d)| format!("{y:04}{m:02}{d:02}")),
        word(NAME_CHARS, 1..16),
        prop::sample::select(&["ecs", "ecr", "sts", "s3", "execute-api"][..])
            .prop_map(String::from),
        (
            prop::collection::vec(
                prop::sample::select(
                    &[
                        "content-type",
                        "X-Amz-Date",
                        "x-amz-target",
                        "x-amz-content-sha256",
                        "Content-Length",
                        "user-agent",
                    ][..],
                ),
                0..4,
            ),
            any::<prop::sample::Index>(),
            any::<bool>(),
        )
            .prop_map(|(mut h, at, upper)| {
                let host = if upper { "Host" } else { "host" };
                h.insert(at.index(h.len() + 1), host);
                h.into_iter().map(String::from).collect()
            }),
        word(HEX_CHARS, 64..65),
    )
        .prop_map(|(key, date, region, service, headers, signature)| Parts {
            key,
            date,
            region,
            service,
            terminator: "aws4_request".into(),
            headers,
            signature,
        })
}

/// What can spoil one part.
#[derive(Clone, Debug)]
enum Spoil {
    None,
    Key(String),
    Date(String),
    Region(String),
    Terminator(String),
    Headers(Vec<String>),
    Signature(String),
    /// One of the three parameters left out.
    Drop(usize),
}

/// Odd values for one part, without the separators of the header (`,`, `;`, white space),
/// which the layout and the arbitrary targets exercise.
fn spoil() -> impl Strategy<Value = Spoil> {
    let odd = || {
        prop_oneof![
            Just(String::new()),
            text(HEADER_CHARS, 0..12),
            any::<String>(),
            prop::sample::select(
                &[
                    "a/b",
                    "2015083",
                    "201508300",
                    "2015-8-30",
                    "١٢٣٤٥٦٧٨",
                    "+1508300"
                ][..]
            )
            .prop_map(String::from),
        ]
        .prop_map(|s| s.replace(|c: char| c == ',' || c == ';' || c.is_whitespace(), ""))
    };
    prop_oneof![
        6 => Just(Spoil::None),
        1 => odd().prop_map(Spoil::Key),
        1 => odd().prop_map(Spoil::Date),
        1 => odd().prop_map(Spoil::Region),
        1 => prop_oneof![Just("aws5_request".to_owned()), Just("AWS4_REQUEST".to_owned()), odd()]
            .prop_map(Spoil::Terminator),
        1 => prop::collection::vec(prop_oneof![Just(String::new()), Just("x-amz-date".to_owned()), odd()], 0..3)
            .prop_map(Spoil::Headers),
        1 => prop_oneof![word(HEX_CHARS, 63..64), word(HEX_CHARS, 65..66), word(HEX_CHARS, 0..130), odd()]
            .prop_map(Spoil::Signature),
        1 => (0usize..3).prop_map(Spoil::Drop),
    ]
}

/// How the header is written: parameter order, separators, extra parameters.
#[derive(Clone, Debug)]
struct Layout {
    order: [usize; 3],
    separator: &'static str,
    extra: Option<String>,
    /// The `Credential` written a second time, before the real one (the last one counts).
    decoy: bool,
}

fn layout() -> impl Strategy<Value = Layout> {
    (
        prop::sample::select(
            &[
                [0, 1, 2],
                [0, 2, 1],
                [1, 0, 2],
                [1, 2, 0],
                [2, 0, 1],
                [2, 1, 0],
            ][..],
        ),
        prop::sample::select(&[", ", ",", " , ", ",\t", ",  "][..]),
        prop::option::of(prop_oneof![
            Just("Foo=bar".to_owned()),
            Just("".to_owned()),
            Just("credential=lowercase/20150830/r/s/aws4_request".to_owned()),
            text(HEADER_CHARS, 0..16).prop_map(|t| t.replace(',', "")),
        ]),
        any::<bool>(),
    )
        .prop_map(|(order, separator, extra, decoy)| Layout {
            order,
            separator,
            extra,
            decoy,
        })
}

fn render(p: &Parts, l: &Layout, drop: Option<usize>) -> String {
    let params = [
        format!(
            "Credential={}/{}/{}/{}/{}",
            p.key, p.date, p.region, p.service, p.terminator
        ),
        format!("SignedHeaders={}", p.headers.join(";")),
        format!("Signature={}", p.signature),
    ];
    let mut out: Vec<String> = Vec::new();
    if l.decoy && drop != Some(0) {
        out.push("Credential=DECOY/19990101/x/y/aws4_request".to_owned());
    }
    for &i in &l.order {
        if Some(i) != drop {
            out.push(params[i].clone());
        }
    }
    if let Some(e) = &l.extra {
        out.push(e.clone());
    }
    format!("AWS4-HMAC-SHA256 {}", out.join(l.separator))
}

/// Whether a spoiled scope part is still valid (spoils hold no separators).
fn scope_part_ok(s: &str) -> bool {
    !s.is_empty() && !s.contains('/')
}

const PATH_CHARS: &[char] = &[
    '/',
    'a',
    'Z',
    '0',
    '%',
    '2',
    'F',
    'f',
    'e',
    '9',
    '+',
    ' ',
    '=',
    '&',
    '?',
    '~',
    '.',
    '-',
    'é',
    '\u{1F680}',
    '\0',
];

proptest! {
    #![proptest_config(config(CI_CASES))]

    #[test]
    fn fuzz_sigv4_arbitrary_header(value in any::<String>()) {
        if let Ok(a) = parse_authorization(&value) {
            well_formed(&a)?;
        }
    }

    #[test]
    fn fuzz_sigv4_arbitrary_parameters(rest in text(HEADER_CHARS, 0..200)) {
        let value = format!("AWS4-HMAC-SHA256 {rest}");
        if let Ok(a) = parse_authorization(&value) {
            well_formed(&a)?;
        }
    }

    #[test]
    fn fuzz_sigv4_structured_headers(parts in valid_parts(), spoil in spoil(), layout in layout()) {
        let mut p = parts;
        let mut drop = None;
        let mut valid = true;
        match spoil {
            Spoil::None => {}
            Spoil::Key(v) => { valid = scope_part_ok(&v); p.key = v; }
            Spoil::Date(v) => {
                valid = v.len() == 8 && v.bytes().all(|b| b.is_ascii_digit());
                p.date = v;
            }
            Spoil::Region(v) => { valid = scope_part_ok(&v); p.region = v; }
            Spoil::Terminator(v) => { valid = v == "aws4_request"; p.terminator = v; }
            Spoil::Headers(v) => {
                valid = v.iter().all(|h| !h.is_empty())
                    && v.iter().any(|h| h.eq_ignore_ascii_case("host"));
                p.headers = v;
            }
            Spoil::Signature(v) => {
                valid = v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit());
                p.signature = v;
            }
            Spoil::Drop(i) => { valid = false; drop = Some(i); }
        }
        // An extra parameter that is itself one of ours, written after the real ones,
        // would win; the generator's extras never are (`credential=` is lower case).
        let header = render(&p, &layout, drop);
        let got = parse_authorization(&header);
        if valid {
            prop_assert!(got.is_ok(), "{header:?}: {got:?}");
            let a = got.unwrap();
            well_formed(&a)?;
            prop_assert_eq!(&a.access_key, &p.key);
            prop_assert_eq!(&a.date, &p.date);
            prop_assert_eq!(&a.region, &p.region);
            prop_assert_eq!(&a.service, &p.service);
            let lower: Vec<String> = p.headers.iter().map(|h| h.to_ascii_lowercase()).collect();
            prop_assert_eq!(a.signed_headers, lower);
            prop_assert_eq!(a.signature, p.signature.to_ascii_lowercase());
        } else {
            prop_assert!(
                matches!(got, Err(SigError::Malformed(_))),
                "{header:?} accepted: {got:?}"
            );
        }
    }

    #[test]
    fn fuzz_sigv4_amz_date(
        t in -62_167_219_200i64..=253_402_300_799,
        junk in text(&['0', '1', '2', '9', 'T', 'Z', ' ', '-', '+', 'é'], 0..20),
        now in 0i64..4_102_444_800,
    ) {
        // Years 0000 to 9999 round-trip.
        let s = format_amz_date(t);
        prop_assert_eq!(s.len(), 16);
        prop_assert_eq!(parse_amz_date(&s), Some(t));
        // Anything else never panics, and what parses formats back to the same text
        // (seconds = 60 aside, which parsing allows for leap seconds).
        if let Some(u) = parse_amz_date(&junk) && !junk.ends_with("60Z") {
            prop_assert_eq!(format_amz_date(u), junk.clone());
        }
        let auth = parse_authorization(&format!(
            "AWS4-HMAC-SHA256 Credential=AK/{}/r/s/aws4_request, SignedHeaders=host;x-amz-date, Signature={}",
            &s[..8],
            "0".repeat(64)
        ));
        if let Ok(auth) = auth {
            for v in [s.as_str(), junk.as_str()] {
                let req = Request {
                    method: "GET",
                    path: "/",
                    query: "",
                    headers: vec![("X-Amz-Date".into(), v.into())],
                    body: b"",
                };
                match check_date(&req, &auth, now) {
                    Ok(d) => {
                        prop_assert_eq!(d, v);
                        let t = parse_amz_date(d).unwrap();
                        prop_assert!((t - now).abs() <= MAX_SKEW_SECS);
                    }
                    Err(e) => prop_assert!(matches!(e, SigError::Malformed(_) | SigError::Expired(_))),
                }
            }
        }
    }

}

proptest! {
    #![proptest_config(config(CI_CASES_SIGNING))]

    #[test]
    fn fuzz_sigv4_sign_and_verify(
        method in prop::sample::select(&["GET", "POST", "PUT", "DELETE", "X"][..]),
        path in text(PATH_CHARS, 0..40),
        query in text(PATH_CHARS, 0..40),
        headers in prop::collection::vec(
            (
                prop::sample::select(&["Host", "host", "X-Amz-Date", "x-amz-target", "Content-Type"][..]),
                any::<String>(),
            ),
            0..5,
        ),
        body in prop::collection::vec(any::<u8>(), 0..64),
        signed in prop::collection::vec(
            prop::sample::select(&["host", "x-amz-date", "x-amz-target", "content-type", "absent"][..]),
            1..5,
        ),
        secret in any::<String>(),
        flip in 0usize..64,
    ) {
        let req = Request {
            method,
            path: &path,
            query: &query,
            headers: headers.into_iter().map(|(n, v)| (n.to_owned(), v)).collect(),
            body: &body,
        };
        let mut auth = AuthHeader {
            access_key: "AK".into(),
            date: "20250101".into(),
            region: "us-east-1".into(),
            service: "ecs".into(),
            signed_headers: signed.iter().map(|s| (*s).to_owned()).collect(),
            signature: String::new(),
        };
        let amz = "20250101T000000Z";
        let creq = canonical_request(&req, &auth.signed_headers);
        prop_assert_eq!(creq.lines().next(), Some(method));
        auth.signature = sign(&req, &auth, amz, &secret);
        prop_assert_eq!(auth.signature.len(), 64);
        prop_assert_eq!(verify(&req, &auth, amz, &secret), Ok(()));
        // Any other signature is a mismatch.
        let mut other = auth.signature.clone().into_bytes();
        other[flip] = if other[flip] == b'0' { b'1' } else { b'0' };
        auth.signature = String::from_utf8(other).unwrap();
        prop_assert_eq!(verify(&req, &auth, amz, &secret), Err(SigError::Mismatch));
    }
}
