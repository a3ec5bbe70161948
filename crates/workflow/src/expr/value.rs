//! GitHub's value coercions: truthiness, numbers, strings and loose equality.

use std::cmp::Ordering;

use serde_json::Value;

/// `false`, `0`, `-0`, `NaN`, `''` and `null` are falsy; everything else (also `[]` and
/// `{}`) is truthy.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// A value as a number: `null` → 0, booleans → 1/0, strings parsed (`''` → 0, not a
/// number → NaN), arrays and objects → NaN.
pub fn to_number(v: &Value) -> f64 {
    match v {
        Value::Null => 0.0,
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
        Value::String(s) => parse_number(s.trim()).unwrap_or(f64::NAN),
        Value::Array(_) | Value::Object(_) => f64::NAN,
    }
}

/// Parses a number as GitHub writes them: decimal, exponent, `0x` hex, `0o` octal, signs.
pub(crate) fn parse_number(s: &str) -> Option<f64> {
    if s.is_empty() {
        return Some(0.0);
    }
    let (neg, body) = match s.as_bytes()[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let magnitude = if let Some(hex) = body.strip_prefix("0x") {
        i64::from_str_radix(hex, 16).ok()? as f64
    } else if let Some(oct) = body.strip_prefix("0o") {
        i64::from_str_radix(oct, 8).ok()? as f64
    } else if body == "Infinity" {
        f64::INFINITY
    } else if body == "NaN" {
        f64::NAN
    } else {
        if body.is_empty() {
            return None;
        }
        let ok = body
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'));
        if !ok || !body.as_bytes()[0].is_ascii_digit() && body.as_bytes()[0] != b'.' {
            return None;
        }
        body.parse::<f64>().ok()?
    };
    Some(if neg { -magnitude } else { magnitude })
}

/// A number as GitHub prints it: integers without a fraction, `NaN`, `Infinity`.
pub fn fmt_number(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

/// A value as a string (what `${{ }}` interpolates): `null` → `''`, numbers as
/// [`fmt_number`], arrays and objects → `Array` / `Object` (use `toJSON` to see them).
pub fn to_string(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => fmt_number(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => s.clone(),
        Value::Array(_) => "Array".into(),
        Value::Object(_) => "Object".into(),
    }
}

fn same_kind(a: &Value, b: &Value) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

/// `==`: strings case-insensitively, values of different types through numbers; arrays and
/// objects are equal only to the same instance, which an evaluated value never is here.
pub fn loose_eq(a: &Value, b: &Value) -> bool {
    if same_kind(a, b) {
        return match (a, b) {
            (Value::Null, Value::Null) => true,
            (Value::Bool(x), Value::Bool(y)) => x == y,
            (Value::String(x), Value::String(y)) => x == y || x.to_uppercase() == y.to_uppercase(),
            (Value::Number(_), Value::Number(_)) => to_number(a) == to_number(b),
            _ => false,
        };
    }
    to_number(a) == to_number(b)
}

/// `<`, `<=`, `>`, `>=`: strings case-insensitively, everything else through numbers; `None`
/// when incomparable (NaN, arrays, objects): every ordering comparison is then false.
pub(crate) fn loose_cmp(a: &Value, b: &Value) -> Option<Ordering> {
    if let (Value::String(x), Value::String(y)) = (a, b) {
        return Some(x.to_uppercase().cmp(&y.to_uppercase()));
    }
    if matches!(a, Value::Array(_) | Value::Object(_))
        || matches!(b, Value::Array(_) | Value::Object(_))
    {
        return None;
    }
    to_number(a).partial_cmp(&to_number(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn coercions_follow_github() {
        assert!(!truthy(&json!(0)) && !truthy(&json!("")) && !truthy(&Value::Null));
        assert!(truthy(&json!([])) && truthy(&json!({})) && truthy(&json!("false")));
        assert_eq!(to_number(&json!("")), 0.0);
        assert_eq!(to_number(&json!(" 0x10 ")), 16.0);
        assert!(to_number(&json!("abc")).is_nan());
        assert!(to_number(&json!("-")).is_nan() && to_number(&json!("+")).is_nan());
        assert_eq!(fmt_number(3.0), "3");
        assert_eq!(fmt_number(1.5), "1.5");
        assert!(loose_eq(&json!("ABC"), &json!("abc")));
        assert!(loose_eq(&json!("1"), &json!(1)));
        assert!(loose_eq(&json!(true), &json!(1)));
        assert!(loose_eq(&Value::Null, &json!(0)));
        assert!(loose_eq(&Value::Null, &json!("")));
        assert!(!loose_eq(&json!([]), &json!([])));
        assert!(!loose_eq(&json!("a"), &json!(0)));
        assert_eq!(loose_cmp(&json!("b"), &json!("A")), Some(Ordering::Greater));
    }
}
