//! Sessions: opening, resuming, activity and expiry, closing.

use std::sync::Arc;
use std::time::Duration;

use super::records::{Due, End, Ended, SessionRec, Touch};
use super::{Effects, State};
use crate::error::{Error, LostReason, Result};
use crate::event::{Event, EventKind, SessionTag, SESSION_EXPIRED};
use crate::protocol::{Reply, SessionSpec, WaitId};
use crate::ring::Ring;
use crate::table::HashSet;
use crate::types::{
    validate_metadata, validate_session_name, OnExpire, Secret, SessionId, SessionInfo,
};

impl State {
    pub(super) fn open_session(
        &mut self,
        now: Duration,
        spec: SessionSpec,
        fx: &mut Effects,
    ) -> Result<Reply> {
        validate_session_name(&spec.name)?;
        if spec.ttl.is_some_and(|t| t.is_zero()) {
            return Err(Error::invalid("session ttl must be more than zero"));
        }
        let metadata = match spec.metadata {
            serde_json::Value::Null => serde_json::Value::Object(Default::default()),
            m => m,
        };
        validate_metadata(&metadata)?;
        let id = self.fresh_session_id();
        let secret = self.fresh_secret();
        let rec = SessionRec {
            tag: Arc::new(SessionTag {
                id,
                name: spec.name.into(),
            }),
            secret: secret.hash(),
            metadata: Arc::new(metadata),
            ttl: spec.ttl.or(self.cfg.session_ttl),
            on_expire: spec.on_expire.unwrap_or(self.cfg.on_session_expire),
            opened: self.next_opened,
            created_at: self.unix(now),
            last_seen: now,
            not_before: Duration::ZERO,
            stale: false,
            leases: HashSet::default(),
            waits: HashSet::default(),
            history: Ring::default(),
        };
        self.next_opened += 1;
        if let Some(at) = rec.expires() {
            self.push_deadline(at, Due::Session(id));
        }
        let ttl = rec.ttl;
        self.sessions.insert(id, rec);
        self.touched(Touch::Session(id));
        self.emit(self.session_event(now, EventKind::SessionOpened, id), fx);
        Ok(Reply::Opened {
            session: self.session_info(id, &self.sessions[&id]),
            secret,
            ttl,
        })
    }

    /// Checks a session's secret; on success counts as its activity.
    pub(super) fn resume(
        &mut self,
        now: Duration,
        id: SessionId,
        secret: Secret,
        fx: &mut Effects,
    ) -> Result<Reply> {
        match self.sessions.get(&id) {
            None => return Err(self.missing_session(id)),
            Some(s) if s.secret != secret.hash() => {
                return Err(Error::PermissionDenied(format!(
                    "wrong secret for session {id}"
                )))
            }
            Some(_) => {}
        }
        self.touch(now, id, fx)?;
        Ok(Reply::Session(self.session_info(id, &self.sessions[&id])))
    }

    pub(super) fn session_info(&self, id: SessionId, s: &SessionRec) -> SessionInfo {
        let mut leases: Vec<Arc<str>> = s.leases.iter().cloned().collect();
        leases.sort();
        SessionInfo {
            id,
            name: s.tag.name.clone(),
            metadata: s.metadata.clone(),
            created_at: s.created_at,
            last_seen: self.unix(s.last_seen),
            expires_at: s.expires().map(|d| self.unix(d)),
            stale: s.stale,
            leases,
        }
    }

    pub(super) fn session_list(&self) -> Vec<SessionInfo> {
        let mut list: Vec<_> = self.sessions.iter().collect();
        list.sort_by_key(|(_, s)| s.opened);
        list.into_iter()
            .map(|(id, s)| self.session_info(*id, s))
            .collect()
    }

    pub(super) fn missing_session(&self, id: SessionId) -> Error {
        match self.ended.get(&id) {
            Some(Ended::Expired) => Error::SessionExpired(id.to_string()),
            Some(Ended::Closed) => Error::NotFound(format!("session {id} is closed")),
            None => Error::NotFound(format!("no session {id}")),
        }
    }

    /// An event about a session (every event emitted about one finds it still open).
    pub(super) fn session_event(&self, now: Duration, kind: EventKind, id: SessionId) -> Event {
        Event {
            session: self.sessions.get(&id).map(|s| s.tag.clone()),
            ..Event::blank(self.unix(now), kind)
        }
    }

    /// Records activity of a session, reviving it if it was stale.
    pub(super) fn touch(&mut self, now: Duration, id: SessionId, fx: &mut Effects) -> Result<()> {
        let Some(s) = self.sessions.get_mut(&id) else {
            return Err(self.missing_session(id));
        };
        s.last_seen = now;
        if s.stale {
            s.stale = false;
            if let Some(at) = s.expires() {
                self.push_deadline(at, Due::Session(id));
            }
            self.touched(Touch::Session(id));
            self.emit(self.session_event(now, EventKind::SessionRevived, id), fx);
        }
        Ok(())
    }

    pub(super) fn close_session(
        &mut self,
        now: Duration,
        id: SessionId,
        fx: &mut Effects,
    ) -> Result<usize> {
        if !self.sessions.contains_key(&id) {
            return match self.ended.get(&id) {
                Some(_) => Ok(0),
                None => Err(self.missing_session(id)),
            };
        }
        Ok(self.end_session(now, id, Ended::Closed, fx))
    }

    pub(super) fn expire_session(&mut self, now: Duration, id: SessionId, fx: &mut Effects) {
        let Some(s) = self.sessions.get(&id) else {
            return;
        };
        match s.on_expire {
            OnExpire::Release => {
                self.end_session(now, id, Ended::Expired, fx);
            }
            OnExpire::Keep => {
                self.fail_session_waits(now, id, Ended::Expired, fx);
                let held = self.leases_of(id);
                if let Some(s) = self.sessions.get_mut(&id) {
                    s.stale = true;
                }
                self.touched(Touch::Session(id));
                self.dirty.extend(held);
                self.emit(self.session_event(now, EventKind::SessionStale, id), fx);
            }
        }
    }

    /// The resources a session holds, by name (the order its leases end in).
    fn leases_of(&self, id: SessionId) -> Vec<Arc<str>> {
        let mut held: Vec<Arc<str>> = self.sessions[&id].leases.iter().cloned().collect();
        held.sort();
        held
    }

    pub(super) fn fail_session_waits(
        &mut self,
        now: Duration,
        id: SessionId,
        why: Ended,
        fx: &mut Effects,
    ) {
        let mut waits: Vec<WaitId> = self.sessions[&id].waits.iter().copied().collect();
        waits.sort_unstable();
        for w in waits {
            let (err, reason) = match why {
                Ended::Expired => (Error::SessionExpired(id.to_string()), SESSION_EXPIRED),
                Ended::Closed => (
                    Error::Cancelled(format!("session {id} closed")),
                    "session_closed",
                ),
            };
            self.fail_wait(now, w, err, reason, fx);
        }
    }

    /// Ends a session: fails its waits, ends its leases, records why. Returns how many
    /// leases it held.
    fn end_session(&mut self, now: Duration, id: SessionId, why: Ended, fx: &mut Effects) -> usize {
        self.fail_session_waits(now, id, why, fx);
        let (end, reason) = match why {
            Ended::Closed => (End::Released, "session_closed"),
            Ended::Expired => (End::Lost(LostReason::SessionExpired), SESSION_EXPIRED),
        };
        let reason: Arc<str> = reason.into();
        let leases = self.leases_of(id);
        for r in &leases {
            if let Some(fence) = self.fence_of(r, id) {
                self.end_lease(now, r, fence, end, Some(reason.clone()), fx);
            }
        }
        let kind = match why {
            Ended::Closed => EventKind::SessionClosed,
            Ended::Expired => EventKind::SessionExpired,
        };
        self.emit(self.session_event(now, kind, id), fx);
        self.touched(Touch::Session(id));
        if let Some(rec) = self.sessions.remove(&id) {
            if !rec.history.is_empty() {
                self.ended_history.insert(id, rec.history);
            }
        }
        self.note_ended(id, why);
        leases.len()
    }

    /// Remembers why a session ended (for as many sessions as the global ring holds
    /// events), so that a late call says `SessionExpired` rather than `NotFound`.
    pub(super) fn note_ended(&mut self, id: SessionId, why: Ended) {
        self.ended.insert(id, why);
    }
}
