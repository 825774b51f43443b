//! PAUSE and RESUME: while a database (or everything) is paused, requests
//! that need a server connection wait instead of taking one; transactions
//! already running finish. The admin console's PAUSE returns once the
//! paused pools have no connection lent out.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

/// What is paused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Paused {
    pub all: bool,
    pub databases: BTreeSet<String>,
}

impl Paused {
    pub fn covers(&self, database: &str) -> bool {
        self.all || self.databases.contains(database)
    }
}

pub struct PauseControl {
    state: watch::Sender<Paused>,
    /// Fast path: nothing is paused (one relaxed load per transaction).
    any: AtomicBool,
}

impl Default for PauseControl {
    fn default() -> Self {
        PauseControl {
            state: watch::Sender::new(Paused::default()),
            any: AtomicBool::new(false),
        }
    }
}

impl PauseControl {
    /// Pauses `database`, or everything with `None`.
    pub fn pause(&self, database: Option<&str>) {
        self.state.send_modify(|p| match database {
            Some(db) => {
                p.databases.insert(db.to_owned());
            }
            None => p.all = true,
        });
        self.any.store(true, Ordering::Release);
    }

    /// Resumes `database`, or everything (every database) with `None`.
    pub fn resume(&self, database: Option<&str>) {
        self.state.send_modify(|p| match database {
            Some(db) => {
                p.databases.remove(db);
            }
            None => *p = Paused::default(),
        });
        let state = self.state.borrow();
        self.any
            .store(state.all || !state.databases.is_empty(), Ordering::Release);
    }

    pub fn is_paused(&self, database: &str) -> bool {
        self.any.load(Ordering::Acquire) && self.state.borrow().covers(database)
    }

    pub fn current(&self) -> Paused {
        self.state.borrow().clone()
    }

    /// Resolves once `database` is not paused.
    pub async fn wait(&self, database: &str) {
        let mut rx = self.state.subscribe();
        let _ = rx.wait_for(|p| !p.covers(database)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pause_and_resume() {
        let p = PauseControl::default();
        assert!(!p.is_paused("app"));
        p.pause(Some("app"));
        assert!(p.is_paused("app") && !p.is_paused("other"));
        p.pause(None);
        assert!(p.is_paused("other"));
        p.resume(Some("app"));
        assert!(p.is_paused("app"), "still paused as a whole");
        p.resume(None);
        assert!(!p.is_paused("app") && !p.is_paused("other"));
    }
}
