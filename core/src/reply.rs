//! A one-shot reply slot that works for blocking and async callers alike.
//!
//! The fast path is lock-free: the sender publishes its value with one compare-and-swap
//! on a state word and the receiver, spinning on that word, takes it with another. Only
//! a receiver that is about to sleep (a blocking caller after a short spin, or an async
//! task) takes the mutex, and only then does the sender take it to wake it. An actor
//! round trip usually completes within a microsecond; parking at once would cost several
//! more. The sender learns whether the receiver is still there, so the actor can undo a
//! grant that nobody will ever see.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::SeqCst;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use smallvec::SmallVec;

use self::sync::{Arc, AtomicBool, AtomicU8, Condvar, Mutex, MutexGuard, UnsafeCell};

// The path is spelled out: core/loom includes this file by its path, and a file included
// so looks for its modules beside itself, not in `reply/`.
#[cfg(all(test, loom))]
#[path = "reply/loom_tests.rs"]
mod loom_tests;

/// The primitives this file synchronises with: std's, or loom's when its tests are built
/// with `--cfg loom` (`core/loom.sh`, which builds this file on its own, in the crate
/// `core/loom`), so that loom can run the code below through every interleaving.
mod sync {
    #[cfg(all(test, loom))]
    pub(super) use loom::{
        cell::UnsafeCell,
        sync::atomic::{AtomicBool, AtomicU8},
        sync::{Arc, Condvar, Mutex, MutexGuard},
    };
    #[cfg(not(all(test, loom)))]
    pub(super) use std::sync::{
        atomic::{AtomicBool, AtomicU8},
        Arc, Condvar, Mutex, MutexGuard,
    };

    /// `std::cell::UnsafeCell` with loom's API, which checks each access against the
    /// others; here it compiles to the bare pointer.
    #[cfg(not(all(test, loom)))]
    pub(super) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

    #[cfg(not(all(test, loom)))]
    impl<T> UnsafeCell<T> {
        pub(super) const fn new(value: T) -> Self {
            Self(std::cell::UnsafeCell::new(value))
        }

        #[inline(always)]
        pub(super) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            f(self.0.get())
        }
    }

    /// Orders a `SeqCst` store before the `SeqCst` load after it, for loom only. Both
    /// sides of the sleep handshake (`Shared::finish`, `Receiver::announce`) store, then
    /// load what the other stored; `SeqCst` accesses already forbid both loads missing
    /// both stores, but loom models them as acquire/release only, which allows it, and
    /// would report a lost wake-up that cannot happen. Its `SeqCst` fence is modelled in
    /// full and restores the guarantee; the real build needs, and gets, no fence.
    #[inline(always)]
    pub(super) fn store_load_fence() {
        #[cfg(all(test, loom))]
        loom::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    }
}

/// Polls of pure spinning before a spinner starts to yield its core.
#[cfg(not(all(test, loom)))]
const SPIN_POLLS: u32 = 2048;

/// No value yet; the sender is alive.
const EMPTY: u8 = 0;
/// A value waits in `value`.
const FULL: u8 = 1;
/// No value will come any more: it was taken, or the sender dropped without sending.
const DONE: u8 = 2;
/// The receiver is gone; a later send hands its value back.
const GONE: u8 = 3;

struct Shared<T> {
    state: AtomicU8,
    /// Written by the sender before `EMPTY → FULL`, read by the one receiver call that
    /// wins `FULL → DONE`: never touched by two threads at once.
    value: UnsafeCell<Option<T>>,
    /// A receiver stored a waker or may sleep on `cond`: the sender must look in `sleep`.
    sleeping: AtomicBool,
    sleep: Mutex<Sleep>,
    cond: Condvar,
}

// SAFETY: `value` is handed from one thread to another through `state` (see above); every
// other field is thread-safe.
unsafe impl<T: Send> Send for Shared<T> {}
unsafe impl<T: Send> Sync for Shared<T> {}

#[cfg(not(all(test, loom)))]
std::thread_local! {
    /// Wakers held back on a thread that batches its wake-ups (the actor's).
    static DEFERRED: RefCell<Option<VecDeque<Waker>>> = const { RefCell::new(None) };
}

// Loom's thread-locals are per modelled thread; its macro takes no `const` initialiser.
#[cfg(all(test, loom))]
loom::thread_local! {
    static DEFERRED: RefCell<Option<VecDeque<Waker>>> = RefCell::new(None);
}

/// With `true`, async receivers woken by this thread are from now on woken only at
/// [`flush_wakes`]: a burst of replies then costs a scheduler one wake-up, not one each.
/// With `false`, wakes those held back and stops deferring.
pub(crate) fn defer_wakes(on: bool) {
    flush_wakes();
    DEFERRED.with(|d| *d.borrow_mut() = on.then(VecDeque::new));
}

/// Wakes every receiver held back by [`defer_wakes`], in order. One at a time: if a
/// waker panics, the rest stay held for the next flush (the actor's `Drop` does one).
pub(crate) fn flush_wakes() {
    while let Some(w) = DEFERRED.with(|d| d.borrow_mut().as_mut().and_then(VecDeque::pop_front)) {
        w.wake();
    }
}

/// Wakes `w` now, or at the next [`flush_wakes`] on a thread that defers.
fn wake(w: Waker) {
    let w = DEFERRED.with(|d| match d.borrow_mut().as_mut() {
        Some(held) => {
            held.push_back(w);
            None
        }
        None => Some(w),
    });
    if let Some(w) = w {
        w.wake();
    }
}

/// Who waits for the outcome: several threads may wait on one ticket at once.
#[derive(Default)]
struct Sleep {
    /// Blocking receivers asleep on `cond`.
    parked: usize,
    /// Async receivers, one waker per task (inline for the usual one).
    wakers: SmallVec<[Waker; 1]>,
}

pub(crate) struct Sender<T>(Option<Arc<Shared<T>>>);

/// The receiving end; a blocking wait first polls for `spin` (its link's choice: a reply
/// that usually comes within that time then costs no sleep and no wake-up).
pub(crate) struct Receiver<T> {
    shared: Arc<Shared<T>>,
    spin: Duration,
}

/// The sender was dropped without sending, or the value was already taken.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Closed;

pub(crate) fn channel<T>(spin: Duration) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: AtomicU8::new(EMPTY),
        value: UnsafeCell::new(None),
        sleeping: AtomicBool::new(false),
        sleep: Mutex::new(Sleep::default()),
        cond: Condvar::new(),
    });
    (Sender(Some(shared.clone())), Receiver { shared, spin })
}

/// Polls `ready` for up to `limit`: a few microseconds of pure spinning, then yielding
/// the core between polls so a runnable peer (the actor, on a busy machine) can use it.
/// True if `ready` came true.
#[cfg(not(all(test, loom)))]
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

/// Loom's `spin_until`: loom cannot model time, so it polls, lets the other threads run,
/// and polls once more.
#[cfg(all(test, loom))]
pub(crate) fn spin_until(_limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    ready() || {
        loom::thread::yield_now();
        ready()
    }
}

fn lock<T>(shared: &Shared<T>) -> MutexGuard<'_, Sleep> {
    // A poisoned lock still guards consistent data: every write is a single assignment.
    shared.sleep.lock().unwrap_or_else(|e| e.into_inner())
}

impl<T> Shared<T> {
    /// Moves the state from `EMPTY` to `to` and wakes a sleeping receiver; false if the
    /// receiver is gone. (SeqCst here and in `Receiver::sleep`: each side stores, then
    /// loads what the other stores, so at least one of them sees the other.)
    fn finish(&self, to: u8) -> bool {
        if self
            .state
            .compare_exchange(EMPTY, to, SeqCst, SeqCst)
            .is_err()
        {
            return false;
        }
        sync::store_load_fence();
        if self.sleeping.load(SeqCst) {
            let mut sleep = lock(self);
            let wakers = std::mem::take(&mut sleep.wakers);
            let parked = sleep.parked > 0;
            drop(sleep);
            if parked {
                self.cond.notify_all();
            }
            wakers.into_iter().for_each(wake);
        }
        true
    }
}

impl<T> Sender<T> {
    /// Delivers `value`, or hands it back if the receiver is gone.
    pub(crate) fn send(mut self, value: T) -> Result<(), T> {
        let Some(shared) = self.0.take() else {
            return Err(value);
        };
        // SAFETY: `v` points into the slot, which `shared` keeps alive; the state is still
        // `EMPTY` or `GONE`, so no receiver reads `value`.
        shared.value.with_mut(|v| unsafe { *v = Some(value) });
        if shared.finish(FULL) {
            return Ok(());
        }
        // SAFETY: as above; the state is `GONE` for good: nobody else will touch `value`.
        match shared.value.with_mut(|v| unsafe { (*v).take() }) {
            Some(value) => Err(value),
            None => Ok(()),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if let Some(shared) = self.0.take() {
            shared.finish(DONE);
        }
    }
}

impl<T> Receiver<T> {
    /// The outcome, if there is one: the value (taken out), or `Closed`.
    pub(crate) fn try_take(&self) -> Option<Result<T, Closed>> {
        let shared = &self.shared;
        match shared.state.load(SeqCst) {
            EMPTY => None,
            FULL if shared
                .state
                .compare_exchange(FULL, DONE, SeqCst, SeqCst)
                .is_ok() =>
            {
                // SAFETY: `v` points into the slot, which `self` keeps alive; this call
                // won `FULL → DONE`: the sender is done with `value` and no other receiver
                // call will read it.
                shared.value.with_mut(|v| unsafe { (*v).take() }).map(Ok)
            }
            _ => Some(Err(Closed)),
        }
    }

    /// No value is wanted any more: one already sent is returned, and a later send hands
    /// its value back to its sender (as after the receiver's drop). Receivers asleep on
    /// the slot wake and find it closed.
    pub(crate) fn close(&self) -> Option<Result<T, Closed>> {
        match self.shared.finish(GONE) {
            true => None,
            false => self.try_take(),
        }
    }

    /// Tells the sender to look for sleepers, then looks once more for the outcome. The
    /// caller holds the lock and registers itself in it before it sleeps: a sender that
    /// publishes after this look takes the lock, so it finds the registration.
    fn announce(&self) -> Option<Result<T, Closed>> {
        self.shared.sleeping.store(true, SeqCst);
        sync::store_load_fence();
        self.try_take()
    }

    /// Waits for the value; `Ok(None)` if `timeout` passed first.
    pub(crate) fn recv_timeout(&self, timeout: Option<Duration>) -> Result<Option<T>, Closed> {
        let start = Instant::now();
        let spin = timeout.map_or(self.spin, |t| t.min(self.spin));
        if !spin.is_zero() {
            spin_until(spin, || self.shared.state.load(SeqCst) != EMPTY);
        }
        // The usual case: the value came while spinning, and no lock is needed.
        if let Some(r) = self.try_take() {
            return r.map(Some);
        }
        // A deadline beyond what `Instant` can hold is no deadline.
        let deadline = timeout.and_then(|t| start.checked_add(t));
        let mut sleep = lock(&self.shared);
        loop {
            if let Some(r) = self.announce() {
                return r.map(Some);
            }
            sleep.parked += 1;
            sleep = match deadline {
                None => self
                    .shared
                    .cond
                    .wait(sleep)
                    .unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        sleep.parked -= 1;
                        return Ok(None);
                    }
                    self.shared
                        .cond
                        .wait_timeout(sleep, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
            sleep.parked -= 1;
        }
    }

    pub(crate) fn recv(&self) -> Result<T, Closed> {
        self.recv_timeout(None)?.ok_or(Closed)
    }

    pub(crate) fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Result<T, Closed>> {
        if let Some(r) = self.try_take() {
            return Poll::Ready(r);
        }
        let mut sleep = lock(&self.shared);
        if !sleep.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            sleep.wakers.push(cx.waker().clone());
        }
        match self.announce() {
            Some(r) => Poll::Ready(r),
            None => Poll::Pending,
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
        // A value already sent stays in the slot and is dropped with it.
        let _ = self
            .shared
            .state
            .compare_exchange(EMPTY, GONE, SeqCst, SeqCst);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const SPIN: Duration = Duration::from_micros(50);

    #[test]
    fn value_arrives_across_threads() {
        let (tx, rx) = channel(SPIN);
        std::thread::spawn(move || tx.send(7).map_err(|_| ()).unwrap());
        assert_eq!(rx.recv(), Ok(7));
        assert_eq!(rx.recv(), Err(Closed));
    }

    #[test]
    fn dropped_sender_closes_and_dropped_receiver_refuses() {
        let (tx, rx) = channel::<u8>(SPIN);
        drop(tx);
        assert_eq!(rx.recv(), Err(Closed));
        let (tx, rx) = channel::<u8>(SPIN);
        drop(rx);
        assert_eq!(tx.send(3), Err(3));
    }

    #[test]
    fn timeout_returns_none_and_keeps_waiting_possible() {
        let (tx, rx) = channel::<u8>(SPIN);
        assert_eq!(rx.recv_timeout(Some(Duration::from_millis(5))), Ok(None));
        tx.send(1).unwrap();
        assert_eq!(rx.recv_timeout(Some(Duration::from_millis(5))), Ok(Some(1)));
    }

    /// Whichever side comes first, every value is delivered, handed back to its sender,
    /// or (the receiver dropped after a look) dropped with the slot; `close` returns it
    /// or has it handed back, and leaves none in the slot.
    #[test]
    fn racing_send_and_receiver_end_lose_nothing() {
        let values = Arc::new(());
        for round in 0..3000 {
            let (tx, rx) = channel::<Arc<()>>(SPIN);
            let v = values.clone();
            let sender = std::thread::spawn(move || tx.send(v).err());
            let closing = round % 3 == 2;
            let got = match round % 3 {
                0 => rx.recv().ok(),
                1 => None,
                _ => rx.close().and_then(Result::ok),
            };
            drop(rx);
            let handed_back = sender.join().unwrap();
            match closing {
                true => assert!(got.is_some() != handed_back.is_some()),
                false => assert!(got.is_none() || handed_back.is_none()),
            }
            drop((got, handed_back));
            // None is left anywhere.
            assert_eq!(Arc::strong_count(&values), 1);
        }
    }

    #[test]
    fn closing_wakes_a_parked_receiver() {
        let (_tx, rx) = channel::<u8>(SPIN);
        let rx = Arc::new(rx);
        let (told, woke) = std::sync::mpsc::channel();
        {
            let rx = rx.clone();
            std::thread::spawn(move || told.send(rx.recv()));
        }
        // Close once the other one sleeps (it has no deadline of its own).
        while !rx.shared.sleeping.load(SeqCst) {
            std::thread::yield_now();
        }
        assert!(rx.close().is_none());
        assert_eq!(woke.recv_timeout(Duration::from_secs(20)), Ok(Err(Closed)));
    }

    #[test]
    fn a_parked_receiver_is_woken() {
        for _ in 0..200 {
            let (tx, rx) = channel(SPIN);
            let t = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_micros(60));
                tx.send(5).map_err(|_| ()).unwrap();
            });
            assert_eq!(rx.recv_timeout(Some(Duration::from_secs(10))), Ok(Some(5)));
            t.join().unwrap();
        }
    }

    #[test]
    fn a_timeout_too_large_for_an_instant_waits() {
        let (tx, rx) = channel(SPIN);
        tx.send(2).unwrap();
        assert_eq!(rx.recv_timeout(Some(Duration::MAX)), Ok(Some(2)));
    }

    /// One waiter timing out must not stop a grant from waking another on the same slot.
    #[test]
    fn every_blocking_waiter_is_woken_when_one_times_out() {
        let (tx, rx) = channel(SPIN);
        let rx = Arc::new(rx);
        let (told, patient) = std::sync::mpsc::channel();
        {
            let rx = rx.clone();
            std::thread::spawn(move || told.send(rx.recv()));
        }
        // The impatient one parks too, and gives up first.
        assert_eq!(rx.recv_timeout(Some(Duration::from_millis(100))), Ok(None));
        tx.send(9).unwrap();
        // Only a wake-up ends the patient wait (it has no deadline of its own).
        assert_eq!(patient.recv_timeout(Duration::from_secs(20)), Ok(Ok(9)));
    }

    struct Count(std::sync::atomic::AtomicUsize);
    impl std::task::Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, SeqCst);
        }
    }

    #[test]
    fn every_async_waiter_is_woken() {
        let (tx, rx) = channel::<u8>(SPIN);
        let counts: Vec<Arc<Count>> = (0..2)
            .map(|_| Arc::new(Count(std::sync::atomic::AtomicUsize::new(0))))
            .collect();
        for c in &counts {
            let waker = Waker::from(c.clone());
            assert!(rx.poll_recv(&mut Context::from_waker(&waker)).is_pending());
        }
        tx.send(1).unwrap();
        for c in &counts {
            assert_eq!(c.0.load(SeqCst), 1);
        }
    }

    #[tokio::test]
    async fn awaits() {
        let (tx, rx) = channel(SPIN);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(10));
            let _ = tx.send("hi");
        });
        assert_eq!(rx.await, Ok("hi"));
    }
}
