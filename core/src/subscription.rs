//! Live event streams. A link pushes into each subscriber's bounded queue and never waits
//! for it; a subscriber that falls behind loses its oldest events (as tokio's broadcast
//! does), and is told how many by a `lagged` marker at the place where they are missing,
//! so that it always gets the newest.

use std::collections::VecDeque;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::event::{Event, EventKind};
use crate::fork::Birth;
use crate::table::HashSet;

/// A function the dispatcher thread calls with each event of a callback subscription.
pub type EventCallback = Box<dyn FnMut(&Event) + Send>;

pub(crate) struct SubQueue {
    inner: Mutex<Inner>,
    cond: Condvar,
    filter: Option<HashSet<Arc<str>>>,
    capacity: usize,
    /// For callback subscriptions: a drain job is queued at the dispatcher.
    pub(crate) scheduled: AtomicBool,
    pub(crate) callback: Option<Mutex<EventCallback>>,
}

struct Inner {
    /// Events, oldest first, and the `lagged` markers of a replay.
    events: VecDeque<Arc<Event>>,
    /// Events dropped just before the front of `events`.
    missed: u64,
    /// A `lagged` marker without a count was among them: the marker in their place has
    /// none either.
    uncounted: bool,
    /// Replayed events still queued: they may exceed the capacity (the global ring bounds
    /// them, and a reconnecting client must get all that it still holds).
    replayed: usize,
    closed: bool,
    /// Readers asleep on `cond`: only then is a (syscall-costly) notify needed.
    sleepers: u32,
    waker: Option<Waker>,
}

impl SubQueue {
    pub(crate) fn new(
        filter: Option<HashSet<Arc<str>>>,
        capacity: usize,
        callback: Option<EventCallback>,
    ) -> Self {
        SubQueue {
            inner: Mutex::new(Inner {
                events: VecDeque::new(),
                missed: 0,
                uncounted: false,
                replayed: 0,
                closed: false,
                sleepers: 0,
                waker: None,
            }),
            cond: Condvar::new(),
            filter,
            capacity,
            scheduled: AtomicBool::new(false),
            callback: callback.map(Mutex::new),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Does this subscription want `ev`? A filtered one takes only its resources' events.
    pub(crate) fn wants(&self, ev: &Event) -> bool {
        match (&self.filter, &ev.resource) {
            (None, _) => true,
            (Some(f), Some(r)) => f.contains(r),
            (Some(_), None) => false,
        }
    }

    /// Queues `ev` without ever blocking; if the queue is full, its oldest event makes
    /// room and is counted as missed.
    pub(crate) fn push(&self, ev: Arc<Event>) {
        let mut q = self.lock();
        if q.closed {
            return;
        }
        while q.events.len() >= self.capacity + q.replayed {
            let Some(old) = q.events.pop_front() else {
                break;
            };
            q.replayed = q.replayed.saturating_sub(1);
            match (old.kind, old.position()) {
                (EventKind::Lagged, Some(n)) => q.missed += n,
                (EventKind::Lagged, None) => q.uncounted = true,
                _ => q.missed += 1,
            }
        }
        q.events.push_back(ev);
        let waker = q.waker.take();
        let sleepers = q.sleepers;
        drop(q);
        if sleepers > 0 {
            self.cond.notify_all();
        }
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Queues the events a subscription asked to replay, after a marker for those already
    /// gone (without a count if how many is unknown: `missed` is `None`).
    pub(crate) fn replay(&self, missed: Option<u64>, events: Vec<Arc<Event>>) {
        let mut q = self.lock();
        let before = q.events.len();
        if missed != Some(0) {
            q.events.push_back(Arc::new(Event::lagged(missed)));
        }
        q.events
            .extend(events.into_iter().filter(|e| self.wants(e)));
        q.replayed += q.events.len() - before;
    }

    fn pop(q: &mut Inner) -> Option<Arc<Event>> {
        if q.missed > 0 || q.uncounted {
            let missed = std::mem::take(&mut q.missed);
            let counted = !std::mem::take(&mut q.uncounted);
            return Some(Arc::new(Event::lagged(counted.then_some(missed))));
        }
        let ev = q.events.pop_front()?;
        q.replayed = q.replayed.saturating_sub(1);
        Some(ev)
    }

    pub(crate) fn try_pop(&self) -> Option<Arc<Event>> {
        Self::pop(&mut self.lock())
    }

    pub(crate) fn is_empty(&self) -> bool {
        let q = self.lock();
        q.events.is_empty() && q.missed == 0 && !q.uncounted
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Next event, waiting up to `timeout` (forever if `None`); `None` on timeout or once
    /// the subscription is closed and drained.
    pub(crate) fn pop_timeout(&self, timeout: Option<Duration>) -> Option<Arc<Event>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut q = self.lock();
        loop {
            if let Some(ev) = Self::pop(&mut q) {
                return Some(ev);
            }
            if q.closed {
                return None;
            }
            let left = match deadline {
                None => None,
                Some(d) => match d.saturating_duration_since(Instant::now()) {
                    left if left.is_zero() => return None,
                    left => Some(left),
                },
            };
            q.sleepers += 1;
            q = match left {
                None => self.cond.wait(q).unwrap_or_else(|e| e.into_inner()),
                Some(left) => {
                    self.cond
                        .wait_timeout(q, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
            q.sleepers -= 1;
        }
    }

    pub(crate) fn poll_pop(&self, cx: &mut Context<'_>) -> Poll<Option<Arc<Event>>> {
        let mut q = self.lock();
        if let Some(ev) = Self::pop(&mut q) {
            return Poll::Ready(Some(ev));
        }
        if q.closed {
            return Poll::Ready(None);
        }
        q.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    pub(crate) fn close(&self) {
        let mut q = self.lock();
        q.closed = true;
        let waker = q.waker.take();
        drop(q);
        self.cond.notify_all();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// A stream of events: an iterator (blocking) and, through [`Subscription::next_async`],
/// an async source. It ends when the engine closes or [`Subscription::close`] is called.
/// For a callback subscription, dropping or closing it stops the callbacks.
pub struct Subscription {
    pub(crate) queue: Arc<SubQueue>,
    pub(crate) head: u64,
    /// In a child forked after it began, the subscription has ended, and its queue is
    /// not touched: a thread the child does not have may have held its lock.
    pub(crate) birth: Birth,
}

impl Subscription {
    /// The seq of the newest event before the live stream began: a client that resumes
    /// from here (`since`) misses nothing.
    pub fn head(&self) -> u64 {
        self.head
    }

    /// The queue, unless this process was forked since the subscription began.
    fn queue(&self) -> Option<&SubQueue> {
        (!self.birth.forked()).then_some(&*self.queue)
    }

    /// Waits for the next event; `None` once the subscription has ended.
    pub fn recv(&self) -> Option<Arc<Event>> {
        self.queue()?.pop_timeout(None)
    }

    /// Waits up to `timeout`; `None` on timeout or end (see [`Subscription::is_closed`]).
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Arc<Event>> {
        self.queue()?.pop_timeout(Some(timeout))
    }

    /// The next event if one is ready.
    pub fn try_recv(&self) -> Option<Arc<Event>> {
        self.queue()?.try_pop()
    }

    /// The next event, awaited; `None` once the subscription has ended.
    pub async fn next_async(&self) -> Option<Arc<Event>> {
        let queue = self.queue()?;
        std::future::poll_fn(|cx| queue.poll_pop(cx)).await
    }

    /// True once closed (by `close`, the engine closing, or a fork); events still queued
    /// can be read.
    pub fn is_closed(&self) -> bool {
        self.queue().is_none_or(SubQueue::is_closed)
    }

    /// Stops the stream; the engine forgets it at its next event.
    pub fn close(&self) {
        if let Some(q) = self.queue() {
            q.close();
        }
    }
}

impl Iterator for Subscription {
    type Item = Arc<Event>;
    fn next(&mut self) -> Option<Arc<Event>> {
        self.recv()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.close();
    }
}

/// The resource filter of a subscription.
pub(crate) fn filter_of(resources: Option<&[String]>) -> Option<HashSet<Arc<str>>> {
    resources.map(|rs| rs.iter().map(|r| Arc::from(r.as_str())).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: u64) -> Arc<Event> {
        Arc::new(Event {
            seq,
            ..Event::blank(0.0, EventKind::Acquired)
        })
    }

    fn drain(q: &SubQueue) -> Vec<(EventKind, u64)> {
        std::iter::from_fn(|| q.try_pop())
            .map(|e| (e.kind, e.position().unwrap_or(e.seq)))
            .collect()
    }

    #[test]
    fn a_full_queue_drops_its_oldest_and_marks_the_gap_before_what_it_kept() {
        let q = SubQueue::new(None, 3, None);
        for seq in 1..=6 {
            q.push(ev(seq));
        }
        use EventKind::{Acquired as A, Lagged as L};
        assert_eq!(drain(&q), [(L, 3), (A, 4), (A, 5), (A, 6)]);
        q.push(ev(7));
        assert_eq!(drain(&q), [(A, 7)]);
    }

    #[test]
    fn a_second_gap_gets_its_own_marker() {
        let q = SubQueue::new(None, 2, None);
        for seq in 1..=3 {
            q.push(ev(seq));
        }
        use EventKind::{Acquired as A, Lagged as L};
        assert_eq!(q.try_pop().map(|e| e.kind), Some(L));
        for seq in 4..=6 {
            q.push(ev(seq));
        }
        assert_eq!(drain(&q), [(L, 3), (A, 5), (A, 6)]);
    }

    #[test]
    fn a_marker_without_a_count_that_makes_room_leaves_one_without_a_count() {
        let q = SubQueue::new(None, 2, None);
        q.push(Arc::new(Event::lagged(None))); // another history begins (the remote link's)
        for seq in 1..=3 {
            q.push(ev(seq));
        }
        use EventKind::{Acquired as A, Lagged as L};
        let first = q.try_pop().expect("a marker");
        assert_eq!((first.kind, first.position()), (L, None));
        assert_eq!(drain(&q), [(A, 2), (A, 3)]);
    }

    #[test]
    fn a_replay_is_kept_whole_beyond_the_capacity() {
        let q = SubQueue::new(None, 2, None);
        q.replay(Some(4), (5..=9).map(ev).collect());
        q.push(ev(10));
        q.push(ev(11));
        use EventKind::{Acquired as A, Lagged as L};
        let got = drain(&q);
        assert_eq!(got[0], (L, 4));
        assert_eq!(
            got[1..],
            [(A, 5), (A, 6), (A, 7), (A, 8), (A, 9), (A, 10), (A, 11)]
        );
    }
}
