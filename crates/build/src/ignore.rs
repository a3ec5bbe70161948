//! `.dockerignore` patterns with the Docker CLI's semantics.
//!
//! This module owns reading a `.dockerignore` file and deciding whether a context-relative
//! path is excluded. It follows moby's `patternmatcher` and `ignorefile` packages:
//!
//! - one pattern a line; a line starting with `#` is a comment, blank lines are skipped,
//!   surrounding white space is trimmed;
//! - patterns are cleaned like Go's `filepath.Clean` and a leading `/` is dropped, so every
//!   pattern is relative to the context root;
//! - `*` matches any run of characters but `/`, `?` one character but `/`, `[...]` a class
//!   (`[^...]` negated, ranges `a-z`), `\` escapes the next character; `**` matches any
//!   number of directories (`**/` may match none), and a trailing `**` matches everything;
//! - a `!` pattern is an exception; the last pattern that matches a path decides;
//! - a pattern matching a directory matches everything below it.

use std::fmt;

/// One compiled pattern.
#[derive(Debug, Clone)]
struct Pattern {
    /// The cleaned pattern text, without its `!`.
    text: String,
    exception: bool,
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Char(char),
    /// `*`: any run of characters except `/`.
    Star,
    /// `?`: one character except `/`.
    Any,
    /// `**/` or `**` followed by more pattern: empty, or anything ending in `/`.
    AnyDirs,
    /// `**` at the end: anything at all.
    Rest,
    /// `[...]`.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// A `.dockerignore` pattern that cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError {
    pub pattern: String,
    pub reason: &'static str,
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pattern {:?}: {}", self.pattern, self.reason)
    }
}

impl std::error::Error for PatternError {}

/// The patterns of one `.dockerignore`, in file order.
#[derive(Debug, Clone, Default)]
pub struct IgnoreRules {
    patterns: Vec<Pattern>,
}

impl IgnoreRules {
    /// Parses the text of a `.dockerignore` file.
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        let mut rules = IgnoreRules::default();
        for (i, line) in text.lines().enumerate() {
            let line = if i == 0 {
                line.trim_start_matches('\u{feff}')
            } else {
                line
            };
            if line.starts_with('#') {
                continue;
            }
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            rules.push(line)?;
        }
        Ok(rules)
    }

    /// Appends one pattern line (`!` prefix for an exception) after the existing ones.
    pub fn push(&mut self, line: &str) -> Result<(), PatternError> {
        let (exception, body) = match line.strip_prefix('!') {
            Some(rest) => (true, rest.trim()),
            None => (false, line),
        };
        if body.is_empty() {
            return Err(PatternError {
                pattern: line.to_owned(),
                reason: "illegal exclusion pattern",
            });
        }
        let mut text = clean(body);
        if text.len() > 1 && text.starts_with('/') {
            text.remove(0);
        }
        let tokens = compile(&text).map_err(|reason| PatternError {
            pattern: line.to_owned(),
            reason,
        })?;
        self.patterns.push(Pattern {
            text,
            exception,
            tokens,
        });
        Ok(())
    }

    /// True when there are no patterns.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `path` (relative to the context root, `/`-separated) is excluded: the last
    /// pattern matching it or one of its parent directories decides.
    pub fn is_excluded(&self, path: &str) -> bool {
        let parents: Vec<&str> = parent_prefixes(path).collect();
        let mut excluded = false;
        for p in &self.patterns {
            // An exclusion cannot change an excluded path, an exception an included one.
            if p.exception != excluded {
                continue;
            }
            let hit = p.matches(path) || parents.iter().any(|d| p.matches(d));
            if hit {
                excluded = !p.exception;
            }
        }
        excluded
    }

    /// Whether an excluded directory must still be walked because an exception pattern
    /// names something inside it (Docker's rule: the exception's text starts with `dir/`).
    pub fn may_include_below(&self, dir: &str) -> bool {
        let prefix = format!("{dir}/");
        self.patterns
            .iter()
            .any(|p| p.exception && format!("{}/", p.text).starts_with(&prefix))
    }
}

/// `a`, `a/b` for `a/b/c` (the path's parent directories, outermost first).
fn parent_prefixes(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}

impl Pattern {
    fn matches(&self, path: &str) -> bool {
        let chars: Vec<char> = path.chars().collect();
        match_tokens(&self.tokens, &chars)
    }
}

fn match_tokens(tokens: &[Token], s: &[char]) -> bool {
    let Some((first, rest)) = tokens.split_first() else {
        return s.is_empty();
    };
    match first {
        Token::Char(c) => s.first() == Some(c) && match_tokens(rest, &s[1..]),
        Token::Any => s.first().is_some_and(|c| *c != '/') && match_tokens(rest, &s[1..]),
        Token::Class { negated, ranges } => s.first().is_some_and(|c| {
            ranges.iter().any(|(lo, hi)| lo <= c && c <= hi) != *negated
                && match_tokens(rest, &s[1..])
        }),
        Token::Star => {
            let run = s.iter().take_while(|c| **c != '/').count();
            (0..=run).any(|n| match_tokens(rest, &s[n..]))
        }
        Token::Rest => true,
        Token::AnyDirs => {
            match_tokens(rest, s)
                || s.iter()
                    .enumerate()
                    .filter(|(_, c)| **c == '/')
                    .any(|(i, _)| match_tokens(rest, &s[i + 1..]))
        }
    }
}

/// Compiles a cleaned pattern the way moby's `patternmatcher` builds its regular expression.
fn compile(text: &str) -> Result<Vec<Token>, &'static str> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                out.push(if i == chars.len() {
                    Token::Rest
                } else {
                    Token::AnyDirs
                });
            }
            '*' => out.push(Token::Star),
            '?' => out.push(Token::Any),
            '\\' => {
                let Some(&next) = chars.get(i) else {
                    return Err("ends with an escape character");
                };
                i += 1;
                out.push(Token::Char(next));
            }
            '[' => {
                let (token, next) = compile_class(&chars, i)?;
                out.push(token);
                i = next;
            }
            c => out.push(Token::Char(c)),
        }
    }
    Ok(out)
}

/// Compiles a class starting just after `[`; returns the token and the index after `]`.
fn compile_class(chars: &[char], mut i: usize) -> Result<(Token, usize), &'static str> {
    const UNCLOSED: &str = "unterminated character class";
    let negated = chars.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let Some(&c) = chars.get(i) else {
            return Err(UNCLOSED);
        };
        if c == ']' && !first {
            return Ok((Token::Class { negated, ranges }, i + 1));
        }
        first = false;
        let lo = if c == '\\' {
            i += 1;
            *chars.get(i).ok_or(UNCLOSED)?
        } else {
            c
        };
        i += 1;
        if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|c| *c != ']') {
            let mut hi = chars[i + 1];
            i += 2;
            if hi == '\\' {
                hi = *chars.get(i).ok_or(UNCLOSED)?;
                i += 1;
            }
            if hi < lo {
                return Err("character class range out of order");
            }
            ranges.push((lo, hi));
        } else {
            ranges.push((lo, lo));
        }
    }
}

/// Go's `filepath.Clean` for `/`-separated paths.
fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> IgnoreRules {
        IgnoreRules::parse(text).unwrap()
    }

    #[test]
    fn pattern_table() {
        // (patterns, path, excluded)
        let table: &[(&str, &str, bool)] = &[
            ("*.log", "app.log", true),
            ("*.log", "logs/app.log", false),
            ("*/*.log", "logs/app.log", true),
            ("**/*.log", "app.log", true),
            ("**/*.log", "a/b/c/app.log", true),
            ("**/*.log", "a/b/c/app.txt", false),
            ("a/**/z", "a/z", true),
            ("a/**/z", "a/b/c/z", true),
            ("a/**/z", "b/a/z", false),
            ("a/**", "a/b/c", true),
            ("a/**", "ab", false),
            ("**", "anything/at/all", true),
            ("file?.txt", "file1.txt", true),
            ("file?.txt", "file10.txt", false),
            ("file?", "file/", false),
            ("[abc].txt", "b.txt", true),
            ("[abc].txt", "d.txt", false),
            ("[a-c]x", "bx", true),
            ("[^a-c]x", "bx", false),
            ("[^a-c]x", "dx", true),
            ("\\*", "*", true),
            ("\\*", "a", false),
            // A leading slash and ./ are ignored; trailing slashes are cleaned.
            ("/secret", "secret", true),
            ("./secret", "secret", true),
            ("build/", "build", true),
            ("a//b/../c", "a/c", true),
            // A directory pattern excludes everything below it.
            ("node_modules", "node_modules/x/y.js", true),
            ("node_modules", "src/node_modules/y.js", false),
            ("**/node_modules", "src/node_modules/y.js", true),
            // Dots are literal.
            ("a.b", "axb", false),
            // Comments and blank lines.
            ("# a comment\n\n   \nkeep", "# a comment", false),
            ("  spaced.txt  ", "spaced.txt", true),
            // Exceptions: the last match wins.
            ("*.md\n!README.md", "README.md", false),
            ("*.md\n!README.md", "CHANGES.md", true),
            ("*.md\n!README.md\nREADME*", "README.md", true),
            ("!README.md\n*.md", "README.md", true),
            ("docs\n!docs/keep.txt", "docs/keep.txt", false),
            ("docs\n!docs/keep.txt", "docs/other.txt", true),
            // An exception for a file does not re-include the directory's other files,
            // and an excluded parent still excludes a path no exception names.
            ("**/*.tmp\n!important.tmp", "important.tmp", false),
            ("**/*.tmp\n!important.tmp", "sub/important.tmp", true),
            // An exception matching a parent directory re-includes what is below it.
            ("*\n!src", "src/main.rs", false),
            ("*\n!src", "target/x", true),
        ];
        for (patterns, path, want) in table {
            assert_eq!(
                rules(patterns).is_excluded(path),
                *want,
                "patterns {patterns:?} on {path:?}"
            );
        }
    }

    #[test]
    fn walking_into_excluded_directories() {
        let r = rules("docs\n!docs/keep.txt\nvendor");
        assert!(r.may_include_below("docs"));
        assert!(!r.may_include_below("vendor"));
        assert!(!r.may_include_below("doc"));
        // Only an exception's literal prefix counts, as in Docker.
        assert!(!rules("a\n!**/keep").may_include_below("a"));
    }

    #[test]
    fn bad_patterns_are_errors() {
        assert!(IgnoreRules::parse("[abc").is_err());
        assert!(IgnoreRules::parse("!").is_err());
        assert!(IgnoreRules::parse("trailing\\").is_err());
        assert!(IgnoreRules::parse("[z-a]").is_err());
        let e = IgnoreRules::parse("ok\n[x").unwrap_err();
        assert_eq!(e.pattern, "[x");
    }

    #[test]
    fn clean_follows_go() {
        assert_eq!(clean("a/./b/"), "a/b");
        assert_eq!(clean("../a"), "../a");
        assert_eq!(clean("a/../.."), "..");
        assert_eq!(clean("/../a"), "/a");
        assert_eq!(clean("./"), ".");
    }
}
