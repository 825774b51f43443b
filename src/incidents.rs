//! Server problems as operators want them in the log: one line when a
//! problem starts, at most one summary per `log_repeat_interval` while it
//! lasts (with the number of requests it affected), and one line when it
//! ends, instead of one line per affected request.
//!
//! A problem is keyed by its subject (a server address, or a pool name for
//! requests refused there) and what happened. It ends at the subject's
//! next success ([`Incidents::resolve`], called on every checkout: one
//! relaxed load while nothing is open).

use std::collections::HashMap;
use std::fmt::Display;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The open problems.
#[derive(Default)]
pub struct Incidents {
    /// How many are open: the fast path of `resolve`.
    open: AtomicUsize,
    map: Mutex<HashMap<(String, &'static str), Incident>>,
}

struct Incident {
    /// Ended by the subject's next success (an outage), or only
    /// summarized (events such as failed resets, among successes).
    outage: bool,
    started: Instant,
    /// Requests affected since the start, and since the last line.
    total: u64,
    unlogged: u64,
    last_line: Instant,
}

/// What `report` did, for tests.
#[derive(Debug, PartialEq, Eq)]
pub enum Logged {
    Started,
    Summary(u64),
    Quiet,
}

impl Incidents {
    /// One request affected by an outage (`what` on `subject`), which ends
    /// at the subject's next success; `error` is the cause as a request
    /// saw it.
    pub fn report(
        &self,
        subject: &dyn Display,
        what: &'static str,
        error: &dyn Display,
        repeat: Duration,
    ) -> Logged {
        self.note(subject, what, error, repeat, true)
    }

    /// One occurrence of a problem that successes do not end (a reset
    /// that failed, a statement that could not be recreated): logged the
    /// first time, then summarized at most once per `repeat`.
    pub fn event(
        &self,
        subject: &dyn Display,
        what: &'static str,
        error: &dyn Display,
        repeat: Duration,
    ) -> Logged {
        self.note(subject, what, error, repeat, false)
    }

    fn note(
        &self,
        subject: &dyn Display,
        what: &'static str,
        error: &dyn Display,
        repeat: Duration,
        outage: bool,
    ) -> Logged {
        let now = Instant::now();
        let key = (subject.to_string(), what);
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let Some(i) = map.get_mut(&key) else {
            tracing::warn!(server = %key.0, %error, "{what}");
            map.insert(
                key,
                Incident {
                    outage,
                    started: now,
                    total: 1,
                    unlogged: 0,
                    last_line: now,
                },
            );
            if outage {
                self.open.fetch_add(1, Ordering::Relaxed);
            }
            return Logged::Started;
        };
        i.total += 1;
        i.unlogged += 1;
        if now.duration_since(i.last_line) < repeat {
            return Logged::Quiet;
        }
        let (n, secs) = (i.unlogged, now.duration_since(i.last_line).as_secs());
        (i.unlogged, i.last_line) = (0, now);
        tracing::warn!(server = %key.0, %error, requests = n, total = i.total, "{what}: still happening, {n} requests affected in the last {secs}s");
        Logged::Summary(n)
    }

    /// `subject` works again: its open problems end, each with a line.
    pub fn resolve(&self, subject: &dyn Display) -> usize {
        if self.open.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        let subject = subject.to_string();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let before = map.len();
        map.retain(|(s, what), i| {
            if *s != subject || !i.outage {
                return true;
            }
            let secs = i.started.elapsed().as_secs_f64();
            tracing::info!(server = %s, requests = i.total, seconds = secs, "{what}: over after {secs:.1}s, {} requests affected", i.total);
            false
        });
        let ended = before - map.len();
        self.open.fetch_sub(ended, Ordering::Relaxed);
        ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_at_start_summaries_then_end() {
        let inc = Incidents::default();
        let minute = Duration::from_secs(60);
        let r = |i: &Incidents, d| i.report(&"10.0.0.6:5432", "replica unavailable", &"refused", d);
        assert_eq!(r(&inc, minute), Logged::Started);
        for _ in 0..100 {
            assert_eq!(r(&inc, minute), Logged::Quiet);
        }
        // Another problem of the same server is its own.
        let other = inc.report(&"10.0.0.6:5432", "reset failed", &"x", minute);
        assert_eq!(other, Logged::Started);
        // Past the interval: a summary with the count since the last line.
        assert_eq!(r(&inc, Duration::ZERO), Logged::Summary(101));
        assert_eq!(inc.resolve(&"10.0.0.7:5432"), 0);
        assert_eq!(inc.resolve(&"10.0.0.6:5432"), 2);
        assert_eq!(inc.resolve(&"10.0.0.6:5432"), 0);
        assert_eq!(r(&inc, minute), Logged::Started, "a new outage starts anew");
        // Events are summarized, never ended by a success.
        let e = |i: &Incidents| i.event(&"10.0.0.8:5432", "reset failed", &"x", minute);
        assert_eq!(e(&inc), Logged::Started);
        assert_eq!(e(&inc), Logged::Quiet);
        assert_eq!(inc.resolve(&"10.0.0.8:5432"), 0);
        assert_eq!(e(&inc), Logged::Quiet);
    }
}
