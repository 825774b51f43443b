//! The shutdown signals, watched from the session's one wait (see
//! `Forwarder::pump`) at the price of two atomic loads per wake-up.
//!
//! Polling a `CancellationToken`'s future takes the token's waiter lock
//! every time. Once polled with this task's waker it stays registered, so
//! later wake-ups only need to look at the tokens; the futures are polled
//! again only when the waker changes.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Waker};

use tokio_util::sync::WaitForCancellationFuture;

use crate::shared::Shared;

/// Which shutdown has begun.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stopping {
    No,
    /// A drain: idle clients are closed.
    Graceful,
    /// Everyone is closed.
    Hard,
}

pin_project_lite::pin_project! {
    /// `shared.shutdown.cancelled()` and `shared.hard_shutdown.cancelled()`,
    /// and the waker both are registered with once polled.
    pub(super) struct Stops<'a> {
        #[pin]
        graceful: WaitForCancellationFuture<'a>,
        #[pin]
        hard: WaitForCancellationFuture<'a>,
        waker: Option<Waker>,
    }
}

impl<'a> Stops<'a> {
    pub(super) fn new(shared: &'a Shared) -> Self {
        Stops {
            graceful: shared.shutdown.cancelled(),
            hard: shared.hard_shutdown.cancelled(),
            waker: None,
        }
    }

    /// Which shutdown has begun; registers `cx`'s waker first if it is not
    /// the one registered.
    pub(super) fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>, shared: &Shared) -> Stopping {
        let this = self.project();
        let (hard, graceful) = match &this.waker {
            Some(w) if w.will_wake(cx.waker()) => (
                shared.hard_shutdown.is_cancelled(),
                shared.shutdown.is_cancelled(),
            ),
            _ => {
                *this.waker = Some(cx.waker().clone());
                (
                    this.hard.poll(cx).is_ready(),
                    this.graceful.poll(cx).is_ready(),
                )
            }
        };
        match (hard, graceful) {
            (true, _) => Stopping::Hard,
            (false, true) => Stopping::Graceful,
            (false, false) => Stopping::No,
        }
    }
}
