//! Leases: how they end (release, expiry, loss), renewal, force release and the checks
//! a driver asks.

use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::Duration;

use super::acquire::validate_reason;
use super::records::{Due, End, Holder, ResourceRec, Span, Touch};
use super::{Effects, State};
use crate::error::{Error, LostReason, Result};
use crate::event::{Event, EventKind};
use crate::protocol::Reply;
use crate::types::{validate_resource, Action, Mode, SecretHash, SessionId, Token};

impl State {
    /// The record of `name`, made if there is none.
    pub(super) fn resource_mut(&mut self, name: &Arc<str>) -> &mut ResourceRec {
        self.resources
            .get_or_insert_with(name, || ResourceRec::new(name))
    }

    /// The fence of the lease `session` holds on `resource`.
    pub(super) fn fence_of(&self, resource: &str, session: SessionId) -> Option<u64> {
        let rec = self.resources.get(resource)?;
        let h = rec.holders.iter().find(|h| h.session == session)?;
        Some(h.fence)
    }

    /// Ends the lease `fence` on `resource`, records the event and frees the queue.
    pub(super) fn end_lease(
        &mut self,
        now: Duration,
        resource: &Arc<str>,
        fence: u64,
        end: End,
        reason: Option<Arc<str>>,
        fx: &mut Effects,
    ) {
        let limit = self.cfg.history_limit;
        let Some(rec) = self.resources.get_mut(resource) else {
            return;
        };
        let Some(i) = rec.holders.iter().position(|h| h.fence == fence) else {
            return;
        };
        let h = rec.holders.remove(i);
        if rec.needs_settling(limit) {
            self.dirty.push(resource.clone());
        }
        if let End::Lost(reason) = end {
            self.remember_lost(h.token.hash(), reason);
        }
        self.touched(Touch::Lease(resource.clone(), fence));
        if let Some(s) = self.sessions.get_mut(&h.session) {
            s.leases.remove(resource);
        }
        let kind = match end {
            End::Released => EventKind::Released,
            End::Lost(LostReason::Preempted) => EventKind::Preempted,
            End::Lost(LostReason::ForceReleased) => EventKind::ForceReleased,
            End::Lost(_) => EventKind::Expired,
        };
        let ev = Event {
            resource: Some(resource.clone()),
            mode: Some(h.mode),
            number: NonZeroU64::new(h.fence),
            priority: Some(h.priority),
            reason,
            ..self.session_event(now, kind, h.session)
        };
        self.emit(ev, fx);
    }

    /// Keeps why a lease was lost, so that its holder is told `LockLost`, not
    /// `InvalidToken`, when it hands the token back; for as many leases as the global
    /// ring keeps events.
    fn remember_lost(&mut self, hash: SecretHash, reason: LostReason) {
        self.lost.insert(hash, reason);
    }

    /// Forgets an idle resource that has no history to keep.
    pub(super) fn drop_if_idle(&mut self, resource: &str) {
        if self
            .resources
            .get(resource)
            .is_some_and(|r| r.idle() && r.history.is_empty())
        {
            self.resources.remove(resource);
        }
    }

    /// The resource's own name and the holder with `token`.
    fn find_token(&self, resource: &str, token: Token) -> Result<(Arc<str>, &Holder)> {
        // A name with a record was valid when it was made: only a miss needs the check.
        let rec = self.resources.get(resource);
        if rec.is_none() {
            validate_resource(resource)?;
        }
        let found = rec.and_then(|r| {
            let h = r.holders.iter().find(|h| h.token.matches(token))?;
            Some((r.name.clone(), h))
        });
        found.ok_or_else(|| match self.lost.get(&token.hash()) {
            Some(&reason) => Error::LockLost {
                resource: resource.to_string(),
                reason,
            },
            None => Error::InvalidToken(resource.to_string()),
        })
    }

    pub(super) fn release(
        &mut self,
        now: Duration,
        resource: &str,
        token: Token,
        fx: &mut Effects,
    ) -> Result<()> {
        let (r, h) = self.find_token(resource, token)?;
        let (session, fence) = (h.session, h.fence);
        self.touch(now, session, fx)?;
        self.end_lease(now, &r, fence, End::Released, None, fx);
        Ok(())
    }

    pub(super) fn renew(
        &mut self,
        now: Duration,
        resource: &str,
        token: Token,
        ttl: Option<Duration>,
        fx: &mut Effects,
    ) -> Result<Reply> {
        if ttl.is_some_and(|t| t.is_zero()) {
            return Err(Error::invalid("ttl must be more than zero"));
        }
        let (key, h) = self.find_token(resource, token)?;
        let (session, fence) = (h.session, h.fence);
        self.touch(now, session, fx)?;
        let Some(h) = self
            .resources
            .get_mut(&key)
            .and_then(|rec| rec.holders.iter_mut().find(|h| h.fence == fence))
        else {
            return Err(Error::InvalidToken(resource.into()));
        };
        let before = h.expires.get();
        h.ttl = Span::new(ttl.or(h.ttl.get()));
        h.expires = h.ttl.after(now);
        let expires = h.expires.get();
        // The heap holds this lease at `before`; a later expiry is found when that entry
        // pops, an earlier one needs its own entry.
        if let Some(at) = expires.filter(|at| before.is_none_or(|b| *at < b)) {
            self.push_deadline(at, Due::Lease(key.clone(), fence));
        }
        self.touched(Touch::Lease(key, fence));
        Ok(Reply::Renewed {
            expires_at: expires.map(|d| self.unix(d)),
        })
    }

    /// Ends a lease whose deadline entry (at `entry`) came due, if it still expires then;
    /// one renewed to later goes back into the heap at its new expiry, and one renewed to
    /// earlier has an entry of its own.
    pub(super) fn expire_lease(
        &mut self,
        now: Duration,
        entry: Duration,
        resource: Arc<str>,
        fence: u64,
        fx: &mut Effects,
    ) {
        let expires = self.resources.get(&resource).and_then(|r| {
            let h = r.holders.iter().find(|h| h.fence == fence)?;
            h.expires.get()
        });
        match expires {
            Some(at) if at == entry => {
                let lost = End::Lost(LostReason::Expired);
                self.end_lease(now, &resource, fence, lost, None, fx);
            }
            Some(at) if at > entry => self.push_deadline(at, Due::Lease(resource, fence)),
            _ => {}
        }
    }

    pub(super) fn force_release(
        &mut self,
        now: Duration,
        resource: &str,
        reason: Option<String>,
        only: Option<u64>,
        fx: &mut Effects,
    ) -> Result<usize> {
        validate_resource(resource)?;
        if let Some(reason) = &reason {
            validate_reason(reason)?;
        }
        let Some(rec) = self.resources.get(resource) else {
            return Ok(0);
        };
        let r = rec.name.clone();
        let fences: Vec<u64> = rec
            .holders
            .iter()
            .map(|h| h.fence)
            .filter(|f| only.is_none_or(|o| o == *f))
            .collect();
        let reason: Option<Arc<str>> = reason.map(Arc::from);
        let lost = End::Lost(LostReason::ForceReleased);
        for &fence in &fences {
            self.end_lease(now, &r, fence, lost, reason.clone(), fx);
        }
        Ok(fences.len())
    }

    pub(super) fn check(&self, resource: &str, session: SessionId, action: Action) -> bool {
        self.resources.get(resource).is_some_and(|r| {
            r.holders.iter().any(|h| {
                h.session == session && (action == Action::Observe || h.mode == Mode::Exclusive)
            })
        })
    }

    pub(super) fn check_fence(&self, resource: &str, fence: u64) -> bool {
        self.resources
            .get(resource)
            .is_some_and(|r| r.holders.iter().any(|h| h.fence == fence))
    }
}
