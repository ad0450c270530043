//! People who answer tasks in the dashboard: users with a role.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result};

/// What a user may do. Admins see and answer every task, cancel tasks and release others'
/// claims; reviewers see and answer the tasks assigned to them (by name, e-mail or
/// `role:reviewer`), and unassigned tasks when the namespace allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Reviewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Reviewer => "reviewer",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "admin" => Ok(Role::Admin),
            "reviewer" => Ok(Role::Reviewer),
            other => Err(Error::InvalidArgument(format!(
                "unknown role {other:?} (expected admin or reviewer)"
            ))),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A user as stored (never with the password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: Uuid,
    /// Login name, lower case; what the audit trail records as the actor.
    pub name: String,
    pub email: Option<String>,
    pub role: Role,
    #[serde(with = "crate::model::rfc3339")]
    pub created_at: i64,
    #[serde(with = "crate::model::rfc3339_opt")]
    pub disabled_at: Option<i64>,
}
