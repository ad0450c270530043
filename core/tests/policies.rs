//! Approval policies (docs/policies.md) on both backends: who may answer, M-of-N quorum,
//! durable reminders and escalation (on a manual clock), what a timeout means, and late
//! answers.

mod common;
#[path = "common/hook.rs"]
mod hook;

use common::Db;
use inloop_core::access::{Identity, Principal};
use inloop_core::policy::{Approvers, Escalation, OnTimeout, Policy, RejectOn};
use inloop_core::users::Role;
use inloop_core::{Answer, Clock, Engine, EngineOptions, Error, NewTask, Status};
use serde_json::{Value, json};
use uuid::Uuid;

const T0: i64 = 1_800_000_000_000;

fn approval() -> Value {
    json!({"type": "object", "required": ["approved"], "properties": {
        "approved": {"type": "boolean"}, "comment": {"type": "string"}}})
}

fn approvers(any_of: &[&str], required: u32) -> Approvers {
    Approvers {
        any_of: any_of.iter().map(|s| s.to_string()).collect(),
        required,
        exclude_requester: false,
        reject_on: RejectOn::Any,
    }
}

fn wire(key: &str, policy: Policy) -> NewTask {
    NewTask {
        key: Some(key.into()),
        title: "Wire 25,000 EUR to ACME?".into(),
        payload: json!({"amount": 25000, "to": "ACME"}),
        response_schema: approval(),
        requested_by: Some("agent-7".into()),
        policy: Some(policy),
        ..Default::default()
    }
}

fn person(name: &str, email: &str, role: Role, groups: &[&str]) -> Principal {
    Principal::User(Identity {
        name: name.into(),
        email: Some(email.into()),
        role,
        groups: groups.iter().map(|s| s.to_string()).collect(),
    })
}

fn alice() -> Principal {
    person("alice", "alice@acme.com", Role::Reviewer, &[])
}
fn bob() -> Principal {
    person("bob", "bob@acme.com", Role::Reviewer, &[])
}
fn carol() -> Principal {
    person("carol", "carol@acme.com", Role::Reviewer, &["finance"])
}

fn vote(approve: bool, channel: &str) -> Answer {
    Answer {
        response: json!({"approved": approve}),
        by: "ignored".into(),
        channel: channel.into(),
    }
}

async fn manual(db: &Db) -> (Engine, Clock) {
    let clock = Clock::manual(T0);
    let e = db
        .open_with(EngineOptions {
            clock: clock.clone(),
            ..Default::default()
        })
        .await;
    (e, clock)
}

async fn kinds(e: &Engine, id: Uuid) -> Vec<String> {
    e.audit(id)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.kind)
        .collect()
}

/// 2 of 3: the first approval is recorded and the task stays pending; the same vote again
/// changes nothing; a changed vote, someone outside the list and an admin outside the list
/// are refused (audited); a group member's approval completes it with both votes; a late
/// vote is told who answered and when.
async fn two_of_three_completes_on_the_second_approval(db: Db) {
    let e = db.open().await;
    let p = Policy {
        approvers: Some(approvers(
            &["alice@acme.com", "bob@acme.com", "role:finance"],
            2,
        )),
        ..Default::default()
    };
    let t = e.create(wire("w-1", p)).await.unwrap().task;
    assert!(
        t.assign_to.contains(&"role:finance".to_string()),
        "approvers see the task"
    );

    let after = e
        .answer_as(t.id, vote(true, "dashboard"), &alice())
        .await
        .unwrap();
    assert_eq!(after.status, Status::Pending);
    assert_eq!(after.votes.len(), 1);
    assert_eq!(after.votes[0].by, "alice");
    assert!(after.votes[0].approve);
    assert_eq!(after.votes[0].channel, "dashboard");

    // The same vote twice counts once.
    let again = e
        .answer_as(t.id, vote(true, "slack"), &alice())
        .await
        .unwrap();
    assert_eq!(again.votes.len(), 1);
    // So does the same person named another way (a trusted caller answering by e-mail).
    let by_email = Answer {
        by: "Alice@acme.com".into(),
        ..vote(true, "api")
    };
    let again = e
        .answer_as(t.id, by_email.clone(), &Principal::Trusted)
        .await
        .unwrap();
    assert_eq!(again.votes.len(), 1, "{:?}", again.votes);
    assert_eq!(again.status, Status::Pending);
    let err = e
        .answer_as(
            t.id,
            Answer {
                response: json!({"approved": false}),
                ..by_email
            },
            &Principal::Trusted,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already voted"), "{err}");
    // A vote cannot be changed.
    let changed = e
        .answer_as(t.id, vote(false, "dashboard"), &alice())
        .await
        .unwrap_err();
    assert!(matches!(changed, Error::Forbidden(_)), "{changed}");
    assert!(
        changed.to_string().contains("already voted to approve"),
        "{changed}"
    );

    // Someone outside the list: a reviewer who can see the task by role, and an admin.
    let dave = person(
        "dave",
        "dave@acme.com",
        Role::Reviewer,
        &["finance-adjacent"],
    );
    let err = e
        .answer_as(t.id, vote(true, "dashboard"), &dave)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::NotFound(_)),
        "{err}: outsiders do not even see it"
    );
    let admin = person("root", "root@acme.com", Role::Admin, &[]);
    let err = e
        .answer_as(t.id, vote(true, "dashboard"), &admin)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("not one of the approvers"),
        "{err}"
    );
    // Direct access answers as `by`, resolved like a person: an unknown name is no approver.
    let err = e
        .answer(
            t.id,
            Answer {
                response: json!({"approved": true}),
                by: "mallory".into(),
                channel: "python".into(),
            },
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("not one of the approvers"),
        "{err}"
    );

    let done = e
        .answer_as(t.id, vote(true, "slack"), &carol())
        .await
        .unwrap();
    assert_eq!(done.status, Status::Completed);
    assert_eq!(done.answered_by.as_deref(), Some("carol"));
    assert_eq!(done.response, Some(json!({"approved": true})));
    let by: Vec<_> = done
        .votes
        .iter()
        .map(|v| (v.by.as_str(), v.channel.as_str()))
        .collect();
    assert_eq!(by, [("alice", "dashboard"), ("carol", "slack")]);

    // Late: bob is told who answered, and when; the refusal is audited.
    let late = e
        .answer_as(t.id, vote(true, "email"), &bob())
        .await
        .unwrap_err();
    assert!(matches!(late, Error::Conflict { .. }), "{late}");
    assert!(late.to_string().contains("carol"), "{late}");
    let k = kinds(&e, t.id).await;
    assert_eq!(
        k.iter().filter(|k| *k == "vote_recorded").count(),
        2,
        "{k:?}"
    );
    assert_eq!(
        k.iter().filter(|k| *k == "answer_refused").count(),
        5,
        "changed (twice), admin, mallory, late: {k:?}"
    );
    assert_eq!(k.last().map(String::as_str), Some("answer_refused"));
    assert!(e.verify_audit(t.id).await.unwrap().ok);
}

/// A single rejection ends a quorum task as rejected (the default `reject_on = any`), with
/// the rejecting vote as the answer; with `majority`, one of two required rejections does
/// not, two do.
async fn rejection_rules(db: Db) {
    let e = db.open().await;
    let p = Policy {
        approvers: Some(approvers(&["alice", "bob", "carol"], 2)),
        ..Default::default()
    };
    let t = e.create(wire("w-any", p)).await.unwrap().task;
    e.answer_as(t.id, vote(true, "dashboard"), &alice())
        .await
        .unwrap();
    let done = e
        .answer_as(t.id, vote(false, "slack"), &bob())
        .await
        .unwrap();
    assert_eq!(done.status, Status::Completed);
    assert_eq!(done.response, Some(json!({"approved": false})));
    assert_eq!(done.answered_by.as_deref(), Some("bob"));
    let last = e.audit(t.id).await.unwrap().pop().unwrap();
    assert_eq!(last.kind, "answer_accepted");
    assert_eq!(last.data["decided"], "rejected");

    let mut a = approvers(&["alice", "bob", "carol"], 2);
    a.reject_on = RejectOn::Majority;
    let p = Policy {
        approvers: Some(a),
        ..Default::default()
    };
    let t = e.create(wire("w-majority", p)).await.unwrap().task;
    let one = e
        .answer_as(t.id, vote(false, "dashboard"), &alice())
        .await
        .unwrap();
    assert_eq!(one.status, Status::Pending, "one rejection of two required");
    let two = e
        .answer_as(t.id, vote(false, "dashboard"), &bob())
        .await
        .unwrap();
    assert_eq!(two.status, Status::Completed);
    assert_eq!(two.response, Some(json!({"approved": false})));
    assert_eq!(two.votes.len(), 2);
}

/// The requester may not approve their own request when the policy excludes them, even when
/// the list names them, on every path (a signed-in user and direct access).
async fn the_requester_is_excluded(db: Db) {
    let e = db.open().await;
    let mut a = approvers(&["alice@acme.com", "bob@acme.com"], 1);
    a.exclude_requester = true;
    let mut new = wire(
        "w-self",
        Policy {
            approvers: Some(a),
            ..Default::default()
        },
    );
    new.requested_by = Some("alice@acme.com".into());
    let t = e.create(new).await.unwrap().task;
    let err = e
        .answer_as(t.id, vote(true, "dashboard"), &alice())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Forbidden(_)), "{err}");
    assert!(err.to_string().contains("requested task"), "{err}");
    let err = e
        .answer(
            t.id,
            Answer {
                response: json!({"approved": true}),
                by: "alice@acme.com".into(),
                channel: "python".into(),
            },
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("requested task"), "{err}");
    let done = e
        .answer_as(t.id, vote(true, "dashboard"), &bob())
        .await
        .unwrap();
    assert_eq!(done.status, Status::Completed);
    assert_eq!(done.requested_by.as_deref(), Some("alice@acme.com"));

    // Without a requester there is nobody to exclude: refused at creation, not ignored.
    let mut a = approvers(&["bob"], 1);
    a.exclude_requester = true;
    let mut new = wire(
        "w-anon",
        Policy {
            approvers: Some(a),
            ..Default::default()
        },
    );
    new.requested_by = None;
    let err = e.create(new).await.unwrap_err();
    assert!(err.to_string().contains("requested_by"), "{err}");
}

/// Policies that cannot work are refused at creation with a clear reason; the policy is part
/// of the digest (the same key with another policy is another request).
async fn bad_policies_are_refused(db: Db) {
    let e = db.open().await;
    let mut new = wire(
        "w-bad",
        Policy {
            approvers: Some(approvers(&["alice", "bob"], 2)),
            ..Default::default()
        },
    );
    new.response_schema = json!({"type": "object", "properties": {"note": {"type": "string"}}});
    let err = e.create(new).await.unwrap_err();
    assert!(
        err.to_string().contains("approval response schema"),
        "{err}"
    );

    let new = wire(
        "w-bad2",
        Policy {
            on_timeout: OnTimeout::Default(json!({"approved": "nope"})),
            ..Default::default()
        },
    );
    let err = e.create(new).await.unwrap_err();
    assert!(err.to_string().contains("on_timeout"), "{err}");

    let mut new = wire(
        "w-bad3",
        Policy {
            reminders_ms: vec![120_000],
            ..Default::default()
        },
    );
    new.timeout_ms = Some(60_000);
    let err = e.create(new).await.unwrap_err();
    assert!(
        err.to_string().contains("after the task's timeout"),
        "{err}"
    );

    let new = wire(
        "w-bad4",
        Policy {
            escalate: vec![Escalation {
                after_ms: 1000,
                notify: vec!["nochannel".into()],
                add_approvers: vec![],
            }],
            ..Default::default()
        },
    );
    let err = e.create(new).await.unwrap_err();
    assert!(err.to_string().contains("CHANNEL:TARGET"), "{err}");

    let p1 = Policy {
        approvers: Some(approvers(&["alice", "bob"], 2)),
        ..Default::default()
    };
    let first = e.create(wire("w-digest", p1.clone())).await.unwrap().task;
    let same = e.create(wire("w-digest", p1)).await.unwrap();
    assert!(!same.created);
    assert_eq!(same.task.id, first.id);
    let p2 = Policy {
        approvers: Some(approvers(&["alice", "bob"], 1)),
        ..Default::default()
    };
    let err = e.create(wire("w-digest", p2)).await.unwrap_err();
    assert!(matches!(err, Error::KeyReused { .. }), "{err}");
    // The agent's check recomputes the digest with the policy, from the task or its JSON.
    use inloop_core::schema::DigestParts;
    DigestParts::of(&first).verify(&first.payload).unwrap();
    let parts: DigestParts = serde_json::from_value(serde_json::to_value(&first).unwrap()).unwrap();
    parts.verify(&first.payload).unwrap();
    let err = parts
        .verify(&json!({"amount": 25001, "to": "ACME"}))
        .unwrap_err();
    assert_eq!(err.code(), "digest_mismatch");

    // A default answer needs a deadline to stand in for.
    let new = wire(
        "w-bad5",
        Policy {
            on_timeout: OnTimeout::Default(json!({"approved": false})),
            ..Default::default()
        },
    );
    let err = e.create(new).await.unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert!(err.to_string().contains("needs a timeout"), "{err}");

    // A quorum task is not claimed: every approver votes.
    let err = e
        .claim(first.id, "alice", "dashboard", &alice())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot be claimed"), "{err}");
}

/// Reminders and escalation fire at their times on a manual clock, once each even when two
/// engines sweep the same database at once: a reminder re-notifies the targets (an outbox
/// row per target), the escalation notifies its new target and adds an approver, who may
/// vote only from then on.
async fn timers_fire_once_at_their_times(db: Db) {
    let (e, clock) = manual(&db).await;
    let (e2, clock2) = manual(&db).await;
    let p = Policy {
        approvers: Some(approvers(&["alice"], 1)),
        reminders_ms: vec![1_000, 3_000],
        escalate: vec![Escalation {
            after_ms: 2_000,
            notify: vec!["webhook:cfo".into()],
            add_approvers: vec!["carol@acme.com".into()],
        }],
        ..Default::default()
    };
    let mut new = wire("w-timers", p);
    new.notify = vec!["webhook:ops".into()];
    new.timeout_ms = Some(10_000);
    let t = e.create(new).await.unwrap().task;
    let due: Vec<_> = t
        .timers
        .iter()
        .map(|t| (t.kind.as_str(), t.due_at - T0))
        .collect();
    assert_eq!(
        due,
        [
            ("reminder", 1_000),
            ("escalation", 2_000),
            ("reminder", 3_000)
        ]
    );

    clock.set(T0 + 999);
    assert_eq!(e.fire_due_timers().await.unwrap(), 0, "not yet due");

    // Due: two engines race; the timer fires once.
    clock.set(T0 + 1_000);
    clock2.set(T0 + 1_000);
    let (a, b) = tokio::join!(e.fire_due_timers(), e2.fire_due_timers());
    assert_eq!(a.unwrap() + b.unwrap(), 1);
    let t1 = e.get(t.id).await.unwrap();
    assert_eq!(t1.timers[0].fired_at, Some(T0 + 1_000));
    assert!(t1.timers[1].fired_at.is_none());
    let rows = inloop_core::channels::deliveries(&e, t.id).await.unwrap();
    let events: Vec<_> = rows
        .iter()
        .map(|d| (d.target.as_str(), d.event.as_str()))
        .collect();
    assert_eq!(events, [("ops", "created"), ("ops", "reminder.1")]);

    // Before the escalation carol may not vote; after it she may.
    let err = e
        .answer_as(t.id, vote(true, "dashboard"), &carol())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
    clock.set(T0 + 2_500);
    clock2.set(T0 + 2_500);
    let (a, b) = tokio::join!(e.fire_due_timers(), e2.fire_due_timers());
    assert_eq!(a.unwrap() + b.unwrap(), 1);
    let t2 = e.get(t.id).await.unwrap();
    assert_eq!(t2.notify, ["webhook:ops", "webhook:cfo"]);
    assert!(t2.assign_to.contains(&"carol@acme.com".to_string()));
    let rows = inloop_core::channels::deliveries(&e, t.id).await.unwrap();
    assert!(
        rows.iter()
            .any(|d| d.target == "cfo" && d.event == "created"),
        "the escalation target is shown the task"
    );
    let k = kinds(&e, t.id).await;
    // (carol could not see the task before: no refusal row, its existence stays hidden)
    assert_eq!(k, ["created", "reminder_sent", "escalated"]);
    let escalated = e.audit(t.id).await.unwrap().pop().unwrap();
    assert_eq!(escalated.data["late_ms"], 500);

    let done = e
        .answer_as(t.id, vote(true, "dashboard"), &carol())
        .await
        .unwrap();
    assert_eq!(done.status, Status::Completed);
    // An ended task's timers never fire.
    clock.set(T0 + 5_000);
    assert_eq!(e.fire_due_timers().await.unwrap(), 0);
    assert!(e.get(t.id).await.unwrap().timers[2].fired_at.is_none());
    // Both channels that showed it are told it ended.
    let rows = inloop_core::channels::deliveries(&e, t.id).await.unwrap();
    let ended: Vec<_> = rows
        .iter()
        .filter(|d| d.event == "ended")
        .map(|d| d.target.as_str())
        .collect();
    assert_eq!(ended, ["ops", "cfo"]);
}

/// A timeout is never silently a denial: with `raise` the agent gets `TimedOut`; with a
/// default answer it gets that answer, marked (`defaulted`, answered via `timeout`, nobody
/// as the answerer) and audited. A late answer is told when the task timed out.
async fn timeouts_raise_or_default(db: Db) {
    let (e, clock) = manual(&db).await;
    let mut new = wire(
        "w-raise",
        Policy {
            on_timeout: OnTimeout::Raise,
            ..Default::default()
        },
    );
    new.timeout_ms = Some(60_000);
    let raise = e.create(new).await.unwrap().task;
    let mut new = wire(
        "w-default",
        Policy {
            on_timeout: OnTimeout::Default(json!({"approved": false, "comment": "no answer"})),
            ..Default::default()
        },
    );
    new.timeout_ms = Some(60_000);
    let default = e.create(new).await.unwrap().task;

    clock.set(T0 + 60_000);
    assert_eq!(e.expire_due().await.unwrap(), 2);
    let err = e.await_response(raise.id).await.unwrap_err();
    assert!(matches!(err, Error::TimedOut { .. }), "{err}");

    let got = e.await_response(default.id).await.unwrap();
    assert_eq!(got.status, Status::TimedOut);
    assert!(got.defaulted());
    assert_eq!(
        got.response,
        Some(json!({"approved": false, "comment": "no answer"}))
    );
    assert_eq!(got.answered_via.as_deref(), Some("timeout"));
    assert_eq!(got.answered_by, None);
    let last = e.audit(default.id).await.unwrap().pop().unwrap();
    assert_eq!(last.kind, "timed_out");
    assert_eq!(last.data["default"]["approved"], false);

    let late = e
        .answer(
            default.id,
            Answer {
                response: json!({"approved": true}),
                by: "alice".into(),
                channel: "api".into(),
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(late, Error::Conflict { .. }), "{late}");
    assert!(late.to_string().contains("timed out at"), "{late}");
}

/// Timers with the real `inloop serve`: the server is SIGKILLed before any timer is due and
/// restarted (as two replicas on the same database) after the first reminder's time: every
/// reminder and escalation of every task fires exactly once (one audit row each, one delivery
/// each at the receiver), the missed one as soon as a replica is back.
async fn timers_fire_once_across_a_restart_and_two_replicas(db: Db) {
    use std::time::Duration;
    let hook = hook::Hook::start(hook::Behaviour::default()).await;
    let engine = db.open().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let p = Policy {
            reminders_ms: vec![4_000, 6_000],
            escalate: vec![Escalation {
                after_ms: 5_000,
                notify: vec!["webhook:cfo".into()],
                add_approvers: vec![],
            }],
            ..Default::default()
        };
        let mut new = wire(&format!("serve-{i}"), p);
        new.notify = vec!["webhook:ops".into()];
        ids.push(engine.create(new).await.unwrap().task.id);
    }
    let created = std::time::Instant::now();
    let start = || {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_inloop"));
        cmd.args(["serve", "--bind", "127.0.0.1:0"])
            .env("INLOOP_DATABASE_URL", &db.url)
            .env("INLOOP_CHANNEL_LEASE_SECS", "2")
            .env("INLOOP_CHANNEL_RETRY_BASE_MS", "50")
            .env("INLOOP_CHANNEL_POLL_MS", "50")
            .env("INLOOP_LOG", "warn")
            .envs(hook.env("ops"))
            .envs(hook.env("cfo"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        cmd.spawn().expect("start inloop serve")
    };
    let mut first = start();
    common::eventually("the tasks shown", Duration::from_secs(20), || {
        hook.hits().len() >= 5
    })
    .await;
    assert!(
        created.elapsed() < Duration::from_millis(3_800),
        "the machine is too slow for this test's timing"
    );
    first.kill().unwrap(); // SIGKILL, before any timer is due
    first.wait().unwrap();
    for id in &ids {
        assert!(
            engine
                .get(*id)
                .await
                .unwrap()
                .timers
                .iter()
                .all(|t| t.fired_at.is_none())
        );
    }
    // Down while the first reminder falls due.
    tokio::time::sleep(Duration::from_millis(4_500).saturating_sub(created.elapsed())).await;
    let mut a = start();
    let mut b = start();
    // Deliveries by webhook-id (a delivery in flight at the kill may arrive twice, under one
    // id: that is the outbox's at-least-once contract, tested in `outbox.rs`).
    let kinds_of = |hits: &[hook::Hit], kind: &str| {
        hits.iter()
            .filter(|h| h.body["type"] == kind)
            .map(|h| h.id.clone())
            .collect::<std::collections::HashSet<_>>()
    };
    common::eventually("every timer's delivery", Duration::from_secs(30), || {
        let hits = hook.hits();
        kinds_of(&hits, "task.reminder").len() >= 15 && kinds_of(&hits, "task.created").len() >= 10
    })
    .await;
    // Let any duplicate show up before counting.
    tokio::time::sleep(Duration::from_millis(800)).await;
    a.kill().unwrap();
    b.kill().unwrap();
    a.wait().unwrap();
    b.wait().unwrap();
    let hits = hook.hits();
    assert!(hits.iter().all(|h| h.verified));
    // Reminder 1 goes to ops; reminder 2, after the escalation, to ops and cfo: 15, each sent
    // once (no timer fired twice, so no delivery was written twice).
    let reminders: Vec<_> = hits
        .iter()
        .filter(|h| h.body["type"] == "task.reminder")
        .collect();
    assert_eq!(reminders.len(), 15, "each reminder delivery sent once");
    assert_eq!(kinds_of(&hits, "task.reminder").len(), 15);
    // 5 tasks shown on ops at creation + 5 shown on cfo by the escalation.
    assert_eq!(kinds_of(&hits, "task.created").len(), 10);
    for id in &ids {
        let audit = engine.audit(*id).await.unwrap();
        let count = |k: &str| audit.iter().filter(|e| e.kind == k).count();
        assert_eq!(count("reminder_sent"), 2);
        assert_eq!(count("escalated"), 1);
        let t = engine.get(*id).await.unwrap();
        let first = &t.timers[0];
        assert_eq!((first.kind.as_str(), first.index), ("reminder", 1));
        // The missed reminder fired after the restart, not before.
        assert!(first.fired_at.unwrap() >= first.due_at + 400, "{first:?}");
    }
}

conformance!(
    timers_fire_once_across_a_restart_and_two_replicas,
    two_of_three_completes_on_the_second_approval,
    rejection_rules,
    the_requester_is_excluded,
    bad_policies_are_refused,
    timers_fire_once_at_their_times,
    timeouts_raise_or_default,
);
