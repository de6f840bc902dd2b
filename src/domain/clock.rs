//! The time follow-ups are judged by: the system's, or one a test sets and moves, so a wait of
//! days is tested in a moment without sleeping.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;

#[derive(Debug, Clone, Default)]
pub enum Clock {
    #[default]
    System,
    /// Stands where it is set until moved.
    Manual(Arc<Mutex<OffsetDateTime>>),
}

impl Clock {
    pub fn manual(at: OffsetDateTime) -> Self {
        Self::Manual(Arc::new(Mutex::new(at)))
    }

    pub fn now(&self) -> OffsetDateTime {
        match self {
            Self::System => OffsetDateTime::now_utc(),
            Self::Manual(at) => at.lock().map_or_else(|poisoned| *poisoned.into_inner(), |at| *at),
        }
    }

    /// Moves a manual clock on by `by` (the system's moves by itself).
    pub fn advance(&self, by: Duration) {
        if let Self::Manual(at) = self
            && let Ok(mut at) = at.lock()
        {
            *at += by;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_stands_still_until_moved_and_its_copies_move_with_it() {
        let start = OffsetDateTime::from_unix_timestamp(1_764_064_800).expect("time");
        let clock = Clock::manual(start);
        let copy = clock.clone();
        assert_eq!(clock.now(), start);
        copy.advance(Duration::from_secs(24 * 3600));
        assert_eq!(clock.now(), start + Duration::from_secs(24 * 3600));
        assert!(Clock::System.now() > start);
    }
}
