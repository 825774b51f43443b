//! The shutdown signals, watched from the session's one wait (see
//! `Forwarder::pump`) at the price of one atomic load per wake-up.
//!
//! Polling a `CancellationToken`'s future, or asking the token, takes the
//! token's lock, one lock for every session. Once polled with this task's
//! waker the futures stay registered, so that a shutdown wakes the
//! session; what it finds then is `Shared::stopping`, set before the tokens
//! are cancelled. The futures are polled again only when the waker
//! changes.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Waker};

use tokio_util::sync::WaitForCancellationFuture;

use crate::shared::Shared;
pub(super) use crate::shared::Stopping;

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
        if !this.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *this.waker = Some(cx.waker().clone());
            // Registered with this waker; their readiness is read below.
            let _ = this.hard.poll(cx);
            let _ = this.graceful.poll(cx);
        }
        shared.stopping()
    }
}
