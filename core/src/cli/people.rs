//! `inloop user ...` and `inloop namespace ...`: the people who answer in the dashboard, and
//! who may see a namespace's unassigned tasks.

use std::io::{BufRead, BufReader, Write};

use clap::{Args, Subcommand, ValueEnum};

use super::{Failure, Io, JsonArg, fail, write_json, write_table};
use crate::access::Unassigned;
use crate::engine::Engine;
use crate::model::format_ms;
use crate::users::{self, Role, User};

#[derive(Debug, Subcommand)]
pub(super) enum UserCommand {
    /// Add a user (prints a generated password unless --password-stdin)
    Add(UserAddArgs),
    /// List the users
    #[command(visible_alias = "ls")]
    List(JsonArg),
    /// Disable a user: signs them out everywhere and refuses their sign-in
    Disable(UserNameArgs),
    /// Enable a disabled user again
    Enable(UserNameArgs),
    /// Set a new password (prints a generated one unless --password-stdin) and sign the user
    /// out everywhere
    ResetPassword(UserPasswordArgs),
    /// Set a user's groups (tasks assigned to role:GROUP or group:GROUP are theirs); none
    /// clears them
    Groups(UserGroupsArgs),
}

#[derive(Debug, Args)]
pub(super) struct UserGroupsArgs {
    #[arg(value_name = "NAME")]
    name: String,
    /// The groups, replacing the current ones
    #[arg(value_name = "GROUP")]
    groups: Vec<String>,
    /// Print the user as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(super) enum RoleArg {
    Admin,
    Reviewer,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Role {
        match r {
            RoleArg::Admin => Role::Admin,
            RoleArg::Reviewer => Role::Reviewer,
        }
    }
}

#[derive(Debug, Args)]
pub(super) struct UserAddArgs {
    /// Login name (letters, digits, . _ -; stored in lower case)
    #[arg(value_name = "NAME")]
    name: String,
    /// admin: sees and answers everything, cancels; reviewer: the tasks assigned to them
    #[arg(long, value_enum, default_value = "reviewer")]
    role: RoleArg,
    /// E-mail address (tasks assigned to it are theirs; also accepted at sign-in)
    #[arg(long, value_name = "EMAIL")]
    email: Option<String>,
    /// A group (repeatable): tasks assigned to role:GROUP or group:GROUP are theirs
    #[arg(long = "group", value_name = "GROUP")]
    groups: Vec<String>,
    /// Read the password from the first line of stdin instead of generating one
    #[arg(long)]
    password_stdin: bool,
    /// Print the user as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(super) struct UserNameArgs {
    #[arg(value_name = "NAME")]
    name: String,
    /// Print the user as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(super) struct UserPasswordArgs {
    #[arg(value_name = "NAME")]
    name: String,
    /// Read the password from the first line of stdin instead of generating one
    #[arg(long)]
    password_stdin: bool,
}

#[derive(Debug, Subcommand)]
pub(super) enum NamespaceCommand {
    /// Set who may see and answer the namespace's unassigned tasks
    Set(NamespaceSetArgs),
    /// List the namespaces with a policy (the others: reviewers)
    #[command(visible_alias = "ls")]
    List(JsonArg),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(super) enum UnassignedArg {
    /// Every reviewer (the default)
    Reviewers,
    /// Only admins
    Admins,
}

#[derive(Debug, Args)]
pub(super) struct NamespaceSetArgs {
    #[arg(value_name = "NAMESPACE")]
    namespace: String,
    /// Who may see and answer tasks assigned to nobody
    #[arg(long, value_enum)]
    unassigned: UnassignedArg,
}

/// A user or namespace command, its input read, ready to run.
#[derive(Debug)]
pub(super) enum PeoplePlan {
    Add {
        name: String,
        role: Role,
        email: Option<String>,
        groups: Vec<String>,
        password: Option<String>,
        json: bool,
    },
    Groups {
        name: String,
        groups: Vec<String>,
        json: bool,
    },
    List {
        json: bool,
    },
    SetDisabled {
        name: String,
        disabled: bool,
        json: bool,
    },
    ResetPassword {
        name: String,
        password: Option<String>,
    },
    NamespaceSet {
        namespace: String,
        unassigned: Unassigned,
    },
    NamespaceList {
        json: bool,
    },
}

impl PeoplePlan {
    /// Only adding a user may create the database.
    pub(super) fn creates_database(&self) -> bool {
        matches!(
            self,
            PeoplePlan::Add { .. } | PeoplePlan::NamespaceSet { .. }
        )
    }
}

fn password_from_stdin(io: &mut Io) -> Result<String, Failure> {
    if io.stdin_is_terminal {
        writeln!(io.err, "password (echoed; finish with Enter):")?;
    }
    let mut line = String::new();
    // One line of at most 4 KiB (nothing else reads stdin in this command).
    BufReader::new(std::io::Read::take(&mut *io.stdin, 4096))
        .read_line(&mut line)
        .map_err(|e| fail("invalid_argument", format!("cannot read the password: {e}")))?;
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    if password.is_empty() {
        return Err(fail(
            "invalid_argument",
            "no password on stdin (pipe it in: `printf '%s\\n' \"$PW\" | inloop user add ...`)",
        ));
    }
    Ok(password)
}

pub(super) fn plan_user(cmd: UserCommand, io: &mut Io) -> Result<PeoplePlan, Failure> {
    Ok(match cmd {
        UserCommand::Add(a) => PeoplePlan::Add {
            password: a
                .password_stdin
                .then(|| password_from_stdin(io))
                .transpose()?,
            name: a.name,
            role: a.role.into(),
            email: a.email,
            groups: a.groups,
            json: a.json,
        },
        UserCommand::Groups(a) => PeoplePlan::Groups {
            name: a.name,
            groups: a.groups,
            json: a.json,
        },
        UserCommand::List(a) => PeoplePlan::List { json: a.json },
        UserCommand::Disable(a) => PeoplePlan::SetDisabled {
            name: a.name,
            disabled: true,
            json: a.json,
        },
        UserCommand::Enable(a) => PeoplePlan::SetDisabled {
            name: a.name,
            disabled: false,
            json: a.json,
        },
        UserCommand::ResetPassword(a) => PeoplePlan::ResetPassword {
            password: a
                .password_stdin
                .then(|| password_from_stdin(io))
                .transpose()?,
            name: a.name,
        },
    })
}

pub(super) fn plan_namespace(cmd: NamespaceCommand) -> PeoplePlan {
    match cmd {
        NamespaceCommand::Set(a) => PeoplePlan::NamespaceSet {
            namespace: a.namespace,
            unassigned: match a.unassigned {
                UnassignedArg::Reviewers => Unassigned::Reviewers,
                UnassignedArg::Admins => Unassigned::Admins,
            },
        },
        NamespaceCommand::List(a) => PeoplePlan::NamespaceList { json: a.json },
    }
}

/// A generated password: 20 characters of URL-safe base64 (120 bits).
fn generated_password() -> String {
    users::random_token()[..20].to_string()
}

fn print_generated(io: &mut Io, name: &str, password: &str) -> Result<(), Failure> {
    writeln!(io.out, "password for {name}:")?;
    writeln!(io.out)?;
    writeln!(io.out, "    {password}")?;
    writeln!(io.out)?;
    writeln!(
        io.err,
        "warning: the password is shown only this once; give it to {name} over a safe channel"
    )?;
    Ok(())
}

pub(super) async fn perform(
    engine: &Engine,
    plan: PeoplePlan,
    io: &mut Io<'_>,
) -> Result<(), Failure> {
    match plan {
        PeoplePlan::Add {
            name,
            role,
            email,
            groups,
            password,
            json,
        } => {
            let generated = password.is_none();
            let password = password.unwrap_or_else(generated_password);
            let user =
                users::add_user_in(engine, &name, email.as_deref(), role, &groups, &password)
                    .await?;
            if json {
                let mut v =
                    serde_json::to_value(&user).map_err(|e| fail("internal", e.to_string()))?;
                if generated {
                    v["password"] = password.clone().into();
                }
                write_json(io.out, &v)?;
            } else {
                writeln!(io.out, "added {} {}", user.role, user.name)?;
                if generated {
                    print_generated(io, &user.name, &password)?;
                }
            }
        }
        PeoplePlan::List { json } => {
            let all = users::list_users(engine).await?;
            if json {
                write_json(io.out, &all)?;
            } else if all.is_empty() {
                writeln!(
                    io.out,
                    "no users (start `inloop serve` for the setup link, or `inloop user add NAME --role admin`)"
                )?;
            } else {
                write_users(io.out, &all)?;
            }
        }
        PeoplePlan::SetDisabled {
            name,
            disabled,
            json,
        } => {
            let user = users::set_disabled(engine, &name, disabled).await?;
            if json {
                write_json(io.out, &user)?;
            } else if disabled {
                writeln!(io.out, "disabled {} (signed out everywhere)", user.name)?;
            } else {
                writeln!(io.out, "enabled {}", user.name)?;
            }
        }
        PeoplePlan::Groups { name, groups, json } => {
            let user = users::set_groups(engine, &name, &groups).await?;
            if json {
                write_json(io.out, &user)?;
            } else if user.groups.is_empty() {
                writeln!(io.out, "{} is in no group", user.name)?;
            } else {
                writeln!(io.out, "{} is in {}", user.name, user.groups.join(", "))?;
            }
        }
        PeoplePlan::ResetPassword { name, password } => {
            let generated = password.is_none();
            let password = password.unwrap_or_else(generated_password);
            let user = users::reset_password(engine, &name, &password).await?;
            writeln!(
                io.out,
                "new password set for {} (signed out everywhere)",
                user.name
            )?;
            if generated {
                print_generated(io, &user.name, &password)?;
            }
        }
        PeoplePlan::NamespaceSet {
            namespace,
            unassigned,
        } => {
            engine.set_unassigned_policy(&namespace, unassigned).await?;
            writeln!(
                io.out,
                "namespace {namespace}: unassigned tasks are for {}",
                unassigned.as_str()
            )?;
        }
        PeoplePlan::NamespaceList { json } => {
            let all = engine.unassigned_policies().await?;
            if json {
                let v: Vec<_> = all
                    .iter()
                    .map(|(ns, p)| serde_json::json!({"namespace": ns, "unassigned": p.as_str()}))
                    .collect();
                write_json(io.out, &v)?;
            } else if all.is_empty() {
                writeln!(
                    io.out,
                    "no namespace policies: reviewers see unassigned tasks everywhere"
                )?;
            } else {
                let rows: Vec<Vec<String>> = all
                    .iter()
                    .map(|(ns, p)| vec![ns.clone(), p.as_str().to_string()])
                    .collect();
                write_table(io.out, &["NAMESPACE", "UNASSIGNED"], &rows)?;
            }
        }
    }
    Ok(())
}

fn write_users(out: &mut dyn Write, all: &[User]) -> std::io::Result<()> {
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|u| {
            vec![
                u.name.clone(),
                u.role.to_string(),
                u.email.clone().unwrap_or_else(|| "-".into()),
                if u.groups.is_empty() {
                    "-".into()
                } else {
                    u.groups.join(",")
                },
                format_ms(u.created_at),
                u.disabled_at.map(format_ms).unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    write_table(
        out,
        &["NAME", "ROLE", "EMAIL", "GROUPS", "CREATED", "DISABLED"],
        &rows,
    )
}
