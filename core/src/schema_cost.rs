//! What a JSON Schema may cost to validate, worked out before it is compiled, so that no
//! schema within the size limit can make one validation run away (docs/api.md, "Limits").
//!
//! The validator applies subschemas to instance locations. Two things multiply that work:
//! applicators at one location (`allOf`, `anyOf`, `oneOf`, `not`, `if`/`then`/`else`,
//! `$ref`, `dependentSchemas`), which a chain of `$ref`s can fan out exponentially
//! (`d0 = allOf[d1, d1]`, `d1 = allOf[d2, d2]` ...), and applicators that go one level down
//! (`properties`, `items`, `contains` ...), which may overlap on one child. [`analyse`]
//! bounds the number of subschema applications (weighted by their keywords' work: an `enum`
//! of n values counts n) that any one instance location can receive, at any depth up to
//! [`crate::schema::MAX_DEPTH`]: the schema's *fan-out*. A validation then costs at most
//! fan-out x instance size, and [`crate::schema::Schema::errors`] refuses an instance for
//! which that product is over [`crate::schema::MAX_VALIDATION_WORK`] before doing any work.
//!
//! Refused outright: `$ref` cycles that never go down into the instance (`{"$ref": "#"}`,
//! `a = allOf[b], b = allOf[a]`: validation would never end), references that are not local
//! (`#`, `#/json/pointer`, `#anchor`), a fan-out over [`MAX_FANOUT`], and `pattern`s whose
//! counted repetitions expand past [`MAX_PATTERN_WEIGHT`] (`(a{1000}){1000}`).

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::schema::MAX_DEPTH;

/// The most subschema applications (weighted) one instance location may receive.
pub const MAX_FANOUT: u64 = 10_000;
/// The most characters a `pattern` may expand to through counted repetitions (`a{100}` is
/// 100; `(a{10}){10}` is 100).
pub const MAX_PATTERN_WEIGHT: u64 = 20_000;
/// What one `pattern` (or `patternProperties` entry) weighs in the fan-out.
const PATTERN_WEIGHT: u64 = 16;

/// Keywords that apply a subschema (or each of a list or map of them) at the same location.
const SAME_ONE: &[&str] = &["not", "if", "then", "else"];
const SAME_LIST: &[&str] = &["allOf", "anyOf", "oneOf"];
const SAME_MAP: &[&str] = &["dependentSchemas"];
const REFS: &[&str] = &["$ref", "$dynamicRef", "$recursiveRef"];

/// One subschema (an object; booleans cost nothing and are skipped).
struct Node<'a> {
    schema: &'a serde_json::Map<String, Value>,
    /// Its own keywords' work.
    weight: u64,
    /// Subschemas applied at the same location.
    same: Vec<usize>,
    /// For each kind of child location (one property name, "any other property", one array
    /// index, "any other index", a property name itself), the subschemas applied there.
    down: Vec<Vec<usize>>,
}

struct Graph<'a> {
    nodes: Vec<Node<'a>>,
    /// Subschema by JSON pointer from the root, and by anchor.
    by_pointer: HashMap<String, usize>,
    by_anchor: HashMap<String, Vec<usize>>,
    /// Node id of each schema object, by address.
    ids: HashMap<*const serde_json::Map<String, Value>, usize>,
}

/// The fan-out of `schema` (see the module docs), or why it is refused.
pub fn analyse(which: &'static str, schema: &Value) -> Result<u64> {
    let refuse = |message: String| Error::InvalidSchema { which, message };
    let mut g = Graph {
        nodes: Vec::new(),
        by_pointer: HashMap::new(),
        by_anchor: HashMap::new(),
        ids: HashMap::new(),
    };
    collect(schema, String::new(), &mut g);
    if g.nodes.is_empty() {
        return Ok(1);
    }
    check_patterns(which, &g)?;
    let root = g.ids[&(schema.as_object().expect("nodes exist") as *const _)];
    link(which, &mut g, root)?;
    let order = topological(&g).ok_or_else(|| {
        refuse(
            "a $ref cycle never goes down into the instance (a schema that refers to itself \
             at the same place, through $ref / allOf / anyOf / oneOf / not / if): its \
             validation would never end"
                .into(),
        )
    })?;
    let fanout = worst_fanout(&g, &order, root);
    if fanout > MAX_FANOUT {
        return Err(refuse(format!(
            "the schema applies more than {MAX_FANOUT} subschemas (weighted: an enum of n \
             values counts n) to one value, through allOf / anyOf / oneOf / $ref and \
             overlapping properties or items: simplify it"
        )));
    }
    Ok(fanout)
}

/// Patterns anywhere: the meta-schema check compiles every one of them.
fn check_patterns(which: &'static str, g: &Graph) -> Result<()> {
    for n in &g.nodes {
        if let Some(p) = n.schema.get("pattern").and_then(Value::as_str) {
            check_pattern(which, p)?;
        }
        for p in n
            .schema
            .get("patternProperties")
            .and_then(Value::as_object)
            .into_iter()
            .flat_map(|o| o.keys())
        {
            check_pattern(which, p)?;
        }
    }
    Ok(())
}

/// Fills in the weight and edges of every subschema validation can reach from `root`
/// (objects inside `enum`, `const` or `default` are data, not schemas).
fn link(which: &'static str, g: &mut Graph, root: usize) -> Result<()> {
    let mut reached = vec![false; g.nodes.len()];
    reached[root] = true;
    let mut queue = vec![root];
    while let Some(i) = queue.pop() {
        let (weight, same) = same_place(which, g, g.nodes[i].schema)?;
        let down = one_level_down(g, g.nodes[i].schema);
        for &c in same.iter().chain(down.iter().flatten()) {
            if !reached[c] {
                reached[c] = true;
                queue.push(c);
            }
        }
        let n = &mut g.nodes[i];
        n.weight = weight;
        n.same = same;
        n.down = down;
    }
    Ok(())
}

/// The node of a subschema value, if it is one.
fn node_of(v: &Value, g: &Graph) -> Option<usize> {
    v.as_object()
        .and_then(|o| g.ids.get(&(o as *const _)).copied())
}

/// A schema's own weight and the subschemas it applies at the same place in the instance
/// (combinators, conditionals and references).
fn same_place(which: &'static str, g: &Graph, m: &Map<String, Value>) -> Result<(u64, Vec<usize>)> {
    let refuse = |message: String| Error::InvalidSchema { which, message };
    let mut same = Vec::new();
    let mut weight = 1u64;
    for k in SAME_ONE {
        same.extend(m.get(*k).and_then(|v| node_of(v, g)));
    }
    for k in SAME_LIST {
        for v in m.get(*k).and_then(Value::as_array).into_iter().flatten() {
            same.extend(node_of(v, g));
        }
    }
    for k in SAME_MAP.iter().chain(&["dependencies"]) {
        for v in m
            .get(*k)
            .and_then(Value::as_object)
            .into_iter()
            .flat_map(|o| o.values())
        {
            same.extend(node_of(v, g));
        }
    }
    for k in REFS {
        let Some(r) = m.get(*k) else { continue };
        let Some(r) = r.as_str() else {
            return Err(refuse(format!("{k} must be a string")));
        };
        same.extend(resolve(r, g).ok_or_else(|| {
            refuse(format!(
                "{k} {r:?} is not a local reference (\"#\", \"#/json/pointer\" or \
                 \"#anchor\" naming a part of this schema): remote and relative \
                 references are not followed"
            ))
        })?);
    }
    if let Some(e) = m.get("enum").and_then(Value::as_array) {
        weight += e.len() as u64;
    }
    if m.get("pattern").is_some_and(Value::is_string) {
        weight += PATTERN_WEIGHT;
    }
    if let Some(pp) = m.get("patternProperties").and_then(Value::as_object) {
        weight += PATTERN_WEIGHT * pp.len() as u64;
    }
    Ok((weight, same))
}

/// The subschemas a schema applies one level down, grouped by child: each group is what one
/// property or item of the instance gets.
fn one_level_down(g: &Graph, m: &Map<String, Value>) -> Vec<Vec<usize>> {
    let one = |k: &str| m.get(k).and_then(|v| node_of(v, g));
    let patterns = m
        .get("patternProperties")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|pp| pp.values().filter_map(|v| node_of(v, g)));
    // Object children: a named property gets its own schema, any other the additional
    // one; every child also gets the pattern ones and unevaluatedProperties.
    let extra: Vec<usize> = patterns.chain(one("unevaluatedProperties")).collect();
    let mut down: Vec<Vec<usize>> = Vec::new();
    for v in m
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|o| o.values())
    {
        down.push(
            node_of(v, g)
                .into_iter()
                .chain(extra.iter().copied())
                .collect(),
        );
    }
    down.push(
        one("additionalProperties")
            .into_iter()
            .chain(extra.iter().copied())
            .collect(),
    );
    down.push(one("propertyNames").into_iter().collect());
    // Array children: a positional schema or the rest, plus contains and unevaluatedItems.
    let extra: Vec<usize> = one("contains")
        .into_iter()
        .chain(one("unevaluatedItems"))
        .collect();
    let positional = m
        .get("prefixItems")
        .or_else(|| m.get("items").filter(|v| v.is_array()));
    for v in positional.and_then(Value::as_array).into_iter().flatten() {
        down.push(
            node_of(v, g)
                .into_iter()
                .chain(extra.iter().copied())
                .collect(),
        );
    }
    let rest = one("additionalItems")
        .into_iter()
        .chain(m.get("items").and_then(|v| node_of(v, g)));
    down.push(rest.chain(extra.iter().copied()).collect());
    down
}

/// The most subschemas applied at any one location of an instance, up to [`MAX_DEPTH`] levels
/// down, capped just over [`MAX_FANOUT`]. `order` puts every node after what it applies at
/// the same place.
fn worst_fanout(g: &Graph, order: &[usize], root: usize) -> u64 {
    let cap = MAX_FANOUT + 1;
    // At one location: the node's own work and everything it applies there.
    let mut here = vec![0u64; g.nodes.len()];
    for &i in order {
        let n = &g.nodes[i];
        here[i] = n
            .same
            .iter()
            .fold(n.weight, |a, &c| a.saturating_add(here[c]))
            .min(cap);
    }
    // The most at any one location up to `d` levels down, for d = 0..=MAX_DEPTH.
    let mut worst = here.clone();
    for _ in 0..MAX_DEPTH {
        let mut below = vec![0u64; g.nodes.len()];
        for &i in order {
            let n = &g.nodes[i];
            let own = n
                .down
                .iter()
                .map(|kids| kids.iter().fold(0u64, |a, &c| a.saturating_add(worst[c])))
                .max()
                .unwrap_or(0);
            below[i] = n
                .same
                .iter()
                .fold(own, |a, &c| a.saturating_add(below[c]))
                .min(cap);
        }
        let next: Vec<u64> = here.iter().zip(&below).map(|(h, b)| (*h).max(*b)).collect();
        if next == worst {
            break;
        }
        worst = next;
    }
    worst[root]
}

/// Registers every subschema object under `v` (at JSON pointer `at`), in document order.
fn collect<'a>(v: &'a Value, at: String, g: &mut Graph<'a>) {
    match v {
        Value::Object(m) => {
            // Every object is registered (schema or not: a `$ref` may point anywhere).
            let id = g.nodes.len();
            g.nodes.push(Node {
                schema: m,
                weight: 1,
                same: Vec::new(),
                down: Vec::new(),
            });
            g.ids.insert(m as *const _, id);
            g.by_pointer.insert(at.clone(), id);
            for k in ["$anchor", "$dynamicAnchor"] {
                if let Some(a) = m.get(k).and_then(Value::as_str) {
                    g.by_anchor.entry(a.to_string()).or_default().push(id);
                }
            }
            for (k, child) in m {
                collect(
                    child,
                    format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                    g,
                );
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                collect(child, format!("{at}/{i}"), g);
            }
        }
        _ => {}
    }
}

/// The subschemas a local reference names (several for a repeated anchor).
fn resolve(r: &str, g: &Graph) -> Option<Vec<usize>> {
    let fragment = r.strip_prefix('#')?;
    let fragment = percent_decode(fragment)?;
    if fragment.is_empty() || fragment.starts_with('/') {
        // A pointer to something that is not an object (a boolean schema) costs nothing.
        return Some(g.by_pointer.get(&fragment).copied().into_iter().collect());
    }
    g.by_anchor.get(&fragment).cloned()
}

fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_string());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The nodes in an order where every node comes after the ones it applies at the same
/// location (leaves first); `None` when those edges form a cycle.
fn topological(g: &Graph) -> Option<Vec<usize>> {
    // 0 = not seen, 1 = on the path, 2 = done. Iterative: schemas may be deep.
    let mut state = vec![0u8; g.nodes.len()];
    let mut order = Vec::with_capacity(g.nodes.len());
    for start in 0..g.nodes.len() {
        if state[start] != 0 {
            continue;
        }
        let mut stack = vec![(start, 0usize)];
        state[start] = 1;
        while let Some((n, next)) = stack.last_mut() {
            let node = *n;
            if let Some(&c) = g.nodes[node].same.get(*next) {
                *next += 1;
                match state[c] {
                    0 => {
                        state[c] = 1;
                        stack.push((c, 0));
                    }
                    1 => return None,
                    _ => {}
                }
            } else {
                state[node] = 2;
                order.push(node);
                stack.pop();
            }
        }
    }
    Some(order)
}

/// Refuses a pattern whose counted repetitions expand past [`MAX_PATTERN_WEIGHT`]
/// characters: the regex engines compile `(a{1000}){1000}` into a program of a million
/// states (and refuse it only after building most of it).
pub fn check_pattern(which: &'static str, pattern: &str) -> Result<()> {
    let weight = pattern_weight(pattern);
    if weight > MAX_PATTERN_WEIGHT {
        return Err(Error::InvalidSchema {
            which,
            message: format!(
                "pattern {:?} expands to more than {MAX_PATTERN_WEIGHT} characters through \
                 its counted repetitions ({{n}}, {{n,m}}): use fewer or smaller counts",
                truncate(pattern, 80)
            ),
        });
    }
    Ok(())
}

fn truncate(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

/// How many characters a pattern's atoms expand to when every counted repetition is
/// unrolled (`*`, `+` and `?` count once): a cheap upper bound on the compiled program's
/// size. Saturates; syntax errors are left to the regex engine.
fn pattern_weight(p: &str) -> u64 {
    // A stack of open groups: the weight so far of each, and of its last atom.
    let mut groups: Vec<(u64, u64)> = vec![(0, 0)];
    let mut chars = p.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
                let top = groups.last_mut().expect("root");
                top.0 = top.0.saturating_add(1);
                top.1 = 1;
            }
            '[' => {
                // A class is one atom; skip to its closing bracket.
                let mut first = true;
                while let Some(d) = chars.next() {
                    match d {
                        '\\' => {
                            chars.next();
                        }
                        ']' if !first => break,
                        _ => {}
                    }
                    first = false;
                }
                let top = groups.last_mut().expect("root");
                top.0 = top.0.saturating_add(1);
                top.1 = 1;
            }
            '(' => groups.push((0, 0)),
            ')' if groups.len() > 1 => {
                let (w, _) = groups.pop().expect("checked");
                let top = groups.last_mut().expect("root");
                top.0 = top.0.saturating_add(w);
                top.1 = w;
            }
            '{' => {
                let mut spec = String::new();
                for d in chars.by_ref() {
                    if d == '}' {
                        break;
                    }
                    spec.push(d);
                }
                let count = spec
                    .split(',')
                    .filter_map(|n| n.trim().parse::<u64>().ok())
                    .max()
                    .unwrap_or(1);
                let top = groups.last_mut().expect("root");
                // The last atom now counts `count` times instead of once.
                let extra = top.1.saturating_mul(count.saturating_sub(1));
                top.0 = top.0.saturating_add(extra);
                top.1 = top.1.saturating_mul(count);
            }
            '|' | '*' | '+' | '?' | '^' | '$' => {}
            _ => {
                let top = groups.last_mut().expect("root");
                top.0 = top.0.saturating_add(1);
                top.1 = 1;
            }
        }
    }
    while groups.len() > 1 {
        let (w, _) = groups.pop().expect("checked");
        let top = groups.last_mut().expect("root");
        top.0 = top.0.saturating_add(w);
    }
    groups[0].0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pattern_weights() {
        assert_eq!(pattern_weight("abc"), 3);
        assert_eq!(pattern_weight("a{100}"), 100);
        assert_eq!(pattern_weight("(ab){10}"), 20);
        assert_eq!(pattern_weight("(a{10}){10}"), 100);
        assert_eq!(pattern_weight("[a-z]{3,5}x"), 6);
        assert_eq!(pattern_weight(r"\d{4}-\d{2}"), 7);
        assert!(pattern_weight("(a{1000}){1000}") > MAX_PATTERN_WEIGHT);
        assert!(pattern_weight("((a{100}){100}){100}") > MAX_PATTERN_WEIGHT);
        assert!(check_pattern("response_schema", "^(a+)+$").is_ok());
    }

    #[test]
    fn fan_out_of_plain_schemas_is_small() {
        let s = json!({"type": "object", "properties": {"a": {"type": "string"},
                       "b": {"type": "array", "items": {"type": "integer"}}}});
        assert!(analyse("response_schema", &s).unwrap() <= 2);
        // a recursive tree costs what one level costs
        let tree = json!({"$defs": {"n": {"type": "object", "properties": {
            "left": {"$ref": "#/$defs/n"}, "right": {"$ref": "#/$defs/n"}}}}, "$ref": "#/$defs/n"});
        assert!(analyse("response_schema", &tree).unwrap() <= 3);
        assert_eq!(analyse("response_schema", &json!(true)).unwrap(), 1);
    }

    #[test]
    fn exponential_fan_out_is_refused() {
        let mut defs = serde_json::Map::new();
        for i in 0..40 {
            let next = json!({"$ref": format!("#/$defs/d{}", i + 1)});
            defs.insert(format!("d{i}"), json!({"allOf": [next.clone(), next]}));
        }
        defs.insert("d40".into(), json!({"type": "integer"}));
        let s = json!({"$defs": defs, "$ref": "#/$defs/d0"});
        let e = analyse("response_schema", &s).unwrap_err();
        assert!(e.to_string().contains("subschemas"), "{e}");
        // the same through items: doubles at every level of the instance
        let s = json!({"$defs": {"x": {"items": {"allOf": [{"$ref": "#/$defs/x"}, {"$ref": "#/$defs/x"}]}}},
                       "$ref": "#/$defs/x"});
        assert!(analyse("response_schema", &s).is_err());
    }

    #[test]
    fn same_place_cycles_and_foreign_refs_are_refused() {
        for s in [
            json!({"$ref": "#"}),
            json!({"allOf": [{"$ref": "#"}]}),
            json!({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"anyOf": [{"$ref": "#/$defs/a"}]}},
                   "$ref": "#/$defs/a"}),
        ] {
            let e = analyse("response_schema", &s).unwrap_err();
            assert!(e.to_string().contains("never end"), "{s}: {e}");
        }
        for r in [
            "other.json",
            "https://example.com/s",
            "#/$defs/missing%zz",
            "#nowhere",
        ] {
            let e = analyse("response_schema", &json!({"$ref": r})).unwrap_err();
            assert!(e.to_string().contains("local reference"), "{r}: {e}");
        }
        // a pointer into $defs, an anchor and percent-encoding are followed
        let ok = json!({"$defs": {"a b": {"$anchor": "A", "type": "string"}},
                        "properties": {"x": {"$ref": "#/$defs/a%20b"}, "y": {"$ref": "#A"}}});
        assert!(analyse("response_schema", &ok).is_ok());
    }

    #[test]
    fn enums_weigh_their_length() {
        let e: Vec<Value> = (0..20_000).map(|i| json!(i)).collect();
        assert!(analyse("response_schema", &json!({"enum": e})).is_err());
        let e: Vec<Value> = (0..2_000).map(|i| json!(i)).collect();
        assert!(analyse("response_schema", &json!({"enum": e})).unwrap() > 2_000);
    }
}
