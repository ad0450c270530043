//! Field ids, and where each field error is shown: inline under its field and in the
//! summary that links to it.

use std::collections::HashMap;

use maud::{Markup, html};

use super::schema::child_ptr;
use super::{Kind, Node, RADIO_MAX};
use crate::error::FieldError;

/// One control (or fieldset) of the form, as located by error links.
pub(super) struct Entry {
    pub(super) id: String,
    /// What a link to the field focuses (the first radio of a group, the Approve button).
    pub(super) focus: String,
    pub(super) label: String,
    pub(super) leaf: bool,
}

/// Every field's pointer, in form order, with deterministic ids (`f1`, `f2` ...).
pub(super) struct Registry {
    by_ptr: HashMap<String, Entry>,
}

impl Registry {
    pub(super) fn new(root: &Node, approval: Option<&str>) -> Registry {
        let mut reg = Registry {
            by_ptr: HashMap::new(),
        };
        let mut n = 0;
        match &root.kind {
            Kind::Object(props) => {
                for p in props {
                    reg.add(&p.node, &child_ptr("", &p.key), &mut n, p.required);
                }
            }
            _ => {
                reg.add(root, "", &mut n, true);
            }
        }
        if let Some(e) = approval.and_then(|p| reg.by_ptr.get_mut(p)) {
            e.focus = "answer-approve".into();
        }
        reg
    }

    /// Registers a node and its descendants; returns the node's focus id.
    fn add(&mut self, node: &Node, ptr: &str, n: &mut usize, required: bool) -> String {
        *n += 1;
        let id = format!("f{n}");
        let (focus, leaf) = match &node.kind {
            Kind::Object(props) => {
                let first: Vec<String> = props
                    .iter()
                    .map(|p| self.add(&p.node, &child_ptr(ptr, &p.key), n, p.required))
                    .collect();
                (
                    first.into_iter().next().unwrap_or_else(|| id.clone()),
                    false,
                )
            }
            Kind::Multi(_) => (format!("{id}-0"), true),
            Kind::Choice(o) if o.items.len() <= RADIO_MAX => (format!("{id}-0"), true),
            Kind::Bool if required => (format!("{id}-0"), true),
            _ => (id.clone(), true),
        };
        self.by_ptr.insert(
            ptr.to_string(),
            Entry {
                id,
                focus: focus.clone(),
                label: node.label.clone(),
                leaf,
            },
        );
        focus
    }

    pub(super) fn get(&self, ptr: &str) -> Option<&Entry> {
        self.by_ptr.get(ptr)
    }
}

/// One line of the error summary: the message, and the field it is about (if any).
pub(super) struct SummaryItem<'a> {
    message: String,
    field: Option<&'a Entry>,
}

/// Sorts errors: inline under a field when the path is that field (or inside a checkbox
/// group or JSON textarea, or a missing required property of a shown field); every error is
/// also listed in the summary, linked to its field or the nearest enclosing one.
pub(super) fn place<'a>(
    errors: &[FieldError],
    reg: &'a Registry,
) -> (HashMap<String, Vec<String>>, Vec<SummaryItem<'a>>) {
    let mut inline: HashMap<String, Vec<String>> = HashMap::new();
    let mut summary = Vec::new();
    for e in errors {
        let (target, message) = locate(e, reg);
        match target {
            Some(ptr) => {
                inline.entry(ptr.clone()).or_default().push(message.clone());
                summary.push(SummaryItem {
                    message,
                    field: reg.get(&ptr),
                });
            }
            None => summary.push(SummaryItem {
                message: if e.path.is_empty() {
                    e.message.clone()
                } else {
                    format!("{}: {}", e.path, e.message)
                },
                field: ancestors(&e.path).find_map(|p| reg.get(p)),
            }),
        }
    }
    (inline, summary)
}

/// The field an error belongs under, and the message to show there.
fn locate(e: &FieldError, reg: &Registry) -> (Option<String>, String) {
    if let Some(name) = missing_property(&e.message) {
        let ptr = child_ptr(&e.path, &name);
        if reg.get(&ptr).is_some() {
            return (Some(ptr), "This field is required.".into());
        }
    }
    if reg.get(&e.path).is_some() {
        return (Some(e.path.clone()), e.message.clone());
    }
    let inside_leaf = ancestors(&e.path).find(|p| reg.get(p).is_some_and(|x| x.leaf));
    (inside_leaf.map(str::to_string), e.message.clone())
}

/// The name in the validator's `"name" is a required property`.
fn missing_property(message: &str) -> Option<String> {
    let quoted = message.strip_suffix(" is a required property")?;
    serde_json::from_str::<String>(quoted).ok()
}

/// `/a/b/c` -> `/a/b`, `/a` (proper ancestors, nearest first; not the root).
fn ancestors(ptr: &str) -> impl Iterator<Item = &str> {
    let mut cur = ptr;
    std::iter::from_fn(move || {
        let i = cur.rfind('/')?;
        cur = &cur[..i];
        (!cur.is_empty()).then_some(cur)
    })
}

pub(super) fn error_summary(items: &[SummaryItem]) -> Markup {
    html! {
        div.error-summary role="alert" tabindex="-1" id="answer-errors" {
            h2 { "The answer was not accepted" }
            ul {
                @for item in items {
                    li {
                        @match item.field {
                            Some(f) => a href=(format!("#{}", f.focus)) {
                                strong { (f.label) } ": " (item.message)
                            },
                            None => (item.message),
                        }
                    }
                }
            }
        }
    }
}
