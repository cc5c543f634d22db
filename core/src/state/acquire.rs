//! Acquiring: checking a request, granting it at once or queueing it, and granting from
//! the queues whenever a change makes that possible.

use std::num::NonZeroU64;
use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

use smallvec::SmallVec;

use super::records::{Due, End, Holder, Span, TokenCheck, Touch, WaitRec};
use super::{Effects, State};
use crate::error::{Error, LostReason, Result};
use crate::event::{Event, EventKind, STALE_TAKEN_OVER};
use crate::protocol::{AcquireRequest, Grant, Grants, Reply, WaitId};
use crate::types::{validate_resource, Mode};

impl State {
    pub(super) fn acquire(
        &mut self,
        now: Duration,
        req: AcquireRequest,
        fx: &mut Effects,
    ) -> Result<Reply> {
        req.validate()?;
        let AcquireRequest {
            session,
            resources: names,
            options: opts,
        } = req;
        let s = self
            .sessions
            .get(&session)
            .ok_or_else(|| self.missing_session(session))?;
        for r in names.iter() {
            let busy = s.leases.contains(r.as_str())
                || s.waits
                    .iter()
                    .any(|w| self.waits[w].resources.iter().any(|x| **x == **r));
            if busy {
                return Err(Error::AlreadyHeld(r.clone()));
            }
        }
        self.touch(now, session, fx)?;
        let resources: SmallVec<[Arc<str>; 1]> = names
            .iter()
            .map(|r| match self.resources.get(r) {
                Some(rec) => rec.name.clone(),
                None => Arc::from(r.as_str()),
            })
            .collect();
        let w = WaitRec {
            session,
            resources,
            mode: opts.mode,
            priority: opts.priority,
            arrival: self.next_arrival,
            ttl: opts.ttl.or(self.cfg.lock_ttl),
            deadline: opts
                .timeout
                .filter(|t| !t.is_zero())
                .and_then(|t| now.checked_add(t)),
            reason: opts.reason.map(Arc::from),
            preempt: opts.preempt,
            break_stale: opts.break_stale,
            queued_at: self.unix(now),
        };
        self.next_arrival += 1;
        if self.can_grant(&w, None) {
            if self.grant_closes_cycle(&w) {
                return Err(Error::Deadlock(format!(
                    "holding {} would close a cycle of waiting sessions",
                    w.names()
                )));
            }
            return Ok(Reply::Granted(self.grant(now, w, fx)));
        }
        if opts.timeout.is_some_and(|t| t.is_zero()) {
            return Err(Error::LockTimeout(names.join(", ")));
        }
        self.enqueue(now, w, fx)
    }

    fn enqueue(&mut self, now: Duration, w: WaitRec, fx: &mut Effects) -> Result<Reply> {
        let id = self.next_wait;
        self.next_wait += 1;
        for r in &w.resources {
            self.resource_mut(r).queue.insert(w.key(), id);
        }
        let session = w.session;
        self.waits.insert(id, w);
        if self.closes_cycle(session, id) {
            // It never was queued for anyone to see: no event tells of it.
            let names = self.remove_wait(id).map(|w| w.names()).unwrap_or_default();
            return Err(Error::Deadlock(format!(
                "waiting for {names} would close a cycle of waiting sessions"
            )));
        }
        if let Some(s) = self.sessions.get_mut(&session) {
            s.waits.insert(id);
        }
        let w = &self.waits[&id];
        if let Some(at) = w.deadline {
            self.push_deadline(at, Due::Wait(id));
        }
        let w = &self.waits[&id];
        let base = Event {
            mode: Some(w.mode),
            priority: Some(w.priority),
            reason: w.reason.clone(),
            ..self.session_event(now, EventKind::Queued, session)
        };
        let placed: Vec<(Arc<str>, u64)> = w
            .resources
            .iter()
            .map(|r| (r.clone(), self.queue_position(r, w.key())))
            .collect();
        let position = placed.iter().map(|(_, p)| *p).max().unwrap_or(1);
        for (r, pos) in placed {
            let ev = Event {
                resource: Some(r),
                number: NonZeroU64::new(pos),
                ..base.clone()
            };
            self.emit(ev, fx);
        }
        Ok(Reply::Queued { wait: id, position })
    }

    fn queue_position(&self, resource: &str, key: (u8, u64)) -> u64 {
        self.resources
            .get(resource)
            .map_or(0, |r| r.queue.range(..=key).count() as u64)
    }

    pub(super) fn position(&self, id: WaitId) -> Option<u64> {
        let w = self.waits.get(&id)?;
        w.resources
            .iter()
            .map(|r| self.queue_position(r, w.key()))
            .max()
    }

    /// May holder `h` be taken away for request `w` (preemption or stale takeover)?
    pub(super) fn removable(&self, w: &WaitRec, h: &Holder) -> bool {
        (w.preempt && h.priority > w.priority)
            || (w.break_stale && self.sessions.get(&h.session).is_some_and(|s| s.stale))
    }

    /// Could `w` be granted now: on every resource, compatible with every holder it may
    /// not remove, and nothing conflicting is queued ahead of it. `scanned` names a
    /// resource whose queue ahead of `w` the caller knows holds only requests compatible
    /// with it (it is walking that queue in order), so that it need not be looked at.
    pub(super) fn can_grant(&self, w: &WaitRec, scanned: Option<&str>) -> bool {
        w.resources.iter().all(|r| {
            let Some(rec) = self.resources.get(r) else {
                return true;
            };
            let holders_ok = match rec.held_mode() {
                None => true,
                // Holders are alike: one compatible holder means all are.
                Some(m) if m.compatible(w.mode) => true,
                Some(_) => rec.holders.iter().all(|h| self.removable(w, h)),
            };
            holders_ok
                && (scanned == Some(&**r)
                    || rec
                        .queue
                        .range(..w.key())
                        .all(|(_, id)| self.waits[id].mode.compatible(w.mode)))
        })
    }

    /// Grants `w` on all its resources, taking away the holders it may remove.
    fn grant(&mut self, now: Duration, w: WaitRec, fx: &mut Effects) -> Grants {
        let mut grants = Grants::with_capacity(w.resources.len());
        for r in &w.resources {
            self.revoke_for(now, r, &w, fx);
            let fence = self.next_fence;
            self.next_fence += 1;
            let ttl = Span::new(w.ttl);
            let expires = ttl.after(now);
            let token = self.fresh_token();
            let holder = Holder {
                session: w.session,
                mode: w.mode,
                token: TokenCheck::Plain(token),
                fence,
                acquired_at: self.unix(now),
                expires,
                ttl,
                priority: w.priority,
                reason: w.reason.clone(),
            };
            grants.push(Grant {
                resource: r.clone(),
                mode: w.mode,
                session_id: w.session,
                token,
                fence,
                acquired_at: holder.acquired_at,
                expires_at: expires.get().map(|d| self.unix(d)),
                ttl: ttl.get(),
                priority: w.priority,
            });
            let limit = self.cfg.history_limit;
            let rec = self.resource_mut(r);
            rec.queue.remove(&w.key());
            rec.holders.push(holder);
            let settle = rec.needs_settling(limit);
            if let Some(s) = self.sessions.get_mut(&w.session) {
                s.leases.insert(r.clone());
            }
            if let Some(at) = expires.get() {
                self.push_deadline(at, Due::Lease(r.clone(), fence));
            }
            self.touched(Touch::Lease(r.clone(), fence));
            let ev = Event {
                resource: Some(r.clone()),
                mode: Some(w.mode),
                number: NonZeroU64::new(fence),
                priority: Some(w.priority),
                reason: w.reason.clone(),
                ..self.session_event(now, EventKind::Acquired, w.session)
            };
            self.emit(ev, fx);
            if settle {
                self.dirty.push(r.clone());
            }
        }
        grants
    }

    /// Ends the holders of `r` that conflict with `w` (which may remove them all, or it
    /// would not be granted): preempted, or taken over as stale.
    fn revoke_for(&mut self, now: Duration, r: &Arc<str>, w: &WaitRec, fx: &mut Effects) {
        let Some(rec) = self.resources.get(r) else {
            return;
        };
        if rec.held_mode().is_none_or(|m| m.compatible(w.mode)) {
            return;
        }
        let revoke: Vec<(u64, LostReason)> = rec
            .holders
            .iter()
            .map(|h| match w.preempt && h.priority > w.priority {
                true => (h.fence, LostReason::Preempted),
                false => (h.fence, LostReason::SessionExpired),
            })
            .collect();
        for (fence, why) in revoke {
            let reason = match why {
                LostReason::Preempted => w.reason.clone(),
                _ => Some(STALE_TAKEN_OVER.into()),
            };
            self.end_lease(now, r, fence, End::Lost(why), reason, fx);
        }
    }

    /// Grants every queued request that has become grantable, until none is.
    pub(super) fn settle(&mut self, now: Duration, fx: &mut Effects) {
        while let Some(r) = self.dirty.pop() {
            let granted = self.walk_queue(now, &r, fx);
            // The walk saw every change it made but one: a holder that a grant took away
            // may be what kept a request it had passed waiting. So a walk that granted is
            // done once more; every other mark of `r` is stale.
            self.dirty.retain(|d| **d != *r);
            match granted {
                true => self.dirty.push(r),
                false => self.drop_if_idle(&r),
            }
        }
    }

    /// Walks the queue of `r` once, in order, from its head: a request is granted if it
    /// can be; an exclusive one that cannot be stops the walk (nothing behind it may pass
    /// it); a shared one that cannot be (it waits for another resource too) lets the
    /// shared requests behind it through. True if it granted any.
    fn walk_queue(&mut self, now: Duration, r: &Arc<str>, fx: &mut Effects) -> bool {
        let mut after: Option<(u8, u64)> = None;
        let mut granted = false;
        while let Some(rec) = self.resources.get(r) {
            let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
            let Some((&key, &id)) = rec.queue.range((lower, Bound::Unbounded)).next() else {
                break;
            };
            after = Some(key);
            let w = &self.waits[&id];
            // What is still queued here ahead of `w` was passed over: shared requests
            // (an exclusive one would have stopped the walk), compatible with a shared `w`.
            let scanned = (w.mode == Mode::Shared).then_some(&**r);
            if self.can_grant(w, scanned) {
                if let Some(w) = self.remove_wait(id) {
                    let grants = self.grant(now, w, fx);
                    fx.completions.push((id, Ok(grants)));
                    granted = true;
                }
            } else if w.mode == Mode::Exclusive {
                break;
            }
        }
        granted
    }

    /// Takes a wait out of the table and every queue it stands in.
    pub(super) fn remove_wait(&mut self, id: WaitId) -> Option<WaitRec> {
        let w = self.waits.remove(&id)?;
        for r in &w.resources {
            if let Some(rec) = self.resources.get_mut(r) {
                rec.queue.remove(&w.key());
            }
            self.dirty.push(r.clone());
        }
        if let Some(s) = self.sessions.get_mut(&w.session) {
            s.waits.remove(&id);
        }
        Some(w)
    }

    /// Takes a wait out and records `dequeued` with `reason` on each of its resources.
    fn withdraw(&mut self, now: Duration, id: WaitId, reason: &str, fx: &mut Effects) -> bool {
        let Some(w) = self.remove_wait(id) else {
            return false;
        };
        let reason: Arc<str> = reason.into();
        for r in &w.resources {
            let ev = Event {
                resource: Some(r.clone()),
                mode: Some(w.mode),
                priority: Some(w.priority),
                reason: Some(reason.clone()),
                ..self.session_event(now, EventKind::Dequeued, w.session)
            };
            self.emit(ev, fx);
        }
        true
    }

    /// Withdraws a wait and tells its waiter `err`.
    pub(super) fn fail_wait(
        &mut self,
        now: Duration,
        id: WaitId,
        err: Error,
        reason: &str,
        fx: &mut Effects,
    ) {
        if self.withdraw(now, id, reason, fx) {
            fx.completions.push((id, Err(err)));
        }
    }

    pub(super) fn cancel(&mut self, now: Duration, id: WaitId, fx: &mut Effects) {
        let err = Error::Cancelled("wait cancelled".into());
        self.fail_wait(now, id, err, "cancelled", fx);
    }
}

/// A name given twice: compared pairwise for the usual few, through a set for many
/// (a batch of thousands would otherwise take quadratic time).
impl AcquireRequest {
    /// Checks what the request says by itself (not against the engine's state): what an
    /// acquire refuses as bad input before it looks at, or touches, its session.
    pub fn validate(&self) -> Result<()> {
        if self.resources.is_empty() {
            return Err(Error::invalid("no resource given"));
        }
        for r in self.resources.iter() {
            validate_resource(r)?;
        }
        if let Some(r) = first_repeat(&self.resources) {
            return Err(Error::invalid(format!("resource {r:?} is named twice")));
        }
        if let Some(reason) = &self.options.reason {
            validate_reason(reason)?;
        }
        if self.options.ttl.is_some_and(|t| t.is_zero()) {
            return Err(Error::invalid("ttl must be more than zero"));
        }
        Ok(())
    }
}

fn first_repeat(names: &[String]) -> Option<&String> {
    if names.len() <= 8 {
        return (1..names.len()).find_map(|i| names[..i].contains(&names[i]).then(|| &names[i]));
    }
    let mut seen = crate::table::HashSet::default();
    names.iter().find(|r| !seen.insert(r.as_str()))
}

pub(super) fn validate_reason(reason: &str) -> Result<()> {
    use crate::types::MAX_RESOURCE_LEN;
    if reason.len() > MAX_RESOURCE_LEN || reason.contains('\0') {
        return Err(Error::invalid(format!(
            "reason must be at most {MAX_RESOURCE_LEN} bytes without NUL"
        )));
    }
    Ok(())
}
