//! The audit trail's hash chain: each row commits to the previous row of its task, so an
//! edited, removed or reordered row shows when the chain is verified.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::model::AuditEvent;
use crate::schema::{canonical_json, sha256_hex};

/// `prev_hash` of a task's first row.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The audit kinds the engine writes.
pub mod kind {
    pub const CREATED: &str = "created";
    pub const ANSWER_ACCEPTED: &str = "answer_accepted";
    pub const ANSWER_REFUSED: &str = "answer_refused";
    pub const TIMED_OUT: &str = "timed_out";
    pub const CANCELLED: &str = "cancelled";
    pub const CLAIMED: &str = "claimed";
    pub const RELEASED: &str = "released";
    /// An answer went to the LLM verifier (holds the task's verification lease).
    pub const VERIFICATION_STARTED: &str = "verification_started";
    pub const VERIFICATION_PASSED: &str = "verification_passed";
    pub const VERIFICATION_REJECTED: &str = "verification_rejected";
    pub const VERIFICATION_INCONCLUSIVE: &str = "verification_inconclusive";
    /// The last allowed attempt was rejected: the task ended.
    pub const VERIFICATION_EXHAUSTED: &str = "verification_exhausted";
    /// The agent's verifier sent a completed task back to pending.
    pub const ANSWER_REOPENED: &str = "answer_reopened";
    /// A channel delivered a notification (the outbox row is done).
    pub const DELIVERED: &str = "delivered";
    /// The outbox gave up on a delivery (retry horizon passed, or a permanent error).
    pub const DELIVERY_FAILED: &str = "delivery_failed";
    /// A vote on a task with approvers (the task may stay pending).
    pub const VOTE_RECORDED: &str = "vote_recorded";
    /// A reminder timer fired (the targets are notified again).
    pub const REMINDER_SENT: &str = "reminder_sent";
    /// An escalation step fired (new targets notified, approvers added).
    pub const ESCALATED: &str = "escalated";
    /// An e-mail link was refused (expired, reused, tampered, other recipient, unknown user).
    pub const LINK_REFUSED: &str = "link_refused";
}

/// Hash of one row, over the previous hash and the canonical JSON of its fields.
#[allow(clippy::too_many_arguments)]
pub fn row_hash(
    prev_hash: &str,
    task_id: Uuid,
    seq: i64,
    at: i64,
    actor: Option<&str>,
    channel: Option<&str>,
    kind: &str,
    data: &Value,
) -> String {
    let body = json!({
        "task_id": task_id, "seq": seq, "at": at, "actor": actor,
        "channel": channel, "kind": kind, "data": data,
    });
    sha256_hex(&format!("{prev_hash}\n{}", canonical_json(&body)))
}

/// The outcome of verifying a task's chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainCheck {
    pub ok: bool,
    pub rows: usize,
    /// The first row that does not fit the chain, when one does not.
    pub broken_at_seq: Option<i64>,
    pub problem: Option<String>,
}

/// Verifies that `events` (one task's rows, in `seq` order) form an unbroken chain.
pub fn verify_chain(events: &[AuditEvent]) -> ChainCheck {
    let mut prev = GENESIS.to_string();
    for (i, e) in events.iter().enumerate() {
        let expected_seq = i as i64 + 1;
        let problem = if e.seq != expected_seq {
            Some(format!("expected seq {expected_seq}, found {}", e.seq))
        } else if e.prev_hash != prev {
            Some("prev_hash does not match the previous row's hash".to_string())
        } else if e.hash
            != row_hash(
                &e.prev_hash,
                e.task_id,
                e.seq,
                e.at,
                e.actor.as_deref(),
                e.channel.as_deref(),
                &e.kind,
                &e.data,
            )
        {
            Some("hash does not match the row's contents".to_string())
        } else {
            None
        };
        if let Some(problem) = problem {
            return ChainCheck {
                ok: false,
                rows: events.len(),
                broken_at_seq: Some(e.seq),
                problem: Some(problem),
            };
        }
        prev = e.hash.clone();
    }
    ChainCheck {
        ok: true,
        rows: events.len(),
        broken_at_seq: None,
        problem: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<AuditEvent> {
        let id = Uuid::now_v7();
        let mut prev = GENESIS.to_string();
        (1..=n)
            .map(|seq| {
                let data = json!({"n": seq});
                let hash = row_hash(&prev, id, seq, 1000 + seq, Some("a"), None, "k", &data);
                let e = AuditEvent {
                    task_id: id,
                    seq,
                    at: 1000 + seq,
                    actor: Some("a".into()),
                    channel: None,
                    kind: "k".into(),
                    data,
                    prev_hash: prev.clone(),
                    hash: hash.clone(),
                };
                prev = hash;
                e
            })
            .collect()
    }

    #[test]
    fn intact_chain_verifies() {
        assert!(verify_chain(&chain(4)).ok);
    }

    #[test]
    fn edited_row_is_found() {
        let mut c = chain(4);
        c[2].data = json!({"n": 99});
        let check = verify_chain(&c);
        assert!(!check.ok);
        assert_eq!(check.broken_at_seq, Some(3));
    }

    #[test]
    fn removed_row_is_found() {
        let mut c = chain(4);
        c.remove(1);
        assert_eq!(verify_chain(&c).broken_at_seq, Some(3));
    }
}
