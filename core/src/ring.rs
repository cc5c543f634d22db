//! A history ring: the newest `limit` events of one resource, one session or the engine,
//! in 16 bytes. Most resources have a single event, kept without an allocation of its
//! own; from the second on, the events move to a deque that grows up to `limit`.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::event::Event;

#[derive(Debug, Default)]
pub(crate) enum Ring {
    #[default]
    Empty,
    One(Arc<Event>),
    #[expect(
        clippy::box_collection,
        reason = "boxed, the ring takes 16 bytes, not 40"
    )]
    Many(Box<VecDeque<Arc<Event>>>),
}

impl Ring {
    /// Appends `ev` to a ring of at most `limit` events; returns the event that fell out.
    pub(crate) fn push(&mut self, ev: Arc<Event>, limit: usize) -> Option<Arc<Event>> {
        match self {
            _ if limit == 0 => Some(ev),
            Ring::Empty => {
                *self = Ring::One(ev);
                None
            }
            Ring::One(old) if limit == 1 => Some(std::mem::replace(old, ev)),
            Ring::One(_) => {
                let Ring::One(first) = std::mem::take(self) else {
                    unreachable!("matched One")
                };
                *self = Ring::Many(Box::new(VecDeque::from([first, ev])));
                None
            }
            Ring::Many(q) if q.len() < limit => {
                if q.len() == q.capacity() {
                    q.reserve_exact(q.len().min(limit - q.len()));
                }
                q.push_back(ev);
                None
            }
            Ring::Many(q) => {
                let old = q.pop_front();
                q.push_back(ev);
                if let Some(next) = q.front() {
                    prefetch(next);
                }
                old
            }
        }
    }

    /// Oldest first.
    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = &Arc<Event>> {
        let (older, newer) = match self {
            Ring::Empty => (&[][..], &[][..]),
            Ring::One(ev) => (std::slice::from_ref(ev), &[][..]),
            Ring::Many(q) => q.as_slices(),
        };
        older.iter().chain(newer)
    }

    pub(crate) fn newest(&self) -> Option<&Arc<Event>> {
        self.iter().next_back()
    }

    pub(crate) fn is_empty(&self) -> bool {
        matches!(self, Ring::Empty)
    }
}

/// The next event to fall out of a full ring was written long ago and is likely out of
/// the cache: start loading it (its reference count, which the drop writes) now, so that
/// dropping it later does not wait for memory. A hint reads nothing into the program and
/// never faults.
#[inline]
fn prefetch(ev: &Arc<Event>) {
    #[cfg(target_arch = "x86_64")]
    {
        let counts = Arc::as_ptr(ev)
            .cast::<i8>()
            .wrapping_sub(2 * std::mem::size_of::<usize>());
        // SAFETY: a prefetch is only a hint, defined for any address.
        unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(counts) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = ev;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;

    fn ev(seq: u64) -> Arc<Event> {
        Arc::new(Event {
            seq,
            ..Event::blank(0.0, EventKind::Acquired)
        })
    }

    #[test]
    fn a_ring_keeps_the_newest_events_in_order() {
        let mut ring = Ring::default();
        let fell: Vec<u64> = (1..=6)
            .filter_map(|s| ring.push(ev(s), 3))
            .map(|e| e.seq)
            .collect();
        assert_eq!(fell, [1, 2, 3]);
        assert_eq!(ring.iter().map(|e| e.seq).collect::<Vec<_>>(), [4, 5, 6]);
        assert_eq!(ring.newest().map(|e| e.seq), Some(6));
        assert_eq!(Ring::default().push(ev(1), 0).map(|e| e.seq), Some(1));
    }
}
