//! A one-shot reply slot that works for blocking and async callers alike.
//!
//! The blocking side spins briefly before it parks: an actor round trip usually
//! completes within a microsecond, and parking at once would cost several more. The
//! sender learns whether the receiver is still there, so the actor can undo a grant
//! that nobody will ever see.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Polls of pure spinning before a spinner starts to yield its core.
const SPIN_POLLS: u32 = 2048;

/// How long a blocking receiver polls for its reply before it parks.
const SPIN: Duration = Duration::from_micros(50);

struct Shared<T> {
    slot: Mutex<Slot<T>>,
    cond: Condvar,
    /// Set once a value was sent or the sender dropped: lets the receiver spin
    /// without taking the lock.
    ready: AtomicBool,
}

struct Slot<T> {
    value: Option<T>,
    /// No value will come any more (sent, or the sender dropped).
    done: bool,
    receiver_gone: bool,
    /// The receiver sleeps on `cond`: only then is a (syscall-costly) notify needed.
    parked: bool,
    waker: Option<Waker>,
}

pub(crate) struct Sender<T>(Option<Arc<Shared<T>>>);
pub(crate) struct Receiver<T>(Arc<Shared<T>>);

/// The sender was dropped without sending, or the value was already taken.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Closed;

pub(crate) fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        slot: Mutex::new(Slot {
            value: None,
            done: false,
            receiver_gone: false,
            parked: false,
            waker: None,
        }),
        cond: Condvar::new(),
        ready: AtomicBool::new(false),
    });
    (Sender(Some(shared.clone())), Receiver(shared))
}

/// Polls `ready` for up to `limit`: a few microseconds of pure spinning, then yielding
/// the core between polls so a runnable peer (the actor, on a busy machine) can use it.
/// True if `ready` came true.
pub(crate) fn spin_until(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    let mut polls = 0u32;
    loop {
        if ready() {
            return true;
        }
        polls += 1;
        // Reading the clock costs more than a poll: look at it every 16th.
        if polls % 16 == 0 && start.elapsed() >= limit {
            return false;
        }
        match polls < SPIN_POLLS {
            true => std::hint::spin_loop(),
            false => std::thread::yield_now(),
        }
    }
}

fn lock<T>(shared: &Shared<T>) -> MutexGuard<'_, Slot<T>> {
    // A poisoned slot still holds consistent data: every write is a single assignment.
    shared.slot.lock().unwrap_or_else(|e| e.into_inner())
}

impl<T> Sender<T> {
    /// Delivers `value`, or hands it back if the receiver is gone.
    pub(crate) fn send(mut self, value: T) -> Result<(), T> {
        let Some(shared) = self.0.take() else {
            return Err(value);
        };
        finish(&shared, Some(value))
    }
}

fn finish<T>(shared: &Shared<T>, value: Option<T>) -> Result<(), T> {
    let mut slot = lock(shared);
    if slot.receiver_gone {
        return value.map_or(Ok(()), Err);
    }
    slot.value = value;
    slot.done = true;
    let waker = slot.waker.take();
    let parked = slot.parked;
    shared.ready.store(true, Ordering::Release);
    drop(slot);
    if parked {
        shared.cond.notify_all();
    }
    if let Some(w) = waker {
        w.wake();
    }
    Ok(())
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if let Some(shared) = self.0.take() {
            let _ = finish(&shared, None);
        }
    }
}

impl<T> Receiver<T> {
    fn take(slot: &mut Slot<T>) -> Option<Result<T, Closed>> {
        match (slot.value.take(), slot.done) {
            (Some(v), _) => Some(Ok(v)),
            (None, true) => Some(Err(Closed)),
            (None, false) => None,
        }
    }

    /// Waits for the value; `Ok(None)` if `timeout` passed first.
    pub(crate) fn recv_timeout(&self, timeout: Option<Duration>) -> Result<Option<T>, Closed> {
        let start = Instant::now();
        spin_until(timeout.map_or(SPIN, |t| t.min(SPIN)), || {
            self.0.ready.load(Ordering::Acquire)
        });
        let deadline = timeout.map(|t| start + t);
        let mut slot = lock(&self.0);
        loop {
            if let Some(r) = Self::take(&mut slot) {
                slot.parked = false;
                return r.map(Some);
            }
            slot.parked = true;
            slot = match deadline {
                None => self.0.cond.wait(slot).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        slot.parked = false;
                        return Ok(None);
                    }
                    self.0
                        .cond
                        .wait_timeout(slot, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }

    pub(crate) fn recv(&self) -> Result<T, Closed> {
        self.recv_timeout(None)?.ok_or(Closed)
    }

    pub(crate) fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Result<T, Closed>> {
        let mut slot = lock(&self.0);
        match Self::take(&mut slot) {
            Some(r) => Poll::Ready(r),
            None => {
                slot.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl<T> Future for Receiver<T> {
    type Output = Result<T, Closed>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.poll_recv(cx)
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        lock(&self.0).receiver_gone = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_arrives_across_threads() {
        let (tx, rx) = channel();
        std::thread::spawn(move || tx.send(7).map_err(|_| ()).unwrap());
        assert_eq!(rx.recv(), Ok(7));
        assert_eq!(rx.recv(), Err(Closed));
    }

    #[test]
    fn dropped_sender_closes_and_dropped_receiver_refuses() {
        let (tx, rx) = channel::<u8>();
        drop(tx);
        assert_eq!(rx.recv(), Err(Closed));
        let (tx, rx) = channel::<u8>();
        drop(rx);
        assert_eq!(tx.send(3), Err(3));
    }

    #[test]
    fn timeout_returns_none_and_keeps_waiting_possible() {
        let (tx, rx) = channel::<u8>();
        assert_eq!(rx.recv_timeout(Some(Duration::from_millis(5))), Ok(None));
        tx.send(1).unwrap();
        assert_eq!(rx.recv_timeout(Some(Duration::from_millis(5))), Ok(Some(1)));
    }

    #[tokio::test]
    async fn awaits() {
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(10));
            let _ = tx.send("hi");
        });
        assert_eq!(rx.await, Ok("hi"));
    }
}
