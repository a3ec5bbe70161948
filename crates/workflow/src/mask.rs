//! Hiding secrets in log lines.
//!
//! A [`Masker`] knows every registered secret in several forms: as written, each line of a
//! multi-line secret, its URL-encoded form (`%XX` for everything but `A-Za-z0-9-._~`), and
//! its base64 forms at the three byte offsets a secret can start at inside a longer encoded
//! text (as GitHub's runner does: only the characters the secret alone decides). Masking
//! finds every occurrence of every form in the original line, overlapping ones too, merges
//! the ranges and writes `***` for each merged range, so no part of a secret that was
//! matched survives next to a mask.
//!
//! Encoded forms shorter than [`MIN_ENCODED_LEN`] characters are not registered (they would
//! mask common short words): a secret under 3 bytes is masked as written only.

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// The replacement of a secret.
pub const MASK: &str = "***";

/// Encoded forms shorter than this are not masked.
pub const MIN_ENCODED_LEN: usize = 4;

/// What `encodeURIComponent`/`Uri.EscapeDataString` leave alone.
const URL_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Replaces registered secrets in log lines with `***`.
#[derive(Debug, Clone, Default)]
pub struct Masker {
    /// Every form, longest first, no duplicates.
    forms: Vec<String>,
}

impl Masker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a secret (a `secrets.X` value, an `::add-mask::` value). Empty is ignored.
    pub fn add(&mut self, secret: &str) {
        let mut values = vec![secret.to_owned()];
        if secret.contains('\n') {
            values.extend(
                secret
                    .lines()
                    .map(|l| l.trim_end_matches('\r'))
                    .filter(|l| !l.trim().is_empty())
                    .map(str::to_owned),
            );
        }
        for v in values {
            if v.is_empty() {
                continue;
            }
            let url = utf8_percent_encode(&v, URL_COMPONENT).to_string();
            self.push(url);
            for b in base64_forms(v.as_bytes()) {
                if b.len() >= MIN_ENCODED_LEN {
                    self.push(b);
                }
            }
            self.push(v);
        }
        self.forms
            .sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    }

    fn push(&mut self, form: String) {
        if !form.is_empty() && !self.forms.contains(&form) {
            self.forms.push(form);
        }
    }

    /// Whether no secret is registered.
    pub fn is_empty(&self) -> bool {
        self.forms.is_empty()
    }

    /// The registered forms, longest first.
    pub fn forms(&self) -> &[String] {
        &self.forms
    }

    /// The line with every occurrence of every form replaced by `***`. A secret containing
    /// `*` could be formed again around a mask; the line is then masked again (a few times
    /// at most).
    pub fn mask(&self, line: &str) -> String {
        let mut out = self.mask_once(line);
        for _ in 0..3 {
            if !self.forms.iter().any(|f| out.contains(f.as_str())) {
                break;
            }
            out = self.mask_once(&out);
        }
        out
    }

    fn mask_once(&self, line: &str) -> String {
        let mut ranges: Vec<(usize, usize)> = Vec::new();
        for form in &self.forms {
            let mut start = 0;
            while let Some(pos) = line[start..].find(form.as_str()) {
                let at = start + pos;
                ranges.push((at, at + form.len()));
                // Next search from the next character: overlapping occurrences count too.
                start = at + line[at..].chars().next().map_or(1, char::len_utf8);
                if start >= line.len() {
                    break;
                }
            }
        }
        if ranges.is_empty() {
            return line.to_owned();
        }
        ranges.sort_unstable();
        let mut out = String::with_capacity(line.len());
        let mut pos = 0;
        let mut i = 0;
        while i < ranges.len() {
            let (start, mut end) = ranges[i];
            i += 1;
            while i < ranges.len() && ranges[i].0 <= end {
                end = end.max(ranges[i].1);
                i += 1;
            }
            out.push_str(&line[pos..start]);
            out.push_str(MASK);
            pos = end;
        }
        out.push_str(&line[pos..]);
        out
    }
}

/// The base64 text a secret produces inside a longer encoded text, for each of the three
/// offsets (mod 3) it can start at: the characters whose 6 bits all come from the secret.
pub fn base64_forms(secret: &[u8]) -> Vec<String> {
    (0..3usize)
        .map(|offset| {
            let mut buf = vec![0u8; offset];
            buf.extend_from_slice(secret);
            let enc = STANDARD_NO_PAD.encode(&buf);
            let first = (8 * offset).div_ceil(6);
            let last = (8 * (offset + secret.len())) / 6;
            if first >= last {
                String::new()
            } else {
                enc[first..last].to_owned()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;

    #[test]
    fn masks_plain_url_and_base64_forms() {
        let mut m = Masker::new();
        m.add("s3cr3t/p@ss");
        assert_eq!(m.mask("pw=s3cr3t/p@ss!"), "pw=***!");
        assert_eq!(m.mask("u=s3cr3t%2Fp%40ss"), "u=***");
        for prefix in ["", "a", "ab", "user:"] {
            let enc = STANDARD.encode(format!("{prefix}s3cr3t/p@ss tail"));
            let masked = m.mask(&enc);
            assert!(masked.contains(MASK), "{prefix:?}: {enc} → {masked}");
            for f in base64_forms(b"s3cr3t/p@ss") {
                assert!(!masked.contains(&f));
            }
        }
        assert_eq!(m.mask("nothing here"), "nothing here");
    }

    #[test]
    fn overlapping_secrets_leave_no_part() {
        let mut m = Masker::new();
        m.add("abc");
        m.add("bcd");
        assert_eq!(m.mask("xabcdx"), "x***x");
        let mut m = Masker::new();
        m.add("aa");
        assert_eq!(m.mask("aaa"), "***");
        // A secret with stars, formed again around the first mask.
        let mut m = Masker::new();
        m.add("a***");
        assert_eq!(m.mask("aa***"), "***");
    }

    #[test]
    fn multi_line_secrets_mask_each_line() {
        let mut m = Masker::new();
        m.add("-----BEGIN KEY-----\nMIIEvQIBADANBg\n-----END KEY-----");
        assert_eq!(m.mask("MIIEvQIBADANBg"), "***");
        m.add("");
        assert!(!m.forms().iter().any(String::is_empty));
    }

    #[test]
    fn base64_forms_are_the_secret_only_characters() {
        // "secret" at offset 0: c2VjcmV0 (6 bytes: exactly 8 characters).
        assert_eq!(base64_forms(b"secret")[0], "c2VjcmV0");
        let enc = STANDARD.encode(b"xsecret");
        assert!(enc.contains(&base64_forms(b"secret")[1]));
        let enc = STANDARD.encode(b"xysecret");
        assert!(enc.contains(&base64_forms(b"secret")[2]));
    }
}
