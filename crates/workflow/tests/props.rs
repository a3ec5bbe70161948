//! Property tests: the masker never lets a secret through; the expression parser and
//! evaluator, the template parser and the pattern matcher never panic.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::json;
use slipway_workflow::Masker;
use slipway_workflow::expr::{Condition, EvalContext, Template, parse};
use slipway_workflow::filter::Pattern;
use slipway_workflow::mask::base64_forms;

/// Secrets: at least 3 bytes, any characters but `*` (a secret containing the mask itself
/// could reappear around a mask).
fn secret() -> impl Strategy<Value = String> {
    "[^*\n\r]{3,24}"
}

/// 1000 cases per property (as the other crates' fuzz tests); `SLIPWAY_FUZZ_CASES` for more.
fn config() -> Config {
    let mut c = Config::default();
    c.cases = match std::env::var("SLIPWAY_FUZZ_CASES") {
        Ok(v) => v.parse().expect("SLIPWAY_FUZZ_CASES is a number of cases"),
        Err(_) if std::env::var_os("PROPTEST_CASES").is_some() => c.cases,
        Err(_) => 1_000,
    };
    c.failure_persistence = None;
    c
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn a_masked_line_never_contains_the_secret(
        secret in secret(),
        before in "[^\n]{0,40}",
        after in "[^\n]{0,40}",
        other in proptest::option::of(secret()),
    ) {
        let mut m = Masker::new();
        m.add(&secret);
        if let Some(o) = &other {
            m.add(o);
        }
        let line = format!("{before}{secret}{after}");
        let masked = m.mask(&line);
        prop_assert!(!masked.contains(&secret), "{line:?} → {masked:?}");
        prop_assert!(masked.contains("***"));
    }

    #[test]
    fn base64_of_text_containing_the_secret_is_masked(
        secret in secret(),
        before in proptest::collection::vec(any::<u8>(), 0..12),
        after in proptest::collection::vec(any::<u8>(), 0..12),
    ) {
        let mut m = Masker::new();
        m.add(&secret);
        let mut plain = before.clone();
        plain.extend_from_slice(secret.as_bytes());
        plain.extend_from_slice(&after);
        let encoded = STANDARD.encode(&plain);
        // The form for the secret's offset occurs in the encoding...
        let forms = base64_forms(secret.as_bytes());
        prop_assert!(encoded.contains(&forms[before.len() % 3]), "{encoded} lacks {:?}", forms);
        // ...and after masking none of the three forms is left.
        let masked = m.mask(&encoded);
        for f in forms.iter().filter(|f| f.len() >= slipway_workflow::mask::MIN_ENCODED_LEN) {
            prop_assert!(!masked.contains(f.as_str()), "{encoded} → {masked} still has {f}");
        }
    }

    #[test]
    fn url_encoded_secrets_are_masked(secret in secret(), before in "[a-z ]{0,10}") {
        let mut m = Masker::new();
        m.add(&secret);
        let encoded: String = percent_encode(&secret);
        let masked = m.mask(&format!("{before}{encoded}"));
        prop_assert!(!masked.contains(&encoded) || encoded.is_empty(), "{masked}");
    }

    #[test]
    fn expressions_never_panic(src in "[ -~]{0,60}") {
        let cx = EvalContext::new()
            .with("github", json!({"ref": "refs/heads/main", "event": {"a": [1, {"b": "c"}]}}))
            .with("env", json!({"X": "1", "J": "{\"k\": [1,2]}"}));
        if let Ok(e) = parse(&src) {
            let _ = e.eval(&cx);
        }
        if let Ok(t) = Template::parse(&src) {
            let _ = t.eval(&cx);
        }
        if let Ok(c) = Condition::parse(&src) {
            let _ = c.eval(&cx);
        }
    }

    #[test]
    fn expressions_from_the_grammar_never_panic(
        parts in proptest::collection::vec(prop_oneof![
            Just("github.ref"), Just("env.J"), Just("fromJSON(env.J)"), Just("'a'"), Just("1"),
            Just("null"), Just("true"), Just("=="), Just("!="), Just("<"), Just("&&"), Just("||"),
            Just("!"), Just("("), Just(")"), Just("["), Just("]"), Just(".*"), Just(".k"),
            Just("contains("), Just("format('{0}', "), Just("join("), Just("toJSON("), Just(","),
            Just("success()"), Just("always()"),
        ], 0..20),
    ) {
        let src = parts.join(" ");
        let cx = EvalContext::new().with("env", json!({"J": "{\"k\": [1,2]}"}));
        if let Ok(e) = parse(&src) {
            let _ = e.eval(&cx);
        }
    }

    #[test]
    fn patterns_never_panic(pattern in "[-a-z*?+!/\\[\\]\\\\.]{0,16}", name in "[-a-z/.]{0,24}") {
        let _ = Pattern::parse(&pattern).matches(&name);
    }
}

fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
