//! Evaluation of an [`Expr`] over contexts and a status.

use std::cmp::Ordering;

use serde_json::{Map, Value};

use super::parse::number;
use super::value::{loose_cmp, loose_eq, to_string, truthy};
use super::{CmpOp, Expr, ExprError, Func};

/// What the status functions answer; the caller (the runner or [`crate::plan`]) decides it:
/// for a job, from the results of the jobs it needs; for a step, from the steps before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Status {
    /// Everything before succeeded: `success()` is true.
    #[default]
    Success,
    /// Something before failed: `failure()` is true.
    Failure,
    /// The run was cancelled: `cancelled()` is true.
    Cancelled,
    /// Something before was skipped (and nothing failed): only `always()` is true.
    Skipped,
}

/// The contexts (`github`, `env`, `steps`, ...) by lowercase name, and the status.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EvalContext {
    pub contexts: Map<String, Value>,
    pub status: Status,
}

impl EvalContext {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a context (name in lowercase: `github`, `env`, `secrets`, ...).
    pub fn with(mut self, name: &str, value: Value) -> Self {
        self.contexts.insert(name.to_owned(), value);
        self
    }

    pub fn with_status(mut self, status: Status) -> Self {
        self.status = status;
        self
    }
}

/// An intermediate result: one value, or the elements a `*` filter selected.
enum Eval {
    One(Value),
    Many(Vec<Value>),
}

impl Eval {
    fn into_value(self) -> Value {
        match self {
            Eval::One(v) => v,
            Eval::Many(vs) => Value::Array(vs),
        }
    }
}

/// Looks a property up: exact name first, then case-insensitively (GitHub's contexts are).
fn property(v: &Value, name: &str) -> Value {
    match v {
        Value::Object(m) => m
            .get(name)
            .or_else(|| {
                m.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v)
            })
            .cloned()
            .unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

fn index(v: &Value, key: &Value) -> Value {
    match (v, key) {
        (Value::Array(items), _) => {
            let i = super::to_number(key);
            if i.fract() == 0.0 && i >= 0.0 && (i as usize) < items.len() {
                items[i as usize].clone()
            } else {
                Value::Null
            }
        }
        (Value::Object(_), _) => property(v, &to_string(key)),
        _ => Value::Null,
    }
}

fn children(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(items) => items.clone(),
        Value::Object(m) => m.values().cloned().collect(),
        _ => Vec::new(),
    }
}

impl Expr {
    /// Evaluates the expression.
    pub fn eval(&self, cx: &EvalContext) -> Result<Value, ExprError> {
        Ok(self.eval_inner(cx)?.into_value())
    }

    fn eval_inner(&self, cx: &EvalContext) -> Result<Eval, ExprError> {
        let one = match self {
            Expr::Literal(v) => v.clone(),
            Expr::Context(name) => cx.contexts.get(name).cloned().unwrap_or(Value::Null),
            Expr::Property(target, name) => match target.eval_inner(cx)? {
                Eval::One(v) => property(&v, name),
                Eval::Many(vs) => {
                    return Ok(Eval::Many(
                        vs.iter()
                            .map(|v| property(v, name))
                            .filter(|v| !v.is_null())
                            .collect(),
                    ));
                }
            },
            Expr::Index(target, key) => {
                let key = key.eval(cx)?;
                match target.eval_inner(cx)? {
                    Eval::One(v) => index(&v, &key),
                    Eval::Many(vs) => {
                        return Ok(Eval::Many(
                            vs.iter()
                                .map(|v| index(v, &key))
                                .filter(|v| !v.is_null())
                                .collect(),
                        ));
                    }
                }
            }
            Expr::Star(target) => {
                return Ok(Eval::Many(match target.eval_inner(cx)? {
                    Eval::One(v) => children(&v),
                    Eval::Many(vs) => vs.iter().flat_map(children).collect(),
                }));
            }
            Expr::Not(e) => Value::Bool(!truthy(&e.eval(cx)?)),
            Expr::Compare(op, a, b) => {
                let (a, b) = (a.eval(cx)?, b.eval(cx)?);
                let ord = loose_cmp(&a, &b);
                Value::Bool(match op {
                    CmpOp::Eq => loose_eq(&a, &b),
                    CmpOp::Ne => !loose_eq(&a, &b),
                    CmpOp::Lt => ord == Some(Ordering::Less),
                    CmpOp::Le => matches!(ord, Some(Ordering::Less | Ordering::Equal)),
                    CmpOp::Gt => ord == Some(Ordering::Greater),
                    CmpOp::Ge => matches!(ord, Some(Ordering::Greater | Ordering::Equal)),
                })
            }
            Expr::And(a, b) => {
                let a = a.eval(cx)?;
                if truthy(&a) { b.eval(cx)? } else { a }
            }
            Expr::Or(a, b) => {
                let a = a.eval(cx)?;
                if truthy(&a) { a } else { b.eval(cx)? }
            }
            Expr::Call(f, args) => call(*f, args, cx)?,
        };
        Ok(Eval::One(one))
    }
}

fn call(f: Func, args: &[Expr], cx: &EvalContext) -> Result<Value, ExprError> {
    let status = cx.status;
    let b = |x: bool| Ok(Value::Bool(x));
    match f {
        Func::Success => return b(status == super::Status::Success),
        Func::Failure => return b(status == super::Status::Failure),
        Func::Cancelled => return b(status == super::Status::Cancelled),
        Func::Always => return b(true),
        _ => {}
    }
    let vals = args
        .iter()
        .map(|a| a.eval(cx))
        .collect::<Result<Vec<_>, _>>()?;
    let lower = |v: &Value| to_string(v).to_lowercase();
    match f {
        Func::Contains => match &vals[0] {
            Value::Array(items) => b(items.iter().any(|i| loose_eq(i, &vals[1]))),
            v => b(lower(v).contains(&lower(&vals[1]))),
        },
        Func::StartsWith => b(lower(&vals[0]).starts_with(&lower(&vals[1]))),
        Func::EndsWith => b(lower(&vals[0]).ends_with(&lower(&vals[1]))),
        Func::Format => format(&to_string(&vals[0]), &vals[1..]).map(Value::String),
        Func::Join => {
            let sep = vals.get(1).map_or_else(|| ",".to_owned(), to_string);
            Ok(Value::String(match &vals[0] {
                Value::Array(items) => items.iter().map(to_string).collect::<Vec<_>>().join(&sep),
                v => to_string(v),
            }))
        }
        Func::ToJson => serde_json::to_string_pretty(&integral(&vals[0]))
            .map(Value::String)
            .map_err(|e| ExprError::new(format!("toJSON: {e}"))),
        Func::FromJson => {
            let text = to_string(&vals[0]);
            let v: Value = serde_json::from_str(text.trim()).map_err(|e| {
                ExprError::new(format!("fromJSON: the argument is not valid JSON ({e})"))
            })?;
            Ok(normalize_numbers(v))
        }
        Func::Success | Func::Failure | Func::Cancelled | Func::Always => unreachable!(),
    }
}

/// JSON integers as the floating-point numbers every other value here is.
fn normalize_numbers(v: Value) -> Value {
    match v {
        Value::Number(n) => number(n.as_f64().unwrap_or(f64::NAN)),
        Value::Array(items) => Value::Array(items.into_iter().map(normalize_numbers).collect()),
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (k, normalize_numbers(v)))
                .collect(),
        ),
        other => other,
    }
}

/// Integral numbers as JSON integers, so `toJSON` prints `1` as GitHub does, not `1.0`.
fn integral(v: &Value) -> Value {
    match v {
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => Value::from(f as i64),
            _ => v.clone(),
        },
        Value::Array(items) => Value::Array(items.iter().map(integral).collect()),
        Value::Object(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), integral(v))).collect())
        }
        other => other.clone(),
    }
}

/// `format('{0} and {1}', a, b)`; `{{` and `}}` are literal braces.
fn format(fmt: &str, args: &[Value]) -> Result<String, ExprError> {
    let bad = |why: &str| ExprError::new(format!("format('{fmt}'): {why}"));
    let mut out = String::new();
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                out.push('}');
            }
            '{' => {
                let mut digits = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(d) if d.is_ascii_digit() => digits.push(d),
                        _ => return Err(bad("`{` must be followed by an argument index and `}`")),
                    }
                }
                let i: usize = digits.parse().map_err(|_| bad("empty `{}`"))?;
                let arg = args
                    .get(i)
                    .ok_or_else(|| bad(&format!("no argument {{{i}}}")))?;
                out.push_str(&to_string(arg));
            }
            '}' => return Err(bad("a lone `}` (write `}}`)")),
            c => out.push(c),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::parse;
    use serde_json::json;

    fn cx() -> EvalContext {
        EvalContext::new()
            .with(
                "github",
                json!({"ref": "refs/heads/main", "event_name": "push", "sha": "abc"}),
            )
            .with(
                "needs",
                json!({"a": {"result": "success", "outputs": {"x": "1"}},
                       "b": {"result": "failure", "outputs": {}}}),
            )
            .with("matrix", json!({"os": "linux", "n": 2.0}))
            .with("env", json!({"LIST": "[1, 2, {\"k\": \"v\"}]"}))
    }

    fn ev(src: &str) -> Value {
        parse(src).unwrap().eval(&cx()).unwrap()
    }

    #[test]
    fn evaluates_like_github() {
        assert_eq!(ev("github.ref == 'REFS/heads/MAIN'"), json!(true));
        assert_eq!(ev("github.REF"), json!("refs/heads/main"));
        assert_eq!(ev("github['event_name']"), json!("push"));
        assert_eq!(ev("github.nope.deeper"), Value::Null);
        assert_eq!(ev("needs.a.outputs.x == 1"), json!(true));
        assert_eq!(ev("needs.*.result"), json!(["success", "failure"]));
        assert_eq!(ev("contains(needs.*.result, 'FAILURE')"), json!(true));
        assert_eq!(ev("matrix.os && 'yes'"), json!("yes"));
        assert_eq!(ev("'' || 'fallback'"), json!("fallback"));
        assert_eq!(ev("null && 'x'"), Value::Null);
        assert_eq!(ev("!matrix.missing"), json!(true));
        assert_eq!(ev("matrix.n > 1 && matrix.n <= 2.0"), json!(true));
        assert_eq!(ev("'abc' < 'ABD'"), json!(true));
        assert_eq!(ev("'abc' == 0"), json!(false));
        assert_eq!(ev("'abc' != 0"), json!(true));
        assert_eq!(ev("startsWith(github.ref, 'refs/heads/')"), json!(true));
        assert_eq!(ev("endsWith('v1.0-PROD', '-prod')"), json!(true));
        assert_eq!(ev("contains('Hello', 'ell')"), json!(true));
        assert_eq!(ev("format('{0}-{1} {{x}}', 'a', 2)"), json!("a-2 {x}"));
        assert_eq!(
            ev("join(fromJSON('[1,\"b\",true]'), '+')"),
            json!("1+b+true")
        );
        assert_eq!(ev("join('x')"), json!("x"));
        assert_eq!(ev("fromJSON(env.LIST)[2].k"), json!("v"));
        assert_eq!(ev("fromJSON(env.LIST)[0] == 1"), json!(true));
        assert_eq!(ev("toJSON(matrix.os)"), json!("\"linux\""));
        assert_eq!(
            ev("toJSON(fromJSON('{\"a\":1}'))"),
            json!("{\n  \"a\": 1\n}")
        );
    }

    #[test]
    fn status_functions_follow_the_callers_status() {
        let e = parse("failure()").unwrap();
        assert_eq!(e.eval(&cx()).unwrap(), json!(false));
        let failed = cx().with_status(Status::Failure);
        assert_eq!(e.eval(&failed).unwrap(), json!(true));
        assert_eq!(
            parse("always()").unwrap().eval(&failed).unwrap(),
            json!(true)
        );
        assert_eq!(
            parse("success()").unwrap().eval(&failed).unwrap(),
            json!(false)
        );
        let cancelled = cx().with_status(Status::Cancelled);
        assert_eq!(
            parse("cancelled()").unwrap().eval(&cancelled).unwrap(),
            json!(true)
        );
    }

    #[test]
    fn evaluation_errors() {
        let err = |s: &str| parse(s).unwrap().eval(&cx()).unwrap_err().message;
        assert!(err("fromJSON('{')").contains("not valid JSON"));
        assert!(err("format('{1}', 'a')").contains("no argument {1}"));
        assert!(err("format('{x}')").contains("argument index"));
    }
}
