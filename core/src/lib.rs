//! inloop-core: durable, idempotent human-in-the-loop tasks on SQLite and PostgreSQL.
//!
//! An agent creates a task (a typed request for a person) and waits; a person answers from
//! any process on the same database; the answer is validated against the task's JSON Schema
//! here, accepted exactly once, and the waiter wakes within milliseconds. See
//! `docs/architecture.md` in the repository for the design.

pub mod access;
pub mod apikeys;
pub mod audit;
pub mod channels;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod dashboard;
pub mod effects;
pub mod engine;
pub mod error;
pub mod model;
pub mod policy;
pub mod remote;
pub mod rules;
pub mod schema;
pub mod schema_cost;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod users;
pub mod verify;
pub mod wait;

pub use client::AnyEngine;
pub use clock::Clock;
pub use engine::{Engine, EngineOptions};
pub use error::{Error, FieldError, Result};
pub use model::{Answer, AuditEvent, Created, ListFilter, NewTask, Page, Status, Task};
pub use remote::RemoteEngine;
