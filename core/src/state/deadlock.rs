//! Deadlock detection: a wait that closes a cycle in the waits-for graph of sessions
//! (through holders, or through queue order) can never be granted.

use super::records::WaitRec;
use super::State;
use crate::protocol::WaitId;
use crate::table::HashSet;
use crate::types::SessionId;

impl State {
    /// Sessions that wait `w` waits for: holders it conflicts with and may not remove,
    /// and conflicting requests queued ahead of it.
    fn blockers(&self, w: &WaitRec) -> Vec<SessionId> {
        let mut out = Vec::new();
        for r in &w.resources {
            let Some(rec) = self.resources.get(r) else {
                continue;
            };
            for h in &rec.holders {
                if !h.mode.compatible(w.mode) && !self.removable(w, h) {
                    out.push(h.session);
                }
            }
            for (_, id) in rec.queue.range(..w.key()) {
                let ahead = &self.waits[id];
                if !ahead.mode.compatible(w.mode) {
                    out.push(ahead.session);
                }
            }
        }
        out
    }

    /// Does the new wait `id` of `session` close a cycle in the waits-for graph? Every
    /// edge it adds touches `session` (its own, and those of waits it was queued ahead
    /// of), so any new cycle runs through `session`: search from all of its waits.
    pub(super) fn closes_cycle(&self, session: SessionId, id: WaitId) -> bool {
        let mut start = self.blockers(&self.waits[&id]);
        start.extend(self.blocked_by_waits_of(session));
        self.reaches(start, |s| s == session)
    }

    /// Would granting `w` at once close a cycle? Its session would then hold `w`'s
    /// resources, and every request queued there that conflicts with it would wait for
    /// it (a request of higher priority is granted ahead of such waits, which did not wait
    /// for it before). If the session itself waits, through its other requests, for one of
    /// those, neither could ever be granted.
    pub(super) fn grant_closes_cycle(&self, w: &WaitRec) -> bool {
        let start = self.blocked_by_waits_of(w.session);
        if start.is_empty() {
            return false;
        }
        let behind: HashSet<SessionId> = w
            .resources
            .iter()
            .filter_map(|r| self.resources.get(r))
            .flat_map(|rec| rec.queue.values())
            .map(|id| &self.waits[id])
            .filter(|x| x.session != w.session && !x.mode.compatible(w.mode))
            .map(|x| x.session)
            .collect();
        !behind.is_empty() && self.reaches(start, |s| behind.contains(&s))
    }

    /// The sessions that the waits of `session` wait for.
    fn blocked_by_waits_of(&self, session: SessionId) -> Vec<SessionId> {
        let Some(rec) = self.sessions.get(&session) else {
            return Vec::new();
        };
        rec.waits
            .iter()
            .flat_map(|w| self.blockers(&self.waits[w]))
            .collect()
    }

    /// Does the waits-for graph lead from the sessions in `start` to one that is `found`?
    fn reaches(&self, mut stack: Vec<SessionId>, found: impl Fn(SessionId) -> bool) -> bool {
        let mut seen = HashSet::default();
        while let Some(s) = stack.pop() {
            if found(s) {
                return true;
            }
            if seen.insert(s) {
                stack.extend(self.blocked_by_waits_of(s));
            }
        }
        false
    }
}
