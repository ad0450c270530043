//! `inloop apikey ...`: create, list and revoke the REST API's keys.

use std::io::{self, Write};

use clap::{Args, Subcommand};
use uuid::Uuid;

use super::output::one_line;
use super::{Failure, Io, JsonArg, fail, write_json, write_table};
use crate::apikeys::{self, ApiKey};
use crate::engine::Engine;
use crate::model::format_ms;

#[derive(Debug, Subcommand)]
pub(super) enum ApikeyCommand {
    /// Create a key for --namespace (the key is printed once, never again)
    Create(ApikeyCreateArgs),
    /// List the keys (id, name, namespace, created, last used, revoked)
    #[command(visible_alias = "ls")]
    List(JsonArg),
    /// Revoke a key: requests with it are refused from now on
    Revoke(ApikeyRevokeArgs),
}

#[derive(Debug, Args)]
pub(super) struct ApikeyCreateArgs {
    /// Who or what uses the key (shown by `apikey list`)
    #[arg(long, value_name = "NAME")]
    name: String,
    /// Let the key answer tasks (an agent's key should not: it must not approve its own
    /// requests)
    #[arg(long)]
    allow_answer: bool,
    /// Print the key and its record as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(super) struct ApikeyRevokeArgs {
    /// The key's id (from `apikey list`)
    #[arg(value_name = "ID")]
    id: String,
    /// Print the revoked key as JSON
    #[arg(long)]
    json: bool,
}

/// An `apikey` command, checked.
#[derive(Debug)]
pub(super) enum KeyPlan {
    Create {
        name: String,
        namespace: String,
        allow_answer: bool,
        json: bool,
    },
    List {
        json: bool,
    },
    Revoke {
        id: Uuid,
        json: bool,
    },
}

impl KeyPlan {
    /// Whether the command may create the database (only `create` does).
    pub(super) fn creates_database(&self) -> bool {
        matches!(self, KeyPlan::Create { .. })
    }
}

/// Checks an `apikey` command's arguments; `namespace` is the key's for `create`.
pub(super) fn plan(command: ApikeyCommand, namespace: &str) -> Result<KeyPlan, Failure> {
    Ok(match command {
        ApikeyCommand::Create(a) => KeyPlan::Create {
            name: a.name,
            namespace: namespace.to_string(),
            allow_answer: a.allow_answer,
            json: a.json,
        },
        ApikeyCommand::List(a) => KeyPlan::List { json: a.json },
        ApikeyCommand::Revoke(a) => {
            let id = Uuid::parse_str(a.id.trim()).map_err(|_| {
                fail(
                    "invalid_argument",
                    format!(
                        "{:?} is not an API key id (a UUID, see `inloop apikey list`)",
                        a.id
                    ),
                )
            })?;
            KeyPlan::Revoke { id, json: a.json }
        }
    })
}

/// Runs an `apikey` command against the database.
pub(super) async fn perform(
    engine: &Engine,
    plan: KeyPlan,
    io: &mut Io<'_>,
) -> Result<i32, Failure> {
    match plan {
        KeyPlan::Create {
            name,
            namespace,
            allow_answer,
            json,
        } => {
            let (key, secret) =
                apikeys::create_api_key(engine, &name, &namespace, allow_answer).await?;
            if json {
                write_json(io.out, &serde_json::json!({ "key": key, "secret": secret }))?;
            } else {
                writeln!(
                    io.out,
                    "created API key {} ({}) for namespace {}{}",
                    key.id,
                    key.name,
                    key.namespace,
                    if key.allow_answer {
                        ", allowed to answer"
                    } else {
                        ""
                    }
                )?;
                writeln!(io.out)?;
                writeln!(io.out, "    {secret}")?;
                writeln!(io.out)?;
            }
            writeln!(
                io.err,
                "warning: the key is shown only this once and cannot be recovered; store it now"
            )?;
        }
        KeyPlan::List { json } => {
            let keys = apikeys::list_api_keys(engine).await?;
            if json {
                write_json(io.out, &keys)?;
            } else if keys.is_empty() {
                writeln!(
                    io.out,
                    "no API keys (create one with `inloop apikey create`)"
                )?;
            } else {
                write_api_keys(io.out, &keys)?;
            }
        }
        KeyPlan::Revoke { id, json } => {
            let key = apikeys::revoke_api_key(engine, id).await?;
            if json {
                write_json(io.out, &key)?;
            } else {
                writeln!(io.out, "revoked API key {} ({})", key.id, key.name)?;
            }
        }
    }
    Ok(0)
}

/// The keys as a table (never their secrets, which are not stored).
fn write_api_keys(out: &mut dyn Write, keys: &[ApiKey]) -> io::Result<()> {
    let when = |t: Option<i64>| t.map(format_ms).unwrap_or_else(|| "-".into());
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|k| {
            vec![
                k.id.to_string(),
                one_line(&k.name, 40),
                k.namespace.clone(),
                if k.allow_answer { "yes" } else { "no" }.into(),
                format_ms(k.created_at),
                when(k.last_used_at),
                when(k.revoked_at),
            ]
        })
        .collect();
    write_table(
        out,
        &[
            "ID",
            "NAME",
            "NAMESPACE",
            "ANSWERS",
            "CREATED",
            "LAST USED",
            "REVOKED",
        ],
        &rows,
    )
}
