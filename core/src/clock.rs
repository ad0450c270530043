//! Where the engine reads the time: the system clock, or a clock a test moves by hand (timers,
//! deadlines and votes are then checked at exact times without sleeping).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// The engine's clock (milliseconds since the Unix epoch).
///
/// ```
/// use inloop_core::Clock;
/// let clock = Clock::manual(1_000);
/// clock.advance(500);
/// assert_eq!(clock.now(), 1_500);
/// ```
#[derive(Debug, Clone, Default)]
pub enum Clock {
    /// The system clock (the default).
    #[default]
    System,
    /// A clock that moves only when told to (shared by clones).
    Manual(Arc<AtomicI64>),
}

impl Clock {
    /// A manual clock starting at `start_ms`.
    pub fn manual(start_ms: i64) -> Clock {
        Clock::Manual(Arc::new(AtomicI64::new(start_ms)))
    }

    /// The time now, in ms since the epoch.
    pub fn now(&self) -> i64 {
        match self {
            Clock::System => crate::model::now_ms(),
            Clock::Manual(t) => t.load(Ordering::SeqCst),
        }
    }

    /// Moves a manual clock forward by `ms` (the system clock ignores this).
    pub fn advance(&self, ms: i64) {
        if let Clock::Manual(t) = self {
            t.fetch_add(ms, Ordering::SeqCst);
        }
    }

    /// Sets a manual clock to `ms` (the system clock ignores this).
    pub fn set(&self, ms: i64) {
        if let Clock::Manual(t) = self {
            t.store(ms, Ordering::SeqCst);
        }
    }

    /// Whether this is a manual clock.
    pub fn is_manual(&self) -> bool {
        matches!(self, Clock::Manual(_))
    }
}
