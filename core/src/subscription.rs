//! Live event streams. The actor pushes into each subscriber's bounded queue and never
//! waits for it; a subscriber that falls behind loses events and is told how many by a
//! `lagged` marker at the place where they are missing.

use std::collections::VecDeque;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::table::HashSet;
use crate::types::Event;

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
    events: VecDeque<Arc<Event>>,
    /// Events dropped since the last one queued.
    missed: u64,
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

    /// Queues `ev` without ever blocking; counts it as missed if the queue is full.
    pub(crate) fn push(&self, ev: Arc<Event>) {
        let mut q = self.lock();
        if q.closed {
            return;
        }
        let room = self.capacity - q.events.len().min(self.capacity);
        if q.missed > 0 {
            // The marker and the event must both fit, so the marker lands in place.
            if room >= 2 {
                let missed = std::mem::take(&mut q.missed);
                q.events.push_back(Arc::new(Event::lagged(missed)));
                q.events.push_back(ev);
            } else {
                q.missed += 1;
            }
        } else if room >= 1 {
            q.events.push_back(ev);
        } else {
            q.missed = 1;
        }
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

    /// Queues the events a subscription asked to replay (and a marker for those already
    /// gone), beyond the capacity: the global ring bounds them, and a reconnecting client
    /// must miss nothing that it still holds.
    pub(crate) fn replay(&self, missed: u64, events: Vec<Arc<Event>>) {
        let mut q = self.lock();
        if missed > 0 {
            q.events.push_back(Arc::new(Event::lagged(missed)));
        }
        q.events
            .extend(events.into_iter().filter(|e| self.wants(e)));
    }

    fn pop(q: &mut Inner) -> Option<Arc<Event>> {
        if let Some(ev) = q.events.pop_front() {
            return Some(ev);
        }
        if q.missed > 0 {
            return Some(Arc::new(Event::lagged(std::mem::take(&mut q.missed))));
        }
        None
    }

    pub(crate) fn try_pop(&self) -> Option<Arc<Event>> {
        Self::pop(&mut self.lock())
    }

    pub(crate) fn is_empty(&self) -> bool {
        let q = self.lock();
        q.events.is_empty() && q.missed == 0
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
}

impl Subscription {
    /// Waits for the next event; `None` once the subscription has ended.
    pub fn recv(&self) -> Option<Arc<Event>> {
        self.queue.pop_timeout(None)
    }

    /// Waits up to `timeout`; `None` on timeout or end (see [`Subscription::is_closed`]).
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Arc<Event>> {
        self.queue.pop_timeout(Some(timeout))
    }

    /// The next event if one is ready.
    pub fn try_recv(&self) -> Option<Arc<Event>> {
        self.queue.try_pop()
    }

    /// The next event, awaited; `None` once the subscription has ended.
    pub async fn next_async(&self) -> Option<Arc<Event>> {
        std::future::poll_fn(|cx| self.queue.poll_pop(cx)).await
    }

    /// True once closed (by `close` or the engine closing); events still queued can be read.
    pub fn is_closed(&self) -> bool {
        self.queue.is_closed()
    }

    /// Stops the stream; the engine forgets it at its next event.
    pub fn close(&self) {
        self.queue.close();
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
        self.queue.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::EventKind;

    fn ev(seq: u64) -> Arc<Event> {
        let mut e = Event::lagged(0);
        e.kind = EventKind::Acquired;
        e.seq = seq;
        Arc::new(e)
    }

    #[test]
    fn a_full_queue_marks_the_gap_where_events_were_lost() {
        let q = SubQueue::new(None, 3, None);
        for seq in 1..=6 {
            q.push(ev(seq));
        }
        let got: Vec<_> = std::iter::from_fn(|| q.try_pop()).collect();
        assert_eq!(got.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3, 0]);
        assert_eq!(got[3].kind, EventKind::Lagged);
        assert_eq!(got[3].position(), Some(3));
        q.push(ev(7));
        q.push(ev(8));
        assert_eq!(q.try_pop().map(|e| e.seq), Some(7));
    }

    #[test]
    fn the_marker_comes_before_newer_events() {
        let q = SubQueue::new(None, 3, None);
        for seq in 1..=5 {
            q.push(ev(seq));
        }
        assert_eq!(q.try_pop().map(|e| e.seq), Some(1));
        assert_eq!(q.try_pop().map(|e| e.seq), Some(2));
        q.push(ev(6));
        let rest: Vec<_> = std::iter::from_fn(|| q.try_pop()).collect();
        let kinds: Vec<_> = rest.iter().map(|e| (e.kind, e.seq)).collect();
        assert_eq!(
            kinds,
            [
                (EventKind::Acquired, 3),
                (EventKind::Lagged, 0),
                (EventKind::Acquired, 6)
            ]
        );
        assert_eq!(rest[1].position(), Some(2));
    }
}
