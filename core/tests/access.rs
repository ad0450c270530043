//! Who may see, claim, answer and cancel: the access rules and the people behind them
//! (users, sessions, first-run setup), checked against both backends like the conformance
//! suite (`sqlite::NAME`, `postgres::NAME`).

mod common;

use std::time::Duration;

use common::Db;
use inloop_core::access::{Identity, Principal, Unassigned};
use inloop_core::apikeys::create_api_key;
use inloop_core::users::{self, Role};
use inloop_core::{Answer, Engine, Error, ListFilter, NewTask, Status};
use serde_json::{Value, json};
use uuid::Uuid;

fn approval() -> Value {
    json!({"type": "object", "properties": {"approved": {"type": "boolean"}}, "required": ["approved"]})
}

fn assigned(ns: &str, key: &str, to: &[&str]) -> NewTask {
    NewTask {
        namespace: Some(ns.into()),
        key: Some(key.into()),
        title: format!("Approve {key}?"),
        payload: json!({"key": key}),
        response_schema: approval(),
        assign_to: to.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn user(name: &str, email: Option<&str>, role: Role) -> Principal {
    Principal::User(Identity {
        name: name.into(),
        email: email.map(str::to_string),
        role,
        groups: Vec::new(),
    })
}

fn yes() -> Answer {
    Answer {
        response: json!({"approved": true}),
        by: "ignored-for-users".into(),
        channel: "dashboard".into(),
    }
}

async fn create(engine: &Engine, t: NewTask) -> Uuid {
    engine.create(t).await.unwrap().task.id
}

async fn keys_seen(engine: &Engine, who: &Principal) -> Vec<String> {
    let mut keys: Vec<String> = engine
        .list_as(ListFilter::default(), who)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|t| t.key)
        .collect();
    keys.sort();
    keys
}

async fn kinds(engine: &Engine, id: Uuid) -> Vec<String> {
    engine
        .audit(id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

/// Reviewers see what is assigned to them (by name, e-mail or role, case-insensitively) and
/// unassigned tasks; nothing else, on every path (list, counts, get, answer).
async fn reviewers_see_and_answer_only_their_tasks(db: Db) {
    let e = db.open().await;
    let alice = user("alice", Some("alice@acme.com"), Role::Reviewer);
    let admin = user("root", None, Role::Admin);
    let by_name = create(&e, assigned("ns", "by-name", &["Alice"])).await;
    create(&e, assigned("ns", "by-email", &["ALICE@acme.com"])).await;
    create(&e, assigned("ns", "by-role", &["role:reviewer"])).await;
    create(&e, assigned("ns", "unassigned", &[])).await;
    let bobs = create(&e, assigned("ns", "bobs", &["bob"])).await;
    create(&e, assigned("ns", "admins", &["role:admin"])).await;

    assert_eq!(
        keys_seen(&e, &alice).await,
        ["by-email", "by-name", "by-role", "unassigned"]
    );
    assert_eq!(keys_seen(&e, &admin).await.len(), 6);
    let counts = e.counts_as(None, None, None, &alice).await.unwrap();
    assert_eq!(counts[0], (Status::Pending, 4));
    let counts = e.counts_as(None, None, None, &admin).await.unwrap();
    assert_eq!(counts[0], (Status::Pending, 6));
    // the assignee filter
    let only_bob = e
        .list_as(
            ListFilter {
                assignee: Some("BOB".into()),
                ..Default::default()
            },
            &admin,
        )
        .await
        .unwrap();
    assert_eq!(only_bob.items.len(), 1);

    // another's task does not exist for alice: not on get, not on answer (and nothing is
    // written to its audit trail)
    assert!(matches!(
        e.get_as(bobs, &alice).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        e.answer_as(bobs, yes(), &alice).await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(kinds(&e, bobs).await, ["created"]);
    assert_eq!(e.get(bobs).await.unwrap().status, Status::Pending);

    // her own: answered, recorded as her whatever `by` said
    let done = e.answer_as(by_name, yes(), &alice).await.unwrap();
    assert_eq!(done.answered_by.as_deref(), Some("alice"));
    assert_eq!(done.answered_via.as_deref(), Some("dashboard"));
    // an admin answers anything
    e.answer_as(bobs, yes(), &admin).await.unwrap();
    // what she answered stays visible to her even if reassigned wording changes
    assert!(keys_seen(&e, &alice).await.contains(&"by-name".to_string()));
}

/// Groups: a user in `finance` sees and answers tasks assigned to `role:finance` or
/// `group:finance` (set at creation or later), not another group's.
async fn groups_widen_what_a_reviewer_sees(db: Db) {
    let e = db.open().await;
    let u = users::add_user_in(
        &e,
        "fiona",
        None,
        Role::Reviewer,
        &["Finance".into()],
        "long enough 1",
    )
    .await
    .unwrap();
    assert_eq!(u.groups, ["finance"]);
    let fiona = Principal::User(u.identity());
    let by_role = create(&e, assigned("ns", "role-finance", &["role:finance"])).await;
    create(&e, assigned("ns", "group-finance", &["GROUP:Finance"])).await;
    let legal = create(&e, assigned("ns", "legal", &["role:legal"])).await;
    assert_eq!(
        keys_seen(&e, &fiona).await,
        ["group-finance", "role-finance"]
    );
    e.answer_as(by_role, yes(), &fiona).await.unwrap();
    assert!(matches!(
        e.answer_as(legal, yes(), &fiona).await,
        Err(Error::NotFound(_))
    ));
    // groups change: now legal's
    let u = users::set_groups(&e, "fiona", &["legal".into()])
        .await
        .unwrap();
    let fiona = Principal::User(u.identity());
    assert!(keys_seen(&e, &fiona).await.contains(&"legal".to_string()));
    assert!(
        !keys_seen(&e, &fiona)
            .await
            .contains(&"group-finance".to_string())
    );
    // a session carries the groups
    let (token, _) = users::start_session(&e, &u).await.unwrap();
    let s = users::session(&e, &token).await.unwrap().unwrap();
    assert_eq!(s.user.groups, ["legal"]);
    for bad in ["admin", "bad group", ""] {
        assert!(matches!(
            users::set_groups(&e, "fiona", &[bad.into()]).await,
            Err(Error::InvalidArgument(_))
        ));
    }
}

/// A namespace may keep its unassigned tasks for admins.
async fn namespace_policy_keeps_unassigned_for_admins(db: Db) {
    let e = db.open().await;
    let alice = user("alice", None, Role::Reviewer);
    let hidden = create(&e, assigned("private", "p-unassigned", &[])).await;
    create(&e, assigned("private", "p-alice", &["alice"])).await;
    create(&e, assigned("open", "o-unassigned", &[])).await;
    e.set_unassigned_policy("private", Unassigned::Admins)
        .await
        .unwrap();
    assert_eq!(keys_seen(&e, &alice).await, ["o-unassigned", "p-alice"]);
    assert!(matches!(
        e.answer_as(hidden, yes(), &alice).await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(
        e.unassigned_policies().await.unwrap(),
        [("private".to_string(), Unassigned::Admins)]
    );
    // back to the default
    e.set_unassigned_policy("private", Unassigned::Reviewers)
        .await
        .unwrap();
    e.answer_as(hidden, yes(), &alice).await.unwrap();
}

/// A claim reserves the task: others may neither answer nor claim it (refusals audited);
/// the holder or an admin releases it; claiming twice is a no-op; an ended task can't be
/// claimed.
async fn claims_reserve_the_task(db: Db) {
    let e = db.open().await;
    let alice = user("alice", None, Role::Reviewer);
    let carol = user("carol", None, Role::Reviewer);
    let admin = user("root", None, Role::Admin);
    let id = create(&e, assigned("ns", "team", &["role:reviewer"])).await;

    let t = e.claim(id, "spoofed", "dashboard", &alice).await.unwrap();
    assert_eq!(t.claimed_by.as_deref(), Some("alice"));
    assert!(t.claimed_at.is_some());
    e.claim(id, "alice", "dashboard", &alice).await.unwrap(); // again: no new row
    assert_eq!(kinds(&e, id).await, ["created", "claimed"]);

    match e.answer_as(id, yes(), &carol).await {
        Err(Error::Forbidden(m)) => assert!(m.contains("claimed by alice"), "{m}"),
        other => panic!("expected forbidden, got {other:?}"),
    }
    assert!(matches!(
        e.claim(id, "carol", "dashboard", &carol).await,
        Err(Error::Forbidden(_))
    ));
    assert!(matches!(
        e.release(id, "carol", "dashboard", &carol).await,
        Err(Error::Forbidden(_))
    ));
    let audit = e.audit(id).await.unwrap();
    let refused = audit.last().unwrap();
    assert_eq!(refused.kind, "answer_refused");
    assert_eq!(refused.actor.as_deref(), Some("carol"));
    assert_eq!(refused.data["reason"], "forbidden");

    // an admin may release anyone's claim; then carol claims and answers
    let t = e.release(id, "root", "dashboard", &admin).await.unwrap();
    assert_eq!(t.claimed_by, None);
    e.claim(id, "carol", "dashboard", &carol).await.unwrap();
    let done = e.answer_as(id, yes(), &carol).await.unwrap();
    assert_eq!(done.status, Status::Completed);
    assert!(matches!(
        e.claim(id, "alice", "dashboard", &alice).await,
        Err(Error::Conflict { .. })
    ));
    assert_eq!(
        kinds(&e, id).await,
        [
            "created",
            "claimed",
            "answer_refused",
            "released",
            "claimed",
            "answer_accepted"
        ]
    );
    assert!(e.verify_audit(id).await.unwrap().ok);
}

/// API keys: their namespace only; answering needs `allow_answer` (refusal audited);
/// reviewers may not cancel, admins and the agent's key may.
async fn api_keys_and_cancel_rules(db: Db) {
    let e = db.open().await;
    let (agent, _) = create_api_key(&e, "agent", "ns", false).await.unwrap();
    let (bridge, _) = create_api_key(&e, "bridge", "ns", true).await.unwrap();
    let (other, _) = create_api_key(&e, "other", "elsewhere", true)
        .await
        .unwrap();
    let (agent, bridge, other) = (
        Principal::ApiKey(agent),
        Principal::ApiKey(bridge),
        Principal::ApiKey(other),
    );
    let a = create(&e, assigned("ns", "a", &[])).await;
    let b = create(&e, assigned("ns", "b", &[])).await;

    assert!(matches!(
        e.answer_as(a, yes(), &agent).await,
        Err(Error::Forbidden(_))
    ));
    assert_eq!(kinds(&e, a).await, ["created", "answer_refused"]);
    assert!(matches!(e.get_as(a, &other).await, Err(Error::NotFound(_))));
    assert!(matches!(
        e.list_as(
            ListFilter {
                namespace: Some("ns".into()),
                ..Default::default()
            },
            &other
        )
        .await,
        Err(Error::Forbidden(_))
    ));
    assert_eq!(keys_seen(&e, &other).await, Vec::<String>::new());
    assert_eq!(keys_seen(&e, &agent).await, ["a", "b"]);
    let done = e
        .answer_as(
            a,
            Answer {
                by: "alice@slack".into(),
                ..yes()
            },
            &bridge,
        )
        .await
        .unwrap();
    assert_eq!(done.answered_by.as_deref(), Some("alice@slack"));

    let reviewer = user("alice", None, Role::Reviewer);
    assert!(matches!(
        e.cancel_as(b, "alice", "dashboard", None, &reviewer).await,
        Err(Error::Forbidden(_))
    ));
    let t = e
        .cancel_as(b, "agent", "api", Some("withdrawn"), &agent)
        .await
        .unwrap();
    assert_eq!(t.status, Status::Cancelled);
    let c = create(&e, assigned("ns", "c", &[])).await;
    let admin = user("root", None, Role::Admin);
    let t = e
        .cancel_as(c, "spoofed", "dashboard", None, &admin)
        .await
        .unwrap();
    assert_eq!(t.cancelled_by.as_deref(), Some("root"));
}

/// Users: unique names and e-mails, argon2id sign-in (name or e-mail), disabled users
/// refused, a reset password ends sessions; sessions look up and end.
async fn users_and_sessions(db: Db) {
    let e = db.open().await;
    let alice = users::add_user(
        &e,
        "Alice",
        Some("Alice@Acme.com"),
        Role::Reviewer,
        "correct horse 1",
    )
    .await
    .unwrap();
    assert_eq!(
        (alice.name.as_str(), alice.email.as_deref()),
        ("alice", Some("alice@acme.com"))
    );
    for (name, email, pw) in [
        ("alice", None, "long enough pw"),
        ("other", Some("alice@acme.com"), "long enough pw"),
        ("bad name!", None, "long enough pw"),
        ("role-x", None, "long enough pw"),
        ("shortpw", None, "short"),
        ("mail", Some("not-an-address"), "long enough pw"),
    ] {
        let r = users::add_user(&e, name, email, Role::Reviewer, pw).await;
        assert!(matches!(r, Err(Error::InvalidArgument(_))), "{name}: {r:?}");
    }
    assert_eq!(
        users::check_login(&e, "alice", "correct horse 1")
            .await
            .unwrap()
            .id,
        alice.id
    );
    assert_eq!(
        users::check_login(&e, "ALICE@acme.com", "correct horse 1")
            .await
            .unwrap()
            .id,
        alice.id
    );
    for (login, pw) in [
        ("alice", "wrong password"),
        ("nobody", "correct horse 1"),
        ("", "x"),
    ] {
        assert!(matches!(
            users::check_login(&e, login, pw).await,
            Err(Error::Unauthorized(_))
        ));
    }

    let (token, session) = users::start_session(&e, &alice).await.unwrap();
    assert_eq!(session.csrf.len(), 43);
    let found = users::session(&e, &token).await.unwrap().unwrap();
    assert_eq!((found.user.id, found.csrf), (alice.id, session.csrf));
    assert!(users::session(&e, "forged").await.unwrap().is_none());

    // disabling signs out and refuses sign-in; enabling restores sign-in
    users::set_disabled(&e, "alice", true).await.unwrap();
    assert!(users::session(&e, &token).await.unwrap().is_none());
    assert!(
        users::check_login(&e, "alice", "correct horse 1")
            .await
            .is_err()
    );
    users::set_disabled(&e, "alice", false).await.unwrap();
    let (token, _) = users::start_session(&e, &alice).await.unwrap();
    users::reset_password(&e, "alice", "battery staple 2")
        .await
        .unwrap();
    assert!(users::session(&e, &token).await.unwrap().is_none());
    assert!(
        users::check_login(&e, "alice", "correct horse 1")
            .await
            .is_err()
    );
    users::check_login(&e, "alice", "battery staple 2")
        .await
        .unwrap();
    let (token, _) = users::start_session(&e, &alice).await.unwrap();
    users::end_session(&e, &token).await.unwrap();
    assert!(users::session(&e, &token).await.unwrap().is_none());
    assert!(matches!(
        users::reset_password(&e, "nobody", "battery staple 2").await,
        Err(Error::Missing(_))
    ));
}

/// The setup link creates the first admin once, even when used concurrently, and never
/// once a user exists.
async fn setup_creates_the_first_admin_once(db: Db) {
    let e = db.open().await;
    assert!(users::setup_open(&e).await.unwrap());
    let (a, b) = tokio::join!(
        users::complete_setup(&e, "first", None, "long enough 1"),
        users::complete_setup(&e, "second", None, "long enough 2"),
    );
    assert!(
        a.is_ok() != b.is_ok(),
        "exactly one setup wins: {a:?} {b:?}"
    );
    let admin = a.or(b).unwrap();
    assert_eq!(admin.role, Role::Admin);
    assert!(!users::setup_open(&e).await.unwrap());
    assert!(matches!(
        users::complete_setup(&e, "third", None, "long enough 3").await,
        Err(Error::Forbidden(_))
    ));

    let other = db.open().await; // (any process: the state is in the database)
    assert!(!users::setup_open(&other).await.unwrap());
}

/// Setup is closed when users were added from the command line first.
async fn setup_is_closed_when_users_exist(db: Db) {
    let e = db.open().await;
    users::add_user(&e, "admin", None, Role::Admin, "long enough 1")
        .await
        .unwrap();
    assert!(!users::setup_open(&e).await.unwrap());
    assert!(
        users::complete_setup(&e, "x", None, "long enough 1")
            .await
            .is_err()
    );
}

/// The change feed carries every audit row of changes made through another engine (another
/// process's view of the same database).
async fn change_feed_sees_other_processes(db: Db) {
    let watching = db.open().await;
    let acting = db.open().await;
    let mut feed = watching.changes();
    // Let the watcher start (its first look fixes where it reads from).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let id = create(&acting, assigned("ns", "fed", &[])).await;
    let admin = user("root", None, Role::Admin);
    acting.claim(id, "root", "api", &admin).await.unwrap();
    acting.answer_as(id, yes(), &admin).await.unwrap();
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while seen.len() < 3 {
        let c = tokio::time::timeout_at(deadline, feed.recv())
            .await
            .expect("change feed too slow")
            .unwrap();
        if c.task_id == id {
            seen.push(c.kind);
        }
    }
    assert_eq!(seen, ["created", "claimed", "answer_accepted"]);
}

conformance!(
    reviewers_see_and_answer_only_their_tasks,
    groups_widen_what_a_reviewer_sees,
    namespace_policy_keeps_unassigned_for_admins,
    claims_reserve_the_task,
    api_keys_and_cancel_rules,
    users_and_sessions,
    setup_creates_the_first_admin_once,
    setup_is_closed_when_users_exist,
    change_feed_sees_other_processes,
    documents_keep_their_key_order,
);

/// Documents keep their key order on both backends (the form shows a schema's properties in
/// the order given; the payload reads in the order the agent wrote it).
async fn documents_keep_their_key_order(db: Db) {
    let e = db.open().await;
    let schema: Value = serde_json::from_str(
        r#"{"type":"object","properties":{"zeta":{"type":"string"},"alpha":{"type":"integer"},"mid":{"type":"boolean"}},"required":["zeta"]}"#,
    )
    .unwrap();
    let payload: Value =
        serde_json::from_str(r#"{"z":1,"a":{"y":2,"b":3},"longer_key":4}"#).unwrap();
    let id = e
        .create(NewTask {
            title: "order".into(),
            payload,
            response_schema: schema,
            ..Default::default()
        })
        .await
        .unwrap()
        .task
        .id;
    let t = e.get(id).await.unwrap();
    let props: Vec<&String> = t.response_schema["properties"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(props, ["zeta", "alpha", "mid"]);
    assert_eq!(
        serde_json::to_string(&t.payload).unwrap(),
        r#"{"z":1,"a":{"y":2,"b":3},"longer_key":4}"#
    );
    let done = e
        .answer(
            id,
            Answer {
                response: serde_json::from_str(r#"{"zeta":"z","alpha":1}"#).unwrap(),
                by: "x".into(),
                channel: "api".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_string(&done.response).unwrap(),
        r#"{"zeta":"z","alpha":1}"#
    );
    let again = e.get(id).await.unwrap();
    assert_eq!(
        serde_json::to_string(&again.response).unwrap(),
        r#"{"zeta":"z","alpha":1}"#
    );
}
