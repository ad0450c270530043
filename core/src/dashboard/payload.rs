//! A JSON document shown readably: objects as definition lists, uniform arrays of objects as
//! tables, other arrays as lists, text wrapped with its newlines kept. Every string is
//! escaped by maud; http(s) URLs are links that carry no referrer and no ranking.

use maud::{Markup, html};
use serde_json::{Map, Value};

/// Nesting shown before a subtree is summarised.
const MAX_DEPTH: usize = 12;
/// Values shown in one document; the rest is left out with a note.
const MAX_NODES: usize = 4000;
/// Characters of one string shown.
const MAX_STRING: usize = 20_000;
/// Strings longer than this (or with a newline) are a block, not inline.
const LONG_STRING: usize = 120;
/// Table columns at most.
const MAX_COLUMNS: usize = 10;

/// `v` as HTML (a `<div class="payload">`).
pub fn render(v: &Value) -> Markup {
    let mut budget = MAX_NODES;
    let body = value(v, 0, &mut budget);
    html! {
        div.payload {
            (body)
            @if budget == 0 {
                p.truncated { "This document is too large to show in full; part of it is left out." }
            }
        }
    }
}

fn value(v: &Value, depth: usize, budget: &mut usize) -> Markup {
    if *budget == 0 {
        return html! { span.v-more { "…" } };
    }
    *budget -= 1;
    match v {
        Value::Null => html! { span.v-null { "null" } },
        Value::Bool(b) => html! { span.v-bool { (b) } },
        Value::Number(n) => html! { span.v-num { (n) } },
        Value::String(s) => string(s),
        _ if depth >= MAX_DEPTH => html! {
            span.v-more { "(nested too deeply to show; see the raw JSON)" }
        },
        Value::Object(m) if m.is_empty() => html! { span.v-empty { "(empty)" } },
        Value::Array(a) if a.is_empty() => html! { span.v-empty { "(empty list)" } },
        Value::Object(m) => object(m, depth, budget),
        Value::Array(a) => match table_columns(a) {
            Some(cols) => table(a, &cols, budget),
            None => list(a, depth, budget),
        },
    }
}

fn object(m: &Map<String, Value>, depth: usize, budget: &mut usize) -> Markup {
    let mut rows = Vec::new();
    for (k, v) in m {
        if *budget == 0 {
            break;
        }
        rows.push(html! { dt { (k) } dd { (value(v, depth + 1, budget)) } });
    }
    html! {
        dl.kv {
            @for r in &rows { (r) }
        }
        (left_out(m.len() - rows.len(), "field"))
    }
}

fn list(a: &[Value], depth: usize, budget: &mut usize) -> Markup {
    let mut items = Vec::new();
    for v in a {
        if *budget == 0 {
            break;
        }
        items.push(value(v, depth + 1, budget));
    }
    html! {
        ol.list {
            @for i in &items { li { (i) } }
        }
        (left_out(a.len() - items.len(), "item"))
    }
}

/// The shared keys when every item is an object with the same keys and scalar values.
fn table_columns(a: &[Value]) -> Option<Vec<String>> {
    let first = a.first()?.as_object()?;
    if first.is_empty() || first.len() > MAX_COLUMNS {
        return None;
    }
    let uniform = a.iter().all(|v| {
        v.as_object().is_some_and(|m| {
            m.len() == first.len()
                && m.iter()
                    .all(|(k, v)| first.contains_key(k) && !v.is_object() && !v.is_array())
        })
    });
    uniform.then(|| first.keys().cloned().collect())
}

fn table(a: &[Value], cols: &[String], budget: &mut usize) -> Markup {
    let mut rows = Vec::new();
    for row in a {
        if *budget == 0 {
            break;
        }
        let cells: Vec<Markup> = cols
            .iter()
            .map(|c| value(&row[c.as_str()], 0, budget))
            .collect();
        rows.push(html! {
            tr { @for (c, cell) in cols.iter().zip(&cells) { td data-label=(c) { (cell) } } }
        });
    }
    let shown = rows.len();
    html! {
        div.table-wrap {
            table.data {
                thead { tr { @for c in cols { th scope="col" { (c) } } } }
                tbody { @for r in &rows { (r) } }
            }
        }
        (left_out(a.len() - shown, "row"))
    }
}

fn left_out(n: usize, what: &str) -> Markup {
    html! {
        @if n > 0 {
            p.truncated { "… " (n) " more " (what) @if n > 1 { "s" } " not shown." }
        }
    }
}

fn string(s: &str) -> Markup {
    let (shown, cut) = match s.char_indices().nth(MAX_STRING) {
        Some((i, _)) => (&s[..i], true),
        None => (s, false),
    };
    let is_url = !cut
        && (s.starts_with("https://") || s.starts_with("http://"))
        && !s.chars().any(char::is_whitespace);
    html! {
        @if is_url {
            a.v-url href=(s) rel="noopener noreferrer nofollow" target="_blank" { (s) }
        } @else if cut || s.contains('\n') || s.chars().count() > LONG_STRING {
            div.v-text { (shown) @if cut { span.v-more { " … (" (s.chars().count() - MAX_STRING) " more characters)" } } }
        } @else if s.is_empty() {
            span.v-empty { "(empty text)" }
        } @else {
            span.v-str { (s) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn r(v: Value) -> String {
        render(&v).into_string()
    }

    #[test]
    fn objects_are_definition_lists_nested() {
        let h = r(json!({"order": {"id": "A-1", "amount": 12.5}, "ok": true, "x": null}));
        // keys keep the order the payload was written in
        assert!(
            h.contains(r#"<dl class="kv"><dt>order</dt><dd><dl class="kv"><dt>id</dt>"#),
            "{h}"
        );
        assert!(
            h.contains(r#"<dt>amount</dt><dd><span class="v-num">12.5</span>"#),
            "{h}"
        );
        assert!(
            h.contains(r#"<dt>ok</dt><dd><span class="v-bool">true</span></dd>"#),
            "{h}"
        );
        assert!(h.contains(r#"<span class="v-null">null</span>"#), "{h}");
    }

    #[test]
    fn uniform_arrays_of_objects_are_tables() {
        let h = r(json!([{"sku": "a", "qty": 1}, {"sku": "b", "qty": 2}]));
        assert!(
            h.contains(r#"<th scope="col">sku</th><th scope="col">qty</th>"#),
            "{h}"
        );
        assert!(
            h.contains(r#"<td data-label="sku"><span class="v-str">b</span></td>"#),
            "{h}"
        );
    }

    #[test]
    fn mixed_arrays_are_lists() {
        let h = r(json!([{"a": 1}, {"b": 2}, 3]));
        assert!(
            h.contains(r#"<ol class="list"><li>"#) && !h.contains("<table"),
            "{h}"
        );
        let h = r(json!([{"a": {"deep": 1}}]));
        assert!(
            !h.contains("<table"),
            "nested values are not table cells: {h}"
        );
    }

    #[test]
    fn long_text_is_a_block_keeping_newlines() {
        let h = r(json!({"t": "line 1\nline 2"}));
        assert!(
            h.contains("<div class=\"v-text\">line 1\nline 2</div>"),
            "{h}"
        );
    }

    #[test]
    fn only_http_urls_are_links_and_they_carry_no_referrer() {
        let h = r(json!([
            "https://example.com/a?b=1&c=2",
            "javascript:alert(1)",
            "http://x y"
        ]));
        assert!(h.contains(r#"<a class="v-url" href="https://example.com/a?b=1&amp;c=2" rel="noopener noreferrer nofollow""#), "{h}");
        assert_eq!(h.matches("<a ").count(), 1, "{h}");
    }

    #[test]
    fn payload_text_is_escaped() {
        let x = r#"<script>alert(1)</script>"><img src=x onerror=alert(1)>"#;
        let h = r(json!({x: x, "list": [x], "rows": [{x: x}]}));
        assert!(!h.contains("<script") && !h.contains("<img"), "{h}");
        assert!(h.contains("&lt;script&gt;"), "{h}");
    }

    #[test]
    fn huge_documents_are_cut_with_a_note() {
        let big: Vec<Value> = (0..10_000).map(|i| json!({"i": i, "s": "x"})).collect();
        let h = r(json!({"rows": big}));
        assert!(h.contains("more rows not shown") && h.contains("too large to show in full"));
        assert!(h.len() < 1_000_000, "{}", h.len());
        let long = "y".repeat(MAX_STRING + 5);
        assert!(r(json!(long)).contains("(5 more characters)"));
    }

    #[test]
    fn deep_documents_are_cut() {
        let mut v = json!("bottom");
        for _ in 0..100 {
            v = json!({"a": [v]});
        }
        let h = r(v);
        assert!(h.contains("nested too deeply") && !h.contains("bottom"));
    }

    #[test]
    fn empty_things_say_so() {
        assert!(r(json!({})).contains("(empty)"));
        assert!(r(json!({"a": []})).contains("(empty list)"));
        assert!(r(json!("")).contains("(empty text)"));
    }
}
