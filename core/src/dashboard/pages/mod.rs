//! The dashboard's pages, all in one layout. Pages carry no inline script, style or event
//! handler (they are served under a strict CSP); `app.js` adds live updates and local times.
//!
//! Live updates: every element with `data-live` (each with an `id`) is replaced by its
//! namesake from a fresh copy of the page when a `change` event arrives. On the task page the
//! answer section (`data-respond`) is outside those, so typing is never lost, and is replaced
//! only once the fresh page's `<main data-status>` is no longer `pending`.
//!
//! One module per page (`queue`, `task` with its `policy_card` and `timeline`, `effects`,
//! `sign_in`); `layout` holds what they share.

mod effects;
mod layout;
mod policy_card;
mod queue;
mod sign_in;
mod task;
#[cfg(test)]
mod tests;
mod timeline;

pub use effects::effects;
pub use layout::message;
pub use queue::queue;
pub use sign_in::{login, setup};
pub use task::task;
