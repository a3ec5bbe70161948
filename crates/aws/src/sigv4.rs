//! AWS Signature Version 4 verification (header form), written after the IAM reference:
//! the server rebuilds the canonical request from what it received, derives the signing
//! key from the stored secret and compares signatures in constant time.
//!
//! Checked against AWS's published test vectors (`get-vanilla`, `post-vanilla`,
//! `get-vanilla-query-order-key-case`, `post-x-www-form-urlencoded`) and, in the integration
//! tests, against the real `aws` CLI (botocore's signer).

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// How far `X-Amz-Date` may be from the server's clock.
pub const MAX_SKEW_SECS: i64 = 15 * 60;

/// Why a request's signature is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    #[error("Missing Authentication Token")]
    Missing,
    #[error("{0}")]
    Malformed(String),
    #[error(
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
    )]
    Mismatch,
    #[error("Signature expired: {0}")]
    Expired(String),
}

/// The parsed `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthHeader {
    pub access_key: String,
    /// `yyyymmdd`
    pub date: String,
    pub region: String,
    pub service: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

impl AuthHeader {
    pub fn scope(&self) -> String {
        format!(
            "{}/{}/{}/aws4_request",
            self.date, self.region, self.service
        )
    }
}

/// Parses `AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/ecs/aws4_request,
/// SignedHeaders=host;x-amz-date, Signature=hex`.
pub fn parse_authorization(value: &str) -> Result<AuthHeader, SigError> {
    let rest = value.strip_prefix("AWS4-HMAC-SHA256 ").ok_or_else(|| {
        SigError::Malformed("Authorization header requires the AWS4-HMAC-SHA256 algorithm".into())
    })?;
    let (mut cred, mut signed, mut sig) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            cred = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            sig = Some(v);
        }
    }
    let missing = |what: &str| {
        SigError::Malformed(format!(
            "Authorization header requires '{what}' parameter. Authorization={value}"
        ))
    };
    let cred = cred.ok_or_else(|| missing("Credential"))?;
    let signed = signed.ok_or_else(|| missing("SignedHeaders"))?;
    let sig = sig.ok_or_else(|| missing("Signature"))?;
    let parts: Vec<&str> = cred.split('/').collect();
    if parts.len() != 5 || parts[4] != "aws4_request" || parts.iter().any(|p| p.is_empty()) {
        return Err(SigError::Malformed(format!(
            "Credential should be scoped to a valid region and service, like AKID/20150830/us-east-1/ecs/aws4_request; got {cred}"
        )));
    }
    if parts[1].len() != 8 || !parts[1].bytes().all(|b| b.is_ascii_digit()) {
        return Err(SigError::Malformed(format!(
            "Credential date {} is not yyyymmdd",
            parts[1]
        )));
    }
    let signed_headers: Vec<String> = signed.split(';').map(|h| h.to_ascii_lowercase()).collect();
    if signed_headers.iter().any(|h| h.is_empty()) || !signed_headers.iter().any(|h| h == "host") {
        return Err(SigError::Malformed(
            "SignedHeaders must include host".into(),
        ));
    }
    if sig.len() != 64 || !sig.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(SigError::Malformed(
            "Signature must be 64 hex digits".into(),
        ));
    }
    Ok(AuthHeader {
        access_key: parts[0].to_owned(),
        date: parts[1].to_owned(),
        region: parts[2].to_owned(),
        service: parts[3].to_owned(),
        signed_headers,
        signature: sig.to_ascii_lowercase(),
    })
}

/// A request as the verifier sees it.
#[derive(Clone)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The path as received (still percent-encoded).
    pub path: &'a str,
    /// The raw query string, without `?`.
    pub query: &'a str,
    /// Every header (name, value); names in any case, repeated names allowed.
    pub headers: Vec<(String, String)>,
    pub body: &'a [u8],
}

impl Request<'_> {
    fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// RFC 3986 encoding as SigV4 wants it: unreserved characters stay, everything else is
/// `%XX` (upper case); `/` stays when `keep_slash`.
pub fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                uri_encode(&percent_decode(k), false),
                uri_encode(&percent_decode(v), false),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn trim_all(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The canonical request of `req` for the signed header list (lowercase names).
pub fn canonical_request(req: &Request<'_>, signed: &[String]) -> String {
    let mut names: Vec<&String> = signed.iter().collect();
    names.sort();
    names.dedup();
    let mut headers = String::new();
    for n in &names {
        let values: Vec<String> = req.header_values(n).iter().map(|v| trim_all(v)).collect();
        headers.push_str(&format!("{n}:{}\n", values.join(",")));
    }
    let path = if req.path.is_empty() { "/" } else { req.path };
    format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        uri_encode(path, true),
        canonical_query(req.query),
        headers,
        names
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(";"),
        hex::encode(Sha256::digest(req.body))
    )
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut m = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    m.update(data);
    m.finalize().into_bytes().into()
}

/// `kSigning` of the HMAC chain.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

/// Hex signature of a request.
pub fn sign(req: &Request<'_>, auth: &AuthHeader, amz_date: &str, secret: &str) -> String {
    let key = signing_key(secret, &auth.date, &auth.region, &auth.service);
    sign_with_key(req, auth, amz_date, &key)
}

/// Hex signature of a request with a derived `kSigning` (see [`signing_key`]), which
/// depends only on the secret and the credential scope, so it can be kept per scope.
pub fn sign_with_key(
    req: &Request<'_>,
    auth: &AuthHeader,
    amz_date: &str,
    key: &[u8; 32],
) -> String {
    let creq = canonical_request(req, &auth.signed_headers);
    let sts = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{}\n{}",
        auth.scope(),
        hex::encode(Sha256::digest(creq.as_bytes()))
    );
    hex::encode(hmac(key, sts.as_bytes()))
}

/// Parses `yyyymmddThhmmssZ` into unix seconds.
pub fn parse_amz_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if !t.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        t.parse().ok()
    };
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, sec) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec)
}

/// Formats unix seconds as `yyyymmddThhmmssZ`.
pub fn format_amz_date(t: i64) -> String {
    let days = t.div_euclid(86400);
    let secs = t.rem_euclid(86400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

// Howard Hinnant's algorithms.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Checks the date of a request: `X-Amz-Date` present, within [`MAX_SKEW_SECS`] of `now`
/// and on the credential scope's day. Returns the `X-Amz-Date` value.
pub fn check_date<'a>(
    req: &'a Request<'_>,
    auth: &AuthHeader,
    now: i64,
) -> Result<&'a str, SigError> {
    let amz_date = req
        .header_values("x-amz-date")
        .first()
        .copied()
        .ok_or_else(|| SigError::Malformed("the X-Amz-Date header is missing".into()))?;
    if !auth.signed_headers.iter().any(|h| h == "x-amz-date") {
        return Err(SigError::Malformed(
            "SignedHeaders must include x-amz-date".into(),
        ));
    }
    let t = parse_amz_date(amz_date).ok_or_else(|| {
        SigError::Malformed(format!("X-Amz-Date {amz_date} is not yyyymmddThhmmssZ"))
    })?;
    if t < now - MAX_SKEW_SECS {
        return Err(SigError::Expired(format!(
            "{amz_date} is now earlier than {} ({} - 15 min.)",
            format_amz_date(now - MAX_SKEW_SECS),
            format_amz_date(now)
        )));
    }
    if t > now + MAX_SKEW_SECS {
        return Err(SigError::Expired(format!(
            "{amz_date} is now later than {} ({} + 15 min.)",
            format_amz_date(now + MAX_SKEW_SECS),
            format_amz_date(now)
        )));
    }
    if amz_date[..8] != auth.date {
        return Err(SigError::Malformed(format!(
            "Credential should be scoped to a valid date: {} does not match X-Amz-Date {amz_date}",
            auth.date
        )));
    }
    Ok(amz_date)
}

/// Verifies the signature of `req` with `secret` (date already checked).
pub fn verify(
    req: &Request<'_>,
    auth: &AuthHeader,
    amz_date: &str,
    secret: &str,
) -> Result<(), SigError> {
    let key = signing_key(secret, &auth.date, &auth.region, &auth.service);
    verify_with_key(req, auth, amz_date, &key)
}

/// [`verify`] with the scope's derived `kSigning`.
pub fn verify_with_key(
    req: &Request<'_>,
    auth: &AuthHeader,
    amz_date: &str,
    key: &[u8; 32],
) -> Result<(), SigError> {
    let expected = sign_with_key(req, auth, amz_date, key);
    if bool::from(expected.as_bytes().ct_eq(auth.signature.as_bytes())) {
        Ok(())
    } else {
        Err(SigError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const DATE: &str = "20150830T123600Z";

    fn vector(
        method: &str,
        path: &str,
        query: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        signed: &str,
        expected: &str,
    ) {
        let req = Request {
            method,
            path,
            query,
            headers: headers
                .iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect(),
            body,
        };
        let header = format!(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders={signed}, Signature={expected}"
        );
        let auth = parse_authorization(&header).unwrap();
        let now = parse_amz_date(DATE).unwrap() + 60;
        let d = check_date(&req, &auth, now).unwrap().to_owned();
        let d = d.as_str();
        assert_eq!(sign(&req, &auth, d, SECRET), expected);
        verify(&req, &auth, d, SECRET).unwrap();
        assert_eq!(
            verify(&req, &auth, d, "wrong"),
            Err(SigError::Mismatch),
            "a wrong secret fails"
        );
        let tampered = Request {
            body: b"tampered",
            ..req
        };
        assert_eq!(verify(&tampered, &auth, d, SECRET), Err(SigError::Mismatch));
    }

    #[test]
    fn aws_test_suite_get_vanilla() {
        vector(
            "GET",
            "/",
            "",
            &[
                ("Host", "example.amazonaws.com"),
                ("X-Amz-Date", DATE),
                ("User-Agent", "not signed"),
            ],
            b"",
            "host;x-amz-date",
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        );
    }

    #[test]
    fn aws_test_suite_post_vanilla() {
        vector(
            "POST",
            "/",
            "",
            &[("Host", "example.amazonaws.com"), ("X-Amz-Date", DATE)],
            b"",
            "host;x-amz-date",
            "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
        );
    }

    #[test]
    fn aws_test_suite_get_vanilla_query_order_key_case() {
        vector(
            "GET",
            "/",
            "Param2=value2&Param1=value1",
            &[("Host", "example.amazonaws.com"), ("X-Amz-Date", DATE)],
            b"",
            "host;x-amz-date",
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
        );
    }

    #[test]
    fn aws_test_suite_post_x_www_form_urlencoded() {
        vector(
            "POST",
            "/",
            "",
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Host", "example.amazonaws.com"),
                ("X-Amz-Date", DATE),
            ],
            b"Param1=value1",
            "content-type;host;x-amz-date",
            "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a",
        );
    }

    #[test]
    fn dates_round_trip_and_skew_is_bounded() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        let t = parse_amz_date(DATE).unwrap();
        assert_eq!(format_amz_date(t), DATE);
        assert_eq!(format_amz_date(1_700_000_000), "20231114T221320Z");
        assert!(parse_amz_date("2015-08-30T12:36:00Z").is_none());
        let req = Request {
            method: "POST",
            path: "/",
            query: "",
            headers: vec![
                ("host".into(), "h".into()),
                ("x-amz-date".into(), DATE.into()),
            ],
            body: b"",
        };
        let auth = parse_authorization(&format!(
            "AWS4-HMAC-SHA256 Credential=AK/20150830/us-east-1/ecs/aws4_request, SignedHeaders=host;x-amz-date, Signature={}",
            "0".repeat(64)
        ))
        .unwrap();
        assert!(check_date(&req, &auth, t + MAX_SKEW_SECS).is_ok());
        assert!(matches!(
            check_date(&req, &auth, t + MAX_SKEW_SECS + 1),
            Err(SigError::Expired(_))
        ));
        assert!(matches!(
            check_date(&req, &auth, t - MAX_SKEW_SECS - 1),
            Err(SigError::Expired(_))
        ));
        let other_day = AuthHeader {
            date: "20150831".into(),
            ..auth
        };
        assert!(matches!(
            check_date(&req, &other_day, t),
            Err(SigError::Malformed(_))
        ));
    }

    #[test]
    fn malformed_headers_are_refused() {
        for h in [
            "",
            "AWS4-HMAC-SHA1 Credential=a/20150830/r/s/aws4_request, SignedHeaders=host, Signature=00",
            "AWS4-HMAC-SHA256 Credential=a/20150830/r/s/aws5_request, SignedHeaders=host, Signature=0000000000000000000000000000000000000000000000000000000000000000",
            "AWS4-HMAC-SHA256 Credential=a/2015083/r/s/aws4_request, SignedHeaders=host, Signature=0000000000000000000000000000000000000000000000000000000000000000",
            "AWS4-HMAC-SHA256 Credential=a/20150830/r/s/aws4_request, SignedHeaders=x-amz-date, Signature=0000000000000000000000000000000000000000000000000000000000000000",
            "AWS4-HMAC-SHA256 Credential=a/20150830/r/s/aws4_request, SignedHeaders=host, Signature=zz",
        ] {
            assert!(parse_authorization(h).is_err(), "{h}");
        }
    }

    /// Run by bench/aws.sh: the cost of parsing, canonicalising and verifying one typical
    /// ECS request (release build).
    #[test]
    #[ignore = "benchmark; bench/aws.sh runs it"]
    fn sigv4_verification_cost() {
        let body = br#"{"cluster":"default","services":["a","b","c","d","e","f","g","h","i","j"]}"#;
        let date = format_amz_date(1_795_000_000);
        let req = Request {
            method: "POST",
            path: "/",
            query: "",
            headers: vec![
                ("host".into(), "127.0.0.1:7780".into()),
                ("content-type".into(), "application/x-amz-json-1.1".into()),
                ("x-amz-date".into(), date.clone()),
                (
                    "x-amz-target".into(),
                    "AmazonEC2ContainerServiceV20141113.DescribeServices".into(),
                ),
                ("user-agent".into(), "aws-cli/1.46".into()),
            ],
            body,
        };
        let mut auth = parse_authorization(&format!(
            "AWS4-HMAC-SHA256 Credential=AKIA/{}/us-east-1/ecs/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature={}",
            &date[..8],
            "0".repeat(64)
        ))
        .unwrap();
        auth.signature = sign(&req, &auth, &date, "secret");
        let header = format!(
            "AWS4-HMAC-SHA256 Credential=AKIA/{}/us-east-1/ecs/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature={}",
            &date[..8],
            auth.signature
        );
        let n = 20_000;
        let t = std::time::Instant::now();
        for _ in 0..n {
            let a = parse_authorization(std::hint::black_box(&header)).unwrap();
            let d = check_date(&req, &a, 1_795_000_000).unwrap();
            verify(&req, &a, d, "secret").unwrap();
        }
        let per = t.elapsed() / n;
        println!("SigV4 verification: {per:?} per request ({n} requests)");
        // What the server does: kSigning is kept per key and scope.
        let key = signing_key("secret", &auth.date, &auth.region, &auth.service);
        let t = std::time::Instant::now();
        for _ in 0..n {
            let a = parse_authorization(std::hint::black_box(&header)).unwrap();
            let d = check_date(&req, &a, 1_795_000_000).unwrap();
            verify_with_key(&req, &a, d, &key).unwrap();
        }
        let per = t.elapsed() / n;
        println!("SigV4 verification, signing key cached: {per:?} per request ({n} requests)");
    }
}

#[cfg(test)]
mod fuzz;
