//! The rules language: small, JSON-logic-like expressions over `{"answer": ..., "payload": ...}`.
//!
//! No code runs: an expression is a tree of a fixed set of operators, with bounded size and
//! depth, evaluated in microseconds. The full reference is in `docs/verification.md`.
//!
//! ```text
//! {"var": "/answer/amount"}                 JSON Pointer into {answer, payload}; missing: null
//! 1, "x", true, null, [E, ...]              literals (array items are expressions)
//! {"lit": ANY}                              any JSON value, taken as is
//! {"==": [E, E]}  {"!=": [E, E]}            JSON equality (1 == 1.0)
//! {"<": [E, E]} {"<=": ..} {">": ..} {">=": ..}   numbers, or strings; other types: false
//! {"and": [E, ...]} {"or": [E, ...]} {"not": E}
//! {"nonempty": E}                           not null, "", whitespace, [] or {}
//! {"in": [E, E]}                            item of an array, or substring of a string
//! {"length": E}                             characters of a string, items of an array/object
//! {"+": [E, E]} {"-": [E, E]} {"*": [E, E]} numbers (anything else: null)
//! ```
//!
//! A rule's condition holds when it evaluates to `true` (nothing else counts as true).

use serde_json::{Number, Value};

/// The deepest nesting an expression may have.
pub const MAX_DEPTH: usize = 32;
/// The most nodes an expression may have.
pub const MAX_NODES: usize = 500;

/// A compiled expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Lit(Value),
    Var(Vec<String>),
    List(Vec<Expr>),
    Cmp(Cmp, Box<Expr>, Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    NonEmpty(Box<Expr>),
    In(Box<Expr>, Box<Expr>),
    Length(Box<Expr>),
    Arith(Arith, Box<Expr>, Box<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arith {
    Add,
    Sub,
    Mul,
}

const OPERATORS: &str =
    "var, lit, ==, !=, <, <=, >, >=, and, or, not, nonempty, in, length, +, -, *";

impl Expr {
    /// Compiles `v`, or says precisely what is wrong (with a JSON Pointer into `v`).
    pub fn compile(v: &Value) -> Result<Expr, String> {
        let mut nodes = 0;
        compile(v, "", 0, &mut nodes)
    }

    /// Evaluates against `doc` (`{"answer": ..., "payload": ...}`).
    pub fn eval(&self, doc: &Value) -> Value {
        match self {
            Expr::Lit(v) => v.clone(),
            Expr::Var(path) => {
                let mut cur = doc;
                for seg in path {
                    cur = match cur {
                        Value::Object(m) => match m.get(seg) {
                            Some(v) => v,
                            None => return Value::Null,
                        },
                        Value::Array(a) => match seg.parse::<usize>().ok().and_then(|i| a.get(i)) {
                            Some(v) => v,
                            None => return Value::Null,
                        },
                        _ => return Value::Null,
                    };
                }
                cur.clone()
            }
            Expr::List(items) => Value::Array(items.iter().map(|e| e.eval(doc)).collect()),
            Expr::Cmp(op, a, b) => Value::Bool(compare(*op, &a.eval(doc), &b.eval(doc))),
            Expr::And(items) => Value::Bool(items.iter().all(|e| e.holds(doc))),
            Expr::Or(items) => Value::Bool(items.iter().any(|e| e.holds(doc))),
            Expr::Not(e) => Value::Bool(!e.holds(doc)),
            Expr::NonEmpty(e) => Value::Bool(match e.eval(doc) {
                Value::Null => false,
                Value::String(s) => !s.trim().is_empty(),
                Value::Array(a) => !a.is_empty(),
                Value::Object(o) => !o.is_empty(),
                Value::Bool(_) | Value::Number(_) => true,
            }),
            Expr::In(item, coll) => {
                let item = item.eval(doc);
                Value::Bool(match coll.eval(doc) {
                    Value::Array(a) => a.iter().any(|x| json_eq(x, &item)),
                    Value::String(s) => item.as_str().is_some_and(|i| s.contains(i)),
                    _ => false,
                })
            }
            Expr::Length(e) => match e.eval(doc) {
                Value::String(s) => Value::from(s.chars().count()),
                Value::Array(a) => Value::from(a.len()),
                Value::Object(o) => Value::from(o.len()),
                _ => Value::Null,
            },
            Expr::Arith(op, a, b) => match (a.eval(doc).as_f64(), b.eval(doc).as_f64()) {
                (Some(x), Some(y)) => {
                    let r = match op {
                        Arith::Add => x + y,
                        Arith::Sub => x - y,
                        Arith::Mul => x * y,
                    };
                    Number::from_f64(r).map_or(Value::Null, Value::Number)
                }
                _ => Value::Null,
            },
        }
    }

    /// Whether the expression evaluates to `true`.
    pub fn holds(&self, doc: &Value) -> bool {
        self.eval(doc) == Value::Bool(true)
    }
}

fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

fn compare(op: Cmp, a: &Value, b: &Value) -> bool {
    use std::cmp::Ordering;
    match op {
        Cmp::Eq => return json_eq(a, b),
        Cmp::Ne => return !json_eq(a, b),
        _ => {}
    }
    let ord = match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x.partial_cmp(&y),
            _ => None,
        },
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    };
    match (op, ord) {
        (_, None) => false,
        (Cmp::Lt, Some(o)) => o == Ordering::Less,
        (Cmp::Le, Some(o)) => o != Ordering::Greater,
        (Cmp::Gt, Some(o)) => o == Ordering::Greater,
        (Cmp::Ge, Some(o)) => o != Ordering::Less,
        _ => false,
    }
}

fn compile(v: &Value, at: &str, depth: usize, nodes: &mut usize) -> Result<Expr, String> {
    *nodes += 1;
    if *nodes > MAX_NODES {
        return Err(format!("the expression has more than {MAX_NODES} nodes"));
    }
    if depth > MAX_DEPTH {
        return Err(format!("{}: nested deeper than {MAX_DEPTH}", here(at)));
    }
    match v {
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {
            Ok(Expr::Lit(v.clone()))
        }
        Value::Array(items) => Ok(Expr::List(
            items
                .iter()
                .enumerate()
                .map(|(i, x)| compile(x, &format!("{at}/{i}"), depth + 1, nodes))
                .collect::<Result<_, _>>()?,
        )),
        Value::Object(m) => {
            if m.len() != 1 {
                return Err(format!(
                    "{}: an operator object has exactly one key (one of {OPERATORS}); for a literal object use {{\"lit\": ...}}",
                    here(at)
                ));
            }
            let (op, arg) = m.iter().next().expect("one entry");
            let at_op = format!("{at}/{}", op.replace('~', "~0").replace('/', "~1"));
            let sub = |x: &Value, i: Option<usize>, nodes: &mut usize| {
                let p = match i {
                    Some(i) => format!("{at_op}/{i}"),
                    None => at_op.clone(),
                };
                compile(x, &p, depth + 1, nodes).map(Box::new)
            };
            let two = |nodes: &mut usize| -> Result<(Box<Expr>, Box<Expr>), String> {
                match arg.as_array() {
                    Some(a) if a.len() == 2 => {
                        Ok((sub(&a[0], Some(0), nodes)?, sub(&a[1], Some(1), nodes)?))
                    }
                    _ => Err(format!(
                        "{}: {op:?} takes an array of two operands",
                        here(&at_op)
                    )),
                }
            };
            Ok(match op.as_str() {
                "lit" => Expr::Lit(arg.clone()),
                "var" => {
                    let Some(p) = arg.as_str() else {
                        return Err(format!(
                            "{}: \"var\" takes a JSON Pointer string such as \"/answer/amount\"",
                            here(&at_op)
                        ));
                    };
                    let segs = pointer(p).ok_or_else(|| {
                        format!(
                            "{}: {p:?} is not a JSON Pointer into the answer or the payload (it must start with /answer or /payload)",
                            here(&at_op)
                        )
                    })?;
                    Expr::Var(segs)
                }
                "==" | "!=" | "<" | "<=" | ">" | ">=" => {
                    let c = match op.as_str() {
                        "==" => Cmp::Eq,
                        "!=" => Cmp::Ne,
                        "<" => Cmp::Lt,
                        "<=" => Cmp::Le,
                        ">" => Cmp::Gt,
                        _ => Cmp::Ge,
                    };
                    let (a, b) = two(nodes)?;
                    Expr::Cmp(c, a, b)
                }
                "+" | "-" | "*" => {
                    let o = match op.as_str() {
                        "+" => Arith::Add,
                        "-" => Arith::Sub,
                        _ => Arith::Mul,
                    };
                    let (a, b) = two(nodes)?;
                    Expr::Arith(o, a, b)
                }
                "in" => {
                    let (a, b) = two(nodes)?;
                    Expr::In(a, b)
                }
                "and" | "or" => {
                    let Some(items) = arg.as_array().filter(|a| !a.is_empty()) else {
                        return Err(format!(
                            "{}: {op:?} takes a non-empty array of conditions",
                            here(&at_op)
                        ));
                    };
                    let items = items
                        .iter()
                        .enumerate()
                        .map(|(i, x)| sub(x, Some(i), nodes).map(|b| *b))
                        .collect::<Result<Vec<_>, _>>()?;
                    if op == "and" {
                        Expr::And(items)
                    } else {
                        Expr::Or(items)
                    }
                }
                "not" => Expr::Not(sub(arg, None, nodes)?),
                "nonempty" => Expr::NonEmpty(sub(arg, None, nodes)?),
                "length" => Expr::Length(sub(arg, None, nodes)?),
                other => {
                    return Err(format!(
                        "{}: unknown operator {other:?} (expected one of {OPERATORS})",
                        here(at)
                    ));
                }
            })
        }
    }
}

fn here(at: &str) -> String {
    if at.is_empty() {
        "at the top".into()
    } else {
        format!("at {at}")
    }
}

/// A JSON Pointer that starts at `/answer` or `/payload`, as unescaped segments.
fn pointer(p: &str) -> Option<Vec<String>> {
    let rest = p.strip_prefix('/')?;
    let segs: Vec<String> = rest
        .split('/')
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect();
    matches!(segs[0].as_str(), "answer" | "payload").then_some(segs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn holds(e: Value, doc: Value) -> bool {
        Expr::compile(&e).unwrap().holds(&doc)
    }

    #[test]
    fn compares_answer_and_payload() {
        let doc = json!({"answer": {"amount": 90, "reason": " "}, "payload": {"amount": 100.0}});
        let le = json!({"<=": [{"var": "/answer/amount"}, {"var": "/payload/amount"}]});
        assert!(holds(le.clone(), doc.clone()));
        assert!(!holds(
            le,
            json!({"answer": {"amount": 101}, "payload": {"amount": 100}})
        ));
        assert!(!holds(
            json!({"nonempty": {"var": "/answer/reason"}}),
            doc.clone()
        ));
        assert!(holds(
            json!({"==": [{"var": "/answer/amount"}, 90.0]}),
            doc.clone()
        ));
        assert!(holds(
            json!({"<=": [{"var": "/answer/amount"}, {"*": [{"var": "/payload/amount"}, 0.9]}]}),
            doc.clone()
        ));
        assert!(holds(json!({"in": ["b", ["a", "b"]]}), doc.clone()));
        assert!(holds(json!({"==": [{"length": "héllo"}, 5]}), doc.clone()));
        // Missing values are null; comparisons with null are false, never an error.
        assert!(!holds(
            json!({"<": [{"var": "/answer/nope"}, 5]}),
            doc.clone()
        ));
        assert!(holds(
            json!({"==": [{"var": "/answer/nope/deeper"}, null]}),
            doc.clone()
        ));
        // A non-boolean result does not hold.
        assert!(!holds(json!({"var": "/answer/amount"}), doc));
    }

    #[test]
    fn logic_short_forms() {
        let doc = json!({"answer": {"approved": false, "reason": "too big"}, "payload": {}});
        let rule = json!({"or": [{"==": [{"var": "/answer/approved"}, true]},
                                 {"nonempty": {"var": "/answer/reason"}}]});
        assert!(holds(rule, doc.clone()));
        assert!(holds(
            json!({"not": {"var": "/answer/approved"}}),
            doc.clone()
        ));
        assert!(holds(json!({"not": {"==": [1, 2]}}), doc));
    }

    #[test]
    fn precise_compile_errors() {
        let e = Expr::compile(&json!({"and": [{"=>": [1, 2]}]})).unwrap_err();
        assert_eq!(
            e,
            format!("at /and/0: unknown operator \"=>\" (expected one of {OPERATORS})")
        );
        let e = Expr::compile(&json!({"<": [1]})).unwrap_err();
        assert!(
            e.contains("at /<: \"<\" takes an array of two operands"),
            "{e}"
        );
        let e = Expr::compile(&json!({"var": "/env/HOME"})).unwrap_err();
        assert!(e.contains("must start with /answer or /payload"), "{e}");
        let e = Expr::compile(&json!({"a": 1, "b": 2})).unwrap_err();
        assert!(e.contains("exactly one key"), "{e}");
        let mut deep = json!(true);
        for _ in 0..40 {
            deep = json!({ "not": deep });
        }
        assert!(Expr::compile(&deep).unwrap_err().contains("nested deeper"));
        let wide = Value::Array((0..600).map(Value::from).collect());
        assert!(
            Expr::compile(&wide)
                .unwrap_err()
                .contains("more than 500 nodes")
        );
    }
}
