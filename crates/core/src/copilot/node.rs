//! A YAML tree that remembers where each node and each key is written (via serde-saphyr's
//! spans), and the writer of the equivalent `slipway.yml` that remembers, for each line it
//! writes, which place of which Copilot file it comes from.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer};
use serde_saphyr::{Location, Spanned};

/// A place in one of the workspace's files: index into the file list, 1-based line and
/// column (0 when unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    pub file: usize,
    pub line: u64,
    pub column: u64,
}

/// A YAML value.
#[derive(Debug, Clone)]
pub enum Val {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

/// A YAML node and where it is written.
#[derive(Debug, Clone)]
pub struct Node {
    pub val: Val,
    pub at: Location,
}

/// A mapping key and where it is written.
#[derive(Debug, Clone)]
pub struct Key {
    pub name: String,
    pub at: Location,
}

impl Node {
    /// The entry `key` of a mapping.
    pub fn get(&self, key: &str) -> Option<(&Key, &Node)> {
        match &self.val {
            Val::Map(m) => m.iter().find(|(k, _)| k.name == key).map(|(k, v)| (k, v)),
            _ => None,
        }
    }

    /// The entries of a mapping (none for anything else).
    pub fn entries(&self) -> &[(Key, Node)] {
        match &self.val {
            Val::Map(m) => m,
            _ => &[],
        }
    }

    pub fn is_map(&self) -> bool {
        matches!(self.val, Val::Map(_))
    }

    /// A scalar as text (`8080` → "8080"); `None` for null, sequences and mappings.
    pub fn scalar(&self) -> Option<String> {
        match &self.val {
            Val::Bool(b) => Some(b.to_string()),
            Val::Int(i) => Some(i.to_string()),
            Val::Float(f) => Some(f.to_string()),
            Val::Str(s) => Some(s.clone()),
            Val::Null | Val::Seq(_) | Val::Map(_) => None,
        }
    }

    /// The node in YAML flow style, on one line (strings double-quoted when needed).
    pub fn flow(&self) -> String {
        match &self.val {
            Val::Null => "null".into(),
            Val::Bool(b) => b.to_string(),
            Val::Int(i) => i.to_string(),
            Val::Float(f) if f.is_finite() => {
                let s = f.to_string();
                if s.contains(['.', 'e', 'E']) {
                    s
                } else {
                    format!("{s}.0")
                }
            }
            Val::Float(f) if f.is_nan() => ".nan".into(),
            Val::Float(f) if *f > 0.0 => ".inf".into(),
            Val::Float(_) => "-.inf".into(),
            Val::Str(s) => scalar_text(s),
            Val::Seq(v) => format!(
                "[{}]",
                v.iter().map(Node::flow).collect::<Vec<_>>().join(", ")
            ),
            Val::Map(m) => format!(
                "{{{}}}",
                m.iter()
                    .map(|(k, v)| format!("{}: {}", key_text(&k.name), v.flow()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// Words YAML 1.1 or 1.2 may read as something other than a string.
fn special_word(s: &str) -> bool {
    matches!(
        s.to_ascii_lowercase().as_str(),
        "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n" | "null" | "~" | ""
    ) || s.parse::<f64>().is_ok()
        || (s.starts_with('.') && !s.starts_with("./") && !s.starts_with("../"))
        || s.starts_with(['0', '+', '-'])
}

/// A string scalar: plain when it cannot be read as anything else, else double-quoted
/// (JSON's escapes are YAML's).
pub fn scalar_text(s: &str) -> String {
    let plain = !special_word(s)
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_.-@:+ ".contains(c))
        && !s.starts_with([' ', ':', '@'])
        && !s.ends_with([' ', ':'])
        && !s.contains(": ")
        && !s.contains(" #");
    if plain {
        s.to_owned()
    } else {
        serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
    }
}

/// A mapping key: plain when safe, else double-quoted.
pub fn key_text(s: &str) -> String {
    let plain = !special_word(s)
        && s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c));
    if plain {
        s.to_owned()
    } else {
        serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Spanned::<Val>::deserialize(d)?;
        Ok(Node {
            val: s.value,
            at: s.referenced,
        })
    }
}

impl<'de> Deserialize<'de> for Val {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = Val;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a YAML value")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Val, E> {
                Ok(Val::Bool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Val, E> {
                Ok(Val::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Val, E> {
                Ok(i64::try_from(v).map_or(Val::Float(v as f64), Val::Int))
            }
            fn visit_i128<E: de::Error>(self, v: i128) -> Result<Val, E> {
                Ok(i64::try_from(v).map_or(Val::Float(v as f64), Val::Int))
            }
            fn visit_u128<E: de::Error>(self, v: u128) -> Result<Val, E> {
                Ok(i64::try_from(v).map_or(Val::Float(v as f64), Val::Int))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Val, E> {
                Ok(Val::Float(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Val, E> {
                Ok(Val::Str(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Val, E> {
                Ok(Val::Str(v))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Val, E> {
                Ok(Val::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<Val, E> {
                Ok(Val::Null)
            }
            fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Val, D2::Error> {
                Val::deserialize(d)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Val, A::Error> {
                let mut v = Vec::new();
                while let Some(n) = seq.next_element::<Node>()? {
                    v.push(n);
                }
                Ok(Val::Seq(v))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Val, A::Error> {
                let mut m: Vec<(Key, Node)> = Vec::new();
                // Keys as strings: `on:` is a key, not YAML 1.1's `true`.
                while let Some(k) = map.next_key::<Spanned<String>>()? {
                    let (name, at) = (k.value, k.referenced);
                    let v = map.next_value::<Node>()?;
                    if m.iter().any(|(x, _)| x.name == name) {
                        return Err(de::Error::custom(format!("duplicate key {name:?}")));
                    }
                    m.push((Key { name, at }, v));
                }
                Ok(Val::Map(m))
            }
        }
        d.deserialize_any(V)
    }
}

/// The `slipway.yml` being written: its lines, where each comes from, and where each
/// manifest path (`services.api.http.path`) comes from.
#[derive(Debug, Default)]
pub struct Writer {
    pub text: String,
    pub lines: Vec<Option<Origin>>,
    pub paths: Vec<(String, Origin)>,
    stack: Vec<String>,
}

impl Writer {
    fn push_line(&mut self, text: &str, origin: Option<Origin>) {
        self.text.push_str(text);
        self.text.push('\n');
        self.lines.push(origin);
    }

    /// How many lines are written so far (a mark for [`Self::close_if_empty`]).
    pub fn mark(&self) -> usize {
        self.lines.len()
    }

    /// A block opened at line `mark` that got nothing under it becomes an empty map
    /// (`key: {}`), so the text stays a valid manifest.
    pub fn close_if_empty(&mut self, mark: usize) {
        if self.lines.len() == mark + 1 && self.text.ends_with(":\n") {
            self.text.pop();
            self.text.push_str(" {}\n");
        }
    }

    pub fn comment(&mut self, depth: usize, text: &str) {
        for l in text.lines() {
            let line = format!("{}# {l}", "  ".repeat(depth));
            self.push_line(line.trim_end(), None);
        }
    }

    fn record(&mut self, depth: usize, key: &str, origin: Option<Origin>) {
        self.stack.truncate(depth);
        self.stack.push(key.to_owned());
        if let Some(o) = origin {
            self.paths.push((self.stack.join("."), o));
        }
    }

    /// `key:` opening a block mapping at `depth`.
    pub fn open(&mut self, depth: usize, key: &str, origin: Option<Origin>) {
        self.record(depth, key, origin);
        let line = format!("{}{}:", "  ".repeat(depth), key_text(key));
        self.push_line(&line, origin);
    }

    /// `key: value` with the value already rendered as YAML.
    pub fn kv(&mut self, depth: usize, key: &str, value: &str, origin: Option<Origin>) {
        self.record(depth, key, origin);
        let line = format!("{}{}: {value}", "  ".repeat(depth), key_text(key));
        self.push_line(&line, origin);
    }
}
