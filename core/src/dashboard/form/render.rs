//! The form's HTML ([`fields`]): one control per node, labels, hints, inline errors.

use std::collections::HashMap;

use maud::{Markup, html};
use serde_json::Value;

use super::encode::{Pairs, defaults, encode};
use super::errors::{Registry, error_summary, place};
use super::parse::parse_bool;
use super::schema::{approval_key, build, child_ptr, display, name_of};
use super::{Bounds, Kind, Node, Options, Posted, Prop, RADIO_MAX};
use crate::dashboard::view::FormState;

/// The answer form's inputs for `schema` (the page wraps them in the `<form>` with the CSRF
/// field and, unless [`is_approval`], a submit button). Shows `state.posted`, else
/// `state.values`, else the schema's defaults; field errors inline under their fields, and
/// all errors in a summary (role=alert) that links to the fields.
pub fn fields(schema: &Value, state: &FormState) -> Markup {
    let root = build(schema);
    let approval = approval_key(&root).map(|k| child_ptr("", k));
    let reg = Registry::new(&root, approval.as_deref());
    let pairs: Pairs = match (state.posted, state.values) {
        (Some(p), _) => p.to_vec(),
        (None, Some(v)) => encoded(&root, Some(v)),
        (None, None) => encoded(&root, defaults(&root).as_ref()),
    };
    let posted = Posted::new(&pairs);
    let (inline, summary) = place(state.errors, &reg);
    let r = Render {
        reg: &reg,
        posted: &posted,
        inline: &inline,
    };
    html! {
        @if !summary.is_empty() { (error_summary(&summary)) }
        @if approval.is_some() {
            // The first submit button is the one Enter "clicks": a disabled one makes Enter
            // do nothing, so only a deliberate Approve or Reject submits.
            button.enter-guard type="submit" disabled hidden aria-hidden="true" tabindex="-1" {}
        }
        @match &root.kind {
            Kind::Object(props) => {
                @let approval_prop = props.iter().find(|p| Some(child_ptr("", &p.key)) == approval);
                @if let (Some(p), Some(ptr)) = (approval_prop, &approval) {
                    (r.approval_question(&p.node, ptr))
                }
                @for p in props.iter().filter(|p| Some(child_ptr("", &p.key)) != approval) {
                    (r.node(&p.node, &child_ptr("", &p.key), p.required))
                }
                @if let (Some(p), Some(ptr)) = (approval_prop, &approval) {
                    (r.approval_buttons(&p.node, ptr))
                }
            }
            _ => (r.node(&root, "", true)),
        }
    }
}

pub(super) fn encoded(root: &Node, v: Option<&Value>) -> Pairs {
    let mut out = Vec::new();
    encode(root, "", v, true, &mut out);
    out
}

struct Render<'a> {
    reg: &'a Registry,
    posted: &'a Posted<'a>,
    inline: &'a HashMap<String, Vec<String>>,
}

/// The ids a control is described by, space separated.
fn describedby(ids: &[Option<String>]) -> Option<String> {
    let v: Vec<&str> = ids.iter().flatten().map(String::as_str).collect();
    (!v.is_empty()).then(|| v.join(" "))
}

impl Render<'_> {
    fn node(&self, node: &Node, ptr: &str, required: bool) -> Markup {
        let Some(entry) = self.reg.get(ptr) else {
            return html! {};
        };
        let f = FieldCtx {
            node,
            ptr,
            name: name_of(ptr),
            id: &entry.id,
            required,
            errors: self.inline.get(ptr).map(Vec::as_slice).unwrap_or(&[]),
        };
        match &node.kind {
            Kind::Object(props) => self.object(&f, props),
            Kind::Text {
                input,
                multiline,
                max_len,
            } => self.text(&f, input, *multiline, *max_len),
            Kind::DateTime => self.datetime(&f),
            Kind::Number(b) => self.number(&f, b),
            Kind::Bool if required => self.yes_no(&f),
            Kind::Bool => self.checkbox(&f),
            Kind::Choice(o) if o.items.len() <= RADIO_MAX => self.radios(&f, o),
            Kind::Choice(o) => self.select(&f, o),
            Kind::Multi(o) => self.checkboxes(&f, o),
            Kind::Const(c) => const_field(&f, c),
            Kind::Json { expect } => self.json(&f, expect),
        }
    }

    fn value(&self, ptr: &str) -> &str {
        self.posted.last(ptr).unwrap_or("")
    }

    fn object(&self, f: &FieldCtx, props: &[Prop]) -> Markup {
        html! {
            fieldset.object id=(f.id) aria-describedby=[f.describedby(None)] {
                legend { (f.node.label) (marker(f.required)) }
                (f.hint())
                @for p in props {
                    (self.node(&p.node, &child_ptr(f.ptr, &p.key), p.required))
                }
                (f.error_list())
            }
        }
    }

    fn text(&self, f: &FieldCtx, input: &str, multiline: bool, max_len: Option<u64>) -> Markup {
        let v = self.value(f.ptr);
        html! {
            div.field {
                (f.label())
                (f.hint())
                @if multiline || v.contains('\n') {
                    // The newline after the tag is eaten by the HTML parser, so a value's own
                    // leading newline survives.
                    textarea id=(f.id) name=(f.name) rows=(rows(v, 4)) maxlength=[max_len]
                        aria-describedby=[f.describedby(None)] aria-invalid=[f.invalid()]
                        aria-required=[f.aria_required()] { "\n" (v) }
                } @else {
                    input id=(f.id) type=(input) name=(f.name) value=(v) maxlength=[max_len]
                        aria-describedby=[f.describedby(None)] aria-invalid=[f.invalid()]
                        aria-required=[f.aria_required()];
                }
                (f.error_list())
            }
        }
    }

    fn datetime(&self, f: &FieldCtx) -> Markup {
        let rule = format!("{}-rule", f.id);
        html! {
            div.field {
                (f.label())
                (f.hint())
                p.hint id=(rule) { "Date and time in UTC." }
                input id=(f.id) type="datetime-local" step="1" name=(f.name) value=(self.value(f.ptr))
                    aria-describedby=[f.describedby(Some(&rule))] aria-invalid=[f.invalid()]
                    aria-required=[f.aria_required()];
                (f.error_list())
            }
        }
    }

    fn number(&self, f: &FieldCtx, b: &Bounds) -> Markup {
        let rule_id = format!("{}-rule", f.id);
        let rule = bounds_text(b);
        let min = b
            .min
            .or_else(|| b.excl_min.filter(|_| b.integer).map(|m| m.floor() + 1.0));
        let max = b
            .max
            .or_else(|| b.excl_max.filter(|_| b.integer).map(|m| m.ceil() - 1.0));
        let step = match (b.multiple_of, b.integer) {
            (Some(s), true) if s.fract() == 0.0 => num(s),
            (_, true) => "1".into(),
            (Some(s), false) => num(s),
            (None, false) => "any".into(),
        };
        html! {
            div.field {
                (f.label())
                (f.hint())
                p.hint id=(rule_id) { (rule) }
                input.num id=(f.id) type="number" name=(f.name) value=(self.value(f.ptr))
                    step=(step) min=[min.map(num)] max=[max.map(num)]
                    inputmode=(if b.integer { "numeric" } else { "decimal" })
                    aria-describedby=[f.describedby(Some(&rule_id))] aria-invalid=[f.invalid()]
                    aria-required=[f.aria_required()];
                (f.error_list())
            }
        }
    }

    fn yes_no(&self, f: &FieldCtx) -> Markup {
        let cur = self.value(f.ptr);
        self.group(
            f,
            "radio",
            &[("true", "Yes"), ("false", "No")],
            |v| cur == v,
            "choices inline",
        )
    }

    fn radios(&self, f: &FieldCtx, o: &Options) -> Markup {
        let cur = self.value(f.ptr);
        let mut items: Vec<(String, String)> = o
            .items
            .iter()
            .map(|(v, l)| (o.encode(v), l.clone()))
            .collect();
        if !f.required {
            items.push((String::new(), "No answer".into()));
        }
        let items: Vec<(&str, &str)> = items
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        self.group(f, "radio", &items, |v| cur == v, "choices")
    }

    fn checkboxes(&self, f: &FieldCtx, o: &Options) -> Markup {
        let all = self.posted.all(f.ptr);
        let items: Vec<(String, String)> = o
            .items
            .iter()
            .map(|(v, l)| (o.encode(v), l.clone()))
            .collect();
        let items: Vec<(&str, &str)> = items
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        self.group(f, "checkbox", &items, |v| all.contains(&v), "choices")
    }

    /// A fieldset of radios or checkboxes sharing one name.
    fn group(
        &self,
        f: &FieldCtx,
        ty: &str,
        items: &[(&str, &str)],
        checked: impl Fn(&str) -> bool,
        class: &str,
    ) -> Markup {
        html! {
            fieldset.field.group id=(f.id) role=[(ty == "radio").then_some("radiogroup")]
                aria-describedby=[f.describedby(None)] aria-required=[f.aria_required()] {
                legend { (f.node.label) (marker(f.required)) }
                (f.hint())
                div class=(class) {
                    @for (i, (value, label)) in items.iter().enumerate() {
                        label.choice {
                            input id=(format!("{}-{i}", f.id)) type=(ty) name=(f.name) value=(value)
                                checked[checked(value)] aria-invalid=[f.invalid()];
                            span { (label) }
                        }
                    }
                }
                (f.error_list())
            }
        }
    }

    fn checkbox(&self, f: &FieldCtx) -> Markup {
        let on = self
            .posted
            .all(f.ptr)
            .iter()
            .any(|s| parse_bool(s) == Some(true));
        html! {
            div.field.check {
                // Unchecked boxes post nothing: the hidden `false` makes "unchecked" an answer.
                input type="hidden" name=(f.name) value="false";
                label.choice for=(f.id) {
                    input id=(f.id) type="checkbox" name=(f.name) value="true" checked[on]
                        aria-describedby=[f.describedby(None)] aria-invalid=[f.invalid()];
                    span { (f.node.label) (marker(false)) }
                }
                (f.hint())
                (f.error_list())
            }
        }
    }

    fn select(&self, f: &FieldCtx, o: &Options) -> Markup {
        let cur = self.value(f.ptr);
        html! {
            div.field {
                (f.label())
                (f.hint())
                select id=(f.id) name=(f.name) aria-describedby=[f.describedby(None)]
                    aria-invalid=[f.invalid()] aria-required=[f.aria_required()] {
                    option value="" selected[cur.is_empty()] {
                        @if f.required { "Choose…" } @else { "No answer" }
                    }
                    @for (v, label) in &o.items {
                        @let enc = o.encode(v);
                        option value=(enc) selected[enc == cur] { (label) }
                    }
                }
                (f.error_list())
            }
        }
    }

    fn json(&self, f: &FieldCtx, expect: &str) -> Markup {
        let v = self.value(f.ptr);
        let rule = format!("{}-rule", f.id);
        html! {
            div.field.json {
                (f.label())
                (f.hint())
                p.hint id=(rule) { "Enter " (expect) " as JSON." }
                textarea.code id=(f.id) name=(f.name) rows=(rows(v, 5)) spellcheck="false"
                    aria-describedby=[f.describedby(Some(&rule))] aria-invalid=[f.invalid()]
                    aria-required=[f.aria_required()] { "\n" (v) }
                (f.error_list())
            }
        }
    }

    fn approval_ctx<'b>(&'b self, node: &'b Node, ptr: &'b str) -> Option<FieldCtx<'b>> {
        let entry = self.reg.get(ptr)?;
        Some(FieldCtx {
            node,
            ptr,
            name: name_of(ptr),
            id: &entry.id,
            required: true,
            errors: self.inline.get(ptr).map(Vec::as_slice).unwrap_or(&[]),
        })
    }

    /// The approval's question (the boolean's title and description), above the text fields.
    fn approval_question(&self, node: &Node, ptr: &str) -> Markup {
        let Some(f) = self.approval_ctx(node, ptr) else {
            return html! {};
        };
        html! {
            div.approval id=(f.id) {
                p.question id=(format!("{}-q", f.id)) { (node.label) }
                (f.hint())
                (f.error_list())
            }
        }
    }

    /// Approve / Reject: submit buttons posting the boolean.
    fn approval_buttons(&self, node: &Node, ptr: &str) -> Markup {
        let Some(f) = self.approval_ctx(node, ptr) else {
            return html! {};
        };
        let described = describedby(&[Some(format!("{}-q", f.id)), f.hint_id(), f.err_id()]);
        html! {
            div.actions {
                button.btn.approve id="answer-approve" type="submit" name=(f.name) value="true"
                    aria-describedby=[described.clone()] { "Approve" }
                button.btn.reject id="answer-reject" type="submit" name=(f.name) value="false"
                    aria-describedby=[described] { "Reject" }
            }
        }
    }
}

fn const_field(f: &FieldCtx, c: &Value) -> Markup {
    html! {
        div.field.const id=(f.id) {
            span.label { (f.node.label) }
            output { (display(c)) }
            input type="hidden" name=(f.name) value=(c.to_string());
            (f.hint())
            (f.error_list())
        }
    }
}

/// What every control needs to know about itself.
struct FieldCtx<'a> {
    node: &'a Node,
    ptr: &'a str,
    name: &'a str,
    id: &'a str,
    required: bool,
    errors: &'a [String],
}

impl FieldCtx<'_> {
    fn hint_id(&self) -> Option<String> {
        self.node.hint.as_ref().map(|_| format!("{}-hint", self.id))
    }

    fn err_id(&self) -> Option<String> {
        (!self.errors.is_empty()).then(|| format!("{}-err", self.id))
    }

    fn describedby(&self, extra: Option<&str>) -> Option<String> {
        describedby(&[self.hint_id(), extra.map(str::to_string), self.err_id()])
    }

    fn invalid(&self) -> Option<&'static str> {
        (!self.errors.is_empty()).then_some("true")
    }

    fn aria_required(&self) -> Option<&'static str> {
        self.required.then_some("true")
    }

    fn label(&self) -> Markup {
        html! { label for=(self.id) { (self.node.label) (marker(self.required)) } }
    }

    fn hint(&self) -> Markup {
        html! {
            @if let (Some(h), Some(id)) = (&self.node.hint, self.hint_id()) {
                p.hint id=(id) { (h) }
            }
        }
    }

    fn error_list(&self) -> Markup {
        html! {
            @if let Some(id) = self.err_id() {
                p.field-error id=(id) {
                    @for (i, e) in self.errors.iter().enumerate() {
                        @if i > 0 { br; }
                        (e)
                    }
                }
            }
        }
    }
}

fn marker(required: bool) -> Markup {
    html! {
        @if required { " " span.req { "required" } } @else { " " span.opt { "optional" } }
    }
}

fn rows(v: &str, min: usize) -> usize {
    (v.lines().count() + 1).clamp(min, 20)
}

/// A bound as text: `3`, not `3.0`.
fn num(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

/// "A whole number from 1 to 10, in steps of 5."
fn bounds_text(b: &Bounds) -> String {
    let mut parts = vec![
        if b.integer {
            "A whole number"
        } else {
            "A number"
        }
        .to_string(),
    ];
    match (b.min, b.max) {
        (Some(lo), Some(hi)) => parts.push(format!("from {} to {}", num(lo), num(hi))),
        (Some(lo), None) => parts.push(format!("of at least {}", num(lo))),
        (None, Some(hi)) => parts.push(format!("of at most {}", num(hi))),
        (None, None) => {}
    }
    if let Some(x) = b.excl_min {
        parts.push(format!("more than {}", num(x)));
    }
    if let Some(x) = b.excl_max {
        parts.push(format!("less than {}", num(x)));
    }
    if let Some(s) = b.multiple_of {
        parts.push(format!("in steps of {}", num(s)));
    }
    format!("{}.", parts.join(", "))
}
