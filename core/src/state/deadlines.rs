//! Time: the heap of deadlines (session TTLs, lease TTLs, wait timeouts), processed in
//! order before every command.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use super::records::{Due, SessionRec};
use super::{Effects, State};
use crate::error::Error;

impl State {
    /// The earliest moment at which something may expire or time out.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.deadlines.peek().map(|Reverse((at, _))| *at)
    }

    pub(super) fn push_deadline(&mut self, at: Duration, due: Due) {
        self.deadlines.push(Reverse((at, due)));
    }

    pub(super) fn expire_due(&mut self, now: Duration, fx: &mut Effects) {
        while self.next_deadline().is_some_and(|at| at <= now) {
            let Some(Reverse((entry, due))) = self.deadlines.pop() else {
                break;
            };
            match due {
                // A heartbeat or a renew moves a deadline later without a new entry: the old
                // entry then goes back in at the new time, and is handled in its turn among
                // the others that are due (an actor that comes late must not reorder them).
                Due::Session(id) => match self.sessions.get(&id).and_then(SessionRec::expires) {
                    Some(at) if at == entry => self.expire_session(now, id, fx),
                    Some(at) if at > entry => self.push_deadline(at, Due::Session(id)),
                    _ => {}
                },
                Due::Lease(resource, fence) => self.expire_lease(now, entry, resource, fence, fx),
                Due::Wait(id) => {
                    if let Some(w) = self
                        .waits
                        .get(&id)
                        .filter(|w| w.deadline.is_some_and(|d| d <= now))
                    {
                        let err = Error::LockTimeout(w.names());
                        self.fail_wait(now, id, err, "timeout", fx);
                    }
                }
            }
            // In deadline order: a lock freed by an earlier deadline goes to its waiters
            // before a later deadline times them out.
            self.settle(now, fx);
        }
        self.compact_deadlines();
    }

    /// Drops heap entries of leases and waits that ended early, once the heap has doubled
    /// since the last compaction, so that churn does not grow it without bound.
    fn compact_deadlines(&mut self) {
        if self.deadlines.len() <= 2 * self.deadlines_compacted + 1024 {
            return;
        }
        let heap = std::mem::take(&mut self.deadlines);
        let live: Vec<_> = heap
            .into_vec()
            .into_iter()
            .filter(|Reverse((_, due))| match due {
                Due::Session(id) => self.sessions.contains_key(id),
                Due::Lease(r, fence) => self.check_fence(r, *fence),
                Due::Wait(id) => self.waits.contains_key(id),
            })
            .collect();
        self.deadlines_compacted = live.len();
        self.deadlines = BinaryHeap::from(live);
    }
}
