//! Lexer and recursive-descent parser of expressions.
//!
//! Precedence, lowest first: `||`, `&&`, `==` `!=`, `<` `<=` `>` `>=`, `!`, then property
//! access (`.name`, `[expr]`, `.*`, `[*]`) and calls. Unknown contexts and functions,
//! wrong argument counts and `hashFiles` (no workspace here) are errors.

use serde_json::Value;

use super::value::parse_number;
use super::{CONTEXTS, CmpOp, Expr, ExprError, Func};

/// Nesting deeper than this is refused (keeps arbitrary input from exhausting the stack).
const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Str(String),
    Ident(String),
    Dot,
    Star,
    LBracket,
    RBracket,
    LParen,
    RParen,
    Comma,
    Not,
    Cmp(CmpOp),
    And,
    Or,
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Num(n) => format!("number {}", super::fmt_number(*n)),
        Tok::Str(s) => format!("string '{s}'"),
        Tok::Ident(s) => format!("`{s}`"),
        Tok::Dot => "`.`".into(),
        Tok::Star => "`*`".into(),
        Tok::LBracket => "`[`".into(),
        Tok::RBracket => "`]`".into(),
        Tok::LParen => "`(`".into(),
        Tok::RParen => "`)`".into(),
        Tok::Comma => "`,`".into(),
        Tok::Not => "`!`".into(),
        Tok::Cmp(_) => "a comparison".into(),
        Tok::And => "`&&`".into(),
        Tok::Or => "`||`".into(),
    }
}

fn lex(src: &str) -> Result<Vec<Tok>, ExprError> {
    let chars: Vec<char> = src.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let (tok, len) = match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '.' if !next.is_some_and(|n| n.is_ascii_digit()) => (Tok::Dot, 1),
            '*' => (Tok::Star, 1),
            '[' => (Tok::LBracket, 1),
            ']' => (Tok::RBracket, 1),
            '(' => (Tok::LParen, 1),
            ')' => (Tok::RParen, 1),
            ',' => (Tok::Comma, 1),
            '!' if next == Some('=') => (Tok::Cmp(CmpOp::Ne), 2),
            '!' => (Tok::Not, 1),
            '=' if next == Some('=') => (Tok::Cmp(CmpOp::Eq), 2),
            '<' if next == Some('=') => (Tok::Cmp(CmpOp::Le), 2),
            '<' => (Tok::Cmp(CmpOp::Lt), 1),
            '>' if next == Some('=') => (Tok::Cmp(CmpOp::Ge), 2),
            '>' => (Tok::Cmp(CmpOp::Gt), 1),
            '&' if next == Some('&') => (Tok::And, 2),
            '|' if next == Some('|') => (Tok::Or, 2),
            '\'' => {
                let mut s = String::new();
                let mut j = i + 1;
                loop {
                    match chars.get(j) {
                        None => {
                            return Err(ExprError::new("unterminated string: add the closing '"));
                        }
                        Some('\'') if chars.get(j + 1) == Some(&'\'') => {
                            s.push('\'');
                            j += 2;
                        }
                        Some('\'') => break,
                        Some(&ch) => {
                            s.push(ch);
                            j += 1;
                        }
                    }
                }
                (Tok::Str(s), j + 1 - i)
            }
            c if c.is_ascii_digit() || c == '.' || c == '-' || c == '+' => {
                let mut j = i + 1;
                while j < chars.len()
                    && (chars[j].is_ascii_alphanumeric()
                        || chars[j] == '.'
                        || (matches!(chars[j], '+' | '-') && matches!(chars[j - 1], 'e' | 'E')))
                {
                    j += 1;
                }
                let text: String = chars[i..j].iter().collect();
                let n = parse_number(&text)
                    .filter(|_| text != "-" && text != "+")
                    .ok_or_else(|| ExprError::new(format!("invalid number `{text}`")))?;
                (Tok::Num(n), j - i)
            }
            c if c.is_alphabetic() || c == '_' => {
                let mut j = i + 1;
                while j < chars.len()
                    && (chars[j].is_alphanumeric() || chars[j] == '_' || chars[j] == '-')
                {
                    j += 1;
                }
                (Tok::Ident(chars[i..j].iter().collect()), j - i)
            }
            other => {
                return Err(ExprError::new(format!(
                    "unexpected character `{other}` in expression"
                )));
            }
        };
        toks.push(tok);
        i += len;
    }
    Ok(toks)
}

/// Parses expression text (what is inside `${{ }}`, or an `if:`).
pub fn parse(src: &str) -> Result<Expr, ExprError> {
    let toks = lex(src)?;
    if toks.is_empty() {
        return Err(ExprError::new("empty expression"));
    }
    let mut p = Parser {
        toks,
        pos: 0,
        depth: 0,
    };
    let e = p.or()?;
    match p.peek() {
        None => Ok(e),
        Some(t) => Err(ExprError::new(format!(
            "unexpected {} after a complete expression",
            describe(t)
        ))),
    }
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn bump(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn eat(&mut self, t: &Tok) -> bool {
        if self.peek() == Some(t) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, t: &Tok) -> Result<(), ExprError> {
        match self.bump() {
            Some(ref got) if got == t => Ok(()),
            Some(got) => Err(ExprError::new(format!(
                "expected {}, found {}",
                describe(t),
                describe(&got)
            ))),
            None => Err(ExprError::new(format!(
                "expected {} at the end of the expression",
                describe(t)
            ))),
        }
    }

    fn enter(&mut self) -> Result<(), ExprError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ExprError::new("expression nested too deeply"));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Expr, ExprError> {
        self.enter()?;
        let mut e = self.and()?;
        while self.eat(&Tok::Or) {
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        self.depth -= 1;
        Ok(e)
    }

    fn and(&mut self) -> Result<Expr, ExprError> {
        let mut e = self.equality()?;
        while self.eat(&Tok::And) {
            e = Expr::And(Box::new(e), Box::new(self.equality()?));
        }
        Ok(e)
    }

    fn equality(&mut self) -> Result<Expr, ExprError> {
        let mut e = self.comparison()?;
        while let Some(Tok::Cmp(op @ (CmpOp::Eq | CmpOp::Ne))) = self.peek().cloned() {
            self.pos += 1;
            e = Expr::Compare(op, Box::new(e), Box::new(self.comparison()?));
        }
        Ok(e)
    }

    fn comparison(&mut self) -> Result<Expr, ExprError> {
        let mut e = self.unary()?;
        while let Some(Tok::Cmp(op @ (CmpOp::Lt | CmpOp::Le | CmpOp::Gt | CmpOp::Ge))) =
            self.peek().cloned()
        {
            self.pos += 1;
            e = Expr::Compare(op, Box::new(e), Box::new(self.unary()?));
        }
        Ok(e)
    }

    fn unary(&mut self) -> Result<Expr, ExprError> {
        if self.eat(&Tok::Not) {
            self.enter()?;
            let e = Expr::Not(Box::new(self.unary()?));
            self.depth -= 1;
            return Ok(e);
        }
        self.postfix()
    }

    fn postfix(&mut self) -> Result<Expr, ExprError> {
        let mut e = self.primary()?;
        loop {
            if self.eat(&Tok::Dot) {
                match self.bump() {
                    Some(Tok::Ident(name)) => e = Expr::Property(Box::new(e), name),
                    Some(Tok::Star) => e = Expr::Star(Box::new(e)),
                    Some(t) => {
                        return Err(ExprError::new(format!(
                            "expected a property name after `.`, found {}",
                            describe(&t)
                        )));
                    }
                    None => return Err(ExprError::new("expected a property name after `.`")),
                }
            } else if self.eat(&Tok::LBracket) {
                if self.eat(&Tok::Star) {
                    e = Expr::Star(Box::new(e));
                } else {
                    let index = self.or()?;
                    e = Expr::Index(Box::new(e), Box::new(index));
                }
                self.expect(&Tok::RBracket)?;
            } else {
                return Ok(e);
            }
        }
    }

    fn primary(&mut self) -> Result<Expr, ExprError> {
        match self.bump() {
            Some(Tok::Num(n)) => Ok(Expr::Literal(number(n))),
            Some(Tok::Str(s)) => Ok(Expr::Literal(Value::String(s))),
            Some(Tok::LParen) => {
                let e = self.or()?;
                self.expect(&Tok::RParen)?;
                Ok(e)
            }
            Some(Tok::Ident(name)) => {
                if self.peek() == Some(&Tok::LParen) {
                    self.pos += 1;
                    return self.call(&name);
                }
                match name.as_str() {
                    "true" => return Ok(Expr::Literal(Value::Bool(true))),
                    "false" => return Ok(Expr::Literal(Value::Bool(false))),
                    "null" => return Ok(Expr::Literal(Value::Null)),
                    _ => {}
                }
                let lower = name.to_ascii_lowercase();
                if CONTEXTS.contains(&lower.as_str()) {
                    Ok(Expr::Context(lower))
                } else {
                    Err(ExprError::new(format!(
                        "unknown context `{name}`; available: {}",
                        CONTEXTS.join(", ")
                    )))
                }
            }
            Some(t) => Err(ExprError::new(format!("unexpected {}", describe(&t)))),
            None => Err(ExprError::new("unexpected end of expression")),
        }
    }

    fn call(&mut self, name: &str) -> Result<Expr, ExprError> {
        if name.eq_ignore_ascii_case("hashFiles") {
            return Err(ExprError::new(
                "hashFiles() is not supported: Slipway workflows have no cache action to key; remove it",
            ));
        }
        let func = Func::by_name(name).ok_or_else(|| {
            ExprError::new(format!(
                "unknown function `{name}`; available: success, failure, always, cancelled, \
                 contains, startsWith, endsWith, format, join, toJSON, fromJSON"
            ))
        })?;
        let mut args = Vec::new();
        if !self.eat(&Tok::RParen) {
            loop {
                args.push(self.or()?);
                if self.eat(&Tok::RParen) {
                    break;
                }
                self.expect(&Tok::Comma)?;
            }
        }
        let (lo, hi) = func.arity();
        if args.len() < lo || args.len() > hi {
            let want = if lo == hi {
                format!("{lo}")
            } else if hi == usize::MAX {
                format!("at least {lo}")
            } else {
                format!("{lo} to {hi}")
            };
            return Err(ExprError::new(format!(
                "{name}() takes {want} argument(s), got {}",
                args.len()
            )));
        }
        Ok(Expr::Call(func, args))
    }
}

pub(crate) fn number(n: f64) -> Value {
    serde_json::Number::from_f64(n).map_or_else(
        // JSON has no NaN or infinities: keep them as strings, which coerce back to them.
        || Value::String(super::fmt_number(n)),
        Value::Number,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_grammar() {
        assert!(parse("github.ref == 'refs/heads/main' && !cancelled()").is_ok());
        assert!(parse("steps.login-ecr.outputs.registry").is_ok());
        assert!(parse("needs.*.result").is_ok());
        assert!(parse("fromJSON(needs.a.outputs.m)[0]['x'].y").is_ok());
        assert!(parse("(1 < 2) || -1.5e3 >= 0x10").is_ok());
        assert!(parse("format('{0}''s', 'it')").is_ok());
        assert!(matches!(
            parse("success()").unwrap(),
            Expr::Call(Func::Success, _)
        ));
    }

    #[test]
    fn reports_errors() {
        let err = |s: &str| parse(s).unwrap_err().message;
        assert!(err("github.ref ==").contains("unexpected end"));
        assert!(err("foo.bar").contains("unknown context `foo`"));
        assert!(err("nope()").contains("unknown function `nope`"));
        assert!(err("hashFiles('**/x')").contains("hashFiles"));
        assert!(err("contains('a')").contains("takes 2"));
        assert!(err("'abc").contains("unterminated"));
        assert!(err("a = b").contains("unexpected character `=`"));
        assert!(err("1 2").contains("after a complete expression"));
        assert!(err("").contains("empty"));
        assert!(err(&"(".repeat(500)).contains("too deeply"));
        assert!(err(&"!".repeat(500)).contains("too deeply"));
    }
}
