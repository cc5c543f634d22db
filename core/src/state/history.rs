//! The one path every event takes (numbered, kept in the history of its resource, its
//! session and the engine, handed out with the command's effects), and the queries of
//! that history.

use std::sync::Arc;

use super::records::ResourceRec;
use super::{Effects, State};
use crate::error::Result;
use crate::event::Event;
use crate::protocol::Reply;
use crate::ring::Ring;
use crate::types::{validate_resource, SessionId};

impl State {
    /// Numbers an event, keeps it in the history of its resource, its session and the
    /// engine, and adds it to the command's effects.
    pub(super) fn emit(&mut self, ev: Event, fx: &mut Effects) {
        let ev = Arc::new(Event {
            seq: self.next_seq,
            ..ev
        });
        self.next_seq += 1;
        let limit = self.cfg.history_limit;
        if limit > 0 {
            if let Some(r) = &ev.resource {
                let rec = self.resources.get_or_insert_with(r, || ResourceRec::new(r));
                rec.history.push(ev.clone(), limit);
            }
            if let Some(s) = ev.session_id() {
                let ring = match self.sessions.get_mut(&s) {
                    Some(rec) => Some(&mut rec.history),
                    None => self.ended_history.get_mut(&s),
                };
                if let Some(ring) = ring {
                    ring.push(ev.clone(), limit);
                }
            }
        }
        if let Some(old) = self.global.push(ev.clone(), self.cfg.global_history) {
            self.forget_history_of(&old);
        }
        fx.events.push(ev);
    }

    /// Forgets idle resources and ended sessions once their newest event has left the
    /// global ring.
    fn forget_history_of(&mut self, old: &Event) {
        let gone = |ring: &Ring| ring.newest().is_none_or(|e| e.seq <= old.seq);
        if let Some(r) = &old.resource {
            if self
                .resources
                .get(r)
                .is_some_and(|rec| rec.idle() && gone(&rec.history))
            {
                self.resources.remove(r);
            }
        }
        if let Some(s) = old.session_id().filter(|_| !self.ended_history.is_empty()) {
            if self.ended_history.get(&s).is_some_and(gone) {
                self.ended_history.remove(&s);
            }
        }
    }

    pub(super) fn history(
        &self,
        resource: Option<String>,
        session: Option<SessionId>,
        limit: Option<usize>,
    ) -> Result<Vec<Arc<Event>>> {
        if let Some(r) = &resource {
            validate_resource(r)?;
        }
        let ring = match (&resource, session) {
            (Some(r), _) => self.resources.get(r.as_str()).map(|rec| &rec.history),
            (None, Some(s)) => match self.sessions.get(&s) {
                Some(rec) => Some(&rec.history),
                None => self.ended_history.get(&s),
            },
            (None, None) => Some(&self.global),
        };
        let mut events: Vec<Arc<Event>> = ring
            .into_iter()
            .flat_map(Ring::iter)
            .filter(|e| session.is_none() || e.session_id() == session)
            .cloned()
            .collect();
        if let Some(n) = limit {
            events.drain(..events.len().saturating_sub(n));
        }
        Ok(events)
    }

    /// The seq of the newest event (0 before the first).
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    pub(super) fn replay(&self, since: u64) -> Reply {
        // A seq not reached yet is another history's (an engine restarted without its
        // journal counts from 1 again): all of this one is new to the asker, and how much
        // of the other it missed is unknown.
        let foreign = since > self.last_seq();
        let after = if foreign { 0 } else { since };
        let oldest = self.global.iter().next().map_or(self.next_seq, |e| e.seq);
        Reply::Replay {
            events: self
                .global
                .iter()
                .filter(|e| e.seq > after)
                .cloned()
                .collect(),
            missed: (!foreign).then(|| oldest.saturating_sub(since.saturating_add(1))),
        }
    }
}
