//! What the dashboard's pages show: plain data that the server's handlers fill in and the
//! page functions render. Nothing here touches the database.

use std::collections::HashMap;

use serde_json::Value;
use uuid::Uuid;

use crate::error::FieldError;
use crate::model::{AuditEvent, Status, Task};
use crate::store::outbox::Delivery;
use crate::users::Role;

/// The signed-in person looking at a page.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub name: String,
    pub role: Role,
    /// The session's CSRF token: every state-changing form carries it as the `csrf` field.
    pub csrf: String,
}

/// The queue's filters, as given in the query string (`/tasks?status=pending&assignee=alice`).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default)]
pub struct QueueFilter {
    /// A status name, or `all`; `pending` when absent.
    pub status: Option<String>,
    /// Only tasks assigned to this user name, e-mail address or `role:NAME`.
    pub assignee: Option<String>,
    /// Only tasks whose key starts with this.
    pub key: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// `failed`: only tasks with a failed delivery.
    pub deliveries: Option<String>,
}

impl QueueFilter {
    /// Whether only tasks with a failed delivery are listed.
    pub fn failed_only(&self) -> bool {
        self.deliveries.as_deref() == Some("failed")
    }
}

/// The queue page (`GET /tasks`).
pub struct QueueView<'a> {
    pub viewer: &'a Viewer,
    /// How many tasks this viewer can see in each status (every status, in a fixed order).
    pub counts: &'a [(Status, u64)],
    pub filter: &'a QueueFilter,
    /// The page of tasks, newest first.
    pub tasks: &'a [Task],
    /// Link target for "older": the same filters with `cursor` set to this.
    pub next_cursor: Option<&'a str>,
    /// How many deliveries failed on each listed task (absent: none).
    pub failed: &'a HashMap<Uuid, u64>,
    /// How many deliveries failed on every task this viewer can see (within the filters).
    pub failed_total: u64,
}

/// What the viewer may do on a task page (decided by the core's rules, not by the page).
pub use crate::access::Permissions;

/// A one-line message at the top of a page after an action.
#[derive(Debug, Clone)]
pub enum Flash {
    Ok(String),
    Error(String),
}

/// The answer form's state: a refused submission keeps what was typed and shows why.
#[derive(Debug, Clone, Default)]
pub struct FormState<'a> {
    /// The values to show (a previous submission); `None` shows the schema's defaults.
    pub values: Option<&'a Value>,
    /// Field errors from the core's validation (JSON Pointer paths into the answer).
    pub errors: &'a [FieldError],
    /// The refused submission's form pairs as posted: when set, the inputs show exactly what
    /// was typed (even text that did not convert, like `12x` in a number field), ahead of
    /// `values`.
    pub posted: Option<&'a [(String, String)]>,
}

/// The task page (`GET /tasks/{id}`).
pub struct TaskView<'a> {
    pub viewer: &'a Viewer,
    pub task: &'a Task,
    /// The audit trail, oldest first.
    pub audit: &'a [AuditEvent],
    /// Every delivery of the task (channels, callback), oldest first.
    pub deliveries: &'a [Delivery],
    pub may: Permissions,
    pub form: FormState<'a>,
    pub flash: Option<Flash>,
}

/// The sign-in page (`GET /login`).
pub struct LoginView<'a> {
    /// The pre-session CSRF token (double-submit: also in the `inloop_csrf` cookie).
    pub csrf: &'a str,
    pub username: &'a str,
    pub error: Option<&'a str>,
    /// Where to go after signing in (a local path).
    pub next: &'a str,
}

/// The first-run page (`GET /setup?token=...`): creates the first admin.
pub struct SetupView<'a> {
    pub token: &'a str,
    pub csrf: &'a str,
    pub name: &'a str,
    pub email: &'a str,
    pub error: Option<&'a str>,
}

/// The effects-in-doubt page (`GET /effects`, admins only).
pub struct EffectsView<'a> {
    pub viewer: &'a Viewer,
    /// The effects in doubt (`running`), oldest first, every namespace.
    pub effects: &'a [crate::effects::Effect],
    pub flash: Option<Flash>,
    /// A refused "mark done" keeps what was typed: (namespace, key, result text, note).
    pub typed: Option<(&'a str, &'a str, &'a str, &'a str)>,
}
