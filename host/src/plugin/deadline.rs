//! The wall-clock deadline of one hook call, without a timer per call.
//!
//! Guest code that spins is stopped by the store's epoch deadline (a trap,
//! see `Factory::arm`). A call can only outlive its deadline otherwise while
//! it waits in a host import (a `kv` store, outgoing HTTP, a WASI poll), and
//! then its future is pending. So [`Within`] polls the call first and arms a
//! tokio timer only the first time the call is pending: a call that completes
//! in one poll (every hook that only reads and edits its `llm` resources and
//! the request context) costs no timer, no clock read and no allocation,
//! while a call that waits is cut at the same absolute deadline a
//! `tokio::time::timeout` would have cut it at.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

/// `fut` (pinned by the caller, so it is never moved), cut at `deadline`:
/// `None` when the deadline passed while it was pending.
pub(crate) struct Within<'f, F> {
    fut: Pin<&'f mut F>,
    deadline: Instant,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<'f, F: Future> Within<'f, F> {
    pub(crate) fn new(fut: Pin<&'f mut F>, deadline: Instant) -> Self {
        Within { fut, deadline, sleep: None }
    }
}

impl<F: Future> Future for Within<'_, F> {
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let Poll::Ready(v) = this.fut.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        let deadline = this.deadline;
        let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline.into())));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_ready_call_needs_no_timer_and_a_waiting_one_is_cut() {
        let mut ready = std::pin::pin!(async { 7 });
        let mut w = Within::new(ready.as_mut(), Instant::now());
        assert_eq!((&mut w).await, Some(7), "a call that completes at once passes even past its deadline");
        assert!(w.sleep.is_none(), "no timer was armed");

        let started = Instant::now();
        let mut waits = std::pin::pin!(tokio::time::sleep(Duration::from_secs(5)));
        let cut = Within::new(waits.as_mut(), started + Duration::from_millis(30)).await;
        assert!(cut.is_none());
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(30) && took < Duration::from_secs(2), "{took:?}");

        let mut quick = std::pin::pin!(async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            1
        });
        assert_eq!(Within::new(quick.as_mut(), Instant::now() + Duration::from_secs(5)).await, Some(1));
    }
}
