//! `inloop tasks ...`: list, show, answer, cancel, audit, wait for and create tasks.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::Value;
use uuid::Uuid;

use super::args::{StatusArg, parse_duration};
use super::failure::{engine_message, error_line};
use super::input::{json_option, parse_json, policy_option, read_file, read_stdin};
use super::output::{human_duration, write_audit, write_list, write_task};
use super::{Failure, Io, Plan, fail, write_json};
use crate::audit;
use crate::engine::Engine;
use crate::error::Error;
use crate::model::{Answer, ListFilter, NewTask, Status, now_ms};
use crate::rules;

/// The channel recorded for answers and cancels made here.
const CHANNEL: &str = "cli";

#[derive(Debug, Subcommand)]
pub(super) enum TasksCommand {
    /// List tasks, newest first
    #[command(visible_alias = "ls")]
    List(ListArgs),
    /// Show one task: its request, payload, expected answer and outcome
    Show(IdArgs),
    /// Answer a pending task (the answer is JSON, checked against the task's response schema)
    Answer(AnswerArgs),
    /// Cancel a pending task
    Cancel(CancelArgs),
    /// Show a task's audit trail and verify its hash chain (exit 1 when broken)
    Audit(IdArgs),
    /// Wait until a task ends, then print it (exit 0 only when it was answered)
    Wait(WaitArgs),
    /// Create a task (or get the one its key already names)
    Create(Box<CreateArgs>),
}

#[derive(Debug, Args)]
pub(super) struct ListArgs {
    /// Only tasks in this state
    #[arg(long, value_name = "STATUS")]
    status: Option<StatusArg>,
    /// Only tasks whose key starts with this
    #[arg(long, value_name = "PREFIX")]
    key_prefix: Option<String>,
    /// Page size
    #[arg(long, value_name = "N", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    limit: u32,
    /// Continue after the previous page (its next cursor)
    #[arg(long, value_name = "CURSOR")]
    cursor: Option<String>,
    /// List every namespace, not only --namespace
    #[arg(long)]
    all_namespaces: bool,
    /// Print the page as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(super) struct IdArgs {
    /// The task id (or use --key)
    #[arg(value_name = "ID", required_unless_present = "key")]
    id: Option<String>,
    /// Name the task by its idempotency key (in --namespace) instead of its id
    #[arg(long, value_name = "KEY")]
    key: Option<String>,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(super) struct AnswerArgs {
    /// The task id (or use --key)
    #[arg(value_name = "ID", required_unless_present = "key")]
    id: Option<String>,
    /// Name the task by its idempotency key (in --namespace) instead of its id
    #[arg(long, value_name = "KEY")]
    key: Option<String>,
    /// The answer as JSON text, e.g. '{"approved": true}'; `-` or nothing (without --file)
    /// reads it from stdin
    #[arg(
        value_name = "RESPONSE",
        allow_negative_numbers = true,
        conflicts_with = "file"
    )]
    response: Option<String>,
    /// Read the answer from this JSON file
    #[arg(long, short = 'f', value_name = "PATH")]
    file: Option<PathBuf>,
    /// Who answers [default: $USER, else "cli"]
    #[arg(long, value_name = "WHO")]
    by: Option<String>,
    /// Print the answered task as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(super) struct CancelArgs {
    /// The task id (or use --key)
    #[arg(value_name = "ID", required_unless_present = "key")]
    id: Option<String>,
    /// Name the task by its idempotency key (in --namespace) instead of its id
    #[arg(long, value_name = "KEY")]
    key: Option<String>,
    /// Why the task is cancelled
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
    /// Who cancels [default: $USER, else "cli"]
    #[arg(long, value_name = "WHO")]
    by: Option<String>,
    /// Print the cancelled task as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(super) struct WaitArgs {
    /// The task id (or use --key)
    #[arg(value_name = "ID", required_unless_present = "key")]
    id: Option<String>,
    /// Name the task by its idempotency key (in --namespace) instead of its id
    #[arg(long, value_name = "KEY")]
    key: Option<String>,
    /// Give up after this long: seconds, or a number with ms, s, m, h or d [default: no limit]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// Print the task as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(super) struct CreateArgs {
    /// What the person is asked
    #[arg(long, value_name = "TEXT")]
    title: String,
    /// JSON Schema of the answer: JSON text, @PATH, or @- for stdin
    #[arg(long, value_name = "JSON")]
    response_schema: String,
    /// The request's data: JSON text, @PATH, or @- for stdin [default: {}]
    #[arg(long, value_name = "JSON")]
    payload: Option<String>,
    /// JSON Schema the payload must match: JSON text, @PATH, or @- for stdin
    #[arg(long, value_name = "JSON")]
    payload_schema: Option<String>,
    /// Idempotency key: the same key gives the same task [default: a new task each time]
    #[arg(long, value_name = "KEY")]
    key: Option<String>,
    /// Time allowed for an answer: seconds, or a number with ms, s, m, h or d
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// Where to deliver the request, as CHANNEL:TARGET (repeatable)
    #[arg(long, value_name = "CHANNEL:TARGET")]
    notify: Vec<String>,
    /// Who may answer (repeatable) [default: anyone]
    #[arg(long, value_name = "WHO")]
    assign_to: Vec<String>,
    /// Who asks (recorded in the audit trail; `exclude_requester` keeps them from answering)
    #[arg(long, value_name = "WHO")]
    requested_by: Option<String>,
    /// An http(s) URL that receives the task's end (a signed task.ended event), if the
    /// server's [callbacks] allow-list permits it
    #[arg(long, value_name = "URL")]
    callback_url: Option<String>,
    /// The W3C trace context the task's life is traced under (the caller's span):
    /// 00-<trace id>-<span id>-<flags>
    #[arg(long, env = "TRACEPARENT", value_name = "TRACEPARENT")]
    traceparent: Option<String>,
    /// Approval policy (approvers, reminders_ms, escalate, on_timeout; docs/policies.md):
    /// JSON text, @PATH, or @- for stdin
    #[arg(long, value_name = "JSON")]
    policy: Option<String>,
    /// Print the result as JSON
    #[arg(long)]
    json: bool,
}

/// Checks a `tasks` command's arguments and reads its input.
pub(super) fn plan(
    tasks: TasksCommand,
    namespace: &str,
    file: &crate::config::FileConfig,
    io: &mut Io,
) -> Result<Plan, Failure> {
    Ok(match tasks {
        TasksCommand::List(a) => Plan::List {
            filter: ListFilter {
                namespace: (!a.all_namespaces).then(|| namespace.to_string()),
                status: a.status.map(Status::from),
                key_prefix: a.key_prefix,
                limit: Some(a.limit),
                cursor: a.cursor,
                ..ListFilter::default()
            },
            json: a.json,
        },
        TasksCommand::Show(a) => Plan::Show {
            task: task_ref(a.id, a.key, namespace)?,
            json: a.json,
        },
        TasksCommand::Audit(a) => Plan::Audit {
            task: task_ref(a.id, a.key, namespace)?,
            json: a.json,
        },
        TasksCommand::Answer(a) => plan_answer(a, namespace, io)?,
        TasksCommand::Cancel(a) => Plan::Cancel {
            task: task_ref(a.id, a.key, namespace)?,
            reason: a.reason,
            by: who(a.by),
            json: a.json,
        },
        TasksCommand::Wait(a) => Plan::Wait {
            task: task_ref(a.id, a.key, namespace)?,
            timeout: a.timeout,
            json: a.json,
        },
        TasksCommand::Create(a) => plan_create(*a, namespace, file, io)?,
    })
}

fn plan_answer(mut a: AnswerArgs, namespace: &str, io: &mut Io) -> Result<Plan, Failure> {
    // With --key the first positional is the answer: `answer --key K '{...}'`.
    if a.key.is_some() && a.response.is_none() && a.file.is_none() {
        a.response = a.id.take();
    }
    let task = task_ref(a.id, a.key, namespace)?;
    let (text, from_argument) = match (&a.file, a.response.as_deref()) {
        (Some(path), _) => (read_file(path, "the answer")?, false),
        (None, Some(text)) if text != "-" => (text.to_string(), true),
        (None, _) => (read_stdin(io, "the answer")?, false),
    };
    let response = parse_json("the answer", &text).map_err(|f| match f {
        Failure::Cli { code, message, .. } if from_argument => Failure::Cli {
            code,
            message,
            hint: Some(
                "the answer is JSON: quote it for the shell, e.g. '{\"approved\": true}' \
                 or '\"some text\"'"
                    .into(),
            ),
        },
        other => other,
    })?;
    Ok(Plan::Answer {
        task,
        response,
        by: who(a.by),
        json: a.json,
    })
}

fn plan_create(
    a: CreateArgs,
    namespace: &str,
    file: &crate::config::FileConfig,
    io: &mut Io,
) -> Result<Plan, Failure> {
    let response_schema = json_option(io, "--response-schema", &a.response_schema)?;
    let payload = match &a.payload {
        Some(p) => json_option(io, "--payload", p)?,
        None => Value::Object(Default::default()),
    };
    let payload_schema = match &a.payload_schema {
        Some(p) => Some(json_option(io, "--payload-schema", p)?),
        None => None,
    };
    let policy = match &a.policy {
        Some(p) => Some(policy_option(json_option(io, "--policy", p)?)?),
        None => None,
    };
    Ok(Plan::Create {
        new: Box::new(NewTask {
            namespace: Some(namespace.to_string()),
            key: a.key,
            title: a.title,
            payload,
            payload_schema,
            response_schema,
            notify: a.notify,
            assign_to: a.assign_to,
            timeout_ms: a
                .timeout
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)),
            requested_by: a.requested_by,
            verification: None,
            callback_url: a.callback_url,
            traceparent: a.traceparent.filter(|t| !t.trim().is_empty()),
            policy,
        }),
        callback_allow: crate::channels::callback::AllowList::from_config(
            file.callbacks.as_ref(),
            &std::env::vars().collect(),
        )?,
        json: a.json,
    })
}

/// A task named by id, or by its idempotency key within a namespace.
#[derive(Debug)]
pub(super) enum TaskRef {
    Id(Uuid),
    Key { namespace: String, key: String },
}

impl TaskRef {
    async fn resolve(self, engine: &Engine) -> Result<Uuid, Failure> {
        Ok(match self {
            TaskRef::Id(id) => id,
            TaskRef::Key { namespace, key } => engine.get_by_key(&namespace, &key).await?.id,
        })
    }
}

fn task_ref(id: Option<String>, key: Option<String>, namespace: &str) -> Result<TaskRef, Failure> {
    match (id, key) {
        (Some(id), None) => Ok(TaskRef::Id(parse_id(&id)?)),
        (None, Some(key)) => Ok(TaskRef::Key {
            namespace: namespace.to_string(),
            key,
        }),
        (Some(_), Some(_)) => Err(fail(
            "invalid_argument",
            "name the task by ID or by --key, not both".to_string(),
        )),
        (None, None) => Err(fail(
            "invalid_argument",
            "name the task: ID or --key KEY".to_string(),
        )),
    }
}

fn parse_id(s: &str) -> Result<Uuid, Failure> {
    Uuid::parse_str(s.trim()).map_err(|_| {
        fail(
            "invalid_argument",
            format!("{s:?} is not a task id (a UUID such as 0190f3a2-7b1c-7d4e-8f00-1a2b3c4d5e6f)"),
        )
    })
}

/// `--by`, else `$USER` (`$USERNAME` on Windows), else `"cli"`.
fn who(by: Option<String>) -> String {
    by.or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("USERNAME").ok())
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "cli".to_string())
}

pub(super) async fn list(
    engine: &Engine,
    filter: ListFilter,
    json: bool,
    io: &mut Io<'_>,
) -> Result<i32, Failure> {
    let page = engine.list(filter.clone()).await?;
    if json {
        write_json(io.out, &page)?;
    } else {
        write_list(io.out, &page, &filter)?;
    }
    Ok(0)
}

pub(super) async fn show(
    engine: &Engine,
    task: TaskRef,
    json: bool,
    io: &mut Io<'_>,
) -> Result<i32, Failure> {
    let task = match task {
        TaskRef::Id(id) => engine.get(id).await?,
        TaskRef::Key { namespace, key } => engine.get_by_key(&namespace, &key).await?,
    };
    if json {
        write_json(io.out, &task)?;
    } else {
        write_task(io.out, &task, now_ms())?;
    }
    Ok(0)
}

pub(super) async fn answer(
    engine: &Engine,
    task: TaskRef,
    response: Value,
    by: String,
    json: bool,
    io: &mut Io<'_>,
) -> Result<i32, Failure> {
    let id = task.resolve(engine).await?;
    let answer = Answer {
        response,
        by: by.clone(),
        channel: CHANNEL.into(),
    };
    let task = engine.answer(id, answer).await.map_err(|e| match e {
        e @ Error::InvalidAnswer { .. } => Failure::Engine(
            Box::new(e),
            Some(format!(
                "the task is still pending; `inloop tasks show {id}` lists the fields it expects"
            )),
        ),
        e => Failure::from(e),
    })?;
    if json {
        write_json(io.out, &task)?;
    } else {
        writeln!(io.out, "answered task {id}: accepted from {by}")?;
    }
    Ok(0)
}

pub(super) async fn cancel(
    engine: &Engine,
    task: TaskRef,
    reason: Option<String>,
    by: String,
    json: bool,
    io: &mut Io<'_>,
) -> Result<i32, Failure> {
    let id = task.resolve(engine).await?;
    let task = engine.cancel(id, &by, CHANNEL, reason.as_deref()).await?;
    if json {
        write_json(io.out, &task)?;
    } else {
        match &reason {
            Some(r) => writeln!(io.out, "cancelled task {id} (by {by}): {r}")?,
            None => writeln!(io.out, "cancelled task {id} (by {by})")?,
        }
    }
    Ok(0)
}

pub(super) async fn audit(
    engine: &Engine,
    task: TaskRef,
    json: bool,
    io: &mut Io<'_>,
) -> Result<i32, Failure> {
    let id = task.resolve(engine).await?;
    // Verify the very rows shown (`Engine::verify_audit` would read them again).
    let events = engine.audit(id).await?;
    let check = audit::verify_chain(&events);
    if json {
        write_json(
            io.out,
            &serde_json::json!({ "events": events, "chain": check }),
        )?;
    } else {
        write_audit(io.out, &events)?;
        writeln!(io.out)?;
        if check.ok {
            writeln!(io.out, "chain: ok ({} rows)", check.rows)?;
        }
    }
    if !check.ok {
        let seq = check.broken_at_seq.unwrap_or_default();
        let problem = check.problem.as_deref().unwrap_or("unknown problem");
        if !json {
            writeln!(io.out, "chain: BROKEN at seq {seq}: {problem}")?;
        }
        error_line(
            io,
            "audit_broken",
            &format!("the audit trail of task {id} was altered at seq {seq}: {problem}"),
        )?;
        return Ok(1);
    }
    Ok(0)
}

pub(super) async fn wait(
    engine: &Engine,
    task: TaskRef,
    timeout: Option<Duration>,
    json: bool,
    io: &mut Io<'_>,
) -> Result<i32, Failure> {
    let id = task.resolve(engine).await?;
    let task = engine.wait(id, timeout).await?;
    if json {
        write_json(io.out, &task)?;
    } else {
        write_task(io.out, &task, now_ms())?;
    }
    if task.status == Status::Pending {
        let waited = timeout.map(|d| format!(" after {}", human_duration(d.as_millis() as i64)));
        error_line(
            io,
            "still_pending",
            &format!("task {id} is still pending{}", waited.unwrap_or_default()),
        )?;
        return Ok(1);
    }
    if let Err(e) = rules::outcome(task) {
        error_line(io, e.code(), &engine_message(&e))?;
        return Ok(1);
    }
    Ok(0)
}

pub(super) async fn create(
    engine: &Engine,
    new: NewTask,
    callback_allow: Option<crate::channels::callback::AllowList>,
    json: bool,
    io: &mut Io<'_>,
) -> Result<i32, Failure> {
    let created = match callback_allow {
        Some(allow) => {
            engine
                .clone()
                .with_callback_allow(allow)
                .create(new)
                .await?
        }
        None => engine.create(new).await?,
    };
    if json {
        write_json(io.out, &created)?;
    } else {
        let t = &created.task;
        if created.created && t.key == t.id.to_string() {
            writeln!(io.out, "created task {}", t.id)?;
        } else if created.created {
            writeln!(io.out, "created task {} (key {})", t.id, t.key)?;
        } else {
            writeln!(
                io.out,
                "task {} already exists for key {} ({}); nothing was created",
                t.id, t.key, t.status
            )?;
        }
    }
    Ok(0)
}
