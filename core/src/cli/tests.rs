//! The command line end to end: argument parsing, plans, output and exit codes, on real SQLite
//! files.

use super::args::parse_duration;
use super::output::{human_duration, one_line};
use super::schema_summary::schema_summary;
use super::*;
use crate::apikeys::{self, ApiKey};
use crate::model::{Page, Status, Task};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;
use uuid::Uuid;

/// Captured output of one run.
struct Ran {
    code: i32,
    out: String,
    err: String,
}

fn args(list: &[&str]) -> Vec<String> {
    std::iter::once("inloop")
        .chain(list.iter().copied())
        .map(str::to_string)
        .collect()
}

fn run_with(list: &[&str], stdin: &str) -> Ran {
    let mut input = stdin.as_bytes();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut io = Io {
        stdin: &mut input,
        out: &mut out,
        err: &mut err,
        stdin_is_terminal: false,
        out_color: false,
        err_color: false,
    };
    let code = run(args(list), &mut io);
    Ran {
        code,
        out: String::from_utf8_lossy(&out).into_owned(),
        err: String::from_utf8_lossy(&err).into_owned(),
    }
}

fn plan_of(list: &[&str], stdin: &str) -> Result<Plan, Failure> {
    let cli = Cli::try_parse_from(args(list)).expect("parses");
    let mut input = stdin.as_bytes();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut io = Io {
        stdin: &mut input,
        out: &mut out,
        err: &mut err,
        stdin_is_terminal: false,
        out_color: false,
        err_color: false,
    };
    let ns = cli.namespace.unwrap_or_else(|| "default".into());
    plan(cli.command, &ns, &Default::default(), &mut io)
}

fn parse_err_code(list: &[&str]) -> i32 {
    run_with(list, "").code
}

/// A fresh directory under the system temp dir.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "inloop-cli-{name}-{}-{}",
        std::process::id(),
        Uuid::now_v7().simple()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[test]
fn clap_definition_is_valid() {
    use clap::CommandFactory;
    Cli::command().debug_assert();
}

#[test]
fn parses_list_options() {
    let Ok(Plan::List { filter, json }) = plan_of(
        &[
            "--namespace",
            "ops",
            "tasks",
            "list",
            "--status",
            "timed_out",
            "--key-prefix",
            "refund-",
            "--limit",
            "5",
            "--cursor",
            "abc",
            "--json",
        ],
        "",
    ) else {
        panic!("not a list plan");
    };
    assert!(json);
    assert_eq!(filter.namespace.as_deref(), Some("ops"));
    assert_eq!(filter.status, Some(Status::TimedOut));
    assert_eq!(filter.key_prefix.as_deref(), Some("refund-"));
    assert_eq!(filter.limit, Some(5));
    assert_eq!(filter.cursor.as_deref(), Some("abc"));

    // Global options also work after the subcommand; --all-namespaces drops the filter.
    let Ok(Plan::List { filter, json }) =
        plan_of(&["tasks", "ls", "--all-namespaces", "--namespace", "x"], "")
    else {
        panic!("not a list plan");
    };
    assert!(!json);
    assert_eq!(filter.namespace, None);
    assert_eq!(filter.limit, Some(50));
}

#[test]
fn usage_errors_exit_2_and_help_exits_0() {
    assert_eq!(parse_err_code(&[]), 2);
    assert_eq!(parse_err_code(&["tasks"]), 2);
    assert_eq!(parse_err_code(&["tasks", "list", "--status", "done"]), 2);
    assert_eq!(parse_err_code(&["tasks", "list", "--limit", "0"]), 2);
    assert_eq!(parse_err_code(&["tasks", "list", "--limit", "abc"]), 2);
    assert_eq!(parse_err_code(&["tasks", "show"]), 2);
    assert_eq!(
        parse_err_code(&["tasks", "wait", "x", "--timeout", "soon"]),
        2
    );
    assert_eq!(
        parse_err_code(&["tasks", "answer", "x", "{}", "--file", "a.json"]),
        2
    );
    assert_eq!(parse_err_code(&["frobnicate"]), 2);

    let help = run_with(&["--help"], "");
    assert_eq!(help.code, 0);
    assert!(help.out.contains("Usage: inloop"), "{}", help.out);
    assert!(help.err.is_empty());
    let help = run_with(&["tasks", "answer", "--help"], "");
    assert_eq!(help.code, 0);
    assert!(help.out.contains("RESPONSE"), "{}", help.out);
    let version = run_with(&["--version"], "");
    assert_eq!(version.code, 0);
    assert!(version.out.contains(env!("CARGO_PKG_VERSION")));
    let version = run_with(&["tasks", "--version"], "");
    assert_eq!(version.code, 0);
}

#[test]
fn parses_answer_sources() {
    let id = "0190f3a2-7b1c-7d4e-8f00-1a2b3c4d5e6f";
    let Ok(Plan::Answer {
        response,
        by,
        task: TaskRef::Id(parsed),
        json,
    }) = plan_of(
        &[
            "tasks",
            "answer",
            id,
            r#"{"approved": true}"#,
            "--by",
            "alice",
        ],
        "",
    )
    else {
        panic!("not an answer plan");
    };
    assert_eq!(parsed.to_string(), id);
    assert_eq!(response, json!({"approved": true}));
    assert_eq!(by, "alice");
    assert!(!json);

    // --key names the task; the first positional is then the answer.
    let Ok(Plan::Answer {
        task: TaskRef::Key { namespace, key },
        response,
        ..
    }) = plan_of(&["tasks", "answer", "--key", "refund-A-1", "true"], "")
    else {
        panic!("not an answer-by-key plan");
    };
    assert_eq!(
        (namespace.as_str(), key.as_str()),
        ("default", "refund-A-1")
    );
    assert_eq!(response, json!(true));
    assert!(plan_of(&["tasks", "answer", id, "--key", "k", "true"], "").is_err());

    // `-` and a missing RESPONSE both read stdin; a negative number is an answer, not a flag.
    for list in [
        &["tasks", "answer", id, "-"][..],
        &["tasks", "answer", id][..],
    ] {
        let Ok(Plan::Answer { response, .. }) = plan_of(list, " [1, 2] \n") else {
            panic!("not an answer plan");
        };
        assert_eq!(response, json!([1, 2]));
    }
    let Ok(Plan::Answer { response, .. }) = plan_of(&["tasks", "answer", id, "-5"], "") else {
        panic!("not an answer plan");
    };
    assert_eq!(response, json!(-5));

    // --file
    let dir = temp_dir("file");
    let path = dir.join("answer.json");
    std::fs::write(&path, r#"{"note": "from a file"}"#).expect("write");
    let Ok(Plan::Answer { response, .. }) = plan_of(
        &[
            "tasks",
            "answer",
            id,
            "--file",
            path.to_str().expect("utf-8"),
        ],
        "",
    ) else {
        panic!("not an answer plan");
    };
    assert_eq!(response, json!({"note": "from a file"}));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn create_takes_a_policy() {
    let policy = r#"{"approvers": {"any_of": ["alice@acme.com", "role:finance"], "required": 2,
        "exclude_requester": true}, "reminders_ms": [1800000],
        "escalate": [{"after_ms": 3600000, "notify": ["slack:@cfo"]}],
        "on_timeout": {"default": {"approved": false}}}"#;
    let approval = r#"{"type": "object", "required": ["approved"],
        "properties": {"approved": {"type": "boolean"}}}"#;
    let base = [
        "tasks",
        "create",
        "--title",
        "Wire?",
        "--response-schema",
        approval,
        "--requested-by",
        "agent-7",
        "--timeout",
        "8h",
    ];
    let Ok(Plan::Create { new, .. }) = plan_of(&[&base[..], &["--policy", policy]].concat(), "")
    else {
        panic!("not a create plan");
    };
    let p = new.policy.expect("the policy");
    let a = p.approvers.as_ref().expect("approvers");
    assert_eq!(a.any_of, ["alice@acme.com", "role:finance"]);
    assert_eq!((a.required, a.exclude_requester), (2, true));
    assert_eq!(p.reminders_ms, [1_800_000]);
    assert_eq!(p.escalate[0].notify, ["slack:@cfo"]);
    assert_eq!(
        p.on_timeout,
        crate::policy::OnTimeout::Default(json!({"approved": false}))
    );
    // From stdin, like the other JSON options.
    let Ok(Plan::Create { new, .. }) = plan_of(
        &[&base[..], &["--policy", "@-"]].concat(),
        r#"{"reminders_ms": [60000]}"#,
    ) else {
        panic!("not a create plan");
    };
    assert_eq!(new.policy.expect("policy").reminders_ms, [60_000]);

    let dir = temp_dir("policy");
    let url = format!("sqlite:{}", dir.join("p.db").display());
    let run = |extra: &[&str]| {
        let mut list = vec!["--database-url", url.as_str()];
        list.extend_from_slice(&base);
        list.extend_from_slice(extra);
        run_with(&list, "")
    };
    // Bad JSON, and JSON that is not a policy: clear errors, nothing created.
    let r = run(&["--policy", r#"{"approvers": "#]);
    assert_eq!(r.code, 1);
    assert!(
        r.err
            .starts_with("error [invalid_json]: --policy is not valid JSON: "),
        "{}",
        r.err
    );
    let r = run(&["--policy", r#"{"approver": {"any_of": ["a"]}}"#]);
    assert_eq!(r.code, 1);
    assert!(
        r.err.starts_with(
            "error [invalid_argument]: --policy is not a policy: unknown field `approver`"
        ),
        "{}",
        r.err
    );
    let r = run(&["--policy", r#"{"reminders_ms": [-5]}"#]);
    assert_eq!(r.code, 1);
    assert!(r.err.contains("--policy is not a policy"), "{}", r.err);
    // The engine's checks: a reminder after the deadline.
    let r = run(&["--policy", r#"{"reminders_ms": [36000000]}"#]);
    assert_eq!(r.code, 1);
    assert!(
        r.err.starts_with(
            "error [invalid_argument]: policy: reminder 1 is due after the task's timeout"
        ),
        "{}",
        r.err
    );
    // A good one is stored, with its timers.
    let r = run(&["--key", "wire-1", "--policy", policy, "--json"]);
    assert_eq!(r.code, 0, "{}", r.err);
    let out: Value = serde_json::from_str(&r.out).expect("JSON");
    assert_eq!(out["task"]["policy"]["approvers"]["required"], 2);
    assert_eq!(out["task"]["requested_by"], "agent-7");
    let kinds: Vec<_> = out["task"]["timers"]
        .as_array()
        .expect("timers")
        .iter()
        .map(|t| t["kind"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(kinds, ["reminder", "escalation"]);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn json_errors_name_the_position_and_touch_no_database() {
    let dir = temp_dir("badjson");
    let db = dir.join("never.db");
    let url = format!("sqlite:{}", db.display());
    let id = "0190f3a2-7b1c-7d4e-8f00-1a2b3c4d5e6f";

    let r = run_with(
        &[
            "--database-url",
            &url,
            "tasks",
            "answer",
            id,
            r#"{"approved": tru}"#,
        ],
        "",
    );
    assert_eq!(r.code, 1);
    assert!(
        r.err.starts_with(
            "error [invalid_json]: the answer is not valid JSON: expected ident (line 1, column 17)\n"
        ),
        "{}",
        r.err
    );
    assert!(r.err.contains("hint: the answer is JSON"), "{}", r.err);
    assert!(r.out.is_empty());

    let r = run_with(
        &["--database-url", &url, "tasks", "answer", id],
        "{\n  \"a\": 1,\n}",
    );
    assert_eq!(r.code, 1);
    assert!(r.err.contains("(line 3, column 1)"), "{}", r.err);
    assert!(!r.err.contains("hint"), "{}", r.err);

    let r = run_with(&["--database-url", &url, "tasks", "answer", id], "  \n");
    assert_eq!(r.code, 1);
    assert!(
        r.err
            .starts_with("error [invalid_json]: the answer is empty"),
        "{}",
        r.err
    );

    let r = run_with(&["--database-url", &url, "tasks", "show", "not-a-uuid"], "");
    assert_eq!(r.code, 1);
    assert_eq!(
        r.err.lines().next(),
        Some(
            "error [invalid_argument]: \"not-a-uuid\" is not a task id (a UUID such as \
             0190f3a2-7b1c-7d4e-8f00-1a2b3c4d5e6f)"
        )
    );

    let r = run_with(
        &[
            "--database-url",
            &url,
            "tasks",
            "answer",
            id,
            "--file",
            "/nonexistent/x.json",
        ],
        "",
    );
    assert_eq!(r.code, 1);
    assert!(
        r.err.starts_with(
            "error [invalid_argument]: cannot read the answer from /nonexistent/x.json"
        ),
        "{}",
        r.err
    );

    assert!(!db.exists(), "no database was created");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn reading_commands_refuse_a_missing_sqlite_file() {
    let dir = temp_dir("missing");
    let db = dir.join("sub").join("inloop.db");
    let url = format!("sqlite:{}", db.display());
    let r = run_with(&["--database-url", &url, "tasks", "list"], "");
    assert_eq!(r.code, 1);
    assert!(
        r.err
            .starts_with("error [config]: there is no inloop database at "),
        "{}",
        r.err
    );
    assert!(r.err.contains("inloop migrate"), "{}", r.err);
    assert!(!db.exists());

    let r = run_with(&["--database-url", &url, "migrate"], "");
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.out,
        format!("database sqlite://{} is up to date\n", db.display())
    );
    assert!(db.exists());
    let r = run_with(
        &[
            "--database-url",
            &url,
            "--namespace",
            "default",
            "tasks",
            "list",
        ],
        "",
    );
    assert_eq!(
        (r.code, r.out.as_str()),
        (0, "no tasks in namespace default\n"),
        "{}",
        r.err
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn odd_argument_vectors_do_not_panic() {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut io = Io {
        stdin: &mut io::empty(),
        out: &mut out,
        err: &mut err,
        stdin_is_terminal: false,
        out_color: false,
        err_color: false,
    };
    assert_eq!(run(Vec::new(), &mut io), 2);
    assert_eq!(run(vec![String::new()], &mut io), 2);
    assert_eq!(run(args(&["tasks", "show", "\u{0}\u{1b}[31m"]), &mut io), 1);
}

/// Called from inside a runtime (an async host), the command runs on its own thread.
#[tokio::test]
async fn runs_from_inside_a_runtime() {
    assert_eq!(main_with_args(args(&["--version"])), 0);
}

#[test]
fn durations() {
    assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
    assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
    assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
    assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
    assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86400)));
    for bad in ["", "0", "-1", "x", "5y", "1e999", "..", "nan"] {
        assert!(parse_duration(bad).is_err(), "{bad}");
    }
    assert_eq!(human_duration(250), "250ms");
    assert_eq!(human_duration(61_000), "1m 1s");
    assert_eq!(human_duration(3_600_000), "1h");
    assert_eq!(human_duration(90_061_000), "1d 1h");
}

#[test]
fn schema_summaries() {
    let schema = json!({
        "type": "object",
        "properties": {
            "approved": {"type": "boolean", "description": "Refund it?"},
            "amount": {"type": "number", "minimum": 0, "maximum": 500},
            "reason": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": null},
            "tags": {"type": "array", "items": {"type": "string"}},
            "level": {"$ref": "#/$defs/Level"},
            "refund": {"$ref": "#/$defs/Refund"}
        },
        "required": ["approved", "amount"],
        "additionalProperties": false,
        "$defs": {
            "Level": {"enum": ["low", "high"]},
            "Refund": {"type": "object", "properties": {"x": {"type": "integer"}}}
        }
    });
    let lines = schema_summary(&schema);
    let find = |f: &str| {
        lines
            .iter()
            .find(|l| l.starts_with(f))
            .unwrap_or_else(|| panic!("no line for {f}: {lines:?}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(find("approved"), "approved boolean required Refund it?");
    assert_eq!(find("amount"), "amount number 0..500 required");
    assert_eq!(find("reason"), "reason string | null optional");
    assert_eq!(find("tags"), "tags array of string optional");
    assert_eq!(find("level"), "level one of \"low\", \"high\" optional");
    assert_eq!(find("refund"), "refund Refund (object) optional");
    assert_eq!(lines.last().map(String::as_str), Some("(no other fields)"));

    assert_eq!(schema_summary(&json!({})), vec!["any JSON value"]);
    assert_eq!(schema_summary(&json!({"type": "boolean"})), vec!["boolean"]);
    assert_eq!(
        schema_summary(&json!({"type": "string", "maxLength": 200})),
        vec!["string <= 200 chars"]
    );
}

#[test]
fn tables_align_and_truncate() {
    let mut buf = Vec::new();
    write_table(
        &mut buf,
        &["A", "LONG HEADER", "C"],
        &[
            vec!["xyz".into(), "1".into(), "".into()],
            vec!["é".into(), "22".into(), "last".into()],
        ],
    )
    .expect("write");
    assert_eq!(
        String::from_utf8(buf).expect("utf-8"),
        "A    LONG HEADER  C\nxyz  1\né    22           last\n"
    );
    assert_eq!(one_line("a\nb\tc", 10), "a b c");
    assert_eq!(one_line("abcdefghijkl", 5), "abcd…");
}

/// A real SQLite file: a task created through the engine, then answered, shown and
/// audited through the command line.
#[test]
fn end_to_end_on_sqlite() {
    let dir = temp_dir("e2e");
    let db = dir.join("inloop.db");
    let url = format!("sqlite:{}", db.display());

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (task, other) = rt.block_on(async {
        let engine = Engine::open(&url, EngineOptions::default())
            .await
            .expect("open");
        let schema = json!({
            "type": "object",
            "properties": {"approved": {"type": "boolean"}, "note": {"type": "string"}},
            "required": ["approved"]
        });
        let task = engine
            .create(NewTask {
                title: "Approve the refund for order A-1?".into(),
                payload: json!({"order_id": "A-1", "amount": 500.0}),
                response_schema: schema.clone(),
                key: Some("refund-A-1".into()),
                timeout_ms: Some(3_600_000),
                requested_by: Some("refund-agent".into()),
                ..Default::default()
            })
            .await
            .expect("create")
            .task;
        let other = engine
            .create(NewTask {
                title: "Ship it?".into(),
                payload: json!({}),
                response_schema: schema,
                ..Default::default()
            })
            .await
            .expect("create")
            .task;
        engine.close().await;
        (task, other)
    });
    drop(rt);
    let id = task.id.to_string();
    // Explicit options, so INLOOP_* variables in the environment change nothing.
    let cli = |list: &[&str], stdin: &str| {
        let ns = if list.contains(&"--namespace") {
            vec![]
        } else {
            vec!["--namespace", "default"]
        };
        let mut full = vec!["--database-url", url.as_str()];
        full.extend(ns);
        full.extend_from_slice(list);
        run_with(&full, stdin)
    };

    // list
    let r = cli(&["tasks", "list"], "");
    assert_eq!(r.code, 0, "{}", r.err);
    let lines: Vec<&str> = r.out.lines().collect();
    assert_eq!(lines.len(), 3, "{}", r.out);
    assert!(lines[0].starts_with("ID  "), "{}", r.out);
    assert!(lines[0].ends_with("DEADLINE/ANSWERED BY"), "{}", r.out);
    assert!(
        lines[1].starts_with(&other.id.to_string()),
        "newest first: {}",
        r.out
    );
    assert!(
        lines[2].contains("refund-A-1") && lines[2].contains("pending"),
        "{}",
        r.out
    );
    let r = cli(&["tasks", "list", "--json", "--limit", "1"], "");
    assert_eq!(r.code, 0, "{}", r.err);
    let page: Page = serde_json::from_str(&r.out).expect("a page");
    assert_eq!(page.items.len(), 1);
    let cursor = page.next_cursor.expect("a next page");
    let r = cli(&["tasks", "list", "--limit", "1"], "");
    assert!(
        r.out
            .contains(&format!("more tasks: add --cursor {cursor}")),
        "{}",
        r.out
    );
    let r = cli(&["tasks", "list", "--limit", "1", "--cursor", &cursor], "");
    assert!(
        r.out.contains(&id) && !r.out.contains("more tasks"),
        "{}",
        r.out
    );
    let r = cli(&["tasks", "list", "--namespace", "elsewhere"], "");
    assert_eq!(r.out, "no tasks in namespace elsewhere\n");

    // answers: bad JSON, schema-invalid, valid, then a late duplicate
    let r = cli(&["tasks", "answer", &id, "{approved: true}"], "");
    assert_eq!(r.code, 1);
    assert!(r.err.starts_with("error [invalid_json]: the answer is not valid JSON: key must be a string (line 1, column 2)"), "{}", r.err);

    let r = cli(
        &[
            "tasks",
            "answer",
            &id,
            r#"{"approved": "yes"}"#,
            "--by",
            "alice",
        ],
        "",
    );
    assert_eq!(r.code, 1);
    let err: Vec<&str> = r.err.lines().collect();
    assert_eq!(
        err[0],
        "error [invalid_answer]: the answer does not match the task's response schema (1 problem)"
    );
    assert!(err[1].starts_with("  /approved: "), "{}", r.err);
    assert!(
        err[2].starts_with("hint: the task is still pending"),
        "{}",
        r.err
    );
    let r = cli(
        &["tasks", "answer", &id, "--by", "alice"],
        r#"{"note": "hm"}"#,
    );
    assert_eq!(r.code, 1);
    assert!(
        r.err
            .contains("  (top level): \"approved\" is a required property"),
        "{}",
        r.err
    );

    let r = cli(
        &[
            "tasks",
            "answer",
            &id,
            r#"{"approved": true, "note": "ok"}"#,
            "--by",
            "alice",
        ],
        "",
    );
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(r.out, format!("answered task {id}: accepted from alice\n"));
    let r = cli(
        &[
            "tasks",
            "answer",
            &id,
            r#"{"approved": false}"#,
            "--by",
            "bob",
        ],
        "",
    );
    assert_eq!(r.code, 1);
    assert!(
        r.err.starts_with(&format!(
            "error [conflict]: task {id} was already answered by alice at "
        )),
        "{}",
        r.err
    );

    // show
    let r = cli(&["tasks", "show", &id], "");
    assert_eq!(r.code, 0, "{}", r.err);
    for needle in [
        "Approve the refund for order A-1?",
        "status       completed",
        "key          refund-A-1",
        "\"order_id\": \"A-1\"",
        "approved  boolean  required",
        "answer (from alice via cli at ",
        "\"note\": \"ok\"",
    ] {
        assert!(r.out.contains(needle), "missing {needle:?} in\n{}", r.out);
    }
    let r = cli(&["tasks", "show", &id, "--json"], "");
    let shown: Task = serde_json::from_str(&r.out).expect("a task");
    assert_eq!(
        shown.response,
        Some(json!({"approved": true, "note": "ok"}))
    );
    let missing = Uuid::now_v7().to_string();
    let r = cli(&["tasks", "show", &missing], "");
    assert_eq!(r.code, 1);
    assert_eq!(
        r.err,
        format!("error [not_found]: task {missing} not found\n")
    );

    // audit: created, two refusals, the accepted answer, the late refusal
    let r = cli(&["tasks", "audit", &id], "");
    assert_eq!(r.code, 0, "{}\n{}", r.out, r.err);
    let kinds: Vec<&str> = r
        .out
        .lines()
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    assert_eq!(
        kinds,
        [
            "created",
            "answer_refused",
            "answer_refused",
            "answer_accepted",
            "answer_refused"
        ],
        "{}",
        r.out
    );
    assert!(r.out.ends_with("\nchain: ok (5 rows)\n"), "{}", r.out);
    let r = cli(&["tasks", "audit", &id, "--json"], "");
    let v: Value = serde_json::from_str(&r.out).expect("json");
    assert_eq!(v["chain"]["ok"], json!(true));
    assert_eq!(v["events"].as_array().map(Vec::len), Some(5));

    // wait: an answered task returns at once (exit 0); a pending one times out (exit 1)
    let r = cli(&["tasks", "wait", &id, "--json"], "");
    assert_eq!(r.code, 0, "{}", r.err);
    let other_id = other.id.to_string();
    let r = cli(&["tasks", "wait", &other_id, "--timeout", "50ms"], "");
    assert_eq!(r.code, 1);
    assert!(r.out.contains("answer: none yet"), "{}", r.out);
    assert_eq!(
        r.err,
        format!("error [still_pending]: task {other_id} is still pending after 50ms\n")
    );

    // cancel, then waiting reports the cancellation
    let r = cli(
        &[
            "tasks",
            "cancel",
            &other_id,
            "--reason",
            "not needed",
            "--by",
            "carol",
        ],
        "",
    );
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.out,
        format!("cancelled task {other_id} (by carol): not needed\n")
    );
    let r = cli(&["tasks", "wait", &other_id], "");
    assert_eq!(r.code, 1);
    assert!(r.out.contains("cancelled by carol at "), "{}", r.out);
    assert!(r.err.starts_with("error [cancelled]: task "), "{}", r.err);
    let r = cli(&["tasks", "cancel", &other_id], "");
    assert_eq!(r.code, 1);
    assert!(r.err.starts_with("error [conflict]: "), "{}", r.err);
    let r = cli(&["tasks", "list", "--status", "cancelled"], "");
    assert!(
        r.out.contains(&other_id) && r.out.contains("carol"),
        "{}",
        r.out
    );

    // create through the CLI, idempotently
    let create = [
        "tasks",
        "create",
        "--title",
        "Deploy?",
        "--key",
        "deploy-1",
        "--response-schema",
        r#"{"type": "boolean"}"#,
        "--timeout",
        "1h",
    ];
    let r = cli(&create, "");
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(r.out.starts_with("created task "), "{}", r.out);
    let r = cli(&create, "");
    assert!(
        r.out.contains("already exists for key deploy-1 (pending)"),
        "{}",
        r.out
    );

    // The real entry point (prints to the process's stdout).
    assert_eq!(
        main_with_args(args(&[
            "--database-url",
            &url,
            "tasks",
            "list",
            "--status",
            "completed"
        ])),
        0
    );

    // An altered audit row is caught.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("connect");
        sqlx::query("DROP TRIGGER inloop_audit_append_only_update")
            .execute(&mut conn)
            .await
            .expect("drop trigger");
        sqlx::query("UPDATE inloop_audit SET data = '{\"response\":{\"approved\":false}}' WHERE task_id = ? AND seq = 4")
            .bind(&id)
            .execute(&mut conn)
            .await
            .expect("tamper");
        conn.close().await.expect("close");
    });
    drop(rt);
    let r = cli(&["tasks", "audit", &id], "");
    assert_eq!(r.code, 1);
    assert!(
        r.out
            .ends_with("\nchain: BROKEN at seq 4: hash does not match the row's contents\n"),
        "{}",
        r.out
    );
    assert!(r.err.starts_with("error [audit_broken]: "), "{}", r.err);

    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn user_and_namespace_commands() {
    let dir = temp_dir("users");
    let url = format!("sqlite:{}", dir.join("inloop.db").display());
    let db = |rest: &[&str]| -> Vec<String> {
        ["--database-url", url.as_str()]
            .iter()
            .chain(rest)
            .map(|s| s.to_string())
            .collect()
    };
    let run_db = |rest: &[&str], stdin: &str| {
        let a = db(rest);
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        run_with(&refs, stdin)
    };
    // a generated password is printed once and works
    let r = run_db(
        &[
            "user",
            "add",
            "Alice",
            "--email",
            "alice@acme.com",
            "--group",
            "finance",
        ],
        "",
    );
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(r.out.starts_with("added reviewer alice"), "{}", r.out);
    assert!(r.err.contains("shown only this once"), "{}", r.err);
    let password = r.out.lines().nth(3).unwrap().trim().to_string();
    assert_eq!(password.len(), 20);
    // a password from stdin; an empty one is refused
    let r = run_db(
        &["user", "add", "root", "--role", "admin", "--password-stdin"],
        "long enough pw\n",
    );
    assert_eq!(r.code, 0, "{}", r.err);
    let r = run_db(&["user", "add", "x", "--password-stdin"], "");
    assert_eq!(r.code, 1);
    assert!(r.err.contains("no password on stdin"), "{}", r.err);
    let r = run_db(&["user", "add", "alice"], "");
    assert_eq!(r.code, 1);
    assert!(r.err.contains("already exists"), "{}", r.err);
    let r = run_db(&["user", "list", "--json"], "");
    let list: Vec<crate::users::User> = serde_json::from_str(&r.out).unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].groups, ["finance"]);
    let r = run_db(&["user", "groups", "alice", "legal", "ops"], "");
    assert_eq!(r.out, "alice is in legal, ops\n");
    let r = run_db(&["user", "disable", "alice"], "");
    assert_eq!(r.code, 0, "{}", r.err);
    let r = run_db(&["user", "reset-password", "nobody"], "");
    assert_eq!(r.code, 1);
    assert!(
        r.err
            .contains("error [not_found]: user \"nobody\" not found"),
        "{}",
        r.err
    );
    let r = run_db(
        &["namespace", "set", "payments", "--unassigned", "admins"],
        "",
    );
    assert_eq!(r.code, 0, "{}", r.err);
    let r = run_db(&["namespace", "list"], "");
    assert!(
        r.out.contains("payments") && r.out.contains("admins"),
        "{}",
        r.out
    );
    assert_eq!(
        run_db(
            &["namespace", "set", "payments", "--unassigned", "nobody"],
            ""
        )
        .code,
        2
    );
}

#[test]
fn create_with_a_callback_url() {
    let dir = temp_dir("callback");
    let url = format!("sqlite:{}", dir.join("inloop.db").display());
    let create = |extra: &[&str], key: &str, callback: &str| {
        let mut a = vec!["--database-url", url.as_str()];
        a.extend_from_slice(extra);
        a.extend_from_slice(&[
            "tasks",
            "create",
            "--title",
            "Approve?",
            "--response-schema",
            r#"{"type": "boolean"}"#,
            "--key",
            key,
            "--callback-url",
            callback,
            "--json",
        ]);
        run_with(&a, "")
    };
    // Without [callbacks] here, only the URL's form is checked (the server's dispatcher
    // checks its allow-list before sending).
    let r = create(&[], "k1", "https://Engine.Internal:443/hooks/./x");
    assert_eq!(r.code, 0, "{}", r.err);
    let v: Value = serde_json::from_str(&r.out).unwrap();
    assert_eq!(v["task"]["callback_url"], "https://engine.internal/hooks/x");
    let r = run_with(
        &["--database-url", &url, "tasks", "show", "--key", "k1"],
        "",
    );
    assert!(
        r.out
            .contains("callback     https://engine.internal/hooks/x"),
        "{}",
        r.out
    );
    let r = create(&[], "k2", "ftp://engine.internal/x");
    assert_eq!(r.code, 1);
    assert!(
        r.err.contains("[invalid_argument]") && r.err.contains("http or https"),
        "{}",
        r.err
    );
    // With [callbacks] in the configuration, a URL it does not allow is refused at once.
    let config = dir.join("inloop.toml");
    std::fs::write(
        &config,
        format!(
            "[callbacks]\nallow = [\"https://engine.internal/hooks/\"]\nsecret = \"{}\"\n",
            crate::channels::webhook::generate_secret()
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    let with = ["--config", config.as_str()];
    let r = create(&with, "k3", "https://engine.internal.evil.com/hooks/x");
    assert_eq!(r.code, 1, "{}", r.out);
    assert!(
        r.err.contains("[invalid_argument]") && r.err.contains("not allowed"),
        "{}",
        r.err
    );
    let r = run_with(
        &["--database-url", &url, "tasks", "show", "--key", "k3"],
        "",
    );
    assert_eq!(r.code, 1, "nothing was created: {}", r.out);
    let r = create(&with, "k4", "https://engine.internal/hooks/done");
    assert_eq!(r.code, 0, "{}", r.err);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn apikey_create_list_revoke() {
    let dir = temp_dir("apikey");
    let url = format!("sqlite:{}", dir.join("inloop.db").display());
    let r = run_with(
        &[
            "--database-url",
            &url,
            "--namespace",
            "ops",
            "apikey",
            "create",
            "--name",
            "agent-1",
        ],
        "",
    );
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(r.out.contains("for namespace ops"), "{}", r.out);
    assert!(r.err.contains("shown only this once"), "{}", r.err);
    let secret = r
        .out
        .split_whitespace()
        .find(|w| w.starts_with("ilk_"))
        .expect("the key is printed");
    assert!(apikeys::is_well_formed(secret), "{secret}");

    let r = run_with(
        &[
            "--database-url",
            &url,
            "apikey",
            "create",
            "--name",
            "reviewer",
            "--allow-answer",
            "--json",
        ],
        "",
    );
    assert_eq!(r.code, 0, "{}", r.err);
    let v: Value = serde_json::from_str(&r.out).unwrap();
    assert_eq!(v["key"]["namespace"], "default");
    assert_eq!(v["key"]["allow_answer"], true);
    assert!(v["secret"].as_str().unwrap().starts_with("ilk_"));
    assert!(v["key"].get("hash").is_none());
    let reviewer = v["key"]["id"].as_str().unwrap().to_string();

    let r = run_with(&["--database-url", &url, "apikey", "list"], "");
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(r.out.starts_with("ID "), "{}", r.out);
    assert!(
        r.out.contains("agent-1") && r.out.contains("reviewer"),
        "{}",
        r.out
    );
    assert!(!r.out.contains("ilk_"), "{}", r.out);

    let r = run_with(&["--database-url", &url, "apikey", "revoke", &reviewer], "");
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(r.out, format!("revoked API key {reviewer} (reviewer)\n"));

    let r = run_with(&["--database-url", &url, "apikey", "list", "--json"], "");
    assert_eq!(r.code, 0, "{}", r.err);
    let keys: Vec<ApiKey> = serde_json::from_str(&r.out).unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0].name, "agent-1");
    assert!(keys[0].revoked_at.is_none());
    assert!(keys[1].revoked_at.is_some());

    let r = run_with(
        &[
            "--database-url",
            &url,
            "apikey",
            "revoke",
            &Uuid::now_v7().to_string(),
        ],
        "",
    );
    assert_eq!(r.code, 1);
    assert!(r.err.starts_with("error [not_found]: "), "{}", r.err);
    assert_eq!(
        run_with(&["--database-url", &url, "apikey", "revoke", "nope"], "").code,
        1
    );
    assert_eq!(parse_err_code(&["apikey", "create"]), 2);

    let _ = std::fs::remove_dir_all(dir);
}

// ---- inloop mcp ---------------------------------------------------------------------------

fn mcp_launch(list: &[&str], inloop_python: Option<&str>) -> mcp::Launch {
    let cli = Cli::try_parse_from(args(list)).expect("parses");
    let Command::Mcp(m) = &cli.command else {
        panic!("not the mcp command: {:?}", cli.command)
    };
    mcp::launch(
        m,
        inloop_python.map(Into::into),
        cli.database_url.clone(),
        cli.namespace.clone(),
    )
}

#[test]
fn mcp_passes_its_arguments_to_the_python_server_unchanged() {
    let l = mcp_launch(
        &[
            "mcp",
            "--transport",
            "http",
            "--listen",
            "127.0.0.1:7999",
            "--help",
        ],
        None,
    );
    assert_eq!(l.python, "python3");
    assert_eq!(l.args[0], "-c");
    assert!(
        l.args[1].contains("from inloop.mcp import main"),
        "{}",
        l.args[1]
    );
    assert!(
        l.args[2].contains("pip install 'inloop[mcp]'"),
        "{}",
        l.args[2]
    );
    assert_eq!(
        &l.args[3..],
        [
            "--transport",
            "http",
            "--listen",
            "127.0.0.1:7999",
            "--help"
        ]
    );
    assert!(l.env.is_empty(), "{:?}", l.env);
}

#[test]
fn mcp_uses_inloop_python_and_passes_the_global_options_as_variables() {
    let l = mcp_launch(
        &[
            "--database-url",
            "sqlite:x.db",
            "--namespace",
            "ops",
            "mcp",
            "--db",
            "sqlite:y.db",
        ],
        Some("/opt/py/bin/python"),
    );
    assert_eq!(l.python, "/opt/py/bin/python");
    assert_eq!(&l.args[3..], ["--db", "sqlite:y.db"]);
    assert_eq!(
        l.env,
        [
            ("INLOOP_DATABASE_URL", "sqlite:x.db".to_string()),
            ("INLOOP_NAMESPACE", "ops".to_string())
        ]
    );
    // An empty INLOOP_PYTHON means unset.
    assert_eq!(mcp_launch(&["mcp"], Some("")).python, "python3");
}

#[test]
fn mcp_without_python_fails_with_the_install_hint() {
    // Not `mcp::run`: its `exec` resets SIGPIPE to the default in this process before it
    // fails (std does, for the new program), and a later test writing to a closed socket
    // would be killed. `core/tests/cli_mcp.rs` runs that path in the real binary.
    let python = std::ffi::OsStr::new("/nonexistent/inloop-test/python3");
    let spawned = std::process::Command::new(python).spawn();
    let failure = mcp::cannot_start(python, &spawned.expect_err("no such interpreter"));
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut input: &[u8] = b"";
    let mut io = Io {
        stdin: &mut input,
        out: &mut out,
        err: &mut err,
        stdin_is_terminal: false,
        out_color: false,
        err_color: false,
    };
    assert_eq!(report(failure, &mut io), 1);
    let err = String::from_utf8_lossy(&err);
    assert!(err.starts_with("error [mcp_unavailable]: "), "{err}");
    assert!(err.contains("/nonexistent/inloop-test/python3"), "{err}");
    assert!(
        err.contains("hint: install Python 3.10 or newer and `pip install 'inloop[mcp]'`"),
        "{err}"
    );
}
