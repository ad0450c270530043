//! The answer form: rendering, parsing and their round trip, on many schemas.

use super::encode::Pairs;
use super::parse::parse;
use super::render::{encoded, fields};
use super::schema::{approval_key, build, child_ptr, is_approval};
use super::*;
use crate::dashboard::view::FormState;
use crate::error::FieldError;
use serde_json::{Map, json};
use std::collections::HashMap;

fn render(schema: &Value) -> String {
    fields(schema, &FormState::default()).into_string()
}

fn render_with(schema: &Value, values: Option<&Value>, errors: &[FieldError]) -> String {
    let state = FormState {
        values,
        errors,
        posted: None,
    };
    fields(schema, &state).into_string()
}

fn err(path: &str, message: &str) -> FieldError {
    FieldError {
        path: path.into(),
        message: message.into(),
    }
}

fn pairs(p: &[(&str, &str)]) -> Pairs {
    p.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn obj(props: Value, required: Value) -> Value {
    json!({"type": "object", "properties": props, "required": required})
}

// --- A tiny browser: what a form with this markup posts when submitted unedited. ---

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// The attributes of the tag starting at `s` (just after `<name`), up to `>`.
fn attrs(s: &str) -> (HashMap<String, String>, usize) {
    let mut out = HashMap::new();
    let b = s.as_bytes();
    let mut i = 0;
    loop {
        while i < b.len() && b[i] == b' ' {
            i += 1;
        }
        if i >= b.len() || b[i] == b'>' {
            return (out, i + 1);
        }
        let start = i;
        while i < b.len() && !matches!(b[i], b'=' | b' ' | b'>') {
            i += 1;
        }
        let key = s[start..i].to_string();
        if i < b.len() && b[i] == b'=' {
            let vstart = i + 2; // skip ="
            let vend = vstart + s[vstart..].find('"').unwrap();
            out.insert(key, unescape(&s[vstart..vend]));
            i = vend + 1;
        } else {
            out.insert(key, String::new());
        }
    }
}

fn submit(html: &str) -> Pairs {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(lt) = rest.find('<') {
        rest = &rest[lt + 1..];
        let tag: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        let (a, end) = attrs(&rest[tag.len()..]);
        let body = &rest[tag.len() + end..];
        let Some(name) = a.get("name").cloned() else {
            continue;
        };
        if a.contains_key("disabled") {
            continue;
        }
        match tag.as_str() {
            "input" => {
                let ty = a.get("type").map(String::as_str).unwrap_or("text");
                let value = a.get("value").cloned().unwrap_or_default();
                let checkable = matches!(ty, "checkbox" | "radio");
                if !checkable || a.contains_key("checked") {
                    out.push((name, value));
                }
            }
            "textarea" => {
                let text = unescape(&body[..body.find("</textarea>").unwrap()]);
                let text = text.strip_prefix('\n').unwrap_or(&text);
                out.push((name, text.replace('\n', "\r\n")));
            }
            "select" => {
                let inner = &body[..body.find("</select>").unwrap()];
                let mut first = None;
                let mut chosen = None;
                for opt in inner.split("<option").skip(1) {
                    let (oa, _) = attrs(opt);
                    let v = oa.get("value").cloned().unwrap_or_default();
                    first.get_or_insert(v.clone());
                    if oa.contains_key("selected") {
                        chosen = Some(v);
                    }
                }
                out.push((name, chosen.or(first).unwrap_or_default()));
            }
            _ => {}
        }
    }
    out
}

// --- Controls per schema shape. ---

#[test]
fn string_is_a_text_input_named_by_pointer() {
    let h = render(&obj(json!({"name": {"type": "string"}}), json!([])));
    assert!(h.contains(r#"type="text" name="/name""#), "{h}");
    assert!(h.contains(r#"<label for="f1">Name"#), "{h}");
}

#[test]
fn long_strings_get_a_textarea() {
    let s = obj(
        json!({
            "a": {"type": "string", "maxLength": 500},
            "b": {"type": "string", "maxLength": 50},
            "rejection_reason": {"type": "string"},
            "c": {"type": "string", "format": "textarea"},
        }),
        json!([]),
    );
    let h = render(&s);
    assert!(
        h.contains(r#"<textarea id="f1" name="/a" rows="4" maxlength="500""#),
        "{h}"
    );
    assert!(
        h.contains(r#"type="text" name="/b" value="" maxlength="50""#),
        "{h}"
    );
    // fields keep the schema's order: a, b, rejection_reason, c
    assert!(h.contains(r#"<textarea id="f4" name="/c""#), "{h}");
    assert!(h.contains(r#"name="/rejection_reason""#) && h.matches("<textarea").count() == 3);
}

#[test]
fn a_value_with_newlines_gets_a_textarea() {
    let s = obj(json!({"a": {"type": "string", "maxLength": 20}}), json!([]));
    let h = render_with(&s, Some(&json!({"a": "x\ny"})), &[]);
    assert!(
        h.contains("<textarea") && h.contains(">\nx\ny</textarea>"),
        "{h}"
    );
}

#[test]
fn string_formats_use_matching_inputs() {
    let s = obj(
        json!({
            "d": {"type": "string", "format": "date"},
            "t": {"type": "string", "format": "date-time"},
            "e": {"type": "string", "format": "email"},
            "u": {"type": "string", "format": "uri"},
        }),
        json!([]),
    );
    let h = render(&s);
    assert!(h.contains(r#"type="date" name="/d""#), "{h}");
    assert!(
        h.contains(r#"type="datetime-local" step="1" name="/t""#),
        "{h}"
    );
    assert!(h.contains(r#"type="email" name="/e""#), "{h}");
    assert!(h.contains(r#"type="url" name="/u""#), "{h}");
}

#[test]
fn integer_bounds_become_min_max_step() {
    let s = obj(
        json!({"n": {"type": "integer", "exclusiveMinimum": 0, "maximum": 100, "multipleOf": 5}}),
        json!(["n"]),
    );
    let h = render(&s);
    assert!(
        h.contains(r#"type="number" name="/n" value="" step="5" min="1" max="100""#),
        "{h}"
    );
    assert!(
        h.contains("A whole number, of at most 100, more than 0, in steps of 5."),
        "{h}"
    );
}

#[test]
fn number_without_multiple_steps_any() {
    let s = obj(json!({"x": {"type": "number", "minimum": 0.5}}), json!([]));
    let h = render(&s);
    assert!(h.contains(r#"step="any" min="0.5""#), "{h}");
    assert!(h.contains(r#"inputmode="decimal""#), "{h}");
}

#[test]
fn required_boolean_is_a_yes_no_pair_with_nothing_chosen() {
    let s = obj(
        json!({"ok": {"type": "boolean"}, "x": {"type": "string"}}),
        json!(["ok", "x"]),
    );
    let h = render(&s);
    assert!(h.contains(r#"type="radio" name="/ok" value="true""#), "{h}");
    assert!(
        h.contains(r#"type="radio" name="/ok" value="false""#),
        "{h}"
    );
    assert!(!h.contains("checked"), "{h}");
}

#[test]
fn optional_boolean_is_a_checkbox_after_a_hidden_false() {
    let s = obj(
        json!({"notify": {"type": "boolean", "default": true}}),
        json!([]),
    );
    let h = render(&s);
    let hidden = h
        .find(r#"type="hidden" name="/notify" value="false""#)
        .unwrap();
    let boxed = h
        .find(r#"type="checkbox" name="/notify" value="true" checked"#)
        .unwrap();
    assert!(hidden < boxed, "{h}");
}

#[test]
fn small_enums_are_radios_and_large_ones_a_select() {
    let s = obj(
        json!({
            "small": {"enum": ["a", "b", "c"]},
            "large": {"enum": ["a", "b", "c", "d", "e"]},
        }),
        json!(["small", "large"]),
    );
    let h = render(&s);
    assert_eq!(h.matches(r#"type="radio" name="/small""#).count(), 3, "{h}");
    assert!(h.contains(r#"<select id="f2" name="/large""#), "{h}");
    assert!(h.contains(r#"<option value="e">e</option>"#), "{h}");
}

#[test]
fn optional_radios_offer_no_answer() {
    let s = obj(json!({"c": {"enum": ["a", "b"]}}), json!([]));
    let h = render(&s);
    assert!(h.contains(r#"name="/c" value="" checked"#), "{h}");
    assert!(h.contains("No answer"), "{h}");
}

#[test]
fn non_string_enums_post_json_text() {
    let s = obj(json!({"n": {"enum": [1, 2.5, "1", null]}}), json!(["n"]));
    let h = render(&s);
    for v in [
        r#"value="1""#,
        r#"value="2.5""#,
        r#"value="&quot;1&quot;""#,
        r#"value="null""#,
    ] {
        assert!(h.contains(v), "{v} in {h}");
    }
    let p = pairs(&[("/n", "\"1\"")]);
    assert_eq!(parse(&s, &p).unwrap(), json!({"n": "1"}));
    assert_eq!(parse(&s, &pairs(&[("/n", "1")])).unwrap(), json!({"n": 1}));
    assert_eq!(
        parse(&s, &pairs(&[("/n", "null")])).unwrap(),
        json!({"n": null})
    );
}

#[test]
fn const_is_shown_and_hidden() {
    let s = obj(json!({"kind": {"const": "refund"}}), json!(["kind"]));
    let h = render(&s);
    assert!(h.contains("<output>refund</output>"), "{h}");
    assert!(
        h.contains(r#"type="hidden" name="/kind" value="&quot;refund&quot;""#),
        "{h}"
    );
    assert_eq!(parse(&s, &[]).unwrap(), json!({"kind": "refund"}));
}

#[test]
fn array_of_enum_is_checkboxes() {
    let s = obj(
        json!({"tags": {"type": "array", "items": {"enum": ["x", "y", "z", "w", "v"]}}}),
        json!([]),
    );
    let h = render_with(&s, Some(&json!({"tags": ["y", "v"]})), &[]);
    assert_eq!(
        h.matches(r#"type="checkbox" name="/tags""#).count(),
        5,
        "{h}"
    );
    assert!(h.contains(r#"name="/tags" value="y" checked"#), "{h}");
    assert!(h.contains(r#"name="/tags" value="x">"#), "{h}");
}

#[test]
fn optional_and_required_are_marked() {
    let s = obj(
        json!({"a": {"type": "string"}, "b": {"type": "string"}}),
        json!(["a"]),
    );
    let h = render(&s);
    assert!(h.contains(r#"A <span class="req">required</span>"#), "{h}");
    assert!(h.contains(r#"B <span class="opt">optional</span>"#), "{h}");
    assert!(
        h.contains(r#"name="/a" value="" aria-required="true""#),
        "{h}"
    );
}

#[test]
fn nested_objects_are_fieldsets() {
    let s = obj(
        json!({"address": obj(json!({"city": {"type": "string", "title": "City"}}), json!(["city"]))}),
        json!(["address"]),
    );
    let h = render(&s);
    assert!(
        h.contains(r#"<fieldset class="object" id="f1"><legend>Address"#),
        "{h}"
    );
    assert!(h.contains(r#"name="/address/city""#), "{h}");
}

#[test]
fn pointer_names_escape_tilde_and_slash() {
    let s = obj(json!({"a/b~c": {"type": "string"}}), json!([]));
    assert!(render(&s).contains(r#"name="/a~1b~0c""#));
    let v = parse(&s, &pairs(&[("/a~1b~0c", "x")])).unwrap();
    assert_eq!(v, json!({"a/b~c": "x"}));
}

#[test]
fn one_of_consts_with_titles_is_a_choice() {
    let s = obj(
        json!({"p": {"oneOf": [
            {"const": "lo", "title": "Low"}, {"const": "mid", "title": "Medium"},
            {"const": "hi", "title": "High"}, {"const": "crit", "title": "Critical"},
            {"const": "x", "title": "Extreme"}]}}),
        json!(["p"]),
    );
    let h = render(&s);
    assert!(h.contains(r#"<option value="mid">Medium</option>"#), "{h}");
}

#[test]
fn defaults_prefill() {
    let s = obj(
        json!({"n": {"type": "integer", "default": 3}, "c": {"enum": ["a", "b"], "default": "b"},
               "s": {"type": "string", "default": "hello"}}),
        json!(["n", "c", "s"]),
    );
    let h = render(&s);
    assert!(h.contains(r#"name="/n" value="3""#), "{h}");
    assert!(h.contains(r#"name="/c" value="b" checked"#), "{h}");
    assert!(h.contains(r#"name="/s" value="hello""#), "{h}");
}

#[test]
fn title_labels_and_description_hints_are_linked() {
    let s = obj(
        json!({"amt": {"type": "string", "title": "Amount", "description": "In euros"}}),
        json!([]),
    );
    let h = render(&s);
    assert!(h.contains(r#"<label for="f1">Amount"#), "{h}");
    assert!(
        h.contains(r#"<p class="hint" id="f1-hint">In euros</p>"#),
        "{h}"
    );
    assert!(h.contains(r#"aria-describedby="f1-hint""#), "{h}");
}

#[test]
fn local_refs_resolve() {
    let s = json!({
        "type": "object",
        "properties": {"c": {"$ref": "#/$defs/Color"}, "d": {"$ref": "#/definitions/D", "title": "Dee"}},
        "$defs": {"Color": {"enum": ["red", "green"], "title": "Colour"}},
        "definitions": {"D": {"type": "integer"}}
    });
    let h = render(&s);
    assert!(h.contains(r#"type="radio" name="/c" value="red""#), "{h}");
    assert!(h.contains("Colour"), "{h}");
    assert!(
        h.contains(r#"<label for="f2">Dee"#) && h.contains(r#"type="number" name="/d""#),
        "{h}"
    );
}

#[test]
fn pydantic_optional_is_a_nullable_field() {
    let s = obj(
        json!({"note": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": null, "title": "Note"}}),
        json!([]),
    );
    let h = render(&s);
    assert!(h.contains(r#"<textarea id="f1" name="/note""#), "{h}");
    assert_eq!(parse(&s, &pairs(&[("/note", "")])).unwrap(), json!({}));
    assert_eq!(
        parse(&s, &pairs(&[("/note", "x")])).unwrap(),
        json!({"note": "x"})
    );
}

#[test]
fn unsupported_shapes_fall_back_to_json_for_that_subtree() {
    let s = obj(
        json!({
            "rows": {"type": "array", "items": {"type": "object", "properties": {"a": {"type": "string"}}}},
            "free": {"type": "object"},
            "tuple": {"type": "array", "prefixItems": [{"type": "string"}]},
            "map": {"type": "object", "properties": {}, "additionalProperties": {"type": "integer"}},
            "plain": {"type": "string"},
        }),
        json!([]),
    );
    let h = render(&s);
    for n in ["/rows", "/free", "/tuple", "/map"] {
        assert!(h.contains(r#"class="code" id="#), "{h}");
        assert!(
            h.contains(&format!(r#"name="{n}" rows="5" spellcheck="false""#)),
            "{n}: {h}"
        );
    }
    assert_eq!(h.matches(r#"<textarea class="code""#).count(), 4, "{h}");
    assert!(h.contains(r#"type="text" name="/plain""#), "{h}");
    assert!(h.contains("Enter a JSON array as JSON."), "{h}");
}

#[test]
fn approval_schema_renders_approve_and_reject() {
    let s = obj(
        json!({"approved": {"type": "boolean", "title": "Refund 500 EUR?"}, "comment": {"type": "string"}}),
        json!(["approved"]),
    );
    assert!(is_approval(&s));
    let h = render(&s);
    let guard = h
        .find(r#"<button class="enter-guard" type="submit" disabled"#)
        .unwrap();
    let approve = h
        .find(r#"type="submit" name="/approved" value="true""#)
        .unwrap();
    let question = h.find("Refund 500 EUR?").unwrap();
    let comment = h.find(r#"name="/comment""#).unwrap();
    assert!(
        guard < question && question < comment && comment < approve,
        "{h}"
    );
    assert!(h.contains(r#"name="/approved" value="false""#), "{h}");
    assert!(!h.contains(r#"type="radio""#), "{h}");
    assert!(
        h.contains(r#"name="/comment""#) && h.contains("Refund 500 EUR?"),
        "{h}"
    );
    let v = parse(
        &s,
        &pairs(&[("csrf", "t"), ("/comment", ""), ("/approved", "false")]),
    );
    assert_eq!(v.unwrap(), json!({"approved": false}));
}

#[test]
fn not_approval_when_other_fields_are_required_or_not_text() {
    let two = obj(
        json!({"a": {"type": "boolean"}, "b": {"type": "boolean"}}),
        json!(["a", "b"]),
    );
    let optional_bool = obj(json!({"a": {"type": "boolean"}}), json!([]));
    let with_number = obj(
        json!({"a": {"type": "boolean"}, "n": {"type": "number"}}),
        json!(["a"]),
    );
    for s in [two, optional_bool, with_number, json!({"type": "boolean"})] {
        assert!(!is_approval(&s), "{s}");
    }
}

// --- Errors. ---

#[test]
fn a_field_error_is_inline_and_in_the_summary() {
    let s = obj(json!({"amount": {"type": "integer"}}), json!([]));
    let h = render_with(&s, None, &[err("/amount", "must be at least 1")]);
    assert!(
        h.contains(r#"aria-describedby="f1-rule f1-err" aria-invalid="true""#),
        "{h}"
    );
    assert!(
        h.contains(r#"<p class="field-error" id="f1-err">must be at least 1</p>"#),
        "{h}"
    );
    assert!(
        h.contains(r#"role="alert""#) && h.contains(r##"href="#f1""##),
        "{h}"
    );
}

#[test]
fn a_missing_required_property_goes_under_its_field() {
    let s = obj(
        json!({"ok": {"type": "boolean"}, "x": {"type": "string"}}),
        json!(["ok", "x"]),
    );
    // The validator's own words, so a change in them shows here.
    let errors = crate::schema::Schema::compile("response_schema", &s)
        .unwrap()
        .errors(&json!({"x": "a"}));
    assert_eq!(errors[0].path, "");
    let h = render_with(&s, None, &errors);
    assert!(
        h.contains(r#"<p class="field-error" id="f1-err">This field is required.</p>"#),
        "{h}"
    );
    assert!(
        h.contains(r##"<a href="#f1-0"><strong>Ok</strong>: This field is required.</a>"##),
        "{h}"
    );
}

#[test]
fn document_level_errors_are_only_in_the_summary() {
    let s = obj(json!({"a": {"type": "string"}}), json!([]));
    let h = render_with(&s, None, &[err("", "must not have additional properties")]);
    assert!(
        h.contains(r#"<div class="error-summary" role="alert""#),
        "{h}"
    );
    assert!(
        h.contains("<li>must not have additional properties</li>"),
        "{h}"
    );
    assert!(
        !h.contains("field-error") && !h.contains("aria-invalid"),
        "{h}"
    );
}

#[test]
fn an_error_inside_a_json_subtree_goes_under_its_textarea() {
    let s = obj(
        json!({"rows": {"type": "array", "items": {"type": "object"}}}),
        json!([]),
    );
    let h = render_with(&s, None, &[err("/rows/2/a", "is not a string")]);
    assert!(
        h.contains(r#"<p class="field-error" id="f1-err">is not a string</p>"#),
        "{h}"
    );
}

#[test]
fn an_error_under_an_unknown_path_links_to_the_nearest_field() {
    let s = obj(
        json!({"addr": obj(json!({"city": {"type": "string"}}), json!([]))}),
        json!([]),
    );
    let h = render_with(&s, None, &[err("/addr/zip", "unexpected")]);
    assert!(
        h.contains(r##"<li><a href="#f2"><strong>Addr</strong>: /addr/zip: unexpected</a></li>"##),
        "{h}"
    );
    assert!(!h.contains("field-error"), "{h}");
}

#[test]
fn no_errors_no_summary() {
    let s = obj(json!({"a": {"type": "string"}}), json!([]));
    assert!(!render(&s).contains("error-summary"));
}

// --- Values. ---

#[test]
fn values_prefill_instead_of_defaults() {
    let s = obj(
        json!({"a": {"type": "string", "default": "d"}, "b": {"type": "string", "default": "e"}}),
        json!([]),
    );
    let h = render_with(&s, Some(&json!({"a": "typed"})), &[]);
    assert!(h.contains(r#"name="/a" value="typed""#), "{h}");
    assert!(h.contains(r#"name="/b" value="""#), "{h}");
}

#[test]
fn posted_pairs_show_exactly_what_was_typed() {
    let s = obj(
        json!({"n": {"type": "integer"}, "j": {"type": "object"}}),
        json!([]),
    );
    let posted = pairs(&[("/n", "12x"), ("/j", "{oops")]);
    let state = FormState {
        values: Some(&json!({"n": 1})),
        errors: &[],
        posted: Some(&posted),
    };
    let h = fields(&s, &state).into_string();
    assert!(
        h.contains(r#"value="12x""#) && h.contains(">\n{oops</textarea>"),
        "{h}"
    );
}

// --- Parsing. ---

#[test]
fn parse_converts_numbers_and_reports_bad_text() {
    let s = obj(
        json!({"i": {"type": "integer"}, "x": {"type": "number"}}),
        json!([]),
    );
    let v = parse(&s, &pairs(&[("/i", " 42 "), ("/x", ".5")])).unwrap();
    assert_eq!(v, json!({"i": 42, "x": 0.5}));
    assert_eq!(
        parse(&s, &pairs(&[("/i", "3.0")])).unwrap(),
        json!({"i": 3})
    );
    let e = parse(&s, &pairs(&[("/i", "3.5"), ("/x", "abc")])).unwrap_err();
    assert_eq!(
        e,
        vec![
            err("/i", "enter a whole number"),
            err("/x", "enter a number")
        ]
    );
    for bad in ["NaN", "inf", "1e999", "1,5", "--1"] {
        assert!(parse(&s, &pairs(&[("/x", bad)])).is_err(), "{bad}");
    }
}

#[test]
fn parse_keeps_big_integers_exact() {
    let s = obj(json!({"i": {"type": "integer"}}), json!([]));
    let v = parse(&s, &pairs(&[("/i", "18446744073709551615")])).unwrap();
    assert_eq!(v, json!({"i": 18446744073709551615u64}));
}

#[test]
fn parse_ignores_names_not_starting_with_a_slash_and_unknown_names() {
    let s = obj(json!({"a": {"type": "string"}}), json!([]));
    let v = parse(
        &s,
        &pairs(&[("csrf", "t"), ("a", "no"), ("/zzz", "no"), ("/a", "yes")]),
    );
    assert_eq!(v.unwrap(), json!({"a": "yes"}));
}

#[test]
fn parse_omits_empty_optional_fields_and_keeps_empty_required_strings() {
    let s = obj(
        json!({"r": {"type": "string"}, "o": {"type": "string"}, "n": {"type": "number"},
               "c": {"enum": ["a", "b", "c", "d", "e"]}}),
        json!(["r"]),
    );
    let p = pairs(&[("/r", ""), ("/o", ""), ("/n", ""), ("/c", "")]);
    assert_eq!(parse(&s, &p).unwrap(), json!({"r": ""}));
}

#[test]
fn parse_booleans() {
    let s = obj(
        json!({"r": {"type": "boolean"}, "o": {"type": "boolean"}}),
        json!(["r"]),
    );
    let p = pairs(&[("/r", "false"), ("/o", "false"), ("/o", "true")]);
    assert_eq!(parse(&s, &p).unwrap(), json!({"r": false, "o": true}));
    let p = pairs(&[("/o", "false")]);
    assert_eq!(parse(&s, &p).unwrap(), json!({"o": false}));
    let e = parse(&s, &pairs(&[("/r", "maybe")])).unwrap_err();
    assert_eq!(e, vec![err("/r", "choose yes or no")]);
}

#[test]
fn parse_json_fallback_reports_syntax_errors() {
    let s = obj(
        json!({"j": {"type": "array", "items": {"type": "object"}}}),
        json!([]),
    );
    let v = parse(&s, &pairs(&[("/j", "[{\"a\": 1}]")])).unwrap();
    assert_eq!(v, json!({"j": [{"a": 1}]}));
    let e = parse(&s, &pairs(&[("/j", "[{")])).unwrap_err();
    assert_eq!(e[0].path, "/j");
    assert!(e[0].message.starts_with("not valid JSON"), "{e:?}");
}

#[test]
fn parse_datetime_local_as_utc() {
    let s = obj(
        json!({"t": {"type": "string", "format": "date-time"}}),
        json!([]),
    );
    let v = parse(&s, &pairs(&[("/t", "2024-05-01T10:30")])).unwrap();
    assert_eq!(v, json!({"t": "2024-05-01T10:30:00Z"}));
    let v = parse(&s, &pairs(&[("/t", "2024-05-01T10:30:00+02:00")])).unwrap();
    assert_eq!(v, json!({"t": "2024-05-01T10:30:00+02:00"}));
    assert_eq!(
        parse(&s, &pairs(&[("/t", "soon")])).unwrap_err()[0].path,
        "/t"
    );
}

#[test]
fn parse_date_checks_the_shape() {
    let s = obj(
        json!({"d": {"type": "string", "format": "date"}}),
        json!([]),
    );
    assert_eq!(
        parse(&s, &pairs(&[("/d", "2024-02-29")])).unwrap(),
        json!({"d": "2024-02-29"})
    );
    assert!(parse(&s, &pairs(&[("/d", "2023-02-29")])).is_err());
}

#[test]
fn parse_omits_an_untouched_optional_object() {
    let inner = obj(
        json!({"city": {"type": "string"}, "zip": {"type": "string"}}),
        json!(["city"]),
    );
    let s = obj(json!({"addr": inner}), json!([]));
    let p = pairs(&[("/addr/city", ""), ("/addr/zip", "")]);
    assert_eq!(parse(&s, &p).unwrap(), json!({}));
    let p = pairs(&[("/addr/city", ""), ("/addr/zip", "1000")]);
    assert_eq!(
        parse(&s, &p).unwrap(),
        json!({"addr": {"city": "", "zip": "1000"}})
    );
}

#[test]
fn parse_textarea_line_endings() {
    let s = obj(
        json!({"c": {"type": "string", "maxLength": 1000}}),
        json!([]),
    );
    let v = parse(&s, &pairs(&[("/c", "a\r\nb")])).unwrap();
    assert_eq!(v, json!({"c": "a\nb"}));
}

#[test]
fn a_root_that_is_not_an_object_posts_as_slash() {
    let s = json!({"type": "integer"});
    assert!(render(&s).contains(r#"name="/""#));
    assert_eq!(parse(&s, &pairs(&[("/", "7")])).unwrap(), json!(7));
    assert_eq!(parse(&s, &[]).unwrap_err()[0].path, "");
}

// --- Round trips: what the form posts for `v` parses back to `v`. ---

fn round_trip_cases() -> Vec<(Value, Vec<Value>)> {
    let everything = json!({
        "type": "object",
        "required": ["name", "ok", "level", "n", "when", "kind", "addr", "tags"],
        "properties": {
            "name": {"type": "string", "maxLength": 40},
            "essay": {"type": "string", "maxLength": 5000},
            "ok": {"type": "boolean"},
            "notify": {"type": "boolean"},
            "level": {"enum": ["low", "mid", "high"]},
            "size": {"enum": ["xs", "s", "m", "l", "xl", "xxl"]},
            "n": {"type": "integer", "minimum": 0},
            "x": {"type": "number"},
            "mixed": {"enum": [1, "1", true, null, {"a": 1}]},
            "when": {"type": "string", "format": "date-time"},
            "day": {"type": "string", "format": "date"},
            "kind": {"const": "refund"},
            "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}},
            "nums": {"type": "array", "items": {"enum": [1, 2, 3]}},
            "addr": {"$ref": "#/$defs/Addr"},
            "rows": {"type": "array", "items": {"type": "object"}},
            "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        },
        "$defs": {"Addr": {"type": "object", "required": ["city"], "properties": {
            "city": {"type": "string"}, "zip": {"type": "string"}}}}
    });
    let full = json!({
        "name": "Ada <b>", "essay": "line 1\n\nline 3\n", "ok": false, "notify": true,
        "level": "mid", "size": "xl", "n": 0, "x": -2.5, "mixed": {"a": 1},
        "when": "2024-05-01T10:30:00.250Z", "day": "2024-02-29", "kind": "refund",
        "tags": ["a", "c"], "nums": [2], "addr": {"city": "Paris", "zip": "75001"},
        "rows": [{"a": [1, {"b": null}]}], "note": "n"
    });
    let minimal = json!({
        "name": "", "ok": true, "level": "low", "n": 7, "when": "1999-12-31T23:59:59Z",
        "kind": "refund", "addr": {"city": ""}, "tags": [], "notify": false
    });
    let mixed_values: Vec<Value> = [json!(1), json!("1"), json!(true), json!(null)]
        .into_iter()
        .map(|m| {
            let mut v = minimal.clone();
            v["mixed"] = m;
            v
        })
        .collect();
    let approval = obj(
        json!({"approved": {"type": "boolean"}, "reason": {"type": "string"}}),
        json!(["approved"]),
    );
    let scalar = json!({"type": "number"});
    let free = json!(true);
    let mut cases = vec![
        (everything.clone(), vec![full, minimal]),
        (
            approval,
            vec![
                json!({"approved": true}),
                json!({"approved": false, "reason": "no"}),
            ],
        ),
        (scalar, vec![json!(1.5), json!(-3)]),
        (
            free,
            vec![json!({"any": ["thing"]}), json!("s"), json!(null)],
        ),
    ];
    cases.push((everything, mixed_values));
    cases
}

#[test]
fn parse_inverts_encode() {
    for (schema, values) in round_trip_cases() {
        let root = build(&schema);
        for v in values {
            let posted = encoded(&root, Some(&v));
            assert_eq!(
                parse(&schema, &posted).as_ref(),
                Ok(&v),
                "{schema} {posted:?}"
            );
        }
    }
}

#[test]
fn the_rendered_form_posts_back_its_values() {
    for (schema, values) in round_trip_cases() {
        let approval = approval_key(&build(&schema)).map(|k| child_ptr("", k));
        for v in values {
            let h = render_with(&schema, Some(&v), &[]);
            let mut posted = submit(&h);
            if let Some(ptr) = &approval {
                // The reviewer clicks the button matching the value.
                posted.push((ptr.clone(), v[&ptr[1..]].to_string()));
            }
            assert_eq!(parse(&schema, &posted).as_ref(), Ok(&v), "{h}\n{posted:?}");
        }
    }
}

// --- Odd input never panics. ---

fn deep(n: usize) -> Value {
    let mut s = json!({"type": "string"});
    for _ in 0..n {
        s = json!({"type": "object", "properties": {"a": s}, "required": ["a"]});
    }
    s
}

fn odd_schemas() -> Vec<Value> {
    let huge: Vec<Value> = (0..20_000).map(|i| json!(format!("opt{i}"))).collect();
    let wide_refs = json!({
        "$ref": "#/$defs/l0",
        "$defs": (0..12).map(|i| (format!("l{i}"), json!({"type": "object", "properties":
            (0..12).map(|j| (format!("p{j}"), json!({"$ref": format!("#/$defs/l{}", i + 1)})))
            .collect::<Map<String, Value>>()}))).collect::<Map<String, Value>>()
    });
    vec![
        json!(true),
        json!(false),
        json!({}),
        json!(null),
        json!(42),
        json!("string"),
        json!([1, 2]),
        json!({"$ref": "#"}),
        json!({"$ref": "#/nope"}),
        json!({"$ref": 5}),
        json!({"$ref": "http://example.com/x"}),
        json!({"$defs": {"n": {"type": "object", "properties": {"next": {"$ref": "#/$defs/n"}}}},
               "$ref": "#/$defs/n"}),
        json!({"allOf": [{"$ref": "#"}]}),
        json!({"type": "object", "properties": 5, "required": "x"}),
        json!({"type": "object", "properties": {"a": 5, "b": null, "c": []}, "required": [1, null]}),
        json!({"type": 7, "enum": [], "anyOf": 3}),
        json!({"type": ["string", "integer", "null"]}),
        json!({"type": ["null"]}),
        json!({"type": "integer", "minimum": "a", "maximum": 1e308, "multipleOf": -1}),
        json!({"type": "number", "exclusiveMinimum": true, "exclusiveMaximum": true}),
        json!({"type": "array", "items": [{"type": "string"}]}),
        json!({"anyOf": []}),
        json!({"oneOf": [{"type": "null"}]}),
        json!({"enum": huge}),
        json!({"type": "array", "items": {"enum": huge}}),
        deep(40),
        wide_refs,
    ]
}

fn odd_values() -> Vec<Value> {
    vec![
        json!(null),
        json!(1),
        json!("x"),
        json!([1, [2, [3]]]),
        json!({"a": {"a": {"a": 1}}, "next": "x", "p0": [], "": 1}),
    ]
}

#[test]
fn odd_schemas_and_values_never_panic() {
    for s in odd_schemas() {
        let _ = render(&s);
        let _ = is_approval(&s);
        for v in odd_values() {
            let errs = [
                err("", "x"),
                err("/a", "y"),
                err("/a/b/c", "z"),
                err("~", "w"),
            ];
            let _ = render_with(&s, Some(&v), &errs);
            let posted = encoded(&build(&s), Some(&v));
            let _ = parse(&s, &posted);
        }
        let junk = pairs(&[("/", "{"), ("/a", "x"), ("/a/a", ""), ("/opt1", "opt1")]);
        let _ = parse(&s, &junk);
    }
}

#[test]
fn recursion_and_width_are_bounded() {
    let recursive = json!({"$defs": {"n": {"type": "object", "properties": {"next": {"$ref": "#/$defs/n"}}}},
                           "$ref": "#/$defs/n"});
    let h = render(&recursive);
    assert!(h.matches("<fieldset").count() <= MAX_DEPTH, "{h}");
    assert!(h.contains("as JSON"), "the innermost level falls back: {h}");
    let wide = odd_schemas().pop().unwrap();
    let h = render(&wide);
    assert!(h.matches(" name=\"/").count() <= MAX_NODES + 1);
}

// --- Escaping. ---

#[test]
fn schema_text_is_escaped() {
    let x = r#"<script>alert(1)</script>"><img src=x onerror=alert(1)>"#;
    let s = obj(
        json!({x: {"title": x, "description": x, "enum": [x, "b", "c", "d", "e"], "default": x},
               "r": {"enum": [x]}, "k": {"const": x}}),
        json!([]),
    );
    let h = render_with(&s, None, &[err(x, x)]);
    assert!(!h.contains("<script") && !h.contains("<img"), "{h}");
    assert!(
        h.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&gt;&lt;img"),
        "{h}"
    );
}
