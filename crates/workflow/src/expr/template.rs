//! Strings with `${{ }}` parts, and `if:` conditions.

use serde_json::Value;

use super::value::{to_string, truthy};
use super::{EvalContext, Expr, ExprError, Status, parse};

/// A part of a [`Template`].
#[derive(Debug, Clone, PartialEq)]
pub enum TemplatePart {
    Literal(String),
    Expr(Expr),
}

/// A string value of the workflow, with any number of `${{ expression }}` parts.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Template {
    pub parts: Vec<TemplatePart>,
}

impl Template {
    /// Splits `text` into literal and expression parts and parses the expressions.
    pub fn parse(text: &str) -> Result<Template, ExprError> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("${{") {
            if start > 0 {
                parts.push(TemplatePart::Literal(rest[..start].to_owned()));
            }
            let body = &rest[start + 3..];
            let end =
                find_close(body).ok_or_else(|| ExprError::new("`${{` without its closing `}}`"))?;
            parts.push(TemplatePart::Expr(
                parse(&body[..end]).map_err(|e| named(&body[..end], e))?,
            ));
            rest = &body[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(TemplatePart::Literal(rest.to_owned()));
        }
        Ok(Template { parts })
    }

    /// A template without expressions.
    pub fn literal(text: &str) -> Template {
        Template {
            parts: vec![TemplatePart::Literal(text.to_owned())],
        }
    }

    /// The text when there is no expression in it.
    pub fn as_literal(&self) -> Option<String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                TemplatePart::Literal(s) => out.push_str(s),
                TemplatePart::Expr(_) => return None,
            }
        }
        Some(out)
    }

    /// Whether any expression part reads the context `name` (lowercase).
    pub fn reads_context(&self, name: &str) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, TemplatePart::Expr(e) if e.reads_context(name)))
    }

    /// The interpolated string.
    pub fn eval(&self, cx: &EvalContext) -> Result<String, ExprError> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                TemplatePart::Literal(s) => out.push_str(s),
                TemplatePart::Expr(e) => out.push_str(&to_string(&e.eval(cx)?)),
            }
        }
        Ok(out)
    }

    /// The value: a template that is one `${{ }}` and nothing else keeps its type (a list
    /// from `fromJSON`, a number); any other is a string.
    pub fn eval_value(&self, cx: &EvalContext) -> Result<Value, ExprError> {
        match self.parts.as_slice() {
            [TemplatePart::Expr(e)] => e.eval(cx),
            _ => self.eval(cx).map(Value::String),
        }
    }
}

/// The error with the expression's text in front (shortened when long).
fn named(text: &str, e: ExprError) -> ExprError {
    let text = text.trim();
    let shown: String = if text.chars().count() > 60 {
        format!("{}…", text.chars().take(60).collect::<String>())
    } else {
        text.to_owned()
    };
    ExprError::new(format!("invalid expression `{shown}`: {}", e.message))
}

/// The offset of the `}}` closing an expression, skipping `}}` inside string literals.
fn find_close(body: &str) -> Option<usize> {
    let bytes = body.as_bytes();
    let mut in_string = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' => in_string = !in_string,
            b'}' if !in_string && bytes.get(i + 1) == Some(&b'}') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// An `if:` condition. Written with or without `${{ }}`; without a status function it means
/// `success() && (condition)`, and a missing `if:` means `success()`, as on GitHub.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub expr: Expr,
    /// The text as written (for logs), `success()` when absent.
    pub source: String,
    uses_status: bool,
}

impl Default for Condition {
    fn default() -> Self {
        Condition::parse("success()").expect("success() parses")
    }
}

impl Condition {
    pub fn parse(text: &str) -> Result<Condition, ExprError> {
        let trimmed = text.trim();
        let inner = match trimmed
            .strip_prefix("${{")
            .and_then(|r| r.strip_suffix("}}"))
        {
            Some(inner) if find_close(inner).is_none() => inner,
            _ if trimmed.contains("${{") => {
                return Err(ExprError::new(
                    "write the condition as one expression: `${{ a && b }}` or `a && b`, not text around `${{ }}`",
                ));
            }
            _ => trimmed,
        };
        let expr = parse(inner).map_err(|e| named(inner, e))?;
        Ok(Condition {
            uses_status: expr.uses_status(),
            expr,
            source: trimmed.to_owned(),
        })
    }

    /// Whether the condition holds.
    pub fn eval(&self, cx: &EvalContext) -> Result<bool, ExprError> {
        if !self.uses_status && cx.status != Status::Success {
            return Ok(false);
        }
        Ok(truthy(&self.expr.eval(cx)?))
    }

    /// Whether it calls a status function (then it may run after a failure).
    pub fn uses_status(&self) -> bool {
        self.uses_status
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn templates_interpolate_several_expressions() {
        let t = Template::parse("${{ env.A }}/${{ env.B }}:${{ '}}' }}!").unwrap();
        let cx = EvalContext::new().with("env", json!({"A": "reg", "B": 3}));
        assert_eq!(t.eval(&cx).unwrap(), "reg/3:}}!");
        assert_eq!(
            Template::parse("plain").unwrap().as_literal().unwrap(),
            "plain"
        );
        assert!(Template::parse("${{ env.A ").is_err());
        assert!(Template::parse("${{ env.A = 1 }}").is_err());
        let whole = Template::parse("${{ fromJSON('[1]') }}").unwrap();
        assert_eq!(whole.eval_value(&cx).unwrap(), json!([1.0]));
    }

    #[test]
    fn conditions_default_to_success() {
        let ok = EvalContext::new().with("github", json!({"ref": "refs/heads/main"}));
        let failed = ok.clone().with_status(Status::Failure);
        let c = Condition::parse("github.ref == 'refs/heads/main'").unwrap();
        assert!(c.eval(&ok).unwrap());
        assert!(!c.eval(&failed).unwrap());
        let c = Condition::parse("${{ failure() && github.ref == 'refs/heads/main' }}").unwrap();
        assert!(!c.eval(&ok).unwrap());
        assert!(c.eval(&failed).unwrap());
        assert!(Condition::default().eval(&ok).unwrap());
        assert!(!Condition::default().eval(&failed).unwrap());
        assert!(Condition::parse("${{ a }} == b").is_err());
    }
}
