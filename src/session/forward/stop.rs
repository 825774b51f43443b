//! A shutdown signal watched from the session's one wait (see
//! `Forwarder::pump`) at the price of an atomic load per wake-up.
//!
//! Polling a `CancellationToken`'s future takes the token's waiter lock
//! every time. Once it has been polled with this task's waker it stays
//! registered, so later wake-ups only need to look at the token; it is
//! polled again only when the waker changes.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Waker};

use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

pub(super) struct Stop<'a, 'w> {
    token: &'a CancellationToken,
    wait: Pin<&'w mut WaitForCancellationFuture<'a>>,
    /// The waker the wait is registered with, once polled.
    waker: Option<Waker>,
}

impl<'a, 'w> Stop<'a, 'w> {
    /// `wait` is `token.cancelled()`, pinned by the caller.
    pub(super) fn new(
        token: &'a CancellationToken,
        wait: Pin<&'w mut WaitForCancellationFuture<'a>>,
    ) -> Self {
        Stop {
            token,
            wait,
            waker: None,
        }
    }

    /// Whether the token is cancelled; registers `cx`'s waker first if it
    /// is not the one registered.
    pub(super) fn poll(&mut self, cx: &mut Context<'_>) -> bool {
        match &self.waker {
            Some(w) if w.will_wake(cx.waker()) => self.token.is_cancelled(),
            _ => {
                self.waker = Some(cx.waker().clone());
                self.wait.as_mut().poll(cx).is_ready()
            }
        }
    }
}
