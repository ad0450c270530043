//! The pages rendered from plain view data: links, badges, forms, live regions, escaping.

use super::layout::message;
use super::queue::ALL_STATUSES;
use super::sign_in::{login, setup};
use crate::dashboard::view::{Flash, LoginView, QueueView, SetupView, TaskView, Viewer};
use crate::dashboard::view::{FormState, Permissions, QueueFilter};
use crate::error::FieldError;
use crate::model::{AuditEvent, Status, Task};
use crate::store::outbox::Delivery;
use crate::users::Role;
use serde_json::Value;
use serde_json::json;
use uuid::Uuid;

const XSS: &str = r#"<script>alert(1)</script>"><img src=x onerror=alert(1)>"#;
const T0: i64 = 1_714_557_000_000; // 2024-05-01T09:50:00Z

fn viewer(role: Role) -> Viewer {
    Viewer {
        name: "alice".into(),
        role,
        csrf: "tok123".into(),
    }
}

fn task(status: Status) -> Task {
    Task {
        id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001),
        namespace: "billing".into(),
        key: "refund-A-1042".into(),
        title: "Approve a refund of 500 EUR for order A-1042?".into(),
        payload: json!({
            "order": {"id": "A-1042", "amount": 500.0, "currency": "EUR",
                      "customer": "Dana Scully", "url": "https://shop.example.com/orders/A-1042"},
            "reason": "Customer reports the parcel arrived damaged.\nPhotos attached in the ticket.",
            "items": [{"sku": "KB-01", "name": "Keyboard", "qty": 1, "price": 420.0},
                      {"sku": "MS-02", "name": "Mouse", "qty": 2, "price": 40.0}],
            "flags": ["first_refund", "vip"],
            "risk_score": 0.12,
            "previous_refunds": null
        }),
        payload_schema: None,
        response_schema: json!({
            "type": "object",
            "required": ["approved"],
            "properties": {
                "approved": {"type": "boolean", "title": "Approve this refund?"},
                "comment": {"type": "string", "title": "Comment", "description": "Shown to the agent."}
            }
        }),
        digest: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
        notify: vec![],
        assign_to: vec!["role:reviewer".into()],
        status,
        response: None,
        answered_by: None,
        answered_via: None,
        cancelled_by: None,
        cancel_reason: None,
        claimed_by: None,
        claimed_at: None,
        created_at: T0,
        updated_at: T0,
        deadline: Some(T0 + 3_600_000),
        ended_at: None,
        verification: None,
        attempts: 0,
        rejections: vec![],
        verifying_until: None,
        verify_token: None,
        requested_by: None,
        policy: None,
        votes: vec![],
        timers: vec![],
        callback_url: None,
        traceparent: None,
    }
}

fn delivery(channel: &str, target: &str, state: &str, error: Option<&str>) -> Delivery {
    Delivery {
        id: 1,
        task_id: Uuid::nil(),
        channel: channel.into(),
        target: target.into(),
        event: "ended".into(),
        idempotency_key: "dlv_x".into(),
        state: state.into(),
        attempts: 3,
        next_at: T0,
        last_error: error.map(str::to_string),
        result: None,
        created_at: T0,
        done_at: Some(T0 + 1000),
    }
}

fn event(
    seq: i64,
    kind: &str,
    actor: Option<&str>,
    channel: Option<&str>,
    data: Value,
) -> AuditEvent {
    AuditEvent {
        task_id: Uuid::nil(),
        seq,
        at: T0 + seq * 60_000,
        actor: actor.map(str::to_string),
        channel: channel.map(str::to_string),
        kind: kind.into(),
        data,
        prev_hash: String::new(),
        hash: String::new(),
    }
}

fn audit() -> Vec<AuditEvent> {
    vec![
        event(
            0,
            "created",
            Some("refund-agent"),
            Some("python"),
            json!({"digest": "x"}),
        ),
        event(1, "claimed", Some("alice"), Some("dashboard"), json!({})),
        event(
            2,
            "answer_refused",
            Some("alice"),
            Some("dashboard"),
            json!({
            "reason": "invalid", "code": "invalid_answer", "message": "invalid answer",
            "errors": [{"path": "/approved", "message": "true is not of type \"string\""}]}),
        ),
        event(3, "mystery_kind", None, None, json!({"x": 1})),
    ]
}

fn counts() -> Vec<(Status, u64)> {
    ALL_STATUSES
        .iter()
        .zip([3, 12, 1, 2, 0])
        .map(|(s, n)| (*s, n))
        .collect()
}

fn task_page(
    t: &Task,
    may: Permissions,
    form: FormState,
    audit: &[AuditEvent],
    role: Role,
) -> String {
    let v = viewer(role);
    super::task(&TaskView {
        viewer: &v,
        task: t,
        audit,
        deliveries: &[],
        may,
        form,
        flash: None,
    })
    .into_string()
}

fn all_may() -> Permissions {
    Permissions {
        answer: true,
        claim: true,
        release: false,
        cancel: true,
    }
}

fn queue_page(tasks: &[Task], filter: &QueueFilter, next: Option<&str>) -> String {
    let v = viewer(Role::Reviewer);
    let c = counts();
    super::queue(&QueueView {
        viewer: &v,
        counts: &c,
        filter,
        tasks,
        next_cursor: next,
        failed: &Default::default(),
        failed_total: 0,
    })
    .into_string()
}

/// What the CSP forbids, and what every page has.
fn assert_csp_clean_layout(h: &str) {
    assert!(h.starts_with("<!DOCTYPE html><html lang=\"en\">"), "{h}");
    assert!(h.contains(r#"<meta name="viewport""#) && h.contains("/static/app.css"));
    assert!(h.contains(r#"<script src="/static/app.js" defer></script>"#));
    assert_eq!(h.matches("<script").count(), 1, "one script, external: {h}");
    assert!(!h.contains("<style"), "{h}");
    // Escaped text holds no `<`, so each `<...>` is a real tag.
    for tag in h
        .split('<')
        .skip(1)
        .map(|t| &t[..t.find('>').unwrap_or(t.len())])
    {
        for name in attr_names(tag) {
            assert!(!name.starts_with("on") && name != "style", "<{tag}> in {h}");
        }
    }
}

/// The attribute names of a tag's text (`input type="x" checked` -> type, checked).
fn attr_names(tag: &str) -> Vec<String> {
    let (mut names, mut cur, mut quoted, mut in_value) = (vec![], String::new(), false, false);
    for c in tag.chars() {
        match c {
            '"' => quoted = !quoted,
            _ if quoted => {}
            '=' => {
                names.push(std::mem::take(&mut cur));
                in_value = true;
            }
            ' ' => {
                if !in_value && !cur.is_empty() {
                    names.push(std::mem::take(&mut cur));
                }
                cur.clear();
                in_value = false;
            }
            c if !in_value => cur.push(c),
            _ => {}
        }
    }
    if !in_value && !cur.is_empty() {
        names.push(cur);
    }
    names.into_iter().skip(1).collect()
}

#[test]
fn queue_lists_tasks_with_links_badges_and_times() {
    let t = task(Status::Pending);
    let h = queue_page(std::slice::from_ref(&t), &QueueFilter::default(), None);
    assert_csp_clean_layout(&h);
    assert!(
        h.contains(&format!(r#"<a href="/tasks/{}">Approve a refund"#, t.id)),
        "{h}"
    );
    assert!(
        h.contains(r#"<span class="badge st-pending">Pending</span>"#),
        "{h}"
    );
    assert!(
        h.contains(r#"<time datetime="2024-05-01T09:50:00.000Z""#),
        "{h}"
    );
    assert!(
        h.contains(r#"<nav class="tabs" id="queue-counts" data-live"#),
        "{h}"
    );
    assert!(h.contains(r#"<div id="queue-list" data-live>"#), "{h}");
    assert!(
        h.contains(r#"aria-current="page">Pending <span class="count">3</span>"#),
        "{h}"
    );
    assert!(h.contains(r#"All <span class="count">18</span>"#), "{h}");
    assert!(h.contains("alice") && h.contains("Reviewer") && h.contains(r#"action="/logout""#));
    assert!(h.contains(r#"name="csrf" value="tok123""#));
}

#[test]
fn queue_links_keep_the_other_filters() {
    let f = QueueFilter {
        status: Some("completed".into()),
        assignee: Some("bob & co".into()),
        key: Some("refund-".into()),
        cursor: Some("c1".into()),
        deliveries: None,
    };
    let h = queue_page(&[task(Status::Completed)], &f, Some("next=1"));
    assert!(
        h.contains(r#"href="/tasks?status=timed_out&amp;assignee=bob+%26+co&amp;key=refund-""#),
        "{h}"
    );
    assert!(h.contains(r#"href="/tasks?status=completed&amp;assignee=bob+%26+co&amp;key=refund-&amp;cursor=next%3D1" rel="next""#), "{h}");
    assert!(
        h.contains(r#"<a class="clear" href="/tasks?status=completed">Clear</a>"#),
        "{h}"
    );
    assert!(
        h.contains(r#"<form class="filters" method="get" action="/tasks""#),
        "{h}"
    );
}

#[test]
fn queue_empty_state() {
    let h = queue_page(&[], &QueueFilter::default(), None);
    assert!(
        h.contains("Nothing waiting for you.") && !h.contains("<table"),
        "{h}"
    );
    assert!(!h.contains("Older"), "{h}");
}

#[test]
fn failed_deliveries_show_on_the_queue_and_the_task_page() {
    let t = task(Status::Pending);
    let mut quiet = task(Status::Completed);
    quiet.id = Uuid::from_u128(2);
    let v = viewer(Role::Reviewer);
    let c = counts();
    let failed = [(t.id, 2_u64)].into_iter().collect();
    let queue = |filter: &QueueFilter, total| {
        super::queue(&QueueView {
            viewer: &v,
            counts: &c,
            filter,
            tasks: &[t.clone(), quiet.clone()],
            next_cursor: None,
            failed: &failed,
            failed_total: total,
        })
        .into_string()
    };
    let h = queue(&QueueFilter::default(), 3);
    assert_csp_clean_layout(&h);
    // The header chip links to the filter; the row's badge to the task's deliveries.
    assert!(
        h.contains(r#"<div class="alerts" id="queue-alerts" data-live><a class="chip dlv-failed" href="/tasks?status=all&amp;deliveries=failed""#),
        "{h}"
    );
    assert!(h.contains("3 failed deliveries</a>"), "{h}");
    assert!(
        h.contains(&format!(
            r#"<a class="badge dlv-failed" href="/tasks/{}#task-deliveries""#,
            t.id
        )),
        "{h}"
    );
    assert_eq!(h.matches("class=\"badge dlv-failed\"").count(), 1, "{h}");
    assert!(h.contains("2 failed deliveries"), "{h}");
    // Nothing failed: no chip (the live region stays, empty).
    let h = queue(&QueueFilter::default(), 0);
    assert!(
        h.contains(r#"<div class="alerts" id="queue-alerts" data-live></div>"#),
        "{h}"
    );
    // The filter keeps itself across tabs and the form, and says how to leave it.
    let f = QueueFilter {
        deliveries: Some("failed".into()),
        ..Default::default()
    };
    let h = queue(&f, 1);
    assert!(h.contains("1 failed delivery</a>"), "{h}");
    assert!(
        h.contains(r#"href="/tasks?status=completed&amp;deliveries=failed""#),
        "{h}"
    );
    assert!(
        h.contains(r#"<input type="hidden" name="deliveries" value="failed">"#),
        "{h}"
    );
    assert!(
        h.contains(r#"<a href="/tasks?status=pending">Show every task</a>"#),
        "{h}"
    );

    let list = [
        delivery(
            "webhook",
            "billing",
            "failed",
            Some("gave up after 5 attempts: 500"),
        ),
        delivery("callback", "https://engine.internal/hooks/x", "done", None),
    ];
    let page = super::task(&TaskView {
        viewer: &v,
        task: &t,
        audit: &[],
        deliveries: &list,
        may: all_may(),
        form: FormState::default(),
        flash: None,
    })
    .into_string();
    assert_csp_clean_layout(&page);
    assert!(
        page.contains(r#"<section id="task-deliveries" data-live aria-label="Deliveries">"#),
        "{page}"
    );
    assert!(
        page.contains(r#"<tr class="dlv-row dlv-failed">"#),
        "{page}"
    );
    assert!(page.contains("gave up after 5 attempts: 500"), "{page}");
    assert!(
        page.contains(
            "<h2>Deliveries <span class=\"badge dlv-failed\">1 failed delivery</span></h2>"
        ),
        "{page}"
    );
    assert!(
        page.contains("<code>https://engine.internal/hooks/x</code>"),
        "{page}"
    );
    assert!(page.contains("Outcome (callback)"), "{page}");
    // No deliveries: the region is there, empty.
    let none = task_page(&t, all_may(), FormState::default(), &[], Role::Admin);
    assert!(
        none.contains(
            r#"<section id="task-deliveries" data-live aria-label="Deliveries"></section>"#
        ),
        "{none}"
    );
}

#[test]
fn task_page_shows_meta_payload_form_and_timeline() {
    let t = task(Status::Pending);
    let h = task_page(&t, all_may(), FormState::default(), &audit(), Role::Admin);
    assert_csp_clean_layout(&h);
    assert!(
        h.contains(&format!(
            r#"<main id="main" data-task-id="{}" data-status="pending">"#,
            t.id
        )),
        "{h}"
    );
    assert!(
        h.contains("<h1>Approve a refund of 500 EUR for order A-1042?</h1>"),
        "{h}"
    );
    assert!(
        h.contains("<dt>Requested by</dt><dd>refund-agent</dd>"),
        "{h}"
    );
    assert!(h.contains(r#"<code title="9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08">9f86d081884c…</code>"#), "{h}");
    assert!(
        h.contains(r#"<dt>customer</dt><dd><span class="v-str">Dana Scully</span>"#),
        "{h}"
    );
    assert!(
        h.contains(&format!(
            r#"<form class="answer" method="post" action="/tasks/{}/answer" novalidate"#,
            t.id
        )),
        "{h}"
    );
    assert!(
        h.contains("Approve</button>") && !h.contains("Submit answer"),
        "approval buttons only: {h}"
    );
    assert!(
        h.contains(&format!(r#"action="/tasks/{}/claim""#, t.id)),
        "{h}"
    );
    assert!(!h.contains("/release\""), "{h}");
    assert!(
        h.contains("<details class=\"danger\"><summary>Cancel this task…</summary>"),
        "{h}"
    );
    assert!(
        h.contains(&format!(r#"action="/tasks/{}/cancel""#, t.id))
            && h.contains(r#"name="reason""#)
    );
    assert!(
        h.contains(
            r#"<span class="ev-kind">Created</span> by <strong>refund-agent</strong> via python"#
        ),
        "{h}"
    );
    assert!(h.contains("Answer refused: invalid"), "{h}");
    assert!(
        h.contains(r#"<li><code>/approved</code> true is not of type &quot;string&quot;</li>"#),
        "{h}"
    );
    assert!(
        h.contains(r#"<span class="ev-kind">mystery_kind</span>"#),
        "{h}"
    );
}

#[test]
fn every_state_changing_form_carries_csrf() {
    let t = task(Status::Pending);
    let may = Permissions {
        answer: true,
        claim: true,
        release: true,
        cancel: true,
    };
    let h = task_page(&t, may, FormState::default(), &audit(), Role::Admin);
    let posts = h.split("method=\"post\"").count() - 1;
    assert_eq!(posts, 5, "logout, claim, release, answer, cancel: {h}");
    for part in h.split("method=\"post\"").skip(1) {
        let form = &part[..part.find("</form>").unwrap()];
        assert!(
            form.contains(r#"<input type="hidden" name="csrf" value="tok123">"#),
            "{form}"
        );
    }
}

/// The answer form must not sit inside anything the live update replaces.
#[test]
fn the_answer_form_is_outside_live_regions() {
    let h = task_page(
        &task(Status::Pending),
        all_may(),
        FormState::default(),
        &audit(),
        Role::Admin,
    );
    let form_at = h.find("<form class=\"answer\"").unwrap();
    let respond_at = h
        .find(r#"<section id="task-respond" data-respond>"#)
        .unwrap();
    assert!(respond_at < form_at, "{h}");
    // Where the answer section ends (sections nest inside it).
    let mut depth = 0;
    let mut respond_end = respond_at;
    for (i, _) in h[respond_at..].match_indices("section") {
        let at = respond_at + i;
        match &h[at - 1..at] {
            "<" => depth += 1,
            "/" => depth -= 1,
            _ => continue,
        }
        if depth == 0 {
            respond_end = at;
            break;
        }
    }
    assert!(respond_end > form_at, "{h}");
    // Every live region closes before the answer section opens or opens after it ends.
    for (i, _) in h.match_indices(" data-live") {
        let open = h[..i].rfind('<').unwrap();
        assert!(open < respond_at || open > respond_end, "{h}");
    }
    assert!(h.find(r#"id="task-state" data-live"#).is_some());
    assert!(h.find(r#"id="task-outcome" data-live"#).is_some());
}

#[test]
fn a_pending_task_not_answerable_here_says_why() {
    let mut t = task(Status::Pending);
    t.claimed_by = Some("bob".into());
    t.claimed_at = Some(T0);
    let h = task_page(
        &t,
        Permissions::default(),
        FormState::default(),
        &[],
        Role::Reviewer,
    );
    assert!(!h.contains("<form class=\"answer\""), "{h}");
    assert!(
        h.contains("Claimed by <strong>bob</strong>: only they or an admin can answer it now."),
        "{h}"
    );
    assert!(!h.contains("Cancel this task"), "{h}");
    t.claimed_by = None;
    let h = task_page(
        &t,
        Permissions::default(),
        FormState::default(),
        &[],
        Role::Reviewer,
    );
    assert!(h.contains("it is not assigned to you"), "{h}");
}

#[test]
fn generic_schemas_get_a_submit_button_and_errors_inline() {
    let mut t = task(Status::Pending);
    t.response_schema = json!({"type": "object", "required": ["amount"],
                               "properties": {"amount": {"type": "integer", "minimum": 1}}});
    let errors = [FieldError {
        path: "/amount".into(),
        message: "0 is less than the minimum of 1".into(),
    }];
    let values = json!({"amount": 0});
    let form = FormState {
        values: Some(&values),
        errors: &errors,
        posted: None,
    };
    let h = task_page(&t, all_may(), form, &[], Role::Reviewer);
    assert!(h.contains("Submit answer</button>"), "{h}");
    assert!(h.contains(r#"name="/amount" value="0""#), "{h}");
    assert!(
        h.contains(r#"<p class="field-error" id="f1-err">0 is less than the minimum of 1</p>"#),
        "{h}"
    );
}

#[test]
fn ended_tasks_show_the_outcome_instead_of_the_form() {
    let mut t = task(Status::Completed);
    t.response = Some(json!({"approved": true, "comment": "ok"}));
    t.answered_by = Some("alice".into());
    t.answered_via = Some("dashboard".into());
    t.ended_at = Some(T0 + 120_000);
    let h = task_page(&t, all_may(), FormState::default(), &[], Role::Admin);
    assert!(
        !h.contains("<form class=\"answer\"") && !h.contains("Cancel this task"),
        "{h}"
    );
    assert!(h.contains("Answered by <strong>alice</strong> via dashboard at <time datetime=\"2024-05-01T09:52:00.000Z\""), "{h}");
    assert!(
        h.contains(r#"<dt>comment</dt><dd><span class="v-str">ok</span>"#),
        "{h}"
    );
    assert!(h.contains(r#"data-status="completed""#), "{h}");

    let mut c = task(Status::Cancelled);
    c.cancelled_by = Some("root".into());
    c.cancel_reason = Some("duplicate".into());
    let h = task_page(&c, all_may(), FormState::default(), &[], Role::Admin);
    assert!(
        h.contains("Cancelled by <strong>root</strong> at ") && h.contains("<q>duplicate</q>"),
        "{h}"
    );

    let h = task_page(
        &task(Status::TimedOut),
        all_may(),
        FormState::default(),
        &[],
        Role::Admin,
    );
    assert!(
        h.contains("Timed out at ") && h.contains("badge st-timed_out"),
        "{h}"
    );
    let h = task_page(
        &task(Status::VerificationExhausted),
        all_may(),
        FormState::default(),
        &[],
        Role::Admin,
    );
    assert!(
        h.contains("attempts ran out") && h.contains("Verification exhausted"),
        "{h}"
    );
}

#[test]
fn flash_messages_use_status_and_alert_roles() {
    let v = viewer(Role::Reviewer);
    let t = task(Status::Pending);
    let page = |flash| {
        super::task(&TaskView {
            viewer: &v,
            task: &t,
            audit: &[],
            deliveries: &[],
            may: all_may(),
            form: FormState::default(),
            flash,
        })
        .into_string()
    };
    assert!(
        page(Some(Flash::Ok("Claimed.".into())))
            .contains(r#"<div class="flash ok" role="status">Claimed.</div>"#)
    );
    assert!(
        page(Some(Flash::Error("Nope.".into())))
            .contains(r#"<div class="flash err" role="alert">Nope.</div>"#)
    );
}

#[test]
fn login_and_setup_pages() {
    let h = login(&LoginView {
        csrf: "c1",
        username: "bob",
        error: Some("Wrong username or password."),
        next: "/tasks/x",
    })
    .into_string();
    assert_csp_clean_layout(&h);
    assert!(h.contains(r#"<form method="post" action="/login"><input type="hidden" name="csrf" value="c1"><input type="hidden" name="next" value="/tasks/x">"#), "{h}");
    assert!(
        h.contains(r#"value="bob" autocomplete="username""#)
            && h.contains(r#"autocomplete="current-password""#)
    );
    assert!(h.contains(r#"<div class="flash err" role="alert">Wrong username or password.</div>"#));
    assert!(!h.contains("Sign out"), "{h}");

    let h = setup(&SetupView {
        token: "t0k",
        csrf: "c2",
        name: "",
        email: "",
        error: None,
    })
    .into_string();
    assert_csp_clean_layout(&h);
    for needle in [
        r#"name="token" value="t0k""#,
        r#"name="csrf" value="c2""#,
        r#"name="name""#,
        r#"name="email""#,
        r#"name="password""#,
        r#"name="password2""#,
        "first administrator",
    ] {
        assert!(h.contains(needle), "{needle}: {h}");
    }
    assert!(!h.contains("role=\"alert\""), "{h}");
}

#[test]
fn message_page() {
    let h = message("Not found", "There is no task with this id.", None).into_string();
    assert_csp_clean_layout(&h);
    assert!(
        h.contains("<h1>Not found</h1>") && h.contains(r#"href="/login""#),
        "{h}"
    );
    let v = viewer(Role::Admin);
    let h = message("Forbidden", "No.", Some(&v)).into_string();
    assert!(
        h.contains("Back to the queue") && h.contains("Sign out"),
        "{h}"
    );
}

/// User-provided text is escaped in every page.
#[test]
fn hostile_text_is_escaped_everywhere() {
    let mut t = task(Status::Pending);
    t.title = XSS.into();
    t.namespace = XSS.into();
    t.key = XSS.into();
    t.assign_to = vec![XSS.into()];
    t.claimed_by = Some(XSS.into());
    t.payload =
        json!({XSS: XSS, "rows": [{XSS: XSS}], "list": [XSS, "https://x.example/\"><script>"]});
    t.response_schema = json!({"type": "object", "title": XSS, "required": [XSS],
        "properties": {XSS: {"title": XSS, "description": XSS, "enum": [XSS, "b", "c", "d", "e"]},
                       "two": {"oneOf": [{"const": 1, "title": XSS}, {"const": 2, "title": XSS}]}}});
    let hostile_audit = vec![
        event(0, "created", Some(XSS), Some(XSS), json!({})),
        event(
            1,
            "answer_refused",
            Some(XSS),
            None,
            json!({"reason": XSS, "message": XSS,
            "errors": [{"path": XSS, "message": XSS}]}),
        ),
        event(2, XSS, Some(XSS), None, json!({XSS: XSS})),
        event(3, "cancelled", Some(XSS), None, json!({"reason": XSS})),
    ];
    let errors = [
        FieldError {
            path: XSS.into(),
            message: XSS.into(),
        },
        FieldError {
            path: String::new(),
            message: XSS.into(),
        },
    ];
    let v = Viewer {
        name: XSS.into(),
        role: Role::Admin,
        csrf: XSS.into(),
    };
    let mut pages = vec![];
    let form = FormState {
        values: Some(&t.payload),
        errors: &errors,
        posted: None,
    };
    let hostile_deliveries = vec![
        delivery(XSS, XSS, "failed", Some(XSS)),
        delivery("callback", XSS, XSS, None),
    ];
    pages.push(
        super::task(&TaskView {
            viewer: &v,
            task: &t,
            audit: &hostile_audit,
            deliveries: &hostile_deliveries,
            may: all_may(),
            form,
            flash: Some(Flash::Error(XSS.into())),
        })
        .into_string(),
    );
    let mut done = t.clone();
    done.status = Status::Completed;
    done.response = Some(json!({XSS: [XSS]}));
    done.answered_by = Some(XSS.into());
    done.answered_via = Some(XSS.into());
    let mut cancelled = t.clone();
    cancelled.status = Status::Cancelled;
    cancelled.cancelled_by = Some(XSS.into());
    cancelled.cancel_reason = Some(XSS.into());
    for ended in [&done, &cancelled] {
        pages.push(
            super::task(&TaskView {
                viewer: &v,
                task: ended,
                audit: &hostile_audit,
                deliveries: &hostile_deliveries,
                may: all_may(),
                form: FormState::default(),
                flash: Some(Flash::Ok(XSS.into())),
            })
            .into_string(),
        );
    }
    let f = QueueFilter {
        status: Some(XSS.into()),
        assignee: Some(XSS.into()),
        key: Some(XSS.into()),
        cursor: None,
        deliveries: Some("failed".into()),
    };
    let c = counts();
    let failed = [(t.id, 2_u64)].into_iter().collect();
    pages.push(
        super::queue(&QueueView {
            viewer: &v,
            counts: &c,
            filter: &f,
            tasks: &[t.clone(), done],
            next_cursor: Some(XSS),
            failed: &failed,
            failed_total: 7,
        })
        .into_string(),
    );
    pages.push(
        login(&LoginView {
            csrf: XSS,
            username: XSS,
            error: Some(XSS),
            next: XSS,
        })
        .into_string(),
    );
    pages.push(
        setup(&SetupView {
            token: XSS,
            csrf: XSS,
            name: XSS,
            email: XSS,
            error: Some(XSS),
        })
        .into_string(),
    );
    pages.push(message(XSS, XSS, Some(&v)).into_string());
    for h in &pages {
        assert_csp_clean_layout(h);
        assert!(!h.contains("<img"), "{h}");
        assert!(h.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{h}");
    }
}

/// `INLOOP_PREVIEW_DIR=/tmp/p cargo test ... write_previews` writes sample pages with the
/// stylesheet inlined (for looking at them from file://); otherwise it only renders them.
#[test]
fn write_previews() {
    let queue_tasks: Vec<Task> = (0..6)
        .map(|i| {
            let mut t = task(
                [
                    Status::Pending,
                    Status::Pending,
                    Status::Completed,
                    Status::TimedOut,
                    Status::Cancelled,
                    Status::VerificationExhausted,
                ][i],
            );
            t.id = Uuid::from_u128(i as u128 + 1);
            t.created_at = T0 - i as i64 * 3_700_000;
            if i == 1 {
                t.title = "Which plan should the customer be moved to?".into();
                t.claimed_by = Some("bob".into());
                t.assign_to = vec!["bob".into(), "alice@example.com".into()];
                t.deadline = None;
            }
            t
        })
        .collect();
    let mut general = task(Status::Pending);
    general.title = "Classify the support ticket #8812".into();
    general.response_schema = json!({
        "type": "object", "required": ["category", "priority", "escalate", "reply_by"],
        "properties": {
            "category": {"enum": ["billing", "bug", "feature request", "account", "other"], "title": "Category"},
            "priority": {"oneOf": [{"const": 1, "title": "Low"}, {"const": 2, "title": "Normal"}, {"const": 3, "title": "Urgent"}]},
            "escalate": {"type": "boolean", "title": "Escalate to a human agent?"},
            "reply_by": {"type": "string", "format": "date", "title": "Reply by"},
            "refund_amount": {"type": "number", "minimum": 0, "maximum": 1000, "title": "Refund amount", "description": "In EUR; leave empty for none."},
            "tags": {"type": "array", "items": {"enum": ["angry", "repeat", "press", "vip"]}, "title": "Tags"},
            "customer_note": {"type": "string", "title": "Note to the customer", "maxLength": 2000},
            "contact": {"type": "object", "title": "Contact", "properties": {"email": {"type": "string", "format": "email"}, "phone": {"type": "string"}}},
            "extra": {"type": "array", "items": {"type": "object"}, "title": "Line items"}
        }
    });
    let errors = [
        FieldError {
            path: "/refund_amount".into(),
            message: "1200 is greater than the maximum of 1000".into(),
        },
        FieldError {
            path: String::new(),
            message: "\"escalate\" is a required property".into(),
        },
    ];
    let posted: Vec<(String, String)> = [
        ("/category", "bug"),
        ("/priority", "3"),
        ("/reply_by", "2024-05-03"),
        ("/refund_amount", "1200"),
        ("/tags", "repeat"),
        ("/customer_note", "Sorry about that.\nWe are on it."),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    let mut done = task(Status::Completed);
    done.response = Some(json!({"approved": true, "comment": "Photos confirm the damage."}));
    done.answered_by = Some("alice".into());
    done.answered_via = Some("dashboard".into());
    done.ended_at = Some(T0 + 300_000);
    let mut full_audit = audit();
    full_audit.pop();
    full_audit.push(event(
        4,
        "answer_accepted",
        Some("alice"),
        Some("dashboard"),
        json!({}),
    ));
    let v = viewer(Role::Admin);
    let c = counts();
    let pages = [
        (
            "queue",
            super::queue(&QueueView {
                viewer: &v,
                counts: &c,
                filter: &QueueFilter::default(),
                tasks: &queue_tasks,
                next_cursor: Some("abc"),
                failed: &Default::default(),
                failed_total: 0,
            })
            .into_string(),
        ),
        (
            "task",
            task_page(
                &task(Status::Pending),
                all_may(),
                FormState::default(),
                &audit()[..2],
                Role::Admin,
            ),
        ),
        (
            "task-form",
            task_page(
                &general,
                all_may(),
                FormState {
                    values: None,
                    errors: &errors,
                    posted: Some(&posted),
                },
                &audit()[..1],
                Role::Reviewer,
            ),
        ),
        (
            "task-done",
            task_page(
                &done,
                all_may(),
                FormState::default(),
                &full_audit,
                Role::Admin,
            ),
        ),
        (
            "login",
            login(&LoginView {
                csrf: "c",
                username: "",
                error: None,
                next: "/tasks",
            })
            .into_string(),
        ),
    ];
    let Ok(dir) = std::env::var("INLOOP_PREVIEW_DIR") else {
        return;
    };
    std::fs::create_dir_all(&dir).unwrap();
    let css = format!("<style>{}</style>", crate::dashboard::assets::APP_CSS);
    for (name, h) in pages {
        let h = h.replace(r#"<link rel="stylesheet" href="/static/app.css">"#, &css);
        std::fs::write(format!("{dir}/{name}.html"), h).unwrap();
    }
}
