//! Answering a task: access, the schema, votes and verification, in one transition.

use uuid::Uuid;

use super::Engine;
use super::checks::{check_actor, check_channel, nul_errors};
use crate::access::{self, Principal};
use crate::error::{Error, Result};
use crate::model::{Answer, Status, Task};
use crate::rules;
use crate::schema::{self, Schema};
use crate::store::Decision;
use crate::telemetry::{self, TaskSpan};
use crate::verify;
use opentelemetry::KeyValue;

impl Engine {
    /// Submits an answer with direct database access (trusted, like an admin: the SDKs and the
    /// CLI). See [`Engine::answer_as`].
    pub async fn answer(&self, id: Uuid, answer: Answer) -> Result<Task> {
        self.answer_as(id, answer, &Principal::Trusted).await
    }

    /// Submits an answer on behalf of `who`. Who may answer is checked here, under the task's
    /// row lock ([`access::check_answer`]): a refusal is `forbidden` (audited), or `not_found`
    /// for a task `who` may not see. A signed-in user always answers as themselves. The answer
    /// is validated against the response schema; an invalid answer leaves the task pending
    /// and is audited. Exactly one answer is accepted: any later one gets
    /// [`Error::Conflict`] naming who answered and when.
    pub async fn answer_as(&self, id: Uuid, answer: Answer, who: &Principal) -> Result<Task> {
        self.answer_linked(id, answer, who, None).await
    }

    /// [`Engine::answer_as`] for an answer that came through a single-use e-mail link: the
    /// link is consumed in the transaction that accepts the answer (and only then), so a
    /// refused answer leaves it usable and a used link can never answer again.
    pub async fn answer_with_link(
        &self,
        id: Uuid,
        answer: Answer,
        who: &Principal,
        link: &crate::store::outbox::LinkUse,
    ) -> Result<Task> {
        self.answer_linked(id, answer, who, Some(link)).await
    }

    async fn answer_linked(
        &self,
        id: Uuid,
        answer: Answer,
        who: &Principal,
        link: Option<&crate::store::outbox::LinkUse>,
    ) -> Result<Task> {
        let mut spans = Spans {
            answer: Some(TaskSpan::start(telemetry::ANSWER)),
            rules: Some(TaskSpan::start(telemetry::VERIFY)),
            channel: telemetry::enabled().then(|| answer.channel.clone()),
        };
        let result = self.answer_traced(id, answer, who, link, &mut spans).await;
        if let (Err(e), Some(span)) = (&result, spans.answer.take()) {
            span.fail_unread(&id, e); // refused before the task was read
        }
        result
    }

    async fn answer_traced(
        &self,
        id: Uuid,
        mut answer: Answer,
        who: &Principal,
        link: Option<&crate::store::outbox::LinkUse>,
        spans: &mut Spans,
    ) -> Result<Task> {
        if let Principal::User(u) = who {
            answer.by = u.name.clone();
        }
        check_actor(&answer.by)?;
        check_channel(&answer.channel)?;
        let policy = self.policy(&id, who).await?;
        // Who votes, for tasks with approvers: the signed-in user, else the user `by` names
        // (looked up only when the task turns out to need it).
        let mut voter: Option<access::Identity> = match who {
            Principal::User(u) => Some(u.clone()),
            _ => None,
        };
        let (after, result) = loop {
            let now = self.now();
            let token = Uuid::now_v7().to_string();
            let mut need_voter = false;
            let voter_ref = voter.as_ref();
            let too_large =
                schema::check_size("answer", &answer.response, schema::MAX_DOCUMENT_BYTES).err();
            // Validated under the row lock: one read, and the schema and rules are the stored
            // ones.
            let (after, result) = self
                .inner
                .store
                .transition_linked(&id, now, link, |t| {
                    let plain = |(d, r): (Decision, Result<()>)| {
                        (d, r.map(|()| rules::Submitted::Accepted))
                    };
                    if let Err(e) = access::check_answer(t, who, policy) {
                        return plain(rules::refuse_access(t, &answer.by, &answer.channel, e));
                    }
                    let has_approvers = t.policy.as_ref().is_some_and(|p| p.approvers.is_some());
                    if has_approvers && t.status == Status::Pending {
                        let Some(v) = voter_ref else {
                            need_voter = true;
                            return (Decision::default(), Ok(rules::Submitted::Accepted));
                        };
                        if let Err(e) = access::check_voter(t, v) {
                            return plain(rules::refuse_access(t, &answer.by, &answer.channel, e));
                        }
                    }
                    let invalid = match too_large {
                        Some(e) => Some(e),
                        None => match answer_errors(t, &answer.response) {
                            Ok(errors) => errors,
                            Err(e) => return (Default::default(), Err(e)),
                        },
                    };
                    match (invalid, &t.verification) {
                        (Some(err), _) => plain(rules::invalid_answer(
                            t,
                            &answer.by,
                            &answer.channel,
                            err,
                            now,
                        )),
                        (None, None) if has_approvers => {
                            plain(rules::vote(t, &answer, voter_ref, now))
                        }
                        (None, None) => plain(rules::answer(t, &answer, now)),
                        (None, Some(v)) => {
                            let judged = verify::run_rules(v, &t.payload, &answer.response);
                            let until = now
                                + v.llm.as_ref().map_or(0, |l| l.timeout_ms as i64)
                                + rules::LEASE_GRACE_MS;
                            rules::submit(
                                t,
                                &answer,
                                &judged,
                                v.llm.is_some(),
                                (token.clone(), until),
                                now,
                            )
                        }
                    }
                })
                .await?;
            if !need_voter {
                break (after, result);
            }
            voter = Some(self.voter_named(&answer.by).await?);
        };
        if after.status.is_final() {
            self.inner.hub.wake(&id);
        }
        let result = match result {
            Ok(r) => r,
            Err(e) => {
                spans.end(&after, Some(&e));
                return Err(e);
            }
        };
        spans.end(&after, None);
        match result {
            rules::Submitted::Accepted => Ok(after),
            rules::Submitted::Verifying { token } => {
                // The LLM call runs outside any transaction or lock, in its own task: a caller
                // that goes away (a closed HTTP connection) does not strand the lease.
                let engine = self.clone();
                tokio::spawn(async move { engine.finish_verification(after, answer, token).await })
                    .await
                    .map_err(|e| Error::Internal(format!("the verification task failed: {e}")))?
            }
        }
    }

    /// The voter an answer's `by` names, for a principal that is not a signed-in user: the
    /// user with that name or e-mail, else the bare name.
    async fn voter_named(&self, by: &str) -> Result<access::Identity> {
        let store = &self.inner.store;
        let user = match store.user_by_name(&by.to_lowercase()).await? {
            Some(u) => Some(u),
            None => store.user_by_email(&by.to_lowercase()).await?,
        };
        Ok(access::identity_of(by, user.as_ref()))
    }
}

/// The answer's field errors against the task's stored response schema (and NUL bytes), as
/// `invalid_answer`; `None` when it fits.
fn answer_errors(t: &Task, response: &serde_json::Value) -> Result<Option<Error>> {
    let mut errors = Schema::compile("response_schema", &t.response_schema)?.errors(response);
    errors.extend(nul_errors(response));
    Ok((!errors.is_empty()).then_some(Error::InvalidAnswer { errors }))
}

/// The spans of one answer: `inloop.answer`, and `inloop.verify` for the rules of a task
/// with verification (the LLM verifier has its own, `engine/verdicts.rs`).
struct Spans {
    answer: Option<TaskSpan>,
    rules: Option<TaskSpan>,
    channel: Option<String>,
}

impl Spans {
    /// Ends both spans with the task as the answer left it (`e`: why it was refused).
    fn end(&mut self, after: &Task, e: Option<&Error>) {
        let Some(answer) = self.answer.take() else {
            return;
        };
        let rules = self.rules.take();
        if !telemetry::enabled() {
            return;
        }
        let channel = self.channel.take().unwrap_or_default();
        if let (Some(span), true) = (rules, after.verification.is_some()) {
            let mut attrs = vec![KeyValue::new("inloop.verify.verifier", "rules")];
            match e {
                Some(Error::VerificationRejected { .. }) => {
                    attrs.push(KeyValue::new("inloop.verify.verdict", "reject"))
                }
                Some(_) => {}
                None => attrs.push(KeyValue::new("inloop.verify.verdict", "pass")),
            }
            span.end(after, attrs);
        }
        let attrs = vec![KeyValue::new("inloop.answer.channel", channel)];
        match e {
            Some(e) => answer.fail(after, e),
            None => answer.end(after, attrs),
        }
    }
}
