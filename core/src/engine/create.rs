//! Creating a task: the request's checks, the row it becomes, and the insert.

use serde_json::{Value, json};
use uuid::Uuid;

use super::Engine;
use super::checks::{check_actor, check_namespace, check_targets, check_text, nul_errors};
use crate::audit::kind;
use crate::error::{Error, Result};
use crate::model::{Created, NewTask, Status, Task};
use crate::schema::{self, Schema};
use crate::store::NewAudit;
use crate::telemetry;

impl Engine {
    /// Creates the task, or returns the one its `(namespace, key)` already names. The same key
    /// with a different title, payload or schema is [`Error::KeyReused`].
    pub async fn create(&self, new: NewTask) -> Result<Created> {
        let task = self.prepare_new(new)?;
        self.insert(task).await
    }

    pub(super) fn prepare_new(&self, new: NewTask) -> Result<Prepared> {
        let requested_by = new.requested_by.clone();
        let task = prepare(new, self.now())?;
        if let (Some(url), Some(allow)) = (&task.callback_url, &self.callbacks) {
            allow.check(url)?;
        }
        Ok(Prepared { task, requested_by })
    }

    pub(super) async fn insert(&self, mut p: Prepared) -> Result<Created> {
        let span = telemetry::CreateSpan::start(p.task.traceparent.as_deref());
        if p.task.traceparent.is_none() {
            // Without the agent's trace context, the task's life hangs under its creation.
            p.task.traceparent = span.traceparent();
        }
        let result = self.insert_traced(p).await;
        match &result {
            Ok(c) => span.end(&c.task, c.created),
            Err(e) => span.fail(e),
        }
        result
    }

    async fn insert_traced(&self, p: Prepared) -> Result<Created> {
        let Prepared { task, requested_by } = p;
        let mut data = json!({ "digest": task.digest, "deadline": task.deadline.map(crate::model::format_ms) });
        if let Some(url) = &task.callback_url {
            // Where the end will be sent is part of the record (it is not in the digest).
            data["callback_url"] = json!(url);
        }
        let created = NewAudit {
            actor: requested_by,
            channel: None,
            kind: kind::CREATED,
            data,
        };
        let (stored, inserted) = self.inner.store.insert_or_get(&task, created).await?;
        if !inserted && stored.digest != task.digest {
            return Err(Error::KeyReused {
                namespace: stored.namespace,
                key: stored.key,
                existing: stored.id,
                existing_digest: stored.digest,
                new_digest: task.digest,
            });
        }
        if inserted && (stored.deadline.is_some() || !stored.timers.is_empty()) {
            self.inner.created.notify_one();
        }
        Ok(Created {
            task: stored,
            created: inserted,
        })
    }
}

/// A checked creation request, ready to insert.
pub(super) struct Prepared {
    task: Task,
    requested_by: Option<String>,
}

impl std::ops::Deref for Prepared {
    type Target = Task;
    fn deref(&self) -> &Task {
        &self.task
    }
}

/// Checks a creation request and builds the task row.
fn prepare(new: NewTask, now: i64) -> Result<Task> {
    let namespace = new.namespace.unwrap_or_else(|| "default".into());
    check_namespace(&namespace)?;
    let id = Uuid::now_v7();
    let key = match new.key {
        Some(k) => {
            check_text("key", &k, schema::MAX_KEY_BYTES)?;
            k
        }
        None => id.to_string(),
    };
    check_text("title", &new.title, schema::MAX_TITLE_BYTES)?;
    if new.title.trim().is_empty() {
        return Err(Error::InvalidArgument("title must not be empty".into()));
    }
    if let Some(by) = &new.requested_by {
        check_actor(by)?;
    }
    schema::check_size("payload", &new.payload, schema::MAX_DOCUMENT_BYTES)?;
    let response = Schema::compile("response_schema", &new.response_schema)?;
    drop(response);
    let mut errors = nul_errors(&new.payload);
    if let Some(ps) = &new.payload_schema {
        errors.extend(Schema::compile("payload_schema", ps)?.errors(&new.payload));
    }
    if !errors.is_empty() {
        return Err(Error::InvalidPayload { errors });
    }
    check_targets("notify", &new.notify, true)?;
    check_targets("assign_to", &new.assign_to, false)?;
    let callback_url = new
        .callback_url
        .as_deref()
        .map(crate::channels::callback::normalize)
        .transpose()?;
    let deadline = deadline_of(new.timeout_ms, now)?;
    if let Some(v) = &new.verification {
        v.check()?;
    }
    if let Some(tp) = &new.traceparent {
        telemetry::parse_traceparent(tp)?;
    }
    let policy = new.policy.filter(|p| !p.is_empty());
    let mut assign_to = new.assign_to;
    let timers = match &policy {
        Some(p) => {
            check_policy(p, &new.response_schema, new.verification.is_some())?;
            policy_plan(p, new.requested_by.is_some(), deadline, now, &mut assign_to)?
        }
        None => Vec::new(),
    };
    // The verification contract and the policy are part of what the agent asked: the same key
    // with other rules, approvers or timers is a different request (`key_reused`).
    let verification = new.verification.as_ref().map(|v| v.to_json());
    let policy_json = policy
        .as_ref()
        .map(|p| serde_json::to_value(p).unwrap_or(Value::Null));
    let digest = schema::request_digest(
        &new.title,
        &new.payload,
        new.payload_schema.as_ref(),
        &new.response_schema,
        verification.as_ref(),
        policy_json.as_ref(),
    );
    Ok(Task {
        id,
        namespace,
        key,
        title: new.title,
        payload: new.payload,
        payload_schema: new.payload_schema,
        response_schema: new.response_schema,
        digest,
        notify: new.notify,
        assign_to,
        status: Status::Pending,
        response: None,
        answered_by: None,
        answered_via: None,
        cancelled_by: None,
        cancel_reason: None,
        claimed_by: None,
        claimed_at: None,
        created_at: now,
        updated_at: now,
        deadline,
        ended_at: None,
        verification: new.verification,
        attempts: 0,
        rejections: Vec::new(),
        verifying_until: None,
        verify_token: None,
        requested_by: new.requested_by,
        policy,
        votes: Vec::new(),
        timers,
        callback_url,
        traceparent: new.traceparent,
    })
}

/// When the task times out: `now` plus the timeout, if one is asked (positive, at most ten
/// years).
fn deadline_of(timeout_ms: Option<u64>, now: i64) -> Result<Option<i64>> {
    Ok(match timeout_ms {
        None => None,
        Some(0) => return Err(Error::InvalidArgument("timeout must be positive".into())),
        Some(ms) if ms > 10 * 366 * 24 * 3600 * 1000 => {
            return Err(Error::InvalidArgument(
                "timeout must be at most ten years".into(),
            ));
        }
        Some(ms) => Some(now + ms as i64),
    })
}

/// Checks a policy against its task's deadline and requester, adds its approvers to
/// `assign_to` and returns its timers.
fn policy_plan(
    p: &crate::policy::Policy,
    has_requester: bool,
    deadline: Option<i64>,
    now: i64,
    assign_to: &mut Vec<String>,
) -> Result<Vec<crate::policy::Timer>> {
    if p.approvers
        .as_ref()
        .is_some_and(|a| a.exclude_requester && !has_requester)
    {
        return Err(Error::InvalidArgument(
            "policy: approvers.exclude_requester needs requested_by (who asks)".into(),
        ));
    }
    // Approvers see the task: they are assigned to it (escalations add theirs later).
    for a in p.approvers.iter().flat_map(|a| &a.any_of) {
        if !assign_to.iter().any(|x| x.eq_ignore_ascii_case(a)) {
            assign_to.push(a.clone());
        }
    }
    if deadline.is_none() && matches!(p.on_timeout, crate::policy::OnTimeout::Default(_)) {
        return Err(Error::InvalidArgument(
            "policy: on_timeout's default answer needs a timeout (timeout_ms) to stand in for"
                .into(),
        ));
    }
    if let Some(d) = deadline {
        // A step due after the deadline would never fire: say so instead of storing it.
        if let Some(t) = p.timers(now).iter().find(|t| t.due_at >= d) {
            return Err(Error::InvalidArgument(format!(
                "policy: {} {} is due after the task's timeout",
                t.kind, t.index
            )));
        }
    }
    Ok(p.timers(now))
}

/// Checks a policy against the task it comes with.
fn check_policy(p: &crate::policy::Policy, response_schema: &Value, verified: bool) -> Result<()> {
    p.check()?;
    for (i, e) in p.escalate.iter().enumerate() {
        check_targets(&format!("policy: escalate[{i}].notify"), &e.notify, true)?;
    }
    if p.required() > 1 {
        if !crate::dashboard::form::is_approval(response_schema) {
            return Err(Error::InvalidArgument(
                "policy: approvers.required above 1 needs an approval response schema (one \
                 required boolean, optional text fields): votes are counted as approve or reject"
                    .into(),
            ));
        }
        if verified {
            return Err(Error::InvalidArgument(
                "policy: approvers.required above 1 cannot be combined with verification".into(),
            ));
        }
    }
    if let crate::policy::OnTimeout::Default(v) = &p.on_timeout {
        let errors = Schema::compile("response_schema", response_schema)?.errors(v);
        if !errors.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "policy: on_timeout's default answer does not match the response schema: {}",
                errors
                    .iter()
                    .map(|e| format!("{} {}", e.path, e.message))
                    .collect::<Vec<_>>()
                    .join("; ")
            )));
        }
    }
    Ok(())
}
