use serde_json::json;

use super::checks::clean_error;
use super::transitions::{abort, begin, finish, resolve};
use super::*;

const NK: (&str, &str) = ("default", "charge-1");

fn run(cur: Option<&Effect>, token: &str) -> (Option<Effect>, Result<Begin>) {
    let (step, out) = begin(cur, NK, token, Some("p1"), 1000);
    (step.next.or_else(|| cur.cloned()), out)
}

#[test]
fn the_life_of_an_effect() {
    let (e, out) = run(None, "tok-aaaaaaaa");
    let e = e.unwrap();
    assert!(matches!(out, Ok(Begin::Run { attempt: 1, .. })));
    assert_eq!(e.state, EffectState::Running);
    // the same attempt again (a retried request): run, nothing written
    let (step, out) = begin(Some(&e), NK, "tok-aaaaaaaa", None, 1001);
    assert!(step.next.is_none() && matches!(out, Ok(Begin::Run { attempt: 1, .. })));
    // another attempt: in doubt
    let (step, out) = begin(Some(&e), NK, "tok-bbbbbbbb", None, 1001);
    assert!(step.next.is_none());
    assert_eq!(out.unwrap_err().code(), "effect_in_doubt");
    // a stranger cannot finish it
    let (_, out) = finish(Some(&e), NK, "tok-bbbbbbbb", &json!(1), 1002);
    assert_eq!(out.unwrap_err().code(), "conflict");
    // its own attempt can, once; a repeat with the same result is fine
    let (step, out) = finish(Some(&e), NK, "tok-aaaaaaaa", &json!({"x": 1}), 1002);
    out.unwrap();
    let done = step.next.unwrap();
    assert_eq!(done.state, EffectState::Done);
    let (step, out) = finish(Some(&done), NK, "tok-aaaaaaaa", &json!({"x": 1}), 1003);
    assert!(step.next.is_none() && out.is_ok());
    let (_, out) = finish(Some(&done), NK, "tok-aaaaaaaa", &json!({"x": 2}), 1003);
    assert_eq!(out.unwrap_err().code(), "conflict");
    // later begins get the result
    let (_, out) = run(Some(&done), "tok-cccccccc");
    assert_eq!(
        out.unwrap(),
        Begin::Done {
            result: json!({"x": 1}),
            finished_at: 1002
        }
    );
}

#[test]
fn a_failure_releases_and_resolutions_need_the_attempt_in_doubt() {
    let (e, _) = run(None, "tok-aaaaaaaa");
    let e = e.unwrap();
    let (step, out) = abort(Some(&e), NK, "tok-aaaaaaaa", "boom", 1001);
    out.unwrap();
    let failed = step.next.unwrap();
    assert_eq!(failed.state, EffectState::Failed);
    let (e2, out) = run(Some(&failed), "tok-bbbbbbbb");
    assert!(matches!(out, Ok(Begin::Run { attempt: 2, .. })));
    let e2 = e2.unwrap();
    let mark = |attempt| Resolve {
        action: ResolveAction::MarkDone,
        result: Some(json!("ok")),
        attempt,
        note: None,
        by: None,
    };
    let (_, out) = resolve(Some(&e2), NK, &mark(Some(1)), "alice", 1002);
    assert_eq!(out.unwrap_err().code(), "conflict");
    let (step, out) = resolve(Some(&e2), NK, &mark(Some(2)), "alice", 1002);
    out.unwrap();
    let done = step.next.unwrap();
    assert_eq!(
        (done.state, done.resolved_by.as_deref()),
        (EffectState::Done, Some("alice"))
    );
    // the attempt that was in doubt can no longer record anything
    let (_, out) = finish(Some(&done), NK, "tok-bbbbbbbb", &json!(1), 1003);
    let err = out.unwrap_err();
    assert!(err.to_string().contains("alice"), "{err}");
    // nor can a done effect be resolved again
    let (_, out) = resolve(Some(&done), NK, &mark(None), "bob", 1003);
    assert_eq!(out.unwrap_err().code(), "conflict");
}

#[test]
fn errors_are_cleaned_not_refused() {
    assert_eq!(clean_error(None), "the function raised an error");
    assert_eq!(clean_error(Some("a\rb\u{0}c\nd")), "a b c\nd");
    assert_eq!(clean_error(Some(&"x".repeat(5000))).chars().count(), 2000);
}

#[test]
fn states_parse_with_in_doubt_as_running() {
    assert_eq!(
        "in_doubt".parse::<EffectState>().unwrap(),
        EffectState::Running
    );
    assert!("nope".parse::<EffectState>().is_err());
}
