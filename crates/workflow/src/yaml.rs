//! A YAML document as a tree whose every key and value knows its [`Place`].
//!
//! serde-saphyr reads the text (YAML 1.2 booleans only, so `on:` stays the string `on`, as
//! on GitHub; duplicate keys are errors); this module owns the tree and the small typed
//! accessors the workflow parser uses, each failing with the place of the offending node.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer};
use serde_saphyr::Spanned;

use crate::error::{Place, WorkflowError};

/// A YAML value.
#[derive(Debug, Clone, PartialEq)]
pub enum Yaml {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

/// A YAML value and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub place: Place,
    pub value: Yaml,
}

/// A mapping key and where it is written.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub place: Place,
    pub name: String,
}

impl Yaml {
    /// What kind of value this is, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Yaml::Null => "null",
            Yaml::Bool(_) => "a boolean",
            Yaml::Int(_) | Yaml::Float(_) => "a number",
            Yaml::Str(_) => "a string",
            Yaml::Seq(_) => "a list",
            Yaml::Map(_) => "a mapping",
        }
    }

    /// The value as JSON (matrix values, `with:` inputs, expression contexts).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            Yaml::Null => Value::Null,
            Yaml::Bool(b) => Value::Bool(*b),
            Yaml::Int(i) => Value::from(*i as f64),
            Yaml::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Yaml::Str(s) => Value::String(s.clone()),
            Yaml::Seq(items) => Value::Array(items.iter().map(|n| n.value.to_json()).collect()),
            Yaml::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.name.clone(), v.value.to_json()))
                    .collect(),
            ),
        }
    }
}

/// Reads `text` into a tree. `file` only names the file in errors.
pub fn parse(file: &str, text: &str) -> Result<Node, WorkflowError> {
    let options = serde_saphyr::options!(strict_booleans: true);
    let root: Spanned<Raw> = serde_saphyr::from_str_with_options(text, options).map_err(|e| {
        let place = e.location().map_or(Place::UNKNOWN, Place::from_location);
        WorkflowError::new(file, place, clean_message(&e.without_snippet().to_string()))
    })?;
    Ok(convert(root))
}

/// serde-saphyr renders "line X column Y" into its messages; the place is printed once, in
/// front, so drop it from the text.
fn clean_message(msg: &str) -> String {
    let first = msg.lines().next().unwrap_or(msg).trim();
    let first = first.trim_start_matches("error: ");
    let mut out = first;
    if let Some(rest) = first.strip_prefix("line ")
        && let Some(i) = rest.find(": ")
        && rest[..i].contains("column")
    {
        out = &rest[i + 2..];
    }
    let out = match out.find(" at line ") {
        Some(i) => &out[..i],
        None => out,
    };
    format!("invalid YAML: {}", out.trim())
}

fn convert(raw: Spanned<Raw>) -> Node {
    let place = Place::from_location(raw.referenced);
    let value = match raw.value {
        Raw::Null => Yaml::Null,
        Raw::Bool(b) => Yaml::Bool(b),
        Raw::Int(i) => Yaml::Int(i),
        Raw::Float(f) => Yaml::Float(f),
        Raw::Str(s) => Yaml::Str(s),
        Raw::Seq(items) => Yaml::Seq(items.into_iter().map(convert).collect()),
        Raw::Map(entries) => Yaml::Map(
            entries
                .into_iter()
                .map(|(k, v)| {
                    let key = Key {
                        place: Place::from_location(k.referenced),
                        name: k.value,
                    };
                    (key, convert(v))
                })
                .collect(),
        ),
    };
    Node { place, value }
}

/// What serde-saphyr hands over: any value, nested values spanned.
enum Raw {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Raw>>),
    Map(Vec<(Spanned<String>, Spanned<Raw>)>),
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = Raw;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a YAML value")
            }
            fn visit_unit<E>(self) -> Result<Raw, E> {
                Ok(Raw::Null)
            }
            fn visit_none<E>(self) -> Result<Raw, E> {
                Ok(Raw::Null)
            }
            fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Raw, D2::Error> {
                Raw::deserialize(d)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Raw, E> {
                Ok(Raw::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Raw, E> {
                Ok(Raw::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Raw, E> {
                Ok(i64::try_from(v).map_or(Raw::Float(v as f64), Raw::Int))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Raw, E> {
                Ok(Raw::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Raw, E> {
                Ok(Raw::Str(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<Raw, E> {
                Ok(Raw::Str(v))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut s: A) -> Result<Raw, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = s.next_element()? {
                    items.push(item);
                }
                Ok(Raw::Seq(items))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut m: A) -> Result<Raw, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = m.next_key::<Spanned<String>>()? {
                    let value = m.next_value()?;
                    entries.push((key, value));
                }
                Ok(Raw::Map(entries))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_carry_places_and_on_stays_a_string() {
        let root = parse(
            "w.yml",
            "on:\n  push:\n    branches: [main, 'true']\nx: on\n",
        )
        .unwrap();
        let Yaml::Map(entries) = &root.value else {
            panic!("{root:?}")
        };
        assert_eq!(entries[0].0.name, "on");
        assert_eq!(entries[0].0.place, Place::new(1, 1));
        assert_eq!(entries[1].1.value, Yaml::Str("on".into()));
        assert_eq!(entries[1].1.place, Place::new(4, 4));
    }

    #[test]
    fn malformed_yaml_is_placed() {
        let e = parse("w.yml", "jobs:\n  a: [1\n").unwrap_err();
        assert_eq!(e.place.line, 2, "{e}");
        assert!(e.to_string().starts_with("w.yml:2:"), "{e}");
        assert!(e.message.starts_with("invalid YAML: "), "{e}");
        let e = parse("w.yml", "a: 1\na: 2\n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("w.yml:2:1: invalid YAML: duplicate"),
            "{e}"
        );
    }
}
