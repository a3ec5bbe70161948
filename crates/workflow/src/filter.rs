//! Which pushes start a workflow: GitHub's filter patterns and `on.push` rules.
//!
//! The matcher is hand-written because the semantics are GitHub's own ("Filter pattern cheat
//! sheet"), not a shell glob's or a regex's: `*` matches any characters except `/`, `**`
//! matches any characters (and `**/` zero or more whole directories), `?` makes the
//! character before it optional, `+` repeats it one or more times, `[...]` is one character
//! of a set or range, `\` escapes, and a leading `!` negates a pattern. In a list the last
//! pattern that matches decides, so order matters (`['v*', '!v*-rc']`).
//!
//! Rules of `on.push`: a `branches` filter alone does not fire on tags and a `tags` filter
//! alone does not fire on branches; without either both fire. Paths filters are not applied
//! to tag pushes, and when the changed files are unknown the paths filters pass.

use crate::error::Place;
use crate::model::Workflow;

#[derive(Debug, Clone, PartialEq)]
enum Atom {
    Char(char),
    /// `[...]`: inclusive ranges (a single character is a range of one).
    Class(Vec<(char, char)>),
    /// `*`: any run of characters without `/`.
    Star,
    /// `**`: any run of characters.
    DoubleStar,
    /// `**/`: empty, or any run ending with `/`.
    Dirs,
}

#[derive(Debug, Clone, PartialEq)]
struct Tok {
    atom: Atom,
    min: usize,
    max: usize,
}

/// One filter pattern.
#[derive(Debug, Clone, PartialEq)]
pub struct Pattern {
    /// As written (with its `!`).
    pub text: String,
    pub negated: bool,
    toks: Vec<Tok>,
}

impl Pattern {
    pub fn parse(text: &str) -> Pattern {
        let (negated, body) = match text.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        Pattern {
            text: text.to_owned(),
            negated,
            toks: compile(body),
        }
    }

    /// Whether `name` matches the pattern (ignoring its `!`).
    pub fn matches(&self, name: &str) -> bool {
        let s: Vec<char> = name.chars().collect();
        let mut failed = vec![false; (self.toks.len() + 1) * (s.len() + 1)];
        match_at(&self.toks, &s, 0, 0, &mut failed)
    }
}

fn compile(body: &str) -> Vec<Tok> {
    let chars: Vec<char> = body.chars().collect();
    let mut toks: Vec<Tok> = Vec::new();
    let one = |atom| Tok {
        atom,
        min: 1,
        max: 1,
    };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let quantifiable = toks
            .last()
            .is_some_and(|t| matches!(t.atom, Atom::Char(_) | Atom::Class(_)) && t.max == 1);
        match c {
            '*' if chars.get(i + 1) == Some(&'*') => {
                if chars.get(i + 2) == Some(&'/') {
                    toks.push(one(Atom::Dirs));
                    i += 3;
                } else {
                    toks.push(one(Atom::DoubleStar));
                    i += 2;
                }
                continue;
            }
            '*' => toks.push(one(Atom::Star)),
            '?' if quantifiable => toks.last_mut().expect("quantifiable").min = 0,
            '+' if quantifiable => toks.last_mut().expect("quantifiable").max = usize::MAX,
            '\\' if i + 1 < chars.len() => {
                i += 1;
                toks.push(one(Atom::Char(chars[i])));
            }
            '[' => match chars[i + 1..].iter().position(|&c| c == ']') {
                Some(len) if len > 0 => {
                    toks.push(one(Atom::Class(class(&chars[i + 1..i + 1 + len]))));
                    i += len + 2;
                    continue;
                }
                _ => toks.push(one(Atom::Char('['))),
            },
            c => toks.push(one(Atom::Char(c))),
        }
        i += 1;
    }
    toks
}

fn class(set: &[char]) -> Vec<(char, char)> {
    let mut ranges = Vec::new();
    let mut i = 0;
    while i < set.len() {
        if i + 2 < set.len() && set[i + 1] == '-' {
            ranges.push((set[i], set[i + 2]));
            i += 3;
        } else {
            ranges.push((set[i], set[i]));
            i += 1;
        }
    }
    ranges
}

fn match_at(toks: &[Tok], s: &[char], ti: usize, si: usize, failed: &mut [bool]) -> bool {
    let key = ti * (s.len() + 1) + si;
    if failed[key] {
        return false;
    }
    let ok = match toks.get(ti) {
        None => si == s.len(),
        Some(tok) => match &tok.atom {
            Atom::Star => {
                let end = s[si..]
                    .iter()
                    .position(|&c| c == '/')
                    .map_or(s.len(), |p| si + p);
                (si..=end).any(|k| match_at(toks, s, ti + 1, k, failed))
            }
            Atom::DoubleStar => (si..=s.len()).any(|k| match_at(toks, s, ti + 1, k, failed)),
            Atom::Dirs => (si..=s.len())
                .filter(|&k| k == si || s[k - 1] == '/')
                .any(|k| match_at(toks, s, ti + 1, k, failed)),
            atom => {
                let fits = |c: char| match atom {
                    Atom::Char(x) => *x == c,
                    Atom::Class(ranges) => ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi),
                    _ => false,
                };
                let count = s[si..]
                    .iter()
                    .take(tok.max)
                    .take_while(|&&c| fits(c))
                    .count();
                (tok.min..=count)
                    .rev()
                    .any(|n| match_at(toks, s, ti + 1, si + n, failed))
            }
        },
    };
    if !ok {
        failed[key] = true;
    }
    ok
}

/// A list of patterns from `branches`/`tags`/`paths` (or their `-ignore` forms).
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub patterns: Vec<Pattern>,
    /// Written as `...-ignore`: the patterns say what does not start a run.
    pub ignore: bool,
    pub place: Place,
}

impl Filter {
    pub fn new(patterns: &[&str], ignore: bool) -> Filter {
        Filter {
            patterns: patterns.iter().map(|p| Pattern::parse(p)).collect(),
            ignore,
            place: Place::UNKNOWN,
        }
    }

    /// Whether `name` passes: the last matching pattern decides whether it is listed (a
    /// negated one unlists it); a listed name passes an include filter and fails an ignore
    /// filter.
    pub fn selects(&self, name: &str) -> bool {
        let mut listed = false;
        for p in &self.patterns {
            if p.matches(name) {
                listed = !p.negated;
            }
        }
        listed != self.ignore
    }
}

/// A push: the ref pushed and, when known, the files the push changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushEvent {
    /// `refs/heads/NAME` or `refs/tags/NAME`.
    pub ref_: String,
    /// `None` when unknown (a new branch without a base, too many files): paths filters pass.
    pub changed_paths: Option<Vec<String>>,
}

/// Whether `event` starts `workflow` (through `on.push` and its filters).
pub fn matches(workflow: &Workflow, event: &PushEvent) -> bool {
    let Some(push) = &workflow.on.push else {
        return false;
    };
    let (name, own, other) = if let Some(b) = event.ref_.strip_prefix("refs/heads/") {
        (b, &push.branches, &push.tags)
    } else if let Some(t) = event.ref_.strip_prefix("refs/tags/") {
        // Paths filters do not apply to tags.
        return match (&push.tags, &push.branches) {
            (Some(f), _) => f.selects(t),
            (None, Some(_)) => false,
            (None, None) => true,
        };
    } else {
        return false;
    };
    let ref_ok = match (own, other) {
        (Some(f), _) => f.selects(name),
        (None, Some(_)) => false,
        (None, None) => true,
    };
    ref_ok
        && match (&push.paths, &event.changed_paths) {
            (Some(f), Some(changed)) => changed.iter().any(|p| f.selects(p)),
            _ => true,
        }
}

/// Whether the workflow can be started by hand (`on.workflow_dispatch`).
pub fn dispatchable(workflow: &Workflow) -> bool {
    workflow.on.workflow_dispatch.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, name: &str) -> bool {
        Pattern::parse(pattern).matches(name)
    }

    #[test]
    fn cheat_sheet() {
        // `*` does not cross `/`; `**` does.
        assert!(m("feature/*", "feature/my-branch"));
        assert!(!m("feature/*", "feature/your/branch"));
        assert!(m("feature/**", "feature/your/branch"));
        assert!(m("*", "main") && !m("*", "a/b"));
        assert!(m("**", "a/b/c"));
        // `?` and `+` quantify the character before them.
        assert!(m("v2?", "v") && m("v2?", "v2") && !m("v2?", "v22"));
        assert!(m("v2+", "v22") && !m("v2+", "v"));
        // Sets and ranges.
        assert!(m("[0-9]+.[0-9]+", "12.3") && !m("[0-9]+", "x"));
        assert!(m("v[12].[0-9]+.[0-9]+", "v1.10.1") && !m("v[12].[0-9]+.[0-9]+", "v3.1.1"));
        assert!(m("releases/**-alpha", "releases/beta/3-alpha"));
        // Paths.
        assert!(m("**/*.js", "app.js") && m("**/*.js", "src/app.js"));
        assert!(m("docs/**", "docs/a/b.md") && !m("docs/**", "src/docs.md"));
        assert!(m("**/migrate-*.sql", "db/migrate-1.sql"));
        assert!(m("*.md", "README.md") && !m("*.md", "docs/x.md"));
        // Escapes and literal specials.
        assert!(m("a\\*b", "a*b") && !m("a\\*b", "axb"));
        assert!(m("*-prod", "v1.4.0-prod") && !m("*-prod", "v1.4.0-staging"));
    }

    #[test]
    fn order_of_negations_matters() {
        let f = Filter::new(&["releases/**", "!releases/**-alpha"], false);
        assert!(f.selects("releases/10"));
        assert!(!f.selects("releases/10-alpha"));
        let f = Filter::new(&["!releases/**-alpha", "releases/**"], false);
        assert!(f.selects("releases/10-alpha"));
        let f = Filter::new(&["sub-project/**", "!sub-project/docs/**"], false);
        assert!(f.selects("sub-project/src/a") && !f.selects("sub-project/docs/a"));
        let ignore = Filter::new(&["docs/**"], true);
        assert!(!ignore.selects("docs/a.md") && ignore.selects("src/a.rs"));
    }

    #[test]
    fn no_exponential_backtracking() {
        let p = Pattern::parse(&"*a".repeat(30));
        assert!(!p.matches(&"a".repeat(200).replace("aa", "ab")));
        let p = Pattern::parse(&"**".repeat(20));
        assert!(p.matches(&"x/".repeat(100)));
    }
}
