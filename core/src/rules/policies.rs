//! Approval policies (docs/policies.md): votes and the timers of escalation and reminders.

use super::*;

/// A schema-valid answer from an approver (access already checked) to a task with approvers:
/// it is recorded as that person's vote. The task completes when `required` distinct
/// approvals are in, or ends as rejected when the rejections reach the policy's `reject_on`;
/// the final answer is the vote that decided. The same vote again changes nothing; a
/// different vote from someone who already voted is refused (a vote cannot be changed).
pub fn vote(
    task: &Task,
    a: &Answer,
    voter: Option<&crate::access::Identity>,
    now: i64,
) -> (Decision, Result<()>) {
    let email = voter.and_then(|v| v.email.as_deref());
    let Some(approvers) = task.policy.as_ref().and_then(|p| p.approvers.as_ref()) else {
        return answer(task, a, now);
    };
    if is_overdue(task, now) || task.status != Status::Pending {
        return answer(task, a, now);
    }
    // Non-approval schemas (allowed with `required = 1`) count every answer as approving.
    let approve = policy::approval_of(&task.response_schema, &a.response).unwrap_or(true);
    // One vote per person, however they are named: a user answering as "alice" and later as
    // "alice@acme.com" is the same voter.
    let names: Vec<&str> = [Some(a.by.as_str()), voter.map(|v| v.name.as_str()), email]
        .into_iter()
        .flatten()
        .collect();
    let same = |v: &Vote| {
        std::iter::once(v.by.as_str())
            .chain(v.email.as_deref())
            .any(|x| names.iter().any(|n| n.eq_ignore_ascii_case(x)))
    };
    if let Some(prev) = task.votes.iter().find(|v| same(v)) {
        if prev.approve == approve && prev.response == a.response {
            return (Decision::default(), Ok(()));
        }
        let err = Error::Forbidden(format!(
            "{} already voted to {} at {}; a vote cannot be changed",
            prev.by,
            if prev.approve { "approve" } else { "reject" },
            crate::model::format_ms(prev.at)
        ));
        return refused(&a.by, &a.channel, "vote_changed", err);
    }
    let mut votes = task.votes.clone();
    votes.push(Vote {
        by: a.by.clone(),
        email: email.map(str::to_string),
        channel: a.channel.clone(),
        at: now,
        approve,
        response: a.response.clone(),
    });
    let (yes, no) = policy::tally(&votes);
    let data = json!({
        "approve": approve, "response": a.response, "approvals": yes, "rejections": no,
        "required": approvers.required,
    });
    let recorded = NewAudit::by(&a.by, &a.channel, kind::VOTE_RECORDED, data);
    let decided = if policy::rejected(approvers, no) {
        Some("rejected")
    } else if yes >= approvers.required {
        Some("approved")
    } else {
        None
    };
    let Some(decided) = decided else {
        return (
            Decision {
                votes: Some(votes),
                audit: vec![recorded],
                ..Default::default()
            },
            Ok(()),
        );
    };
    let (mut d, r) = answer(task, a, now);
    d.votes = Some(votes);
    d.audit.insert(0, recorded);
    if let Some(last) = d.audit.last_mut() {
        last.data["decided"] = json!(decided);
        last.data["approvals"] = json!(yes);
        last.data["rejections"] = json!(no);
    }
    (d, r)
}

/// The timer sweep on one task: every unfired timer due at `now` fires, once (the store
/// applies this under the task's row lock, so replicas racing on it fire it once). A reminder
/// re-notifies the task's targets; an escalation notifies its new targets (added to `notify`,
/// so they are updated when the task ends) and adds its approvers. A task past its deadline
/// times out instead. Returns how many timers fired.
pub fn fire_timers(task: &Task, now: i64) -> (Decision, usize) {
    if is_overdue(task, now) {
        return (expire(task, now).0, 0);
    }
    if task.status != Status::Pending {
        return (Decision::default(), 0);
    }
    let mut timers = task.timers.clone();
    let mut notify = task.notify.clone();
    let mut assign_to = task.assign_to.clone();
    let mut d = Decision::default();
    let mut fired = 0;
    for t in timers
        .iter_mut()
        .filter(|t| t.fired_at.is_none() && t.due_at <= now)
    {
        t.fired_at = Some(now);
        fired += 1;
        let late_ms = now - t.due_at;
        if t.kind == policy::REMINDER {
            let event = crate::store::outbox::reminder_event(t.index);
            d.deliveries
                .extend(crate::store::outbox::deliveries_to(task, &notify, &event));
            d.audit.push(NewAudit::system(
                kind::REMINDER_SENT,
                json!({ "index": t.index, "notify": notify, "late_ms": late_ms }),
            ));
            continue;
        }
        let Some(step) = task.policy.as_ref().and_then(|p| {
            t.index
                .checked_sub(1)
                .and_then(|i| p.escalate.get(i as usize))
        }) else {
            continue;
        };
        let new_targets: Vec<String> = step
            .notify
            .iter()
            .filter(|n| !notify.contains(n))
            .cloned()
            .collect();
        d.deliveries.extend(crate::store::outbox::deliveries_to(
            task,
            &new_targets,
            crate::store::outbox::CREATED,
        ));
        notify.extend(new_targets.iter().cloned());
        for a in &step.add_approvers {
            if !assign_to.iter().any(|x| x.eq_ignore_ascii_case(a)) {
                assign_to.push(a.clone());
            }
        }
        let data = json!({
            "index": t.index, "notify": step.notify, "add_approvers": step.add_approvers,
            "late_ms": late_ms,
        });
        d.audit.push(NewAudit::system(kind::ESCALATED, data));
    }
    if fired == 0 {
        return (d, 0);
    }
    d.timers = Some(timers);
    if notify != task.notify {
        d.notify = Some(notify);
    }
    if assign_to != task.assign_to {
        d.assign_to = Some(assign_to);
    }
    (d, fired)
}
