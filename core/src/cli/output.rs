//! What the commands print: tasks, task lists, audit trails, and the table and text helpers.

use std::io::{self, Write};

use serde_json::Value;

use super::failure::field_error_lines;
use super::schema_summary::schema_summary;
use super::{Failure, fail};
use crate::audit;
use crate::error::FieldError;
use crate::model::{AuditEvent, ListFilter, Page, Status, Task, format_ms};
use crate::schema::canonical_json;

pub(super) fn write_json<T: serde::Serialize>(
    out: &mut dyn Write,
    value: &T,
) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| fail("internal", format!("cannot encode the output as JSON: {e}")))?;
    writeln!(out, "{text}")?;
    Ok(())
}

pub(super) fn write_list(out: &mut dyn Write, page: &Page, filter: &ListFilter) -> io::Result<()> {
    if page.items.is_empty() {
        let what = match filter.status {
            Some(s) => format!("no {s} tasks"),
            None => "no tasks".to_string(),
        };
        let r#where = match &filter.namespace {
            Some(ns) => format!(" in namespace {ns}"),
            None => String::new(),
        };
        let prefix = match &filter.key_prefix {
            Some(p) => format!(" with a key starting {p:?}"),
            None => String::new(),
        };
        return writeln!(out, "{what}{where}{prefix}");
    }
    let all = filter.namespace.is_none();
    let mut headers = vec!["ID", "STATUS"];
    if all {
        headers.push("NAMESPACE");
    }
    headers.extend(["KEY", "TITLE", "CREATED", "DEADLINE/ANSWERED BY"]);
    let rows: Vec<Vec<String>> = page
        .items
        .iter()
        .map(|t| {
            let mut row = vec![t.id.to_string(), t.status.to_string()];
            if all {
                row.push(t.namespace.clone());
            }
            let key = if t.key == t.id.to_string() {
                "-".to_string()
            } else {
                one_line(&t.key, 32)
            };
            row.extend([
                key,
                one_line(&t.title, 40),
                format_ms(t.created_at),
                outcome_cell(t),
            ]);
            row
        })
        .collect();
    write_table(out, &headers, &rows)?;
    if let Some(cursor) = &page.next_cursor {
        writeln!(out)?;
        writeln!(out, "more tasks: add --cursor {cursor}")?;
    }
    Ok(())
}

/// The last list column: the deadline while a task waits, who ended it once it has ended.
fn outcome_cell(t: &Task) -> String {
    let deadline = || t.deadline.map(format_ms).unwrap_or_else(|| "-".into());
    match t.status {
        Status::Pending | Status::TimedOut => deadline(),
        Status::Completed | Status::VerificationExhausted => t
            .answered_by
            .as_deref()
            .map(|b| one_line(b, 32))
            .unwrap_or_else(|| "-".into()),
        Status::Cancelled => t
            .cancelled_by
            .as_deref()
            .map(|b| one_line(b, 32))
            .unwrap_or_else(|| "-".into()),
    }
}

pub(super) fn write_task(out: &mut dyn Write, t: &Task, now: i64) -> io::Result<()> {
    writeln!(out, "{}", t.title)?;
    writeln!(out)?;
    let mut fields: Vec<(&str, String)> = vec![
        ("id", t.id.to_string()),
        ("status", t.status.to_string()),
        ("namespace", t.namespace.clone()),
        (
            "key",
            if t.key == t.id.to_string() {
                format!("{} (generated)", t.key)
            } else {
                t.key.clone()
            },
        ),
        ("created", format_ms(t.created_at)),
    ];
    if let Some(d) = t.deadline {
        let when = if t.status == Status::Pending {
            if d > now {
                format!(" (in {})", human_duration(d - now))
            } else {
                format!(" (passed {} ago)", human_duration(now - d))
            }
        } else {
            String::new()
        };
        fields.push(("deadline", format!("{}{when}", format_ms(d))));
    } else {
        fields.push(("deadline", "none".into()));
    }
    if let Some(e) = t.ended_at {
        fields.push(("ended", format_ms(e)));
    }
    if !t.notify.is_empty() {
        fields.push(("notify", t.notify.join(", ")));
    }
    if let Some(url) = &t.callback_url {
        fields.push(("callback", url.clone()));
    }
    fields.push((
        "assigned to",
        if t.assign_to.is_empty() {
            "anyone".into()
        } else {
            t.assign_to.join(", ")
        },
    ));
    fields.push(("digest", t.digest.clone()));
    for (name, value) in fields {
        writeln!(out, "  {name:<12} {value}")?;
    }

    writeln!(out)?;
    writeln!(out, "payload:")?;
    write_indented_json(out, &t.payload)?;

    writeln!(out)?;
    writeln!(out, "expected answer:")?;
    for line in schema_summary(&t.response_schema) {
        writeln!(out, "  {line}")?;
    }

    writeln!(out)?;
    match t.status {
        Status::Pending => {
            writeln!(out, "answer: none yet")?;
            writeln!(out, "  answer with: inloop tasks answer {} '<JSON>'", t.id)?;
        }
        Status::Completed | Status::VerificationExhausted => {
            let by = t.answered_by.as_deref().unwrap_or("unknown");
            let via = t
                .answered_via
                .as_deref()
                .map(|v| format!(" via {v}"))
                .unwrap_or_default();
            let at = t
                .ended_at
                .map(|e| format!(" at {}", format_ms(e)))
                .unwrap_or_default();
            writeln!(out, "answer (from {by}{via}{at}):")?;
            match &t.response {
                Some(r) => write_indented_json(out, r)?,
                None => writeln!(out, "  none")?,
            }
        }
        Status::Cancelled => {
            let by = t
                .cancelled_by
                .as_deref()
                .map(|b| format!(" by {b}"))
                .unwrap_or_default();
            let at = t
                .ended_at
                .map(|e| format!(" at {}", format_ms(e)))
                .unwrap_or_default();
            let reason = t
                .cancel_reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            writeln!(out, "cancelled{by}{at}{reason}")?;
        }
        Status::TimedOut => {
            let at = t
                .ended_at
                .map(|e| format!(", recorded at {}", format_ms(e)))
                .unwrap_or_default();
            let deadline = t
                .deadline
                .map(format_ms)
                .unwrap_or_else(|| "its deadline".into());
            writeln!(out, "timed out without an answer (deadline {deadline}{at})")?;
        }
    }
    Ok(())
}

fn write_indented_json(out: &mut dyn Write, v: &Value) -> io::Result<()> {
    let text = serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    for line in text.lines() {
        writeln!(out, "  {line}")?;
    }
    Ok(())
}

pub(super) fn write_audit(out: &mut dyn Write, events: &[AuditEvent]) -> io::Result<()> {
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            vec![
                e.seq.to_string(),
                format_ms(e.at),
                e.kind.clone(),
                e.actor
                    .as_deref()
                    .map(|a| one_line(a, 24))
                    .unwrap_or_else(|| "-".into()),
                e.channel
                    .as_deref()
                    .map(|c| one_line(c, 12))
                    .unwrap_or_else(|| "-".into()),
                audit_summary(e),
            ]
        })
        .collect();
    write_table(
        out,
        &["SEQ", "TIME", "KIND", "ACTOR", "CHANNEL", "DATA"],
        &rows,
    )
}

/// One audit row's data in a few words (its compact JSON when the shape is unknown).
fn audit_summary(e: &AuditEvent) -> String {
    let d = &e.data;
    let text = |k: &str| d.get(k).and_then(Value::as_str);
    let summary = match e.kind.as_str() {
        audit::kind::CREATED => {
            let mut parts = Vec::new();
            if let Some(digest) = text("digest") {
                parts.push(format!(
                    "digest {}",
                    digest.chars().take(12).collect::<String>()
                ));
            }
            if let Some(deadline) = text("deadline") {
                parts.push(format!("deadline {deadline}"));
            }
            Some(parts.join(", ")).filter(|s| !s.is_empty())
        }
        audit::kind::ANSWER_ACCEPTED => d.get("response").map(canonical_json),
        audit::kind::ANSWER_REFUSED => {
            let errors: Vec<FieldError> = d
                .get("errors")
                .and_then(|v| serde_json::from_value(v.clone()).ok())
                .unwrap_or_default();
            let detail = match errors.first() {
                Some(first) => {
                    let more = match errors.len() {
                        1 => String::new(),
                        n => format!(" (and {} more)", n - 1),
                    };
                    field_error_lines(std::slice::from_ref(first))
                        .concat()
                        .trim_start()
                        .to_string()
                        + &more
                }
                None => text("message").unwrap_or_default().to_string(),
            };
            text("reason").map(|r| format!("{r}: {detail}"))
        }
        audit::kind::CANCELLED => Some(match text("reason") {
            Some(r) => format!("reason: {r}"),
            None => "no reason given".into(),
        }),
        audit::kind::TIMED_OUT => text("deadline").map(|dl| format!("deadline {dl}")),
        _ => None,
    };
    one_line(&summary.unwrap_or_else(|| canonical_json(d)), 80)
}

/// Left-aligned columns two spaces apart, no trailing spaces.
pub(super) fn write_table(
    out: &mut dyn Write,
    headers: &[&str],
    rows: &[Vec<String>],
) -> io::Result<()> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::new();
        for (i, cell) in cells.enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            s.push_str(cell);
            let width = widths.get(i).copied().unwrap_or(0);
            s.extend(std::iter::repeat_n(
                ' ',
                width.saturating_sub(cell.chars().count()),
            ));
        }
        s.trim_end().to_string()
    };
    writeln!(out, "{}", line(&mut headers.iter().copied()))?;
    for row in rows {
        writeln!(out, "{}", line(&mut row.iter().map(String::as_str)))?;
    }
    Ok(())
}

/// The text on one line (control characters as spaces), cut to `max` characters with `…`.
pub(super) fn one_line(s: &str, max: usize) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= max {
        flat
    } else {
        let mut cut: String = flat.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

/// `3d 4h`, `5m 10s`, `12s`, `250ms`: the two largest units.
pub(super) fn human_duration(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    let units = [(86400, "d"), (3600, "h"), (60, "m"), (1, "s")];
    let mut parts = Vec::new();
    let mut rest = s;
    for (size, name) in units {
        if rest >= size || !parts.is_empty() {
            parts.push((rest / size, name));
            rest %= size;
        }
        if parts.len() == 2 {
            break;
        }
    }
    parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, u)| format!("{n}{u}"))
        .collect::<Vec<_>>()
        .join(" ")
}

// ------------------------------------------------------------------------------------------
