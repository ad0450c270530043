//! The dashboard's HTTP side: sign-in, first-run setup, the queue, the task page and its
//! actions, live updates (server-sent events) and the static assets. Pages are rendered by
//! [`crate::dashboard::pages`]; every decision (who sees what, who may answer, whether an
//! answer is valid) is the core's.
//!
//! One module per page or endpoint group (`sign_in`, `queue`, `task`, `effects`, `events`,
//! `assets`); `respond` and `request` hold what they share.

mod assets;
mod effects;
mod events;
mod queue;
mod request;
mod respond;
mod sign_in;
mod task;

pub(super) use assets::{app_css, app_js, favicon};
pub(super) use effects::{effect_resolve, effects_page};
pub(super) use events::events;
pub(super) use queue::queue;
pub(super) use sign_in::{index, login_page, login_submit, logout, setup_page, setup_submit};
pub(super) use task::{answer, cancel, claim, release, task_page};

/// The channel recorded for answers, claims and cancels made in the dashboard.
pub const CHANNEL: &str = "dashboard";
