//! The shutdown signals, watched from the session's one wait (see
//! `Forwarder::pump`) at the price of one atomic load per wake-up.
//!
//! What a session acts on is `Shared::stopping`, one atomic. To be woken
//! when it changes, the session holds one `Notified` of
//! `Shared::stop_changed`, which `stop` and `stop_now` notify after setting
//! the atomic (a `CancellationToken` per kind of shutdown would cost two
//! futures in every session's state, and asking a token takes its lock,
//! one lock for every session). Once polled with this task's waker the
//! future stays registered; it is polled again only when the waker changes,
//! and made anew after each change it announced.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Waker};

use tokio::sync::futures::Notified;

use crate::shared::Shared;
pub(super) use crate::shared::Stopping;

pin_project_lite::pin_project! {
    /// `shared.stop_changed.notified()`, the waker it was polled with, and
    /// the shutdown state when it was made.
    pub(super) struct Stops<'a> {
        #[pin]
        changed: Notified<'a>,
        waker: Option<Waker>,
        seen: Stopping,
    }
}

impl<'a> Stops<'a> {
    pub(super) fn new(shared: &'a Shared) -> Self {
        Stops {
            seen: shared.stopping(),
            changed: shared.stop_changed.notified(),
            waker: None,
        }
    }

    /// Which shutdown has begun; registers `cx`'s waker first if it is not
    /// the one registered.
    pub(super) fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>, shared: &'a Shared) -> Stopping {
        let mut this = self.project();
        let now = shared.stopping();
        if now != *this.seen {
            // The change it announced (or one since): wait for the next.
            *this.seen = now;
            this.changed.set(shared.stop_changed.notified());
            *this.waker = None;
        }
        if !this.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *this.waker = Some(cx.waker().clone());
            // Registered with this waker; a change since it was made is
            // read below.
            let _ = this.changed.as_mut().poll(cx);
        }
        // Read after registering: a change made before is seen here, one
        // made after wakes the task.
        shared.stopping()
    }
}
